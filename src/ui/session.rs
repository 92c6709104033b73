//! Signed, expiring session cookies: `base64url(JSON claims) "." base64url(HMAC-SHA256)`.
//!
//! The key is random per process unless `ui.session_key_file` names one: without it, sessions
//! end at a restart and are not accepted by another replica. Nothing is stored on the server
//! except the revocations of sessions logged out before they expired
//! ([`crate::cluster::revocations`], shared by the replicas with `cluster:`), so a copied
//! cookie stops working at logout, on every replica. A session is also bound to the credential its account
//! logged in with ([`Claims::credential`]), so a password change, a removal or a move to
//! another backend ends it on the next request.
//!
//! A session signed in through single sign-on ([`Claims::sso`]) belongs to an account no
//! backend holds: it carries the provider's subject and the labels the provider vouched for,
//! and its credential binding is the provider's stamp of that subject
//! ([`crate::authn::oidc::Provider::stamp`]). It ends at its expiry or logout, when `auth.oidc`
//! is removed or names another issuer or client, and when a password backend comes to hold
//! its account name (checked on every request by the UI).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The session cookie's name.
pub const COOKIE: &str = "portcullis_session";
/// Cookie values longer than this are not even parsed (browsers keep cookies up to 4096
/// bytes with their name; a single sign-on session carries its labels).
pub const MAX_VALUE: usize = 4000;
/// A key file must hold at least this many bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The HMAC key for sessions and CSRF tokens.
pub struct Key(Vec<u8>);

impl Key {
    /// 32 random bytes: sessions last as long as the process.
    pub fn random() -> Key {
        let mut k = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Key(k)
    }

    /// The contents of `path` (a trailing line end is removed); at least [`MIN_KEY_LEN`] bytes.
    pub fn from_file(path: &Path) -> Result<Key, String> {
        let mut bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.len() < MIN_KEY_LEN {
            return Err(format!(
                "{} holds {} bytes; a session key needs at least {MIN_KEY_LEN} (e.g. `head -c 48 /dev/urandom | base64`)",
                path.display(),
                bytes.len()
            ));
        }
        Ok(Key(bytes))
    }

    /// HMAC-SHA256 of `data` for `purpose`: a MAC made for one purpose never verifies for
    /// another (a CSRF token is not a session signature).
    pub fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(purpose.as_bytes());
        m.update(&[0]);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// [`Self::mac`] as base64url text.
    pub fn mac_text(&self, purpose: &str, data: &[u8]) -> String {
        B64.encode(self.mac(purpose, data))
    }
}

/// What a session cookie says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The account logged in.
    #[serde(rename = "a")]
    pub account: String,
    /// Issued at, seconds since the epoch.
    #[serde(rename = "i")]
    pub issued: u64,
    /// Expires at, seconds since the epoch.
    #[serde(rename = "e")]
    pub expires: u64,
    /// Random: tells sessions apart, binds CSRF tokens, names a logged-out session.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The credential binding: a MAC, with the session key, of the account and the stamp of
    /// its credential at login ([`crate::authn::Authenticators::current`]). The cookie is
    /// readable by its holder, so never the stamp itself nor an unkeyed digest of it.
    #[serde(rename = "c", default)]
    pub credential: String,
    /// Set for a session signed in through single sign-on: the account is in no backend, so
    /// what the provider said travels with the session.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<Sso>,
}

/// What a single sign-on session knows of its person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sso {
    /// The provider's subject identifier (`sub`), which the credential binding covers.
    #[serde(rename = "s")]
    pub subject: String,
    /// The labels from the provider's claims at sign-in.
    #[serde(rename = "l")]
    pub labels: crate::authn::Labels,
}

/// The [`Claims::credential`] of `account` with credential `stamp`.
fn credential_mac(key: &Key, account: &str, stamp: &[u8]) -> String {
    let mut data = (account.len() as u64).to_be_bytes().to_vec();
    data.extend_from_slice(account.as_bytes());
    data.extend_from_slice(stamp);
    key.mac_text("session-credential", &data)
}

