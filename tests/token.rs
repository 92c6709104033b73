//! The token service against the real registry: Debian's `docker-registry` (distribution
//! 2.8) in token mode must accept the tokens `TokenService` issues — EC and RSA keys, found by
//! `x5c` and by `kid` — and refuse the ones that do not grant the request. Then skopeo pushes
//! and pulls with tokens fetched from a tiny HTTP server around `token::handle`. And the
//! token endpoint of a real portcullis: Basic credentials that contradict a POST body, and
//! request targets over `limits.max_uri_length`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, skopeo, wait_until, write_oci_image, Proc};
use portcullis::acl::Acl;
use portcullis::authn::{credentials, users::StaticUsers, Authenticators};
use portcullis::token::{self, EndpointRequest, ResourceActions, TokenService};

const SERVICE: &str = "registry.test";
const ISSUER: &str = "portcullis-test";

/// `docker-registry` in token mode, trusting the certificates in `bundle`.
struct TokenRegistry {
    _dir: tempfile::TempDir,
    port: u16,
    proc: Proc,
}

impl TokenRegistry {
    fn start(bundle: &Path, realm: &str) -> TokenRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n",
            data = dir.path().join("data").display(),
            bundle = bundle.display(),
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("docker-registry is installed");
        let proc = Proc { child, log };
        let url = format!("http://127.0.0.1:{port}/v2/");
        wait_until("token-mode registry", Duration::from_secs(20), || {
            reqwest::blocking::get(&url)
                .map(|r| r.status() == 401)
                .unwrap_or(false)
        });
        TokenRegistry {
            _dir: dir,
            port,
            proc,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// An RSA 2048 key (PKCS#8) and a self-signed certificate for it, made by openssl.
fn rsa_keypair(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("rsa.key");
    let cert = dir.join("rsa.crt");
    let ok = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genrsa");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-new",
            "-subj",
            "/CN=portcullis rsa signer",
            "-days",
            "2",
        ])
        .arg("-key")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req");
    (key, cert)
}

fn token_config(key: &Path, certificate: Option<&Path>) -> portcullis::config::Token {
    portcullis::config::Token {
        path: "/auth".into(),
        realm: None,
        issuer: ISSUER.into(),
        service: SERVICE.into(),
        key: key.to_path_buf(),
        certificate: certificate.map(Path::to_path_buf),
        expiration: Duration::from_secs(300),
        refresh_expiration: Duration::from_secs(3600),
        previous_keys: vec![],
    }
}

fn access(name: &str, actions: &[&str]) -> Vec<ResourceActions> {
    vec![ResourceActions {
        kind: "repository".into(),
        name: name.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }]
}

