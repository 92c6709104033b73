//! Changing the keys file safely: one writer at a time (an advisory lock on a `.lock` file
//! beside it, shared by the CLI and the UI), and the new text written to a temporary file
//! in the same folder, flushed and renamed over the old one, so a reader (the proxy's
//! watcher) sees the old file or the new one, never half of either.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::file::{self, Entry};
use super::KeysError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeysError + '_ {
    move |source| KeysError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file's text, or "" when it does not exist yet.
pub(super) fn read_or_empty(path: &Path) -> Result<String, KeysError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io(path)(e)),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keys".into());
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// Under the lock: reads and parses the file (refusing to touch a file with bad lines),
/// lets `change` compute the new text, and replaces the file with it.
pub(super) fn modify<T>(
    path: &Path,
    change: impl FnOnce(&str, &[Entry]) -> Result<(String, T), KeysError>,
) -> Result<T, KeysError> {
    let lock_path = sibling(path, "lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    let text = read_or_empty(path)?;
    let entries = file::parse(&text, path).map_err(KeysError::Invalid)?;
    let (new, out) = change(&text, &entries)?;
    replace(path, &new)?;
    // The lock is released when `lock` is dropped.
    drop(lock);
    Ok(out)
}

/// Writes `text` to a temporary file beside `path` (mode 0600, or the old file's mode) and
/// renames it over `path`.
fn replace(path: &Path, text: &str) -> Result<(), KeysError> {
    let tmp = sibling(path, &format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut out = create_private(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            out.set_permissions(meta.permissions())?;
        }
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<File> {
    File::create(path)
}
