//! End-to-end: the real registry behind the built proxy, real skopeo and an HTTP client.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::*;
use reqwest::blocking::Client;

const ACL: &str = r#"
- match: {account: admin}
  actions: ["*"]
  comment: admins do everything
- match: {account: test}
  actions: [pull]
  comment: test only pulls
- match: {account: "/.+/", name: "${account}/**"}
  actions: ["*"]
  comment: own namespace
- match: {labels: {groups: builders}, name: "ci/*"}
  actions: [pull, push]
- match: {account: "", name: "public/**"}
  actions: [pull]
  comment: anonymous pulls public
"#;

const CONFIG: &str = "upstream: {upstream}\nauth:\n  challenge: basic\n  realm: Test Realm\n  users: users.yaml\n  htpasswd: [registry.htpasswd]\nacl: acl/\n";

fn files() -> Vec<(&'static str, String)> {
    vec![
        (
            "users.yaml",
            format!(
                "users:\n  admin:\n    password: \"{}\"\n  test:\n    password: \"{}\"\n  bob:\n    password: \"{}\"\n    labels: {{groups: [builders]}}\n  \"\": {{}}\n",
                hash("badmin"),
                hash("123"),
                hash("bobpw")
            ),
        ),
        ("registry.htpasswd", format!("carol:{}\n", hash("carolpw"))),
        ("acl/10-rules.yaml", ACL.to_string()),
    ]
}

fn start(tls: bool) -> (Registry, Proxy) {
    let registry = Registry::start();
    let files = files();
    let proxy = Proxy::start(
        ProxySetup {
            config: CONFIG,
            files: &files,
            tls,
        },
        &registry.url(),
    );
    (registry, proxy)
}

fn json(resp: reqwest::blocking::Response) -> serde_json::Value {
    serde_json::from_str(&resp.text().unwrap()).unwrap()
}

fn image(dir: &std::path::Path, size: usize, seed: u64) -> (String, Vec<u8>) {
    let layer = pseudo_random(size, seed);
    let digest = write_oci_image(dir, "v1", &layer);
    (digest, layer)
}

