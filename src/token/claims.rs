//! The JWT claims portcullis issues and accepts: the Docker token format
//! (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`, `access`), plus `token_use` marking
//! refresh tokens.

use serde::{Deserialize, Serialize};

/// The `token_use` value of refresh tokens. Access tokens carry no `token_use`, so neither
/// kind can be passed off as the other.
pub const REFRESH_USE: &str = "refresh";

/// One entry of `access`: what a token allows on one resource, as registry:2 reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// The scope type: `repository`, `registry`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource: `team/app`, `catalog`.
    pub name: String,
    /// Granted actions: `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// The claims of a token. `aud` is a string, never an array: registry 2.8 rejects arrays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (`auth.token.issuer`).
    pub iss: String,
    /// The account; `""` for anonymous.
    pub sub: String,
    /// The service (`auth.token.service`).
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not valid before, seconds since the epoch.
    pub nbf: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// A random id, so two tokens are never equal (and can be told apart in logs).
    pub jti: String,
    /// What the token allows; empty (and left out) for refresh tokens and `docker login`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<ResourceActions>,
    /// `"refresh"` on refresh tokens; absent on access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
    /// Refresh tokens only: the credential binding, a MAC (keyed by a secret derived from the
    /// signing key) of the account and the stamp of the credential it logged in with
    /// ([`crate::authn::Authenticator::current`]). A refresh checks it against the account's
    /// current stamp, so a password change, a removal or a move to another backend ends the
    /// token. Never an unkeyed digest: the claims are readable by whoever holds the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cred: Option<String>,
    /// Access tokens issued for an access key or a CI job's ID token: that credential, so
    /// every use of the token checks it again (a revoked key ends its tokens on the next
    /// request; a CI identity keeps the labels it was given, which no backend holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ViaClaim>,
}

/// The `via` claim: how the token's subject logged in, when not with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ViaClaim {
    /// An access key, by id.
    Key {
        /// The key's id.
        id: String,
    },
    /// A CI job's ID token from `iss`, with the labels its claims mapped to.
    Ci {
        /// The job token's issuer.
        iss: String,
        /// The labels the federation mapped from the job token's claims.
        labels: crate::acl::Labels,
    },
}

impl Claims {
    /// Whether the token allows `action` on `kind:name`: an `access` entry with exactly this
    /// type and name lists the action or `*`. This is the check the proxy makes on `/v2/`
    /// requests in token mode, the same one registry:2 makes.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|r| {
            r.kind == kind && r.name == name && r.actions.iter().any(|a| a == action || a == "*")
        })
    }

    /// Whether this is a refresh token (only good at the token endpoint).
    pub fn is_refresh(&self) -> bool {
        self.token_use.is_some()
    }
}

/// `2024-05-01T12:00:00Z` for seconds since the epoch (the `issued_at` of responses).
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(access: Vec<ResourceActions>) -> Claims {
        Claims {
            iss: "i".into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp: 2,
            nbf: 0,
            iat: 1,
            jti: "j".into(),
            access,
            token_use: None,
            cred: None,
            via: None,
        }
    }

    fn ra(kind: &str, name: &str, actions: &[&str]) -> ResourceActions {
        ResourceActions {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn allows_matches_exact_names_and_star() {
        let c = claims(vec![
            ra("repository", "team/app", &["pull"]),
            ra("registry", "catalog", &["*"]),
            ra("repository", "all/x", &["*"]),
        ]);
        assert!(c.allows("repository", "team/app", "pull"));
        assert!(!c.allows("repository", "team/app", "push"));
        assert!(!c.allows("repository", "team/ap", "pull"));
        assert!(!c.allows("repository", "team/*", "pull"));
        assert!(!c.allows("registry", "team/app", "pull"));
        assert!(c.allows("registry", "catalog", "*"));
        assert!(c.allows("repository", "all/x", "delete"));
    }

    #[test]
    fn serializes_aud_as_string_and_type_key() {
        let v = serde_json::to_value(claims(vec![ra("repository", "a", &["pull"])])).unwrap();
        assert!(v["aud"].is_string());
        assert_eq!(v["access"][0]["type"], "repository");
        assert!(v.get("token_use").is_none());
        let v = serde_json::to_value(claims(vec![])).unwrap();
        assert!(v.get("access").is_none());
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_714_564_800), "2024-05-01T12:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
