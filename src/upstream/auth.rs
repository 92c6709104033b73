//! The registry's own auth, for a registry that keeps it on (`upstream_auth:`): portcullis
//! logs in as one service account, after its own ACL has decided. Clients never see these
//! credentials: their `Authorization` is always removed before forwarding and replaced by
//! the service account's, and the registry's `WWW-Authenticate` never reaches them.

use std::path::PathBuf;

use base64::Engine;
use http::HeaderValue;

use crate::diagnostic::Diagnostic;

/// `upstream_auth:` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settings {
    /// `basic: {username, password_file}`: the registry's `auth: htpasswd` stays on and every
    /// request carries the service account's Basic credentials.
    Basic(Account),
}

/// A service account: a name and the file holding its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account name at the registry.
    pub username: String,
    /// A file holding the password (one line; a trailing newline is ignored), so the password
    /// never sits in proxy.yaml.
    pub password_file: PathBuf,
}

impl Account {
    /// The password, read from its file.
    fn password(&self, key: &str) -> Result<String, Diagnostic> {
        let text = std::fs::read_to_string(&self.password_file).map_err(|e| {
            Diagnostic::new(&self.password_file, format!("cannot read: {e}")).key(key)
        })?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(
                Diagnostic::new(&self.password_file, "the password file is empty").key(key),
            );
        }
        if password.contains(['\n', '\r']) {
            return Err(Diagnostic::new(
                &self.password_file,
                "holds more than one line: write the password alone",
            )
            .key(key));
        }
        Ok(password.to_string())
    }
}

impl Settings {
    /// The `Authorization` header every request to the registry carries.
    pub fn load(&self) -> Result<HeaderValue, Diagnostic> {
        match self {
            Settings::Basic(account) => {
                let password = account.password("upstream_auth.basic.password_file")?;
                basic(&account.username, &password).ok_or_else(|| {
                    Diagnostic::new(
                        &account.password_file,
                        "the password holds characters an HTTP header cannot carry",
                    )
                    .key("upstream_auth.basic.password_file")
                })
            }
        }
    }
}

/// `Basic base64(user:password)`, marked sensitive so it is never printed in a debug dump.
fn basic(username: &str, password: &str) -> Option<HeaderValue> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let s = Settings::Basic(Account {
            username: "portcullis".into(),
            password_file: file.clone(),
        });
        // base64("portcullis:s3cret")
        assert_eq!(
            s.load().unwrap().to_str().unwrap(),
            "Basic cG9ydGN1bGxpczpzM2NyZXQ="
        );
        std::fs::write(&file, "").unwrap();
        assert!(s.load().unwrap_err().to_string().contains("empty"));
        std::fs::write(&file, "a\nb\n").unwrap();
        assert!(s.load().unwrap_err().to_string().contains("one line"));
        std::fs::remove_file(&file).unwrap();
        let e = s.load().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("upstream_auth.basic.password_file"));
    }
}
