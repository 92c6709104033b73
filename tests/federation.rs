//! Keyless CI (`auth.federation`, docs/federation.md) end to end against an issuer fixture
//! (tests/common/issuer.rs: HTTPS with a private CA, discovery + JWKS, RSA and EC keys,
//! rotation): a job token for `org/app` pushes to `org/app` with skopeo through the token
//! flow and is refused on `org/other`; expired, wrong audience, missing claims, unknown or
//! rotated keys, algorithm confusion (HS256 with the public key, `none`) are refused with
//! the reason in the audit line; the JWKS is fetched on a new key id, rate-limited, never
//! per request.

mod common;

use std::time::Duration;

use base64::Engine;
use common::issuer::{Issuer, SignKey};
use common::*;

const ACL: &str = r#"
- match: {account: "/github:.+/", name: "${labels:repository}", labels: {ref: refs/heads/main}}
  actions: [pull, push]
  comment: a job may push to its own repository from main
"#;

fn start(registry: &Registry, issuer: &Issuer) -> (Proxy, u16) {
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = portcullis::token::generate_dev_keypair(dir.path()).unwrap();
    let files = vec![
        (
            "users.yaml",
            format!("admin:\n  password: \"{}\"\n", hash("badmin")),
        ),
        ("acl.yaml", ACL.to_string()),
        (
            "issuer-ca.pem",
            std::fs::read_to_string(&issuer.ca_path).unwrap(),
        ),
        ("token.key", std::fs::read_to_string(key).unwrap()),
        ("token.crt", std::fs::read_to_string(cert).unwrap()),
    ];
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin}\nauth:\n  challenge: token\n  users: users.yaml\n  token:\n    key: token.key\n    certificate: token.crt\n  federation:\n    - issuer: {}\n      audience: portcullis\n      account: \"github:{{repository}}\"\n      labels: {{repository: repository, ref: ref}}\n      ca_certificate: issuer-ca.pem\nacl: acl.yaml\n",
        issuer.url
    );
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: true,
        },
        &registry.url(),
    );
    (proxy, admin)
}

