//! The manifest cache (`cache.manifests`) against the real registry and a recording upstream:
//! writes through portcullis are read back at once, refused callers never see a cached body,
//! `Accept` variants are kept apart, concurrent misses make one registry request, memory stays
//! bounded, and without `cache:` nothing changes.

mod common;

use std::time::Duration;

use common::*;
use reqwest::blocking::{Client, Response};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

const ACL: &str = r#"
- match: {account: admin}
  actions: ["*"]
- match: {account: reader, name: "app"}
  actions: [pull]
- match: {account: reader, name: "secret"}
  actions: [push]
"#;

/// A proxy with `cache` (YAML under `cache:`, or none) in front of `upstream`; its admin port.
fn proxy(upstream: &str, cache: Option<&str>) -> (Proxy, u16) {
    let admin = free_port();
    let mut config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin}\nauth:\n  users: users.yaml\nacl: acl.yaml\n"
    );
    if let Some(cache) = cache {
        config.push_str(&format!("cache:\n  manifests: {cache}\n"));
    }
    let files = vec![
        (
            "users.yaml",
            format!(
                "admin:\n  password: \"{}\"\nreader:\n  password: \"{}\"\n\"\": {{}}\n",
                hash("adminpw"),
                hash("readerpw")
            ),
        ),
        ("acl.yaml", ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        upstream,
    );
    (proxy, admin)
}

/// Manifest requests the recording upstream received (the readiness probe asks for `/v2/`).
fn manifest_requests(upstream: &Recorder) -> usize {
    upstream
        .seen()
        .iter()
        .filter(|head| head.contains("/manifests/"))
        .count()
}

fn cache_metric(admin: u16, result: &str) -> f64 {
    metric(
        admin,
        &format!("portcullis_cache_requests_total{{result=\"{result}\"}}"),
    )
}

fn get(client: &Client, url: &str, user: Option<(&str, &str)>, accept: &str) -> Response {
    let mut req = client.get(url).header("Accept", accept);
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    req.send().unwrap()
}

/// An OCI image manifest (no layers) whose config is the blob `{}` already in `repo`, made
/// distinct by `note`.
fn oci_manifest(config_digest: &str, note: &str) -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2},
        "layers": [],
        "annotations": {"note": note},
    })
    .to_string()
}

fn digest_of(body: &str) -> String {
    format!("sha256:{}", sha256_hex(body.as_bytes()))
}

/// `PUT` a manifest through the proxy as admin.
fn put_manifest(proxy: &Proxy, repo: &str, reference: &str, media_type: &str, body: &str) {
    let r = proxy
        .client()
        .put(proxy.url(&format!("/v2/{repo}/manifests/{reference}")))
        .basic_auth("admin", Some("adminpw"))
        .header("Content-Type", media_type)
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
}

#[test]
fn writes_through_portcullis_are_read_back_at_once() {
    let registry = Registry::start();
    // A long tag_ttl: only the invalidation on write can make the new tag visible at once.
    let (proxy, admin) = proxy(
        &registry.url(),
        Some("{max_memory: 8MiB, digest_ttl: 10m, tag_ttl: 1h}"),
    );
    let client = proxy.client();
    let config = registry.push_blob("app", b"{}");
    let admin_user = Some(("admin", "adminpw"));
    let tag_url = proxy.url("/v2/app/manifests/v1");

    let old = oci_manifest(&config, "old");
    put_manifest(&proxy, "app", "v1", OCI_MANIFEST, &old);
    for _ in 0..2 {
        let r = get(&client, &tag_url, admin_user, OCI_MANIFEST);
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-content-digest"],
            digest_of(&old).as_str()
        );
    }
    assert!(
        cache_metric(admin, "hit") >= 1.0,
        "the second read was a hit"
    );

    // Moved through portcullis: the very next read sees the new digest, many times over.
    let new = oci_manifest(&config, "new");
    put_manifest(&proxy, "app", "v1", OCI_MANIFEST, &new);
    for _ in 0..3 {
        let r = get(&client, &tag_url, admin_user, OCI_MANIFEST);
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-content-digest"],
            digest_of(&new).as_str()
        );
        assert_eq!(r.text().unwrap(), new);
    }

    // Deleted through portcullis (by digest): 404 at once, by digest and by tag.
    let by_digest = proxy.url(&format!("/v2/app/manifests/{}", digest_of(&new)));
    assert_eq!(
        get(&client, &by_digest, admin_user, OCI_MANIFEST).status(),
        200
    );
    assert_eq!(
        get(&client, &by_digest, admin_user, OCI_MANIFEST).status(),
        200
    );
    let r = client
        .delete(&by_digest)
        .basic_auth("admin", Some("adminpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        get(&client, &by_digest, admin_user, OCI_MANIFEST).status(),
        404
    );
    assert_eq!(
        get(&client, &tag_url, admin_user, OCI_MANIFEST).status(),
        404
    );

    // The cache really holds answers: a tag moved behind portcullis's back stays as it was
    // for up to tag_ttl (the documented staleness bound), which is what makes the reads
    // above meaningful.
    let third = oci_manifest(&config, "third");
    put_manifest(&proxy, "app", "v2", OCI_MANIFEST, &third);
    let v2 = proxy.url("/v2/app/manifests/v2");
    assert_eq!(
        get(&client, &v2, admin_user, OCI_MANIFEST).headers()["docker-content-digest"],
        digest_of(&third).as_str()
    );
    let behind = registry.push_manifest("app", "v2", &[], serde_json::json!({"note": "behind"}));
    let r = get(&client, &v2, admin_user, OCI_MANIFEST);
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest_of(&third).as_str()
    );
    assert_ne!(behind, digest_of(&third));
}

