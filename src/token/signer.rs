//! Signing: claims → a compact JWT with the header registry:2 needs to find the key
//! (`kid` always, `x5c` when a certificate is configured).

use base64::Engine;
use jsonwebtoken::Header;
use rand::RngCore;

use super::claims::{Claims, ResourceActions, REFRESH_USE};
use super::keys::SigningKey;
use super::TokenError;

/// How far `nbf` is set before `iat`, so a registry whose clock runs a little behind ours
/// accepts a token the moment it is issued.
pub const NBF_SKEW_SECS: u64 = 10;

/// Signs tokens for one issuer and service with one key.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    header: Header,
    issuer: String,
    service: String,
}

impl Signer {
    /// A signer. `chain` is the DER certificate chain (leaf first) sent as `x5c`; registry 2.8
    /// verifies `x5c` against its `rootcertbundle` when present and otherwise looks the `kid`
    /// up among the bundle's keys; 3.x prefers `x5c` too. Both are sent when possible.
    pub fn new(key: SigningKey, chain: Option<Vec<Vec<u8>>>, issuer: &str, service: &str) -> Self {
        let mut header = Header::new(key.public().algorithm());
        header.kid = Some(key.public().kid().to_string());
        header.x5c = chain.map(|c| {
            c.iter()
                .map(|der| base64::engine::general_purpose::STANDARD.encode(der))
                .collect()
        });
        Signer {
            key,
            header,
            issuer: issuer.to_string(),
            service: service.to_string(),
        }
    }

    /// The signing key (its public half verifies what this signs).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Claims of an access token for `sub`, valid `ttl_secs` from `now`.
    pub fn access_claims(
        &self,
        sub: &str,
        access: Vec<ResourceActions>,
        now: u64,
        ttl_secs: u64,
    ) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            sub: sub.to_string(),
            aud: self.service.clone(),
            exp: now.saturating_add(ttl_secs),
            nbf: now.saturating_sub(NBF_SKEW_SECS),
            iat: now,
            jti: new_jti(),
            access,
            token_use: None,
            cred: None,
            via: None,
        }
    }

    /// Claims of a refresh token for `sub`: no `access`, `token_use: refresh`, and `cred`, the
    /// credential binding made by [`binding`] with this signer's key.
    pub fn refresh_claims(&self, sub: &str, stamp: &[u8], now: u64, ttl_secs: u64) -> Claims {
        Claims {
            token_use: Some(REFRESH_USE.to_string()),
            cred: Some(binding(self.key.binding_secret(), sub, stamp)),
            ..self.access_claims(sub, Vec::new(), now, ttl_secs)
        }
    }

    /// Signs `claims` (RS256 or ES256, by the key).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&self.header, claims, self.key.encoding_key())
            .map_err(|e| TokenError::Signing(e.to_string()))
    }
}

/// The `cred` claim: base64url HMAC-SHA256, keyed by `secret`, of `account` and the credential
/// `stamp`. Without the secret it can be neither made nor checked against a guessed stamp.
pub fn binding(secret: &[u8; 32], account: &str, stamp: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"refresh\0");
    mac.update(&(account.len() as u64).to_be_bytes());
    mac.update(account.as_bytes());
    mac.update(stamp);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// 16 random bytes, base64url: unique per token.
fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
