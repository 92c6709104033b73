//! Access keys end to end (`auth.keys`, docs/access-keys.md): made with `portcullis key
//! create`, used by skopeo through the token flow and with Basic on `/v2/`, narrowed by their
//! scopes, expired, revoked (tokens issued to them included), listed without secrets; a keys
//! file with a bad line refused by `check` and by the reload, which keeps the old keys.

mod common;

use std::time::{Duration, SystemTime};

use common::*;

const ACL: &str = r#"
- match: {account: alice}
  actions: ["*"]
  comment: alice owns everything
- match: {account: robot, name: "bots/*"}
  actions: [pull, push]
- match: {labels: {team: a}, name: "labelled/*"}
  actions: [pull]
"#;

fn users() -> String {
    format!(
        "alice:\n  password: \"{}\"\n  labels: {{team: [a]}}\n",
        hash("alicepw")
    )
}

/// A proxy with `auth.keys: keys.jsonl` (empty) and an admin port for the reload metrics.
fn start(upstream: &str, token_mode: bool, tls: bool) -> (Proxy, u16) {
    let admin = free_port();
    let mut files = vec![
        ("users.yaml", users()),
        ("acl.yaml", ACL.to_string()),
        ("keys.jsonl", String::new()),
    ];
    let mut auth =
        "auth:\n  users: users.yaml\n  keys: keys.jsonl\n  lockout: {failures: 2, window: 5m}\n"
            .to_string();
    if token_mode {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = portcullis::token::generate_dev_keypair(dir.path()).unwrap();
        files.push(("token.key", std::fs::read_to_string(key).unwrap()));
        files.push(("token.crt", std::fs::read_to_string(cert).unwrap()));
        auth.push_str(
            "  challenge: token\n  token:\n    key: token.key\n    certificate: token.crt\n",
        );
    }
    let config =
        format!("upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin}\n{auth}acl: acl.yaml\n");
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls,
        },
        upstream,
    );
    (proxy, admin)
}

/// Runs `portcullis key …` against the proxy's configuration; panics unless it succeeds.
fn key_cmd(proxy: &Proxy, args: &[&str]) -> String {
    let mut all = vec!["-c", "proxy.yaml", "key"];
    all.extend_from_slice(args);
    let (code, out, err) = portcullis(&all, proxy.dir.path());
    assert_eq!(code, 0, "portcullis key {args:?}: {out}{err}");
    out
}

/// Makes a key and waits until the proxy has reloaded the file; returns (id, secret).
fn create_key(proxy: &Proxy, admin: u16, args: &[&str]) -> (String, String) {
    let before = reloads(admin, "success");
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    let secret = key_cmd(proxy, &all).trim().to_string();
    assert!(secret.starts_with("pcl_") && secret.len() == 47, "{secret}");
    wait_for_reload(admin, "success", before, Duration::from_secs(10));
    let text = std::fs::read_to_string(proxy.dir.path().join("keys.jsonl")).unwrap();
    assert!(!text.contains(&secret[4..]), "the secret is not stored");
    let id = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .next_back()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (id, secret)
}

fn audit_lines(proxy: &Proxy) -> Vec<serde_json::Value> {
    proxy
        .proc
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect()
}

fn tags_status(proxy: &Proxy, repo: &str, user: &str, secret: &str) -> u16 {
    proxy
        .client()
        .get(proxy.url(&format!("/v2/{repo}/tags/list")))
        .basic_auth(user, Some(secret))
        .send()
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.proc.output()))
        .status()
        .as_u16()
}

