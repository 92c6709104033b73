//! Connection and request limits that keep one client from exhausting the proxy: a cap on
//! open connections, a deadline for receiving a request's header (slowloris), and checks on
//! the size of what was received (URI length, header count and bytes).
//!
//! Pingora bounds each single read of a request header (60 s) but not the whole header, so a
//! client sending one byte a minute holds a connection for ever; [`HeaderDeadline`] bounds the
//! whole header, from its first byte to its blank line. On HTTP/2 it bounds the time to the
//! connection preface instead, and Pingora's `h2_idle_timeout` (set from `idle_timeout` in
//! `server.rs`) closes a connection that has no open stream, so idle HTTP/2 connections cannot
//! pile up against `max_connections` either; `max_connections_per_address` keeps one client
//! from taking all of them.
//!
//! The request-target limit is applied twice. HTTP/1 targets are measured on the wire by
//! [`HeaderDeadline`] and answered 414 there, before Pingora parses them: Pingora (through the
//! `http` crate, which takes at most [`MAX_TARGET`] bytes) would otherwise answer a longer one
//! with an empty 400 that no hook of ours sees. Targets that reach the proxy (HTTP/2, and
//! HTTP/1 within the limit) are checked by [`Limits::check`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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

use crate::client::TrustedProxies;
use crate::metrics::Metrics;

/// The longest request target the HTTP parser underneath (the `http` crate's `Uri`) accepts;
/// `limits.max_uri_length` may not exceed it, so that every target over the limit gets a 414.
pub const MAX_TARGET: usize = 65_534;

/// Most bytes of an over-long request's header read (and dropped) before its 414 is sent, so
/// that closing the connection does not reset it under the client's feet: Pingora's own bound
/// on a request header.
const MAX_DRAIN: usize = 1024 * 1024;

