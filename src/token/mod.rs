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

mod settings;
pub use settings::Token;

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
    /// kid → credential-binding secret, for the keys whose private half we hold: the signing
    /// key, and previous keys given as private keys. A refresh token signed by a key not
    /// listed here cannot have its binding checked and is refused.
    binding_secrets: std::collections::HashMap<String, [u8; 32]>,
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
    pub fn load(cfg: &Token) -> Result<TokenService, Diagnostics> {
        let key = SigningKey::load(&cfg.key)?;
        let chain = match &cfg.certificate {
            Some(path) => Some(keys::load_certificate_chain(path, key.public())?),
            None => None,
        };
        let mut previous = Vec::new();
        let mut previous_private = Vec::new();
        let mut errors = Vec::new();
        for path in &cfg.previous_keys {
            // A public key or certificate keeps access tokens of that key working; the private
            // key also keeps its refresh tokens working (their binding needs its secret).
            let loaded = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|pem| match PublicKey::from_pem(&pem) {
                    Ok(k) => Ok((k, None)),
                    Err(e) => SigningKey::from_pem(&pem)
                        .map(|k| (k.public().clone(), Some(k)))
                        .map_err(|_| e),
                });
            match loaded {
                Ok((k, private)) => {
                    previous.push(k);
                    previous_private.extend(private);
                }
                Err(e) => errors.push(
                    crate::diagnostic::Diagnostic::new(path, e).key("auth.token.previous_keys"),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let mut service = Self::new(cfg, key, chain);
        for k in &previous_private {
            service
                .binding_secrets
                .insert(k.public().kid().to_string(), *k.binding_secret());
        }
        Ok(if previous.is_empty() {
            service
        } else {
            service.with_verification_keys(previous)
        })
    }

    /// A service from an already loaded key and DER certificate chain (leaf first).
    pub fn new(cfg: &Token, key: SigningKey, chain: Option<Vec<Vec<u8>>>) -> Self {
        let public = key.public().clone();
        let binding_secrets = [(public.kid().to_string(), *key.binding_secret())].into();
        TokenService {
            binding_secrets,
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

    /// Verifies a refresh token (token endpoint only): signature and claims. Whether it is
    /// still bound to its account's credential is [`Self::refresh_is_bound`]'s question.
    pub fn verify_refresh(&self, token: &str) -> Result<Claims, TokenError> {
        self.verifier.verify_refresh(token)
    }

    /// Whether a verified refresh token's `cred` claim matches `stamp`, the account's current
    /// credential stamp: false for a changed password, another backend, a token without the
    /// claim (issued before bindings existed), or one signed by a key whose secret we lack.
    pub fn refresh_is_bound(&self, token: &str, claims: &Claims, stamp: &[u8]) -> bool {
        let Some(cred) = claims.cred.as_deref() else {
            return false;
        };
        let Some(secret) = jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|h| h.kid)
            .and_then(|kid| self.binding_secrets.get(&kid))
        else {
            return false;
        };
        let expected = signer::binding(secret, &claims.sub, stamp);
        // Constant time: the claim is the client's to choose.
        crate::authn::password::bytes_equal(expected.as_bytes(), cred.as_bytes())
    }

    /// Signs an access token for `account` with `access`, issued at `now` (Unix seconds).
    pub fn sign_access(
        &self,
        account: &str,
        access: Vec<ResourceActions>,
        now: u64,
    ) -> Result<String, TokenError> {
        self.sign_access_via(account, access, now, None, None)
    }

    /// [`Self::sign_access`] for a caller that logged in with an access key or a CI token:
    /// `via` goes into the token (checked again on every use), and the token expires no
    /// later than `not_after` (the CI job token's own `exp`).
    pub fn sign_access_via(
        &self,
        account: &str,
        access: Vec<ResourceActions>,
        now: u64,
        via: Option<claims::ViaClaim>,
        not_after: Option<u64>,
    ) -> Result<String, TokenError> {
        let mut claims = self
            .signer
            .access_claims(account, access, now, self.expiration_secs);
        claims.via = via;
        if let Some(limit) = not_after {
            claims.exp = claims.exp.min(limit);
        }
        self.signer.sign(&claims)
    }

    /// Signs an access token for `account` issued now: for tests and tools.
    pub fn issue(&self, account: &str, access: Vec<ResourceActions>) -> Result<String, TokenError> {
        self.sign_access(account, access, unix_now())
    }

    /// Signs a refresh token for `account`, bound to `stamp` (the credential stamp read
    /// *before* the password check, so a change racing the login ends the token), issued at
    /// `now`.
    pub fn sign_refresh(
        &self,
        account: &str,
        stamp: &[u8],
        now: u64,
    ) -> Result<String, TokenError> {
        let claims = self
            .signer
            .refresh_claims(account, stamp, now, self.refresh_expiration_secs);
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

    fn cfg(dir: &std::path::Path) -> Token {
        let (key, cert) = generate_dev_keypair(dir).unwrap();
        Token {
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

    #[test]
    fn refresh_bindings_survive_a_rotation_only_with_the_previous_private_key() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let old = TokenService::load(&cfg(a.path())).unwrap();
        let refresh = old.sign_refresh("alice", b"stamp", unix_now()).unwrap();
        let claims = old.verify_refresh(&refresh).unwrap();
        assert!(old.refresh_is_bound(&refresh, &claims, b"stamp"));
        assert!(!old.refresh_is_bound(&refresh, &claims, b"other"));
        // The same key loaded again (a restart, another replica) agrees.
        let again = TokenService::load(&cfg_of(a.path())).unwrap();
        assert!(again.refresh_is_bound(&refresh, &claims, b"stamp"));
        // Rotated, the old certificate kept: the token verifies, its binding cannot be checked.
        let mut rotated = cfg(b.path());
        rotated.previous_keys = vec![a.path().join(keys::DEV_CERT_FILE)];
        let new = TokenService::load(&rotated).unwrap();
        let claims = new.verify_refresh(&refresh).unwrap();
        assert!(!new.refresh_is_bound(&refresh, &claims, b"stamp"));
        // The old private key kept instead: both.
        rotated.previous_keys = vec![cfg_key(a.path())];
        let new = TokenService::load(&rotated).unwrap();
        let claims = new.verify_refresh(&refresh).unwrap();
        assert!(new.refresh_is_bound(&refresh, &claims, b"stamp"));
        // Something that is neither is still an error naming the setting.
        std::fs::write(a.path().join("junk.pem"), "junk").unwrap();
        rotated.previous_keys = vec![a.path().join("junk.pem")];
        let e = TokenService::load(&rotated).unwrap_err();
        assert_eq!(e.0[0].key.as_deref(), Some("auth.token.previous_keys"));
    }

    /// The configuration of the dev key pair already in `dir` (not a new one).
    fn cfg_of(dir: &std::path::Path) -> Token {
        Token {
            path: "/auth".into(),
            realm: None,
            issuer: "iss".into(),
            service: "svc \"quoted\"".into(),
            key: cfg_key(dir),
            certificate: Some(dir.join(keys::DEV_CERT_FILE)),
            expiration: std::time::Duration::from_secs(300),
            refresh_expiration: std::time::Duration::from_secs(0),
            previous_keys: vec![],
        }
    }

    fn cfg_key(dir: &std::path::Path) -> std::path::PathBuf {
        dir.join(keys::DEV_KEY_FILE)
    }
}
