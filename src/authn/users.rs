//! Static users in docker_auth's `users:` schema, so an existing `auth_config.yml` can be
//! pointed at as it is. Passwords are bcrypt hashes; the anonymous account `""` needs none.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use serde::Deserialize;

use super::{password, Authenticator, AuthnError, Identity, Labels, Lookup};
use crate::diagnostic::{Diagnostic, Diagnostics};

/// One user entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// bcrypt hash; `None` only for the anonymous account.
    pub password: Option<String>,
    /// Labels the ACL can match.
    pub labels: Labels,
}

/// The static users, by account name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticUsers {
    users: BTreeMap<String, User>,
}

/// One entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Users as written, before the checks that need the whole entry (password present and
/// bcrypt). Kept apart from [`StaticUsers`] so those checks can point at the entry's line.
#[derive(Deserialize, Default)]
#[serde(transparent)]
pub struct RawUsers(BTreeMap<String, Option<RawUser>>);

impl RawUsers {
    /// Checks every entry; `locate(&[name, field])` finds the (line, column) of a value inside
    /// the users mapping (`["bob", "password"]`; `["bob"]` for the entry) for messages.
    pub fn validate(
        self,
        path: &Path,
        locate: impl Fn(&[&str]) -> Option<(usize, usize)>,
    ) -> Result<StaticUsers, Diagnostics> {
        let mut users = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, raw) in self.0 {
            let raw = raw.unwrap_or(RawUser {
                password: None,
                labels: BTreeMap::new(),
            });
            let problem = match &raw.password {
                None if !name.is_empty() => Some(
                    "`password` is missing (a bcrypt hash; make one with `portcullis hash-password`)",
                ),
                Some(p) if !password::is_bcrypt(p) => Some(
                    "`password` is not a bcrypt hash ($2a$, $2b$ or $2y$); make one with `portcullis hash-password`",
                ),
                _ => None,
            };
            if let Some(problem) = problem {
                let mut d = Diagnostic::new(path, problem);
                if let Some((line, column)) = locate(&[name.as_str(), "password"]) {
                    d = d.at(line, column).key(format!("users.{name}.password"));
                } else {
                    d = d.key(format!("users.{name}"));
                    if let Some((line, column)) = locate(&[name.as_str()]) {
                        d = d.at(line, column);
                    }
                }
                errors.push(d);
                continue;
            }
            let labels = raw
                .labels
                .into_iter()
                .map(|(k, v)| {
                    let values = match v {
                        OneOrMany::One(s) => vec![s],
                        OneOrMany::Many(v) => v,
                    };
                    (k, values)
                })
                .collect();
            users.insert(
                name,
                User {
                    password: raw.password,
                    labels,
                },
            );
        }
        if errors.is_empty() {
            Ok(StaticUsers { users })
        } else {
            Err(Diagnostics(errors))
        }
    }
}

/// A docker_auth `auth_config.yml`: only `users:` is read, the other sections are ignored.
#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    users: RawUsers,
}

