//! "Why was this allowed?": a scope, an account (labels, address) → the granted actions and
//! the deciding rule. The one engine behind `portcullis explain` and the web UI's explain page;
//! it asks [`Acl::decide`], exactly as the proxy does.

use std::fmt;
use std::net::IpAddr;

use crate::acl::{AccessRequest, Acl, Labels, RuleOrigin};
use crate::authn::users::StaticUsers;
use crate::config::{Config, UsersSource};

/// A parsed `type:name:actions` scope (`repository:team/app:pull,push`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository`, `registry`, ...
    pub kind: String,
    /// `team/app`, `catalog`, ...
    pub name: String,
    /// The actions asked for, in order.
    pub actions: Vec<String>,
}

/// The actions a scope may ask for; anything else is a typo (`delet`), never a request.
pub const ACTIONS: &[&str] = &["pull", "push", "delete", "*"];

impl Scope {
    /// Parses `type:name:actions` loosely (any type, name and action); the name may contain
    /// `:` (a registry host with a port). Use [`Scope::parse_strict`] for what a person typed.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let bad = || format!("scope {text:?} must be type:name:actions");
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
        Ok(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

impl Scope {
    /// Parses a scope a person wrote (`explain` on the command line and in the UI, ACL test
    /// files) and refuses what is not one: a type other than `repository` or `registry`
    /// (`repositry`), a repository name the registry would refuse (upper case, `//`), a
    /// registry name other than `catalog`, no action or an unknown one (`delet`). Answering
    /// "denied" for a typo would read as a statement about the ACL.
    pub fn parse_strict(text: &str) -> Result<Scope, String> {
        let scope = Scope::parse(text)?;
        match scope.kind.as_str() {
            "repository" => {
                if !crate::route::is_valid_name(&scope.name) {
                    return Err(format!(
                        "{:?} is not a repository name (lower-case components joined by /)",
                        scope.name
                    ));
                }
            }
            "registry" => {
                if scope.name != "catalog" {
                    return Err(format!(
                        "the registry type has one name, catalog (not {:?})",
                        scope.name
                    ));
                }
            }
            other => {
                return Err(format!(
                    "unknown scope type {other:?} (expected repository or registry)"
                ))
            }
        }
        if scope.actions.is_empty() {
            return Err("the scope asks for no action".into());
        }
        if let Some(bad) = scope
            .actions
            .iter()
            .find(|a| !ACTIONS.contains(&a.as_str()))
        {
            return Err(format!(
                "unknown action {bad:?} (expected pull, push, delete or \"*\")"
            ));
        }
        Ok(scope)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// Who is asking: the same fields the proxy hands the ACL.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The account (`""` for anonymous).
    pub account: &'a str,
    /// Its labels.
    pub labels: &'a Labels,
    /// The client address.
    pub ip: Option<IpAddr>,
    /// The service name rules see.
    pub service: &'a str,
}

/// The ACL's answer to one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The scope as written.
    pub scope: String,
    /// Granted actions (empty: denied).
    pub granted: Vec<String>,
    /// The deciding rule; `None` when no rule matched.
    pub rule: Option<RuleOrigin>,
    /// When asked for an access key: its id and what the ACL alone granted, before the
    /// key's scopes narrowed it to `granted`.
    pub key: Option<(String, Vec<String>)>,
}

impl fmt::Display for Explanation {
    /// `repository:team/app:pull,push: granted pull; decided by acl/20.yaml:1 (comment)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let granted = if self.granted.is_empty() {
            "nothing".to_owned()
        } else {
            self.granted.join(",")
        };
        let narrowed = match &self.key {
            Some((id, acl)) if acl != &self.granted => format!(
                " (the ACL grants {}; access key {id}'s scopes allow only {granted})",
                if acl.is_empty() {
                    "nothing".to_owned()
                } else {
                    acl.join(",")
                }
            ),
            _ => String::new(),
        };
        match &self.rule {
            Some(rule) => write!(
                f,
                "{}: granted {granted}{narrowed}; decided by {rule}",
                self.scope
            ),
            None => write!(
                f,
                "{}: granted nothing; no rule matched (denied)",
                self.scope
            ),
        }
    }
}

/// Decides `scope` for `asker` under `acl`.
pub fn explain(acl: &Acl, asker: Asker<'_>, scope: &Scope) -> Explanation {
    explain_key(acl, asker, scope, None)
}

