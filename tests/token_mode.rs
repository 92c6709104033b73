//! `challenge: token` end to end: the Docker token flow through portcullis with skopeo, the
//! manual flow of the README, a stock registry:2 in token mode trusting portcullis's `/auth`,
//! and forged or misused tokens refused on `/v2/`.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use portcullis::token::{ResourceActions, TokenService};

const ACL: &str = r#"
- match: {account: admin}
  actions: ["*"]
- match: {account: test}
  actions: [pull]
- match: {account: "/.+/", name: "${account}/**"}
  actions: ["*"]
- match: {account: "", name: "public/**"}
  actions: [pull]
"#;

const SERVICE: &str = "portcullis-test";
const ISSUER: &str = "portcullis-issuer";

fn token_config(extra_auth: &str) -> String {
    format!(
        "upstream: {{upstream}}\nauth:\n  challenge: token\n  users: users.yaml\n  token:\n    issuer: {ISSUER}\n    service: {SERVICE}\n    key: token.key\n    certificate: token.crt\n    expiration: 5m\n{extra_auth}acl: acl.yaml\n"
    )
}

fn files() -> Vec<(&'static str, String)> {
    vec![
        (
            "users.yaml",
            format!(
                "admin:\n  password: \"{}\"\ntest:\n  password: \"{}\"\nbob:\n  password: \"{}\"\n\"\": {{}}\n",
                hash("badmin"),
                hash("123"),
                hash("bobpw")
            ),
        ),
        ("acl.yaml", ACL.to_string()),
    ]
}

/// A proxy in token mode with a fresh key pair.
fn start(upstream: &str, tls: bool) -> Proxy {
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = portcullis::token::generate_dev_keypair(keys.path()).unwrap();
    let mut files = files();
    files.push(("token.key", std::fs::read_to_string(key).unwrap()));
    files.push(("token.crt", std::fs::read_to_string(cert).unwrap()));
    Proxy::start(
        ProxySetup {
            config: &token_config(""),
            files: &files,
            tls,
        },
        upstream,
    )
}

/// A TokenService with the proxy's key, for forging tokens in tests.
fn service_like(proxy: &Proxy, issuer: &str, service: &str, expiration: Duration) -> TokenService {
    TokenService::load(&portcullis::config::Token {
        path: "/auth".into(),
        realm: None,
        issuer: issuer.into(),
        service: service.into(),
        key: proxy.dir.path().join("token.key"),
        certificate: Some(proxy.dir.path().join("token.crt")),
        expiration,
        refresh_expiration: Duration::from_secs(3600),
        previous_keys: vec![],
    })
    .unwrap()
}

fn access(name: &str, actions: &[&str]) -> Vec<ResourceActions> {
    vec![ResourceActions {
        kind: "repository".into(),
        name: name.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }]
}

