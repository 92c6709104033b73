//! The security suite: a "secret" repository is pushed straight to the registry, then a user
//! without rights to it tries every trick we know through portcullis. Every attempt must be
//! refused, and the secret's bytes must never appear in any answer.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// Bytes that exist only in the secret repository's blob.
const MARKER: &str = "TOP-SECRET-7f3a9c-CONTENT";

const ACL: &str = r#"
- match: {account: admin}
  actions: ["*"]
- match: {account: "/.+/", name: "${account}/**"}
  actions: ["*"]
"#;

struct World {
    registry: Registry,
    proxy: Proxy,
    secret_digest: String,
    manifest_digest: String,
}

fn push_secret(registry: &Registry) -> (String, String) {
    let blob = format!("{MARKER} {}", "x".repeat(100));
    let digest = registry.push_blob("secret/app", blob.as_bytes());
    let manifest = registry.push_manifest(
        "secret/app",
        "v1",
        &[(&digest, blob.len())],
        serde_json::json!({"secret": MARKER}),
    );
    (digest, manifest)
}

fn world() -> World {
    let registry = Registry::start();
    let (secret_digest, manifest_digest) = push_secret(&registry);
    let files = vec![
        (
            "users.yaml",
            format!(
                "admin:\n  password: \"{}\"\nbob:\n  password: \"{}\"\n\"\": {{}}\n",
                hash("badmin"),
                hash("bobpw")
            ),
        ),
        ("acl.yaml", ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    World {
        registry,
        proxy,
        secret_digest,
        manifest_digest,
    }
}

const BOB: &str = "Authorization: Basic Ym9iOmJvYnB3\r\n"; // bob:bobpw

/// Sends raw bytes and reads everything the server sends until it closes or goes quiet.
fn raw_all(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn statuses(resp: &str) -> Vec<u16> {
    resp.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| resp.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

fn assert_refused(what: &str, resp: &str) {
    assert!(!resp.contains(MARKER), "{what}: the secret leaked:\n{resp}");
    let st = statuses(resp);
    assert!(
        st.iter().all(|s| (400..500).contains(s)),
        "{what}: expected only 4xx, got {st:?}\n{resp}"
    );
}

#[test]
fn path_header_and_smuggling_tricks_are_refused() {
    let w = world();
    let addr: SocketAddr = w.proxy.host().parse().unwrap();
    let host = w.proxy.host();
    let d = &w.secret_digest;
    let m = &w.manifest_digest;
    let targets = [
        format!("/v2/secret/app/blobs/{d}"),
        format!("/v2/secret/app/manifests/{m}"),
        "/v2/secret/app/manifests/v1".to_string(),
        "/v2/secret/app/tags/list".to_string(),
        format!("/v2/bob/%2e%2e/secret/app/blobs/{d}"),
        format!("/v2/bob/../secret/app/blobs/{d}"),
        format!("/v2/bob/..%2fsecret/app/blobs/{d}"),
        format!("/v2/bob%2F..%2Fsecret/app/blobs/{d}"),
        format!("/v2/bob/%252e%252e/secret/app/blobs/{d}"),
        format!("/v2/./secret/app/blobs/{d}"),
        format!("/v2//secret/app/blobs/{d}"),
        format!("/v2/secret//app/blobs/{d}"),
        format!("/v2/secret/app/blobs/{d}/"),
        format!("/v2/secret/app/blobs/{d}?x=/v2/bob/app"),
        format!("/v2/SECRET/app/blobs/{d}"),
        format!("/v2/secret/app;bob/blobs/{d}"),
        format!("/v2/secret\\app/blobs/{d}"),
        format!("/v2/secret/app/blobs/{d}#/v2/bob/app"),
        "/v2/bob/app/../../secret/app/manifests/v1".to_string(),
        "/v2/secret/app/manifests/v1%00".to_string(),
        "/v2/secret/app/manifests/%2e%2e%2f..%2fbob".to_string(),
        "/v2/_catalog/../secret/app/tags/list".to_string(),
        "/V2/secret/app/manifests/v1".to_string(),
        "/v2/secret/app/manifests/v1/..".to_string(),
    ];
    // Control: the detector works — the admin does read the secret this way.
    let control = format!("GET /v2/secret/app/blobs/{d} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic YWRtaW46YmFkbWlu\r\nConnection: close\r\n\r\n");
    assert!(raw_all(addr, control.as_bytes()).contains(MARKER));
    for method in ["GET", "HEAD", "get"] {
        for target in &targets {
            let req = format!(
                "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{BOB}Connection: close\r\n\r\n"
            );
            assert_refused(
                &format!("{method} {target}"),
                &raw_all(addr, req.as_bytes()),
            );
        }
    }
    // Absolute-form and authority games.
    let up = format!("127.0.0.1:{}", w.registry.port);
    for req in [
        format!("GET http://{up}/v2/secret/app/manifests/v1 HTTP/1.1\r\nHost: {up}\r\n{BOB}Connection: close\r\n\r\n"),
        format!("GET http://{host}/v2/secret/app/manifests/v1 HTTP/1.1\r\nHost: {host}\r\n{BOB}Connection: close\r\n\r\n"),
        format!("GET //{up}/v2/secret/app/manifests/v1 HTTP/1.1\r\nHost: {host}\r\n{BOB}Connection: close\r\n\r\n"),
        format!("CONNECT {up} HTTP/1.1\r\nHost: {up}\r\n{BOB}\r\n"),
        format!("GET /v2/bob/app/manifests/v1 HTTP/1.1\r\nHost: {host}\r\n{BOB}X-Original-URL: /v2/secret/app/manifests/v1\r\nX-Rewrite-URL: /v2/secret/app/manifests/v1\r\nConnection: close\r\n\r\n"),
        format!("POST /v2/bob/app/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\n{BOB}X-HTTP-Method-Override: GET\r\nX-Forwarded-Prefix: /v2/secret/app\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        format!("GET /v2/bob/app/manifests/v1 HTTP/1.1\r\nHost: {up}\r\nX-Forwarded-Host: {up}\r\nX-Forwarded-For: 127.0.0.1\r\n{BOB}Connection: close\r\n\r\n"),
        // Someone else's credentials next to bob's.
        format!("GET /v2/secret/app/manifests/v1 HTTP/1.1\r\nHost: {host}\r\n{BOB}Authorization: Basic YWRtaW46d3Jvbmc=\r\nConnection: close\r\n\r\n"),
        format!("GET /v2/secret/app/manifests/v1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic Ym9iOmJvYnB3, Basic YWRtaW46YmFkbWlu\r\nConnection: close\r\n\r\n"),
    ] {
        let resp = raw_all(addr, req.as_bytes());
        assert!(!resp.contains(MARKER), "leak: {req}\n{resp}");
        // Allowed requests to bob's own (empty) repository may be answered 404 by the registry;
        // none may be a success on the secret.
        assert!(statuses(&resp).iter().all(|s| *s >= 400 || *s == 202), "{req}\n{resp}");
    }
    // Request smuggling: a second request hidden in the body of a first.
    let smuggled = format!("GET /v2/secret/app/blobs/{d} HTTP/1.1\r\nHost: {up}\r\n\r\n");
    for framing in [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            5 + smuggled.len()
        ),
        format!(
            "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
            5 + smuggled.len()
        ),
        format!(
            "Content-Length: 0\r\nContent-Length: {}\r\n",
            5 + smuggled.len()
        ),
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n".to_string(),
        "Transfer-Encoding: xchunked\r\n".to_string(),
        "Transfer-Encoding:  chunked \r\n".to_string(),
    ] {
        let req = format!(
            "PATCH /v2/bob/app/blobs/uploads/00000000-0000-0000-0000-000000000000 HTTP/1.1\r\nHost: {host}\r\n{BOB}{framing}\r\n0\r\n\r\n{smuggled}"
        );
        let resp = raw_all(addr, req.as_bytes());
        assert!(
            !resp.contains(MARKER),
            "smuggling leaked with {framing:?}:\n{resp}"
        );
        assert!(
            statuses(&resp).iter().all(|s| *s >= 400),
            "{framing:?}: {resp}"
        );
    }
    // Pipelined: an allowed request followed by a forbidden one on the same connection.
    let req = format!(
        "GET /v2/bob/app/tags/list HTTP/1.1\r\nHost: {host}\r\n{BOB}\r\nGET /v2/secret/app/blobs/{d} HTTP/1.1\r\nHost: {host}\r\n{BOB}Connection: close\r\n\r\n"
    );
    let resp = raw_all(addr, req.as_bytes());
    assert!(!resp.contains(MARKER), "pipelining leaked:\n{resp}");
}

/// The secret blob is not linked into `repo`: asked of the registry itself, not through us.
fn assert_not_linked(w: &World, repo: &str) {
    let r = reqwest::blocking::get(format!(
        "{}/v2/{repo}/blobs/{}",
        w.registry.url(),
        w.secret_digest
    ))
    .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the registry linked the secret into {repo}"
    );
}

/// Found from outside: Go's `mime.ParseMediaType` trims Unicode space and folds Unicode case,
/// so these Content-Types were forms to the registry but not to portcullis's ASCII check, and
/// a push-only caller mounted the secret blob (201) and then read it.
#[test]
fn unicode_form_content_types_never_mount() {
    let w = world();
    let addr: SocketAddr = w.proxy.host().parse().unwrap();
    let host = w.proxy.host();
    let d = &w.secret_digest;
    let body = format!("mount={d}&from=secret/app");
    let form = b"application/x-www-form-urlencoded".as_slice();
    let variants: Vec<Vec<u8>> = vec![
        [b"\xc2\xa0".as_slice(), form].concat(),     // U+00A0
        [b"\xc2\x85".as_slice(), form].concat(),     // U+0085
        [b"\xe3\x80\x80".as_slice(), form].concat(), // U+3000
        b"appl\xc4\xb0cation/x-www-form-urlencoded".to_vec(), // U+0130
        [form, b"\xc2\xa0".as_slice()].concat(),
        b"APPLICATION/X-WWW-FORM-URLENCODED".to_vec(),
    ];
    for ct in variants {
        let mut req = format!(
            "POST /v2/bob/app/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\n{BOB}Content-Length: {}\r\nContent-Type: ",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&ct);
        req.extend_from_slice(format!("\r\nConnection: close\r\n\r\n{body}").as_bytes());
        let resp = raw_all(addr, &req);
        let st = statuses(&resp);
        assert!(!st.contains(&201), "{ct:?}: mounted:\n{resp}");
        assert_not_linked(&w, "bob/app");
        let r = w
            .proxy
            .client()
            .get(w.proxy.url(&format!("/v2/bob/app/blobs/{d}")))
            .basic_auth("bob", Some("bobpw"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{ct:?}");
        assert!(!r.text().unwrap().contains(MARKER));
    }
}

/// The HTTP/2 variant: h2 does not trim header values, so a leading space or tab reached
/// Go's parser, which trims it.
#[test]
fn http2_form_content_types_never_mount() {
    let registry = Registry::start();
    let (secret_digest, _) = push_secret(&registry);
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        ("acl.yaml", ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: true,
        },
        &registry.url(),
    );
    let c = proxy.client();
    let d = &secret_digest;
    for ct in [
        b" application/x-www-form-urlencoded".as_slice(),
        b"\tapplication/x-www-form-urlencoded",
        b"application/x-www-form-urlencoded ",
    ] {
        let r = c
            .post(proxy.url("/v2/bob/app/blobs/uploads/"))
            .basic_auth("bob", Some("bobpw"))
            .header(
                "content-type",
                reqwest::header::HeaderValue::from_bytes(ct).unwrap(),
            )
            .body(format!("mount={d}&from=secret/app"))
            .send()
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_ne!(r.status(), 201, "{ct:?}: mounted");
        let r = reqwest::blocking::get(format!("{}/v2/bob/app/blobs/{d}", registry.url())).unwrap();
        assert_eq!(r.status(), 404, "{ct:?}: the registry linked the secret");
    }
}

/// OCI conformance (v1.1.1, 01_pull_test.go): a reference in neither the tag nor the digest
/// grammar is 404 MANIFEST_UNKNOWN, as registry:2 answers — but only after authorization.
#[test]
fn invalid_manifest_references_are_404_after_authorization() {
    let w = world();
    let c = w.proxy.client();
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = c
            .request(
                method.clone(),
                w.proxy.url("/v2/bob/app/manifests/.INVALID_MANIFEST_NAME"),
            )
            .basic_auth("bob", Some("bobpw"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{method}");
        if method == reqwest::Method::GET {
            let body: serde_json::Value = r.json().unwrap();
            assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
        }
        // Someone else's repository: refused, not 404.
        let r = c
            .request(
                method.clone(),
                w.proxy
                    .url("/v2/secret/app/manifests/.INVALID_MANIFEST_NAME"),
            )
            .basic_auth("bob", Some("bobpw"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "{method}");
        let r = c
            .request(
                method.clone(),
                w.proxy
                    .url("/v2/secret/app/manifests/.INVALID_MANIFEST_NAME"),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{method}");
    }
    // The registry agrees (this is what the conformance suite would see without us).
    let r = reqwest::blocking::get(format!(
        "{}/v2/secret/app/manifests/.INVALID_MANIFEST_NAME",
        w.registry.url()
    ))
    .unwrap();
    assert_eq!(r.status(), 404);
}

/// A registry that answers `101 Switching Protocols` to whatever it is sent, recording the
/// request head: to prove `Upgrade` is never forwarded and a 101 never reaches the client.
fn switching_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            record
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).to_string());
            let _ = stream.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nTUNNEL-OPEN",
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    (url, seen)
}

#[test]
fn upgrades_are_never_forwarded_and_101_is_refused() {
    let (upstream, seen) = switching_upstream();
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        ("acl.yaml", ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: false,
        },
        &upstream,
    );
    let addr: SocketAddr = proxy.host().parse().unwrap();
    let host = proxy.host();
    let req = format!(
        "GET /v2/bob/app/tags/list HTTP/1.1\r\nHost: {host}\r\n{BOB}Connection: Upgrade, X-Secret-Hop\r\nUpgrade: websocket\r\nX-Secret-Hop: 1\r\nTE: trailers\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Status: x\r\n\r\nGET /v2/secret/app/tags/list HTTP/1.1\r\nHost: {host}\r\n\r\n"
    );
    let resp = raw_all(addr, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(!resp.contains("TUNNEL-OPEN"), "{resp}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "only the authorized request went upstream: {seen:?}"
    );
    let head = seen[0].to_ascii_lowercase();
    assert!(head.starts_with("get /v2/bob/app/tags/list "), "{head}");
    for hop in [
        "upgrade:",
        "x-secret-hop:",
        "te:",
        "keep-alive:",
        "proxy-connection:",
        "proxy-status:",
        "websocket",
    ] {
        assert!(!head.contains(hop), "{hop} was forwarded:\n{head}");
    }
}

/// What reaches the registry is rebuilt: only the query parameters the endpoint reads,
/// re-encoded; the Content-Type fixed on uploads, validated on manifest PUT, absent elsewhere.
#[test]
fn forwarded_requests_are_rebuilt() {
    let recorder = Recorder::start();
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        ("acl.yaml", ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: false,
        },
        &recorder.url(),
    );
    let addr: SocketAddr = proxy.host().parse().unwrap();
    let host = proxy.host();
    let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let cases: Vec<(String, &str, Vec<&str>, Vec<&str>)> = vec![
        (
            format!("POST /v2/bob/app/blobs/uploads/?from=bob/other&mount={d}&x=%2e%2e&_state=s"),
            "Content-Type: application/x-www-form-urlencoded\r\n",
            vec![
                "post /v2/bob/app/blobs/uploads/?mount=sha256%3a0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef&from=bob/other http/1.1",
                "content-type: application/octet-stream",
            ],
            vec!["x=", "_state", "form"],
        ),
        (
            "PATCH /v2/bob/app/blobs/uploads/u-1?_state=a+b%2Fc&mount=m&digest=x".to_string(),
            "Content-Type: multipart/form-data; boundary=x\r\n",
            vec![
                "patch /v2/bob/app/blobs/uploads/u-1?_state=a%20b/c http/1.1",
                "content-type: application/octet-stream",
            ],
            vec!["mount", "digest", "multipart"],
        ),
        (
            "PUT /v2/bob/app/manifests/v1?tag=x".to_string(),
            "Content-Type: Application/VND.OCI.image.manifest.v1+JSON; charset=utf-8\r\n",
            vec![
                "put /v2/bob/app/manifests/v1 http/1.1",
                "content-type: application/vnd.oci.image.manifest.v1+json\r\n",
            ],
            vec!["charset", "tag="],
        ),
        (
            "GET /v2/bob/app/tags/list?n=2&last=a%2Fb&n%00=1".to_string(),
            "Content-Type: application/x-www-form-urlencoded\r\n",
            vec!["get /v2/bob/app/tags/list?n=2&last=a/b http/1.1"],
            vec!["content-type", "%00"],
        ),
    ];
    for (line, extra, want, never) in cases {
        let before = recorder.seen().len();
        let req = format!(
            "{line} HTTP/1.1\r\nHost: {host}\r\n{BOB}{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let resp = raw_all(addr, req.as_bytes());
        assert!(resp.starts_with("HTTP/1.1 200"), "{line}: {resp}");
        let seen = recorder.seen();
        assert_eq!(seen.len(), before + 1, "{line}");
        let head = seen[before].to_ascii_lowercase();
        for w in want {
            assert!(head.contains(w), "{line}: wanted {w:?} in\n{head}");
        }
        for n in never {
            assert!(!head.contains(n), "{line}: {n:?} was forwarded in\n{head}");
        }
    }
    // A manifest PUT whose Content-Type is not a plain ASCII media type is refused.
    let before = recorder.seen().len();
    for ct in [
        b"\xc2\xa0application/vnd.oci.image.manifest.v1+json".as_slice(),
        b"application/vnd.oci.image.manifest.v1+json\xc2\x85",
        b"application",
    ] {
        let mut req = format!("PUT /v2/bob/app/manifests/v1 HTTP/1.1\r\nHost: {host}\r\n{BOB}Content-Length: 0\r\nContent-Type: ").into_bytes();
        req.extend_from_slice(ct);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let resp = raw_all(addr, &req);
        assert!(resp.starts_with("HTTP/1.1 400"), "{ct:?}: {resp}");
        assert!(resp.contains("MANIFEST_INVALID"), "{resp}");
    }
    let req = format!("PUT /v2/bob/app/manifests/v1 HTTP/1.1\r\nHost: {host}\r\n{BOB}Content-Length: 0\r\nContent-Type: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n");
    assert!(raw_all(addr, req.as_bytes()).starts_with("HTTP/1.1 400"));
    assert_eq!(
        recorder.seen().len(),
        before,
        "refused PUTs never went upstream"
    );
}

#[test]
fn cross_repository_tricks_are_refused() {
    let w = world();
    let c = w.proxy.client();
    let bob =
        |r: reqwest::blocking::RequestBuilder| r.basic_auth("bob", Some("bobpw")).send().unwrap();
    let d = &w.secret_digest;

    // Mount from the secret into bob's repository: turned into a plain upload start.
    let r = bob(c.post(w.proxy.url(&format!(
        "/v2/bob/app/blobs/uploads/?mount={d}&from=secret/app"
    ))));
    assert_eq!(r.status(), 202, "the mount must not happen");
    // Percent-encoded and duplicated variants of the same.
    for q in [
        format!("mount={d}&from=secret%2Fapp"),
        format!("mount={d}&%66rom=secret/app"),
        format!("mount={d}&from=bob/app&from=secret/app"),
        format!("mount={d}&from=secret/app;from=bob/app"),
        format!("mount={d}&from=secret/app&mount={d}"),
        format!("mount={d}&from=Secret/app"),
    ] {
        let r = bob(c.post(w.proxy.url(&format!("/v2/bob/app/blobs/uploads/?{q}"))));
        assert!(
            matches!(r.status().as_u16(), 202 | 400),
            "{q}: {}",
            r.status()
        );
        let r = bob(c.get(w.proxy.url(&format!("/v2/bob/app/blobs/{d}"))));
        assert_eq!(
            r.status(),
            404,
            "{q}: the secret blob became readable from bob/app"
        );
    }
    // A form body carrying mount/from (Go's FormValue would read it): the registry is sent
    // application/octet-stream instead, so it starts a plain upload and mounts nothing.
    for (ct, body) in [
        (
            "application/x-www-form-urlencoded",
            format!("mount={d}&from=secret/app"),
        ),
        (
            "multipart/form-data; boundary=x",
            format!("--x\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\nsecret/app\r\n--x\r\nContent-Disposition: form-data; name=\"mount\"\r\n\r\n{d}\r\n--x--\r\n"),
        ),
    ] {
        let r = bob(c
            .post(w.proxy.url("/v2/bob/app/blobs/uploads/"))
            .header("content-type", ct)
            .body(body));
        assert_eq!(r.status(), 202, "{ct}: a plain upload, not a mount");
        assert_not_linked(&w, "bob/app");
    }
    // Blob by digest through a repository bob owns: the registry links blobs per repository.
    let r = bob(c.get(w.proxy.url(&format!("/v2/bob/app/blobs/{d}"))));
    assert_eq!(r.status(), 404);
    assert!(!r.text().unwrap().contains(MARKER));
    // Manifest by digest likewise.
    let r = bob(c.get(
        w.proxy
            .url(&format!("/v2/bob/app/manifests/{}", w.manifest_digest)),
    ));
    assert_eq!(r.status(), 404);

    // Upload URLs reused under another repository name.
    let r = c
        .post(w.proxy.url("/v2/admin/stage/blobs/uploads/"))
        .basic_auth("admin", Some("badmin"))
        .send()
        .unwrap();
    let admin_loc = r.headers()["location"].to_str().unwrap().to_string();
    let admin_path = admin_loc.trim_start_matches(&w.proxy.base());
    let uuid_and_state = admin_path.trim_start_matches("/v2/admin/stage/blobs/uploads/");
    // bob tries the admin's upload in the admin's repository: not his.
    let r = bob(c.get(w.proxy.url(admin_path)));
    assert_eq!(r.status(), 403);
    // bob moves the admin's upload into his own repository: the registry's signed state
    // names admin/stage, so it refuses.
    let r = bob(c
        .put(w.proxy.url(&format!(
            "/v2/bob/app/blobs/uploads/{uuid_and_state}&digest={d}"
        )))
        .body("x"));
    assert!(r.status().is_client_error(), "{}", r.status());
    // bob's own upload moved into the secret repository: refused by the ACL.
    let r = bob(c.post(w.proxy.url("/v2/bob/app/blobs/uploads/")));
    let bob_loc = r.headers()["location"].to_str().unwrap().to_string();
    let moved = bob_loc
        .trim_start_matches(&w.proxy.base())
        .replace("/v2/bob/app/", "/v2/secret/app/");
    let r = bob(c.put(w.proxy.url(&format!("{moved}&digest={d}"))).body("x"));
    assert_eq!(r.status(), 403);
    let r = bob(c.delete(
        w.proxy
            .url(&format!("/v2/secret/app/manifests/{}", w.manifest_digest)),
    ));
    assert_eq!(r.status(), 403);

    // Anonymous (configured) sees nothing of it either.
    let r = c
        .get(w.proxy.url("/v2/secret/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // The secret is still intact upstream.
    let r =
        reqwest::blocking::get(format!("{}/v2/secret/app/blobs/{d}", w.registry.url())).unwrap();
    assert!(r.text().unwrap().contains(MARKER));
}