#[test]
fn refused_callers_never_get_a_cached_answer() {
    let registry = Registry::start();
    let (proxy, admin) = proxy(&registry.url(), Some("{tag_ttl: 1h}"));
    let client = proxy.client();
    let digest = registry.push_manifest("secret", "v1", &[], serde_json::json!({"s": "x"}));
    for reference in ["v1", digest.as_str()] {
        let url = proxy.url(&format!("/v2/secret/manifests/{reference}"));
        // Cached for admin.
        for _ in 0..2 {
            assert_eq!(
                get(&client, &url, Some(("admin", "adminpw")), OCI_MANIFEST).status(),
                200
            );
        }
        let hits = cache_metric(admin, "hit");
        for (user, want) in [
            (None, 401),
            (Some(("reader", "wrong")), 401),
            (Some(("nobody", "x")), 401),
            // reader may push to secret but not pull.
            (Some(("reader", "readerpw")), 403),
        ] {
            for head in [false, true] {
                let mut req = if head {
                    client.head(&url)
                } else {
                    client.get(&url)
                }
                .header("Accept", OCI_MANIFEST);
                if let Some((u, p)) = user {
                    req = req.basic_auth(u, Some(p));
                }
                let r = req.send().unwrap();
                assert_eq!(r.status(), want, "{user:?} {reference} head={head}");
                assert!(r.headers().get("docker-content-digest").is_none());
                let body = r.text().unwrap();
                assert!(!body.contains("schemaVersion"), "{body}");
            }
        }
        assert_eq!(
            cache_metric(admin, "hit"),
            hits,
            "no refusal looked in the cache"
        );
    }
}

#[test]
fn accept_variants_get_their_own_answers() {
    let registry = Registry::start();
    let (proxy, _admin) = proxy(&registry.url(), Some("{tag_ttl: 1h}"));
    let client = proxy.client();
    let admin_user = Some(("admin", "adminpw"));

    // An OCI index: the registry serves it only to clients that accept OCI indexes.
    let child = registry.push_manifest("app", "child", &[], serde_json::json!({}));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 1,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    .to_string();
    // The size must be right for the registry to take it.
    let child_len = get(
        &client,
        &proxy.url(&format!("/v2/app/manifests/{child}")),
        admin_user,
        OCI_MANIFEST,
    )
    .bytes()
    .unwrap()
    .len();
    let index = index.replace("\"size\":1", &format!("\"size\":{child_len}"));
    put_manifest(&proxy, "app", "multi", OCI_INDEX, &index);
    for reference in ["multi".to_string(), digest_of(&index)] {
        let url = proxy.url(&format!("/v2/app/manifests/{reference}"));
        for _ in 0..2 {
            let r = get(
                &client,
                &url,
                admin_user,
                &format!("{OCI_INDEX}, {OCI_MANIFEST}"),
            );
            assert_eq!(r.status(), 200);
            assert_eq!(r.text().unwrap(), index);
        }
        // Same reference, an Accept without OCI indexes: the registry's 404, not the index.
        for _ in 0..2 {
            let r = get(&client, &url, admin_user, DOCKER_MANIFEST);
            assert_eq!(r.status(), 404, "{reference}");
            assert!(r.text().unwrap().contains("MANIFEST_UNKNOWN"));
        }
        // Spelled differently, the same set of types: the same (cached) answer.
        let r = get(
            &client,
            &url,
            admin_user,
            &format!(" {OCI_MANIFEST} ;q=0.9,text/html,{OCI_INDEX}"),
        );
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().unwrap(), index);
    }

    // A Docker schema 2 manifest by tag: to a client that does not accept schema 2, the
    // registry answers something else (a schema 1 rewrite, or an error), never the schema 2.
    let config = registry.push_blob(
        "app",
        br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]},"history":[]}"#,
    );
    let schema2 = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config, "size": 99},
        "layers": [],
    })
    .to_string();
    let config_len = registry_blob_len(&registry, "app", &config);
    let schema2 = schema2.replace("\"size\":99", &format!("\"size\":{config_len}"));
    put_manifest(&proxy, "app", "docker", DOCKER_MANIFEST, &schema2);
    let url = proxy.url("/v2/app/manifests/docker");
    for _ in 0..2 {
        let r = get(&client, &url, admin_user, DOCKER_MANIFEST);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], DOCKER_MANIFEST);
        assert_eq!(r.text().unwrap(), schema2);
    }
    let r = get(&client, &url, admin_user, "application/json");
    assert_ne!(
        (
            r.status().as_u16(),
            r.headers().get("content-type").cloned()
        ),
        (200, Some(DOCKER_MANIFEST.parse().unwrap())),
        "a client without schema 2 got the cached schema 2 answer"
    );
}