fn audit_reasons(proxy: &Proxy) -> Vec<String> {
    proxy
        .proc
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .map(|v| v["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

/// GET /v2/{repo}/tags/list with the token as the Basic password (username ignored).
fn status(proxy: &Proxy, repo: &str, token: &str) -> u16 {
    proxy
        .client()
        .get(proxy.url(&format!("/v2/{repo}/tags/list")))
        .basic_auth("oidc", Some(token))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Asserts `token` is refused and the audit line says `reason`.
fn refused(proxy: &Proxy, token: &str, reason: &str) {
    let before = audit_reasons(proxy).len();
    assert_eq!(status(proxy, "org/app", token), 401, "{reason}");
    // Audit lines are written a few milliseconds after the answers (the lines of earlier
    // requests may still be coming): wait for this request's among those after `before`.
    let want = format!("CI token refused: {reason}");
    wait_until(&want, Duration::from_secs(5), || {
        audit_reasons(proxy)[before..].contains(&want)
    });
}

#[test]
fn a_job_token_pushes_to_its_own_repository_only() {
    let registry = Registry::start();
    let rsa = SignKey::rsa("rsa-1");
    let ec = SignKey::ec("ec-1");
    let issuer = Issuer::start(&[&rsa, &ec]);
    let (proxy, _) = start(&registry, &issuer);
    let host = proxy.host();
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    write_oci_image(&img, "v1", &pseudo_random(64 * 1024, 11));
    let src = format!("oci:{}:v1", img.display());
    let push = |repo: &str, token: &str| {
        copy(
            &proxy,
            &src,
            &format!("docker://{host}/{repo}:v1"),
            Some(&format!("oidc:{token}")),
        )
    };
    let app = rsa.sign(&issuer.claims("portcullis", "org/app", 300));
    let (ok, err) = push("org/app", &app);
    assert!(
        ok,
        "a job pushes to its repository: {err}\n{}",
        proxy.proc.output()
    );
    let (ok, _) = push("org/other", &app);
    assert!(!ok, "a job token for org/app must not push to org/other");
    // An EC-signed token works the same way.
    let other = ec.sign(&issuer.claims("portcullis", "org/other", 300));
    assert!(push("org/other", &other).0);
    // The audit line names the issuer and the account built from the claims.
    let lines: Vec<serde_json::Value> = proxy
        .proc
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| {
            v["target"] == "audit" && v["issuer"] == issuer.url.as_str()
        })
        .collect();
    assert!(lines
        .iter()
        .any(|v| v["account"] == "github:org/app" && v["action"] == "token"));
    assert!(lines.iter().any(|v| v["account"] == "github:org/app"
        && v["action"] == "push"
        && v["decision"] == "allowed"));
    // Both keys came with one fetch: the JWKS is not fetched per request.
    assert_eq!(issuer.fetches(), 1);
}

#[test]
fn bad_tokens_are_refused_with_a_reason_and_rotation_refetches_once() {
    let registry = Registry::start();
    let k1 = SignKey::rsa("k1");
    let issuer = Issuer::start(&[&k1]);
    let (proxy, admin) = start(&registry, &issuer);
    let good = k1.sign(&issuer.claims("portcullis", "org/app", 300));
    assert_eq!(
        status(&proxy, "org/app", &good),
        404,
        "allowed (no such repository upstream)"
    );
    assert_eq!(status(&proxy, "org/other", &good), 403);
    assert_eq!(issuer.fetches(), 1);
    // A reload (any file changing) keeps the fetched keys of an unchanged issuer.
    let before = reloads(admin, "success");
    std::fs::write(
        proxy.dir.path().join("acl.yaml"),
        format!("{ACL}# edited\n"),
    )
    .unwrap();
    wait_for_reload(admin, "success", before, Duration::from_secs(10));
    assert_eq!(status(&proxy, "org/app", &good), 404);
    assert_eq!(issuer.fetches(), 1, "a reload must not refetch the keys");

    refused(
        &proxy,
        &k1.sign(&issuer.claims("portcullis", "org/app", -120)),
        "expired",
    );
    refused(
        &proxy,
        &k1.sign(&issuer.claims("someone-else", "org/app", 300)),
        "wrong audience",
    );
    let mut no_ref = issuer.claims("portcullis", "org/app", 300);
    no_ref.as_object_mut().unwrap().remove("ref");
    refused(&proxy, &k1.sign(&no_ref), "claim `ref` missing");
    let mut other_iss = issuer.claims("portcullis", "org/app", 300);
    other_iss["iss"] = "https://evil.example".into();
    refused(
        &proxy,
        &k1.sign(&other_iss),
        "untrusted issuer \"https://evil.example\"",
    );
    // A key the issuer does not publish, under a kid it does: a forgery.
    let mut forger = SignKey::rsa("k1");
    forger.kid = "k1".into();
    refused(
        &proxy,
        &forger.sign(&issuer.claims("portcullis", "org/app", 300)),
        "bad signature",
    );

    // Algorithm confusion: HS256 with the RSA public key as the secret, and `none`.
    let claims = issuer.claims("portcullis", "org/app", 300);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(k1.public_pem.as_bytes()),
    )
    .unwrap();
    refused(&proxy, &hs, "algorithm \"HS256\" is not allowed");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "kid": "k1"})),
        b64(&claims)
    );
    refused(&proxy, &none, "algorithm \"none\" is not allowed");
    assert_eq!(issuer.fetches(), 1, "no refusal above needed a fetch");

    // Rotation: the issuer publishes k2; a token signed with it names a kid not seen yet,
    // which fetches the JWKS again (within a few seconds: at most one fetch per 5 s).
    let k2 = SignKey::ec("k2");
    issuer.publish(&[&k2]);
    let rotated = k2.sign(&issuer.claims("portcullis", "org/app", 300));
    let waited = std::time::Instant::now();
    while status(&proxy, "org/app", &rotated) != 404 {
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "the rotated key was not fetched: {:?}",
            audit_reasons(&proxy).last()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after_rotation = issuer.fetches();
    assert!(after_rotation >= 2, "the JWKS was fetched again");
    // A kid nobody publishes is refused; a burst of them fetches at most once more.
    for i in 0..10 {
        let mut unknown = SignKey::ec("k2");
        unknown.kid = format!("nope-{i}");
        refused(
            &proxy,
            &unknown.sign(&issuer.claims("portcullis", "org/app", 300)),
            &format!("unknown signing key \"nope-{i}\""),
        );
    }
    assert!(
        issuer.fetches() <= after_rotation + 1,
        "fetches: {}",
        issuer.fetches()
    );
    // The rotated-out key no longer verifies once the copy is replaced.
    refused(
        &proxy,
        &k1.sign(&issuer.claims("portcullis", "org/app", 300)),
        "unknown signing key \"k1\"",
    );
}

#[test]
fn check_refuses_a_plain_http_issuer_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("acl.yaml", "[]\n"),
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nauth:\n  federation:\n    - issuer: https://token.actions.githubusercontent.com\n      audience: portcullis\n      account: \"github:{repository}\"\n    - issuer: http://gitlab.example.com\n      audience: portcullis\n      account: \"gitlab\"\nacl: acl.yaml\n",
            ),
        ],
    );
    let (code, _, err) = portcullis(&["-c", "proxy.yaml", "check"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("proxy.yaml:7:15: auth.federation.1.issuer: \"http://gitlab.example.com\" must start with https://"), "{err}");
    assert!(
        err.contains("auth.federation.1.account: \"gitlab\" names no claim"),
        "{err}"
    );
}