impl StaticUsers {
    /// Loads a users file: a bare map, or a document with a top-level `users:` key.
    pub fn load(path: &Path) -> Result<StaticUsers, Diagnostics> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::new(path, format!("cannot read users file: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses the text of a users file at `path`. A top-level `users:` key whose value is not
    /// itself a user entry marks a docker_auth document (so a bare map cannot have a user
    /// literally named `users` with other top-level users beside it; rename such a user).
    pub fn parse(text: &str, path: &Path) -> Result<StaticUsers, Diagnostics> {
        let locate = |e: serde_yaml_ng::Error| {
            Diagnostics::from(crate::yaml::serde_diagnostic(path, text, &e))
        };
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(locate)?;
        let is_document = value
            .as_mapping()
            .and_then(|m| m.get("users"))
            .is_some_and(|u| {
                u.is_null()
                    || u.as_mapping().is_none_or(|m| {
                        !m.keys()
                            .all(|k| k.as_str().is_some_and(|k| k == "password" || k == "labels"))
                    })
            });
        let users_null = value.is_null()
            || (is_document
                && value
                    .get("users")
                    .is_some_and(serde_yaml_ng::Value::is_null));
        let raw = if users_null {
            RawUsers::default()
        } else if is_document {
            serde_yaml_ng::from_str::<Document>(text)
                .map(|d| d.users)
                .map_err(locate)?
        } else {
            serde_yaml_ng::from_str::<RawUsers>(text).map_err(locate)?
        };
        let tree = crate::yaml::parse_marked(text).ok().flatten();
        let users = tree.as_ref().map(|root| {
            if is_document {
                root.get("users").unwrap_or(root)
            } else {
                root
            }
        });
        raw.validate(path, |keys| {
            users
                .and_then(|u| crate::yaml::at_path(u, keys))
                .map(|n| (n.line, n.column))
        })
    }

    /// True when `account` has an entry.
    pub fn contains(&self, account: &str) -> bool {
        self.users.contains_key(account)
    }

    /// The entry for `account`.
    pub fn get(&self, account: &str) -> Option<&User> {
        self.users.get(account)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[async_trait]
impl Authenticator for StaticUsers {
    async fn authenticate(&self, account: &str, pw: &str) -> Lookup {
        let Some(user) = self.users.get(account) else {
            return Lookup::Unknown;
        };
        let Some(hash) = &user.password else {
            // Only the anonymous account has no password; Authenticators handles it.
            return Lookup::Decided(Err(AuthnError::BadPassword));
        };
        Lookup::Decided(match password::verify(pw, hash).await {
            Ok(true) => Ok(Identity {
                account: account.to_owned(),
                labels: user.labels.clone(),
                via: None,
            }),
            Ok(false) => Err(AuthnError::BadPassword),
            Err(e) => Err(AuthnError::Unavailable(e)),
        })
    }

    async fn lookup(&self, account: &str) -> Lookup {
        match self.users.get(account) {
            None => Lookup::Unknown,
            Some(user) => Lookup::Decided(Ok(Identity {
                account: account.to_owned(),
                labels: user.labels.clone(),
                via: None,
            })),
        }
    }

    async fn current(&self, account: &str) -> super::Current {
        match self.users.get(account) {
            None => super::Current::Unknown,
            Some(user) => super::Current::Decided(Ok((
                Identity {
                    account: account.to_owned(),
                    labels: user.labels.clone(),
                    via: None,
                },
                user.password.clone().unwrap_or_default().into_bytes(),
            ))),
        }
    }

    fn fingerprint(&self, account: &str) -> Option<u64> {
        let user = self.users.get(account)?;
        Some(super::digest(&(&user.password, &user.labels)))
    }

    fn account_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    fn name(&self) -> &str {
        "users"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "$2y$05$LzHNqrNFLRXUzvmtfyeSIOVbV3x5Q4p8FqB5qSl9v03G5yv0j4E1y";

    fn parse(text: &str) -> Result<StaticUsers, Diagnostics> {
        StaticUsers::parse(text, Path::new("users.yaml"))
    }

    #[test]
    fn bare_map_and_docker_auth_document() {
        let bare = parse(&format!("admin:\n  password: \"{H}\"\n\"\": {{}}\n")).unwrap();
        assert!(bare.contains("admin") && bare.contains(""));
        let doc = parse(&format!(
            "server:\n  addr: \":5001\"\ntoken:\n  issuer: x\nusers:\n  admin:\n    password: \"{H}\"\n    labels:\n      groups: [a, b]\n      team: core\nacl:\n  - match: {{account: admin}}\n    actions: [\"*\"]\n"
        ))
        .unwrap();
        assert_eq!(doc.len(), 1);
        let admin = doc.get("admin").unwrap();
        assert_eq!(admin.labels["groups"], vec!["a", "b"]);
        assert_eq!(admin.labels["team"], vec!["core"]);
    }

    #[test]
    fn a_user_named_users_in_a_bare_map_still_works() {
        let u = parse(&format!("users:\n  password: \"{H}\"\n")).unwrap();
        assert!(u.contains("users"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(&format!(
            "admin:\n  password: \"{H}\"\nbob:\n  labels: {{}}\n"
        ))
        .unwrap_err();
        assert!(e.0[0].message.contains("password"), "{e}");
        assert_eq!(e.0[0].key.as_deref(), Some("users.bob"), "{e}");
        // The entry that lacks it.
        assert_eq!((e.0[0].line, e.0[0].column), (Some(4), Some(3)), "{e}");

        // At the value itself, keyed by its full path.
        let e = parse("alice:\n  password: secret\n").unwrap_err();
        assert!(e.0[0].message.contains("not a bcrypt hash"), "{e}");
        assert_eq!((e.0[0].line, e.0[0].column), (Some(2), Some(13)), "{e}");
        assert_eq!(e.0[0].key.as_deref(), Some("users.alice.password"), "{e}");

        let e = parse(&format!("alice:\n  pasword: \"{H}\"\n")).unwrap_err();
        assert!(e.0[0].message.contains("pasword"), "{e}");
        assert_eq!(e.0[0].line, Some(2), "{e}");

        let e = parse(&format!(
            "users:\n  alice:\n    password: \"{H}\"\n    group: x\n"
        ))
        .unwrap_err();
        assert_eq!(e.0[0].line, Some(4), "{e}");
    }

    #[test]
    fn empty_file_is_no_users() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("users:\n").unwrap().is_empty());
    }
}
