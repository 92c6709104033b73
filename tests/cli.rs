//! The command line: `check`, `explain` and `hash-password`, run as a user would.

mod common;

use common::{portcullis, write};
use std::io::Write;
use std::process::{Command, Stdio};

const HASH: &str = "$2y$05$LzHNqrNFLRXUzvmtfyeSIOVbV3x5Q4p8FqB5qSl9v03G5yv0j4E1y";

#[test]
fn the_example_configuration_in_the_repository_checks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // The example as the quick start uses it, with certificates from its own script.
    std::fs::copy(root.join("proxy.yaml"), dir.path().join("proxy.yaml")).unwrap();
    std::fs::copy(root.join("users.yaml"), dir.path().join("users.yaml")).unwrap();
    std::fs::copy(root.join("keys.jsonl"), dir.path().join("keys.jsonl")).unwrap();
    for sub in ["acl", "certs"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    // acl/ and its ACL tests (acl/tests/).
    std::fs::create_dir(dir.path().join("acl/tests")).unwrap();
    for sub in ["acl", "acl/tests"] {
        for f in std::fs::read_dir(root.join(sub)).unwrap() {
            let f = f.unwrap();
            if f.path().is_file() {
                std::fs::copy(f.path(), dir.path().join(sub).join(f.file_name())).unwrap();
            }
        }
    }
    let script = dir.path().join("certs/make-dev-certs.sh");
    std::fs::copy(root.join("certs/make-dev-certs.sh"), &script).unwrap();
    let made = Command::new("bash").arg(&script).output().unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (code, out, err) = portcullis(&["check"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("ok: 2 static users, 0 htpasswd accounts, 3 ACL rules, 8 ACL tests passed"),
        "{out}"
    );
    // The seed scenario.
    let (_, out, _) = portcullis(
        &[
            "explain",
            "--account",
            "test",
            "repository:team/app:pull,push",
            "repository:test/app:push",
        ],
        dir.path(),
    );
    assert!(
        out.contains(
            "repository:team/app:pull,push: granted pull; decided by acl/20-readers.yaml:1"
        ),
        "{out}"
    );
    assert!(
        out.contains("repository:test/app:push: granted nothing; decided by acl/20-readers.yaml:1"),
        "{out}"
    );
    let (_, out, _) = portcullis(
        &[
            "explain",
            "--account",
            "bob",
            "repository:bob/app:push",
            "repository:alice/app:pull",
        ],
        dir.path(),
    );
    assert!(out.contains("repository:bob/app:push: granted push; decided by acl/30-namespaces.yaml:1 (every other logged-in user owns <account>/* (test is decided by 20-readers.yaml first))"), "{out}");
    assert!(
        out.contains("repository:alice/app:pull: granted nothing; no rule matched (denied)"),
        "{out}"
    );
    let (_, out, _) = portcullis(
        &["explain", "--account", "admin", "registry:catalog:*"],
        dir.path(),
    );
    assert!(
        out.contains("registry:catalog:*: granted *; decided by acl/10-admins.yaml:2"),
        "{out}"
    );
}

#[test]
fn check_reports_every_error_with_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nauth:\n  users: users.yaml\n  htpasswd: reg.htpasswd\nacl: acl/\n",
            ),
            ("users.yaml", &format!("alice:\n  password: \"{HASH}\"\nbob:\n  password: plain\n")),
            ("reg.htpasswd", "carol:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n"),
            ("acl/10.yaml", "- match: {account: alice}\n  actions: [pull]\n- match: {acount: bob}\n  actions: [pull]\n"),
            ("acl/20.yaml", "- match: {ip: 10.0.0.0/33}\n  actions: [pull]\n- match: {name: \"/(/\"}\n  actions: [fly]\n"),
        ],
    );
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], dir.path());
    assert_eq!(code, 1, "{out}{err}");
    for expected in [
        "users.yaml:4:13: users.bob.password",
        "reg.htpasswd:1",
        "htpasswd -B",
        "acl/10.yaml:3",
        "acount",
        "acl/20.yaml:1",
        "acl/20.yaml:3",
        "fly",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // `serve` refuses the same configuration without starting.
    let (code, _, err) = portcullis(&["serve", "-c", "proxy.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("acl/20.yaml:1"), "{err}");
}

#[test]
fn check_refuses_an_ldap_name_attribute_the_filter_does_not_search_and_host_bits() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nauth:\n  ldap:\n    url: ldap://127.0.0.1:389\n    bind_dn: cn=s\n    bind_password_file: ldap.pw\n    base: dc=x\n    filter: (mail={account})\nacl: acl.yaml\n",
            ),
            ("ldap.pw", "pw\n"),
            ("acl.yaml", "- match: {ip: 127.0.0.1/3}\n  actions: [pull]\n"),
        ],
    );
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], dir.path());
    assert_eq!(code, 1, "{out}{err}");
    for expected in ["proxy.yaml:8", "auth.ldap.filter", "account_attribute"] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // With the attribute the filter searches, the LDAP part is accepted; the ACL is not.
    let config = std::fs::read_to_string(dir.path().join("proxy.yaml")).unwrap();
    std::fs::write(
        dir.path().join("proxy.yaml"),
        config.replace(
            "(mail={account})\n",
            "(mail={account})\n    account_attribute: mail\n",
        ),
    )
    .unwrap();
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], dir.path());
    assert_eq!(code, 1, "{out}{err}");
    for expected in ["acl.yaml:1", "host bits", "96.0.0.0/3"] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("auth.ldap"), "{err}");
    std::fs::write(
        dir.path().join("acl.yaml"),
        "- match: {ip: 127.0.0.1/32}\n  actions: [pull]\n",
    )
    .unwrap();
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_docker_auth_config_file_works_as_users_and_acl() {
    let dir = tempfile::tempdir().unwrap();
    let auth_config = format!(
        "server:\n  addr: \":5001\"\ntoken:\n  issuer: \"Acme auth server\"\n  expiration: 900\nusers:\n  admin:\n    password: \"{HASH}\"\n  \"\": {{}}\nacl:\n  - match: {{account: \"admin\"}}\n    actions: [\"*\"]\n    comment: \"Admin has full access to everything.\"\n  - match: {{account: \"\"}}\n    actions: [\"pull\"]\n"
    );
    write(
        dir.path(),
        &[
            ("auth_config.yml", &auth_config),
            ("proxy.yaml", "upstream: http://127.0.0.1:5001\nauth:\n  users: auth_config.yml\nacl: auth_config.yml\n"),
        ],
    );
    let (code, out, err) = portcullis(&["check"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2 static users") && out.contains("2 ACL rules"),
        "{out}"
    );
    let (_, out, _) = portcullis(
        &["explain", "--account", "", "repository:x/y:pull,push"],
        dir.path(),
    );
    assert!(
        out.contains("granted pull; decided by auth_config.yml:14"),
        "{out}"
    );
}

#[test]
fn hash_password_makes_a_hash_that_verifies() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["hash-password", "--cost", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(bcrypt::verify("s3cret", hash.trim()).unwrap());
    assert!(!bcrypt::verify("s3cret\n", hash.trim()).unwrap());
}

#[test]
fn explain_shows_placeholders_labels_ip_and_first_match() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("proxy.yaml", "upstream: http://127.0.0.1:5001\nauth:\n  users: users.yaml\nacl: acl.yaml\n"),
            ("users.yaml", &format!("ci:\n  password: \"{HASH}\"\n  labels: {{team: [web, api]}}\n")),
            (
                "acl.yaml",
                "- match: {ip: 10.0.0.0/8, name: \"internal/*\"}\n  actions: [pull]\n  comment: office network\n- match: {labels: {team: \"/w.b/\"}, name: \"${labels:team}/*\"}\n  actions: [pull, push]\n  comment: team namespaces\n- match: {name: \"${account}/**\"}\n  actions: [\"*\"]\n  comment: own\n- match: {name: \"ci/**\"}\n  actions: []\n  comment: never\n",
            ),
        ],
    );
    let run = |args: &[&str]| portcullis(args, dir.path()).1;
    // Labels come from the users file; ${labels:team} expands to each value.
    let out = run(&[
        "explain",
        "--account",
        "ci",
        "repository:api/x:push",
        "repository:web/x:pull",
        "repository:db/x:pull",
    ]);
    assert!(
        out.contains(
            "repository:api/x:push: granted push; decided by acl.yaml:4 (team namespaces)"
        ),
        "{out}"
    );
    assert!(
        out.contains("repository:web/x:pull: granted pull; decided by acl.yaml:4"),
        "{out}"
    );
    assert!(
        out.contains("repository:db/x:pull: granted nothing; no rule matched"),
        "{out}"
    );
    // --label adds labels; the label match needs a value matching /w.b/.
    let out = run(&[
        "explain",
        "--account",
        "x",
        "--label",
        "team=web",
        "repository:web/a:push",
    ]);
    assert!(out.contains("granted push; decided by acl.yaml:4"), "{out}");
    let out = run(&[
        "explain",
        "--account",
        "x",
        "--label",
        "team=db",
        "repository:db/a:push",
    ]);
    assert!(out.contains("granted nothing; no rule matched"), "{out}");
    // ${account} is literal: `ci` owns ci/**, and first match wins over the later deny rule.
    let out = run(&["explain", "--account", "ci", "repository:ci/deep/x:delete"]);
    assert!(
        out.contains("granted delete; decided by acl.yaml:7 (own)"),
        "{out}"
    );
    let out = run(&["explain", "--account", "bob", "repository:ci/x:pull"]);
    assert!(
        out.contains("granted nothing; decided by acl.yaml:10 (never)"),
        "{out}"
    );
    // ip: CIDR.
    let out = run(&[
        "explain",
        "--account",
        "bob",
        "--ip",
        "10.1.2.3",
        "repository:internal/x:pull,push",
    ]);
    assert!(
        out.contains("granted pull; decided by acl.yaml:1 (office network)"),
        "{out}"
    );
    let out = run(&[
        "explain",
        "--account",
        "bob",
        "--ip",
        "192.168.1.1",
        "repository:internal/x:pull",
    ]);
    assert!(out.contains("no rule matched"), "{out}");
}

