//! Connection and request limits that keep one client from exhausting the proxy: a cap on
//! open connections, a deadline for receiving a request's header (slowloris), and checks on
//! the size of what was received (URI length, header count and bytes).
//!
//! Pingora bounds each single read of a request header (60 s) but not the whole header, so a
//! client sending one byte a minute holds a connection for ever; [`HeaderDeadline`] bounds the
//! whole header, from its first byte to its blank line.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

/// The limits, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections at once; more are closed at accept.
    pub max_connections: usize,
    /// Time from a request header's first byte to its end.
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection waits for its next request.
    pub idle_timeout: Duration,
    /// Longest request target (path and query), in bytes: 414 beyond.
    pub max_uri_length: usize,
    /// Most request header fields: 431 beyond.
    pub max_headers: usize,
    /// Most bytes in all request header fields together: 431 beyond.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_uri_length: 8 * 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Which limit a request broke, with the status and OCI code to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The target is too long: 414.
    Uri,
    /// Too many header fields: 431.
    HeaderCount,
    /// The header fields are too large: 431.
    HeaderBytes,
}

impl Exceeded {
    /// HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Exceeded::Uri => 414,
            Exceeded::HeaderCount | Exceeded::HeaderBytes => 431,
        }
    }

    /// A message for the OCI body.
    pub fn message(self) -> &'static str {
        match self {
            Exceeded::Uri => "request target too long",
            Exceeded::HeaderCount => "too many request header fields",
            Exceeded::HeaderBytes => "request header fields too large",
        }
    }
}

impl Limits {
    /// Checks a received request against the size limits.
    pub fn check(&self, req: &pingora::http::RequestHeader) -> Result<(), Exceeded> {
        let target = req
            .uri
            .path_and_query()
            .map(|p| p.as_str().len())
            .unwrap_or(0);
        if target > self.max_uri_length {
            return Err(Exceeded::Uri);
        }
        if req.headers.len() > self.max_headers {
            return Err(Exceeded::HeaderCount);
        }
        let bytes: usize = req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if bytes > self.max_header_bytes {
            return Err(Exceeded::HeaderBytes);
        }
        Ok(())
    }
}

/// Wraps a Pingora app: refuses connections past `max_connections` and puts a
/// [`HeaderDeadline`] on each HTTP/1 connection.
pub struct ConnectionLimiter<A> {
    inner: Arc<A>,
    open: Arc<Semaphore>,
    header_timeout: Duration,
}