/// `key="value"` pairs of a challenge.
fn params(challenge: &str) -> std::collections::HashMap<String, String> {
    let rest = challenge
        .strip_prefix("Bearer ")
        .expect("a Bearer challenge");
    let mut out = std::collections::HashMap::new();
    let re = regex::Regex::new(r#"(\w+)="((?:[^"\\]|\\.)*)""#).unwrap();
    for c in re.captures_iter(rest) {
        out.insert(c[1].to_string(), c[2].to_string());
    }
    out
}

#[test]
fn skopeo_pushes_and_pulls_through_the_token_flow() {
    let registry = Registry::start();
    let proxy = start(&registry.url(), true);
    let host = proxy.host();
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    let layer = pseudo_random(2 * 1024 * 1024, 3);
    let digest = write_oci_image(&img, "v1", &layer);
    let src = format!("oci:{}:v1", img.display());
    let push = |repo: &str, creds: Option<&str>| {
        copy(&proxy, &src, &format!("docker://{host}/{repo}:v1"), creds)
    };
    let pull = |repo: &str, creds: Option<&str>| {
        let out = tempfile::tempdir().unwrap();
        let r = copy(
            &proxy,
            &format!("docker://{host}/{repo}:v1"),
            &format!("oci:{}:v1", out.path().display()),
            creds,
        );
        let ok = r.0
            && std::fs::read(
                out.path()
                    .join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:")),
            )
            .ok()
            .as_deref()
                == Some(&layer[..]);
        (ok, r.1)
    };
    let (ok, err) = push("team/app", Some("admin:badmin"));
    assert!(ok, "admin push: {err}\n{}", proxy.proc.output());
    assert!(push("public/app", Some("admin:badmin")).0);
    let (ok, err) = pull("team/app", Some("test:123"));
    assert!(ok, "test pull: {err}");
    let (ok, err) = push("team/other", Some("test:123"));
    assert!(!ok, "test may not push");
    assert!(
        err.contains("denied") || err.contains("unauthorized") || err.contains("insufficient"),
        "{err}"
    );
    assert!(push("bob/app", Some("bob:bobpw")).0, "bob owns bob/*");
    let (ok, err) = pull("public/app", None);
    assert!(ok, "anonymous pull of public/*: {err}");
    assert!(!pull("team/app", None).0, "anonymous may not pull team/*");
    assert!(!push("public/app2", None).0, "anonymous may not push");
    // The tokens really were used: the token endpoint issued some.
    let log = proxy.proc.output();
    assert!(
        log.contains("\"path\":\"/auth\""),
        "no token requests in the audit log"
    );
}

#[test]
fn the_manual_flow_of_the_readme() {
    let registry = Registry::start();
    let proxy = start(&registry.url(), false);
    let c = proxy.client();
    // 1. Anonymous request: 401 with a Bearer challenge.
    let r = c.get(proxy.url("/v2/_catalog")).send().unwrap();
    assert_eq!(r.status(), 401);
    let p = params(r.headers()["www-authenticate"].to_str().unwrap());
    assert_eq!(p["realm"], proxy.url("/auth"));
    assert_eq!(p["service"], SERVICE);
    assert_eq!(p["scope"], "registry:catalog:*");
    // 2. Ask the realm for a token with Basic credentials.
    let r = c
        .get(&p["realm"])
        .query(&[
            ("service", p["service"].as_str()),
            ("scope", p["scope"].as_str()),
        ])
        .basic_auth("admin", Some("badmin"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: serde_json::Value = r.json().unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], body["token"]);
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert!(body["issued_at"].is_string());
    // The claims are what registry:2 expects.
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "admin");
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "registry", "name": "catalog", "actions": ["*"]}])
    );
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"].as_str().unwrap().len(), 59);
    assert!(header["x5c"].is_array());
    // 3. Retry with the token.
    let r = c
        .get(proxy.url("/v2/_catalog"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Denied actions are left out of the token, not errors.
    let r = c
        .get(proxy.url("/auth"))
        .query(&[
            ("service", SERVICE),
            ("scope", "repository:team/app:pull,push,delete"),
        ])
        .basic_auth("test", Some("123"))
        .send()
        .unwrap();
    let body: serde_json::Value = r.json().unwrap();
    let payload = body["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    // Bad credentials at the token endpoint: 401 with an OCI body.
    let r = c
        .get(proxy.url("/auth"))
        .query(&[("service", SERVICE)])
        .basic_auth("admin", Some("nope"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    // `account` that differs from the Basic user: 400.
    let r = c
        .get(proxy.url("/auth"))
        .query(&[("service", SERVICE), ("account", "bob")])
        .basic_auth("admin", Some("badmin"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // Basic credentials still work on /v2 in token mode.
    let r = c
        .get(proxy.url("/v2/_catalog"))
        .basic_auth("admin", Some("badmin"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // OAuth2 POST with a refresh token, then a refresh.
    let r = c
        .post(proxy.url("/auth"))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bobpw"),
            ("service", SERVICE),
            ("client_id", "test"),
            ("access_type", "offline"),
            ("scope", "repository:bob/app:pull"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let r = c
        .post(proxy.url("/auth"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", SERVICE),
            ("client_id", "test"),
            ("scope", "repository:bob/app:pull,push"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(proxy.url("/v2/bob/app/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    // A refresh token is not an access token.
    let r = c
        .get(proxy.url("/v2/"))
        .bearer_auth(&refresh)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn forged_expired_and_misused_tokens_are_refused() {
    let registry = Registry::start();
    let proxy = start(&registry.url(), false);
    let c = proxy.client();
    let ok = service_like(&proxy, ISSUER, SERVICE, Duration::from_secs(300));
    let good = ok.issue("bob", access("bob/app", &["pull"])).unwrap();
    let get = |token: &str, repo: &str| {
        c.get(proxy.url(&format!("/v2/{repo}/tags/list")))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    // Control: the genuine token works (the registry answers 404 for the empty repository).
    assert_eq!(get(&good, "bob/app").status(), 404);

    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let parts: Vec<&str> = good.split('.').collect();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap();
    let mut forged: Vec<(&str, String)> = Vec::new();
    // alg: none.
    let none = serde_json::json!({"typ": "JWT", "alg": "none", "kid": header["kid"]});
    forged.push(("alg none", format!("{}.{}.", b64(&none), parts[1])));
    // HS256 signed with the public key (certificate) as the HMAC secret.
    let cert = std::fs::read(proxy.dir.path().join("token.crt")).unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            alg: jsonwebtoken::Algorithm::HS256,
            kid: header["kid"].as_str().map(str::to_owned),
            ..Default::default()
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&cert),
    )
    .unwrap();
    forged.push(("HS256 with the public key", hs));
    // Tampered payload: more rights, same signature.
    let mut more = claims.clone();
    more["access"] =
        serde_json::json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}]);
    forged.push((
        "tampered payload",
        format!("{}.{}.{}", parts[0], b64(&more), parts[2]),
    ));
    // Expired and not yet valid, properly signed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    forged.push((
        "expired",
        ok.sign_access("bob", access("bob/app", &["pull"]), now - 3600)
            .unwrap(),
    ));
    forged.push((
        "not yet valid",
        ok.sign_access("bob", access("bob/app", &["pull"]), now + 3600)
            .unwrap(),
    ));
    // Right key, wrong audience or issuer.
    forged.push((
        "wrong aud",
        service_like(&proxy, ISSUER, "other-service", Duration::from_secs(300))
            .issue("bob", access("bob/app", &["pull"]))
            .unwrap(),
    ));
    forged.push((
        "wrong iss",
        service_like(&proxy, "someone-else", SERVICE, Duration::from_secs(300))
            .issue("bob", access("bob/app", &["pull"]))
            .unwrap(),
    ));
    // Another key altogether.
    let other = tempfile::tempdir().unwrap();
    let (k, crt) = portcullis::token::generate_dev_keypair(other.path()).unwrap();
    let stranger = TokenService::load(&portcullis::config::Token {
        path: "/auth".into(),
        realm: None,
        issuer: ISSUER.into(),
        service: SERVICE.into(),
        key: k,
        certificate: Some(crt),
        expiration: Duration::from_secs(300),
        refresh_expiration: Duration::from_secs(300),
        previous_keys: vec![],
    })
    .unwrap();
    forged.push((
        "another key",
        stranger.issue("bob", access("bob/app", &["pull"])).unwrap(),
    ));
    forged.push(("garbage", "not.a.token".into()));
    for (what, token) in &forged {
        let r = get(token, "bob/app");
        assert_eq!(r.status(), 401, "{what} was accepted");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer realm="),
            "{what}: {challenge}"
        );
        assert!(
            !challenge.contains("insufficient_scope"),
            "{what}: {challenge}"
        );
    }
    // A token for repository A used on B: 401 insufficient_scope with the scope to ask for.
    let r = get(&good, "bob/other");
    assert_eq!(r.status(), 401);
    let p = params(r.headers()["www-authenticate"].to_str().unwrap());
    assert_eq!(p["error"], "insufficient_scope");
    assert_eq!(p["scope"], "repository:bob/other:pull");
    // A pull token used for a push.
    let r = c
        .post(proxy.url("/v2/bob/app/blobs/uploads/"))
        .bearer_auth(&good)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let p = params(r.headers()["www-authenticate"].to_str().unwrap());
    assert_eq!(p["scope"], "repository:bob/app:pull,push");
    // A token for a repository the ACL does not (or no longer) allows: the ACL is consulted
    // on every request, whatever the token says.
    let overreach = ok.issue("bob", access("team/app", &["pull"])).unwrap();
    assert_eq!(get(&overreach, "team/app").status(), 403);
    // A removed account's token stops working (the users file is reloaded).
    let users = proxy.dir.path().join("users.yaml");
    let text = std::fs::read_to_string(&users).unwrap();
    let without_bob: String = text
        .lines()
        .filter(|l| {
            !l.starts_with("bob:")
                && !l.contains(
                    &text
                        .lines()
                        .skip_while(|l| !l.starts_with("bob:"))
                        .nth(1)
                        .unwrap_or("#none#")
                        .to_string(),
                )
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&users, without_bob).unwrap();
    wait_until(
        "bob's token to stop working",
        Duration::from_secs(35),
        || get(&good, "bob/app").status() == 401,
    );
}

#[test]
fn a_stock_registry_in_token_mode_trusts_portcullis_as_its_token_server() {
    // portcullis serves only /auth here; its upstream is irrelevant (a recorder).
    let recorder = Recorder::start();
    let proxy = start(&recorder.url(), false);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        dir.path().join("data").display(),
        proxy.url("/auth"),
        proxy.dir.path().join("token.crt").display()
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let log = dir.path().join("registry.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let _registry = Proc { child, log };
    wait_until("token-mode registry", Duration::from_secs(20), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/v2/"))
            .map(|r| r.status() == 401)
            .unwrap_or(false)
    });
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    let layer = pseudo_random(300_000, 9);
    let digest = write_oci_image(&img, "v1", &layer);
    let to_registry = |repo: &str, creds: &str| {
        skopeo(&[
            "copy",
            "--retry-times",
            "0",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("--dest-creds={creds}"),
            &format!("oci:{}:v1", img.display()),
            &format!("docker://127.0.0.1:{port}/{repo}:v1"),
        ])
    };
    let (ok, err) = to_registry("bob/app", "bob:bobpw");
    assert!(
        ok,
        "bob's push straight to the registry: {err}\n{}",
        proxy.proc.output()
    );
    let (ok, err) = to_registry("team/app", "test:123");
    assert!(!ok, "test's push must be refused by the registry");
    assert!(
        err.contains("denied")
            || err.contains("unauthorized")
            || err.contains("authentication required"),
        "{err}"
    );
    let out = work.path().join("pulled");
    let (ok, err) = skopeo(&[
        "copy",
        "--retry-times",
        "0",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds=test:123",
        &format!("docker://127.0.0.1:{port}/bob/app:v1"),
        &format!("oci:{}:v1", out.display()),
    ]);
    assert!(ok, "test pulls bob/app: {err}");
    assert_eq!(
        std::fs::read(
            out.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        )
        .unwrap(),
        layer
    );
    assert!(
        recorder.seen().is_empty(),
        "nothing but /auth was asked of portcullis"
    );
}

#[test]
fn rotating_the_token_key_keeps_old_tokens_working_through_previous_keys() {
    let registry = Registry::start();
    let proxy = start(&registry.url(), false);
    let c = proxy.client();
    let old = service_like(&proxy, ISSUER, SERVICE, Duration::from_secs(300));
    let old_token = old.issue("bob", access("bob/app", &["pull"])).unwrap();
    let get = |token: &str| {
        c.get(proxy.url("/v2/bob/app/tags/list"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(get(&old_token), 404);
    // Rotate: keep the old certificate as a previous key, sign with a new key.
    let dir = proxy.dir.path();
    std::fs::rename(dir.join("token.crt"), dir.join("old-token.crt")).unwrap();
    std::fs::remove_file(dir.join("token.key")).unwrap();
    portcullis::token::generate_dev_keypair(dir).unwrap();
    let config = std::fs::read_to_string(dir.join("proxy.yaml"))
        .unwrap()
        .replace(
            "    certificate: token.crt\n",
            "    certificate: token.crt\n    previous_keys: [old-token.crt]\n",
        );
    std::fs::write(dir.join("proxy.yaml"), config).unwrap();
    let new = service_like(&proxy, ISSUER, SERVICE, Duration::from_secs(300));
    let new_token = new.issue("bob", access("bob/app", &["pull"])).unwrap();
    wait_until("the new key", Duration::from_secs(5), || {
        get(&new_token) == 404
    });
    assert_eq!(
        get(&old_token),
        404,
        "a token of the previous key must still work"
    );
    // Issued tokens now come from the new key.
    let r = c
        .get(proxy.url("/auth"))
        .query(&[("service", SERVICE), ("scope", "repository:bob/app:pull")])
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    let t = r.json::<serde_json::Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(new.verify(&t).is_ok());
    // Ending the overlap: without previous_keys the old token is refused.
    let config = std::fs::read_to_string(dir.join("proxy.yaml"))
        .unwrap()
        .replace("    previous_keys: [old-token.crt]\n", "");
    std::fs::write(dir.join("proxy.yaml"), config).unwrap();
    wait_until("the old key to be dropped", Duration::from_secs(5), || {
        get(&old_token) == 401
    });
    assert_eq!(get(&new_token), 404);
}

#[test]
fn the_token_endpoint_answers_over_http2() {
    let registry = Registry::start();
    let proxy = start(&registry.url(), true);
    let ca = proxy.dir.path().join("ca.pem");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "-w",
            "\n%{http_version} %{http_code}",
            "--cacert",
        ])
        .arg(&ca)
        .args(["-u", "bob:bobpw"])
        .arg(proxy.url(&format!(
            "/auth?service={SERVICE}&scope=repository:bob/app:pull"
        )))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    assert_eq!(status, "2 200", "{text}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let token = v["token"].as_str().unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--cacert",
        ])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(proxy.url("/v2/bob/app/tags/list"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 404");
}

#[test]
fn a_repository_whose_first_component_looks_like_a_host_works() {
    let registry = Registry::start();
    let proxy = start(&registry.url(), true);
    let c = proxy.client();
    // The flow a client follows: challenge, token for the challenge's scope, retry. The
    // scope's name is the repository path; nothing is stripped from it.
    for repo in [
        "my.org/app",
        "localhost/app",
        "registry.example.com/team/app",
    ] {
        let r = c
            .get(proxy.url(&format!("/v2/{repo}/tags/list")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
        let p = params(r.headers()["www-authenticate"].to_str().unwrap());
        assert_eq!(p["scope"], format!("repository:{repo}:pull"));
        let r = c
            .get(&p["realm"])
            .query(&[("service", SERVICE), ("scope", p["scope"].as_str())])
            .basic_auth("admin", Some("badmin"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let token = r.json::<serde_json::Value>().unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let claims = service_like(&proxy, ISSUER, SERVICE, Duration::from_secs(300))
            .verify(&token)
            .unwrap();
        assert_eq!(claims.access, access(repo, &["pull"]), "{repo}");
        let r = c
            .get(proxy.url(&format!("/v2/{repo}/tags/list")))
            .bearer_auth(&token)
            .send()
            .unwrap();
        // The registry's own answer for a repository with no tags, not insufficient_scope.
        assert_eq!(r.status(), 404, "{repo}: {:?}", r.headers());
    }
    // A `host:port/` prefix is no repository path: refused, not stripped into another name.
    let r = c
        .get(proxy.url("/auth"))
        .query(&[
            ("service", SERVICE),
            ("scope", "repository:localhost:5000/app:pull"),
        ])
        .basic_auth("admin", Some("badmin"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // And a real client: skopeo pushes and pulls `<proxy>/my.org/app` through the token flow.
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    let layer = pseudo_random(256 * 1024, 7);
    let digest = write_oci_image(&img, "v1", &layer);
    let host = proxy.host();
    let (ok, err) = copy(
        &proxy,
        &format!("oci:{}:v1", img.display()),
        &format!("docker://{host}/my.org/app:v1"),
        Some("admin:badmin"),
    );
    assert!(ok, "push to my.org/app: {err}\n{}", proxy.proc.output());
    let out = tempfile::tempdir().unwrap();
    let (ok, err) = copy(
        &proxy,
        &format!("docker://{host}/my.org/app:v1"),
        &format!("oci:{}:v1", out.path().display()),
        Some("admin:badmin"),
    );
    assert!(ok, "pull from my.org/app: {err}");
    let pulled = std::fs::read(
        out.path()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(pulled, layer);
    // It landed in the registry under that very name.
    let r = reqwest::blocking::get(format!("{}/v2/my.org/app/tags/list", registry.url())).unwrap();
    assert_eq!(r.status(), 200);
}

/// Rewrites the users file in place through `edit` (on the parsed YAML), keeping every other
/// account's stored hash byte for byte.
fn edit_users(proxy: &Proxy, edit: impl FnOnce(&mut serde_yaml_ng::Mapping)) {
    let path = proxy.dir.path().join("users.yaml");
    let mut users: serde_yaml_ng::Mapping =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut users);
    std::fs::write(&path, serde_yaml_ng::to_string(&users).unwrap()).unwrap();
}

/// Sets `account`'s stored hash.
fn set_hash(users: &mut serde_yaml_ng::Mapping, account: &str, hash: String) {
    let entry = users.get_mut(account).unwrap().as_mapping_mut().unwrap();
    entry.insert("password".into(), hash.into());
}

#[test]
fn refresh_tokens_end_when_their_accounts_credential_changes() {
    let registry = Registry::start();
    let proxy = start(&registry.url(), false);
    let c = proxy.client();
    // bob's refresh token from the OAuth2 password grant, test's from `docker login`'s GET.
    let r = c
        .post(proxy.url("/auth"))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bobpw"),
            ("service", SERVICE),
            ("access_type", "offline"),
        ])
        .send()
        .unwrap();
    let bob = r.json::<serde_json::Value>().unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .get(proxy.url("/auth"))
        .query(&[("service", SERVICE), ("offline_token", "true")])
        .basic_auth("test", Some("123"))
        .send()
        .unwrap();
    let test = r.json::<serde_json::Value>().unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let refresh = |token: &str| {
        let r = c
            .post(proxy.url("/auth"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("service", SERVICE),
                ("scope", "repository:bob/app:pull"),
            ])
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().unwrap();
        if status != 200 {
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
        status
    };
    assert_eq!(refresh(&bob), 200);
    assert_eq!(refresh(&test), 200);
    // Whether the anonymous account exists: a reload signal that costs no failed login.
    let anonymous = || {
        c.get(proxy.url("/auth"))
            .query(&[("service", SERVICE)])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(anonymous(), 200);

    // Another account's password changes: bob's and test's tokens live on.
    edit_users(&proxy, |u| {
        set_hash(u, "admin", hash("new-admin-pw"));
        u.remove("");
    });
    wait_until("the edit to load", Duration::from_secs(20), || {
        anonymous() == 401
    });
    assert_eq!(refresh(&bob), 200);
    assert_eq!(refresh(&test), 200);

    // bob's password changes: his refresh token ends at once; test's lives on.
    edit_users(&proxy, |u| {
        set_hash(u, "bob", hash("new-bobpw"));
        u.insert("".into(), serde_yaml_ng::Mapping::new().into());
    });
    wait_until("the edit to load", Duration::from_secs(20), || {
        anonymous() == 200
    });
    assert_eq!(refresh(&bob), 401);
    assert_eq!(refresh(&test), 200);
    // Logging in with the new password gives a refresh token that works.
    let r = c
        .post(proxy.url("/auth"))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "new-bobpw"),
            ("access_type", "offline"),
        ])
        .send()
        .unwrap();
    let bob = r.json::<serde_json::Value>().unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(refresh(&bob), 200);

    // test is removed: its refresh token ends; bob's new one lives on.
    edit_users(&proxy, |u| {
        u.remove("test");
        u.remove("");
    });
    wait_until("the edit to load", Duration::from_secs(20), || {
        anonymous() == 401
    });
    assert_eq!(refresh(&test), 401);
    assert_eq!(refresh(&bob), 200);
}
