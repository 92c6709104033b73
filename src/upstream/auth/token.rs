//! portcullis as a Docker token client of the registry's own token server: it reads the
//! registry's `Bearer realm=…,service=…` challenge once, then asks the realm for a token per
//! scope with the service account's Basic credentials, and keeps each token until shortly
//! before it expires. A request waits for a token only when none is cached for its scope.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use pingora::connectors::http::Connector;
use pingora::upstreams::peer::HttpPeer;
use tokio::sync::Mutex;

use super::TokenCache;
use crate::upstream::fetch::{self, FetchError};
use crate::upstream::tls::Loaded as TlsLoaded;

/// The largest token answer read.
const MAX_ANSWER: usize = 1024 * 1024;
/// How long the token server may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A token's lifetime when the answer states none (the token specification's default).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The registry did not answer `/v2/` with a `Bearer` challenge.
    #[error("the registry sent no Bearer challenge: {0}")]
    NoChallenge(String),
    /// The challenge's realm is not a usable http(s) URL.
    #[error("the registry's token realm {0:?} is not an http(s) URL")]
    BadRealm(String),
    /// The token server could not be reached or failed.
    #[error("token server {realm}: {why}")]
    Server {
        /// The realm asked.
        realm: String,
        /// What went wrong.
        why: String,
    },
}

/// Where and for which service tokens are asked, as the registry's challenge said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
}

/// The token client of one registry.
pub struct TokenClient {
    basic: HeaderValue,
    connector: Connector,
    challenge: Mutex<Option<Challenge>>,
    cache: TokenCache,
}

impl TokenClient {
    /// A client logging in with `basic` (the service account's `Basic` header).
    pub fn new(basic: HeaderValue) -> Self {
        TokenClient {
            basic,
            connector: Connector::new(None),
            challenge: Mutex::new(None),
            cache: TokenCache::default(),
        }
    }

    /// How many tokens were fetched from the token server so far.
    pub fn fetched(&self) -> u64 {
        self.cache.fetched.load(Ordering::Relaxed)
    }

    /// Drops the cached token for `scopes` (the registry refused it).
    pub fn forget(&self, scopes: &[String]) {
        self.cache.forget(&scopes.join(" "));
    }

    /// `Bearer <token>` for `scopes` at the registry reached by `peer`/`host`, from the cache
    /// or the token server. `tls` is the registry's TLS trust, also used for an https realm.
    pub async fn header(
        &self,
        peer: &HttpPeer,
        host: &str,
        tls: Option<&Arc<TlsLoaded>>,
        scopes: &[String],
    ) -> Result<HeaderValue, TokenError> {
        let key = scopes.join(" ");
        if let Some(h) = self.cache.get(&key) {
            return Ok(h);
        }
        let challenge = self.challenge(peer, host).await?;
        let (header, lifetime) = self.fetch(&challenge, tls, scopes).await?;
        self.cache.put(key, header.clone(), lifetime);
        Ok(header)
    }

    /// The registry's challenge, asked once (`GET /v2/` without credentials).
    async fn challenge(&self, peer: &HttpPeer, host: &str) -> Result<Challenge, TokenError> {
        let mut known = self.challenge.lock().await;
        if let Some(c) = known.as_ref() {
            return Ok(c.clone());
        }
        let answer = fetch::raw(
            &self.connector,
            peer,
            host,
            "GET",
            "/v2/",
            None,
            &http::HeaderMap::new(),
            64 * 1024,
        )
        .await
        .map_err(|e| TokenError::NoChallenge(e.to_string()))?;
        let header = answer.header("www-authenticate").unwrap_or("");
        let challenge = parse_bearer(header).ok_or_else(|| {
            TokenError::NoChallenge(format!(
                "GET /v2/ answered {} with WWW-Authenticate {header:?}",
                answer.status
            ))
        })?;
        *known = Some(challenge.clone());
        Ok(challenge)
    }

    /// Asks the realm for a token for `scopes`.
    async fn fetch(
        &self,
        challenge: &Challenge,
        tls: Option<&Arc<TlsLoaded>>,
        scopes: &[String],
    ) -> Result<(HeaderValue, Duration), TokenError> {
        let realm = &challenge.realm;
        let fail = |why: String| TokenError::Server {
            realm: realm.clone(),
            why,
        };
        let (https, rest) = if let Some(r) = realm.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = realm.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(TokenError::BadRealm(realm.clone()));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let (_, address, host) = crate::upstream::parse_url(&format!(
            "{}://{authority}",
            if https { "https" } else { "http" }
        ))
        .map_err(|_| TokenError::BadRealm(realm.clone()))?;
        let addr = tokio::net::lookup_host(address.as_str())
            .await
            .map_err(|e| fail(format!("{address} does not resolve: {e}")))?
            .next()
            .ok_or_else(|| fail(format!("{address} has no address")))?;
        let mut peer = match (https, tls) {
            (true, Some(t)) => t.peer_named(addr, &host),
            (true, None) => HttpPeer::new(addr, true, host.clone()),
            (false, _) => HttpPeer::new(addr, false, String::new()),
        };
        peer.options.connection_timeout = Some(TIMEOUT);
        peer.options.read_timeout = Some(TIMEOUT);
        peer.options.write_timeout = Some(TIMEOUT);

        let enc = |v: &str| {
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut target = path.to_owned();
        let mut sep = if target.contains('?') { '&' } else { '?' };
        if let Some(service) = &challenge.service {
            target.push(sep);
            target.push_str("service=");
            target.push_str(&enc(service));
            sep = '&';
        }
        for scope in scopes {
            target.push(sep);
            target.push_str("scope=");
            target.push_str(&enc(scope));
            sep = '&';
        }
        let answer = fetch::raw(
            &self.connector,
            &peer,
            authority,
            "GET",
            &target,
            Some(&self.basic),
            &json_accept(),
            MAX_ANSWER,
        )
        .await
        .map_err(|e| match e {
            FetchError::TooLarge(n) => fail(format!("answer over {n} bytes")),
            other => fail(other.to_string()),
        })?;
        if answer.status != 200 {
            return Err(fail(format!(
                "answered {} to the service account",
                answer.status
            )));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: Answer = serde_json::from_slice(&answer.body)
            .map_err(|e| fail(format!("the answer is not a token document: {e}")))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the answer holds no token".into()))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| fail("the token is not header text".into()))?;
        header.set_sensitive(true);
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        Ok((header, lifetime))
    }
}

/// `realm` and `service` of a `Bearer` challenge (`Bearer realm="…",service="…",scope="…"`).
fn parse_bearer(header: &str) -> Option<Challenge> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut chars = params.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm?,
        service,
    })
}

/// `Accept: application/json`, what a token server answers in.
fn json_accept() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read() {
        assert_eq!(
            parse_bearer(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a:pull""#
            ),
            Some(Challenge {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
            })
        );
        assert_eq!(
            parse_bearer(r#"bearer service="a, b" , realm="http://h:1/auth""#),
            Some(Challenge {
                realm: "http://h:1/auth".into(),
                service: Some("a, b".into()),
            })
        );
        assert_eq!(parse_bearer(r#"Basic realm="x""#), None);
        assert_eq!(parse_bearer(r#"Bearer service="x""#), None);
        assert_eq!(parse_bearer(""), None);
    }
}