impl<A> ConnectionLimiter<A> {
    /// Limits `inner` as `limits` says.
    pub fn new(inner: A, limits: &Limits) -> Self {
        ConnectionLimiter {
            inner: Arc::new(inner),
            open: Arc::new(Semaphore::new(limits.max_connections)),
            header_timeout: limits.header_read_timeout,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionLimiter<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Ok(_permit) = self.open.clone().try_acquire_owned() else {
            tracing::warn!("connection limit reached; closing a new connection");
            return None;
        };
        // HTTP/2 frames are binary and multiplexed: the header deadline reads HTTP/1 only.
        let stream: Stream = if stream.selected_alpn_proto() == Some(ALPN::H2) {
            stream
        } else {
            Box::new(HeaderDeadline::new(stream, self.header_timeout))
        };
        let mut stream = stream;
        loop {
            match self.inner.process_new(stream, shutdown).await {
                Some(next) => stream = next,
                None => return None,
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Where a connection is in the request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (or reading) a request header; `matched` counts bytes of `\r\n\r\n` seen.
    Header { matched: u8 },
    /// The header is complete: body bytes and the response follow.
    Rest,
}

/// An HTTP/1 stream whose request headers must arrive within a deadline counted from their
/// first byte (idle keep-alive time before it is not counted: that is the idle timeout's job).
pub struct HeaderDeadline {
    inner: Stream,
    timeout: Duration,
    phase: Phase,
    timer: Option<Pin<Box<Sleep>>>,
}

impl fmt::Debug for HeaderDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderDeadline")
            .field("phase", &self.phase)
            .finish()
    }
}

impl HeaderDeadline {
    /// Wraps `inner`, expecting a request header first.
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        HeaderDeadline {
            inner,
            timeout,
            phase: Phase::Header { matched: 0 },
            timer: None,
        }
    }
}

/// Follows `bytes` through the search for the header's blank line.
fn scan(phase: Phase, bytes: &[u8]) -> Phase {
    let Phase::Header { mut matched } = phase else {
        return phase;
    };
    for &b in bytes {
        matched = match (matched, b) {
            (0 | 2, b'\r') => matched + 1,
            (1 | 3, b'\n') => matched + 1,
            (_, b'\r') => 1,
            _ => 0,
        };
        if matched == 4 {
            return Phase::Rest;
        }
    }
    Phase::Header { matched }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(timer) = this.timer.as_mut() {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request header not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = buf.filled()[before..].to_vec();
            if !new.is_empty() && matches!(this.phase, Phase::Header { .. }) {
                if this.timer.is_none() {
                    let mut timer =
                        Box::pin(tokio::time::sleep_until(Instant::now() + this.timeout));
                    // Register the waker so the deadline fires even if no more bytes come.
                    let _ = timer.as_mut().poll(cx);
                    this.timer = Some(timer);
                }
                this.phase = scan(this.phase, &new);
                if this.phase == Phase::Rest {
                    this.timer = None;
                }
            }
        }
        result
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // A final response starts: what is read next is a new request. An interim
        // `100 Continue` does not end the request (its body is still to come).
        if self.phase == Phase::Rest
            && !buf.starts_with(b"HTTP/1.1 1")
            && !buf.starts_with(b"HTTP/1.0 1")
        {
            self.phase = Phase::Header { matched: 0 };
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.phase == Phase::Rest {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map(|b| &b[..])
                .unwrap_or(&[]);
            if !first.starts_with(b"HTTP/1.1 1") && !first.starts_with(b"HTTP/1.0 1") {
                self.phase = Phase::Header { matched: 0 };
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_end_is_found_across_reads() {
        let p = scan(Phase::Header { matched: 0 }, b"GET / HTTP/1.1\r\nHost: x\r");
        assert_eq!(p, Phase::Header { matched: 1 });
        let p = scan(p, b"\n\r");
        assert_eq!(p, Phase::Header { matched: 3 });
        assert_eq!(scan(p, b"\nbody"), Phase::Rest);
        assert_eq!(
            scan(Phase::Header { matched: 0 }, b"a\r\r\n\r\n"),
            Phase::Rest
        );
        assert_eq!(
            scan(Phase::Header { matched: 0 }, b"a\n\n\r\n"),
            Phase::Header { matched: 2 }
        );
        assert_eq!(scan(Phase::Rest, b"\r\n\r\n"), Phase::Rest);
    }

    #[test]
    fn size_limits() {
        let limits = Limits {
            max_uri_length: 10,
            max_headers: 2,
            max_header_bytes: 40,
            ..Limits::default()
        };
        let mut req = pingora::http::RequestHeader::build("GET", b"/v2/", None).unwrap();
        assert_eq!(limits.check(&req), Ok(()));
        req.insert_header("a", "1").unwrap();
        req.insert_header("b", "2").unwrap();
        assert_eq!(limits.check(&req), Ok(()));
        req.insert_header("c", "3").unwrap();
        assert_eq!(limits.check(&req), Err(Exceeded::HeaderCount));
        let mut req = pingora::http::RequestHeader::build("GET", b"/v2/", None).unwrap();
        req.insert_header("a", "x".repeat(40)).unwrap();
        assert_eq!(limits.check(&req), Err(Exceeded::HeaderBytes));
        let req = pingora::http::RequestHeader::build("GET", b"/v2/aaaaaaaaaa", None).unwrap();
        assert_eq!(limits.check(&req), Err(Exceeded::Uri));
    }
}