fn registry_blob_len(registry: &Registry, repo: &str, digest: &str) -> usize {
    reqwest::blocking::get(format!("{}/v2/{repo}/blobs/{digest}", registry.url()))
        .unwrap()
        .bytes()
        .unwrap()
        .len()
}

#[test]
fn concurrent_misses_make_one_upstream_request() {
    let upstream = Recorder::start_gated();
    let (proxy, admin) = proxy(&upstream.url(), Some("{}"));
    let url = proxy.url(&format!("/v2/app/manifests/sha256:{}", "ab".repeat(32)));
    const N: usize = 8;
    let clients: Vec<_> = (0..N)
        .map(|_| {
            let client = proxy.client();
            let url = url.clone();
            std::thread::spawn(move || {
                let r = get(&client, &url, Some(("admin", "adminpw")), OCI_MANIFEST);
                (r.status().as_u16(), r.text().unwrap())
            })
        })
        .collect();
    // The first request reaches the registry and is held there; all N are connected.
    wait_until(
        "the leading request upstream",
        Duration::from_secs(10),
        || manifest_requests(&upstream) > 0,
    );
    wait_until("every client connected", Duration::from_secs(10), || {
        metric(admin, "portcullis_client_connections") >= N as f64
    });
    // Without coalescing the others would arrive upstream now; give them a second to.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        manifest_requests(&upstream),
        1,
        "only the leader asked the registry"
    );
    upstream.open();
    for c in clients {
        assert_eq!(c.join().unwrap(), (200, "{}".to_string()));
    }
    assert_eq!(manifest_requests(&upstream), 1);
    assert_eq!(cache_metric(admin, "miss"), 1.0);
    assert_eq!(cache_metric(admin, "coalesced"), (N - 1) as f64);
    // And later requests are hits.
    let r = get(
        &proxy.client(),
        &url,
        Some(("admin", "adminpw")),
        OCI_MANIFEST,
    );
    assert_eq!(r.text().unwrap(), "{}");
    assert_eq!(manifest_requests(&upstream), 1);
    assert_eq!(cache_metric(admin, "hit"), 1.0);
}

/// A request portcullis makes itself (a fill for a HEAD, a revalidation) carries its own
/// headers and the client's `Accept`, nothing else of the client's: no credentials, no
/// method or URL override.
fn only_rebuilt_headers(head: &str) {
    for line in head.lines().skip(1).filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap().to_ascii_lowercase();
        assert!(
            ["host", "accept", "if-none-match"].contains(&name.as_str()),
            "{line:?} reached the registry: {head}"
        );
    }
}

