//! `portcullis check` refuses what `serve` would refuse, and says where: run as an operator
//! would, on files written for each case.

mod common;

use common::{portcullis, write};

const TLS_CONFIG: &str =
    "upstream: http://127.0.0.1:5001\ntls:\n  cert: tls.crt\n  key: tls.key\nacl: acl.yaml\n";

#[test]
fn check_loads_the_tls_pair_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (one.cert.pem(), one.key_pair.serialize_pem());
    write(
        dir.path(),
        &[
            ("proxy.yaml", TLS_CONFIG),
            ("acl.yaml", "[]\n"),
            ("tls.crt", &cert),
            ("tls.key", &key),
        ],
    );
    let (code, out, err) = portcullis(&["check"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(TLS)"), "{out}");
    let wrong_key = other.key_pair.serialize_pem();
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    for (crt, k, wanted) in [
        (
            cert.as_str(),
            wrong_key.as_str(),
            "tls.key: tls.key: does not match",
        ),
        ("", key.as_str(), "tls.crt: tls.cert: no CERTIFICATE"),
        ("not a certificate\n", key.as_str(), "tls.crt: tls.cert"),
        (garbage, key.as_str(), "tls.key"),
    ] {
        write(dir.path(), &[("tls.crt", crt), ("tls.key", k)]);
        let (code, out, err) = portcullis(&["check"], dir.path());
        assert_eq!(code, 1, "{wanted}: {out}{err}");
        let err = err.replace(&format!("{}/", dir.path().display()), "");
        assert!(err.contains(wanted), "missing {wanted:?} in:\n{err}");
    }
}

#[test]
fn empty_acl_users_and_htpasswd_files_warn() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nauth:\n  users: users.yaml\n  htpasswd: reg.htpasswd\nacl: acl.yaml\n",
            ),
            ("users.yaml", "# nobody yet\n"),
            ("reg.htpasswd", ""),
            ("acl.yaml", "\n"),
        ],
    );
    let (code, out, err) = portcullis(&["check"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    for wanted in [
        "warning: users.yaml: no users in the users file",
        "warning: reg.htpasswd: no accounts in the htpasswd file",
        "warning: acl.yaml: no rules in the ACL: every request will be denied",
    ] {
        let out = out.replace(&format!("{}/", dir.path().display()), "");
        assert!(out.contains(wanted), "missing {wanted:?} in:\n{out}");
    }
}

#[test]
fn explain_refuses_what_is_not_a_scope() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\n",
            ),
            ("acl.yaml", "- match: {account: alice}\n  actions: ['*']\n"),
        ],
    );
    let explain = |scope: &str| {
        portcullis(
            &[
                "explain",
                "--account",
                "alice",
                "repository:ok/app:pull",
                scope,
            ],
            dir.path(),
        )
    };
    let (code, out, err) = explain("repository:team/app:pull");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("repository:team/app:pull: granted pull"),
        "{out}"
    );
    for (scope, wanted) in [
        ("repository:team/app:delet", "unknown action \"delet\""),
        ("repositry:x:pull", "unknown scope type \"repositry\""),
        (
            "repository:Team/App:pull",
            "\"Team/App\" is not a repository name",
        ),
        ("registry:catalogue:*", "one name, catalog"),
        ("repository:x:", "no action"),
        ("nonsense", "must be type:name:actions"),
    ] {
        let (code, out, err) = explain(scope);
        assert_eq!(code, 1, "{scope}: {out}{err}");
        assert!(err.contains(wanted), "{scope}: missing {wanted:?} in {err}");
        assert!(out.is_empty(), "nothing is answered: {out}");
    }
}

