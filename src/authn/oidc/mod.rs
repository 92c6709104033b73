//! Single sign-on for people (`auth.oidc`): the OpenID Connect authorization code flow with
//! PKCE, state and nonce, through the `openidconnect` crate — nothing of the protocol is
//! written by hand here.
//!
//! 1. [`Provider::begin`] reads the provider's discovery document (and its JWKS), and makes
//!    the address the browser is sent to, with a fresh `state`, `nonce` and PKCE (S256)
//!    challenge. The caller keeps `state`, `nonce` and the PKCE verifier (the web UI: in a
//!    signed, short-lived cookie) — nothing is kept here, so any replica can finish a flow
//!    another one began.
//! 2. [`Provider::finish`] exchanges the code (with the client secret and the PKCE verifier),
//!    then checks the ID token: its signature against the provider's JWKS (asymmetric
//!    algorithms the provider announces only, never `none` or a MAC), `iss` equal to
//!    `issuer`, `aud` naming `client_id`, `exp` in the future, `nonce` equal to the one sent.
//!    Claims missing from the ID token are read from the userinfo endpoint (its `sub` must be
//!    the ID token's). [`claims::identity`] turns them into the account and its labels.
//!
//! The discovery document and JWKS are fetched when first needed and kept for
//! [`METADATA_TTL`]; an ID token signed with a key the cached JWKS lacks (the provider rotated
//! its keys) fetches them again at once — at most every [`FORCED_REFRESH_MIN`] — and is checked
//! once more. A provider that cannot be reached fails the sign-in ([`OidcError::Provider`]);
//! nothing is fetched per request, and nothing at start (a provider down does not stop
//! portcullis, only its sign-ins).

pub mod claims;
mod settings;

pub use settings::{default_scopes, Oidc};

use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreClient, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreResponseType,
};
use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, IdToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, UserInfoClaims,
};
use serde_json::{Map, Value};

use crate::authn::Identity;
use crate::diagnostic::{Diagnostic, Diagnostics};

/// How long a fetched discovery document and JWKS are used before they are fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The shortest time between two fetches caused by an unknown signing key, so tokens naming
/// made-up keys cannot make portcullis hammer the provider.
pub const FORCED_REFRESH_MIN: Duration = Duration::from_secs(30);
/// Timeout of each request to the provider.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in failed. [`OidcError::Provider`] means "try again later"; the others mean the
/// answer that came back is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered something unusable (discovery, JWKS,
    /// token or userinfo endpoint).
    #[error("identity provider unavailable: {0}")]
    Provider(String),
    /// The provider refused the code (expired, used twice, another client's, wrong PKCE
    /// verifier).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The ID token or the userinfo answer failed a check (signature, `iss`, `aud`, `exp`,
    /// `nonce`, `sub`).
    #[error("the identity provider's answer failed a check: {0}")]
    Invalid(String),
    /// The claims name no usable account.
    #[error(transparent)]
    Claims(#[from] claims::ClaimsError),
}

/// What [`Provider::begin`] made: where to send the browser, and what the callback needs.
#[derive(Debug, Clone)]
pub struct Started {
    /// The provider's authorization address with every parameter.
    pub url: String,
    /// The `state` sent: the callback must come back with it.
    pub state: String,
    /// The `nonce` sent: the ID token must carry it.
    pub nonce: String,
    /// The PKCE verifier whose S256 challenge was sent.
    pub verifier: String,
}

/// A completed sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The provider's subject identifier (`sub`): stable for a person at one provider.
    pub subject: String,
    /// The account and labels from the claims.
    pub identity: Identity,
}

/// Every claim of a token, for [`claims::identity`] (the crate's standard claims are typed;
/// the rest land here).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct OtherClaims(Map<String, Value>);
impl AdditionalClaims for OtherClaims {}

type FullIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// What was discovered, and when.
#[derive(Default)]
struct Cache {
    metadata: Option<(CoreProviderMetadata, Instant)>,
    forced: Option<Instant>,
}