#[test]
fn a_head_miss_fills_the_cache_with_the_get_answer() {
    let upstream = Recorder::start();
    let (proxy, admin) = proxy(&upstream.url(), Some("{}"));
    let client = proxy.client();
    let url = proxy.url(&format!("/v2/app/manifests/sha256:{}", "cd".repeat(32)));
    let head = || {
        client
            .head(&url)
            .basic_auth("admin", Some("adminpw"))
            .header("X-HTTP-Method-Override", "DELETE")
            .header("X-Original-URL", "/v2/secret/manifests/latest")
            .send()
            .unwrap()
    };
    // A HEAD miss: portcullis asks the registry with a GET (a HEAD answer has no body to
    // keep), keeps the answer and answers the HEAD from it: its headers, no body.
    let r = head();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "2");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.bytes().unwrap().len(), 0);
    let seen: Vec<String> = upstream
        .seen()
        .into_iter()
        .filter(|h| h.contains("/manifests/"))
        .collect();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].starts_with("GET "), "{}", seen[0]);
    only_rebuilt_headers(&seen[0]);
    assert_eq!(cache_metric(admin, "miss"), 1.0);
    // The GET after it is a hit with the whole body, and so is the next HEAD.
    let r = get(&client, &url, Some(("admin", "adminpw")), "");
    assert_eq!(r.text().unwrap(), "{}");
    assert_eq!(head().status(), 200);
    assert_eq!(manifest_requests(&upstream), 1);
    assert_eq!(cache_metric(admin, "hit"), 2.0);
}

#[test]
fn with_tag_ttl_zero_every_read_by_tag_is_revalidated_with_the_registry() {
    let registry = Registry::start();
    let (proxy, admin) = proxy(&registry.url(), Some("{tag_ttl: 0s}"));
    let client = proxy.client();
    let config = registry.push_blob("app", b"{}");
    let admin_user = Some(("admin", "adminpw"));
    let tag_url = proxy.url("/v2/app/manifests/v1");
    let first = oci_manifest(&config, "first");
    put_manifest(&proxy, "app", "v1", OCI_MANIFEST, &first);

    // The first read fills; each later one asks the registry with If-None-Match and, told
    // the tag still names that manifest (304), serves the stored answer.
    for _ in 0..3 {
        let r = get(&client, &tag_url, admin_user, OCI_MANIFEST);
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-content-digest"],
            digest_of(&first).as_str()
        );
        assert_eq!(r.text().unwrap(), first);
    }
    let r = client
        .head(&tag_url)
        .basic_auth("admin", Some("adminpw"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest_of(&first).as_str()
    );
    assert_eq!(cache_metric(admin, "miss"), 1.0);
    assert_eq!(cache_metric(admin, "revalidated"), 3.0);
    assert_eq!(
        cache_metric(admin, "hit"),
        0.0,
        "a tag is never served unasked"
    );

    // Moved behind portcullis's back: the very next read has the new manifest.
    let behind = registry.push_manifest("app", "v1", &[], serde_json::json!({"note": "behind"}));
    let r = get(&client, &tag_url, admin_user, OCI_MANIFEST);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], behind.as_str());
    assert_eq!(digest_of(&r.text().unwrap()), behind);
    assert_eq!(cache_metric(admin, "miss"), 2.0);
    // ... which is what later reads revalidate against.
    let r = get(&client, &tag_url, admin_user, OCI_MANIFEST);
    assert_eq!(r.headers()["docker-content-digest"], behind.as_str());
    assert_eq!(cache_metric(admin, "revalidated"), 4.0);

    // Deleted behind portcullis's back: 404 at once, the registry's own answer.
    let r = reqwest::blocking::Client::new()
        .delete(format!("{}/v2/app/manifests/{behind}", registry.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = get(&client, &tag_url, admin_user, OCI_MANIFEST);
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("MANIFEST_UNKNOWN"));
}

#[test]
fn concurrent_reads_of_a_stale_tag_share_revalidations_asked_after_they_arrived() {
    let upstream = Recorder::start();
    let (proxy, admin) = proxy(&upstream.url(), Some("{tag_ttl: 0s}"));
    let url = proxy.url("/v2/app/manifests/latest");
    let admin_user = Some(("admin", "adminpw"));
    assert_eq!(
        get(&proxy.client(), &url, admin_user, "").text().unwrap(),
        "{}"
    );
    assert_eq!(manifest_requests(&upstream), 1);

    // The registry holds its answers: the first read's revalidation stays in flight.
    upstream.close();
    const N: usize = 8;
    let clients: Vec<_> = (0..N)
        .map(|_| {
            let client = proxy.client();
            let url = url.clone();
            std::thread::spawn(move || {
                let r = get(&client, &url, admin_user, "");
                (r.status().as_u16(), r.text().unwrap())
            })
        })
        .collect();
    wait_until("a revalidation upstream", Duration::from_secs(10), || {
        manifest_requests(&upstream) == 2
    });
    wait_until("every client connected", Duration::from_secs(10), || {
        metric(admin, "portcullis_client_connections") >= N as f64
    });
    // The others arrived while that question was out: none may take its answer (it was asked
    // before they came), and none asks on its own; they wait for the next round.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(manifest_requests(&upstream), 2, "one question at a time");
    let revalidations: Vec<String> = upstream
        .seen()
        .into_iter()
        .filter(|h| h.contains("/manifests/"))
        .skip(1)
        .collect();
    revalidations.iter().for_each(|h| only_rebuilt_headers(h));
    assert!(
        revalidations.iter().all(|h| h
            .to_ascii_lowercase()
            .contains(&format!("if-none-match: {RECORDER_ETAG}"))),
        "{revalidations:?}"
    );
    upstream.open();
    for c in clients {
        assert_eq!(c.join().unwrap(), (200, "{}".to_string()));
    }
    // One round for the first arrival, one shared by everyone who came while it ran.
    assert_eq!(manifest_requests(&upstream), 3);
    assert_eq!(cache_metric(admin, "revalidated"), 2.0);
    assert_eq!(cache_metric(admin, "coalesced"), (N - 2) as f64);
    assert_eq!(cache_metric(admin, "hit"), 0.0);
}

