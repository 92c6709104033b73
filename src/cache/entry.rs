//! One cached answer, and the capture that builds it from the registry's answer as it streams
//! through the proxy: only a complete `200` whose body matches its `Content-Length` becomes an
//! entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;

/// The headers of the registry's manifest answer that are kept and replayed (as the registry
/// spells them). Nothing else it sends (`Date`, `X-Content-Type-Options`) says anything about
/// the manifest.
const KEPT: &[&str] = &[
    "Content-Type",
    "Content-Length",
    "Docker-Content-Digest",
    "Docker-Distribution-Api-Version",
    "Etag",
];

/// A registry answer held in memory: a `200` with the headers in [`KEPT`] and the whole body.
#[derive(Debug)]
pub struct Entry {
    header: ResponseHeader,
    body: Bytes,
    /// When the registry last vouched for this answer (fetched it, or answered `304` to it),
    /// in nanoseconds since [`epoch`]: an answer by tag is served without asking again only
    /// for `tag_ttl` after that.
    confirmed: AtomicU64,
}

/// The instant [`Entry::confirmed`] counts from (the first use in this process).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`] (a `u64` lasts 584 years).
fn now() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Entry {
    /// The stored status and headers.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The stored body (answers to `HEAD` leave it out).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The validator to ask the registry with (`If-None-Match`): the `Etag` it sent, which
    /// distribution sets to the digest the tag named. `None` when it sent none (then the
    /// answer is never revalidated, only fetched again).
    pub fn etag(&self) -> Option<&http::HeaderValue> {
        self.header.headers.get(http::header::ETAG)
    }

    /// True when the registry vouched for this answer less than `ttl` ago.
    pub fn fresh(&self, ttl: Duration) -> bool {
        let age = now().saturating_sub(self.confirmed.load(Ordering::Relaxed));
        u128::from(age) < ttl.as_nanos()
    }

    /// The registry just confirmed this answer (`304 Not Modified`).
    pub fn confirm(&self) {
        self.confirmed.fetch_max(now(), Ordering::Relaxed);
    }

    /// Bytes this answer takes, for the memory bound: the body, the kept headers, and a fixed
    /// allowance for the structures around them.
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .header
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + 256
    }
}

/// Why an answer is not kept (for the debug log; each is simply passed through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Uncacheable {
    /// Anything but `200`: errors, `304`, redirects are never cached.
    #[error("status is not 200")]
    Status,
    /// No single, readable `Content-Length`: the body could not be checked for completeness.
    #[error("no Content-Length")]
    NoLength,
    /// Larger than one entry may be.
    #[error("larger than an entry may be")]
    TooLarge,
    /// `Cache-Control: no-store`, or a header that makes the answer more than a manifest
    /// (`Set-Cookie`, `Content-Encoding`, `Vary`).
    #[error("the registry said not to store it")]
    NoStore,
    /// The body ended early or ran past its length.
    #[error("the body did not match its Content-Length")]
    Incomplete,
}

/// Builds an [`Entry`] from an answer passing through: the header first, then the body chunks.
#[derive(Debug)]
pub struct Capture {
    header: ResponseHeader,
    length: usize,
    body: BytesMut,
}

impl Capture {
    /// Starts capturing `resp`, when it is a kind of answer that may be kept and has at most
    /// `max` bytes of body.
    pub fn start(resp: &ResponseHeader, max: usize) -> Result<Capture, Uncacheable> {
        Capture::start_parts(resp.status, &resp.headers, max)
    }

    /// An answer read whole (by portcullis itself, when it revalidates or fills for a
    /// `HEAD`) as an entry, when it may be kept.
    pub fn whole(
        status: http::StatusCode,
        headers: &http::HeaderMap,
        body: &[u8],
        max: usize,
    ) -> Result<Entry, Uncacheable> {
        let mut capture = Capture::start_parts(status, headers, max)?;
        capture
            .chunk(Some(&Bytes::copy_from_slice(body)), true)?
            .ok_or(Uncacheable::Incomplete)
    }