/// Status of an upload start on `team/app` with `token` (or none).
fn upload_start(registry: &TokenRegistry, token: Option<&str>) -> u16 {
    let client = reqwest::blocking::Client::new();
    let mut req = client.post(registry.url("/v2/team/app/blobs/uploads/"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().unwrap().status().as_u16()
}

#[test]
fn registry_accepts_issued_tokens_for_ec_and_rsa_by_x5c_and_by_kid() {
    let dir = tempfile::tempdir().unwrap();
    let ec_dir = dir.path().join("ec");
    std::fs::create_dir(&ec_dir).unwrap();
    let (ec_key, ec_cert) = token::generate_dev_keypair(&ec_dir).unwrap();
    let (rsa_key, rsa_cert) = rsa_keypair(dir.path());
    // A key the registry does not trust, with its own certificate.
    let rogue_dir = dir.path().join("rogue");
    std::fs::create_dir(&rogue_dir).unwrap();
    let (rogue_key, rogue_cert) = token::generate_dev_keypair(&rogue_dir).unwrap();

    let bundle = dir.path().join("bundle.pem");
    let mut text = std::fs::read_to_string(&ec_cert).unwrap();
    text.push_str(&std::fs::read_to_string(&rsa_cert).unwrap());
    std::fs::write(&bundle, text).unwrap();
    let registry = TokenRegistry::start(&bundle, "http://127.0.0.1:1/auth");

    // The registry's own challenge names our service.
    let resp = reqwest::blocking::get(registry.url("/v2/")).unwrap();
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains(&format!("service=\"{SERVICE}\"")),
        "{challenge}"
    );

    for (what, key, cert) in [
        ("EC, x5c", &ec_key, Some(&ec_cert)),
        ("EC, kid", &ec_key, None),
        ("RSA, x5c", &rsa_key, Some(&rsa_cert)),
        ("RSA, kid", &rsa_key, None),
    ] {
        let service = TokenService::load(&token_config(key, cert.map(|c| c.as_path())))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let push = service
            .issue("alice", access("team/app", &["pull", "push"]))
            .unwrap();
        assert_eq!(
            upload_start(&registry, Some(&push)),
            202,
            "{what}: push token refused\n{}",
            registry.proc.output()
        );
        let other = service
            .issue("alice", access("other/app", &["pull", "push"]))
            .unwrap();
        assert_eq!(
            upload_start(&registry, Some(&other)),
            401,
            "{what}: other repo"
        );
        let pull = service
            .issue("alice", access("team/app", &["pull"]))
            .unwrap();
        assert_eq!(
            upload_start(&registry, Some(&pull)),
            401,
            "{what}: pull only"
        );
        let empty = service.issue("alice", vec![]).unwrap();
        assert_eq!(
            upload_start(&registry, Some(&empty)),
            401,
            "{what}: no access"
        );
        // A `docker login` token (no access) opens /v2/ itself.
        let status = reqwest::blocking::Client::new()
            .get(registry.url("/v2/"))
            .bearer_auth(&empty)
            .send()
            .unwrap()
            .status();
        assert_eq!(status, 200, "{what}: /v2/ with a valid token");
        // Our own verifier agrees with the registry.
        assert!(service
            .verify(&push)
            .unwrap()
            .allows("repository", "team/app", "push"));
    }
    assert_eq!(upload_start(&registry, None), 401);

    // Tokens from an untrusted key are refused by x5c and by kid.
    for cert in [Some(rogue_cert.as_path()), None] {
        let rogue = TokenService::load(&token_config(&rogue_key, cert)).unwrap();
        let t = rogue
            .issue("alice", access("team/app", &["pull", "push"]))
            .unwrap();
        assert_eq!(
            upload_start(&registry, Some(&t)),
            401,
            "rogue key, cert {cert:?}"
        );
    }
    // A token for another service (audience) is refused.
    let mut cfg = token_config(&ec_key, Some(&ec_cert));
    cfg.service = "elsewhere".into();
    let t = TokenService::load(&cfg)
        .unwrap()
        .issue("alice", access("team/app", &["pull", "push"]))
        .unwrap();
    assert_eq!(upload_start(&registry, Some(&t)), 401, "wrong audience");
}

/// A minimal HTTP/1.1 server (one request per connection) around `token::handle`.
struct TokenServer {
    port: u16,
}

struct Shared {
    service: TokenService,
    authn: Authenticators,
    acl: Acl,
}

impl TokenServer {
    fn start(shared: Arc<Shared>) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &shared);
                });
            }
        });
        TokenServer { port }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/auth", self.port)
    }
}

