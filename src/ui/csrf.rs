//! CSRF tokens for the UI's forms, compared in constant time.
//!
//! - With a session (logout, explain): `HMAC(key, "csrf", session nonce)`: bound to that
//!   session, useless in another one or after logout.
//! - Before login (the login form): a signed double-submit cookie. The form page sets
//!   [`LOGIN_COOKIE`] to a random nonce and puts `HMAC(key, "login-csrf", nonce)` in the form;
//!   a cross-site page can neither read the cookie nor forge the MAC, and `SameSite=Strict`
//!   keeps the browser from sending the cookie with a cross-site post in the first place.

use super::session::{Claims, Key};

/// The double-submit cookie of the login form.
pub const LOGIN_COOKIE: &str = "portcullis_login";
/// The form field every state-changing form carries.
pub const FIELD: &str = "csrf";

/// The token for forms posted within the session `claims`.
pub fn session_token(key: &Key, claims: &Claims) -> String {
    key.mac_text("csrf", claims.nonce.as_bytes())
}

/// The token for the login form whose cookie holds `nonce`.
pub fn login_token(key: &Key, nonce: &str) -> String {
    key.mac_text("login-csrf", nonce.as_bytes())
}

/// A login nonce as the cookie may carry it: 43 base64url characters.
pub fn is_nonce(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `expected == given`, in time that does not depend on where they differ.
pub fn matches(expected: &str, given: Option<&str>) -> bool {
    match given {
        Some(given) => bytes_equal(expected.as_bytes(), given.as_bytes()),
        None => false,
    }
}

pub use crate::authn::password::bytes_equal;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::session;
    use std::time::{Duration, SystemTime};

    #[test]
    fn tokens_are_bound_to_their_session_and_purpose() {
        let key = Key::random();
        let now = SystemTime::now();
        let (_, a) = session::issue(&key, "alice", b"s", Duration::from_secs(60), now);
        let (_, b) = session::issue(&key, "alice", b"s", Duration::from_secs(60), now);
        let ta = session_token(&key, &a);
        assert!(matches(&ta, Some(&ta)));
        assert!(!matches(&ta, Some(&session_token(&key, &b))));
        assert!(!matches(&ta, Some(&login_token(&key, &a.nonce))));
        assert!(!matches(&ta, Some("")));
        assert!(!matches(&ta, None));
        assert!(!matches(&ta, Some(&session_token(&Key::random(), &a))));
    }

    #[test]
    fn login_nonces_have_one_shape() {
        assert!(is_nonce(&session::random_text()));
        assert!(!is_nonce("short"));
        assert!(!is_nonce(&"a".repeat(42)));
        assert!(!is_nonce(&format!("{};", "a".repeat(42))));
    }
}
