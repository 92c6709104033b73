//! Hot reload under load: the ACL is rewritten dozens of times (in place, by rename, by a
//! Kubernetes-style symlink swap, and with SIGHUP) while many keep-alive clients hammer the
//! proxy. No request may fail, every valid version must be in force within 2 s, and every
//! invalid version must change nothing.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn rules(version: usize) -> String {
    format!(
        "- match: {{account: admin}}\n  actions: [\"*\"]\n- match: {{account: bob, name: \"v{version}/*\"}}\n  actions: [pull]\n  comment: version {version}\n"
    )
}

const INVALID: &[&str] = &[
    "- match: {account: bob, ip: 10.0.0.0/33}\n  actions: [pull]\n",
    "- match: {acount: bob}\n  actions: [pull]\n",
    "- match: {account: bob}\n  actions: [fly]\n",
    "- match: {account: bob, name: \"/(/\"}\n  actions: [pull]\n",
    "- match: {account: bob\n  actions: [pull]\n",
];

/// bob's view: which version's namespace he may pull.
fn bob_may_pull(client: &reqwest::blocking::Client, proxy: &Proxy, version: usize) -> bool {
    let r = client
        .get(proxy.url(&format!("/v2/v{version}/app/tags/list")))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    // Allowed requests reach the registry, which does not know the repository (404).
    match r.status().as_u16() {
        404 => true,
        403 => false,
        other => panic!("unexpected {other}"),
    }
}

