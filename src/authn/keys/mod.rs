//! Access keys: long random secrets for robots and CI (and personal keys made in the UI),
//! used as the password of an account, restricted by optional scopes.
//!
//! The keys file (`auth.keys`) is the only store: [`create`] appends a line, [`revoke`]
//! removes one, [`list`] reads them, and the proxy loads it as a [`KeyStore`] on every
//! (re)load. Writes replace the file atomically (temporary file + rename, under a lock
//! file), so the watcher never sees half a key and two writers never lose each other's key.
//!
//! See [`secret`] for why the file holds a plain SHA-256 of each secret.

pub mod file;
pub mod present;
pub mod scope;
pub mod secret;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::diagnostic::{Diagnostic, Diagnostics};

pub use scope::Scopes;

/// What `key list` shows of a key, and what `create` returns: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Public, unique id: named in audit lines, `explain --key`, `key revoke`.
    pub id: String,
    /// The account whose rights the key carries (at most).
    pub account: String,
    /// `TYPE:NAME:ACTIONS` scopes narrowing the account's rights; empty: all of them.
    pub scopes: Vec<String>,
    /// When the key was made.
    pub created: SystemTime,
    /// After this the key no longer works; `None`: never expires.
    pub expires: Option<SystemTime>,
    /// Free text for humans (what the key is for).
    pub description: String,
    /// A robot key's account need not exist in any backend (it then has no labels); any
    /// other key stops working when its account is removed, so a person's keys end with
    /// the person's account.
    pub robot: bool,
    /// Set for a personal key made in the web UI by a person signed in through single sign-on
    /// ([`create_sso`]): the labels the identity provider gave them then. Such an account is
    /// in no backend, so these labels are what the ACL sees for the key; and the key stops
    /// working if a backend comes to hold the account name (it would be someone else).
    pub sso_labels: Option<crate::authn::Labels>,
}

impl Record {
    /// True when the key has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// Why a keys-file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file (or its lock or temporary file) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file has bad lines; it is not modified until they are fixed.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// An argument is not acceptable (empty account, bad scope, control characters).
    #[error("{0}")]
    BadInput(String),
    /// No key with this id.
    #[error("no key with id {0:?}")]
    NotFound(String),
}

/// Makes a key for `account` and appends it to the keys file at `path` (created, mode 0600,
/// if missing). Returns its record and the secret, which is stored nowhere: show it once.
/// The key works only while `account` exists in a backend (a personal key); see
/// [`create_robot`] for accounts that exist only as keys.
pub fn create(
    path: &Path,
    account: &str,
    scopes: &[String],
    expires: Option<SystemTime>,
    description: &str,
) -> Result<(Record, String), KeysError> {
    create_key(path, account, scopes, expires, description, false)
}

/// [`create`] for a robot account: one that need not exist in any backend (the key then
/// has no labels; ACL rules match it by account name).
pub fn create_robot(
    path: &Path,
    account: &str,
    scopes: &[String],
    expires: Option<SystemTime>,
    description: &str,
) -> Result<(Record, String), KeysError> {
    create_key(path, account, scopes, expires, description, true)
}

/// [`create`] for a person signed in through single sign-on, who is in no backend: the key
/// records `labels` (the identity provider's, at creation) and carries them to the ACL.
pub fn create_sso(
    path: &Path,
    account: &str,
    scopes: &[String],
    expires: Option<SystemTime>,
    description: &str,
    labels: crate::authn::Labels,
) -> Result<(Record, String), KeysError> {
    file::validate_labels(&labels).map_err(KeysError::BadInput)?;
    create_with(
        path,
        account,
        scopes,
        expires,
        description,
        false,
        Some(labels),
    )
}

fn create_key(
    path: &Path,
    account: &str,
    scopes: &[String],
    expires: Option<SystemTime>,
    description: &str,
    robot: bool,
) -> Result<(Record, String), KeysError> {
    create_with(path, account, scopes, expires, description, robot, None)
}

fn create_with(
    path: &Path,
    account: &str,
    scopes: &[String],
    expires: Option<SystemTime>,
    description: &str,
    robot: bool,
    sso_labels: Option<crate::authn::Labels>,
) -> Result<(Record, String), KeysError> {
    file::validate_fields(account, scopes, description).map_err(KeysError::BadInput)?;
    let now = SystemTime::now();
    if expires.is_some_and(|e| e <= now) {
        return Err(KeysError::BadInput("the expiry is in the past".into()));
    }
    write::modify(path, |text, entries| {
        let mut id = secret::new_id();
        while entries.iter().any(|e| e.record.id == id) {
            id = secret::new_id();
        }
        let secret = secret::generate();
        let record = Record {
            id,
            account: account.to_owned(),
            scopes: scopes.to_vec(),
            // Whole seconds, as the file stores it, so the record returned equals the one listed.
            created: file::parse_time(&file::format_time(now)).unwrap_or(now),
            expires: expires.map(|e| file::parse_time(&file::format_time(e)).unwrap_or(e)),
            description: description.to_owned(),
            robot,
            sso_labels,
        };
        let mut new = text.to_owned();
        if new.is_empty() {
            new.push_str("# portcullis access keys (auth.keys): one JSON object per line.\n");
        } else if !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str(&file::render(&record, &secret::digest(&secret)));
        new.push('\n');
        Ok((new, (record, secret)))
    })
}

