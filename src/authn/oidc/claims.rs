//! From the claims an OpenID provider vouched for to an account and its labels.
//!
//! The account is the value of `account_claim`; it must be a string that is usable as an
//! account name everywhere portcullis puts one: at most [`MAX_ACCOUNT_LEN`] bytes, no control
//! characters, no white space at either end, and no `/` — an ACL rule such as
//! `name: "${account}/**"` would otherwise give `alice/x` a share of `alice`'s namespace, and
//! some providers let people edit their `preferred_username`.
//!
//! Labels: every value of `groups_claim` becomes a value of the `groups` label, and each
//! `labels: {label: claim}` entry does the same for its claim. A claim may be a string, a
//! number, a boolean or an array of those; anything else (objects, nested arrays, null) is
//! left out. An absent claim gives no label. Values are bounded ([`MAX_VALUES`],
//! [`MAX_VALUE_LEN`]) so the session that carries them stays a cookie.

use serde_json::{Map, Value};

use super::settings::Oidc;
use crate::authn::{Identity, Labels};

/// Longest account name taken from a provider, in bytes.
pub const MAX_ACCOUNT_LEN: usize = 256;
/// Most values one label takes from a claim.
pub const MAX_VALUES: usize = 200;
/// Longest label value taken from a claim, in bytes.
pub const MAX_VALUE_LEN: usize = 256;
/// The label `groups_claim` fills.
pub const GROUPS_LABEL: &str = "groups";

/// Why the claims give no usable identity. The message is shown to the person signing in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// The account claim is missing or not a string.
    #[error("the identity provider sent no `{0}` claim (auth.oidc.account_claim) as text")]
    NoAccount(String),
    /// The account claim is not usable as an account name.
    #[error("the `{claim}` claim {value:?} is not usable as an account name ({why})")]
    BadAccount {
        /// The claim.
        claim: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A label claim holds more than the session can carry.
    #[error("the `{0}` claim holds more than {MAX_VALUES} values or a value longer than {MAX_VALUE_LEN} bytes")]
    TooLarge(String),
}

/// Why `name` cannot be an account name from a provider, if it cannot.
pub fn account_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_ACCOUNT_LEN {
        Some("too long")
    } else if name.chars().any(char::is_control) {
        Some("control characters")
    } else if name.trim() != name {
        Some("white space at an end")
    } else if name.contains('/') {
        Some("a `/` would reach into another account's namespace")
    } else {
        None
    }
}

/// The identity `claims` describe under `settings`.
pub fn identity(settings: &Oidc, claims: &Map<String, Value>) -> Result<Identity, ClaimsError> {
    let account = match claims.get(&settings.account_claim) {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ClaimsError::NoAccount(settings.account_claim.clone())),
    };
    if let Some(why) = account_problem(&account) {
        return Err(ClaimsError::BadAccount {
            claim: settings.account_claim.clone(),
            value: account,
            why,
        });
    }
    let mut labels = Labels::new();
    let sources = std::iter::once((GROUPS_LABEL, settings.groups_claim.as_str())).chain(
        settings
            .labels
            .iter()
            .map(|(label, claim)| (label.as_str(), claim.as_str())),
    );
    for (label, claim) in sources {
        let Some(value) = claims.get(claim) else {
            continue;
        };
        let values = texts(value);
        if values.len() > MAX_VALUES || values.iter().any(|v| v.len() > MAX_VALUE_LEN) {
            return Err(ClaimsError::TooLarge(claim.to_owned()));
        }
        if values.is_empty() {
            continue;
        }
        let entry = labels.entry(label.to_owned()).or_default();
        for v in values {
            if !entry.contains(&v) {
                entry.push(v);
            }
        }
    }
    Ok(Identity {
        account,
        labels,
        via: None,
    })
}

/// The text values of a claim: a scalar is one, an array its scalars.
fn texts(value: &Value) -> Vec<String> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match value {
        Value::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

/// `base` with every claim of `extra` it lacks: the ID token's own claims win over the
/// userinfo endpoint's.
pub fn merge(mut base: Map<String, Value>, extra: Map<String, Value>) -> Map<String, Value> {
    for (k, v) in extra {
        base.entry(k).or_insert(v);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Oidc {
        Oidc {
            issuer: "https://idp.example".into(),
            client_id: "portcullis".into(),
            client_secret_file: "s".into(),
            scopes: vec![],
            account_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            labels: [("team".to_string(), "department".to_string())].into(),
            ca_certificate: None,
            redirect_url: None,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn account_and_labels_come_from_the_configured_claims() {
        let id = identity(
            &settings(),
            &claims(json!({"sub": "1", "preferred_username": "pat",
                           "groups": ["platform", "qa", "platform", {"x": 1}],
                           "department": "infra", "other": "ignored"})),
        )
        .unwrap();
        assert_eq!(id.account, "pat");
        assert_eq!(id.labels["groups"], vec!["platform", "qa"]);
        assert_eq!(id.labels["team"], vec!["infra"]);
        assert_eq!(id.labels.len(), 2);
        // A single group as a string, numbers and booleans as text; absent claims give no label.
        let id = identity(
            &settings(),
            &claims(
                json!({"preferred_username": "pat", "groups": "platform", "department": [7, true]}),
            ),
        )
        .unwrap();
        assert_eq!(id.labels["groups"], vec!["platform"]);
        assert_eq!(id.labels["team"], vec!["7", "true"]);
        let id = identity(&settings(), &claims(json!({"preferred_username": "pat"}))).unwrap();
        assert!(id.labels.is_empty());
    }

    #[test]
    fn unusable_account_names_are_refused() {
        for bad in [json!(null), json!(7), json!(["pat"])] {
            assert_eq!(
                identity(&settings(), &claims(json!({"preferred_username": bad}))),
                Err(ClaimsError::NoAccount("preferred_username".into()))
            );
        }
        assert!(identity(&settings(), &claims(json!({"sub": "x"}))).is_err());
        for bad in ["", " pat", "pat\n", "alice/x", &"a".repeat(300)] {
            assert!(
                matches!(
                    identity(&settings(), &claims(json!({"preferred_username": bad}))),
                    Err(ClaimsError::BadAccount { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(account_problem("pat@example.com"), None);
    }

    #[test]
    fn oversized_label_claims_are_refused() {
        let many: Vec<String> = (0..=MAX_VALUES).map(|i| format!("g{i}")).collect();
        assert_eq!(
            identity(
                &settings(),
                &claims(json!({"preferred_username": "pat", "groups": many}))
            ),
            Err(ClaimsError::TooLarge("groups".into()))
        );
    }

    #[test]
    fn id_token_claims_win_over_userinfo() {
        let merged = merge(
            claims(json!({"sub": "1", "preferred_username": "pat"})),
            claims(json!({"sub": "1", "preferred_username": "mallory", "groups": ["g"]})),
        );
        assert_eq!(merged["preferred_username"], "pat");
        assert_eq!(merged["groups"], json!(["g"]));
    }
}
