//! The registry's own auth, for a registry that keeps it on (`upstream_auth:`): portcullis
//! logs in as one service account, after its own ACL has decided. Clients never see these
//! credentials: their `Authorization` is always removed before forwarding and replaced by
//! the service account's, and the registry's `WWW-Authenticate` never reaches them.
//!
//! Two forms: `basic` (the registry's `auth: htpasswd`) sends the account's Basic credentials
//! on every request; `token` (the registry's `auth: token`, docker_auth or any token server)
//! follows the registry's `Bearer` challenge as a Docker client does and sends a token for
//! exactly the scope portcullis authorized, cached per scope until it expires.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderValue;

use crate::diagnostic::Diagnostic;
use crate::route::{Action, Route};

pub mod token;

pub use token::TokenClient;

/// `upstream_auth:` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settings {
    /// `basic: {username, password_file}`: the registry's `auth: htpasswd` stays on and every
    /// request carries the service account's Basic credentials.
    Basic(Account),
    /// `token: {username, password_file}`: the registry is in token mode; portcullis asks its
    /// token server for tokens as the service account.
    Token(Account),
}

/// A service account: a name and the file holding its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account name at the registry (or its token server).
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

    /// `Basic base64(user:password)` for this account.
    fn basic_header(&self, key: &str) -> Result<HeaderValue, Diagnostic> {
        let password = self.password(key)?;
        basic(&self.username, &password).ok_or_else(|| {
            Diagnostic::new(
                &self.password_file,
                "the password holds characters an HTTP header cannot carry",
            )
            .key(key)
        })
    }
}

/// The loaded credentials of a registry that keeps its own auth on.
pub enum Credentials {
    /// The same header on every request.
    Basic(HeaderValue),
    /// Tokens per scope from the registry's token server.
    Token(Box<TokenClient>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Basic(_) => "Basic(..)",
            Credentials::Token(_) => "Token(..)",
        })
    }
}

impl Settings {
    /// Reads the password file: the credentials requests will carry.
    pub fn load(&self) -> Result<Credentials, Diagnostic> {
        match self {
            Settings::Basic(account) => Ok(Credentials::Basic(
                account.basic_header("upstream_auth.basic.password_file")?,
            )),
            Settings::Token(account) => Ok(Credentials::Token(Box::new(TokenClient::new(
                account.basic_header("upstream_auth.token.password_file")?,
            )))),
        }
    }
}

/// What the registry must grant for `route` (with names as the registry knows them): the
/// scopes of a token for it, as a Docker client would ask. `mount_kept`: the request still
/// carries its mount (which needs pull on the source).
pub fn scopes(route: &Route, mount_kept: bool, rename: &dyn Fn(&str) -> String) -> Vec<String> {
    match route {
        Route::Base => Vec::new(),
        Route::Catalog => vec!["registry:catalog:*".to_owned()],
        Route::Repository {
            name,
            action,
            mount,
            ..
        } => {
            let actions = match action {
                Action::Pull => "pull",
                // Registry 2.8 asks pull and push for every upload step.
                Action::Push => "pull,push",
                Action::Delete => "delete",
            };
            let mut out = vec![format!("repository:{}:{actions}", rename(name))];
            if let (Some(m), true) = (mount, mount_kept) {
                out.push(format!("repository:{}:pull", rename(&m.from)));
            }
            out
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

/// Tokens already fetched, by their scope list, each kept until shortly before it expires.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (HeaderValue, Instant)>>,
    /// Tokens fetched from the token server so far (for the metric and the tests).
    pub(crate) fetched: AtomicU64,
}

/// The most scope lists kept; past it, expired ones are dropped, then all.
const MAX_CACHED: usize = 10_000;

impl TokenCache {
    pub(crate) fn get(&self, key: &str) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(h, _)| h.clone())
    }

    /// Keeps `header` for `key` for most of `lifetime`: a token is never sent in its last
    /// tenth (at least its last second), so clock skew and slow requests do not meet expiry.
    pub(crate) fn put(&self, key: String, header: HeaderValue, lifetime: Duration) {
        let margin = (lifetime / 10).max(Duration::from_secs(1));
        let keep = lifetime.saturating_sub(margin);
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_CACHED {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| now < *until);
            if tokens.len() >= MAX_CACHED {
                tokens.clear();
            }
        }
        tokens.insert(key, (header, Instant::now() + keep));
        self.fetched.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forget(&self, key: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
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
        let header = |s: &Settings| match s.load() {
            Ok(Credentials::Basic(h)) => Ok(h),
            Ok(Credentials::Token(_)) => panic!("basic settings gave a token client"),
            Err(e) => Err(e),
        };
        // base64("portcullis:s3cret")
        assert_eq!(
            header(&s).unwrap().to_str().unwrap(),
            "Basic cG9ydGN1bGxpczpzM2NyZXQ="
        );
        std::fs::write(&file, "").unwrap();
        assert!(header(&s).unwrap_err().to_string().contains("empty"));
        std::fs::write(&file, "a\nb\n").unwrap();
        assert!(header(&s).unwrap_err().to_string().contains("one line"));
        std::fs::remove_file(&file).unwrap();
        let e = header(&s).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("upstream_auth.basic.password_file"));
    }

    #[test]
    fn scopes_follow_the_authorized_route() {
        let parsed = crate::route::parse_request(
            "POST",
            b"/v2/hub/a/blobs/uploads/?mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=hub/b",
        )
        .unwrap();
        let strip = |n: &str| n.trim_start_matches("hub/").to_owned();
        assert_eq!(
            scopes(&parsed.route, true, &strip),
            ["repository:a:pull,push", "repository:b:pull"]
        );
        assert_eq!(
            scopes(&parsed.route, false, &strip),
            ["repository:a:pull,push"]
        );
        let get = crate::route::parse_request("GET", b"/v2/x/manifests/1").unwrap();
        assert_eq!(
            scopes(&get.route, true, &|n| n.to_owned()),
            ["repository:x:pull"]
        );
        let cat = crate::route::parse_request("GET", b"/v2/_catalog").unwrap();
        assert_eq!(
            scopes(&cat.route, true, &|n| n.to_owned()),
            ["registry:catalog:*"]
        );
    }

    #[test]
    fn cached_tokens_end_before_they_expire() {
        let cache = TokenCache::default();
        let h = HeaderValue::from_static("Bearer t");
        cache.put("a".into(), h.clone(), Duration::from_secs(60));
        assert_eq!(cache.get("a"), Some(h.clone()));
        // A one-second token is not worth keeping at all.
        cache.put("b".into(), h, Duration::from_secs(1));
        assert_eq!(cache.get("b"), None);
        cache.forget("a");
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.fetched.load(Ordering::Relaxed), 2);
    }
}