/// Every key in the file at `path` (none if the file does not exist), in file order.
pub fn list(path: &Path) -> Result<Vec<Record>, KeysError> {
    let text = write::read_or_empty(path)?;
    let entries = file::parse(&text, path).map_err(KeysError::Invalid)?;
    Ok(entries.into_iter().map(|e| e.record).collect())
}

/// Removes the key `id` from the file at `path` and returns its record. The proxy stops
/// accepting it as soon as it reloads the file (the watcher sees the rename at once).
pub fn revoke(path: &Path, id: &str) -> Result<Record, KeysError> {
    write::modify(path, |text, entries| {
        let Some(entry) = entries.iter().find(|e| e.record.id == id) else {
            return Err(KeysError::NotFound(id.to_owned()));
        };
        let new: String = text
            .split_inclusive('\n')
            .enumerate()
            .filter(|(i, _)| i + 1 != entry.line)
            .map(|(_, l)| l)
            .collect();
        Ok((new, entry.record.clone()))
    })
}

/// What a presented secret turned out to be.
#[derive(Debug, Clone)]
pub enum Found<'a> {
    /// A live key.
    Key(&'a Record, &'a Scopes),
    /// A key that expired: refused, but the audit line can name it.
    Expired(&'a Record),
    /// Not a key of this file.
    Unknown,
}

/// The keys file as loaded by the proxy: secrets' digests → keys.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    by_digest: HashMap<secret::SecretDigest, usize>,
    entries: Vec<file::Entry>,
}

impl KeyStore {
    /// Loads the keys file; a missing file is an error (as for every configured path), a
    /// bad line is an error with file:line.
    pub fn load(path: &Path) -> Result<KeyStore, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostic::new(path, format!("cannot read keys file: {e}")).key(file::KEY)
        })?;
        Self::parse(&text, path)
    }

    /// Parses keys-file text.
    pub fn parse(text: &str, path: &Path) -> Result<KeyStore, Diagnostics> {
        let entries = file::parse(text, path)?;
        let by_digest = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.digest, i))
            .collect();
        Ok(KeyStore { by_digest, entries })
    }

    /// Looks a presented secret up. The lookup is by SHA-256 of the secret, so its time
    /// does not depend on how much of a stored secret matched.
    pub fn find(&self, presented: &str, now: SystemTime) -> Found<'_> {
        let Some(&i) = self.by_digest.get(&secret::digest(presented)) else {
            return Found::Unknown;
        };
        let entry = &self.entries[i];
        if entry.record.is_expired(now) {
            Found::Expired(&entry.record)
        } else {
            Found::Key(&entry.record, &entry.scopes)
        }
    }

    /// The key with this id (for `explain --key`).
    pub fn get(&self, id: &str) -> Option<(&Record, &Scopes)> {
        self.entries
            .iter()
            .find(|e| e.record.id == id)
            .map(|e| (&e.record, &e.scopes))
    }

    /// The accounts of robot keys: they exist only as keys, so a name another source of
    /// identities (single sign-on) brings must not become one of them.
    pub fn robot_accounts(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.record.robot)
            .map(|e| e.record.account.as_str())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file holds no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn create_list_find_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let (a, secret_a) = create(
            &path,
            "ci-bot",
            &["repository:team/*:pull,push".into()],
            None,
            "release",
        )
        .unwrap();
        let soon = SystemTime::now() + Duration::from_secs(3600);
        let (b, secret_b) = create(&path, "alice", &[], Some(soon), "").unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(list(&path).unwrap(), vec![a.clone(), b.clone()]);
        // The secret is in no file.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret_a[4..]) && !text.contains(&secret_b[4..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let store = KeyStore::load(&path).unwrap();
        assert!(matches!(store.find(&secret_a, SystemTime::now()), Found::Key(r, _) if r == &a));
        assert!(matches!(store.find(&secret_b, SystemTime::now()), Found::Key(r, _) if r == &b));
        assert!(
            matches!(store.find(&secret_b, soon + Duration::from_secs(1)), Found::Expired(r) if r == &b)
        );
        assert!(matches!(
            store.find("pcl_nope", SystemTime::now()),
            Found::Unknown
        ));

        assert_eq!(revoke(&path, &a.id).unwrap(), a);
        assert_eq!(list(&path).unwrap(), vec![b.clone()]);
        assert!(matches!(revoke(&path, &a.id), Err(KeysError::NotFound(_))));
        let store = KeyStore::load(&path).unwrap();
        assert!(matches!(
            store.find(&secret_a, SystemTime::now()),
            Found::Unknown
        ));
    }

    #[test]
    fn a_file_with_a_bad_line_is_not_modified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        create(&path, "a", &[], None, "").unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("garbage\n");
        std::fs::write(&path, &text).unwrap();
        assert!(matches!(
            create(&path, "b", &[], None, ""),
            Err(KeysError::Invalid(_))
        ));
        assert!(matches!(list(&path), Err(KeysError::Invalid(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn bad_arguments_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        for (account, scopes, desc) in [
            ("", vec![], ""),
            ("a\nb", vec![], ""),
            ("a", vec!["repository:x:own".to_string()], ""),
            ("a", vec![], "line\nbreak"),
        ] {
            assert!(matches!(
                create(&path, account, &scopes, None, desc),
                Err(KeysError::BadInput(_))
            ));
        }
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(create(&path, "a", &[], Some(past), "").is_err());
        assert!(!path.exists());
    }

    #[test]
    fn concurrent_creates_lose_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || create(&path, &format!("u{i}"), &[], None, "").unwrap())
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(list(&path).unwrap().len(), 8);
    }
}
