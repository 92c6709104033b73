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

// ---------------------------------------------------------------------------------------------
// No half-state: logins in flight across a reload, and files written slowly in place.

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn write_by_rename_to(path: &Path, text: &str) {
    let tmp = path.with_file_name(".users.yaml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_login_in_flight_during_a_reload_does_not_outlive_it() {
    let registry = Registry::start();
    // Cost 15: a check takes seconds, long enough to be in flight across the reload.
    let slow = bcrypt::hash("old-pw", 15).unwrap();
    let acl = "- match: {labels: {status: blocked}}\n  actions: []\n- match: {account: \"/.+/\"}\n  actions: [pull]\n";
    let files = vec![
        (
            "users.yaml",
            format!("carol:\n  password: \"{slow}\"\ndave:\n  password: \"{slow}\"\n"),
        ),
        ("acl.yaml", acl.to_string()),
    ];
    let admin_port = free_port();
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nauth:\n  users: users.yaml\n  lockout: {{failures: 0}}\nacl: acl.yaml\n"
    );
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let pid = proxy.proc.child.id();
    let status_of = |user: &str| {
        proxy
            .client()
            .get(proxy.url("/v2/shared/s/tags/list"))
            .basic_auth(user, Some("old-pw"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let before = reloads(admin_port, "success");
    let idle = cpu_ticks(pid);
    // carol (to be removed) and dave (to be labelled blocked) log in; both are allowed now.
    let in_flight: Vec<_> = ["carol", "dave"]
        .into_iter()
        .map(|user| {
            let client = proxy.client();
            let url = proxy.url("/v2/shared/s/tags/list");
            std::thread::spawn(move || {
                let status = client
                    .get(&url)
                    .basic_auth(user, Some("old-pw"))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16();
                (status, Instant::now())
            })
        })
        .collect();
    // Readiness: the proxy is burning CPU on the two bcrypt checks, so both requests have
    // been taken up under the current state.
    wait_until("the bcrypt checks to run", Duration::from_secs(10), || {
        cpu_ticks(pid) >= idle + 30
    });
    write_by_rename_to(
        &proxy.dir.path().join("users.yaml"),
        &format!("dave:\n  password: \"{slow}\"\n  labels: {{status: [blocked]}}\n"),
    );
    let reloaded_at = wait_for_reload(admin_port, "success", before, Duration::from_secs(10));
    for (user, handle) in ["carol", "dave"].iter().zip(in_flight) {
        let (status, finished_at) = handle.join().unwrap();
        // The premise of the test: the login finished under the new state.
        assert!(
            finished_at > reloaded_at,
            "{user}'s login finished before the reload; the test proves nothing"
        );
        // It may still answer as the old state did.
        assert!(
            status == 404 || status == 401 || status == 403,
            "{user}: {status}"
        );
    }
    // From now on: carol does not exist, dave is blocked by his new label.
    assert_eq!(
        status_of("carol"),
        401,
        "carol's old login outlived her removal"
    );
    assert_eq!(
        status_of("dave"),
        403,
        "dave's old labels outlived the change"
    );
    assert_eq!(status_of("carol"), 401);
    assert_eq!(status_of("dave"), 403);
}

/// Rewrites `path` in place in two chunks with `pause` between them, as a slow copy does.
fn write_in_two_chunks(path: &Path, first: &str, second: &str, pause: Duration) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(first.as_bytes()).unwrap();
    f.flush().unwrap();
    // The slow writer under test, not synchronisation.
    std::thread::sleep(pause);
    f.write_all(second.as_bytes()).unwrap();
}

#[test]
fn slowly_rewritten_files_never_take_effect_half_way() {
    let registry = Registry::start();
    let hash = hash("m-pw");
    let users = |round: usize| -> (String, String) {
        (
            format!("# version {round}\nmallory:\n  password: \"{hash}\"\n"),
            "  labels: {status: [blocked]}\n".to_string(),
        )
    };
    let deny = |round: usize| -> (String, String) {
        (
            format!("- match: {{account: nobody{round}}}\n  actions: []\n"),
            "- match: {account: mallory}\n  actions: []\n".to_string(),
        )
    };
    let (u1, u2) = users(0);
    let (d1, d2) = deny(0);
    let files = vec![
        ("users.yaml", format!("{u1}{u2}")),
        ("acl/10-deny.yaml", format!("{d1}{d2}")),
        (
            "acl/20-labels.yaml",
            "- match: {labels: {status: blocked}}\n  actions: []\n".to_string(),
        ),
        (
            "acl/30-allow.yaml",
            "- match: {account: \"/.+/\"}\n  actions: [pull]\n".to_string(),
        ),
    ];
    let admin_port = free_port();
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nauth:\n  users: users.yaml\n  lockout: {{failures: 0}}\nacl: acl/\n"
    );
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    // mallory is denied twice over: by name (10-deny.yaml) and by label (users.yaml). Each
    // phase below cuts one of the two; the other still denies.

    // A loop of requests: mallory must never be let through.
    let stop = Arc::new(AtomicBool::new(false));
    let denied = Arc::new(AtomicU64::new(0));
    let allowed = Arc::new(AtomicU64::new(0));
    let looper = {
        let (stop, denied, allowed) = (stop.clone(), denied.clone(), allowed.clone());
        let client = proxy.client();
        let url = proxy.url("/v2/shared/s/tags/list");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = client.get(&url).basic_auth("mallory", Some("m-pw")).send();
                match r.map(|r| r.status().as_u16()) {
                    // 401: the users file was read empty at the truncation (fails closed).
                    Ok(403) | Ok(401) => denied.fetch_add(1, Ordering::Relaxed),
                    _ => allowed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let deny_file = proxy.dir.path().join("acl/10-deny.yaml");
    let users_file = proxy.dir.path().join("users.yaml");
    let pause = Duration::from_millis(600);
    for round in 1..=3 {
        // The ACL file: its first half is only the `nobody` rule (the label rule still denies
        // mallory, so take it away for this phase by rewriting users.yaml atomically).
        let (u1, _) = users(round);
        let before = reloads(admin_port, "success");
        write_by_rename_to(&users_file, &u1);
        wait_for_reload(admin_port, "success", before, Duration::from_secs(10));
        let (d1, d2) = deny(round);
        let before = reloads(admin_port, "success");
        write_in_two_chunks(&deny_file, &d1, &d2, pause);
        wait_for_reload(admin_port, "success", before, Duration::from_secs(10));
        assert_eq!(
            allowed.load(Ordering::Relaxed),
            0,
            "round {round}: half an ACL file took effect"
        );

        // The users file: its first half has mallory without the label; take the name rule
        // away atomically first.
        let before = reloads(admin_port, "success");
        let (d1, _) = deny(round);
        let tmp = deny_file.with_file_name(".10-deny.yaml.new");
        std::fs::write(&tmp, &d1).unwrap();
        let (u1, u2) = users(round + 100);
        std::fs::write(&users_file, format!("{u1}{u2}")).unwrap();
        std::fs::rename(&tmp, &deny_file).unwrap();
        wait_for_reload(admin_port, "success", before, Duration::from_secs(10));
        let (u1, u2) = users(round + 200);
        let before = reloads(admin_port, "success");
        write_in_two_chunks(&users_file, &u1, &u2, pause);
        wait_for_reload(admin_port, "success", before, Duration::from_secs(10));
        assert_eq!(
            allowed.load(Ordering::Relaxed),
            0,
            "round {round}: half a users file took effect"
        );
        // Both rules back for the next round.
        let (d1, d2) = deny(round);
        let before = reloads(admin_port, "success");
        write_by_rename(&deny_file, &format!("{d1}{d2}"));
        wait_for_reload(admin_port, "success", before, Duration::from_secs(10));
    }
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
    let (denied, allowed) = (
        denied.load(Ordering::Relaxed),
        allowed.load(Ordering::Relaxed),
    );
    eprintln!("{denied} requests denied, {allowed} allowed");
    assert_eq!(allowed, 0);
    assert!(denied > 100, "the request loop did not run ({denied})");
}

#[test]
fn files_that_keep_changing_are_not_loaded_and_the_failure_is_counted() {
    let registry = Registry::start();
    let users = |n: usize| format!("# {n}\nbob:\n  password: \"{}\"\n", hash("bobpw"));
    let files = vec![("users.yaml", users(0)), ("acl.yaml", rules(1))];
    let admin_port = free_port();
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nauth:\n  users: users.yaml\nacl: acl.yaml\n"
    );
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let users_file = proxy.dir.path().join("users.yaml");
    let failures = reloads(admin_port, "failure");
    let successes = reloads(admin_port, "success");
    // One change, a pause past the quiet period (the reload starts reading), then a change
    // every 100 ms: every pair of reads a debounce apart differs.
    std::fs::write(&users_file, users(1)).unwrap();
    std::thread::sleep(Duration::from_millis(700)); // the writer's pattern under test
    let start = Instant::now();
    let mut n = 2;
    while reloads(admin_port, "failure") <= failures {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a reload of files that never settle did not give up"
        );
        std::fs::write(&users_file, users(n)).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(100)); // the writer's pattern under test
    }
    assert_eq!(
        reloads(admin_port, "success"),
        successes,
        "files that kept changing were loaded"
    );
    wait_until("the failure in the log", Duration::from_secs(5), || {
        proxy.proc.output().contains("kept changing for 10s")
    });
    // Once the writer stops, the next reload loads the final content.
    wait_for_reload(admin_port, "success", successes, Duration::from_secs(10));
    assert!(bob_may_pull(&proxy.client(), &proxy, 1));
}
