//! `auth.oidc` as the single sign-on client reads it (parsed and checked by [`crate::config`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// `auth.oidc`: one OpenID provider people sign in to the web UI with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oidc {
    /// The issuer, `https://…` exactly as the provider writes it in its tokens (`iss`); its
    /// discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client id registered at the provider; ID tokens must name it in `aud`.
    pub client_id: String,
    /// File holding the client secret (trailing line end removed).
    pub client_secret_file: PathBuf,
    /// Scopes asked for besides `openid` (always asked for).
    pub scopes: Vec<String>,
    /// The claim whose value is the account name (default `preferred_username`).
    pub account_claim: String,
    /// The claim whose values become the `groups` label (default `groups`).
    pub groups_claim: String,
    /// Further labels: label name → claim.
    pub labels: BTreeMap<String, String>,
    /// A private CA (PEM bundle) for the provider's certificate; otherwise the system's.
    pub ca_certificate: Option<PathBuf>,
    /// The callback address registered at the provider; `None`: built from the request
    /// (`<scheme>://<host><ui.path>sso/callback`).
    pub redirect_url: Option<String>,
}

/// The scopes asked for when `scopes` is not written: `profile` carries
/// `preferred_username` at most providers.
pub fn default_scopes() -> Vec<String> {
    vec!["profile".into()]
}