#[test]
fn skopeo_push_and_pull_as_several_users_over_tls() {
    let (registry, proxy) = start(true);
    let host = proxy.host();
    let work = tempfile::tempdir().unwrap();

    // A 100 MiB layer, pushed by admin and pulled back by test, byte for byte.
    let big = work.path().join("big");
    let (digest, layer) = image(&big, 100 * 1024 * 1024 + 17, 7);
    let src = format!("oci:{}:v1", big.display());
    let (ok, err) = copy(
        &proxy,
        &src,
        &format!("docker://{host}/team/big:v1"),
        Some("admin:badmin"),
    );
    assert!(ok, "admin push failed: {err}\n{}", proxy.proc.output());
    let out = work.path().join("pulled");
    let (ok, err) = copy(
        &proxy,
        &format!("docker://{host}/team/big:v1"),
        &format!("oci:{}:v1", out.display()),
        Some("test:123"),
    );
    assert!(ok, "test pull failed: {err}");
    let pulled = std::fs::read(
        out.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert!(pulled == layer, "pulled layer differs from the pushed one");
    drop(pulled);

    // Small image for the permission matrix.
    let small = work.path().join("small");
    image(&small, 4096, 11);
    let small_src = format!("oci:{}:v1", small.display());
    let push = |repo: &str, creds: Option<&str>| {
        copy(
            &proxy,
            &small_src,
            &format!("docker://{host}/{repo}:v1"),
            creds,
        )
    };
    let pull = |repo: &str, creds: Option<&str>| {
        let dst = tempfile::tempdir().unwrap();
        copy(
            &proxy,
            &format!("docker://{host}/{repo}:v1"),
            &format!("oci:{}:v1", dst.path().display()),
            creds,
        )
    };

    assert!(!push("test/mine", Some("test:123")).0, "test may only pull");
    assert!(!push("team/big", Some("test:123")).0, "test may only pull");
    assert!(push("bob/app", Some("bob:bobpw")).0, "bob owns bob/*");
    assert!(
        push("bob/deep/app", Some("bob:bobpw")).0,
        "bob owns bob/** too"
    );
    assert!(
        !push("alice/app", Some("bob:bobpw")).0,
        "bob does not own alice/*"
    );
    assert!(push("ci/app", Some("bob:bobpw")).0, "builders push ci/*");
    assert!(
        !pull("team/big", Some("bob:bobpw")).0,
        "bob may not pull team/*"
    );
    assert!(
        push("carol/app", Some("carol:carolpw")).0,
        "htpasswd users own their namespace"
    );
    assert!(!push("carol/x", Some("carol:wrong")).0, "wrong password");
    assert!(push("public/app", Some("admin:badmin")).0);
    assert!(pull("public/app", None).0, "anonymous pulls public/*");
    assert!(!pull("team/big", None).0, "anonymous may not pull team/*");
    assert!(!push("public/other", None).0, "anonymous may not push");

    // What was refused never reached the registry's storage.
    let repos = registry
        .dir
        .path()
        .join("data/docker/registry/v2/repositories");
    for refused in ["test/mine", "alice/app", "public/other", "carol/x"] {
        assert!(
            !repos.join(refused).exists(),
            "{refused} was created upstream"
        );
    }
    assert!(repos.join("bob/deep/app").exists());
}

#[test]
fn exact_statuses_headers_and_bodies() {
    let (registry, proxy) = start(false);
    let c = proxy.client();
    let url = |p: &str| proxy.url(p);

    // No credentials: the Basic challenge and an OCI body.
    let r = c.get(url("/v2/")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Test Realm\""
    );
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(json(r)["errors"][0]["code"], "UNAUTHORIZED");

    // `/v2` is `/v2/`.
    let r = c
        .get(url("/v2"))
        .basic_auth("admin", Some("badmin"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "{}");

    // Wrong password and unknown account: the same answer.
    let a = c
        .get(url("/v2/"))
        .basic_auth("admin", Some("nope"))
        .send()
        .unwrap();
    let b = c
        .get(url("/v2/"))
        .basic_auth("nobody", Some("nope"))
        .send()
        .unwrap();
    assert_eq!(a.status(), 401);
    assert_eq!(b.status(), 401);
    assert_eq!(
        a.headers()["www-authenticate"],
        b.headers()["www-authenticate"]
    );
    assert_eq!(a.text().unwrap(), b.text().unwrap());

    // Create team/app upstream directly, then compare answers for an existing and a missing
    // repository: a denied caller must not learn which exists.
    let direct = Client::new();
    let up = direct
        .put(format!("{}/v2/team/app/blobs/uploads/", registry.url()))
        .send()
        .unwrap();
    assert_eq!(up.status(), 404, "PUT on uploads/ is not an upload start");
    let digest = registry.push_blob("team/app", b"secret bytes");
    for creds in [("bob", "bobpw"), ("carol", "carolpw")] {
        let exists = c
            .get(url(&format!("/v2/team/app/blobs/{digest}")))
            .basic_auth(creds.0, Some(creds.1))
            .send()
            .unwrap();
        let missing = c
            .get(url(&format!("/v2/team/nothing/blobs/{digest}")))
            .basic_auth(creds.0, Some(creds.1))
            .send()
            .unwrap();
        assert_eq!(exists.status(), 403);
        assert_eq!(missing.status(), 403);
        let (e, m) = (exists.text().unwrap(), missing.text().unwrap());
        assert_eq!(e, m);
        assert!(!e.contains("secret"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&e).unwrap()["errors"][0]["code"],
            "DENIED"
        );
    }
    // Anonymous is asked to log in rather than told "denied".
    let r = c
        .get(url(&format!("/v2/team/app/blobs/{digest}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // And the allowed caller gets the bytes.
    let r = c
        .get(url(&format!("/v2/team/app/blobs/{digest}")))
        .basic_auth("test", Some("123"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), b"secret bytes");

    // HEAD refused: status and headers, no body.
    let r = c
        .head(url("/v2/team/app/manifests/latest"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // A pull-only user starting an upload.
    let r = c
        .post(url("/v2/team/app/blobs/uploads/"))
        .basic_auth("test", Some("123"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(json(r)["errors"][0]["code"], "DENIED");

    // An allowed upload start: Location points back at portcullis.
    let r = c
        .post(url("/v2/bob/app/blobs/uploads/"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&proxy.url("/v2/bob/app/blobs/uploads/")),
        "{location}"
    );

    // Wrong method on a known endpoint: 405 with Allow.
    let r = c
        .post(url("/v2/bob/app/manifests/latest"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"));
    assert_eq!(json(r)["errors"][0]["code"], "UNSUPPORTED");

    // Bad name: 400 NAME_INVALID.
    let r = c
        .get(url("/v2/Bob/App/manifests/latest"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r)["errors"][0]["code"], "NAME_INVALID");

    // Not a registry path at all.
    let r = c.get(url("/debug/vars")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // A form-encoded body could carry mount/from past our query check: the registry is sent
    // application/octet-stream instead, so it starts a plain upload (202), not a mount (201).
    let r = c
        .post(url("/v2/bob/app/blobs/uploads/"))
        .basic_auth("bob", Some("bobpw"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("mount={digest}&from=team/app"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    // Catalog: admin sees the upstream's list unchanged; bob only what he may pull.
    let r = c
        .get(url("/v2/_catalog"))
        .basic_auth("admin", Some("badmin"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r)["repositories"], serde_json::json!(["team/app"]));
    let r = c
        .get(url("/v2/_catalog"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r)["repositories"], serde_json::json!([]));
    let r = c.get(url("/v2/_catalog")).send().unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn cross_repository_mount_needs_pull_on_the_source() {
    let (registry, proxy) = start(false);
    let c = proxy.client();
    let digest = registry.push_blob("team/base", b"base layer");
    let mount = |user: &str, pw: &str, to: &str| {
        c.post(proxy.url(&format!(
            "/v2/{to}/blobs/uploads/?mount={digest}&from=team/base"
        )))
        .basic_auth(user, Some(pw))
        .send()
        .unwrap()
    };
    // admin may pull team/base: the registry mounts (201 Created).
    let r = mount("admin", "badmin", "admin/app");
    assert_eq!(r.status(), 201);
    // bob may not: mount/from are dropped and a plain upload starts (202), as registry:2 does.
    let r = mount("bob", "bobpw", "bob/app");
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(!loc.contains("mount") && !loc.contains("team"), "{loc}");
    // And the blob is not readable from bob/app.
    let r = c
        .get(proxy.url(&format!("/v2/bob/app/blobs/{digest}")))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    // No push on the target: refused outright.
    let r = mount("test", "123", "team/other");
    assert_eq!(r.status(), 403);
    // A second `from` is refused rather than guessed at.
    let r = c
        .post(proxy.url(&format!(
            "/v2/bob/app/blobs/uploads/?mount={digest}&from=bob/app&from=team/base"
        )))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn hostile_requests_never_reach_the_upstream_and_headers_are_rewritten() {
    let recorder = Recorder::start();
    let files = files();
    let proxy = Proxy::start(
        ProxySetup {
            config: CONFIG,
            files: &files,
            tls: false,
        },
        &recorder.url(),
    );
    let addr: SocketAddr = proxy.host().parse().unwrap();
    let auth = "Authorization: Basic YWRtaW46YmFkbWlu\r\n"; // admin:badmin: refusals are not about rights
    let hostile = [
        "GET http://evil/v2/team/app/manifests/latest HTTP/1.1",
        "GET /v2/team/app%2Fother/manifests/latest HTTP/1.1",
        "GET /v2/team/%2e%2e/secret/manifests/latest HTTP/1.1",
        "GET /v2/team/../secret/manifests/latest HTTP/1.1",
        "GET /v2/./secret/manifests/latest HTTP/1.1",
        "GET /v2//secret/manifests/latest HTTP/1.1",
        "GET /v2/secret//manifests/latest HTTP/1.1",
        "GET /v2/secret/manifests/latest/ HTTP/1.1",
        "GET /v2/Secret/manifests/latest HTTP/1.1",
        "GET /v2/secret\\x/manifests/latest HTTP/1.1",
        "GET /v2/_catalog/ HTTP/1.1",
        "GET /v2/secret/tags/list/x HTTP/1.1",
        "GET /v2/secret/blobs/sha256:abc HTTP/1.1",
        "GET /v2/secret/manifests/ HTTP/1.1",
        "POST /v2/secret/manifests/latest HTTP/1.1",
        "PATCH /v2/secret/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000 HTTP/1.1",
        "POST /v2/secret/blobs/uploads/?from=a;b HTTP/1.1",
        "POST /v2/secret/blobs/uploads/?from=%zz HTTP/1.1",
        "GET /v2/secret/blobs/uploads/.. HTTP/1.1",
        "GET /v3/secret/manifests/latest HTTP/1.1",
        "GET / HTTP/1.1",
        "OPTIONS * HTTP/1.1",
        "TRACE /v2/ HTTP/1.1",
    ];
    for line in hostile {
        let req = format!(
            "{line}\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            proxy.host()
        );
        let resp = raw_request(addr, req.as_bytes());
        let status: u16 = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!((400..500).contains(&status), "{line} -> {resp}");
    }
    assert!(
        recorder.seen().is_empty(),
        "forwarded: {:?}",
        recorder.seen()
    );

    // An allowed request: credentials and spoofed forwarding headers replaced.
    let req = format!(
        "GET /v2/team/app/manifests/latest HTTP/1.1\r\nHost: {}\r\n{auth}X-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Host: evil\r\nX-Original-URL: /v2/secret/manifests/x\r\nForwarded: for=1.2.3.4\r\nConnection: close\r\n\r\n",
        proxy.host()
    );
    let resp = raw_request(addr, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = recorder.seen();
    assert_eq!(seen.len(), 1);
    let head = seen[0].to_ascii_lowercase();
    assert!(
        head.starts_with("get /v2/team/app/manifests/latest http/1.1\r\n"),
        "{head}"
    );
    assert!(!head.contains("authorization"), "{head}");
    assert!(
        !head.contains("10.9.9.9")
            && !head.contains("evil")
            && !head.contains("x-original-url")
            && !head.contains("forwarded: for"),
        "{head}"
    );
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("x-real-ip: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("x-forwarded-proto: http\r\n"), "{head}");
    assert!(
        head.contains(&format!("x-forwarded-host: {}\r\n", proxy.host())),
        "{head}"
    );
    assert!(
        head.contains(&format!("host: {}\r\n", proxy.host())),
        "{head}"
    );
}

#[test]
fn http2_chunked_uploads_stream_and_keep_the_upstream_connection_in_sync() {
    let (_registry, proxy) = start(true);
    let ca = proxy.dir.path().join("ca.pem");
    let curl = |args: &[&str], stdin: Option<Vec<u8>>| -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--http2", "--cacert"])
            .arg(&ca)
            .args(["-u", "bob:bobpw", "-D", "-", "-o", "/dev/null"])
            .args(args);
        let out = if let Some(data) = stdin {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&data).unwrap();
            child.wait_with_output().unwrap()
        } else {
            cmd.output().unwrap()
        };
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for round in 0..3u64 {
        let data = pseudo_random(3 * 1024 * 1024 + 5, round + 100);
        let digest = format!("sha256:{}", sha256_hex(&data));
        let head = curl(
            &["-X", "POST", &proxy.url("/v2/bob/h2/blobs/uploads/")],
            None,
        );
        assert!(head.starts_with("HTTP/2 202"), "{head}");
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap()
            .trim()
            .to_string();
        // Streamed from stdin: no Content-Length, so the body goes as DATA frames.
        let head = curl(
            &[
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/octet-stream",
                "-T",
                "-",
                &location,
            ],
            Some(data.clone()),
        );
        assert!(head.starts_with("HTTP/2 202"), "{head}");
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap()
            .trim()
            .to_string();
        let head = curl(&["-X", "PUT", &format!("{location}&digest={digest}")], None);
        assert!(head.starts_with("HTTP/2 201"), "round {round}: {head}");
        let got = proxy
            .client()
            .get(proxy.url(&format!("/v2/bob/h2/blobs/{digest}")))
            .basic_auth("bob", Some("bobpw"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert!(
            got.as_ref() == data.as_slice(),
            "round {round}: blob differs"
        );
    }
}
