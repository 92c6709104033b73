//! Verification of the tokens clients present on `/v2/` (and of refresh tokens at the token
//! endpoint), with a bounded cache of verified access tokens so that a signature is checked
//! once per token, not once per request.
//!
//! What is checked, in order: size; the header's `kid` names a known key; the algorithm is the
//! one PINNED to that key (so `alg: none`, HS256 keyed with the public key, or RS/ES confusion
//! are all refused); the signature; `iss` and `aud` equal ours; `exp` and `nbf` within
//! [`LEEWAY_SECS`]; and the token's use (access vs refresh).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use sha2::{Digest, Sha256};

use super::claims::{Claims, REFRESH_USE};
use super::keys::PublicKey;
use super::{unix_now, TokenError};

/// Clock skew tolerated on `exp` and `nbf`, seconds: between us and the clients' idea of
/// "now" there is no skew (we issued the token), but between proxies behind a load balancer
/// there may be. Small, because an expired token should stop working promptly.
pub const LEEWAY_SECS: u64 = 30;

/// Longest token considered; anything longer is refused before any work is done.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verified access tokens remembered, at most. Each entry is a few hundred bytes.
pub const CACHE_CAPACITY: usize = 10_000;

/// Checks tokens against one or more public keys (several during a key rotation), for one
/// issuer and service.
pub struct Verifier {
    keys: HashMap<String, (PublicKey, Validation)>,
    cache: Cache,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier accepting tokens signed by `keys` (found by their libtrust `kid`), issued by
    /// `issuer` for `service`.
    pub fn new(keys: Vec<PublicKey>, issuer: &str, service: &str) -> Self {
        let mut map = HashMap::new();
        for key in keys {
            map.insert(
                key.kid().to_string(),
                (key.clone(), validation(&key, issuer, service)),
            );
        }
        Verifier {
            keys: map,
            cache: Cache::new(CACHE_CAPACITY),
        }
    }

    /// Verifies an access token presented on `/v2/`. Cached: a token verified before is
    /// answered from memory until it expires.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some(claims) = self.cache.get(&hash, now) {
            return Ok(claims);
        }
        let claims = self.verify_uncached(token)?;
        if claims.is_refresh() {
            return Err(TokenError::WrongUse);
        }
        let claims = Arc::new(claims);
        self.cache.insert(hash, claims.clone(), now);
        Ok(claims)
    }

    /// Verifies a refresh token (never cached: used once per token request).
    pub fn verify_refresh(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let claims = self.verify_uncached(token)?;
        if claims.token_use.as_deref() != Some(REFRESH_USE) || !claims.access.is_empty() {
            return Err(TokenError::WrongUse);
        }
        Ok(claims)
    }

    /// Signature and claims, no cache.
    pub fn verify_uncached(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let (key, validation) = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        if header.alg != key.algorithm() {
            return Err(TokenError::WrongAlgorithm);
        }
        let data = jsonwebtoken::decode::<Claims>(token, key.decoding_key(), validation)
            .map_err(|e| map_error(e.kind()))?;
        Ok(data.claims)
    }

    /// Number of cached tokens, for metrics and tests.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

fn validation(key: &PublicKey, issuer: &str, service: &str) -> Validation {
    let mut v = Validation::new(key.algorithm());
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.set_audience(&[service]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    v
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => TokenError::WrongAlgorithm,
        _ => TokenError::Malformed,
    }
}

