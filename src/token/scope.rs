//! The `scope` parameter of a token request: `type:name:actions`, possibly several per value
//! (space-separated) and several values.
//!
//! The type is what comes before the first `:`, the actions what comes after the last, and the
//! name the middle. The name is the repository path exactly as it appears in
//! `/v2/<name>/...`, and nothing is ever stripped from it: a client has already removed the
//! registry host when it normalised its reference (`registry.example.com/my.org/app` asks for
//! `repository:my.org/app:pull`), so a first component with a `.` (`my.org/app`) or named
//! `localhost` is part of the repository, and a token for anything else would not match the
//! requests the client then makes. A name holding `:` is outside the repository grammar and
//! refused.

use std::fmt;

/// Most scopes one request may ask for (after merging repeats); a real client asks for one
/// to three. Bounds the work and the token size.
pub const MAX_SCOPES: usize = 64;
/// Longest single scope string considered.
pub const MAX_SCOPE_LEN: usize = 512;

/// One requested scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository`, `registry`, `repository(plugin)`, …
    pub kind: String,
    /// The resource name, exactly as requested (the repository path for `repository`).
    pub name: String,
    /// The requested actions, in order, without duplicates.
    pub actions: Vec<String>,
}

impl fmt::Display for Scope {
    /// `type:name:a,b`, the form the `scope` response field and challenges use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// Why a scope was refused (the token endpoint answers 400). Messages never echo input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not `type:name:actions`.
    #[error("scope must be type:name:actions")]
    Shape,
    /// A type with characters other than letters, digits, `(`, `)`, `-`, `_`.
    #[error("invalid scope type")]
    Type,
    /// An empty name, a name with a `:`, or a repository name outside the grammar.
    #[error("invalid scope name")]
    Name,
    /// No actions, or an action with characters other than letters, digits, `*`, `-`, `_`.
    #[error("invalid scope actions")]
    Actions,
    /// More than [`MAX_SCOPES`] scopes, or one longer than [`MAX_SCOPE_LEN`].
    #[error("too many or too long scopes")]
    TooMany,
}

/// Parses one `type:name:actions`.
pub fn parse_scope(text: &str) -> Result<Scope, ScopeError> {
    if text.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooMany);
    }
    let (kind, rest) = text.split_once(':').ok_or(ScopeError::Shape)?;
    let (name, actions) = rest.rsplit_once(':').ok_or(ScopeError::Shape)?;
    if kind.is_empty()
        || !kind
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'(' | b')' | b'-' | b'_'))
    {
        return Err(ScopeError::Type);
    }
    if name.is_empty() || name.contains(':') || !name.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(ScopeError::Name);
    }
    let is_repository = kind == "repository" || kind.starts_with("repository(");
    if is_repository && !crate::route::is_valid_name(name) {
        return Err(ScopeError::Name);
    }
    let mut list: Vec<String> = Vec::new();
    for action in actions.split(',') {
        if action.is_empty()
            || !action
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'_'))
        {
            return Err(ScopeError::Actions);
        }
        if !list.iter().any(|a| a == action) {
            list.push(action.to_string());
        }
    }
    Ok(Scope {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: list,
    })
}

