//! Access-key secrets: how they are made, recognised and stored.
//!
//! A secret is `pcl_` followed by 43 characters drawn uniformly from `[A-Za-z0-9]` by the
//! operating system's CSPRNG: 43 × log2(62) ≈ 256 bits, the same entropy as 32 random bytes.
//! Base62 so a double click selects all of it and no shell or YAML quoting is needed.
//!
//! The keys file stores only SHA-256 of the secret. A slow password hash (bcrypt) exists to
//! stretch guessable passwords; a 256-bit random secret cannot be guessed, and inverting
//! SHA-256 is infeasible, so a leaked keys file gives nobody a working key (this is what
//! GitHub does for its tokens). No separate hashing key is used: every replica would need
//! the same one, and it would add nothing against preimage search on full-entropy input.
//! What a keys file must be protected against is *writing* — whoever can add a line can
//! add a key — so it is created mode 0600 and should stay so.
//!
//! A plain digest also lets a presented password be found in a hash map without a
//! per-key comparison, so the lookup time says nothing about which keys exist.

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

/// What every secret starts with: lets secret scanners (and portcullis) recognise one.
pub const PREFIX: &str = "pcl_";

/// Random characters after [`PREFIX`]: 43 base62 characters carry ≥ 256 bits.
pub const RANDOM_CHARS: usize = 43;

/// SHA-256 of a secret: what the keys file holds and what a presented password is looked
/// up by.
pub type SecretDigest = [u8; 32];

/// A new secret from the operating system's CSPRNG.
pub fn generate() -> String {
    let mut rng = rand::rngs::OsRng;
    format!(
        "{PREFIX}{}",
        Alphanumeric.sample_string(&mut rng, RANDOM_CHARS)
    )
}

/// True when `password` has the shape of an access-key secret. Such a password is decided
/// by the keys file alone (found or refused) and never reaches the password backends, so a
/// wrong key neither counts towards nor is blocked by an account's password lockout.
pub fn looks_like_key(password: &str) -> bool {
    password.len() == PREFIX.len() + RANDOM_CHARS
        && password.starts_with(PREFIX)
        && password[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

/// The stored form of `secret`.
pub fn digest(secret: &str) -> SecretDigest {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lower-case hex, as written in the keys file.
pub fn to_hex(digest: &SecretDigest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 lower-case hex digits; anything else is `None` (a hand-edited file with an
/// upper-case or truncated digest is an error at load, not a key that never matches).
pub fn from_hex(text: &str) -> Option<SecretDigest> {
    if text.len() != 64
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A new key id: 12 base62 characters. Ids are public (they appear in audit lines and
/// `key list`), so they only need to be unique, not secret.
pub fn new_id() -> String {
    let mut rng = rand::rngs::OsRng;
    format!("k{}", Alphanumeric.sample_string(&mut rng, 11))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(looks_like_key(&a), "{a}");
        assert_eq!(a.len(), 47);
        assert!(!looks_like_key(&a[..46]));
        assert!(!looks_like_key(&format!("{a}x")));
        assert!(!looks_like_key(&a.replace("pcl_", "pcx_")));
        assert!(!looks_like_key(&format!("pcl_{}", "é".repeat(21))));
        assert!(!looks_like_key(&format!("pcl_{}-", &a[4..46])));
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = digest("pcl_x");
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert_eq!(from_hex(&to_hex(&d).to_uppercase()), None);
        assert_eq!(from_hex(&to_hex(&d)[..63]), None);
        assert_eq!(from_hex(&format!("{}g", &to_hex(&d)[..63])), None);
        assert_eq!(from_hex(&"é".repeat(32)), None);
    }
}