/// Whether `claims`' session was issued under `stamp`, the account's current credential
/// stamp: false once the password changed (or the account moved backend), and for cookies
/// made before sessions carried a binding.
pub fn is_bound(key: &Key, claims: &Claims, stamp: &[u8]) -> bool {
    let expected = credential_mac(key, &claims.account, stamp);
    crate::ui::csrf::bytes_equal(expected.as_bytes(), claims.credential.as_bytes())
}

/// Seconds since the epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 32 random bytes as base64url text.
pub fn random_text() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    B64.encode(b)
}

/// A new session for `account`, whose credential stamp (read before its password was checked)
/// is `stamp`, valid for `lifetime`: (cookie value, its claims).
pub fn issue(
    key: &Key,
    account: &str,
    stamp: &[u8],
    lifetime: Duration,
    now: SystemTime,
) -> (String, Claims) {
    issue_with(key, account, stamp, None, lifetime, now)
}

/// A new single sign-on session for `account` with what the provider said (`sso`), bound to
/// `stamp` (the provider's stamp of `sso.subject`); `None` when the labels make it longer
/// than a cookie may be ([`MAX_VALUE`]).
pub fn issue_sso(
    key: &Key,
    account: &str,
    stamp: &[u8],
    sso: Sso,
    lifetime: Duration,
    now: SystemTime,
) -> Option<(String, Claims)> {
    let (value, claims) = issue_with(key, account, stamp, Some(sso), lifetime, now);
    (value.len() <= MAX_VALUE).then_some((value, claims))
}

fn issue_with(
    key: &Key,
    account: &str,
    stamp: &[u8],
    sso: Option<Sso>,
    lifetime: Duration,
    now: SystemTime,
) -> (String, Claims) {
    let issued = unix(now);
    let claims = Claims {
        account: account.to_owned(),
        issued,
        expires: issued.saturating_add(lifetime.as_secs().max(1)),
        nonce: random_text(),
        credential: credential_mac(key, account, stamp),
        sso,
    };
    let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
    let sig = key.mac_text("session", payload.as_bytes());
    (format!("{payload}.{sig}"), claims)
}

