//! An issuer's signing keys: its discovery document's `jwks_uri`, fetched over HTTPS, kept,
//! and fetched again only when a token names a key id not in it (a rotation) or when the
//! copy is older than [`MAX_AGE`] — and never more often than once per [`MIN_REFETCH`], so
//! tokens with made-up key ids cannot make portcullis hammer the issuer.
//!
//! Each key is usable only with the algorithms of its own type (RSA: RS*/PS*; EC P-256:
//! ES256; P-384: ES384; Ed25519: EdDSA), narrowed to its `alg` when the JWKS states one;
//! symmetric (`oct`) keys are ignored. So a token's `alg` header can never make a public key
//! act as an HMAC secret.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Fetches closer together than this are not made; a token naming an unknown key id in
/// between is refused.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// A key set older than this is fetched again on the next login (keys an issuer withdrew
/// stop working within this time).
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// The most a discovery document or key set may weigh.
const MAX_BODY: usize = 256 * 1024;
/// Per fetch (connect and read).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A key and the algorithms it may verify.
pub struct VerifyKey {
    /// The key.
    pub key: DecodingKey,
    /// What it may verify.
    pub algorithms: Vec<Algorithm>,
}

struct KeySet {
    keys: HashMap<String, Arc<VerifyKey>>,
    fetched: Instant,
}

/// Why no key could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key set (fresh, or fetched too recently to fetch again) has no such key id.
    UnknownKid,
    /// The issuer could not be asked, and no copy of the key is at hand.
    Unavailable(String),
}

/// One issuer's keys.
pub struct IssuerKeys {
    issuer: String,
    client: reqwest::Client,
    cache: RwLock<Option<Arc<KeySet>>>,
    /// When the last fetch started; held while fetching (one fetch at a time).
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl IssuerKeys {
    /// Keys of `issuer`, fetched with `client` (which trusts the right CAs).
    pub fn new(issuer: &str, client: reqwest::Client) -> Self {
        IssuerKeys {
            issuer: issuer.to_owned(),
            client,
            cache: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    fn cached(&self) -> Option<Arc<KeySet>> {
        self.cache.read().ok().and_then(|c| c.clone())
    }

    /// The key `kid`, from the copy at hand or, if it is not there (or the copy is old), from
    /// a new fetch.
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyKey>, KeyError> {
        let fresh = |set: &KeySet| set.fetched.elapsed() < MAX_AGE;
        if let Some(set) = self.cached() {
            if let Some(k) = set.keys.get(kid).filter(|_| fresh(&set)) {
                return Ok(k.clone());
            }
        }
        let mut last = self.last_fetch.lock().await;
        // Another login may have fetched while this one waited.
        let at_hand = self.cached();
        if let Some(set) = &at_hand {
            if let Some(k) = set.keys.get(kid).filter(|_| fresh(set)) {
                return Ok(k.clone());
            }
        }
        let stale = at_hand.as_ref().and_then(|s| s.keys.get(kid).cloned());
        if last.is_some_and(|t| t.elapsed() < MIN_REFETCH) {
            return stale.ok_or(KeyError::UnknownKid);
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), "fetched the CI issuer's signing keys");
                let set = Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                });
                if let Ok(mut cache) = self.cache.write() {
                    *cache = Some(set.clone());
                }
                set.keys.get(kid).cloned().ok_or(KeyError::UnknownKid)
            }
            Err(why) => {
                tracing::warn!(issuer = %self.issuer, error = %why, "could not fetch the CI issuer's signing keys");
                // An old copy of the key is better than refusing every job while the
                // issuer is unreachable.
                stale.ok_or(KeyError::Unavailable(why))
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut resp = self
            .client
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(format!("GET {url}: more than {MAX_BODY} bytes"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<VerifyKey>>, String> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&url).await?;
        if discovery.issuer != self.issuer {
            return Err(format!(
                "the discovery document names issuer {:?}, not {:?}",
                discovery.issuer, self.issuer
            ));
        }
        if !discovery.jwks_uri.starts_with("https://") {
            return Err(format!("jwks_uri {:?} is not https", discovery.jwks_uri));
        }
        let set: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = verify_key(jwk)?;
                Some((kid, Arc::new(key)))
            })
            .collect())
    }
}

/// The algorithms a key of this type may verify, narrowed to its `alg` if it states one;
/// `None` for keys that must not verify anything (symmetric, encryption-only, unknown).
pub fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(stated) => {
            let stated = algorithm_of(stated)?;
            if !by_type.contains(&stated) {
                return None;
            }
            vec![stated]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey { key, algorithms })
}

fn algorithm_of(k: KeyAlgorithm) -> Option<Algorithm> {
    Some(match k {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(json: &str) -> Jwk {
        serde_json::from_str(json).unwrap()
    }

    const RSA: &str = r#""kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB""#;

    #[test]
    fn keys_verify_only_the_algorithms_of_their_type() {
        let k = verify_key(&jwk(&format!("{{{RSA},\"kid\":\"r\"}}"))).unwrap();
        assert!(k.algorithms.contains(&Algorithm::RS256));
        assert!(!k.algorithms.contains(&Algorithm::HS256));
        assert!(!k.algorithms.contains(&Algorithm::ES256));
        let k = verify_key(&jwk(&format!("{{{RSA},\"alg\":\"RS256\"}}"))).unwrap();
        assert_eq!(k.algorithms, vec![Algorithm::RS256]);
        // A stated alg that does not fit the type, a symmetric key, an encryption key: none.
        assert!(verify_key(&jwk(&format!("{{{RSA},\"alg\":\"HS256\"}}"))).is_none());
        assert!(verify_key(&jwk(&format!("{{{RSA},\"alg\":\"ES256\"}}"))).is_none());
        assert!(verify_key(&jwk(r#"{"kty":"oct","k":"c2VjcmV0"}"#)).is_none());
        assert!(verify_key(&jwk(&format!("{{{RSA},\"use\":\"enc\"}}"))).is_none());
    }
}