/// One broken configuration per case: the exact `file:line:column: key:` each error starts
/// with, and words the message must (not) contain.
#[test]
fn every_value_error_points_at_its_own_line_and_key() {
    const BASE: &str = "upstream: http://127.0.0.1:5001\nacl: acl.yaml\n";
    // (lines added to proxy.yaml, other files, where the error is, words it says)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            "shutdown_timeout: 5\n",
            &[],
            "proxy.yaml:3:19: shutdown_timeout: ",
            "needs a unit",
        ),
        (
            "auth:\n  token:\n    key: k.pem\n    expiration: 5x\n",
            &[("k.pem", "x")],
            "proxy.yaml:6:17: auth.token.expiration: ",
            "unit must be",
        ),
        (
            "auth:\n  token:\n    key: k.pem\n    expiration: 0s\n",
            &[("k.pem", "x")],
            "proxy.yaml:6:17: auth.token.expiration: ",
            "more than 0",
        ),
        (
            "upstream: http://127.0.0.1:5002\n",
            &[],
            "proxy.yaml:3:1: upstream: ",
            "written twice",
        ),
        (
            "auth:\n  users: udir\n",
            &[("udir/x", "")],
            "proxy.yaml:4:10: auth.users: ",
            "is a folder, not a file",
        ),
        (
            "auth:\n  users: u.yaml\n",
            &[("u.yaml", "users:\n  bob:\n    password: 5\n    labels: 7\n")],
            "u.yaml:4:13: users.bob.labels: ",
            "expected a map",
        ),
        (
            "auth:\n  users: u.yaml\n",
            &[("u.yaml", "users:\n  bob:\n    password: plain\n")],
            "u.yaml:3:15: users.bob.password: ",
            "not a bcrypt hash",
        ),
        (
            "auth:\n  users:\n    bob:\n      password: plain\n",
            &[],
            "proxy.yaml:6:17: auth.users.bob.password: ",
            "not a bcrypt hash",
        ),
        ("auth:\n\tusers: u.yaml\n", &[], "proxy.yaml:4:1: ", "a tab"),
        (
            "threads: -1\n",
            &[],
            "proxy.yaml:3:10: threads: ",
            "expected a whole number",
        ),
        (
            "limits:\n  max_headers: many\n",
            &[],
            "proxy.yaml:4:16: limits.max_headers: ",
            "expected a whole number",
        ),
        (
            "limits:\n  max_headers: 10\n  idle_timeout: 0s\n",
            &[],
            "proxy.yaml:5:17: limits.idle_timeout: ",
            "more than 0",
        ),
        (
            "ui:\n  path: /ui/\nauth:\n  token:\n    key: k.pem\n    path: v2\n",
            &[("k.pem", "x")],
            "proxy.yaml:8:11: auth.token.path: ",
            "absolute path",
        ),
        (
            "",
            &[(
                "acl.yaml",
                "- match: {account: \"/(admin/\"}\n  actions: [pull]\n",
            )],
            "acl.yaml:1:20: match.account: ",
            "unclosed group",
        ),
    ];
    for (extra, files, location, wanted) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("acl.yaml", "[]\n")]);
        write(dir.path(), files);
        write(dir.path(), &[("proxy.yaml", &format!("{BASE}{extra}"))]);
        let (code, out, err) = portcullis(&["check"], dir.path());
        assert_eq!(code, 1, "{extra}: {out}{err}");
        let err = err.replace(&format!("{}/", dir.path().display()), "");
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("error: {location}")))
            .unwrap_or_else(|| panic!("{extra:?}: no error at {location:?} in:\n{err}"));
        assert!(line.contains(wanted), "{extra:?}: {wanted:?} not in {line}");
        for internal in ["usize", "^(?:", "users: users", "does not exist"] {
            assert!(
                !line.contains(internal),
                "{extra:?}: {internal:?} in {line}"
            );
        }
    }
}

#[test]
fn check_warns_about_rules_that_can_never_match() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("proxy.yaml", "upstream: http://127.0.0.1:5001\nacl: acl/\n"),
            (
                "acl/10.yaml",
                "- match: {account: \"/.+/\"}\n  actions: [pull]\n",
            ),
            (
                "acl/20.yaml",
                "# the seed config's service account, meant to push\n- match: {account: serviceaccount}\n  actions: ['*']\n- match: {account: \"\"}\n  actions: [pull]\n",
            ),
        ],
    );
    let (code, out, err) = portcullis(&["check"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    let out = out.replace(&format!("{}/", dir.path().display()), "");
    assert!(
        out.contains(
            "warning: acl/20.yaml:2: this rule can never match: the rule at acl/10.yaml:1 above"
        ),
        "{out}"
    );
    assert_eq!(out.matches("can never match").count(), 1, "{out}");
}