#[test]
fn hash_password_refuses_what_bcrypt_cannot_represent() {
    let run = |password: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["hash-password", "--cost", "4"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(password).unwrap();
        child.wait_with_output().unwrap()
    };
    let exact = "p".repeat(72);
    let out = run(format!("{exact}\n").as_bytes());
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(bcrypt::verify(&exact, hash.trim()).unwrap());
    for long in [73, 100] {
        let out = run(format!("{}\n", "p".repeat(long)).as_bytes());
        assert!(!out.status.success(), "{long} bytes accepted");
        assert!(out.stdout.is_empty(), "a hash was printed for {long} bytes");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{long} bytes")) && err.contains("72"),
            "{err}"
        );
    }
    // Bytes, not characters: 37 two-byte characters are 74 bytes.
    assert!(!run("é".repeat(37).as_bytes()).status.success());
}

#[test]
fn check_refuses_a_lockout_exemption_with_host_bits() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nauth:\n  lockout:\n    failures: 5\n    exempt:\n      - 10.0.0.0/8\n      - 127.0.0.1/3\nacl: acl.yaml\n",
            ),
            ("acl.yaml", "[]\n"),
        ],
    );
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], dir.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("proxy.yaml:7"), "{err}");
    assert!(err.contains("auth.lockout.exempt"), "{err}");
    assert!(err.contains("96.0.0.0/3"), "{err}");
    let (code, _, err) = portcullis(&["serve", "-c", "proxy.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("proxy.yaml:7"), "{err}");
}
