//! SIGTERM in the middle of a large upload: the upload finishes, new requests are turned away,
//! and the process exits 0.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;

/// A body that trickles out so the upload is still running when SIGTERM arrives.
struct Slow {
    left: usize,
    chunk: Vec<u8>,
    offset: usize,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(2));
        let rest = &self.chunk[self.offset..];
        let n = buf.len().min(self.left).min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.offset = (self.offset + n) % self.chunk.len();
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn sigterm_lets_a_large_upload_finish_and_exits_zero() {
    upload_through_a_signal("-TERM", 64);
}

#[test]
fn sigint_drains_the_same_way() {
    upload_through_a_signal("-INT", 24);
}

fn upload_through_a_signal(signal: &str, mib: usize) {
    let registry = Registry::start();
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
    let mut proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\nshutdown_timeout: 60s\n",
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let client = proxy.client();
    let size = mib * 1024 * 1024;
    let chunk = pseudo_random(64 * 1024, 5);
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        data.extend_from_slice(&chunk);
    }
    let digest = format!("sha256:{}", sha256_hex(&data));
    drop(data);
    let r = client
        .post(proxy.url("/v2/bob/big/blobs/uploads/"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();

    let upload = {
        let client = client.clone();
        let url = format!("{location}&digest={digest}");
        std::thread::spawn(move || {
            let started = Instant::now();
            let body = reqwest::blocking::Body::sized(
                Slow {
                    left: size,
                    chunk,
                    offset: 0,
                },
                size as u64,
            );
            let r = client
                .put(url)
                .basic_auth("bob", Some("bobpw"))
                .header("content-type", "application/octet-stream")
                .body(body)
                .send();
            (r.map(|r| r.status().as_u16()), started.elapsed())
        })
    };
    // Let the upload get going, then ask the proxy to stop.
    std::thread::sleep(Duration::from_millis(500));
    let pid = proxy.proc.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
    // While draining, a new request is turned away with 503.
    wait_until("draining", Duration::from_secs(5), || {
        let fresh = proxy.client();
        fresh
            .get(proxy.url("/v2/"))
            .basic_auth("bob", Some("bobpw"))
            .send()
            .map(|r| r.status() == 503)
            .unwrap_or(false)
    });
    let (status, took) = upload.join().unwrap();
    assert_eq!(status.unwrap(), 201, "the upload in flight must complete");
    assert!(
        took > Duration::from_millis(600),
        "the upload was not in flight at SIGTERM ({took:?})"
    );
    let start = Instant::now();
    let code = loop {
        if let Some(status) = proxy.proc.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the proxy did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "{}", proxy.proc.output());
    // The blob is complete in the registry.
    let r = reqwest::blocking::Client::new()
        .head(format!("{}/v2/bob/big/blobs/{digest}", registry.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        size.to_string()
    );
}

/// While draining, a request with a body (the next chunk of an upload, which a load balancer
/// could not replay elsewhere) is served and its connection closed; one without a body is
/// turned away; and with `shutdown_delay` the process stays up that long although nothing is
/// in flight, so that load balancers see `/readyz` fail before the port closes.
#[test]
fn draining_serves_bodies_refuses_the_rest_and_waits_out_shutdown_delay() {
    let registry = Registry::start();
    let admin = free_port();
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
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin}\nauth:\n  users: users.yaml\nacl: acl.yaml\nshutdown_delay: 3s\n"
    );
    let mut proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let client = proxy.client();
    let r = client
        .post(proxy.url("/v2/bob/drain/blobs/uploads/"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let data = pseudo_random(256 * 1024, 11);
    let digest = format!("sha256:{}", sha256_hex(&data));

    let signalled = Instant::now();
    let pid = proxy.proc.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    wait_until("not ready", Duration::from_secs(5), || {
        reqwest::blocking::get(&ready).is_ok_and(|r| r.status() == 503)
    });
    // No body: refused, connection closed.
    let r = proxy
        .client()
        .get(proxy.url("/v2/"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["connection"], "close");
    // A body: served (the upload completes), connection closed.
    let r = proxy
        .client()
        .put(format!("{location}&digest={digest}"))
        .basic_auth("bob", Some("bobpw"))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "too slow to test within shutdown_delay"
    );
    assert_eq!(r.status(), 201, "an upload chunk is served while draining");
    assert_eq!(r.headers()["connection"], "close");
    let code = loop {
        if let Some(status) = proxy.proc.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(signalled.elapsed() < Duration::from_secs(20), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0), "{}", proxy.proc.output());
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "exited {:?} after SIGTERM, before shutdown_delay",
        signalled.elapsed()
    );
    let r = reqwest::blocking::Client::new()
        .head(format!("{}/v2/bob/drain/blobs/{digest}", registry.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