/// Parses every `scope` value of a request: each may hold several scopes separated by spaces
/// (empty pieces are skipped). Scopes on the same type and name are merged (actions in
/// first-seen order), so the token has one entry per resource.
pub fn parse_scopes<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Scope>, ScopeError> {
    let mut out: Vec<Scope> = Vec::new();
    let mut seen = 0usize;
    for value in values {
        for piece in value.split(' ').filter(|p| !p.is_empty()) {
            seen += 1;
            if seen > MAX_SCOPES * 4 {
                return Err(ScopeError::TooMany);
            }
            let scope = parse_scope(piece)?;
            match out
                .iter_mut()
                .find(|s| s.kind == scope.kind && s.name == scope.name)
            {
                Some(existing) => {
                    for a in scope.actions {
                        if !existing.actions.contains(&a) {
                            existing.actions.push(a);
                        }
                    }
                }
                None => out.push(scope),
            }
            if out.len() > MAX_SCOPES {
                return Err(ScopeError::TooMany);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(kind: &str, name: &str, actions: &[&str]) -> Scope {
        Scope {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn parses_the_forms_clients_send() {
        assert_eq!(
            parse_scope("repository:team/app:pull,push").unwrap(),
            s("repository", "team/app", &["pull", "push"])
        );
        assert_eq!(
            parse_scope("registry:catalog:*").unwrap(),
            s("registry", "catalog", &["*"])
        );
        // The name is the repository path: a first component that looks like a host is
        // part of it, never stripped.
        assert_eq!(
            parse_scope("repository:my.org/app:pull").unwrap(),
            s("repository", "my.org/app", &["pull"])
        );
        assert_eq!(
            parse_scope("repository:registry.example.com/app:push").unwrap(),
            s("repository", "registry.example.com/app", &["push"])
        );
        assert_eq!(
            parse_scope("repository:localhost/app:pull").unwrap(),
            s("repository", "localhost/app", &["pull"])
        );
        assert_eq!(
            parse_scope("repository(plugin):vieux/sshfs:pull").unwrap(),
            s("repository(plugin)", "vieux/sshfs", &["pull"])
        );
        assert_eq!(
            parse_scope("repository:app:pull,pull,push").unwrap(),
            s("repository", "app", &["pull", "push"])
        );
        assert_eq!(
            parse_scope("repository:team/app:pull").unwrap().to_string(),
            "repository:team/app:pull"
        );
    }

    #[test]
    fn repeated_and_space_separated_scopes_merge() {
        let got = parse_scopes([
            "repository:a/b:pull repository:c:push",
            "repository:a/b:push,pull",
            "",
            "  registry:catalog:*  ",
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                s("repository", "a/b", &["pull", "push"]),
                s("repository", "c", &["push"]),
                s("registry", "catalog", &["*"]),
            ]
        );
        assert_eq!(parse_scopes([]).unwrap(), vec![]);
    }

    #[test]
    fn refuses_malformed_scopes() {
        for (bad, err) in [
            ("repository", ScopeError::Shape),
            ("repository:app", ScopeError::Shape),
            (":app:pull", ScopeError::Type),
            ("repo sitory:app:pull", ScopeError::Type),
            ("repository::pull", ScopeError::Name),
            ("repository:a:b:pull", ScopeError::Name),
            ("repository:team/a:b/c:pull", ScopeError::Name),
            ("repository:Team/App:pull", ScopeError::Name),
            ("repository:a//b:pull", ScopeError::Name),
            ("repository:localhost:5000/:pull", ScopeError::Name),
            // A `host:port/` prefix is not a repository path: refused, not stripped.
            ("repository:localhost:5000/team/app:pull", ScopeError::Name),
            ("repository:my.org:443/app:pull", ScopeError::Name),
            ("repository:app:", ScopeError::Actions),
            ("repository:app:pull,", ScopeError::Actions),
            ("repository:app:pu%ll", ScopeError::Actions),
            ("registry:cat\u{e9}log:*", ScopeError::Name),
        ] {
            assert_eq!(parse_scope(bad), Err(err), "{bad}");
        }
        assert_eq!(
            parse_scope(&format!("repository:{}:pull", "a".repeat(600))),
            Err(ScopeError::TooMany)
        );
        let many: Vec<String> = (0..=MAX_SCOPES)
            .map(|i| format!("repository:r{i}:pull"))
            .collect();
        assert_eq!(
            parse_scopes(many.iter().map(String::as_str)),
            Err(ScopeError::TooMany)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(v in "\\PC{0,80}") {
            let _ = parse_scopes([v.as_str()]);
        }
    }
}
