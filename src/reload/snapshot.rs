//! What the watched files hold at one moment, as digests: the reloader reads them twice, a
//! debounce apart, and reloads only when nothing changed in between, so a file still being
//! written (a slow copy, an editor saving in place, a truncated upload) never takes effect
//! half-way, even when its first half parses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The content of every watched file: its SHA-256, or `None` when it cannot be read
/// (missing, mid-rename).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot(BTreeMap<PathBuf, Option<[u8; 32]>>);

impl Snapshot {
    /// Reads `files` and every file the loaders would read ([`crate::acl::is_acl_file_name`])
    /// in `folders` (the ACL folder, the ACL tests folder), following symlinks as they do.
    pub fn take(files: &[PathBuf], folders: &[PathBuf]) -> Snapshot {
        let mut seen = BTreeMap::new();
        for file in files {
            seen.insert(file.clone(), digest(file));
        }
        for dir in folders {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    for entry in entries.flatten() {
                        let path = entry.path();
                        let name = entry.file_name();
                        if crate::acl::is_acl_file_name(&name.to_string_lossy()) && !path.is_dir() {
                            seen.insert(path.clone(), digest(&path));
                        }
                    }
                }
                Err(_) => {
                    seen.insert(dir.clone(), None);
                }
            }
        }
        Snapshot(seen)
    }

    /// The first file whose content or presence differs between `self` and `later`.
    pub fn first_difference(&self, later: &Snapshot) -> Option<PathBuf> {
        let changed = self
            .0
            .iter()
            .find(|(path, hash)| later.0.get(*path) != Some(*hash))
            .map(|(path, _)| path.clone());
        changed.or_else(|| {
            later
                .0
                .keys()
                .find(|path| !self.0.contains_key(*path))
                .cloned()
        })
    }
}

fn digest(path: &Path) -> Option<[u8; 32]> {
    let bytes = std::fs::read(path).ok()?;
    Some(Sha256::digest(&bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_changed_file_from_an_unchanged_one() {
        let d = tempfile::tempdir().unwrap();
        let users = d.path().join("users.yaml");
        let acl = d.path().join("acl");
        std::fs::create_dir(&acl).unwrap();
        std::fs::write(&users, "a: {}\n").unwrap();
        std::fs::write(acl.join("10.yaml"), "[]\n").unwrap();
        let files = vec![users.clone()];
        let take = || Snapshot::take(&files, std::slice::from_ref(&acl));
        let first = take();
        assert_eq!(first.first_difference(&take()), None);
        // The same content written again is no change.
        std::fs::write(&users, "a: {}\n").unwrap();
        assert_eq!(first.first_difference(&take()), None);
        // Not ACL files: ignored.
        std::fs::write(acl.join(".10.yaml.swp"), "x").unwrap();
        std::fs::write(acl.join("README"), "x").unwrap();
        assert_eq!(first.first_difference(&take()), None);
        // A truncation, a new ACL file, a removed file.
        std::fs::write(&users, "a:").unwrap();
        assert_eq!(first.first_difference(&take()), Some(users.clone()));
        std::fs::write(&users, "a: {}\n").unwrap();
        std::fs::write(acl.join("20.yml"), "[]\n").unwrap();
        assert_eq!(first.first_difference(&take()), Some(acl.join("20.yml")));
        let second = take();
        std::fs::remove_file(acl.join("20.yml")).unwrap();
        assert_eq!(second.first_difference(&take()), Some(acl.join("20.yml")));
        std::fs::remove_file(&users).unwrap();
        assert_eq!(first.first_difference(&take()), Some(users));
    }
}