/// [`explain`] for a caller using the access key `key` (id, scopes): the ACL's answer
/// narrowed by the key's scopes, as the proxy narrows it.
pub fn explain_key(
    acl: &Acl,
    asker: Asker<'_>,
    scope: &Scope,
    key: Option<(&str, &crate::authn::keys::Scopes)>,
) -> Explanation {
    let actions: Vec<&str> = scope.actions.iter().map(String::as_str).collect();
    let grant = acl.decide(&AccessRequest {
        account: asker.account,
        labels: asker.labels,
        ip: asker.ip,
        service: asker.service,
        kind: &scope.kind,
        name: &scope.name,
        actions: &actions,
    });
    match key {
        None => Explanation {
            scope: scope.to_string(),
            granted: grant.actions,
            rule: grant.rule,
            key: None,
        },
        Some((id, scopes)) => Explanation {
            scope: scope.to_string(),
            granted: scopes.narrow(&scope.kind, &scope.name, grant.actions.clone()),
            rule: grant.rule,
            key: Some((id.to_owned(), grant.actions)),
        },
    }
}

/// Parses a `key=value` label argument.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("label {text:?} must be key=value"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("label {text:?} has an empty key"));
    }
    Ok((k.to_owned(), v.trim().to_owned()))
}

/// Adds `key=value` labels to `labels` (each value appended to the key's list).
pub fn add_labels(labels: &mut Labels, args: &[String]) -> Result<(), String> {
    for l in args {
        let (k, v) = parse_label(l)?;
        labels.entry(k).or_default().push(v);
    }
    Ok(())
}

/// The labels `account` has in the static users of `config` (the users file is read again;
/// an unreadable one gives none).
pub fn static_labels(config: &Config, account: &str) -> Labels {
    let own = |users: &StaticUsers| {
        users
            .get(account)
            .map(|u| u.labels.clone())
            .unwrap_or_default()
    };
    match &config.auth.users {
        Some(UsersSource::Inline(u)) => own(u),
        Some(UsersSource::File(p)) => StaticUsers::load(p).map(|u| own(&u)).unwrap_or_default(),
        None => Labels::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn scopes_parse_and_print() {
        let s = Scope::parse("repository:reg:5000/team/app:pull,push").unwrap();
        assert_eq!(s.kind, "repository");
        assert_eq!(s.name, "reg:5000/team/app");
        assert_eq!(s.actions, vec!["pull", "push"]);
        assert_eq!(s.to_string(), "repository:reg:5000/team/app:pull,push");
        assert!(Scope::parse("repository").is_err());
        assert!(Scope::parse("repository:x").is_err());
    }

    #[test]
    fn explanations_name_the_rule() {
        let acl = Acl::parse(
            "- match: {account: test}\n  actions: [pull]\n  comment: readers\n",
            Path::new("acl/20.yaml"),
        )
        .unwrap()
        .acl;
        let labels = Labels::new();
        let asker = |account| Asker {
            account,
            labels: &labels,
            ip: None,
            service: crate::policy::DEFAULT_SERVICE,
        };
        let scope = Scope::parse("repository:team/app:pull,push").unwrap();
        let e = explain(&acl, asker("test"), &scope);
        assert_eq!(e.granted, vec!["pull"]);
        assert_eq!(
            e.to_string(),
            "repository:team/app:pull,push: granted pull; decided by acl/20.yaml:1 (readers)"
        );
        let e = explain(&acl, asker("other"), &scope);
        assert_eq!(
            e.to_string(),
            "repository:team/app:pull,push: granted nothing; no rule matched (denied)"
        );
    }

    #[test]
    fn a_key_narrows_and_says_so() {
        let acl = Acl::parse(
            "- match: {account: ci}\n  actions: [pull, push]\n",
            Path::new("acl.yaml"),
        )
        .unwrap()
        .acl;
        let labels = Labels::new();
        let asker = Asker {
            account: "ci",
            labels: &labels,
            ip: None,
            service: crate::policy::DEFAULT_SERVICE,
        };
        let scopes = crate::authn::keys::Scopes::parse(&["repository:team/*:pull"]).unwrap();
        let scope = Scope::parse("repository:team/app:pull,push").unwrap();
        let e = explain_key(&acl, asker, &scope, Some(("kX", &scopes)));
        assert_eq!(e.granted, vec!["pull"]);
        assert_eq!(
            e.to_string(),
            "repository:team/app:pull,push: granted pull (the ACL grants pull,push; access key kX's scopes allow only pull); decided by acl.yaml:1"
        );
    }

    #[test]
    fn labels_parse() {
        let mut l = Labels::new();
        add_labels(&mut l, &["groups=a".into(), "groups=b".into()]).unwrap();
        assert_eq!(l["groups"], vec!["a", "b"]);
        assert!(add_labels(&mut l, &["nokey".into()]).is_err());
        assert!(add_labels(&mut l, &["=v".into()]).is_err());
    }
}