/// One configured provider: its settings, client secret, HTTP client and discovery cache.
pub struct Provider {
    settings: Oidc,
    secret: String,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cache>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// Reads the client secret and the CA bundle `settings` name; contacts nobody.
    pub fn load(settings: &Oidc) -> Result<Provider, Diagnostics> {
        let mut errors = Vec::new();
        let secret = match read_secret(&settings.client_secret_file) {
            Ok(s) => Some(s),
            Err(d) => {
                errors.push(d);
                None
            }
        };
        let tls = match crate::authn::ldap::pool::tls_config(settings.ca_certificate.as_deref()) {
            Ok(tls) => Some(tls),
            Err(why) => {
                let at = settings
                    .ca_certificate
                    .clone()
                    .unwrap_or_else(|| settings.client_secret_file.clone());
                errors.push(Diagnostic::new(&at, why).key("auth.oidc.ca_certificate"));
                None
            }
        };
        let (Some(secret), Some(tls)) = (secret, tls) else {
            return Err(Diagnostics(errors));
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            // Following redirects would let a provider's answer point us anywhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| {
                Diagnostics(vec![Diagnostic::new(
                    &settings.client_secret_file,
                    format!("HTTP client: {e}"),
                )
                .key("auth.oidc")])
            })?;
        Ok(Provider {
            settings: settings.clone(),
            secret,
            http,
            cache: Default::default(),
        })
    }

    /// The settings this provider was built from.
    pub fn settings(&self) -> &Oidc {
        &self.settings
    }

    /// The credential stamp of the person `subject` at this provider, for the UI session's
    /// binding ([`crate::authn::Authenticator::current`]'s role for password accounts): it
    /// changes when `issuer` or `client_id` change, so reconfiguring the provider ends every
    /// session signed in through the old one.
    pub fn stamp(&self, subject: &str) -> Vec<u8> {
        let mut s = b"oidc\0".to_vec();
        for part in [&self.settings.issuer, &self.settings.client_id] {
            s.extend_from_slice(&(part.len() as u64).to_be_bytes());
            s.extend_from_slice(part.as_bytes());
        }
        s.extend_from_slice(subject.as_bytes());
        s
    }

    /// The discovery document (with the JWKS): cached, or fetched when older than
    /// [`METADATA_TTL`] or when `force`d (at most every [`FORCED_REFRESH_MIN`]).
    async fn metadata(&self, force: bool) -> Result<CoreProviderMetadata, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some((metadata, at)) = &cache.metadata {
            let fresh = at.elapsed() < METADATA_TTL;
            let recently_forced = cache
                .forced
                .is_some_and(|f| f.elapsed() < FORCED_REFRESH_MIN);
            if (fresh && !force) || (force && recently_forced) {
                return Ok(metadata.clone());
            }
        }
        if force {
            cache.forced = Some(Instant::now());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| OidcError::Provider(format!("issuer: {e}")))?;
        // Fetches the document and its JWKS, and checks that the document names `issuer`.
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Provider(format!("discovery: {}", chain(&e))))?;
        cache.metadata = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
        redirect: &str,
    ) -> Result<
        openidconnect::core::CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(redirect.to_owned())
            .map_err(|e| OidcError::Provider(format!("redirect address {redirect:?}: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in whose callback is `redirect` (the address registered at the provider).
    pub async fn begin(&self, redirect: &str) -> Result<Started, OidcError> {
        let client = self.client(self.metadata(false).await?, redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Finishes a sign-in: `code` from the callback, `nonce` and `verifier` as [`Self::begin`]
    /// made them (the caller has already compared `state`).
    pub async fn finish(
        &self,
        redirect: &str,
        code: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<SignedIn, OidcError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(metadata.clone(), redirect)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match &e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    OidcError::Refused(r.to_string())
                }
                _ => OidcError::Provider(format!("token endpoint: {}", chain(&e))),
            })?;
        let raw = response
            .extra_fields()
            .id_token()
            .ok_or_else(|| OidcError::Invalid("the token answer has no ID token".into()))?
            .to_string();
        let token: FullIdToken = raw
            .parse()
            .map_err(|e| OidcError::Invalid(format!("ID token: {e}")))?;
        let nonce = Nonce::new(nonce.to_owned());
        let id_claims = match self.verify(&client, &metadata, &token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // Signed with a key we have not seen: the provider may have rotated its keys.
                let fresh = self.metadata(true).await?;
                let client = self.client(fresh.clone(), redirect)?;
                self.verify(&client, &fresh, &token, &nonce)
            }
            other => other,
        }
        .map_err(|e| OidcError::Invalid(format!("ID token: {}", chain(&e))))?;
        let subject = id_claims.subject().clone();
        let mut all = to_map(&id_claims)?;
        if let Ok(request) = client.user_info(
            response.access_token().clone(),
            Some(subject.clone()), // the userinfo `sub` must be the ID token's
        ) {
            let info: UserInfoClaims<OtherClaims, CoreGenderClaim> = request
                .request_async(&self.http)
                .await
                .map_err(|e| match &e {
                    openidconnect::UserInfoError::ClaimsVerification(_) => {
                        OidcError::Invalid(format!("userinfo: {}", chain(&e)))
                    }
                    _ => OidcError::Provider(format!("userinfo: {}", chain(&e))),
                })?;
            all = claims::merge(all, to_map(&info)?);
        }
        let identity = claims::identity(&self.settings, &all)?;
        Ok(SignedIn {
            subject: subject.as_str().to_owned(),
            identity,
        })
    }

    /// Checks `token`'s signature, `iss`, `aud`, `exp` and `nonce` against `metadata`.
    fn verify(
        &self,
        client: &CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        metadata: &CoreProviderMetadata,
        token: &FullIdToken,
        nonce: &Nonce,
    ) -> Result<openidconnect::IdTokenClaims<OtherClaims, CoreGenderClaim>, ClaimsVerificationError>
    {
        let algorithms = signing_algorithms(metadata.id_token_signing_alg_values_supported());
        let verifier = client.id_token_verifier().set_allowed_algs(algorithms);
        token.claims(&verifier, nonce).cloned()
    }
}