fn serve_one(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (mut authorization, mut content_type, mut length) = (None, None, 0usize);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value),
                "content-type" => content_type = Some(value),
                "content-length" => length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length.min(token::MAX_BODY + 1)];
    reader.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let resp = if path != "/auth" {
        None
    } else {
        let creds = credentials::parse(authorization.as_deref().map(str::as_bytes))
            .unwrap_or(credentials::Credentials::Bearer("invalid".into()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Some(rt.block_on(token::handle(
            &shared.service,
            &shared.authn,
            &shared.acl,
            "Test Realm",
            EndpointRequest {
                method: &method,
                query,
                content_type: content_type.as_deref(),
                body: &body,
                credentials: creds,
                client_ip: Some("127.0.0.1".parse().unwrap()),
                lockout_key: Some("127.0.0.1".parse().unwrap()),
                lockout: None,
                revocations: None,
            },
        )))
    };
    let mut out = stream;
    match resp {
        None => out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(r) => {
            let mut head = format!(
                "HTTP/1.1 {} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                r.status,
                r.body.len()
            );
            for (name, value) in &r.headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            out.write_all(head.as_bytes())?;
            out.write_all(&r.body)
        }
    }
}

#[test]
fn skopeo_push_and_pull_with_tokens_from_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = token::generate_dev_keypair(dir.path()).unwrap();
    let hash = |p: &str| bcrypt::hash(p, 4).unwrap();
    let users = format!(
        "alice:\n  password: \"{}\"\nbob:\n  password: \"{}\"\n\"\": {{}}\n",
        hash("alice-pw"),
        hash("bob-pw")
    );
    let users = StaticUsers::parse(&users, Path::new("users.yaml")).unwrap();
    let authn = Authenticators::new(vec![Arc::new(users)], true);
    let acl = Acl::parse(
        r#"
- match: {account: alice, name: "team/*"}
  actions: [pull, push]
- match: {account: "/.+/", name: "team/*"}
  actions: [pull]
- match: {account: "", name: "team/public"}
  actions: [pull]
"#,
        Path::new("acl.yaml"),
    )
    .unwrap()
    .acl;
    let service = TokenService::load(&token_config(&key, Some(&cert))).unwrap();
    let server = TokenServer::start(Arc::new(Shared {
        service,
        authn,
        acl,
    }));
    let registry = TokenRegistry::start(&cert, &server.realm());

    let image = dir.path().join("image");
    write_oci_image(&image, "v1", &common::pseudo_random(300_000, 7));
    let src = format!("oci:{}:v1", image.display());
    let host = format!("127.0.0.1:{}", registry.port);
    let push = |dst: &str, creds: Option<&str>| {
        let mut args = vec![
            "copy",
            "--retry-times",
            "0",
            "--dest-tls-verify=false",
            src.as_str(),
            dst,
        ];
        let joined;
        if let Some(c) = creds {
            joined = c.to_string();
            args.splice(3..3, ["--dest-creds", joined.as_str()]);
        } else {
            args.insert(3, "--dest-no-creds");
        }
        skopeo(&args)
    };
    let (ok, err) = push(
        &format!("docker://{host}/team/app:v1"),
        Some("alice:alice-pw"),
    );
    assert!(ok, "alice pushes: {err}\n{}", registry.proc.output());
    let (ok, _) = push(
        &format!("docker://{host}/team/public:v1"),
        Some("alice:alice-pw"),
    );
    assert!(ok, "alice pushes public");
    let (ok, e) = push(&format!("docker://{host}/team/app:v2"), Some("bob:bob-pw"));
    assert!(!ok && denied(&e), "bob may not push: {e}");
    let (ok, e) = push(&format!("docker://{host}/team/app:v3"), Some("alice:wrong"));
    assert!(!ok && denied(&e), "a wrong password pushes nothing: {e}");

    let pull = |reference: &str, creds: Option<&str>| {
        let out = dir.path().join(format!("pulled-{}", rand_suffix()));
        let dst = format!("oci:{}:x", out.display());
        let mut args = vec!["copy", "--retry-times", "0", "--src-tls-verify=false"];
        let joined;
        match creds {
            Some(c) => {
                joined = c.to_string();
                args.extend(["--src-creds", joined.as_str()]);
            }
            None => args.push("--src-no-creds"),
        }
        args.extend([reference, dst.as_str()]);
        skopeo(&args)
    };
    let (ok, err) = pull(&format!("docker://{host}/team/app:v1"), Some("bob:bob-pw"));
    assert!(ok, "bob pulls: {err}");
    let (ok, err) = pull(&format!("docker://{host}/team/public:v1"), None);
    assert!(ok, "anonymous pulls team/public: {err}");
    let (ok, e) = pull(&format!("docker://{host}/team/app:v1"), None);
    assert!(!ok && denied(&e), "anonymous may not pull team/app: {e}");
}

