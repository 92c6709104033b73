//! The client address behind a trusted proxy (`trusted_proxies`): `X-Forwarded-For` is walked
//! from the right, so entries the client wrote itself never decide who it is — not for `ip:`
//! rules, not for the lockout, not in the audit line.

mod common;

use std::net::SocketAddr;

use common::*;

const ACL: &str = r#"
- match: {ip: 127.0.0.0/8, name: "internal/*"}
  actions: [pull]
  comment: only from inside
- match: {account: "/.+/", name: "${account}/*"}
  actions: ["*"]
"#;

fn start(registry: &Registry) -> Proxy {
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        ("acl.yaml", ACL.to_string()),
    ];
    Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\ntrusted_proxies: [127.0.0.1/32]\nauth:\n  users: users.yaml\n  lockout:\n    failures: 3\n    window: 5m\nacl: acl.yaml\n",
            files: &files,
            tls: false,
        },
        &registry.url(),
    )
}

/// Sends `GET target` as bob (or with `auth`) from 127.0.0.1 — the trusted proxy — with these
/// `X-Forwarded-For` headers; returns the status.
fn get(proxy: &Proxy, target: &str, auth: &str, xff: &[&str]) -> u16 {
    let addr: SocketAddr = proxy.host().parse().unwrap();
    let host = proxy.host();
    let headers: String = xff
        .iter()
        .map(|v| format!("X-Forwarded-For: {v}\r\n"))
        .collect();
    let resp = raw_request(
        addr,
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n{headers}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    resp.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"))
}

const BOB: &str = "Ym9iOmJvYnB3"; // bob:bobpw

fn basic(account: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{account}:{password}"))
}

#[test]
fn client_written_entries_do_not_open_ip_rules() {
    let registry = Registry::start();
    registry.push_manifest("internal/app", "v1", &[], serde_json::json!({}));
    let proxy = start(&registry);
    let tags = "/v2/internal/app/tags/list";
    // From the trusted proxy itself, with nothing forwarded: an inside client.
    assert_eq!(get(&proxy, tags, BOB, &[]), 200);
    // Forwarded from inside the loopback range (not a trusted proxy): still inside.
    assert_eq!(get(&proxy, tags, BOB, &["127.0.0.5"]), 200);
    // An outside client, however it dresses up the header it sent the load balancer.
    for xff in [
        vec!["203.0.113.9"],
        vec!["garbage, 203.0.113.9"],
        vec!["127.0.0.1, 203.0.113.9"],
        vec!["garbage", "203.0.113.9"],
        vec!["[::1]:5, ,203.0.113.9"],
    ] {
        assert_eq!(get(&proxy, tags, BOB, &xff), 403, "{xff:?}");
    }
    // The trusted proxy itself wrote something unreadable: the client is unknown, and an
    // unknown client matches no `ip:` rule.
    assert_eq!(get(&proxy, tags, BOB, &["203.0.113.9, garbage"]), 403);
    // The audit line names the real client, and says when it is unknown. (It is written
    // after the answer is sent, so wait for it.)
    wait_until("the audit line", std::time::Duration::from_secs(5), || {
        proxy
            .proc
            .output()
            .contains("\"client\":\"unknown via 127.0.0.1\"")
    });
    let log = proxy.proc.output();
    assert!(log.contains("\"client\":\"203.0.113.9\""), "{log}");
    assert_eq!(
        log.matches("the client address is unknown").count(),
        1,
        "the warning is logged once per change, not per request:\n{log}"
    );
}

#[test]
fn client_written_entries_do_not_lock_out_the_proxy() {
    let registry = Registry::start();
    let proxy = start(&registry);
    let own = "/v2/bob/app/tags/list";
    // Wrong passwords (for several accounts, so no account reaches its own limit; the address
    // limit is 2 × `failures`) from an outside client that sent `X-Forwarded-For: garbage` to
    // the load balancer.
    for i in 0..6 {
        let status = get(
            &proxy,
            own,
            &basic(&format!("guess{i}"), "wrong"),
            &["garbage, 203.0.113.9"],
        );
        assert!(matches!(status, 401 | 429), "{status}");
    }
    // That client is locked out...
    assert_eq!(get(&proxy, own, BOB, &["garbage, 203.0.113.9"]), 429);
    // ...and nobody else behind the load balancer is.
    assert_eq!(get(&proxy, own, BOB, &["203.0.113.10"]), 404);
    assert_eq!(
        get(&proxy, own, BOB, &[]),
        404,
        "the proxy's own address was locked"
    );
}

#[test]
fn failures_from_an_unknown_client_count_against_the_proxy() {
    let registry = Registry::start();
    let proxy = start(&registry);
    let own = "/v2/bob/app/tags/list";
    // The address limit: 2 × `failures`.
    for i in 0..6 {
        get(
            &proxy,
            own,
            &basic(&format!("guess{i}"), "wrong"),
            &["203.0.113.9, not-an-address"],
        );
    }
    // Failures must count against someone: with the client unknown, that is the peer.
    assert_eq!(get(&proxy, own, BOB, &[]), 429);
}
