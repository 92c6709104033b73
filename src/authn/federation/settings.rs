//! `auth.federation` as the federation reads it (parsed and checked by [`crate::config`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One trusted issuer of CI job ID tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The `iss` of its tokens, an `https://` URL; its discovery document is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The `aud` its tokens must carry (what the CI job asks its platform for).
    pub audience: String,
    /// The account a token stands for: text with `{claim}` placeholders
    /// (`github:{repository}`).
    pub account: String,
    /// Labels from claims: label name → claim name.
    pub labels: BTreeMap<String, String>,
    /// A PEM bundle trusted (instead of the system's roots) for the issuer's HTTPS.
    pub ca_certificate: Option<PathBuf>,
}