/// The algorithms ID tokens may be signed with: the asymmetric ones among those the provider
/// announces (never `none`, never a MAC keyed with the client secret); RS256, which every
/// provider must support, when it announces none of them.
fn signing_algorithms(announced: &[CoreJwsSigningAlgorithm]) -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm as A;
    let usable: Vec<_> = announced
        .iter()
        .filter(|a| !matches!(a, A::None | A::HmacSha256 | A::HmacSha384 | A::HmacSha512))
        .cloned()
        .collect();
    if usable.is_empty() {
        vec![A::RsaSsaPkcs1V15Sha256]
    } else {
        usable
    }
}

/// A claims set as one JSON object (standard and other claims together).
fn to_map<T: serde::Serialize>(claims: &T) -> Result<Map<String, Value>, OidcError> {
    match serde_json::to_value(claims) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(OidcError::Invalid("claims are not a JSON object".into())),
    }
}

/// An error with its causes, for logs and pages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The client secret from its file: trailing line ends removed, never empty.
pub fn read_secret(path: &std::path::Path) -> Result<String, Diagnostic> {
    let at = |msg: String| Diagnostic::new(path, msg).key("auth.oidc.client_secret_file");
    let bytes = std::fs::read(path).map_err(|e| at(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| at("is not UTF-8".into()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(at("is empty".into()));
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_verify_id_tokens() {
        use CoreJwsSigningAlgorithm as A;
        assert_eq!(
            signing_algorithms(&[
                A::None,
                A::HmacSha256,
                A::EcdsaP256Sha256,
                A::RsaSsaPssSha256
            ]),
            vec![A::EcdsaP256Sha256, A::RsaSsaPssSha256]
        );
        assert_eq!(
            signing_algorithms(&[A::HmacSha512]),
            vec![A::RsaSsaPkcs1V15Sha256]
        );
    }

    #[test]
    fn secrets_must_be_there_and_not_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        std::fs::write(&p, "s3cret\r\n").unwrap();
        assert_eq!(read_secret(&p).unwrap(), "s3cret");
        std::fs::write(&p, "\n").unwrap();
        let e = read_secret(&p).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.oidc.client_secret_file"));
        assert!(read_secret(&d.path().join("missing")).is_err());
    }

    #[test]
    fn the_stamp_names_the_provider_client_and_person() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        std::fs::write(&p, "s").unwrap();
        let mut settings = Oidc {
            issuer: "https://idp.example".into(),
            client_id: "a".into(),
            client_secret_file: p,
            scopes: vec![],
            account_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            labels: Default::default(),
            ca_certificate: None,
            redirect_url: None,
        };
        let a = Provider::load(&settings).unwrap();
        settings.client_id = "b".into();
        let b = Provider::load(&settings).unwrap();
        assert_ne!(a.stamp("1"), a.stamp("2"));
        assert_ne!(a.stamp("1"), b.stamp("1"));
        assert_eq!(
            a.stamp("1"),
            Provider::load(a.settings()).unwrap().stamp("1")
        );
    }
}