/// The answer to an HTTP/1 request target over the limit, written by [`HeaderDeadline`] itself:
/// the same status, OCI body and registry header as the proxy's other refusals.
const TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\n\
Content-Type: application/json\r\n\
Docker-Distribution-API-Version: registry/2.0\r\n\
Cache-Control: no-store\r\n\
Connection: close\r\n\
Content-Length: 85\r\n\
\r\n\
{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"request target too long\",\"detail\":null}]}";

/// The limits, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections at once; more are closed at accept.
    pub max_connections: usize,
    /// Open client connections from one address (IPv6: one /64); trusted proxies are exempt.
    pub max_connections_per_address: usize,
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
    /// Request rate limits (`limits.rate`); `None`: off.
    pub rate: Option<crate::cluster::rate::Settings>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_address: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_uri_length: 8 * 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            rate: None,
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

/// Wraps a Pingora app: refuses connections past `max_connections` (overall) and
/// `max_connections_per_address`, and puts a [`HeaderDeadline`] on each connection.
pub struct ConnectionLimiter<A> {
    inner: Arc<A>,
    open: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    trusted: TrustedProxies,
    header_timeout: Duration,
    max_target: usize,
    metrics: Option<Arc<Metrics>>,
}

impl<A> ConnectionLimiter<A> {
    /// Limits `inner` as `limits` says; connections from `trusted` proxies count only towards
    /// the overall cap (every client behind a load balancer shares its address).
    pub fn new(inner: A, limits: &Limits, trusted: TrustedProxies) -> Self {
        ConnectionLimiter {
            inner: Arc::new(inner),
            open: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Arc::new(PerAddress::new(limits.max_connections_per_address)),
            trusted,
            header_timeout: limits.header_read_timeout,
            max_target: limits.max_uri_length.min(MAX_TARGET),
            metrics: None,
        }
    }

    /// Counts the connections it lets through in `portcullis_client_connections` while they
    /// are open (refused ones are never counted).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// Open connections per client address. The map holds only addresses with a connection
/// open, so it is bounded by `max_connections`.
#[derive(Debug)]
pub struct PerAddress {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub struct AddressPermit {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    /// At most `limit` connections per address.
    pub fn new(limit: usize) -> Self {
        PerAddress {
            limit,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a connection from `ip`, or `None` when that address is at its limit.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<AddressPermit> {
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressPermit {
            table: self.clone(),
            key,
        })
    }

    /// Connections open from `ip`'s address (or /64).
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&address_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// IPv4 per address (mapped IPv6 as IPv4); IPv6 per /64, since whoever has one address of a
/// /64 usually has all of them.
fn address_key(ip: IpAddr) -> IpAddr {
    match crate::client::canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
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
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _address_permit = match peer {
            Some(ip) if !self.trusted.contains(ip) => match self.per_address.enter(ip) {
                Some(permit) => Some(permit),
                None => {
                    tracing::warn!(client = %ip, "per-address connection limit reached; closing a new connection");
                    return None;
                }
            },
            _ => None,
        };
        let _open = self.metrics.as_ref().map(|m| m.connection_opened());
        // HTTP/2 frames are binary and multiplexed: there the deadline covers the preface.
        let stream: Stream = if stream.selected_alpn_proto() == Some(ALPN::H2) {
            Box::new(HeaderDeadline::h2_preface(stream, self.header_timeout))
        } else {
            Box::new(
                HeaderDeadline::new(stream, self.header_timeout).with_max_target(self.max_target),
            )
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
    /// HTTP/2: waiting for the rest of the 24-byte connection preface.
    Preface { missing: u8 },
    /// HTTP/2 after the preface: nothing more to watch (idle streams are Pingora's).
    Done,
}

/// Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0…`).
const H2_PREFACE_LEN: u8 = 24;

/// Where the request line is: its method, its target (with the bytes seen so far), or past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Method,
    Target(usize),
    Done,
}

impl Line {
    /// Follows `bytes` of a request header; `Err(())` once the target is longer than `max`.
    fn scan(mut self, bytes: &[u8], max: usize) -> Result<Line, ()> {
        for &b in bytes {
            self = match (self, b) {
                (Line::Method, b' ') => Line::Target(0),
                (Line::Method, _) => Line::Method,
                (Line::Target(_), b' ' | b'\r' | b'\n') => return Ok(Line::Done),
                (Line::Target(n), _) if n + 1 > max => return Err(()),
                (Line::Target(n), _) => Line::Target(n + 1),
                (Line::Done, _) => return Ok(Line::Done),
            };
        }
        Ok(self)
    }
}

/// An over-long request being refused: its header is read and dropped, then the 414 written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Reading the rest of the header (`phase` finds its end; `read` bytes so far).
    Draining { phase: Phase, read: usize },
    /// Writing [`TOO_LONG`], `written` bytes so far.
    Writing { written: usize },
    /// Written and flushed: every read now says end of stream.
    Done,
}

/// An HTTP/1 stream whose request headers must arrive within a deadline counted from their
/// first byte (idle keep-alive time before it is not counted: that is the idle timeout's job),
/// and whose request targets must not be longer than `limits.max_uri_length` (answered 414
/// here, see the module doc).
pub struct HeaderDeadline {
    inner: Stream,
    timeout: Duration,
    phase: Phase,
    timer: Option<Pin<Box<Sleep>>>,
    max_target: usize,
    line: Line,
    refusal: Option<Refusal>,
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
            max_target: MAX_TARGET,
            line: Line::Method,
            refusal: None,
        }
    }

    /// Wraps an HTTP/2 `inner`, whose client must send its preface within `timeout` from now
    /// (Pingora's HTTP/2 handshake would otherwise wait for it for ever).
    pub fn h2_preface(inner: Stream, timeout: Duration) -> Self {
        HeaderDeadline {
            phase: Phase::Preface {
                missing: H2_PREFACE_LEN,
            },
            timer: Some(Box::pin(tokio::time::sleep_until(Instant::now() + timeout))),
            ..HeaderDeadline::new(inner, timeout)
        }
    }

    /// Refuses request targets longer than `max` bytes (at most [`MAX_TARGET`]) with a 414.
    pub fn with_max_target(mut self, max: usize) -> Self {
        self.max_target = max.min(MAX_TARGET);
        self
    }

    /// Drives a [`Refusal`]: drain the header, write the 414, flush, then end of stream (so
    /// Pingora closes the connection without answering anything itself).
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let Some(refusal) = self.refusal else {
                return Poll::Ready(Ok(()));
            };
            self.refusal = Some(match refusal {
                Refusal::Draining { phase, read } => {
                    if phase == Phase::Rest || read >= MAX_DRAIN {
                        Refusal::Writing { written: 0 }
                    } else {
                        let mut scratch = [0u8; 8192];
                        let mut rb = ReadBuf::new(&mut scratch);
                        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                                Refusal::Writing { written: 0 }
                            }
                            Poll::Ready(Ok(())) => Refusal::Draining {
                                phase: scan(phase, rb.filled()),
                                read: read + rb.filled().len(),
                            },
                        }
                    }
                }
                Refusal::Writing { written } if written < TOO_LONG.len() => {
                    match Pin::new(&mut self.inner).poll_write(cx, &TOO_LONG[written..]) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                        }
                        Poll::Ready(Ok(n)) => Refusal::Writing {
                            written: written + n,
                        },
                    }
                }
                Refusal::Writing { .. } => match Pin::new(&mut self.inner).poll_flush(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => Refusal::Done,
                },
                Refusal::Done => return Poll::Ready(Ok(())),
            });
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
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Phase::Preface { missing }) = (&result, this.phase) {
            let got = (buf.filled().len() - before).min(usize::from(missing)) as u8;
            this.phase = match missing - got {
                0 => Phase::Done,
                missing => Phase::Preface { missing },
            };
            if this.phase == Phase::Done {
                this.timer = None;
            }
            return result;
        }
        // Only header bytes are looked at: a body streams through uncopied.
        if let (Poll::Ready(Ok(())), Phase::Header { .. }) = (&result, this.phase) {
            let new = buf.filled()[before..].to_vec();
            if !new.is_empty() {
                match this.line.scan(&new, this.max_target) {
                    Ok(line) => this.line = line,
                    Err(()) => {
                        // Pingora must not see this request: hide what was read, answer here.
                        buf.set_filled(before);
                        tracing::info!(
                            limit = this.max_target,
                            "request target longer than limits.max_uri_length: answered 414"
                        );
                        this.refusal = Some(Refusal::Draining {
                            phase: scan(this.phase, &new),
                            read: new.len(),
                        });
                        return this.poll_refusal(cx);
                    }
                }
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
            self.line = Line::Method;
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
                self.line = Line::Method;
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
    fn request_targets_are_measured_across_reads() {
        let line = Line::Method.scan(b"\r\nGET /v2/", 10).unwrap();
        assert_eq!(line, Line::Target(4));
        assert_eq!(line.scan(b"abcdef", 10), Ok(Line::Target(10)));
        assert_eq!(line.scan(b"abcdefg", 10), Err(()));
        assert_eq!(line.scan(b"abc HTTP/1.1\r\n", 10), Ok(Line::Done));
        assert_eq!(Line::Done.scan(&[b'a'; 100], 10), Ok(Line::Done));
        // A long method or header is not a long target.
        assert_eq!(Line::Method.scan(&[b'A'; 100], 10), Ok(Line::Method));
    }

    #[test]
    fn the_canned_414_is_well_formed() {
        let text = std::str::from_utf8(TOO_LONG).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["errors"][0]["code"], "UNSUPPORTED");
        assert_eq!(json["errors"][0]["message"], Exceeded::Uri.message());
    }

    #[test]
    fn connections_per_address() {
        let table = Arc::new(PerAddress::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let first = table.enter(a).unwrap();
        let second = table.enter(mapped).expect("the same client, counted once");
        assert!(table.enter(a).is_none(), "a third is refused");
        assert!(table.enter("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert_eq!(table.open(a), 1);
        let third = table.enter(a).expect("a slot freed up");
        drop((second, third));
        assert_eq!(table.open(a), 0);
        assert!(
            table.open.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
        // IPv6 per /64.
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let _p = (table.enter(x).unwrap(), table.enter(y).unwrap());
        assert!(table.enter("2001:db8:1:2::77".parse().unwrap()).is_none());
        assert!(table.enter("2001:db8:1:3::1".parse().unwrap()).is_some());
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