/// SHA-256 of the token → its claims, until the token expires. Bounded: when full, expired
/// entries go first, then an arbitrary tenth (hash-map order, which is randomly seeded).
struct Cache {
    map: Mutex<HashMap<[u8; 32], Arc<Claims>>>,
    capacity: usize,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Cache {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Claims>>> {
        // A panic elsewhere while holding the lock cannot leave the map inconsistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, hash: &[u8; 32], now: u64) -> Option<Arc<Claims>> {
        let mut map = self.lock();
        let claims = map.get(hash)?;
        if claims.exp.saturating_add(LEEWAY_SECS) < now {
            map.remove(hash);
            return None;
        }
        Some(claims.clone())
    }

    fn insert(&self, hash: [u8; 32], claims: Arc<Claims>, now: u64) {
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.retain(|_, c| c.exp.saturating_add(LEEWAY_SECS) >= now);
        }
        if map.len() >= self.capacity {
            let evict: Vec<[u8; 32]> = map.keys().take(self.capacity / 10 + 1).copied().collect();
            for k in evict {
                map.remove(&k);
            }
        }
        map.insert(hash, claims);
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::claims::ResourceActions;
    use super::super::keys::tests::openssl_rsa;
    use super::super::keys::SigningKey;
    use super::super::signer::Signer;
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    const ISS: &str = "portcullis-test";
    const SVC: &str = "registry.test";

    fn ec_key() -> SigningKey {
        SigningKey::from_pem(
            rcgen::KeyPair::generate()
                .unwrap()
                .serialize_pem()
                .as_bytes(),
        )
        .unwrap()
    }

    fn setup(key: SigningKey) -> (Signer, Verifier) {
        let verifier = Verifier::new(vec![key.public().clone()], ISS, SVC);
        (Signer::new(key, None, ISS, SVC), verifier)
    }

    fn push_access() -> Vec<ResourceActions> {
        vec![ResourceActions {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into(), "push".into()],
        }]
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    fn round_trip(key: SigningKey, alg: &str) {
        let (signer, verifier) = setup(key);
        let now = unix_now();
        let claims = signer.access_claims("alice", push_access(), now, 300);
        let token = signer.sign(&claims).unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], signer.key().public().kid());
        let got = verifier.verify(&token).unwrap();
        assert_eq!(*got, claims);
        assert!(got.allows("repository", "team/app", "push"));
        assert_eq!(verifier.cached(), 1);
        // Second time from the cache.
        assert_eq!(*verifier.verify(&token).unwrap(), claims);
        if alg == "ES256" {
            // Raw r‖s, not DER.
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.rsplit('.').next().unwrap())
                .unwrap();
            assert_eq!(sig.len(), 64);
        }
    }

    #[test]
    fn es256_round_trip() {
        round_trip(ec_key(), "ES256");
    }

    #[test]
    fn rs256_round_trip() {
        round_trip(
            SigningKey::from_pem(openssl_rsa(2048, false).as_bytes()).unwrap(),
            "RS256",
        );
    }

    #[test]
    fn rejects_forgeries_and_bad_claims() {
        let key = ec_key();
        // The public key is what an attacker has.
        let public_pem = super::super::keys::tests::pem("PUBLIC KEY", key.public().spki_der());
        let kid = key.public().kid().to_string();
        let (signer, verifier) = setup(key);
        let now = unix_now();
        let good = signer.access_claims("alice", push_access(), now, 300);
        let payload = b64(&serde_json::to_vec(&good).unwrap());

        // alg: none, with and without a kid.
        for header in [
            format!(r#"{{"typ":"JWT","alg":"none","kid":"{kid}"}}"#),
            r#"{"alg":"none"}"#.to_string(),
        ] {
            let t = format!("{}.{payload}.", b64(header.as_bytes()));
            assert!(verifier.verify(&t).is_err(), "{header}");
        }

        // HS256 keyed with the public key (PEM and DER).
        for secret in [public_pem.as_bytes(), signer.key().public().spki_der()] {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(kid.clone());
            let t = jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(secret)).unwrap();
            assert_eq!(verifier.verify(&t).unwrap_err(), TokenError::WrongAlgorithm);
        }

        // A token signed with another key, claiming our kid.
        let other = ec_key();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.clone());
        let t = jsonwebtoken::encode(&h, &good, other.encoding_key()).unwrap();
        assert_eq!(verifier.verify(&t).unwrap_err(), TokenError::BadSignature);
        // ... or under its own kid.
        let t = Signer::new(other, None, ISS, SVC).sign(&good).unwrap();
        assert_eq!(verifier.verify(&t).unwrap_err(), TokenError::UnknownKey);

        // An RS256 header on our EC key's kid.
        let rsa = SigningKey::from_pem(openssl_rsa(2048, false).as_bytes()).unwrap();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.clone());
        let t = jsonwebtoken::encode(&h, &good, rsa.encoding_key()).unwrap();
        assert_eq!(verifier.verify(&t).unwrap_err(), TokenError::WrongAlgorithm);

        // Tampered payload: more access, same signature.
        let t = signer.sign(&good).unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut evil = good.clone();
        evil.access[0].name = "other/app".into();
        let evil_payload = b64(&serde_json::to_vec(&evil).unwrap());
        parts[1] = &evil_payload;
        assert_eq!(
            verifier.verify(&parts.join(".")).unwrap_err(),
            TokenError::BadSignature
        );

        // Time and identity claims.
        let expired = Claims {
            exp: now - LEEWAY_SECS - 5,
            nbf: now - 600,
            iat: now - 600,
            ..good.clone()
        };
        assert_eq!(
            verifier
                .verify(&signer.sign(&expired).unwrap())
                .unwrap_err(),
            TokenError::Expired
        );
        let future = Claims {
            nbf: now + LEEWAY_SECS + 60,
            ..good.clone()
        };
        assert_eq!(
            verifier.verify(&signer.sign(&future).unwrap()).unwrap_err(),
            TokenError::NotYetValid
        );
        let wrong_aud = Claims {
            aud: "other".into(),
            ..good.clone()
        };
        assert_eq!(
            verifier
                .verify(&signer.sign(&wrong_aud).unwrap())
                .unwrap_err(),
            TokenError::WrongAudience
        );
        let wrong_iss = Claims {
            iss: "evil".into(),
            ..good.clone()
        };
        assert_eq!(
            verifier
                .verify(&signer.sign(&wrong_iss).unwrap())
                .unwrap_err(),
            TokenError::WrongIssuer
        );
        // An `aud` array (even holding our service) is not what we issue.
        let mut v = serde_json::to_value(&good).unwrap();
        v["aud"] = serde_json::json!([SVC]);
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.clone());
        let t = jsonwebtoken::encode(&h, &v, signer.key().encoding_key()).unwrap();
        assert_eq!(verifier.verify(&t).unwrap_err(), TokenError::Malformed);

        // A refresh token is not an access token, and the reverse.
        let refresh = signer
            .sign(&signer.refresh_claims("alice", b"stamp", now, 3600))
            .unwrap();
        assert_eq!(verifier.verify(&refresh).unwrap_err(), TokenError::WrongUse);
        assert_eq!(verifier.verify_refresh(&refresh).unwrap().sub, "alice");
        let access = signer.sign(&good).unwrap();
        assert_eq!(
            verifier.verify_refresh(&access).unwrap_err(),
            TokenError::WrongUse
        );

        // Garbage.
        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            "eyJhbGciOiJFUzI1NiJ9..",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(verifier.verify(junk).is_err());
        }
        // None of the failures were cached.
        assert_eq!(verifier.cached(), 0);
        assert!(verifier.verify(&access).is_ok());
        assert_eq!(verifier.cached(), 1);
    }

    #[test]
    fn holds_several_keys_by_kid() {
        let (a, b) = (
            ec_key(),
            SigningKey::from_pem(openssl_rsa(2048, false).as_bytes()).unwrap(),
        );
        let verifier = Verifier::new(vec![a.public().clone(), b.public().clone()], ISS, SVC);
        let now = unix_now();
        for key in [a, b] {
            let s = Signer::new(key, None, ISS, SVC);
            let t = s.sign(&s.access_claims("bob", vec![], now, 60)).unwrap();
            assert_eq!(verifier.verify(&t).unwrap().sub, "bob");
        }
    }

    #[test]
    fn cache_is_bounded_and_forgets_expired_tokens() {
        let cache = Cache::new(100);
        let claims = |exp| {
            Arc::new(Claims {
                iss: ISS.into(),
                sub: "a".into(),
                aud: SVC.into(),
                exp,
                nbf: 0,
                iat: 0,
                jti: "j".into(),
                access: vec![],
                token_use: None,
                cred: None,
                via: None,
            })
        };
        for i in 0..1000u32 {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            cache.insert(h, claims(1000), 10);
            assert!(cache.len() <= 100);
        }
        let h = [9u8; 32];
        cache.insert(h, claims(1000), 10);
        assert!(cache.get(&h, 1000 + LEEWAY_SECS).is_some());
        assert!(cache.get(&h, 1001 + LEEWAY_SECS).is_none());
        assert!(cache.get(&h, 10).is_none(), "an expired entry is removed");
    }

    /// `cargo test --release --lib token::verifier::tests::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench() {
        let rsa = SigningKey::from_pem(openssl_rsa(2048, false).as_bytes()).unwrap();
        for (name, key) in [("ES256", ec_key()), ("RS256", rsa)] {
            let (signer, verifier) = setup(key);
            let now = unix_now();
            let n = 2000u32;
            let t0 = std::time::Instant::now();
            let tokens: Vec<String> = (0..n)
                .map(|_| {
                    signer
                        .sign(&signer.access_claims("alice", push_access(), now, 300))
                        .unwrap()
                })
                .collect();
            let sign = t0.elapsed() / n;
            let t0 = std::time::Instant::now();
            for t in &tokens {
                verifier.verify_uncached(t).unwrap();
            }
            let uncached = t0.elapsed() / n;
            for t in &tokens {
                verifier.verify(t).unwrap();
            }
            let t0 = std::time::Instant::now();
            for _ in 0..10 {
                for t in &tokens {
                    verifier.verify(t).unwrap();
                }
            }
            let cached = t0.elapsed() / (10 * n);
            println!(
                "{name}: sign {sign:?}, verify uncached {uncached:?}, verify cached {cached:?} (token {} bytes)",
                tokens[0].len()
            );
        }
    }
}
