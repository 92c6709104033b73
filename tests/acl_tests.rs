//! ACL tests (`acl_tests:`): a rule change that breaks a stated case is refused before it takes
//! effect, at start, by `check` and on reload; `portcullis test` reports each case, as text or
//! JUnit XML.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const CASES: &str = r#"
- name: ci pushes but never deletes in prod
  account: ci
  scope: repository:prod/api:pull,push,delete
  expect: [pull, push]
- name: ci reads nothing else
  account: ci
  scope: repository:secret/x:pull
  expect: []
"#;

/// The rules in force: ci may pull and push prod/*.
const ACL_V1: &str = "- match: {account: ci, name: \"prod/*\"}\n  actions: [pull, push]\n";
/// Breaks both cases: ci may now do anything anywhere (delete in prod, read secret/*).
const ACL_BROKEN: &str = "- match: {account: ci}\n  actions: [\"*\"]\n";
/// Breaks one case: ci may now delete in prod.
const ACL_DELETES: &str = "- match: {account: ci, name: \"prod/*\"}\n  actions: [\"*\"]\n";
/// Keeps every case: ci may also pull shared/*.
const ACL_V2: &str = "- match: {account: ci, name: \"prod/*\"}\n  actions: [pull, push]\n- match: {account: ci, name: \"shared/*\"}\n  actions: [pull]\n";

fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(".acl.yaml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_reload_that_breaks_a_case_is_refused_and_one_that_keeps_them_takes_effect() {
    let registry = Registry::start();
    let manifest = registry.push_manifest("prod/api", "v1", &[], serde_json::json!({}));
    registry.push_manifest("shared/base", "v1", &[], serde_json::json!({}));
    registry.push_manifest("secret/x", "v1", &[], serde_json::json!({}));
    let admin_port = free_port();
    let files = vec![
        (
            "users.yaml",
            format!("ci:\n  password: \"{}\"\n", hash("cipw")),
        ),
        ("acl.yaml", ACL_V1.to_string()),
        ("tests/ci.yaml", CASES.to_string()),
    ];
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nauth:\n  users: users.yaml\nacl: acl.yaml\nacl_tests: tests/\n"
    );
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let c = proxy.client();
    let ci = |method: reqwest::Method, path: &str| {
        c.request(method, proxy.url(path))
            .basic_auth("ci", Some("cipw"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let delete_path = format!("/v2/prod/api/manifests/{manifest}");
    assert_eq!(ci(reqwest::Method::DELETE, &delete_path), 403);
    assert_eq!(ci(reqwest::Method::GET, "/v2/shared/base/tags/list"), 403);
    assert_eq!(ci(reqwest::Method::GET, "/v2/secret/x/tags/list"), 403);

    // A change that lets ci delete in prod and read secret/*: refused, counted, logged with
    // the case.
    let failures = reloads(admin_port, "failure");
    write_by_rename(&proxy.dir.path().join("acl.yaml"), ACL_BROKEN);
    wait_for_reload(admin_port, "failure", failures, Duration::from_secs(10));
    let log = proxy.proc.output();
    assert!(
        log.contains("ACL test \\\"ci pushes but never deletes in prod\\\" failed: granted pull,push,delete, expected pull,push"),
        "the log names the case and what was granted:\n{log}"
    );
    assert!(log.contains("acl.yaml:1"), "and the deciding rule:\n{log}");
    // The old rules are still in force: a real pull of secret/x and a real delete are still
    // refused (and the manifest is still there).
    assert_eq!(ci(reqwest::Method::GET, "/v2/secret/x/tags/list"), 403);
    assert_eq!(ci(reqwest::Method::DELETE, &delete_path), 403);
    assert_eq!(ci(reqwest::Method::GET, "/v2/prod/api/tags/list"), 200);

    // A change that keeps every case: takes effect.
    let successes = reloads(admin_port, "success");
    write_by_rename(&proxy.dir.path().join("acl.yaml"), ACL_V2);
    wait_for_reload(admin_port, "success", successes, Duration::from_secs(10));
    assert_eq!(ci(reqwest::Method::GET, "/v2/shared/base/tags/list"), 200);
    assert_eq!(ci(reqwest::Method::DELETE, &delete_path), 403);

    // Changing a test file is a reload too: a case the rules in force break is refused, and
    // the rules stay.
    let failures = reloads(admin_port, "failure");
    std::fs::write(
        proxy.dir.path().join("tests/ci.yaml"),
        format!("{CASES}- name: ci may not read shared\n  account: ci\n  scope: repository:shared/base:pull\n  expect: []\n"),
    )
    .unwrap();
    wait_for_reload(admin_port, "failure", failures, Duration::from_secs(10));
    assert_eq!(ci(reqwest::Method::GET, "/v2/shared/base/tags/list"), 200);
}

fn portcullis(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("-c")
        .arg(dir.join("proxy.yaml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn setup(acl: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("proxy.yaml"),
        "upstream: http://127.0.0.1:5001\nauth:\n  users: users.yaml\nacl: acl.yaml\nacl_tests: tests.yaml\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("users.yaml"),
        format!("ci:\n  password: \"{}\"\n", hash("cipw")),
    )
    .unwrap();
    std::fs::write(d.path().join("acl.yaml"), acl).unwrap();
    std::fs::write(d.path().join("tests.yaml"), CASES).unwrap();
    d
}

#[test]
fn test_check_and_serve_agree_on_a_broken_case() {
    let good = setup(ACL_V1);
    let (ok, out, err) = portcullis(good.path(), &["test"]);
    assert!(ok, "{out}{err}");
    assert!(out.lines().last() == Some("2 passed, 0 failed"), "{out}");
    assert!(out.starts_with("PASS "), "{out}");
    let (ok, out, _) = portcullis(good.path(), &["check"]);
    assert!(ok && out.contains("2 ACL tests passed"), "{out}");

    let bad = setup(ACL_DELETES);
    let (ok, out, _) = portcullis(bad.path(), &["test"]);
    assert!(!ok, "a failing case exits non-zero");
    assert!(out.contains("FAIL "), "{out}");
    assert!(out.lines().last() == Some("1 passed, 1 failed"), "{out}");
    let (ok, _, err) = portcullis(bad.path(), &["check"]);
    assert!(!ok);
    assert!(
        err.contains(
            "tests.yaml:2: acl_tests: ACL test \"ci pushes but never deletes in prod\" failed"
        ),
        "{err}"
    );
    // A first start with a failing case refuses to start.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .arg("-c")
        .arg(bad.path().join("proxy.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ACL test"));

    // JUnit XML for CI, with the right counts.
    let (ok, xml, _) = portcullis(bad.path(), &["test", "--format", "junit"]);
    assert!(!ok);
    let doc = roxmltree::Document::parse(&xml).expect("JUnit output is XML");
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("tests"), Some("2"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    let failed: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .map(|n| n.parent().unwrap().attribute("name").unwrap().to_owned())
        .collect();
    assert_eq!(failed, ["ci pushes but never deletes in prod"]);

    // Files named on the command line replace acl_tests; a bad one is located.
    std::fs::write(
        bad.path().join("other.yaml"),
        "- name: x\n  account: ci\n  scope: repository:prod/api:delet\n  expect: []\n",
    )
    .unwrap();
    let other = bad.path().join("other.yaml");
    let (ok, _, err) = portcullis(bad.path(), &["test", other.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("other.yaml:3:10: scope: unknown action \"delet\""),
        "{err}"
    );
}