fn wait_in_force(client: &reqwest::blocking::Client, proxy: &Proxy, version: usize) -> Duration {
    let start = Instant::now();
    while !bob_may_pull(client, proxy, version) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "version {version} not in force after 2 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

fn failed_reloads(proxy: &Proxy) -> usize {
    proxy
        .proc
        .output()
        .matches("reload failed; the previous configuration stays in force")
        .count()
}

fn write_in_place(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(".10.yaml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// What kubelet does: a new timestamped folder, a new `..data_tmp` symlink to it, renamed
/// over `..data`; the visible files are symlinks through `..data`.
fn kubernetes_swap(acl_dir: &Path, generation: usize, text: &str) {
    let folder = format!("..2026_11_25_{generation:06}");
    std::fs::create_dir(acl_dir.join(&folder)).unwrap();
    std::fs::write(acl_dir.join(&folder).join("10.yaml"), text).unwrap();
    let tmp = acl_dir.join("..data_tmp");
    std::os::unix::fs::symlink(&folder, &tmp).unwrap();
    std::fs::rename(&tmp, acl_dir.join("..data")).unwrap();
}

#[test]
fn acl_changes_apply_under_load_without_a_failed_request() {
    let registry = Registry::start();
    let files = vec![
        (
            "users.yaml",
            format!(
                "admin:\n  password: \"{}\"\nbob:\n  password: \"{}\"\n",
                hash("badmin"),
                hash("bobpw")
            ),
        ),
        ("acl/10.yaml", rules(0)),
    ];
    let admin_port = free_port();
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nauth:\n  users: users.yaml\nacl: acl/\n"
    );
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let acl_dir = proxy.dir.path().join("acl");
    let acl_file = acl_dir.join("10.yaml");
    let client = proxy.client();
    wait_in_force(&client, &proxy, 0);

    // Steady load: 16 keep-alive clients.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..16 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let client = proxy.client();
        let url = proxy.url("/v2/");
        load.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match client.get(&url).basic_auth("admin", Some("badmin")).send() {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    let mut version = 0;
    let mut slowest = Duration::ZERO;
    let mut invalid_seen = 0;
    let check_invalid = |invalid_seen: &mut usize, version: usize| {
        *invalid_seen += 1;
        let start = Instant::now();
        while failed_reloads(&proxy) < *invalid_seen {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "invalid version was not rejected by a reload"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            bob_may_pull(&client, &proxy, version),
            "an invalid version changed the rules"
        );
    };

    // Phase 1: a regular file, written in place and by rename, sometimes with SIGHUP.
    for round in 0..24 {
        if round % 4 == 3 {
            let bad = INVALID[round % INVALID.len()];
            if round % 8 == 3 {
                write_in_place(&acl_file, bad)
            } else {
                write_by_rename(&acl_file, bad)
            }
            check_invalid(&mut invalid_seen, version);
            continue;
        }
        version += 1;
        if round % 2 == 0 {
            write_in_place(&acl_file, &rules(version))
        } else {
            write_by_rename(&acl_file, &rules(version))
        }
        if round % 5 == 0 {
            let pid = proxy.proc.child.id().to_string();
            assert!(std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success());
        }
        slowest = slowest.max(wait_in_force(&client, &proxy, version));
        assert!(
            !bob_may_pull(&client, &proxy, version - 1),
            "old version still in force"
        );
    }

    // Phase 2: the Kubernetes ConfigMap layout.
    std::fs::remove_file(&acl_file).unwrap();
    version += 1;
    kubernetes_swap(&acl_dir, 0, &rules(version));
    std::os::unix::fs::symlink("..data/10.yaml", &acl_file).unwrap();
    slowest = slowest.max(wait_in_force(&client, &proxy, version));
    for generation in 1..16 {
        if generation % 5 == 0 {
            kubernetes_swap(&acl_dir, generation, INVALID[generation % INVALID.len()]);
            check_invalid(&mut invalid_seen, version);
            continue;
        }
        version += 1;
        kubernetes_swap(&acl_dir, generation, &rules(version));
        slowest = slowest.max(wait_in_force(&client, &proxy, version));
    }

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{version} valid and {invalid_seen} invalid versions; {ok} requests under load; slowest change {slowest:?}");
    assert_eq!(failed, 0, "{failed} requests failed during reloads");
    // Every invalid version was counted as a failed reload, every valid one as a success.
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    };
    let failures = value("portcullis_config_reloads_total{result=\"failure\"}");
    let successes = value("portcullis_config_reloads_total{result=\"success\"}");
    assert!(
        failures >= invalid_seen as f64,
        "{failures} failed reloads counted, {invalid_seen} invalid versions"
    );
    assert!(
        successes >= version as f64,
        "{successes} successful reloads counted, {version} versions"
    );
    assert_eq!(value("portcullis_acl_rules"), 2.0);
    assert!(ok > 1000, "the load did not run ({ok} requests)");
    assert!(version >= 30 && invalid_seen >= 8);
}

#[test]
fn sighup_reloads_and_does_not_kill_the_process() {
    let registry = Registry::start();
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        ("acl.yaml", rules(1)),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let client = proxy.client();
    assert!(bob_may_pull(&client, &proxy, 1));
    let pid = proxy.proc.child.id().to_string();
    for _ in 0..3 {
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    }
    wait_until("SIGHUP reloads", Duration::from_secs(5), || {
        proxy
            .proc
            .output()
            .matches("\"trigger\":\"SIGHUP\"")
            .count()
            >= 1
    });
    assert!(bob_may_pull(&client, &proxy, 1));
    let r = client
        .get(proxy.url("/v2/"))
        .basic_auth("bob", Some("bobpw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The certificate a new TLS connection is served, as openssl prints it (PEM).
fn served_certificate(proxy: &Proxy) -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &proxy.host(),
            "-servername",
            "localhost",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").unwrap();
    text[start..end].to_string()
}

#[test]
fn a_new_tls_certificate_is_served_to_new_connections_without_a_restart() {
    let registry = Registry::start();
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        ("acl.yaml", rules(1)),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: true,
        },
        &registry.url(),
    );
    let before = served_certificate(&proxy);
    assert!(std::fs::read_to_string(proxy.dir.path().join("server.pem"))
        .unwrap()
        .contains(before.trim()));
    // A client kept open across the change keeps working.
    let client = proxy.client();
    assert_eq!(
        client
            .get(proxy.url("/v2/"))
            .basic_auth("bob", Some("bobpw"))
            .send()
            .unwrap()
            .status(),
        200
    );

    // New certificate from the same CA, written the way cert-manager does: key then cert, by rename.
    let fresh = tempfile::tempdir().unwrap();
    make_certs(fresh.path());
    for name in ["server.key", "server.pem"] {
        let tmp = proxy.dir.path().join(format!(".{name}.tmp"));
        std::fs::copy(fresh.path().join(name), &tmp).unwrap();
        std::fs::rename(&tmp, proxy.dir.path().join(name)).unwrap();
    }
    let expected = std::fs::read_to_string(proxy.dir.path().join("server.pem")).unwrap();
    wait_until("the new certificate", Duration::from_secs(3), || {
        expected.contains(served_certificate(&proxy).trim())
    });
    // make_certs made a new CA too: a client trusting only it completes a new handshake.
    let new_ca = std::fs::read(fresh.path().join("ca.pem")).unwrap();
    let new_client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&new_ca).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert_eq!(
        new_client
            .get(proxy.url("/v2/"))
            .basic_auth("bob", Some("bobpw"))
            .send()
            .unwrap()
            .status(),
        200
    );
}
