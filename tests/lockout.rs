//! Failed-login limits through the real proxy, with real bcrypt, from several loopback source
//! addresses (Linux routes all of 127/8 to `lo`, so a client can bind 127.0.0.2 or 127.0.0.3):
//! a concurrent burst is held to `failures` password checks, a lock is per (account, address)
//! so the owner still gets in from elsewhere, and bcrypt's 72-byte limit is not a back door.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const ADMIN_PW: &str = "badmin-S3cret";

/// 72 bytes: all that bcrypt reads.
fn long_pw() -> String {
    "0123456789abcdef".repeat(5)[..72].to_string()
}

/// A proxy with `admin` (bcrypt cost `cost`) and `long` (a 72-byte password), and
/// `auth.lockout` as given.
fn setup(registry: &Registry, admin_port: u16, cost: u32, lockout: &str) -> Proxy {
    let files = vec![
        (
            "users.yaml",
            format!(
                "admin:\n  password: \"{}\"\nlong:\n  password: \"{}\"\n",
                bcrypt::hash(ADMIN_PW, cost).unwrap(),
                hash(&long_pw())
            ),
        ),
        (
            "acl.yaml",
            "- match: {account: \"/.+/\"}\n  actions: [pull]\n".to_string(),
        ),
    ];
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nauth:\n  users: users.yaml\n  lockout: {lockout}\nacl: acl.yaml\n"
    );
    Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    )
}

/// A client whose connections come from `source`.
fn client_from(source: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn login(c: &reqwest::blocking::Client, proxy: &Proxy, account: &str, pw: &str) -> u16 {
    c.get(proxy.url("/v2/"))
        .basic_auth(account, Some(pw))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn scrape(admin_port: u16) -> HashMap<String, f64> {
    reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .unwrap()
        .text()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn failures(m: &HashMap<String, f64>, reason: &str) -> f64 {
    m[&format!("portcullis_auth_failures_total{{reason=\"{reason}\"}}")]
}

/// 59 wrong passwords at once, then — as soon as the first of them is answered — the right
/// one from the same address: exactly `failures` passwords are checked, and the right one is
/// refused because the pair is locked by then. (Before the fix, all 59 were checked, and the
/// right one was let in.)
#[test]
fn a_concurrent_burst_gets_only_the_limit_of_checks_and_no_login() {
    let registry = Registry::start();
    let admin_port = free_port();
    // A realistic cost, so that the checks of the burst overlap.
    let proxy = setup(&registry, admin_port, 8, "{failures: 5, window: 1m}");
    let (first_answer, answered) = mpsc::channel();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let burst: Vec<_> = (0..59)
            .map(|_| {
                let (proxy, first_answer) = (&proxy, first_answer.clone());
                s.spawn(move || {
                    let status = login(&client_from("127.0.0.2"), proxy, "admin", "wrong");
                    let _ = first_answer.send(());
                    status
                })
            })
            .collect();
        answered.recv().unwrap();
        let right = login(&client_from("127.0.0.2"), &proxy, "admin", ADMIN_PW);
        assert_eq!(right, 429, "the right password during a locking burst");
        burst.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    assert_eq!((count(401), count(429)), (5, 54), "{statuses:?}");
    let m = scrape(admin_port);
    assert_eq!(failures(&m, "bad_password"), 5.0, "passwords checked");
    assert_eq!(failures(&m, "locked_out"), 55.0);
    assert_eq!(m["portcullis_lockouts_total"], 1.0);
}

/// The owner is not locked out by someone else's guesses: the lock is per (account, address).
#[test]
fn guesses_from_one_address_do_not_lock_the_owner_out_elsewhere() {
    let registry = Registry::start();
    let admin_port = free_port();
    let proxy = setup(&registry, admin_port, 4, "{failures: 5, window: 1m}");
    let attacker = client_from("127.0.0.2");
    let owner = client_from("127.0.0.3");
    for i in 0..5 {
        assert_eq!(login(&attacker, &proxy, "admin", "wrong"), 401, "guess {i}");
    }
    assert_eq!(login(&attacker, &proxy, "admin", ADMIN_PW), 429);
    let started = Instant::now();
    assert_eq!(login(&owner, &proxy, "admin", ADMIN_PW), 200);
    // The account has had 5 failures: its logins wait the first step of the delay.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // The attacker's address is not locked for other accounts yet (limit 2 × 5).
    assert_eq!(login(&attacker, &proxy, "long", &long_pw()), 200);
    let m = scrape(admin_port);
    assert_eq!(failures(&m, "bad_password"), 5.0);
    assert_eq!(failures(&m, "locked_out"), 1.0);
}

/// bcrypt reads 72 bytes: a 72-byte password logs in, the same with anything after it does not
/// (it did before: bcrypt compared only the first 72 bytes).
#[test]
fn a_password_beyond_72_bytes_does_not_log_in() {
    let registry = Registry::start();
    let proxy = setup(&registry, free_port(), 4, "{failures: 0}");
    let c = proxy.client();
    let pw = long_pw();
    assert_eq!(login(&c, &proxy, "long", &pw), 200);
    for suffix in ["x", "-anything at all", &pw] {
        assert_eq!(login(&c, &proxy, "long", &format!("{pw}{suffix}")), 401);
    }
}
