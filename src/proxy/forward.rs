//! What goes upstream: the request the registry gets is rebuilt from what was authorized, not
//! passed through with a few headers predicted away.
//!
//! # Inputs the registry reads, and what portcullis does about each
//!
//! Audited against distribution 2.8.2 (`registry/handlers`, `registry/api/v2`), the version
//! Debian's `docker-registry` ships; `tests/differential.rs` checks the result against that
//! source's own router and form parser.
//!
//! | input | read by the registry as | portcullis |
//! |---|---|---|
//! | request target path | mux route + `name`, `reference`, `digest`, `uuid` | parsed strictly ([`crate::route`]); the forwarded path is rebuilt from the parsed parts |
//! | query `mount`, `from` | `r.FormValue` in `StartBlobUpload` and `authorized` | forwarded only as parsed and authorized (pull on `from`), re-encoded; dropped when not allowed |
//! | query `_state`, `digest` | `r.FormValue` on upload routes | forwarded re-encoded on upload routes only (`digest` on PUT and POST) |
//! | query `n`, `last` | catalog (and tags in later versions) | forwarded re-encoded on those endpoints only |
//! | any other query parameter | nothing in 2.8 | dropped |
//! | form body (`application/x-www-form-urlencoded`, `multipart/form-data`) | `r.FormValue` parses it on POST/PUT/PATCH (multipart on any method), Go's `mime.ParseMediaType` deciding with Unicode trimming and case folding | the client's `Content-Type` is never forwarded: upload endpoints get a fixed `application/octet-stream`, manifest `PUT` a validated ASCII media type, every other request none; so no body is ever a form to the registry |
//! | `Content-Type` on manifest `PUT` | which manifest kind the body is | must be a plain `type/subtype` of RFC 9110 token characters with no surrounding whitespace (parameters allowed and dropped), else 400; forwarded lowercased, as Go would read it |
//! | `Content-Type` on blob `PATCH` | must be empty or `application/octet-stream` | fixed `application/octet-stream` |
//! | `Authorization` | the registry's own auth, when it has one | the client's removed; the service account's (`upstream_auth`) set when configured |
//! | `Host`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded` | the base of `Location` URLs it returns | client's `Forwarded`/`X-Forwarded-*` removed and ours set; `Host` kept (it only shapes URLs that point back at the client's own host) |
//! | `Accept`, `If-None-Match`, `Range`, `Content-Range`, `Content-Length`, `Transfer-Encoding` | content negotiation, conditional and ranged reads, body framing | passed (they change how, not what or where; framing is Pingora's) |
//! | `Connection`, what it names, `Upgrade`, `TE`, `Keep-Alive`, `Proxy-*`, `Trailer` | hop-by-hop | removed; a `101 Switching Protocols` from upstream is answered 502, so an authorized request can never become a raw tunnel |
//! | method-override headers (`X-HTTP-Method-Override`, …), `X-Original-URL`, `X-Rewrite-URL` | nothing in 2.8, but some fronts honour them | removed |
//! | request body of manifest `PUT` | the manifest (its references are checked by the registry against the same repository) | streamed; the repository is the authorized one |
//! | request body of blob uploads | blob bytes, verified against `digest` by the registry | streamed |

use super::*;

/// Headers a client could use to make the registry (or something between us and it) see a
/// different request than the one we authorized. Removed before forwarding; the
/// `X-Forwarded-*` ones are then set by us.
pub(super) const SPOOFABLE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe this connection, not the request, and
/// `Upgrade` would let the registry turn the connection into a tunnel nothing authorizes.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
];

/// Headers a `Connection` header may not remove: Pingora frames the body with them and we
/// set `Host` and `Content-Type` ourselves.
const FRAMING: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "content-type",
];

/// The media type every upload endpoint is forwarded with: the registry reads no form from
/// it, and `PATCH` accepts nothing else.
const UPLOAD_CONTENT_TYPE: &str = "application/octet-stream";

/// Why a manifest `PUT`'s `Content-Type` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum MediaTypeError {
    /// More than one `Content-Type` header: which would the registry read?
    #[error("more than one Content-Type header")]
    Repeated,
    /// Not `type/subtype` in ASCII token characters.
    #[error("Content-Type is not a media type")]
    Malformed,
}

/// The `Content-Type` a manifest `PUT` is forwarded with: `None` when the client sent none
/// (the registry then reads the manifest's own `mediaType`), else the `type/subtype` part,
/// lowercased (Go's `mime.ParseMediaType` lowercases it, so this is what the registry would
/// read), with parameters dropped (the registry ignores them).
pub(super) fn manifest_media_type(req: &RequestHeader) -> Result<Option<String>, MediaTypeError> {
    let mut values = req.headers.get_all("content-type").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(MediaTypeError::Repeated);
    }
    essence(value.as_bytes())
        .map(|e| Some(e.to_ascii_lowercase()))
        .ok_or(MediaTypeError::Malformed)
}