#[test]
fn a_scoped_key_pushes_within_its_scope_only_and_dies_when_revoked() {
    let registry = Registry::start();
    let (proxy, admin) = start(&registry.url(), true, true);
    let host = proxy.host();
    let (id, secret) = create_key(
        &proxy,
        admin,
        &[
            "--account",
            "alice",
            "--scope",
            "repository:team/app:pull,push",
            "--description",
            "release pipeline",
            "--expires",
            "1h",
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    write_oci_image(&img, "v1", &pseudo_random(64 * 1024, 7));
    let src = format!("oci:{}:v1", img.display());
    let push = |repo: &str, creds: &str| {
        copy(
            &proxy,
            &src,
            &format!("docker://{host}/{repo}:v1"),
            Some(creds),
        )
    };

    // Any username: the key names its account.
    let (ok, err) = push("team/app", &format!("ci:{secret}"));
    assert!(
        ok,
        "push within the key's scope: {err}\n{}",
        proxy.proc.output()
    );
    // alice may push anywhere, the key only to team/app.
    let (ok, _) = push("team/other", &format!("alice:{secret}"));
    assert!(!ok, "push outside the key's scope must fail");
    assert!(
        push("team/other", "alice:alicepw").0,
        "alice's password is not narrowed"
    );

    // The token endpoint's audit line names the key, and the grant is the intersection.
    let lines = audit_lines(&proxy);
    let token_lines: Vec<_> = lines
        .iter()
        .filter(|v| v["access_key"] == id.as_str() && v["action"] == "token")
        .collect();
    assert!(!token_lines.is_empty(), "no audit line names key {id}");
    assert!(token_lines.iter().all(|v| v["account"] == "alice"));
    assert!(token_lines
        .iter()
        .any(|v| v["scopes_granted"] == "repository:team/app:pull,push"));
    assert!(token_lines
        .iter()
        .filter(|v| v["scopes_requested"]
            .as_str()
            .unwrap_or("")
            .contains("team/other"))
        .all(|v| !v["scopes_granted"].as_str().unwrap().contains("team/other")));
    assert!(lines.iter().any(|v| v["access_key"] == id.as_str()
        && v["path"] == "/v2/team/app/manifests/v1"
        && v["decision"] == "allowed"));

    // `key list` shows the key, never the secret.
    let list = key_cmd(&proxy, &["list"]);
    assert!(
        list.contains(&id)
            && list.contains("release pipeline")
            && list.contains("repository:team/app:pull,push"),
        "{list}"
    );
    assert!(!list.contains(&secret[4..]));

    // A token issued to the key before it is revoked...
    let token: serde_json::Value = proxy
        .client()
        .get(proxy.url("/auth?scope=repository:team/app:pull"))
        .basic_auth("x", Some(&secret))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let with_token = || {
        proxy
            .client()
            .get(proxy.url("/v2/team/app/tags/list"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with_token(), 200);

    let before = reloads(admin, "success");
    let out = key_cmd(&proxy, &["revoke", &id]);
    assert!(out.contains(&id), "{out}");
    wait_for_reload(admin, "success", before, Duration::from_secs(10));
    // ...stops working on its next use, as does the key itself.
    assert_eq!(with_token(), 401);
    let (ok, _) = push("team/app", &format!("alice:{secret}"));
    assert!(!ok, "a revoked key must not push");
    let r = proxy
        .client()
        .get(proxy.url("/auth?scope=repository:team/app:pull"))
        .basic_auth("alice", Some(&secret))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!key_cmd(&proxy, &["list"]).contains(&id));
    // Revoking again is an error that says so.
    let (code, _, err) = portcullis(
        &["-c", "proxy.yaml", "key", "revoke", &id],
        proxy.dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("no key with id"), "{err}");
}

#[test]
fn keys_expire_robots_need_no_backend_and_personal_keys_need_their_account() {
    let registry = Registry::start();
    let (proxy, admin) = start(&registry.url(), false, false);
    let (_, robot) = create_key(&proxy, admin, &["--account", "robot", "--robot"]);
    let (_, orphan) = create_key(&proxy, admin, &["--account", "nobody"]);
    // An expiry a few seconds away (an RFC 3339 time, as `--expires` accepts).
    let at = portcullis::authn::keys::file::format_time(SystemTime::now() + Duration::from_secs(6));
    let (short_id, short) = create_key(&proxy, admin, &["--account", "alice", "--expires", &at]);

    assert_eq!(
        tags_status(&proxy, "team/app", "alice", &short),
        404,
        "allowed: the registry has no such repository"
    );
    // Labels come from alice's backend entry.
    assert_eq!(tags_status(&proxy, "labelled/x", "whoever", &short), 404);

    // The robot exists only as keys: the ACL matches its name, it has no labels.
    assert_eq!(tags_status(&proxy, "bots/x", "robot", &robot), 404);
    assert_eq!(tags_status(&proxy, "labelled/x", "robot", &robot), 403);
    // A personal key of an account no backend holds is refused.
    assert_eq!(tags_status(&proxy, "bots/x", "nobody", &orphan), 401);

    // Expiry needs no reload: refused from that moment, with the reason in the audit line.
    wait_until("the key expires", Duration::from_secs(15), || {
        tags_status(&proxy, "team/app", "alice", &short) == 401
    });
    let lines = audit_lines(&proxy);
    assert!(
        lines
            .iter()
            .any(|v| v["reason"].as_str().unwrap_or("")
                == format!("access key {short_id} has expired")),
        "{}",
        proxy.proc.output()
    );
    assert!(lines.iter().any(|v| v["reason"]
        .as_str()
        .unwrap_or("")
        .contains("its account no longer exists")));
    assert!(metric(admin, "portcullis_auth_failures_total{reason=\"bad_key\"}") >= 2.0);
    // `key list` marks it.
    assert!(key_cmd(&proxy, &["list"]).contains("(expired)"));
    // explain --key refuses to pretend an expired key has rights.
    let (code, _, err) = portcullis(
        &[
            "-c",
            "proxy.yaml",
            "explain",
            "--key",
            &short_id,
            "repository:team/app:pull",
        ],
        proxy.dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("has expired"), "{err}");
}

#[test]
fn wrong_keys_never_lock_the_account_and_a_locked_account_keeps_its_keys() {
    let registry = Registry::start();
    let (proxy, admin) = start(&registry.url(), false, false);
    let (_, secret) = create_key(&proxy, admin, &["--account", "alice"]);
    // Two wrong passwords lock alice from this address (failures: 2)...
    for _ in 0..2 {
        assert_eq!(tags_status(&proxy, "team/app", "alice", "wrong"), 401);
    }
    assert_eq!(tags_status(&proxy, "team/app", "alice", "alicepw"), 429);
    // ...but not her key.
    assert_eq!(tags_status(&proxy, "team/app", "alice", &secret), 404);
    // Wrong keys count for this address's key logins only (at 2 × failures).
    let fake = format!("pcl_{}", "A".repeat(43));
    for _ in 0..4 {
        assert_eq!(tags_status(&proxy, "team/app", "alice", &fake), 401);
    }
    assert_eq!(tags_status(&proxy, "team/app", "alice", &secret), 429);
}

#[test]
fn a_hand_edited_keys_file_with_a_bad_line_is_refused_and_the_old_keys_stay() {
    let registry = Registry::start();
    let (proxy, admin) = start(&registry.url(), false, false);
    let (id, secret) = create_key(
        &proxy,
        admin,
        &["--account", "alice", "--scope", "repository:team/*:pull"],
    );
    let (code, out, _) = portcullis(&["-c", "proxy.yaml", "check"], proxy.dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("access keys: 1"), "{out}");

    // An operator appends a key by hand (made elsewhere) and breaks another line.
    let path = proxy.dir.path().join("keys.jsonl");
    let good = std::fs::read_to_string(&path).unwrap();
    let spare = tempfile::tempdir().unwrap();
    let (_, new_secret) =
        portcullis::authn::keys::create(&spare.path().join("k"), "alice", &[], None, "").unwrap();
    let new_line = std::fs::read_to_string(spare.path().join("k"))
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let broken = format!("{good}{new_line}\n{{\"id\":\"kbad\",\"account\":\"alice\",\"created\":\"2026-12-01T00:00:00Z\",\"expire\":\"never\",\"sha256\":\"00\"}}\n");
    let bad_line = broken.lines().count();
    let failed = reloads(admin, "failure");
    std::fs::write(&path, &broken).unwrap();

    let (code, _, err) = portcullis(&["-c", "proxy.yaml", "check"], proxy.dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "keys.jsonl:{bad_line}: auth.keys: unknown field `expire`"
        )),
        "{err}"
    );

    wait_for_reload(admin, "failure", failed, Duration::from_secs(10));
    // The keys in force are the old ones: the old key works, the appended one does not.
    assert_eq!(tags_status(&proxy, "team/app", "alice", &secret), 404);
    assert_eq!(tags_status(&proxy, "team/app", "alice", &new_secret), 401);
    assert!(proxy
        .proc
        .output()
        .contains(&format!("keys.jsonl:{bad_line}")));
    // `key create` refuses to touch the broken file.
    let (code, _, err) = portcullis(
        &["-c", "proxy.yaml", "key", "create", "--account", "alice"],
        proxy.dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains(&format!("keys.jsonl:{bad_line}")), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);

    // Fixed: both keys work.
    let before = reloads(admin, "success");
    std::fs::write(&path, format!("{good}{new_line}\n")).unwrap();
    wait_for_reload(admin, "success", before, Duration::from_secs(10));
    assert_eq!(tags_status(&proxy, "team/app", "alice", &new_secret), 404);
    // The scoped key is still narrowed: push is refused (explain agrees).
    let (code, out, _) = portcullis(
        &[
            "-c",
            "proxy.yaml",
            "explain",
            "--key",
            &id,
            "repository:team/app:pull,push",
        ],
        proxy.dir.path(),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("granted pull (the ACL grants pull,push;"),
        "{out}"
    );
}

/// POST /ui/login (with its CSRF token) as `account`/`password`: the status.
fn ui_login(proxy: &Proxy, account: &str, password: &str) -> u16 {
    let client = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(proxy.url("/ui/login"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let at =
        page.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    let csrf = &page[at..at + page[at..].find('"').unwrap()];
    client
        .post(proxy.url("/ui/login"))
        .form(&[("csrf", csrf), ("account", account), ("password", password)])
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_key_cannot_sign_in_to_the_web_ui() {
    let registry = Registry::start();
    let (proxy, admin) = start(&registry.url(), false, false);
    let (_, secret) = create_key(
        &proxy,
        admin,
        &["--account", "alice", "--scope", "repository:team/*:pull"],
    );
    // A UI session carries the account's full rights: a scoped key must not get one.
    assert_eq!(ui_login(&proxy, "alice", &secret), 401);
    assert_eq!(ui_login(&proxy, "alice", "alicepw"), 303);
}
