//! `auth.token` as the token service reads it (parsed and checked by [`crate::config`]).

use std::path::PathBuf;
use std::time::Duration;

/// `auth.token`: the Docker token service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Path of the token endpoint on `listen`.
    pub path: String,
    /// The realm sent in challenges; `None` builds it from the request's scheme and host.
    pub realm: Option<String>,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens, and the `service` the ACL sees.
    pub service: String,
    /// RSA or EC P-256 private key (PEM) that signs tokens.
    pub key: PathBuf,
    /// Its certificate (PEM), sent as `x5c` and given to registry:2 as `rootcertbundle`.
    pub certificate: Option<PathBuf>,
    /// Public keys or certificates (PEM) whose tokens are still accepted: the previous key
    /// during a key rotation, so nobody is logged out at the switch.
    pub previous_keys: Vec<PathBuf>,
    /// Lifetime of access tokens.
    pub expiration: Duration,
    /// Lifetime of refresh tokens (`access_type=offline`).
    pub refresh_expiration: Duration,
}
