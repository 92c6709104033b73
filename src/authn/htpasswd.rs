//! htpasswd files as nginx and registry:2 use them, bcrypt only: the other hash kinds
//! (apr1/MD5, SHA1, crypt) are too cheap to brute-force to accept in a new deployment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{password, Authenticator, AuthnError, Identity, Lookup};
use crate::diagnostic::{Diagnostic, Diagnostics};

/// One htpasswd file's accounts.
#[derive(Debug, Clone)]
pub struct Htpasswd {
    name: String,
    users: HashMap<String, String>,
}

impl Htpasswd {
    /// Loads `path`.
    pub fn load(path: &Path) -> Result<Htpasswd, Diagnostics> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::new(path, format!("cannot read htpasswd file: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses `name:hash` lines; blank lines and `#` comments are allowed. Every bad line is
    /// reported.
    pub fn parse(text: &str, path: &Path) -> Result<Htpasswd, Diagnostics> {
        let mut users = HashMap::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = |msg: String| {
                Diagnostic::new(path, msg)
                    .at_line(i + 1)
                    .key("auth.htpasswd")
            };
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                errors.push(at("expected `name:bcrypt-hash`".into()));
                continue;
            };
            if name.is_empty() {
                errors.push(at("empty account name".into()));
            } else if !password::is_bcrypt(hash) {
                errors.push(at(format!(
                    "{name:?} does not have a bcrypt hash; re-hash it with `htpasswd -B`"
                )));
            } else if users.insert(name.to_owned(), hash.to_owned()).is_some() {
                errors.push(at(format!("{name:?} is listed twice")));
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(Htpasswd {
            name: format!("htpasswd:{}", PathBuf::from(path).display()),
            users,
        })
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file has none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[async_trait]
impl Authenticator for Htpasswd {
    async fn authenticate(&self, account: &str, pw: &str) -> Lookup {
        let Some(hash) = self.users.get(account) else {
            return Lookup::Unknown;
        };
        Lookup::Decided(match password::verify(pw, hash).await {
            Ok(true) => Ok(Identity {
                account: account.to_owned(),
                labels: Default::default(),
                via: None,
            }),
            Ok(false) => Err(AuthnError::BadPassword),
            Err(e) => Err(AuthnError::Unavailable(e)),
        })
    }

    async fn lookup(&self, account: &str) -> Lookup {
        if self.users.contains_key(account) {
            Lookup::Decided(Ok(Identity {
                account: account.to_owned(),
                labels: Default::default(),
                via: None,
            }))
        } else {
            Lookup::Unknown
        }
    }

    async fn current(&self, account: &str) -> super::Current {
        match self.users.get(account) {
            None => super::Current::Unknown,
            Some(hash) => super::Current::Decided(Ok((
                Identity {
                    account: account.to_owned(),
                    labels: Default::default(),
                    via: None,
                },
                hash.clone().into_bytes(),
            ))),
        }
    }

    fn fingerprint(&self, account: &str) -> Option<u64> {
        self.users.get(account).map(super::digest)
    }

    fn account_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_and_checks() {
        let h = bcrypt::hash("pw", 4).unwrap();
        let f = Htpasswd::parse(&format!("# c\n\nalice:{h}\r\n"), Path::new("x")).unwrap();
        assert_eq!(f.len(), 1);
        assert!(matches!(
            f.authenticate("alice", "pw").await,
            Lookup::Decided(Ok(_))
        ));
        assert!(matches!(
            f.authenticate("alice", "no").await,
            Lookup::Decided(Err(AuthnError::BadPassword))
        ));
        assert!(matches!(f.authenticate("bob", "pw").await, Lookup::Unknown));
    }

    #[test]
    fn other_hash_kinds_are_errors_with_lines() {
        let h = bcrypt::hash("pw", 4).unwrap();
        let text = format!(
            "ok:{h}\nmd5:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\nsha:{{SHA}}qUqP5cyxm6YcTAhz05Hph5gvu9M=\nnocolon\n:{h}\nok:{h}\n"
        );
        let e = Htpasswd::parse(&text, Path::new("reg.htpasswd")).unwrap_err();
        let lines: Vec<_> = e.0.iter().map(|d| d.line.unwrap()).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6], "{e}");
        assert!(
            e.0[0]
                .to_string()
                .starts_with("reg.htpasswd:2: auth.htpasswd: "),
            "{e}"
        );
        assert!(e.0[0].message.contains("htpasswd -B"));
    }
}
