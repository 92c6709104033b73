//! Keyless CI (`auth.federation`): a CI job logs in with the ID token its platform gives it
//! (GitHub Actions, GitLab CI), as the password with any username. The token is verified
//! against its issuer's published keys ([`jwks`]) — signature with an algorithm of the key's
//! own type, `iss`, `aud`, `exp`, `nbf` — and its claims become an account and labels
//! ([`template`]); the ACL then decides as for anyone. No long-lived secret lives in CI.

pub mod jwks;
mod settings;
pub mod template;

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{errors::ErrorKind, Algorithm, Validation};
use serde_json::{Map, Value};

pub use settings::Settings;

use crate::acl::Labels;
use crate::diagnostic::{Diagnostic, Diagnostics};

/// Clock skew allowed on `exp` and `nbf`: CI tokens live minutes, so this stays small.
pub const LEEWAY_SECS: u64 = 30;

/// What a verified job token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The account built from the claims.
    pub account: String,
    /// Labels from the claims.
    pub labels: Labels,
    /// The issuer.
    pub issuer: String,
    /// The token's `exp`.
    pub expires: u64,
}

/// Why a job token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The token is not acceptable; `forged` when it is not a genuine token of a trusted
    /// issuer (bad signature, forbidden algorithm, untrusted issuer) rather than a genuine
    /// one that does not fit (expired, other audience, a claim missing, a key id not known
    /// yet).
    Bad {
        /// For the audit line.
        reason: String,
        /// Counts as a failed attempt for the client address.
        forged: bool,
    },
    /// The issuer's keys could not be fetched.
    Unavailable(String),
}

fn bad(reason: impl Into<String>, forged: bool) -> Refused {
    Refused::Bad {
        reason: reason.into(),
        forged,
    }
}

struct Issuer {
    settings: Settings,
    account: template::Template,
    keys: Arc<jwks::IssuerKeys>,
}

/// The trusted issuers.
pub struct Federation {
    issuers: Vec<Issuer>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.issuers.iter().map(|i| &i.settings.issuer))
            .finish()
    }
}

