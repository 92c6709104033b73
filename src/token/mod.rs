//! The Docker token service: issuing JWTs at `auth.token.path` (the Docker token and OAuth2
//! flows) and verifying them on `/v2/`, so that `challenge: token` works with a plain
//! registry:2 behind the proxy as well as with portcullis checking tokens itself.
//!
//! | file | job |
//! |---|---|
//! | [`keys`] | PEM keys (PKCS#8, PKCS#1, SEC1), certificate match, libtrust `kid`, dev key pair |
//! | [`claims`] | the claims (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`, `access`) and [`Claims::allows`] |
//! | [`signer`] | claims → JWT with `kid` and `x5c` headers |
//! | [`verifier`] | JWT → claims, algorithm pinned per key, cached per token |
//! | [`scope`] | `type:name:actions` |
//! | [`endpoint`] | one token request → one complete response |
//!
//! [`TokenService`] ties them together and is what the proxy holds (inside the reloadable
//! state, so a reload picks up a new key and starts with an empty cache).

pub mod claims;
pub mod endpoint;
pub mod keys;
pub mod scope;
pub mod signer;
pub mod verifier;

use std::sync::Arc;

pub use claims::{Claims, ResourceActions};
pub use endpoint::{handle, EndpointRequest, EndpointResponse, Outcome, MAX_BODY};
pub use keys::{generate_dev_keypair, libtrust_key_id, PublicKey, SigningKey};
pub use scope::{Scope, ScopeError};
pub use signer::Signer;
pub use verifier::Verifier;

use crate::diagnostic::Diagnostics;

/// Why a token was refused (or could not be made). Callers answer 401 for all the
/// verification errors; the distinction is for logs. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, too long, or claims of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// No `kid`, or a `kid` of no key we hold.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// An `alg` other than the one pinned to the key (`none`, HS256, RS/ES swapped).
    #[error("token algorithm not allowed for its key")]
    WrongAlgorithm,
    /// The signature does not verify.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is ahead (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not ours.
    #[error("token from another issuer")]
    WrongIssuer,
    /// `aud` is not our service.
    #[error("token for another service")]
    WrongAudience,
    /// A refresh token used as an access token, or the reverse.
    #[error("wrong kind of token")]
    WrongUse,
    /// Signing failed (a broken key; should not happen after a successful load).
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The configured token service: signer, verifier and settings.
#[derive(Debug)]
pub struct TokenService {
    signer: Signer,
    verifier: Verifier,
    extra_keys: Vec<PublicKey>,
    path: String,
    realm: Option<String>,
    issuer: String,
    service: String,
    expiration_secs: u64,
    refresh_expiration_secs: u64,
}

impl TokenService {
    /// Loads the key (and certificate) named by `auth.token`. Problems are diagnostics under
    /// `auth.token.key` / `auth.token.certificate`, naming the file.
    pub fn load(cfg: &crate::config::Token) -> Result<TokenService, Diagnostics> {
        let key = SigningKey::load(&cfg.key)?;
        let chain = match &cfg.certificate {
            Some(path) => Some(keys::load_certificate_chain(path, key.public())?),
            None => None,
        };
        let mut previous = Vec::new();
        let mut errors = Vec::new();
        for path in &cfg.previous_keys {
            let loaded = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|pem| PublicKey::from_pem(&pem));
            match loaded {
                Ok(k) => previous.push(k),
                Err(e) => errors.push(
                    crate::diagnostic::Diagnostic::new(path, e).key("auth.token.previous_keys"),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let service = Self::new(cfg, key, chain);
        Ok(if previous.is_empty() {
            service
        } else {
            service.with_verification_keys(previous)
        })
    }

    /// A service from an already loaded key and DER certificate chain (leaf first).
    pub fn new(cfg: &crate::config::Token, key: SigningKey, chain: Option<Vec<Vec<u8>>>) -> Self {
        let public = key.public().clone();
        TokenService {
            verifier: Verifier::new(vec![public], &cfg.issuer, &cfg.service),
            signer: Signer::new(key, chain, &cfg.issuer, &cfg.service),
            extra_keys: Vec::new(),
            path: cfg.path.clone(),
            realm: cfg.realm.clone(),
            issuer: cfg.issuer.clone(),
            service: cfg.service.clone(),
            expiration_secs: cfg.expiration.as_secs().max(1),
            refresh_expiration_secs: cfg.refresh_expiration.as_secs(),
        }
    }

    /// Also accepts tokens signed by `keys` (found by `kid`): the previous key during a key
    /// rotation, so tokens issued just before the switch keep working until they expire.
    pub fn with_verification_keys(mut self, keys: Vec<PublicKey>) -> Self {
        self.extra_keys.extend(keys);
        let mut all = vec![self.signer.key().public().clone()];
        all.extend(self.extra_keys.iter().cloned());
        self.verifier = Verifier::new(all, &self.issuer, &self.service);
        self
    }

    /// Verifies an access token from a `/v2/` request's `Authorization: Bearer` header.
    /// Cheap when repeated: verified tokens are cached until they expire.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        self.verifier.verify(token)
    }

    /// Verifies a refresh token (token endpoint only).
    pub fn verify_refresh(&self, token: &str) -> Result<Claims, TokenError> {
        self.verifier.verify_refresh(token)
    }

    /// Signs an access token for `account` with `access`, issued at `now` (Unix seconds).
    pub fn sign_access(
        &self,
        account: &str,
        access: Vec<ResourceActions>,
        now: u64,
    ) -> Result<String, TokenError> {
        let claims = self
            .signer
            .access_claims(account, access, now, self.expiration_secs);
        self.signer.sign(&claims)
    }

    /// Signs an access token for `account` issued now: for tests and tools.
    pub fn issue(&self, account: &str, access: Vec<ResourceActions>) -> Result<String, TokenError> {
        self.sign_access(account, access, unix_now())
    }

    /// Signs a refresh token for `account`, issued at `now`.
    pub fn sign_refresh(&self, account: &str, now: u64) -> Result<String, TokenError> {
        let claims = self
            .signer
            .refresh_claims(account, now, self.refresh_expiration_secs);
        self.signer.sign(&claims)
    }

    /// The `service` (and `aud`): what the ACL's `service` matches in token mode.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token endpoint's path, which the proxy answers itself instead of routing.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The configured realm URL; `None` means build it from the request's scheme and host
    /// (`https://host/auth`).
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// The signing key's libtrust id, for the start-up summary and `portcullis check`.
    pub fn kid(&self) -> &str {
        self.signer.key().public().kid()
    }

    /// Lifetime of access tokens, seconds (`expires_in`).
    pub fn expiration_secs(&self) -> u64 {
        self.expiration_secs
    }

    /// Lifetime of refresh tokens, seconds; 0 means none are issued.
    pub fn refresh_expiration_secs(&self) -> u64 {
        self.refresh_expiration_secs
    }

    /// The value of `WWW-Authenticate` on a 401 in token mode:
    /// `Bearer realm="…",service="…"[,scope="…"][,error="insufficient_scope"]`, every value
    /// quoted and escaped. `scope` tells the client which token to ask for;
    /// `insufficient` says the token presented was valid but not enough.
    pub fn challenge(&self, realm: &str, scope: Option<&str>, insufficient: bool) -> String {
        let mut out = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            quote_escape(realm),
            quote_escape(&self.service)
        );
        if let Some(scope) = scope {
            out.push_str(&format!(",scope=\"{}\"", quote_escape(scope)));
        }
        if insufficient {
            out.push_str(",error=\"insufficient_scope\"");
        }
        out
    }
}