/// The claims of a cookie value signed by `key`, if it has not expired — neither by its own
/// expiry nor by `lifetime` (the current setting: shortening it ends longer sessions).
pub fn verify(key: &Key, value: &str, lifetime: Duration, now: SystemTime) -> Option<Claims> {
    if value.len() > MAX_VALUE {
        return None;
    }
    let (payload, sig) = value.split_once('.')?;
    let sig = B64.decode(sig).ok()?;
    let expected = key.mac("session", payload.as_bytes());
    if !crate::ui::csrf::bytes_equal(&expected, &sig) {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    let now = unix(now);
    if now >= claims.expires || now >= claims.issued.saturating_add(lifetime.as_secs()) {
        return None;
    }
    Some(claims)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, limited to `path`, `Secure` over
/// TLS; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    set_cookie_same_site(name, value, path, max_age, secure, "Strict")
}

/// [`set_cookie`] with another `SameSite` value: the single sign-on flow's cookie must come
/// back with the provider's (cross-site) redirect to the callback, so it is `Lax`.
pub fn set_cookie_same_site(
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    secure: bool,
    same_site: &str,
) -> String {
    let mut c =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}");
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_session_verifies_until_it_expires() {
        let key = Key::random();
        let now = SystemTime::now();
        let (value, claims) = issue(&key, "alice", b"stamp", HOUR, now);
        assert_eq!(verify(&key, &value, HOUR, now), Some(claims.clone()));
        assert_eq!(claims.account, "alice");
        assert!(verify(&key, &value, HOUR, now + HOUR).is_none());
        // A shorter lifetime set later ends it sooner.
        assert!(verify(&key, &value, Duration::from_secs(60), now + HOUR / 2).is_none());
    }

    #[test]
    fn a_session_is_bound_to_the_credential_it_logged_in_with() {
        let key = Key::random();
        let now = SystemTime::now();
        let (value, claims) = issue(&key, "alice", b"users\0$2b$hash", HOUR, now);
        assert!(is_bound(&key, &claims, b"users\0$2b$hash"));
        assert!(!is_bound(&key, &claims, b"users\0$2b$other"));
        assert!(!is_bound(&Key::random(), &claims, b"users\0$2b$hash"));
        // The cookie carries a MAC, not the stamp.
        assert!(
            !String::from_utf8(B64.decode(value.split('.').next().unwrap()).unwrap())
                .unwrap()
                .contains("hash")
        );
        // A cookie from before bindings (no `c`) is no session.
        let old = Claims {
            credential: String::new(),
            ..claims
        };
        assert!(!is_bound(&key, &old, b"users\0$2b$hash"));
    }

    #[test]
    fn tampering_and_other_keys_are_refused() {
        let key = Key::random();
        let now = SystemTime::now();
        let (value, _) = issue(&key, "alice", b"stamp", HOUR, now);
        assert!(verify(&Key::random(), &value, HOUR, now).is_none());
        let (payload, sig) = value.split_once('.').unwrap();
        let forged = B64.encode(
            String::from_utf8(B64.decode(payload).unwrap())
                .unwrap()
                .replace("alice", "admin"),
        );
        assert!(verify(&key, &format!("{forged}.{sig}"), HOUR, now).is_none());
        assert!(verify(&key, payload, HOUR, now).is_none());
        assert!(verify(&key, "", HOUR, now).is_none());
        assert!(verify(&key, &"a".repeat(MAX_VALUE + 1), HOUR, now).is_none());
        // A CSRF token of the same data is not a session signature.
        let csrf = key.mac_text("csrf", payload.as_bytes());
        assert!(verify(&key, &format!("{payload}.{csrf}"), HOUR, now).is_none());
    }

    #[test]
    fn sso_sessions_carry_their_labels_signed_and_stay_a_cookie() {
        let key = Key::random();
        let now = SystemTime::now();
        let sso = Sso {
            subject: "sub-1".into(),
            labels: [("groups".to_string(), vec!["platform".to_string()])].into(),
        };
        let (value, claims) =
            issue_sso(&key, "pat", b"oidc\0stamp", sso.clone(), HOUR, now).unwrap();
        assert_eq!(verify(&key, &value, HOUR, now).unwrap().sso, Some(sso));
        assert!(is_bound(&key, &claims, b"oidc\0stamp"));
        // Labels changed in the cookie break the signature.
        let (payload, sig) = value.split_once('.').unwrap();
        let forged = B64.encode(
            String::from_utf8(B64.decode(payload).unwrap())
                .unwrap()
                .replace("platform", "admins__"),
        );
        assert!(verify(&key, &format!("{forged}.{sig}"), HOUR, now).is_none());
        // Too many labels for a cookie: no session.
        let huge = Sso {
            subject: "sub-1".into(),
            labels: [(
                "groups".to_string(),
                (0..200).map(|i| format!("group-number-{i}")).collect(),
            )]
            .into(),
        };
        assert!(issue_sso(&key, "pat", b"s", huge, HOUR, now).is_none());
        // Password sessions carry none of it.
        let (value, _) = issue(&key, "alice", b"s", HOUR, now);
        assert!(verify(&key, &value, HOUR, now).unwrap().sso.is_none());
        assert!(
            !String::from_utf8(B64.decode(value.split('.').next().unwrap()).unwrap())
                .unwrap()
                .contains("\"o\"")
        );
    }

    #[test]
    fn key_files_must_be_long_enough() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, "short\n").unwrap();
        assert!(Key::from_file(&p).is_err());
        std::fs::write(&p, format!("{}\n", "k".repeat(40))).unwrap();
        let a = Key::from_file(&p).unwrap();
        let b = Key::from_file(&p).unwrap();
        assert_eq!(a.mac("x", b"y"), b.mac("x", b"y"));
    }

    #[test]
    fn cookies_have_the_attributes() {
        assert_eq!(
            set_cookie("s", "v", "/ui/", 60, true),
            "s=v; Path=/ui/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie("s", "v", "/ui/", 60, false).contains("Secure"));
    }
}
