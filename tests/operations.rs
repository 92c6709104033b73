//! Operations: metrics after known traffic, readiness following the registry, JSON audit
//! lines, login lockout, registry failures, and no secret ever in the logs.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

const PASSWORDS: [&str; 3] = ["badmin-S3cret", "bobpw-S3cret", "wrong-S3cret"];

fn setup(registry_url: &str, admin_port: u16, extra: &str) -> Proxy {
    setup_with(registry_url, admin_port, extra, vec![])
}

/// [`setup`], with more files beside the configuration.
fn setup_with(
    registry_url: &str,
    admin_port: u16,
    extra: &str,
    more_files: Vec<(&'static str, String)>,
) -> Proxy {
    let mut files = vec![
        (
            "users.yaml",
            format!(
                "admin:\n  password: \"{}\"\nbob:\n  password: \"{}\"\n",
                hash(PASSWORDS[0]),
                hash(PASSWORDS[1])
            ),
        ),
        (
            "acl.yaml",
            "- match: {account: admin}\n  actions: [\"*\"]\n  comment: admins\n- match: {account: bob, name: \"bob/*\"}\n  actions: [pull, push]\n  comment: bob's own\n".to_string(),
        ),
    ];
    files.extend(more_files);
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nupstream_timeouts: {{connect: 1s, read: 5s}}\nauth:\n  users: users.yaml\n{extra}acl: acl.yaml\n"
    );
    Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        registry_url,
    )
}

/// `name{labels}` → value from the Prometheus text format.
fn scrape(admin_port: u16) -> HashMap<String, f64> {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no series {key}"))
}

