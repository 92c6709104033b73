//! Registries as people already run them: Debian's `docker-registry` on TLS with a private CA
//! and its own htpasswd auth left on, behind the built portcullis, driven by skopeo.

mod common;

use std::time::Duration;

use common::*;

const ACL: &str = r#"
- match: {account: alice}
  actions: ["*"]
  comment: alice does everything
"#;

/// A TLS registry with its own auth on (service account `svc`).
fn tls_registry() -> Registry {
    Registry::start_with(RegistryOptions {
        tls: true,
        htpasswd: vec![("svc".into(), "svc-secret".into())],
        ..Default::default()
    })
}

/// proxy.yaml in front of `registry`, trusting `ca` (a file name beside proxy.yaml), logging
/// in upstream with the password in `svc.pw`.
fn config(admin_port: u16) -> String {
    format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nupstream_tls:\n  ca_certificate: upstream-ca.pem\nupstream_auth:\n  basic:\n    username: svc\n    password_file: svc.pw\nauth:\n  challenge: basic\n  users: users.yaml\nacl: acl.yaml\n"
    )
}

fn files(registry: &Registry, ca: &std::path::Path, password: &str) -> Vec<(&'static str, String)> {
    let _ = registry;
    vec![
        (
            "users.yaml",
            format!("users:\n  alice:\n    password: \"{}\"\n", hash("alicepw")),
        ),
        ("acl.yaml", ACL.to_string()),
        ("upstream-ca.pem", std::fs::read_to_string(ca).unwrap()),
        ("svc.pw", format!("{password}\n")),
    ]
}

fn readyz(admin_port: u16) -> (u16, String) {
    let r = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/readyz")).unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn tls_registry_with_its_own_htpasswd_auth_push_and_pull() {
    let registry = tls_registry();
    // The registry's auth really is on: without credentials it refuses.
    let direct = registry
        .direct_client()
        .get(format!("{}/v2/_catalog", registry.url()))
        .send()
        .unwrap();
    assert_eq!(direct.status(), 401);

    let admin_port = free_port();
    let files = files(&registry, &registry.ca(), "svc-secret");
    let cfg = config(admin_port);
    let proxy = Proxy::start(
        ProxySetup {
            config: &cfg,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    wait_until("readyz", Duration::from_secs(10), || {
        readyz(admin_port).0 == 200
    });

    // `check` completes a handshake with the registry as serve would.
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], proxy.dir.path());
    assert_eq!(code, 0, "{out}{err}");

    // skopeo push through portcullis, then pull back byte for byte.
    let work = tempfile::tempdir().unwrap();
    let layer = pseudo_random(3 * 1024 * 1024 + 5, 11);
    let digest = write_oci_image(&work.path().join("src"), "v1", &layer);
    let host = proxy.host();
    let src = format!("oci:{}:v1", work.path().join("src").display());
    let (ok, err) = copy(
        &proxy,
        &src,
        &format!("docker://{host}/alice/app:v1"),
        Some("alice:alicepw"),
    );
    assert!(ok, "push: {err}\n{}", proxy.proc.output());
    let dst = work.path().join("back");
    let (ok, err) = copy(
        &proxy,
        &format!("docker://{host}/alice/app:v1"),
        &format!("oci:{}:v1", dst.display()),
        Some("alice:alicepw"),
    );
    assert!(ok, "pull: {err}");
    let pulled = std::fs::read(
        dst.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(pulled, layer);

    // It landed in the registry (read with the service account directly).
    let tags: serde_json::Value = registry
        .direct_client()
        .get(format!("{}/v2/alice/app/tags/list", registry.url()))
        .basic_auth("svc", Some("svc-secret"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    // The catalog portcullis reads itself (for the filtered list) carries the credentials too.
    let client = proxy.client();
    let cat: serde_json::Value = client
        .get(proxy.url("/v2/_catalog"))
        .basic_auth("alice", Some("alicepw"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(cat["repositories"], serde_json::json!(["alice/app"]));

    // Clients never see the service account: a client's own Basic credentials for the
    // registry are not passed on (portcullis refuses them: they are not a portcullis login).
    let r = client
        .get(proxy.url("/v2/alice/app/tags/list"))
        .basic_auth("svc", Some("svc-secret"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(!challenge.contains("test-registry"), "{challenge}");
    drop(proxy);
}

#[test]
fn a_wrong_ca_is_refused_by_check_and_answered_502_by_serve() {
    let registry = tls_registry();
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    let admin_port = free_port();
    let files = files(&registry, &other.path().join("ca.pem"), "svc-secret");
    let cfg = config(admin_port);
    let proxy = Proxy::start(
        ProxySetup {
            config: &cfg,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );

    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], proxy.dir.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("proxy.yaml:6: upstream_tls.ca_certificate: TLS handshake"),
        "{err}"
    );
    assert!(err.contains("invalid peer certificate"), "{err}");

    let r = proxy
        .client()
        .get(proxy.url("/v2/alice/app/tags/list"))
        .basic_auth("alice", Some("alicepw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("www-authenticate").is_none());
    wait_until("the log line", Duration::from_secs(5), || {
        proxy
            .proc
            .output()
            .contains("the registry could not be reached or failed")
    });
    let log = proxy.proc.output();
    let line = log
        .lines()
        .find(|l| l.contains("the registry could not be reached or failed"))
        .unwrap();
    assert!(line.contains("invalid peer certificate"), "{line}");
    assert!(
        line.contains(&format!("https://127.0.0.1:{}", registry.port)),
        "{line}"
    );
    wait_until("readyz says why", Duration::from_secs(10), || {
        let (status, why) = readyz(admin_port);
        status == 503 && why.contains("invalid peer certificate")
    });

    // With the right CA, `check` passes; a registry it cannot reach is only a warning.
    std::fs::copy(registry.ca(), proxy.dir.path().join("upstream-ca.pem")).unwrap();
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], proxy.dir.path());
    assert_eq!(code, 0, "{out}{err}");
    drop(registry);
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], proxy.dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("not reachable from here"), "{out}");
}

#[test]
fn wrong_service_account_credentials_are_a_502_and_not_ready_never_a_challenge() {
    let registry = tls_registry();
    let admin_port = free_port();
    let files = files(&registry, &registry.ca(), "not-the-password");
    let cfg = config(admin_port);
    let proxy = Proxy::start(
        ProxySetup {
            config: &cfg,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let r = proxy
        .client()
        .get(proxy.url("/v2/alice/app/tags/list"))
        .basic_auth("alice", Some("alicepw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 502);
    // The registry's own challenge (realm "test-registry") never reaches the client.
    assert!(r.headers().get("www-authenticate").is_none());
    assert!(proxy
        .proc
        .output()
        .contains("answered 401 to an authorized request"));
    wait_until("readyz 503", Duration::from_secs(10), || {
        let (status, why) = readyz(admin_port);
        status == 503 && why.contains("refused portcullis's upstream_auth credentials")
    });
}
