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
    // A form body carrying mount/from (Go's FormValue would read it).
    let r = bob(c
        .post(w.proxy.url("/v2/bob/app/blobs/uploads/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("mount={d}&from=secret/app")));
    assert_eq!(r.status(), 400);
    let r = bob(c
        .post(w.proxy.url("/v2/bob/app/blobs/uploads/"))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(
            "--x\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\nsecret/app\r\n--x--\r\n",
        ));
    assert_eq!(r.status(), 400);
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
