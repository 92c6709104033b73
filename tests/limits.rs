//! Request limits: long targets, many or large headers, slow headers (slowloris), idle
//! keep-alive connections and the connection cap — each refused without reaching the registry.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn start(recorder: &Recorder) -> Proxy {
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        (
            "acl.yaml",
            "- match: {account: bob}\n  actions: [\"*\"]\n".to_string(),
        ),
    ];
    Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\nlimits:\n  max_connections: 4\n  header_read_timeout: 1s\n  idle_timeout: 1s\n  max_uri_length: 2048\n  max_headers: 20\n  max_header_bytes: 4096\n",
            files: &files,
            tls: false,
        },
        &recorder.url(),
    )
}

const AUTH: &str = "Authorization: Basic Ym9iOmJvYnB3\r\n"; // bob:bobpw

/// Reads until the server closes the connection or `limit` passes; returns what came and
/// whether the server closed it.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).to_string(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&out).to_string(), true),
        }
    }
    (String::from_utf8_lossy(&out).to_string(), false)
}

#[test]
fn sizes_are_limited_and_never_forwarded() {
    let recorder = Recorder::start();
    let proxy = start(&recorder);
    let addr: SocketAddr = proxy.host().parse().unwrap();
    let host = proxy.host();
    let long = format!("/v2/bob/{}/tags/list", "a".repeat(2100));
    let resp = raw_request(
        addr,
        format!("GET {long} HTTP/1.1\r\nHost: {host}\r\n{AUTH}\r\n").as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 414"), "{resp}");
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw_request(
        addr,
        format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\n{AUTH}{many}\r\n").as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    let big = format!("X-Big: {}\r\n", "b".repeat(5000));
    let resp = raw_request(
        addr,
        format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\n{AUTH}{big}\r\n").as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert!(resp.contains("\"errors\""), "{resp}");
    assert!(recorder.seen().is_empty(), "{:?}", recorder.seen());
    // Within the limits it is forwarded.
    let resp = raw_request(
        addr,
        format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\n{AUTH}Connection: close\r\n\r\n").as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(recorder.seen().len(), 1);
}

#[test]
fn a_slow_header_is_cut_off_and_an_idle_connection_closed() {
    let recorder = Recorder::start();
    let proxy = start(&recorder);
    let addr: SocketAddr = proxy.host().parse().unwrap();

    // Slowloris: one header byte every 200 ms never finishes within 1 s.
    let mut s = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let request = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {}\r\n{AUTH}X-Slow: {}\r\n\r\n",
        proxy.host(),
        "z".repeat(50)
    );
    let mut closed_after = None;
    for b in request.as_bytes() {
        if s.write_all(&[*b]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(1));
        assert!(closed, "the slow header was not cut off");
        started.elapsed()
    });
    assert!(closed_after < Duration::from_secs(4), "{closed_after:?}");
    assert!(recorder.seen().is_empty());

    // The same on the second request of a kept-alive connection (the deadline is re-armed
    // for every request's header, not only the first).
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\n{AUTH}\r\n", proxy.host()).as_bytes())
        .unwrap();
    let mut first = Vec::new();
    let mut chunk = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while !first.ends_with(b"\r\n\r\n{}") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&chunk[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let mut cut_off = false;
    for b in request.as_bytes() {
        if s.write_all(&[*b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !cut_off {
        let (rest, closed) = read_until_closed(&mut s, Duration::from_secs(1));
        assert!(closed, "the slow second header was not cut off: {rest}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        recorder.seen().len(),
        1,
        "only the first request was forwarded"
    );

    // A keep-alive connection left idle is closed after idle_timeout.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\n{AUTH}\r\n", proxy.host()).as_bytes())
        .unwrap();
    let idle_from = Instant::now();
    let (resp, closed) = read_until_closed(&mut s, Duration::from_secs(4));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(closed, "idle connection left open");
    assert!(
        idle_from.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle_from.elapsed()
    );
}

#[test]
fn connections_beyond_the_cap_are_closed() {
    let recorder = Recorder::start();
    let proxy = start(&recorder);
    let addr: SocketAddr = proxy.host().parse().unwrap();
    // Four connections, each in the middle of a header (so they stay open).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /v2/ HTTP/1.1\r\n").unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = TcpStream::connect(addr).unwrap();
    let _ = fifth.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n").as_bytes());
    let (resp, closed) = read_until_closed(&mut fifth, Duration::from_secs(1));
    assert!(
        closed && resp.is_empty(),
        "the fifth connection was served: {resp}"
    );
    // When the held ones go, new connections are served again.
    drop(held);
    wait_until("a free slot", Duration::from_secs(5), || {
        let resp = raw_request(
            addr,
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{AUTH}Connection: close\r\n\r\n").as_bytes(),
        );
        resp.starts_with("HTTP/1.1 200")
    });
}

/// A TCP connection to `addr` from the loopback address `from` (Linux answers on all of
/// 127/8), so a test can play several clients.
fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    })
    .tap_blocking()
}

trait TapBlocking {
    fn tap_blocking(self) -> Self;
}

impl TapBlocking for TcpStream {
    /// tokio hands over non-blocking sockets; these tests read with timeouts.
    fn tap_blocking(self) -> Self {
        self.set_nonblocking(false).unwrap();
        self
    }
}

#[test]
fn one_address_cannot_take_every_connection() {
    let recorder = Recorder::start();
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        (
            "acl.yaml",
            "- match: {account: bob}\n  actions: [\"*\"]\n".to_string(),
        ),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\nlimits:\n  max_connections: 10\n  max_connections_per_address: 2\n",
            files: &files,
            tls: false,
        },
        &recorder.url(),
    );
    let addr: SocketAddr = proxy.host().parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        // Served once, then held open (keep-alive): certainly counted by the proxy.
        let mut s = connect_from("127.0.0.7", addr);
        s.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n").as_bytes())
            .unwrap();
        let mut buf = [0u8; 1024];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    // The third from the same address is closed unanswered...
    wait_until(
        "the third connection refused",
        Duration::from_secs(5),
        || {
            let mut third = connect_from("127.0.0.7", addr);
            let _ =
                third.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n").as_bytes());
            let (resp, closed) = read_until_closed(&mut third, Duration::from_millis(500));
            closed && resp.is_empty()
        },
    );
    // ...while another address is served.
    let mut other = connect_from("127.0.0.8", addr);
    other
        .write_all(
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{AUTH}Connection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let (resp, _) = read_until_closed(&mut other, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // A slot frees when a held connection goes.
    drop(held);
    wait_until("a free slot", Duration::from_secs(5), || {
        let mut again = connect_from("127.0.0.7", addr);
        let _ = again.write_all(
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{AUTH}Connection: close\r\n\r\n").as_bytes(),
        );
        let (resp, _) = read_until_closed(&mut again, Duration::from_secs(2));
        resp.starts_with("HTTP/1.1 200")
    });
}

/// A TLS connection that negotiated HTTP/2 with the proxy, handshake done, nothing sent.
fn h2_connection(proxy: &Proxy) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use std::sync::Arc;
    let ca = std::fs::read(proxy.dir.path().join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(proxy.host()).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    assert_eq!(conn.alpn_protocol(), Some(b"h2".as_slice()));
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads from an HTTP/2 connection until the proxy closes it; `Some(elapsed)` when it did
/// within `limit`.
fn h2_closed_within(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Idle HTTP/2 connections used to stay up for ever (only HTTP/1 had `idle_timeout`), so a
/// handful of them could hold every slot of `max_connections`.
#[test]
fn idle_http2_connections_are_closed() {
    let recorder = Recorder::start();
    let files = vec![(
        "acl.yaml",
        "- match: {account: bob}\n  actions: [\"*\"]\n".to_string(),
    )];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nacl: acl.yaml\nlimits:\n  header_read_timeout: 1s\n  idle_timeout: 1s\n",
            files: &files,
            tls: true,
        },
        &recorder.url(),
    );
    // No preface at all after the TLS handshake: cut off by the header deadline.
    let mut silent = h2_connection(&proxy);
    let closed = h2_closed_within(&mut silent, Duration::from_secs(6));
    assert!(closed.is_some(), "a silent HTTP/2 connection stayed open");
    // Preface and SETTINGS, then no stream: closed by the idle timeout.
    let mut idle = h2_connection(&proxy);
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    idle.flush().unwrap();
    let closed = h2_closed_within(&mut idle, Duration::from_secs(6));
    assert!(closed.is_some(), "an idle HTTP/2 connection stayed open");
    assert!(
        closed.unwrap() >= Duration::from_millis(800),
        "closed before the idle timeout: {closed:?}"
    );
}