/// A value for inside `"…"` of an HTTP auth parameter: `\` and `"` escaped, control
/// characters dropped (they cannot appear in a header).
pub(crate) fn quote_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> crate::config::Token {
        let (key, cert) = generate_dev_keypair(dir).unwrap();
        crate::config::Token {
            path: "/auth".into(),
            realm: None,
            issuer: "iss".into(),
            service: "svc \"quoted\"".into(),
            key,
            certificate: Some(cert),
            expiration: std::time::Duration::from_secs(300),
            refresh_expiration: std::time::Duration::from_secs(0),
            previous_keys: vec![],
        }
    }

    #[test]
    fn challenge_is_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenService::load(&cfg(dir.path())).unwrap();
        assert_eq!(
            s.challenge("https://h/auth", None, false),
            r#"Bearer realm="https://h/auth",service="svc \"quoted\"""#
        );
        assert_eq!(
            s.challenge("r", Some("repository:a:pull,push"), true),
            r#"Bearer realm="r",service="svc \"quoted\"",scope="repository:a:pull,push",error="insufficient_scope""#
        );
    }

    #[test]
    fn load_sends_x5c_and_kid_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let s = TokenService::load(&c).unwrap();
        let t = s.issue("alice", vec![]).unwrap();
        let h = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(h.kid.as_deref(), Some(s.kid()));
        assert_eq!(h.x5c_der().unwrap().unwrap().len(), 1);
        assert_eq!(s.verify(&t).unwrap().sub, "alice");
        // Refresh tokens disabled (0): none issued by the endpoint; signing still works.
        assert_eq!(s.refresh_expiration_secs(), 0);

        let other = tempfile::tempdir().unwrap();
        let mut bad = cfg(other.path());
        bad.certificate = c.certificate.clone();
        let e = TokenService::load(&bad).unwrap_err();
        assert_eq!(e.0[0].key.as_deref(), Some("auth.token.certificate"));
        bad.key = c.certificate.clone().unwrap();
        let e = TokenService::load(&bad).unwrap_err();
        assert_eq!(e.0[0].key.as_deref(), Some("auth.token.key"));
        assert!(e.to_string().contains("token.crt"), "{e}");
    }

    #[test]
    fn rotation_keeps_old_tokens_valid() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let old = TokenService::load(&cfg(a.path())).unwrap();
        let token = old.issue("alice", vec![]).unwrap();
        let new = TokenService::load(&cfg(b.path())).unwrap();
        assert_eq!(new.verify(&token).unwrap_err(), TokenError::UnknownKey);
        let new = new.with_verification_keys(vec![SigningKey::load(&cfg_key(a.path()))
            .unwrap()
            .public()
            .clone()]);
        assert_eq!(new.verify(&token).unwrap().sub, "alice");
    }

    fn cfg_key(dir: &std::path::Path) -> std::path::PathBuf {
        dir.join(keys::DEV_KEY_FILE)
    }
}