    fn start_parts(
        status: http::StatusCode,
        headers: &http::HeaderMap,
        max: usize,
    ) -> Result<Capture, Uncacheable> {
        if status != http::StatusCode::OK {
            return Err(Uncacheable::Status);
        }
        let no_store = headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .any(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-store"))
            });
        if no_store
            || headers.contains_key(http::header::SET_COOKIE)
            || headers.contains_key(http::header::CONTENT_ENCODING)
            || headers.contains_key(http::header::VARY)
        {
            return Err(Uncacheable::NoStore);
        }
        let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
        let length = match (lengths.next(), lengths.next()) {
            (Some(v), None) => std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(Uncacheable::NoLength)?,
            _ => return Err(Uncacheable::NoLength),
        };
        if length > max {
            return Err(Uncacheable::TooLarge);
        }
        let mut header =
            ResponseHeader::build(200, Some(KEPT.len())).map_err(|_| Uncacheable::Status)?;
        for name in KEPT {
            if let Some(value) = headers.get(*name) {
                header
                    .insert_header(*name, value.clone())
                    .map_err(|_| Uncacheable::NoStore)?;
            }
        }
        Ok(Capture {
            header,
            length,
            body: BytesMut::with_capacity(length),
        })
    }

    /// Adds one body chunk; at the end of the stream, the entry when the body is exactly
    /// `Content-Length` bytes.
    pub fn chunk(
        &mut self,
        chunk: Option<&Bytes>,
        end: bool,
    ) -> Result<Option<Entry>, Uncacheable> {
        if let Some(chunk) = chunk {
            if self.body.len() + chunk.len() > self.length {
                return Err(Uncacheable::Incomplete);
            }
            self.body.extend_from_slice(chunk);
        }
        if !end {
            return Ok(None);
        }
        if self.body.len() != self.length {
            return Err(Uncacheable::Incomplete);
        }
        Ok(Some(Entry {
            header: std::mem::replace(
                &mut self.header,
                ResponseHeader::build(200, None).map_err(|_| Uncacheable::Status)?,
            ),
            body: std::mem::take(&mut self.body).freeze(),
            confirmed: AtomicU64::new(now()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    const MANIFEST: &[(&str, &str)] = &[
        ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
        ("Content-Length", "4"),
        ("Docker-Content-Digest", "sha256:00"),
        ("Etag", "\"sha256:00\""),
        ("Date", "Tue, 01 Dec 2026 00:00:00 GMT"),
    ];

    #[test]
    fn a_complete_200_is_kept_with_its_manifest_headers() {
        let mut c = Capture::start(&answer(200, MANIFEST), 100).unwrap();
        assert!(matches!(
            c.chunk(Some(&Bytes::from_static(b"ab")), false),
            Ok(None)
        ));
        let e = c
            .chunk(Some(&Bytes::from_static(b"cd")), true)
            .unwrap()
            .unwrap();
        assert_eq!(e.body().as_ref(), b"abcd");
        assert_eq!(e.header().status, 200);
        assert_eq!(e.header().headers["docker-content-digest"], "sha256:00");
        assert!(e.header().headers.get("date").is_none());
        assert!(e.weight() > 4);
    }

    #[test]
    fn anything_else_is_passed_through() {
        let with = |extra: (&str, &str)| {
            let mut h = MANIFEST.to_vec();
            h.push(extra);
            answer(200, &h)
        };
        assert_eq!(
            Capture::start(&answer(404, MANIFEST), 100).unwrap_err(),
            Uncacheable::Status
        );
        assert_eq!(
            Capture::start(&answer(200, &MANIFEST[..1]), 100).unwrap_err(),
            Uncacheable::NoLength
        );
        assert_eq!(
            Capture::start(&with(("Content-Length", "4")), 100).unwrap_err(),
            Uncacheable::NoLength
        );
        assert_eq!(
            Capture::start(&answer(200, MANIFEST), 3).unwrap_err(),
            Uncacheable::TooLarge
        );
        assert_eq!(
            Capture::start(&with(("Cache-Control", "private, No-Store")), 100).unwrap_err(),
            Uncacheable::NoStore
        );
        assert!(Capture::start(&with(("Cache-Control", "max-age=5")), 100).is_ok());
        // Short and long bodies are not kept.
        let mut c = Capture::start(&answer(200, MANIFEST), 100).unwrap();
        assert!(matches!(
            c.chunk(Some(&Bytes::from_static(b"abc")), true),
            Err(Uncacheable::Incomplete)
        ));
        let mut c = Capture::start(&answer(200, MANIFEST), 100).unwrap();
        assert!(matches!(
            c.chunk(Some(&Bytes::from_static(b"abcde")), false),
            Err(Uncacheable::Incomplete)
        ));
    }
}
