//! bcrypt checks, run off the async runtime: a cost-10 check takes tens of milliseconds of CPU,
//! which would stall every other request on the same worker thread.

use std::sync::OnceLock;

/// True when `hash` is a bcrypt hash we accept (`$2a$`, `$2b$`, `$2y$`, cost 4–31, 53
/// characters of salt and digest). Checked at load so a typo fails `portcullis check`, not a login.
pub fn is_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && (4..=31).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

/// The longest password bcrypt can represent, in bytes: it reads only the first 72, so a
/// longer password would be the same password as its first 72 bytes plus anything.
pub const MAX_BYTES: usize = 72;

/// Verifies `password` against a bcrypt `hash` on the blocking pool. bcrypt's own comparison
/// of the computed and stored digests is constant-time. A password longer than [`MAX_BYTES`]
/// is wrong whatever the hash: bcrypt cannot represent it, and accepting it would accept its
/// first 72 bytes followed by anything.
pub async fn verify(password: &str, hash: &str) -> Result<bool, String> {
    if password.len() > MAX_BYTES {
        return Ok(false);
    }
    let password = password.to_owned();
    let hash = hash.to_owned();
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .map_err(|e| format!("bcrypt worker failed: {e}"))
}

/// Runs a bcrypt check that cannot succeed, at cost 10, so a login for an unknown account takes
/// as long as one for a known account with a wrong password.
pub async fn burn_equivalent_time(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = DUMMY
        .get_or_init(|| bcrypt::hash("portcullis-timing-equaliser", 10).unwrap_or_default())
        .clone();
    let _ = verify(password, &hash).await;
}

/// Constant-time equality of two byte strings (their lengths are not secret): for comparing
/// anything a client presents with a secret-derived value (CSRF tokens, session signatures,
/// credential bindings), so the time taken says nothing about how much matched.
pub fn bytes_equal(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_bcrypt() {
        let h = bcrypt::hash("x", 4).unwrap();
        assert!(is_bcrypt(&h));
        assert!(is_bcrypt(&h.replacen("$2b$", "$2y$", 1)));
        assert!(is_bcrypt(&h.replacen("$2b$", "$2a$", 1)));
        assert!(!is_bcrypt(&h.replacen("$2b$", "$2x$", 1)));
        assert!(!is_bcrypt(&h.replacen("$04$", "$03$", 1)));
        assert!(!is_bcrypt(&h[..59]));
        assert!(!is_bcrypt("$apr1$abc$def"));
        assert!(!is_bcrypt("{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="));
        assert!(!is_bcrypt("plaintext"));
        assert!(!is_bcrypt(""));
    }

    #[tokio::test]
    async fn verifies() {
        let h = bcrypt::hash("secret", 4).unwrap();
        assert_eq!(verify("secret", &h).await, Ok(true));
        assert_eq!(verify("Secret", &h).await, Ok(false));
        assert_eq!(verify("secret", "garbage").await, Ok(false));
    }

    /// bcrypt reads 72 bytes: a 72-byte password works, the same plus anything does not.
    #[tokio::test]
    async fn passwords_beyond_72_bytes_are_wrong() {
        let exact = "é".repeat(36);
        assert_eq!(exact.len(), MAX_BYTES);
        let h = bcrypt::hash(&exact, 4).unwrap();
        assert_eq!(verify(&exact, &h).await, Ok(true));
        assert_eq!(verify(&format!("{exact}x"), &h).await, Ok(false));
        assert_eq!(verify(&format!("{exact}{exact}"), &h).await, Ok(false));
        assert_eq!(verify(&exact[..70], &h).await, Ok(false));
    }
}