#[test]
fn metrics_audit_lines_and_no_secrets() {
    let registry = Registry::start();
    let admin_port = free_port();
    let proxy = setup(&registry.url(), admin_port, "");
    let c = proxy.client();
    let get = |path: &str, creds: Option<(&str, &str)>| {
        let mut r = c.get(proxy.url(path));
        if let Some((u, p)) = creds {
            r = r.basic_auth(u, Some(p));
        }
        r.send().unwrap().status().as_u16()
    };
    // Known traffic.
    for _ in 0..3 {
        assert_eq!(
            get("/v2/bob/app/tags/list", Some(("bob", PASSWORDS[1]))),
            404
        );
    }
    for _ in 0..2 {
        assert_eq!(
            get("/v2/other/app/tags/list", Some(("bob", PASSWORDS[1]))),
            403
        );
    }
    assert_eq!(
        get("/v2/bob/app/tags/list", Some(("bob", PASSWORDS[2]))),
        401
    );
    assert_eq!(
        get("/v2/bob/app/tags/list", Some(("nobody", PASSWORDS[2]))),
        401
    );
    assert_eq!(get("/v2/Bob/app/tags/list", None), 400);
    assert_eq!(get("/v2/", Some(("admin", PASSWORDS[0]))), 200);

    let m = scrape(admin_port);
    assert_eq!(
        metric(
            &m,
            "portcullis_requests_total{action=\"pull\",decision=\"allowed\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            "portcullis_requests_total{action=\"pull\",decision=\"denied\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "portcullis_requests_total{action=\"pull\",decision=\"unauthenticated\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "portcullis_requests_total{action=\"none\",decision=\"invalid\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "portcullis_auth_failures_total{reason=\"bad_password\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "portcullis_auth_failures_total{reason=\"unknown_account\"}"
        ),
        1.0
    );
    assert_eq!(metric(&m, "portcullis_acl_rules"), 2.0);
    assert_eq!(
        metric(&m, "portcullis_config_reloads_total{result=\"failure\"}"),
        0.0
    );
    assert!(
        metric(
            &m,
            "portcullis_request_duration_seconds_count{action=\"pull\"}"
        ) >= 7.0
    );
    assert!(m
        .keys()
        .any(|k| k.starts_with("process_resident_memory_bytes")));

    // Health and readiness.
    let health = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/healthz")).unwrap();
    assert_eq!(health.status(), 200);
    wait_until("ready", Duration::from_secs(5), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    });
    // Metrics are never served on the client port.
    assert_eq!(get("/metrics", None), 404);

    // One JSON audit line per request, with the fields operators rely on. (Each is written
    // after its answer is sent, so wait for the last one.)
    wait_until("the audit lines", Duration::from_secs(5), || {
        proxy.proc.output().contains("\"path\":\"/metrics\"")
    });
    let log = proxy.proc.output();
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect();
    assert!(audit.len() >= 9, "{} audit lines", audit.len());
    let denied = audit
        .iter()
        .find(|v| v["decision"] == "denied")
        .expect("a denied line");
    for field in [
        "timestamp",
        "client",
        "account",
        "method",
        "path",
        "repository",
        "action",
        "decision",
        "rule",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
    ] {
        assert!(denied.get(field).is_some(), "missing {field} in {denied}");
    }
    assert_eq!(denied["account"], "bob");
    assert_eq!(denied["repository"], "other/app");
    assert_eq!(denied["action"], "pull");
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["client"], "127.0.0.1");
    let allowed = audit
        .iter()
        .find(|v| v["decision"] == "allowed" && v["account"] == "bob")
        .unwrap();
    assert!(
        allowed["rule"]
            .as_str()
            .unwrap()
            .contains("acl.yaml:4 (bob's own)"),
        "{allowed}"
    );

    // No password, and no Authorization header value, anywhere in the logs.
    for secret in PASSWORDS {
        assert!(!log.contains(secret), "password {secret} logged");
    }
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bob:{}", PASSWORDS[1]));
    assert!(!log.contains(&basic), "Authorization header logged");
}

/// The JSON audit lines in `log`.
fn audit_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect()
}

/// The first audit line matching `found`, waiting for it: a request's line is written after
/// its answer has been sent.
fn wait_for_audit(proxy: &Proxy, found: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut line = None;
    wait_until("the audit line", Duration::from_secs(5), || {
        line = audit_lines(&proxy.proc.output())
            .into_iter()
            .find(|v| found(v));
        line.is_some()
    });
    line.unwrap()
}

#[test]
fn token_mode_is_audited_and_counted_for_what_it_is() {
    let registry = Registry::start();
    let admin_port = free_port();
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = portcullis::token::generate_dev_keypair(keys.path()).unwrap();
    let proxy = setup_with(
        &registry.url(),
        admin_port,
        "  challenge: token\n  token:\n    issuer: ops-issuer\n    service: ops-service\n    key: token.key\n    certificate: token.crt\n",
        vec![
            ("token.key", std::fs::read_to_string(key).unwrap()),
            ("token.crt", std::fs::read_to_string(cert).unwrap()),
        ],
    );
    let c = proxy.client();
    // A token for bob/app (pull) that asks for other/x too, which the ACL does not grant.
    let r = c
        .get(proxy.url(
            "/auth?service=ops-service&scope=repository:bob/app:pull&scope=repository:other/x:push",
        ))
        .basic_auth("bob", Some(PASSWORDS[1]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let get = |path: &str| {
        c.get(proxy.url(path))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let before = scrape(admin_port);
    let count = |m: &HashMap<String, f64>, decision: &str| {
        metric(
            m,
            &format!("portcullis_requests_total{{action=\"pull\",decision=\"{decision}\"}}"),
        )
    };
    // The token's own repository: forwarded (the registry has no such repository).
    assert_eq!(get("/v2/bob/app/tags/list"), 404);
    // Another of bob's repositories: the ACL allows it, the token lacks it.
    assert_eq!(get("/v2/bob/other/tags/list"), 401);
    assert_eq!(get("/v2/bob/other/tags/list"), 401);
    // A repository the ACL refuses bob, whatever the token says.
    assert_eq!(get("/v2/other/x/tags/list"), 403);
    let after = scrape(admin_port);
    for (decision, n) in [
        ("allowed", 1.0),
        ("insufficient_scope", 2.0),
        ("denied", 1.0),
    ] {
        assert_eq!(
            count(&after, decision) - count(&before, decision),
            n,
            "{decision}"
        );
    }

    let line = |path: &str| wait_for_audit(&proxy, |v| v["path"] == path);
    let insufficient = line("/v2/bob/other/tags/list");
    assert_eq!(
        insufficient["decision"], "insufficient_scope",
        "{insufficient}"
    );
    assert_eq!(insufficient["status"], 401);
    assert_eq!(insufficient["account"], "bob");
    assert_eq!(insufficient["repository"], "bob/other");
    assert_eq!(insufficient["action"], "pull");
    assert_eq!(line("/v2/other/x/tags/list")["decision"], "denied");

    // The token request: what was asked, what was granted, and with which key, but never
    // the token itself.
    let issued = line("/auth");
    assert_eq!(issued["decision"], "allowed", "{issued}");
    assert_eq!(issued["account"], "bob");
    assert_eq!(issued["action"], "token");
    assert_eq!(
        issued["scopes_requested"],
        "repository:bob/app:pull repository:other/x:push"
    );
    assert_eq!(issued["scopes_granted"], "repository:bob/app:pull");
    use base64::Engine;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(issued["key_id"], header["kid"], "{issued}");
    assert!(!issued["key_id"].as_str().unwrap().is_empty());
    let log = proxy.proc.output();
    assert!(!log.contains(&token), "token logged");
    assert!(!log.contains(PASSWORDS[1]), "password logged");
    // Lines of other requests carry the fields empty.
    assert_eq!(insufficient["scopes_requested"], "");
    assert_eq!(insufficient["key_id"], "");

    // A failed token request still says what it asked for.
    let r = c
        .get(proxy.url("/auth?service=ops-service&scope=repository:bob/app:push"))
        .basic_auth("bob", Some(PASSWORDS[2]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let failed = wait_for_audit(&proxy, |v| {
        v["path"] == "/auth" && v["decision"] == "unauthenticated"
    });
    assert_eq!(failed["scopes_requested"], "repository:bob/app:push");
    assert_eq!(failed["scopes_granted"], "");
    assert_eq!(failed["key_id"], "");
}

#[test]
fn audit_durations_have_microsecond_precision() {
    let registry = Registry::start();
    let proxy = setup(&registry.url(), free_port(), "");
    let c = proxy.client();
    for _ in 0..20 {
        c.get(proxy.url("/v2/bob/app/tags/list"))
            .basic_auth("bob", Some(PASSWORDS[1]))
            .send()
            .unwrap();
    }
    wait_until("20 audit lines", Duration::from_secs(5), || {
        let lines = audit_lines(&proxy.proc.output());
        lines.iter().filter(|v| v["account"] == "bob").count() == 20
    });
    // The raw text, not a parsed float: `1.0541319999999998` parses fine but reads badly.
    let log = proxy.proc.output();
    let durations: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""target":"audit""#))
        .map(|l| {
            let rest = &l[l.find(r#""duration_ms":"#).expect("a duration") + 14..];
            &rest[..rest.find([',', '}']).unwrap()]
        })
        .collect();
    assert!(durations.len() >= 20, "{log}");
    for d in durations {
        let (whole, decimals) = d.split_once('.').unwrap_or((d, ""));
        assert!(
            whole.bytes().all(|b| b.is_ascii_digit()) && decimals.len() <= 3,
            "duration_ms={d}"
        );
        assert!(
            decimals.bytes().all(|b| b.is_ascii_digit()),
            "duration_ms={d}"
        );
    }
}

#[test]
fn lockout_after_the_limit_until_the_window_passes() {
    let registry = Registry::start();
    let admin_port = free_port();
    let proxy = setup(
        &registry.url(),
        admin_port,
        "  lockout: {failures: 3, window: 2s}\n",
    );
    let c = proxy.client();
    let try_login = |pw: &str| {
        c.get(proxy.url("/v2/"))
            .basic_auth("bob", Some(pw))
            .send()
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(try_login("wrong").status(), 401);
    }
    let locked_at = Instant::now();
    let r = try_login(PASSWORDS[1]);
    assert_eq!(
        r.status(),
        429,
        "a correct password does not lift an active lockout"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    // The lock is bob's from this address: admin from the same address still gets in.
    let admin = || {
        c.get(proxy.url("/v2/"))
            .basic_auth("admin", Some(PASSWORDS[0]))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(admin(), 200);
    // Spraying other names from this address reaches the address limit (2 × 3): then nobody
    // gets in from here.
    for name in ["carol", "dave", "erin"] {
        assert_eq!(
            c.get(proxy.url("/v2/"))
                .basic_auth(name, Some("guess"))
                .send()
                .unwrap()
                .status(),
            401
        );
    }
    assert_eq!(admin(), 429);
    let m = scrape(admin_port);
    assert!(metric(&m, "portcullis_lockouts_total") >= 1.0);
    assert!(metric(&m, "portcullis_auth_failures_total{reason=\"locked_out\"}") >= 2.0);
    // After the window, the right password works again.
    while locked_at.elapsed() < Duration::from_millis(2100) {
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until("the lockout to expire", Duration::from_secs(3), || {
        try_login(PASSWORDS[1]).status() == 200
    });
    // A request without credentials never counts as a failure.
    for _ in 0..5 {
        assert_eq!(c.get(proxy.url("/v2/")).send().unwrap().status(), 401);
    }
    assert_eq!(try_login(PASSWORDS[1]).status(), 200);
}

#[test]
fn registry_down_gives_5xx_with_oci_bodies_then_recovers() {
    let mut registry = Registry::start();
    let admin_port = free_port();
    let proxy = setup(&registry.url(), admin_port, "");
    let c = proxy.client();
    let pull = || {
        c.get(proxy.url("/v2/bob/app/tags/list"))
            .basic_auth("bob", Some(PASSWORDS[1]))
            .send()
            .unwrap()
    };
    assert_eq!(pull().status(), 404);
    wait_until("ready", Duration::from_secs(5), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    });

    // Kill the registry mid-load.
    let load = {
        let client = proxy.client();
        let url = proxy.url("/v2/bob/app/tags/list");
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                if let Ok(r) = client
                    .get(&url)
                    .basic_auth("bob", Some(PASSWORDS[1]))
                    .send()
                {
                    let status = r.status().as_u16();
                    let body = r.text().unwrap_or_default();
                    statuses.push((status, body));
                }
            }
            statuses
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    registry.stop();
    let statuses = load.join().unwrap();
    let failures: Vec<_> = statuses.iter().filter(|(s, _)| *s >= 500).collect();
    assert!(!failures.is_empty(), "no 5xx after the registry died");
    for (status, body) in &failures {
        assert!(matches!(status, 502..=504), "{status}");
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("not OCI JSON: {body}"));
        assert!(v["errors"][0]["code"].is_string(), "{body}");
    }
    assert!(
        statuses.iter().all(|(s, _)| *s == 404 || *s >= 502),
        "{:?}",
        statuses.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    let r = pull();
    assert_eq!(r.status(), 502);
    wait_until("not ready", Duration::from_secs(5), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .map(|r| r.status() == 503)
            .unwrap_or(false)
    });
    let m = scrape(admin_port);
    assert!(metric(&m, "portcullis_upstream_errors_total{kind=\"connect\"}") >= 1.0);
    assert_eq!(metric(&m, "portcullis_upstream_up"), 0.0);

    // The registry returns on the same port: the proxy serves again without a restart.
    let _registry = registry.restart();
    wait_until("recovery", Duration::from_secs(10), || {
        pull().status() == 404
    });
    wait_until("ready again", Duration::from_secs(5), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    });
    assert!(proxy.proc.output().contains("portcullis starting"));
}

#[test]
fn a_registry_that_stops_answering_gives_504() {
    // Accepts connections and reads requests but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let admin_port = free_port();
    let proxy = setup(&format!("http://127.0.0.1:{port}"), admin_port, "");
    let c = proxy.client();
    let started = Instant::now();
    let r = c
        .get(proxy.url("/v2/bob/app/tags/list"))
        .basic_auth("bob", Some(PASSWORDS[1]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let body: serde_json::Value = r.json().unwrap();
    assert!(body["errors"][0]["code"].is_string());
    let m = scrape(admin_port);
    assert!(metric(&m, "portcullis_upstream_errors_total{kind=\"timeout\"}") >= 1.0);
}