/// Whether skopeo failed for lack of authorization (not for some unrelated reason).
fn denied(stderr: &str) -> bool {
    let e = stderr.to_ascii_lowercase();
    e.contains("unauthorized") || e.contains("denied") || e.contains("401")
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A portcullis in token mode (alice, bob; each owns `<name>/*`) before the real registry.
fn proxy_in_token_mode(registry: &common::Registry, tls: bool) -> common::Proxy {
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = token::generate_dev_keypair(keys.path()).unwrap();
    let files = [
        (
            "users.yaml",
            format!(
                "alice:\n  password: \"{}\"\nbob:\n  password: \"{}\"\n",
                common::hash("alice-pw"),
                common::hash("bob-pw")
            ),
        ),
        (
            "acl.yaml",
            "- match: {account: \"/.+/\", name: \"${account}/*\"}\n  actions: [\"*\"]\n".into(),
        ),
        ("token.key", std::fs::read_to_string(key).unwrap()),
        ("token.crt", std::fs::read_to_string(cert).unwrap()),
    ];
    common::Proxy::start(
        common::ProxySetup {
            config: &format!(
                "upstream: {{upstream}}\nauth:\n  challenge: token\n  users: users.yaml\n  token:\n    issuer: {ISSUER}\n    service: {SERVICE}\n    key: token.key\n    certificate: token.crt\nacl: acl.yaml\n"
            ),
            files: &files,
            tls,
        },
        &registry.url(),
    )
}

/// POSTs a token request form, with Basic credentials when given: (status, JSON body).
fn post_form(
    proxy: &common::Proxy,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut req = proxy.client().post(proxy.url("/auth")).form(form);
    if let Some((user, password)) = basic {
        req = req.basic_auth(user, Some(password));
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

#[test]
fn post_basic_credentials_that_contradict_the_body_are_refused() {
    let registry = common::Registry::start();
    let proxy = proxy_in_token_mode(&registry, false);
    let password_grant = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-pw"),
        ("service", SERVICE),
        ("access_type", "offline"),
        ("scope", "repository:alice/app:pull"),
    ];
    // Another account in the header than in the form: 400, no token for either.
    let (status, body) = post_form(&proxy, Some(("bob", "bob-pw")), &password_grant);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert!(body.get("access_token").is_none());
    // The same account with another password in the header: 400 as well.
    let (status, body) = post_form(&proxy, Some(("alice", "wrong")), &password_grant);
    assert_eq!(status, 400, "{body}");
    assert!(body.get("access_token").is_none());
    // Both saying the same thing: fine.
    let (status, body) = post_form(&proxy, Some(("alice", "alice-pw")), &password_grant);
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let refresh_grant = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", SERVICE),
        ("scope", "repository:alice/app:pull"),
    ];
    // A refresh token with a wrong Basic password: a failed login, 401.
    let (status, body) = post_form(&proxy, Some(("alice", "wrong")), &refresh_grant);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert!(body.get("access_token").is_none());
    // With Basic credentials of another account: 400.
    let (status, body) = post_form(&proxy, Some(("bob", "bob-pw")), &refresh_grant);
    assert_eq!(status, 400, "{body}");
    assert!(body.get("access_token").is_none());
    // With the right ones, or none: the refresh works.
    let (status, _) = post_form(&proxy, Some(("alice", "alice-pw")), &refresh_grant);
    assert_eq!(status, 200);
    let (status, _) = post_form(&proxy, None, &refresh_grant);
    assert_eq!(status, 200);
}

/// `curl` GET of `url` (HTTP/1.1, or HTTP/2 over TLS when `h2`) as alice: (HTTP version and
/// status as curl prints them, the body). curl, because reqwest cannot even build a URI past
/// 64 KiB. The URL is never printed.
fn curl_get(proxy: &common::Proxy, url: &str, h2: bool) -> (String, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-u",
        "alice:alice-pw",
        "-w",
        "%{http_version} %{http_code}",
        "-o",
    ])
    .arg(out.path())
    .arg(if h2 { "--http2" } else { "--http1.1" });
    if proxy.tls {
        cmd.arg("--cacert").arg(proxy.dir.path().join("ca.pem"));
    }
    let done = cmd.arg(url).output().unwrap();
    (
        String::from_utf8_lossy(&done.stdout).into_owned(),
        std::fs::read_to_string(out.path()).unwrap(),
    )
}

#[test]
fn over_long_request_targets_get_414_with_a_body_at_the_token_endpoint_too() {
    let registry = common::Registry::start();
    for tls in [false, true] {
        let proxy = proxy_in_token_mode(&registry, tls);
        // 9 KB is over the default limit (8 KiB); 60 KB and 70 KB are near and past the
        // largest target the HTTP parser takes (64 KiB), which used to end in an empty 400.
        for len in [9_000, 60_000, 70_000] {
            let scope = "repository:alice/app:pull&scope=".repeat(len / 32);
            for path in ["/auth", "/v2/alice/app/tags/list"] {
                let url = proxy.url(&format!("{path}?service={SERVICE}&scope={scope}x"));
                assert!(url.len() > len);
                let (status, body) = curl_get(&proxy, &url, false);
                assert_eq!(status, "1.1 414", "{path} {len} tls={tls}");
                let body: serde_json::Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{path} {len} tls={tls}: {e}"));
                assert_eq!(body["errors"][0]["code"], "UNSUPPORTED", "{path} {len}");
                // HTTP/2 up to 64 KiB too (past it, the h2 layer resets the stream before
                // any answer can be made: see docs/configuration.md).
                if tls && len < 65_000 {
                    let (status, _) = curl_get(&proxy, &url, true);
                    assert_eq!(status, "2 414", "{path} {len} over HTTP/2");
                }
            }
        }
        // Nothing stuck: a normal token request still works.
        let (status, _) = curl_get(
            &proxy,
            &proxy.url(&format!(
                "/auth?service={SERVICE}&scope=repository:alice/app:pull"
            )),
            false,
        );
        assert_eq!(status, "1.1 200");
    }
}