/// The HTTPS client an issuer's keys are fetched with: its own CA bundle only when one is
/// configured, else the usual web roots; no redirects (the discovery document and JWKS are
/// where the issuer says), no connection pool (fetches are rare).
fn client(ca: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(jwks::TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .https_only(true)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
        if certs.is_empty() {
            return Err("no certificate in the file".into());
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

impl Federation {
    /// Builds the issuers (reads each CA bundle; fetches nothing: keys are fetched on the
    /// first token of each issuer). `file` is proxy.yaml, for messages.
    pub fn load(settings: &[Settings], file: &Path) -> Result<Federation, Diagnostics> {
        let mut issuers = Vec::new();
        let mut errors = Vec::new();
        for (i, s) in settings.iter().enumerate() {
            let account = match template::Template::parse(&s.account) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors
                        .push(Diagnostic::new(file, e).key(format!("auth.federation.{i}.account")));
                    None
                }
            };
            let http = match client(s.ca_certificate.as_deref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    let at = s.ca_certificate.as_deref().unwrap_or(file);
                    errors.push(
                        Diagnostic::new(at, e).key(format!("auth.federation.{i}.ca_certificate")),
                    );
                    None
                }
            };
            if let (Some(account), Some(http)) = (account, http) {
                issuers.push(Issuer {
                    keys: Arc::new(jwks::IssuerKeys::new(&s.issuer, http)),
                    settings: s.clone(),
                    account,
                });
            }
        }
        if errors.is_empty() {
            Ok(Federation { issuers })
        } else {
            Err(Diagnostics(errors))
        }
    }

    /// Takes over `old`'s fetched keys for every issuer configured exactly as before, so a
    /// reload (any file changing) does not make the next job of each issuer fetch again.
    pub fn adopt_keys(&mut self, old: &Federation) {
        for issuer in &mut self.issuers {
            if let Some(same) = old.issuers.iter().find(|o| o.settings == issuer.settings) {
                issuer.keys = same.keys.clone();
            }
        }
    }

    /// Whether tokens of `issuer` are accepted.
    pub fn trusts(&self, issuer: &str) -> bool {
        self.issuers.iter().any(|i| i.settings.issuer == issuer)
    }

    /// True when `password` has the shape of a JWT (three base64url parts, a JSON header).
    /// Such a password is a CI token while federation is on, decided by [`Self::verify`]
    /// alone and never tried as an account's password.
    pub fn looks_like_jwt(password: &str) -> bool {
        let mut parts = password.split('.');
        let ok = |p: Option<&str>| {
            p.is_some_and(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        };
        password.starts_with("eyJ")
            && ok(parts.next())
            && ok(parts.next())
            && parts.next().is_some_and(|p| {
                p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            && parts.next().is_none()
    }

    /// Verifies a job token and maps it to an account and labels.
    pub async fn verify(&self, token: &str) -> Result<Verified, Refused> {
        // The header's `alg` as written, before any library interprets it: `none` and HMAC
        // are refused by name (a public key must never act as a shared secret).
        let header_json = token
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            .ok_or_else(|| bad("not a JWT", true))?;
        let alg = header_json.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg.eq_ignore_ascii_case("none")
            || alg.to_ascii_uppercase().starts_with("HS")
            || alg.is_empty()
        {
            return Err(bad(format!("algorithm {alg:?} is not allowed"), true));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| bad(format!("unreadable header: {e}"), true))?;
        // Which issuer says it signed: read unverified, only to pick the keys to verify with.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
            .map_err(|e| bad(format!("unreadable claims: {e}"), true))?;
        let iss = unverified
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no `iss` claim", true))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.settings.issuer == iss)
            .ok_or_else(|| bad(format!("untrusted issuer {iss:?}"), true))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| bad("no `kid` in the header", true))?;
        let key = match issuer.keys.key(kid).await {
            Ok(k) => k,
            // Not counted as a forgery: a genuine token of a freshly rotated key is refused
            // this way until the next fetch is allowed, and must not lock its runner out.
            Err(jwks::KeyError::UnknownKid) => {
                return Err(bad(format!("unknown signing key {kid:?}"), false))
            }
            Err(jwks::KeyError::Unavailable(why)) => return Err(Refused::Unavailable(why)),
        };
        if !key.algorithms.contains(&header.alg) {
            return Err(bad(
                format!("algorithm {:?} does not fit key {kid:?}", header.alg),
                true,
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.settings.issuer]);
        validation.set_audience(&[&issuer.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| refusal(e.kind(), header.alg))?;
        let claims = data.claims;
        let account = issuer.account.render(&claims).map_err(|e| bad(e, false))?;
        let labels =
            template::labels(&issuer.settings.labels, &claims).map_err(|e| bad(e, false))?;
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(Verified {
            account,
            labels,
            issuer: issuer.settings.issuer.clone(),
            expires,
        })
    }
}

fn refusal(kind: &ErrorKind, alg: Algorithm) -> Refused {
    match kind {
        ErrorKind::ExpiredSignature => bad("expired", false),
        ErrorKind::ImmatureSignature => bad("not valid yet (nbf)", false),
        ErrorKind::InvalidAudience => bad("wrong audience", false),
        ErrorKind::InvalidIssuer => bad("wrong issuer", true),
        ErrorKind::InvalidSignature => bad("bad signature", true),
        ErrorKind::InvalidAlgorithm => bad(format!("algorithm {alg:?} is not allowed"), true),
        ErrorKind::MissingRequiredClaim(c) => bad(format!("claim `{c}` missing"), false),
        other => bad(format!("invalid token: {other:?}"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federation() -> Federation {
        Federation::load(
            &[Settings {
                issuer: "https://issuer.invalid".into(),
                audience: "portcullis".into(),
                account: "ci:{sub}".into(),
                labels: Default::default(),
                ca_certificate: None,
            }],
            Path::new("proxy.yaml"),
        )
        .unwrap()
    }

    fn b64(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    /// Hostile tokens are refused before any key is fetched (the issuer does not exist).
    #[tokio::test]
    async fn hostile_tokens_are_refused_without_a_fetch() {
        let f = federation();
        let claims = b64(
            r#"{"iss":"https://issuer.invalid","aud":"portcullis","sub":"x","exp":9999999999}"#,
        );
        let cases = [
            (String::new(), "not a JWT"),
            ("eyJ".to_string(), "not a JWT"),
            (
                format!("{}.{claims}.", b64(r#"{"alg":"none"}"#)),
                "algorithm \"none\" is not allowed",
            ),
            (
                format!("{}.{claims}.", b64(r#"{"alg":"NoNe"}"#)),
                "algorithm \"NoNe\" is not allowed",
            ),
            (
                format!("{}.{claims}.c2ln", b64(r#"{"alg":"HS256","kid":"k"}"#)),
                "algorithm \"HS256\" is not allowed",
            ),
            (
                format!("{}.{claims}.c2ln", b64(r#"{"kid":"k"}"#)),
                "algorithm \"\" is not allowed",
            ),
            (
                format!("{}.{claims}.c2ln", b64(r#"{"alg":"RS256"}"#)),
                "no `kid` in the header",
            ),
            (
                format!(
                    "{}.{}.c2ln",
                    b64(r#"{"alg":"RS256","kid":"k"}"#),
                    b64(r#"{"iss":"https://other"}"#)
                ),
                "untrusted issuer \"https://other\"",
            ),
            (
                format!(
                    "{}.{}.c2ln",
                    b64(r#"{"alg":"RS256","kid":"k"}"#),
                    b64(r#"{"iss":5}"#)
                ),
                "no `iss` claim",
            ),
            (
                format!("{}.{}.c2ln", b64(r#"{"alg":"XX1","kid":"k"}"#), claims),
                "",
            ),
            (
                format!("{}.%%%.c2ln", b64(r#"{"alg":"RS256","kid":"k"}"#)),
                "",
            ),
        ];
        for (token, reason) in cases {
            match f.verify(&token).await {
                Err(Refused::Bad {
                    reason: got,
                    forged,
                }) => {
                    assert!(forged, "{token}");
                    if !reason.is_empty() {
                        assert_eq!(got, reason, "{token}");
                    }
                }
                other => panic!("{token}: {other:?}"),
            }
        }
    }

    #[test]
    fn jwt_shapes() {
        assert!(Federation::looks_like_jwt(
            "eyJhbGciOiJSUzI1NiJ9.eyJhIjoxfQ.c2ln"
        ));
        assert!(Federation::looks_like_jwt(
            "eyJhbGciOiJub25lIn0.eyJhIjoxfQ."
        ));
        for not in [
            "",
            "eyJ",
            "eyJa.b",
            "eyJa.b.c.d",
            "abc.def.ghi",
            "eyJa..c",
            "eyJa.b+/.c",
            "pcl_x",
        ] {
            assert!(!Federation::looks_like_jwt(not), "{not:?}");
        }
    }
}
