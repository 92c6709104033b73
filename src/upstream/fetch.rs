//! Small requests portcullis makes to the registry on its own behalf (the catalog's pages, the
//! UI's tags, manifests and configs, and the UI's manifest deletes): one bounded request, its
//! answer read whole.
//!
//! Proxied requests never come here — they stream through Pingora. This is only for answers
//! portcullis must read itself, so the body size is always capped.

use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;

use super::Target;

/// How long an idle connection to the registry is kept for the next small request.
const IDLE: Duration = Duration::from_secs(60);

/// A registry answer read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The body, at most the `max` asked for.
    pub body: Vec<u8>,
}

impl Fetched {
    /// The status as a code (an impossible one reads as 502).
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::BAD_GATEWAY)
    }

    /// A header's value as text, when present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why the registry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting, sending or reading failed.
    #[error("registry request failed: {0}")]
    Upstream(String),
    /// The body was larger than allowed; the connection is dropped, not reused.
    #[error("registry answer over {0} bytes")]
    TooLarge(usize),
    /// No entry of `upstreams:` serves the repository (or the target did not parse).
    #[error("no registry serves this repository")]
    NoRegistry,
}

/// `GET target` on the registry with `to`'s `Host` and credentials (and `Accept` if given), reading at most
/// `max` bytes of body. The connection goes back to `connector`'s pool when the body was read
/// completely.
pub async fn get(
    connector: &Connector,
    to: &Target,
    target: &str,
    accept: Option<&str>,
    max: usize,
) -> Result<Fetched, FetchError> {
    let mut headers = http::HeaderMap::new();
    if let Some(accept) = accept {
        let accept =
            http::HeaderValue::from_str(accept).map_err(|e| FetchError::Upstream(e.to_string()))?;
        headers.insert(http::header::ACCEPT, accept);
    }
    request(connector, to, "GET", target, &headers, max).await
}

/// [`get`] with any number of `headers` besides `Host` and the credentials: the manifest
/// cache asks with the client's `Accept` values and its own `If-None-Match`.
pub async fn get_with(
    connector: &Connector,
    to: &Target,
    target: &str,
    headers: &http::HeaderMap,
    max: usize,
) -> Result<Fetched, FetchError> {
    request(connector, to, "GET", target, headers, max).await
}

/// `DELETE target` on the registry (the UI deletes a manifest by digest, after the same
/// policy check the API's `DELETE` gets), reading at most `max` bytes of the answer.
pub async fn delete(
    connector: &Connector,
    to: &Target,
    target: &str,
    max: usize,
) -> Result<Fetched, FetchError> {
    request(
        connector,
        to,
        "DELETE",
        target,
        &http::HeaderMap::new(),
        max,
    )
    .await
}

async fn request(
    connector: &Connector,
    to: &Target,
    method: &str,
    target: &str,
    headers: &http::HeaderMap,
    max: usize,
) -> Result<Fetched, FetchError> {
    // The scope the registry must grant, read from the target the way `/v2` reads it.
    let scopes = crate::route::parse_request(method, target.as_bytes())
        .map(|p| super::auth::scopes(&p.route, true, &|n| n.to_owned()))
        .unwrap_or_default();
    let authorization = to
        .upstream
        .authorization(&scopes)
        .await
        .map_err(|e| FetchError::Upstream(e.to_string()))?;
    raw(
        connector,
        &to.peer,
        &to.host,
        method,
        target,
        authorization.as_ref(),
        headers,
        max,
    )
    .await
}

/// One request with exactly these headers (no credentials looked up): what [`get`] and the
/// token client build on. `headers` are appended as given (several values of one name stay
/// several headers).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn raw(
    connector: &Connector,
    peer: &pingora::upstreams::peer::HttpPeer,
    host: &str,
    method: &str,
    target: &str,
    authorization: Option<&http::HeaderValue>,
    headers: &http::HeaderMap,
    max: usize,
) -> Result<Fetched, FetchError> {
    let up = |e: pingora::BError| FetchError::Upstream(e.to_string());
    let (mut session, _reused) = connector.get_http_session(peer).await.map_err(up)?;
    session.set_read_timeout(peer.options.read_timeout);
    let mut req = RequestHeader::build(method, target.as_bytes(), None).map_err(up)?;
    req.insert_header("Host", host).map_err(up)?;
    if let Some(authorization) = authorization {
        req.insert_header("Authorization", authorization)
            .map_err(up)?;
    }
    for (name, value) in headers {
        req.append_header(name.clone(), value).map_err(up)?;
    }
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(up)?;
    session.finish_request_body().await.map_err(up)?;
    session.read_response_header().await.map_err(up)?;
    let header = session
        .response_header()
        .ok_or_else(|| FetchError::Upstream("no response header".into()))?;
    let status = header.status.as_u16();
    let headers = header.headers.clone();
    let mut body = Vec::new();
    while let Some(chunk) = session.read_response_body().await.map_err(up)? {
        if body.len() + chunk.len() > max {
            return Err(FetchError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(session, peer, Some(IDLE))
        .await;
    Ok(Fetched {
        status,
        headers,
        body,
    })
}