/// `type "/" subtype [ *( ";" parameter ) ]` with RFC 9110 token characters only, no
/// whitespace around the type, and parameters of visible ASCII; returns `type/subtype`.
fn essence(value: &[u8]) -> Option<&str> {
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    let (media, params) = value.split_at(end);
    let (kind, sub) = media.split_at(media.iter().position(|&b| b == b'/')?);
    let sub = &sub[1..];
    let token = |t: &[u8]| !t.is_empty() && t.iter().all(|&b| is_tchar(b));
    if !token(kind) || !token(sub) {
        return None;
    }
    // Parameters: visible ASCII, spaces and tabs only; their content is not forwarded.
    if !params
        .iter()
        .all(|&b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))
    {
        return None;
    }
    std::str::from_utf8(media).ok()
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Portcullis {
    /// The client's address, believing `X-Forwarded-For` only from trusted proxies (see
    /// [`crate::client`]). Logs once when the state of "an unreadable chain from a trusted
    /// proxy" changes, not once per request.
    pub(super) fn client_addr(&self, session: &Session) -> ClientAddr {
        let Some(peer) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        else {
            return ClientAddr::none();
        };
        let xff = session.req_header().headers.get_all("x-forwarded-for");
        let client = self
            .trusted_proxies
            .client(peer, xff.iter().map(|v| v.as_bytes()));
        let unknown = client.is_unknown();
        if self
            .unknown_client
            .swap(unknown, std::sync::atomic::Ordering::Relaxed)
            != unknown
        {
            if unknown {
                tracing::warn!(peer = %peer, "a trusted proxy sent an X-Forwarded-For entry that is not an address: the client address is unknown (ip: rules do not match; failed logins count against the proxy)");
            } else {
                tracing::info!(peer = %peer, "client addresses from trusted proxies are readable again");
            }
        }
        client
    }

    /// Makes `upstream` (Pingora's copy of the client's request) into the request we
    /// authorized: the rebuilt target, no credentials, no hop-by-hop or spoofable headers, a
    /// fixed or validated `Content-Type`, and our `X-Forwarded-*`.
    pub(super) fn rebuild_request(
        &self,
        session: &Session,
        upstream: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<()> {
        let Some(parsed) = ctx.parsed.as_ref() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "forwarding a request that was not parsed",
            ));
        };
        // The names as the chosen registry knows them (without a stripped prefix).
        let target = match self.selected(ctx) {
            Some(chosen) => {
                parsed.target_renamed(ctx.drop_mount, &self.upstreams.renamer(chosen.index))
            }
            None => parsed.target(ctx.drop_mount),
        };
        // From the String's own buffer (no copy, as `parse` would make).
        let uri = http::Uri::try_from(target).map_err(|_| {
            Error::explain(ErrorType::InternalError, "rebuilt target does not parse")
        })?;
        upstream.set_uri(uri);

        // Whatever `Connection` names is hop-by-hop too (except what frames the body), and so
        // is every `Proxy-*` header: they address a proxy, never the registry. One pass over
        // the headers the client sent (a handful) finds everything to remove; the client's
        // `Content-Type` goes too (set again below where one belongs).
        let named: Vec<String> = upstream
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty() && !FRAMING.contains(&t.as_str()))
            .collect();
        let doomed: Vec<http::HeaderName> = upstream
            .headers
            .keys()
            .filter(|k| {
                let k = k.as_str();
                k == "content-type"
                    || k.starts_with("proxy-")
                    || SPOOFABLE_HEADERS.contains(&k)
                    || HOP_BY_HOP.contains(&k)
                    || named.iter().any(|n| n == k)
            })
            .cloned()
            .collect();
        for name in &doomed {
            upstream.remove_header(name);
        }

        match (parsed.route.endpoint(), &ctx.media_type) {
            (Endpoint::UploadStart | Endpoint::Upload, _) => {
                upstream.insert_header("Content-Type", UPLOAD_CONTENT_TYPE)?;
            }
            (Endpoint::Manifest, Some(media_type)) => {
                upstream.insert_header("Content-Type", media_type.as_str())?;
            }
            _ => {}
        }

        // The client's `Host` value itself (a cheap shared copy), or the HTTP/2 authority.
        let host = match session.req_header().headers.get("host") {
            Some(h) if h.to_str().is_ok() => Some(h.clone()),
            _ => session
                .req_header()
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()),
        };
        if let Some(ip) = ctx.client.ip() {
            let ip = http::HeaderValue::try_from(ip.to_string())
                .map_err(|_| Error::explain(ErrorType::InternalError, "address header"))?;
            upstream.insert_header("X-Forwarded-For", ip.clone())?;
            upstream.insert_header("X-Real-IP", ip)?;
        }
        upstream.insert_header("X-Forwarded-Proto", if self.tls { "https" } else { "http" })?;
        if let Some(host) = host {
            if upstream.headers.get("host").is_none() {
                upstream.insert_header("Host", host.clone())?;
            }
            upstream.insert_header("X-Forwarded-Host", host)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(content_types: &[&[u8]]) -> RequestHeader {
        let mut req = RequestHeader::build("PUT", b"/v2/a/manifests/t", None).unwrap();
        for ct in content_types {
            req.append_header("Content-Type", http::HeaderValue::from_bytes(ct).unwrap())
                .unwrap();
        }
        req
    }

    #[test]
    fn manifest_media_types() {
        let ok = |ct: &[u8], want: &str| {
            assert_eq!(
                manifest_media_type(&put(&[ct])),
                Ok(Some(want.to_owned())),
                "{ct:?}"
            )
        };
        ok(
            b"application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        );
        ok(
            b"application/vnd.oci.image.index.v1+json; charset=utf-8",
            "application/vnd.oci.image.index.v1+json",
        );
        ok(
            b"Application/VND.OCI.image.manifest.v1+JSON",
            "application/vnd.oci.image.manifest.v1+json",
        );
        assert_eq!(manifest_media_type(&put(&[])), Ok(None));
        for bad in [
            b" application/json".as_slice(),
            b"\tapplication/json",
            b"application/json ",
            b"\xc2\xa0application/json",
            b"appl\xc4\xb0cation/json",
            b"application/json\xc2\x85",
            b"application",
            b"/json",
            b"application/",
            b"application/json/x",
            b"application /json",
            b"",
            b"application/json; a=\xff",
        ] {
            assert_eq!(
                manifest_media_type(&put(&[bad])),
                Err(MediaTypeError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            manifest_media_type(&put(&[b"application/json", b"application/json"])),
            Err(MediaTypeError::Repeated)
        );
    }
}