#[test]
fn without_cache_or_with_tag_ttl_zero_the_registry_is_asked_every_time() {
    let upstream = Recorder::start();
    // No `cache:` at all: every request reaches the registry, nothing is counted as cached.
    let (plain, plain_admin) = proxy(&upstream.url(), None);
    let digest_path = format!("/v2/app/manifests/sha256:{}", "ef".repeat(32));
    for _ in 0..3 {
        let r = get(
            &plain.client(),
            &plain.url(&digest_path),
            Some(("admin", "adminpw")),
            "",
        );
        assert_eq!(r.text().unwrap(), "{}");
    }
    assert_eq!(manifest_requests(&upstream), 3);
    for result in ["hit", "miss", "coalesced", "revalidated"] {
        assert_eq!(cache_metric(plain_admin, result), 0.0);
    }
    // The default tag_ttl (0): tags are always asked for (revalidated: the first read is a
    // full one, the later ones conditional); digests are cached.
    let (cached, _) = proxy(&upstream.url(), Some("{}"));
    for _ in 0..3 {
        get(
            &cached.client(),
            &cached.url("/v2/app/manifests/latest"),
            Some(("admin", "adminpw")),
            "",
        );
    }
    assert_eq!(manifest_requests(&upstream), 6);
    for _ in 0..3 {
        get(
            &cached.client(),
            &cached.url(&digest_path),
            Some(("admin", "adminpw")),
            "",
        );
    }
    assert_eq!(manifest_requests(&upstream), 7);
}

#[test]
fn memory_stays_within_max_memory() {
    let registry = Registry::start();
    let (proxy, admin) = proxy(&registry.url(), Some("{max_memory: 1MiB}"));
    let client = proxy.client();
    // 60 manifests of ~40 KiB each: 2.4 MiB of answers for a 1 MiB cache.
    let digests: Vec<String> = (0..60)
        .map(|i| {
            let filler: String = pseudo_random(40 * 1024, 2 * i + 1)
                .iter()
                .map(|b| char::from(b'a' + b % 26))
                .collect();
            registry.push_manifest(
                "app",
                &format!("t{i}"),
                &[],
                serde_json::json!({"filler": filler}),
            )
        })
        .collect();
    for d in &digests {
        let r = get(
            &client,
            &proxy.url(&format!("/v2/app/manifests/{d}")),
            Some(("admin", "adminpw")),
            OCI_MANIFEST,
        );
        assert_eq!(r.status(), 200);
        assert!(r.bytes().unwrap().len() > 30 * 1024);
    }
    let bytes = || metric(admin, "portcullis_cache_bytes");
    // Eviction runs in batches: give it the next requests to run in.
    let mut i = 0;
    wait_until(
        "the cache within max_memory",
        Duration::from_secs(10),
        || {
            i += 1;
            get(
                &client,
                &proxy.url(&format!("/v2/app/manifests/{}", digests[i % 60])),
                Some(("admin", "adminpw")),
                OCI_MANIFEST,
            );
            bytes() <= (1 << 20) as f64
        },
    );
    assert!(bytes() > 0.0, "something is cached");
    assert!(metric(admin, "portcullis_cache_evictions_total") > 0.0);
    // Every answer is still right, cached or not.
    for d in &digests {
        let r = get(
            &client,
            &proxy.url(&format!("/v2/app/manifests/{d}")),
            Some(("admin", "adminpw")),
            OCI_MANIFEST,
        );
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert_eq!(digest_of(&r.text().unwrap()), *d);
    }
}
