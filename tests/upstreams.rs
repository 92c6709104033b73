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

    // Per-registry readiness in the metrics.
    let up = format!(
        "portcullis_registry_up{{upstream=\"https://127.0.0.1:{}\"}}",
        registry.port
    );
    wait_until("registry_up", Duration::from_secs(10), || {
        metric(admin_port, &up) == 1.0
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
    let series = |name: &str| format!("{name}{{upstream=\"https://127.0.0.1:{}\"}}", registry.port);
    assert_eq!(metric(admin_port, &series("portcullis_registry_up")), 0.0);
    assert!(
        metric(
            admin_port,
            &format!(
                "portcullis_registry_errors_total{{kind=\"connect\",upstream=\"https://127.0.0.1:{}\"}}",
                registry.port
            )
        ) >= 1.0
    );

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
    wait_until("the log line", Duration::from_secs(5), || {
        proxy
            .proc
            .output()
            .contains("answered 401 to an authorized request")
    });
    wait_until("readyz 503", Duration::from_secs(10), || {
        let (status, why) = readyz(admin_port);
        status == 503 && why.contains("refused portcullis's upstream_auth credentials")
    });
}

const MULTI_ACL: &str = r#"
- match: {account: alice}
  actions: ["*"]
  comment: alice does everything
- match: {account: bob, name: "hub/**"}
  actions: [pull]
  comment: bob pulls through the cache only
"#;

fn oci_image(dir: &std::path::Path, seed: u64) -> (String, Vec<u8>) {
    let layer = pseudo_random(64 * 1024 + seed as usize, seed);
    let digest = write_oci_image(dir, "v1", &layer);
    (digest, layer)
}

#[test]
fn several_registries_by_prefix_with_a_pull_through_cache() {
    // The origin the cache pulls from, with one image pushed straight into it.
    let origin = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (alpine_layer, alpine_bytes) = oci_image(&work.path().join("alpine"), 1);
    let (ok, err) = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", work.path().join("alpine").display()),
        &format!("docker://127.0.0.1:{}/library/alpine:3", origin.port),
    ]);
    assert!(ok, "{err}");
    // The pull-through cache of the origin (offline: everything is local).
    let cache = Registry::start_with(RegistryOptions {
        extra: format!("proxy:\n  remoteurl: {}\n", origin.url()),
        ..Default::default()
    });
    // The private registry, holding a name the hub/ entry makes unreachable.
    let private = Registry::start();
    private.push_manifest("hub/ghost", "v1", &[], serde_json::json!({}));

    let cfg = "upstreams:\n  - {prefix: hub/, url: \"{cache}\", strip_prefix: true}\n  - {prefix: origin/, url: \"{origin}\", strip_prefix: true}\n  - {prefix: \"\", url: \"{upstream}\"}\nauth:\n  challenge: basic\n  users: users.yaml\nacl: acl.yaml\n"
        .replace("{cache}", &cache.url())
        .replace("{origin}", &origin.url());
    let files = vec![
        (
            "users.yaml",
            format!(
                "users:\n  alice:\n    password: \"{}\"\n  bob:\n    password: \"{}\"\n",
                hash("alicepw"),
                hash("bobpw")
            ),
        ),
        ("acl.yaml", MULTI_ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: &cfg,
            files: &files,
            tls: false,
        },
        &private.url(),
    );
    let host = proxy.host();

    // hub/… pulls through the cache (which fetches from the origin), byte for byte.
    let back = work.path().join("back");
    let (ok, err) = copy(
        &proxy,
        &format!("docker://{host}/hub/library/alpine:3"),
        &format!("oci:{}:v1", back.display()),
        Some("bob:bobpw"),
    );
    assert!(ok, "pull through the cache: {err}\n{}", proxy.proc.output());
    let pulled = std::fs::read(
        back.join("blobs/sha256")
            .join(alpine_layer.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(pulled, alpine_bytes);

    // Everything else goes to the private registry.
    let (app_layer, _) = oci_image(&work.path().join("app"), 2);
    let (ok, err) = copy(
        &proxy,
        &format!("oci:{}:v1", work.path().join("app").display()),
        &format!("docker://{host}/alice/app:v1"),
        Some("alice:alicepw"),
    );
    assert!(ok, "push to the private registry: {err}");
    let direct = reqwest::blocking::get(format!("{}/v2/alice/app/tags/list", private.url()))
        .unwrap()
        .text()
        .unwrap();
    assert!(direct.contains("v1"), "{direct}");

    // A push under a stripped prefix: every upload step comes back through origin/ because the
    // registry's Location headers get the prefix back.
    let (ok, err) = copy(
        &proxy,
        &format!("oci:{}:v1", work.path().join("app").display()),
        &format!("docker://{host}/origin/library/pushed:v1"),
        Some("alice:alicepw"),
    );
    assert!(
        ok,
        "push under a stripped prefix: {err}\n{}",
        proxy.proc.output()
    );
    let direct = reqwest::blocking::get(format!("{}/v2/library/pushed/tags/list", origin.url()))
        .unwrap()
        .text()
        .unwrap();
    assert!(direct.contains("v1"), "{direct}");

    // The cache lists what it holds once the pull is stored.
    let cache_catalog = format!("{}/v2/_catalog", cache.url());
    wait_until("the cache's catalog", Duration::from_secs(10), || {
        reqwest::blocking::get(&cache_catalog)
            .and_then(|r| r.text())
            .is_ok_and(|t| t.contains("library/alpine"))
    });

    // The merged catalog: prefixes put back, the unreachable hub/ghost left out, sorted, paged
    // as one list.
    let client = proxy.client();
    let catalog = |user: &str, pw: &str, query: &str| {
        let r = client
            .get(proxy.url(&format!("/v2/_catalog{query}")))
            .basic_auth(user, Some(pw))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let link = r
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let body: serde_json::Value = r.json().unwrap();
        (body["repositories"].clone(), link)
    };
    let all = serde_json::json!([
        "alice/app",
        "hub/library/alpine",
        "origin/library/alpine",
        "origin/library/pushed"
    ]);
    assert_eq!(catalog("alice", "alicepw", "").0, all);
    let (first, link) = catalog("alice", "alicepw", "?n=3");
    assert_eq!(
        first,
        serde_json::json!(["alice/app", "hub/library/alpine", "origin/library/alpine"])
    );
    let link = link.expect("a next page");
    assert!(link.contains("last=origin%2Flibrary%2Falpine"), "{link}");
    let (second, link) = catalog("alice", "alicepw", "?n=3&last=origin%2Flibrary%2Falpine");
    assert_eq!(second, serde_json::json!(["origin/library/pushed"]));
    assert_eq!(link, None);
    // Still filtered per caller.
    assert_eq!(
        catalog("bob", "bobpw", "").0,
        serde_json::json!(["hub/library/alpine"])
    );

    // The web UI sees the same merged list, and reads each repository (tags, manifest,
    // config) from the registry serving it, under that registry's name.
    let browser = common::ui::logged_in(&proxy, "alice", "alicepw");
    let (status, page) = common::ui::get(&browser, &proxy, "/ui/");
    assert_eq!(status, 200);
    assert_eq!(
        common::ui::listed(&page),
        all.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    let (status, page) = common::ui::get(&browser, &proxy, "/ui/repo/hub/library/alpine");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<code>3</code>"), "{page}");
    assert!(
        page.contains("linux/amd64"),
        "the config was not read: {page}"
    );

    // A mount within one registry mounts; from another registry it is dropped (a plain upload
    // starts), and the Location points back at the client's name. `hub/ghost` really exists in
    // the private registry with the blob `{}`, so only the drop keeps the private registry
    // from mounting out of a repository clients reach elsewhere.
    let mount = |digest: &str, from: &str| {
        client
            .post(proxy.url(&format!(
                "/v2/alice/new/blobs/uploads/?mount={digest}&from={from}"
            )))
            .basic_auth("alice", Some("alicepw"))
            .send()
            .unwrap()
    };
    assert_eq!(mount(&app_layer, "alice/app").status(), 201);
    let empty_config = format!("sha256:{}", sha256_hex(b"{}"));
    let r = mount(&empty_config, "hub/ghost");
    assert_eq!(
        r.status(),
        202,
        "a cross-registry mount must start a plain upload"
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("/v2/alice/new/blobs/uploads/"),
        "{location}"
    );

    // `explain` names the registry a repository reaches, and its name there.
    let (code, out, err) = portcullis(
        &[
            "explain",
            "-c",
            "proxy.yaml",
            "--account",
            "bob",
            "repository:hub/library/alpine:pull",
            "repository:alice/app:pull",
        ],
        proxy.dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("served by upstreams[0] (prefix \"hub/\", 127.0.0.1:")
            && out.contains(") as library/alpine"),
        "{out}"
    );
    assert!(out.contains("served by upstreams[2] (prefix \"\""), "{out}");

    // An upload on a stripped prefix: the Location names the client's repository.
    let r = client
        .post(proxy.url("/v2/origin/library/fresh/blobs/uploads/"))
        .basic_auth("alice", Some("alicepw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.contains("/v2/origin/library/fresh/blobs/uploads/"),
        "{location}"
    );
}

/// A second portcullis acting only as the registry's token server (the service account `svc`
/// may do everything), with a fresh signing key and an admin port, where the tokens it issued
/// are counted.
fn token_server(dir: &std::path::Path, admin_port: u16) -> Proxy {
    let (key, cert) = portcullis::token::generate_dev_keypair(dir).unwrap();
    let files = vec![
        (
            "users.yaml",
            format!("users:\n  svc:\n    password: \"{}\"\n", hash("svc-secret")),
        ),
        (
            "acl.yaml",
            "- match: {account: svc}\n  actions: [\"*\"]\n".to_string(),
        ),
        ("token.key", std::fs::read_to_string(key).unwrap()),
        ("token.crt", std::fs::read_to_string(cert).unwrap()),
    ];
    Proxy::start(
        ProxySetup {
            config: &format!("upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nauth:\n  challenge: token\n  users: users.yaml\n  token:\n    issuer: upstream-issuer\n    service: upstream-registry\n    key: token.key\n    certificate: token.crt\n    expiration: 5m\nacl: acl.yaml\n"),
            files: &files,
            tls: false,
        },
        // It forwards nothing in this test: only its /auth is used.
        "http://127.0.0.1:9",
    )
}

/// Tokens the token server issued (counted as it issues them, unlike its audit lines, which
/// are written off the request path).
fn token_requests(admin_port: u16) -> usize {
    metric(admin_port, "portcullis_tokens_issued_total") as usize
}

#[test]
fn a_registry_in_token_mode_behind_portcullis_with_cached_tokens() {
    let keys = tempfile::tempdir().unwrap();
    let tokens_admin = free_port();
    let tokens = token_server(keys.path(), tokens_admin);
    let registry = Registry::start_with(RegistryOptions {
        extra: format!(
            "auth:\n  token:\n    realm: {}\n    service: upstream-registry\n    issuer: upstream-issuer\n    rootcertbundle: {}\n",
            tokens.url("/auth"),
            tokens.dir.path().join("token.crt").display()
        ),
        ..Default::default()
    });
    // Its auth is on: nothing without a token.
    let r = reqwest::blocking::get(format!("{}/v2/_catalog", registry.url())).unwrap();
    assert_eq!(r.status(), 401);

    let files = vec![
        (
            "users.yaml",
            format!("users:\n  alice:\n    password: \"{}\"\n", hash("alicepw")),
        ),
        ("acl.yaml", ACL.to_string()),
        ("svc.pw", "svc-secret\n".to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nupstream_auth:\n  token:\n    username: svc\n    password_file: svc.pw\nauth:\n  challenge: basic\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let host = proxy.host();
    let work = tempfile::tempdir().unwrap();
    let (digest, layer) = oci_image(&work.path().join("src"), 3);
    let (ok, err) = copy(
        &proxy,
        &format!("oci:{}:v1", work.path().join("src").display()),
        &format!("docker://{host}/alice/app:v1"),
        Some("alice:alicepw"),
    );
    assert!(ok, "push: {err}\n{}", proxy.proc.output());
    let pull = |n: usize| {
        let dst = work.path().join(format!("back{n}"));
        let (ok, err) = copy(
            &proxy,
            &format!("docker://{host}/alice/app:v1"),
            &format!("oci:{}:v1", dst.display()),
            Some("alice:alicepw"),
        );
        assert!(ok, "pull: {err}\n{}", proxy.proc.output());
        let got = std::fs::read(
            dst.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        assert_eq!(got, layer);
    };
    pull(0);
    // One token per scope (push: pull,push; pull: pull; and the catalog below), not one per
    // request: a push and a pull are dozens of requests.
    let after_first = token_requests(tokens_admin);
    assert!(
        (1..=3).contains(&after_first),
        "{after_first} token requests"
    );
    for n in 1..=3 {
        pull(n);
    }
    let cat: serde_json::Value = proxy
        .client()
        .get(proxy.url("/v2/_catalog"))
        .basic_auth("alice", Some("alicepw"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(cat["repositories"], serde_json::json!(["alice/app"]));
    let after_all = token_requests(tokens_admin);
    // Three more pulls reuse the cached pull token; the catalog needed one scope more.
    assert_eq!(after_all, after_first + 1, "the tokens were not reused");
    eprintln!("token requests: {after_first} after a push and a pull, {after_all} after three more pulls and a catalog");
    // The tokens never reach clients: the client's side sees portcullis's Basic challenge.
    let r = proxy
        .client()
        .get(proxy.url("/v2/alice/app/tags/list"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");

    // The token server's key is rotated and the registry restarted to trust only the new one:
    // every token portcullis holds is now refused. A pull (requests without a body) still
    // works: each refused token is forgotten and the request sent once more with a new one.
    let fresh = tempfile::tempdir().unwrap();
    let (key, cert) = portcullis::token::generate_dev_keypair(fresh.path()).unwrap();
    let (key, cert) = (std::fs::read(key).unwrap(), std::fs::read(cert).unwrap());
    std::fs::write(tokens.dir.path().join("token.crt.new"), &cert).unwrap();
    std::fs::write(tokens.dir.path().join("token.key.new"), &key).unwrap();
    std::fs::rename(
        tokens.dir.path().join("token.crt.new"),
        tokens.dir.path().join("token.crt"),
    )
    .unwrap();
    std::fs::rename(
        tokens.dir.path().join("token.key.new"),
        tokens.dir.path().join("token.key"),
    )
    .unwrap();
    let registry = registry.restart();
    // Ready when a token from the token server opens the restarted registry.
    let direct = reqwest::blocking::Client::new();
    wait_until("the rotated key in use", Duration::from_secs(20), || {
        let Ok(r) = direct
            .get(tokens.url("/auth?service=upstream-registry&scope=repository:alice/app:pull"))
            .basic_auth("svc", Some("svc-secret"))
            .send()
        else {
            return false;
        };
        let Ok(doc) = r.json::<serde_json::Value>() else {
            return false;
        };
        let token = doc["token"].as_str().unwrap_or("").to_string();
        direct
            .get(format!("{}/v2/alice/app/tags/list", registry.url()))
            .bearer_auth(token)
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    pull(4);
    wait_until("the retry's log line", Duration::from_secs(5), || {
        proxy
            .proc
            .output()
            .contains("the registry refused a cached token")
    });
}

/// One registry name whose answer changes, as a DNS change or a rescheduled pod makes it:
/// two real registries on the same port, one on 127.0.0.1 and one on ::1, and a lookup (the
/// only stand-in: no system resolver here answers differently on demand) that returns the
/// first, then the second. The same `Upstream`, without a restart, follows the new answer in
/// its background re-resolution and reaches the new registry.
#[test]
fn a_new_address_for_the_registry_name_is_picked_up_without_restart() {
    use portcullis::upstream::resolve::{Addresses, Lookup};
    use portcullis::upstream::{Upstream, Upstreams};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    let port = free_port();
    let v4 = Registry::start_on(port, RegistryOptions::default());
    v4.push_manifest("on/v4", "t", &[], serde_json::json!({}));
    let v6 = Registry::start_on(
        port,
        RegistryOptions {
            ip: "[::1]".into(),
            ..Default::default()
        },
    );
    v6.push_manifest("on/v6", "t", &[], serde_json::json!({}));

    let a: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let b: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let answer = Arc::new(Mutex::new(vec![a]));
    let lookup: Lookup = {
        let answer = answer.clone();
        Arc::new(move |_| {
            let now = answer.lock().unwrap().clone();
            Box::pin(async move { Ok(now) })
        })
    };
    let settings = portcullis::config::Upstream {
        address: format!("registry.test:{port}"),
        host: "registry.test".into(),
        tls: None,
        auth: None,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(10),
        resolve_interval: Duration::from_millis(100),
    };
    let addresses = Addresses::with(&settings.address, vec![a], lookup).unwrap();
    let upstream = Arc::new(Upstream::with_addresses(&settings, addresses).unwrap());
    let upstreams = Upstreams::single(upstream.clone());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let resolving = runtime.spawn({
        let upstreams = upstreams.clone();
        async move { upstreams.keep_resolving(stopped).await }
    });
    let connector = pingora::connectors::http::Connector::new(None);
    let catalog = || -> String {
        runtime.block_on(async {
            match upstreams
                .get(&connector, "/v2/_catalog", None, 64 * 1024)
                .await
            {
                Ok(f) => String::from_utf8_lossy(&f.body).to_string(),
                Err(e) => e.to_string(),
            }
        })
    };
    assert!(catalog().contains("on/v4"));

    // The name now resolves to the IPv6 registry only; the v4 one goes away.
    *answer.lock().unwrap() = vec![b];
    drop(v4);
    wait_until("the new address", Duration::from_secs(5), || {
        upstream.addresses().all().as_slice() == [b]
    });
    let listed = catalog();
    assert!(listed.contains("on/v6"), "{listed}");

    // Both addresses: requests go to each in turn.
    *answer.lock().unwrap() = vec![a, b];
    wait_until("both addresses", Duration::from_secs(5), || {
        upstream.addresses().all().len() == 2
    });
    let picks: std::collections::BTreeSet<SocketAddr> =
        (0..4).map(|_| upstream.addresses().pick()).collect();
    assert_eq!(picks.len(), 2);
    stop.send(true).unwrap();
    runtime.block_on(resolving).unwrap();
}

#[test]
fn a_registry_that_demands_a_client_certificate() {
    // The client certificate and its CA (rcgen, as the registry's own).
    let client = tempfile::tempdir().unwrap();
    make_certs(client.path());
    let identity = client.path().join("identity.pem");
    std::fs::write(
        &identity,
        std::fs::read_to_string(client.path().join("server.pem")).unwrap()
            + &std::fs::read_to_string(client.path().join("server.key")).unwrap(),
    )
    .unwrap();
    let registry = Registry::start_with(RegistryOptions {
        tls: true,
        client_ca: Some(client.path().join("ca.pem")),
        client_identity: Some(identity),
        ..Default::default()
    });
    registry.direct_client(); // reachable with the certificate (checked by start_with)

    let start = |with_certificate: bool| {
        let mut files = vec![
            (
                "users.yaml",
                format!("users:\n  alice:\n    password: \"{}\"\n", hash("alicepw")),
            ),
            ("acl.yaml", ACL.to_string()),
            (
                "upstream-ca.pem",
                std::fs::read_to_string(registry.ca()).unwrap(),
            ),
        ];
        let mut tls = "upstream_tls:\n  ca_certificate: upstream-ca.pem\n".to_string();
        if with_certificate {
            files.push((
                "client.pem",
                std::fs::read_to_string(client.path().join("server.pem")).unwrap(),
            ));
            files.push((
                "client.key",
                std::fs::read_to_string(client.path().join("server.key")).unwrap(),
            ));
            tls.push_str("  client_certificate: client.pem\n  client_key: client.key\n");
        }
        let config = format!("upstream: {{upstream}}\n{tls}auth:\n  challenge: basic\n  users: users.yaml\nacl: acl.yaml\n");
        Proxy::start(
            ProxySetup {
                config: &config,
                files: &files,
                tls: false,
            },
            &registry.url(),
        )
    };
    let catalog = |proxy: &Proxy| {
        proxy
            .client()
            .get(proxy.url("/v2/alice/app/tags/list"))
            .basic_auth("alice", Some("alicepw"))
            .send()
            .unwrap()
            .status()
    };
    // With the certificate: the registry answers (404: no such repository yet).
    let with = start(true);
    assert_eq!(catalog(&with), 404, "{}", with.proc.output());
    // Without: refused at the handshake, a 502.
    let without = start(false);
    assert_eq!(catalog(&without), 502);
}

/// A registry name resolving to two addresses, one of which refuses connections: every
/// request through the real proxy (in-process, so the name's answer can be given) still
/// reaches the registry, the refused address being skipped and the request sent to the next.
#[test]
fn a_refused_address_is_skipped_and_the_request_sent_to_the_next() {
    use portcullis::upstream::resolve::{Addresses, Lookup};
    use portcullis::upstream::{Upstream, Upstreams};
    use std::net::SocketAddr;
    use std::sync::Arc;

    let port = free_port();
    // Only the IPv6 address has a registry; nothing listens on 127.0.0.1 at that port.
    let registry = Registry::start_on(
        port,
        RegistryOptions {
            ip: "[::1]".into(),
            ..Default::default()
        },
    );
    let dead: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let live: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    write(
        dir.path(),
        &[
            (
                "proxy.yaml",
                &format!("listen: 127.0.0.1:{listen}\nthreads: 1\nupstream: http://registry.test:{port}\nauth:\n  challenge: basic\n  users: users.yaml\nacl: acl.yaml\n"),
            ),
            (
                "users.yaml",
                &format!("users:\n  alice:\n    password: \"{}\"\n", hash("alicepw")),
            ),
            ("acl.yaml", ACL),
        ],
    );
    let path = dir.path().join("proxy.yaml");
    let config = Arc::new(portcullis::config::Config::load(&path).unwrap());
    let (built, _) = portcullis::state::State::build(config.clone()).unwrap();
    let lookup: Lookup = Arc::new(move |_| Box::pin(async move { Ok(vec![dead, live]) }));
    let settings = &config.upstreams[0].settings;
    let addresses = Addresses::with(&settings.address, vec![dead, live], lookup).unwrap();
    let upstreams = Upstreams::single(Arc::new(
        Upstream::with_addresses(settings, addresses).unwrap(),
    ));
    let prepared =
        portcullis::server::prepare_with(&path, config.clone(), built.state, upstreams.clone())
            .unwrap();
    // Runs until the test process ends.
    std::thread::spawn(move || prepared.run());
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{listen}/v2/alice/app/tags/list");
    wait_until("the in-process proxy", Duration::from_secs(10), || {
        client.get(&url).send().is_ok()
    });
    // Requests alternate between the addresses; none fails.
    for _ in 0..6 {
        let r = client
            .get(&url)
            .basic_auth("alice", Some("alicepw"))
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            404,
            "the registry's answer for an unknown repository"
        );
    }
    let base = upstreams.base();
    assert_eq!(base.addresses().all().len(), 2);
    // The refused address is now skipped without a connection attempt.
    assert!((0..4).all(|_| base.addresses().pick() == live));
    drop(registry);
}
