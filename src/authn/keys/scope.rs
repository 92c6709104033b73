//! A key's scopes: `TYPE:NAME:ACTIONS` (`repository:team/*:pull,push`, `registry:catalog:*`),
//! with NAME in the ACL's pattern syntax (exact, glob with `*`/`**`, `/regex/`).
//!
//! A key may do what its account may do **and** what one of its scopes allows: the scopes
//! only ever narrow the ACL's answer (see [`Scopes::narrow`]). A key with no scopes has its
//! account's rights.

use crate::acl::rule::RuleActions;
use crate::acl::{AccessRequest, Labels, Pattern};

/// The scope types a key may name; the token protocol knows no others that portcullis grants.
const TYPES: [&str; 2] = ["repository", "registry"];

/// One parsed scope of a key.
#[derive(Debug, Clone)]
pub struct KeyScope {
    source: String,
    kind: String,
    name: Pattern,
    actions: RuleActions,
}

impl KeyScope {
    /// Parses `TYPE:NAME:ACTIONS`. Placeholders (`${account}`) are refused: a key's scope is
    /// fixed when the key is made, and a pattern that changes with the request would make
    /// "what may this key do" a question with no fixed answer.
    pub fn parse(text: &str) -> Result<KeyScope, String> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("scope {text:?}: expected TYPE:NAME:ACTIONS"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("scope {text:?}: expected TYPE:NAME:ACTIONS"))?;
        if !TYPES.contains(&kind) {
            return Err(format!(
                "scope {text:?}: type must be `repository` or `registry`, not {kind:?}"
            ));
        }
        if name.is_empty() {
            return Err(format!("scope {text:?}: empty name"));
        }
        let compiled = Pattern::compile(name).map_err(|e| format!("scope {text:?}: {e}"))?;
        if compiled.pattern.has_placeholders() {
            return Err(format!(
                "scope {text:?}: placeholders like ${{account}} are not allowed in a key's scope"
            ));
        }
        let mut set = RuleActions::default();
        for action in actions.split(',') {
            if !set.add(action.trim()) {
                return Err(format!(
                    "scope {text:?}: unknown action {:?} (pull, push, delete or *)",
                    action.trim()
                ));
            }
        }
        Ok(KeyScope {
            source: text.to_owned(),
            kind: kind.to_owned(),
            name: compiled.pattern,
            actions: set,
        })
    }

    fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        if self.kind != kind || !self.actions.grants(action) {
            return false;
        }
        // Patterns without placeholders read nothing from the request but the value.
        let labels = Labels::new();
        let req = AccessRequest {
            account: "",
            labels: &labels,
            ip: None,
            service: "",
            kind,
            name,
            actions: &[],
        };
        self.name.matches(name, &req)
    }
}

/// All the scopes of one key; empty means "no restriction beyond the ACL".
#[derive(Debug, Clone, Default)]
pub struct Scopes(Vec<KeyScope>);

/// Two sets of scopes are equal when they were written the same (a compiled pattern has no
/// equality of its own).
impl PartialEq for Scopes {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.source == b.source)
    }
}

impl Eq for Scopes {}

impl Scopes {
    /// The scopes as written.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| s.source.as_str())
    }

    /// Parses every scope, or says which one is wrong.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Scopes, String> {
        texts
            .iter()
            .map(|t| KeyScope::parse(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Scopes)
    }

    /// True when the key has no scopes (and so its account's full rights).
    pub fn is_unrestricted(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether one of the scopes allows `action` on `kind:name`.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.is_unrestricted() || self.0.iter().any(|s| s.allows(kind, name, action))
    }

    /// The intersection: of the actions the ACL `granted` on `kind:name`, those a scope
    /// also allows, in the same order.
    pub fn narrow(&self, kind: &str, name: &str, granted: Vec<String>) -> Vec<String> {
        if self.is_unrestricted() {
            return granted;
        }
        granted
            .into_iter()
            .filter(|action| self.allows(kind, name, action))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn intersection_never_widens_the_acl() {
        let s = Scopes::parse(&["repository:team/*:pull,push", "registry:catalog:*"]).unwrap();
        // Scope allows pull, push; ACL granted pull, push, delete: delete goes.
        assert_eq!(
            s.narrow("repository", "team/app", v(&["pull", "push", "delete"])),
            v(&["pull", "push"])
        );
        // ACL granted only pull: the scope does not add push.
        assert_eq!(
            s.narrow("repository", "team/app", v(&["pull"])),
            v(&["pull"])
        );
        // `*` in a glob does not cross `/`.
        assert!(s.narrow("repository", "team/a/b", v(&["pull"])).is_empty());
        assert!(s.narrow("repository", "other/app", v(&["pull"])).is_empty());
        // The type must match: a repository called `catalog` is not the catalog.
        assert!(s.narrow("repository", "catalog", v(&["pull"])).is_empty());
        assert_eq!(s.narrow("registry", "catalog", v(&["*"])), v(&["*"]));
    }

    #[test]
    fn a_requested_star_needs_a_star_scope() {
        let s = Scopes::parse(&["repository:app:pull,push,delete"]).unwrap();
        assert!(s.narrow("repository", "app", v(&["*"])).is_empty());
        let s = Scopes::parse(&["repository:app:*"]).unwrap();
        assert_eq!(s.narrow("repository", "app", v(&["*"])), v(&["*"]));
    }

    #[test]
    fn no_scopes_is_the_account_s_rights() {
        let s = Scopes::parse::<&str>(&[]).unwrap();
        assert!(s.is_unrestricted());
        assert_eq!(
            s.narrow("repository", "x", v(&["pull", "delete"])),
            v(&["pull", "delete"])
        );
    }

    #[test]
    fn double_star_and_regex_work_as_in_the_acl() {
        let s = Scopes::parse(&["repository:team/**:pull", "repository:/ci-[0-9]+/:push"]).unwrap();
        assert!(s.allows("repository", "team/a/b/c", "pull"));
        assert!(!s.allows("repository", "team/a/b/c", "push"));
        assert!(s.allows("repository", "ci-12", "push"));
        assert!(!s.allows("repository", "xci-12", "push"));
    }

    #[test]
    fn hostile_scopes_are_refused_with_a_reason() {
        for bad in [
            "",
            "repository",
            "repository:app",
            "repository::pull",
            "repo:app:pull",
            "repository:app:pull,own",
            "repository:app:",
            "repository:${account}/*:pull",
            "repository:/(/:pull",
            "repository:[z-a]:pull",
            "Repository:app:pull",
        ] {
            assert!(KeyScope::parse(bad).is_err(), "{bad:?} was accepted");
        }
        // A name may hold a colon only before the last one (actions never contain one).
        assert!(KeyScope::parse("repository:a:b:pull").is_ok());
    }
}
