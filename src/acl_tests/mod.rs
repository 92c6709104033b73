//! ACL tests: the answers a team relies on, written down next to the rules and checked by
//! `portcullis test`, by `check`, at start and at every reload — a rule change that breaks one
//! is refused before it takes effect, like a syntax error.
//!
//! A test file is a YAML list of cases (`acl_tests:` names one file or a folder of `*.yaml`
//! read in name order):
//!
//! ```yaml
//! - name: ci never deletes in prod
//!   account: ci                      # `anonymous` (or "") for the anonymous caller
//!   labels: {groups: [deploy]}       # optional; else the account's labels from `users:`
//!   ip: 10.1.2.3                     # optional
//!   scope: repository:prod/api:pull,push,delete
//!   expect: [pull, push]             # exactly the actions granted; [] for nothing
//!   rule: acl/20-ci.yaml:4           # optional: the rule that must decide
//! ```
//!
//! | module | job |
//! |---|---|
//! | this file | the case format and loading it, every error at file:line:column |
//! | [`run`](mod@run) | deciding each case with the proxy's own matcher, and the report |
//! | [`junit`] | the report as JUnit XML for CI systems |

pub mod junit;
pub mod run;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::acl::Labels;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::explain::Scope;
use crate::yaml::{self, Node, NodeKind};

pub use run::{run, CaseResult, Report};

use crate::explain::ACTIONS;

/// The value of `account` that means the anonymous caller (as does `""`).
pub const ANONYMOUS: &str = "anonymous";

/// One stated invariant: who asks for what, and exactly what they must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// What the case promises, in the words of whoever wrote it.
    pub name: String,
    /// The account asking (`""` for anonymous).
    pub account: String,
    /// Labels to ask with; `None`: the account's own labels from the users file.
    pub labels: Option<Labels>,
    /// The client address, for `ip:` rules.
    pub ip: Option<IpAddr>,
    /// What is asked for.
    pub scope: Scope,
    /// Exactly the actions that must be granted (order does not matter).
    pub expect: Vec<String>,
    /// The rule that must decide, as `file:line` (the file matched by its trailing path
    /// components, so `acl/20-ci.yaml:4` works wherever the folder is).
    pub rule: Option<String>,
    /// Where the case is written.
    pub file: Arc<Path>,
    /// Its first line.
    pub line: usize,
}

/// Every case of one `acl_tests` file or folder, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suite {
    /// The cases, file by file in name order.
    pub cases: Vec<Case>,
}

impl Suite {
    /// Loads a test file, or every `*.yaml`/`*.yml` file of a folder in name order. All errors
    /// of all files come back together.
    pub fn load(path: &Path) -> Result<Suite, Diagnostics> {
        Suite::load_all(std::slice::from_ref(&path.to_path_buf()))
    }

    /// [`Suite::load`] over several files or folders (`portcullis test FILE DIR…`).
    pub fn load_all(paths: &[PathBuf]) -> Result<Suite, Diagnostics> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {
                    let (found, e) = yaml::files_in(path, "ACL test");
                    files.extend(found);
                    errors.extend(e);
                }
                Ok(_) => files.push(path.clone()),
                Err(e) => errors.push(Diagnostic::new(path, format!("cannot read ACL tests: {e}"))),
            }
        }
        let mut suite = Suite::default();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => match Suite::parse(&text, &file) {
                    Ok(s) => suite.cases.extend(s.cases),
                    Err(e) => errors.extend(e.0),
                },
                Err(e) => errors.push(Diagnostic::new(
                    &file,
                    format!("cannot read ACL tests: {e}"),
                )),
            }
        }
        if errors.is_empty() {
            Ok(suite)
        } else {
            Err(Diagnostics(errors))
        }
    }

    /// Parses one file's text; `file` is named in errors and in the cases.
    pub fn parse(text: &str, file: &Path) -> Result<Suite, Diagnostics> {
        let file: Arc<Path> = Arc::from(file);
        let at = |node: &Node, key: &str, msg: String| {
            let d = Diagnostic::new(&*file, msg).at(node.line, node.column);
            if key.is_empty() {
                d
            } else {
                d.key(key)
            }
        };
        if let Err(e) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
            let mut d = Diagnostic::new(&*file, yaml::error_message(&e));
            if let Some((line, column)) = yaml::error_position(&e) {
                d = d.at(line, column);
            }
            return Err(d.into());
        }
        let root = match yaml::parse_marked(text) {
            Ok(Some(root)) => root,
            // An empty file states nothing; that is allowed (and warned about by nobody).
            Ok(None) => return Ok(Suite::default()),
            Err(e) => {
                return Err(Diagnostic::new(&*file, e.message)
                    .at(e.line, e.column)
                    .into())
            }
        };
        let NodeKind::Seq(items) = &root.kind else {
            return Err(at(
                &root,
                "",
                format!("expected a list of test cases, found {}", root.describe()),
            )
            .into());
        };
        let mut errors = Vec::new();
        let mut cases = Vec::new();
        for item in items {
            match parse_case(item, &file) {
                Ok(case) => cases.push(case),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Suite { cases })
        } else {
            Err(Diagnostics(errors))
        }
    }

    /// Number of cases.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// True when there is no case.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }
}

/// One case, every error in it located.
fn parse_case(item: &Node, file: &Arc<Path>) -> Result<Case, Vec<Diagnostic>> {
    let at = |node: &Node, key: &str, msg: String| {
        Diagnostic::new(&**file, msg)
            .at(node.line, node.column)
            .key(key)
    };
    let NodeKind::Map(entries) = &item.kind else {
        return Err(vec![Diagnostic::new(
            &**file,
            format!(
                "expected a test case (a mapping), found {}",
                item.describe()
            ),
        )
        .at(item.line, item.column)]);
    };
    let mut errors = Vec::new();
    for (k, _) in entries {
        let known = matches!(
            k.as_str(),
            Some("name" | "account" | "labels" | "ip" | "scope" | "expect" | "rule")
        );
        if !known {
            errors.push(at(
                k,
                k.as_str().unwrap_or(""),
                "unknown key (expected name, account, labels, ip, scope, expect, rule)".into(),
            ));
        }
    }
    // A null value (`account:`) has no position of its own worth showing: point at its key.
    let key_of = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    };
    let required = |key: &str, errors: &mut Vec<Diagnostic>| -> Option<String> {
        match item.get(key) {
            None => {
                errors.push(
                    Diagnostic::new(&**file, format!("a test case needs `{key}`"))
                        .at(item.line, item.column)
                        .key(key),
                );
                None
            }
            Some(v) => match v.as_str() {
                Some(s) => Some(s.to_owned()),
                // `account: ""` is a string; `account:` (null) is not.
                None => {
                    let place = if v.is_null() {
                        key_of(key).unwrap_or(v)
                    } else {
                        v
                    };
                    errors.push(at(
                        place,
                        key,
                        format!("expected a string, found {}", v.describe()),
                    ));
                    None
                }
            },
        }
    };
    let name = required("name", &mut errors);
    let account =
        required("account", &mut errors).map(|a| if a == ANONYMOUS { String::new() } else { a });
    let scope = required("scope", &mut errors).and_then(|text| {
        let node = item.get("scope").expect("required() saw it");
        match parse_scope(&text) {
            Ok(scope) => Some(scope),
            Err(msg) => {
                errors.push(at(node, "scope", msg));
                None
            }
        }
    });
    let expect = match item.get("expect") {
        None => {
            errors.push(
                Diagnostic::new(
                    &**file,
                    "a test case needs `expect` (the actions granted; [] for nothing)",
                )
                .at(item.line, item.column)
                .key("expect"),
            );
            None
        }
        Some(node) => match &node.kind {
            NodeKind::Seq(actions) => {
                let mut out = Vec::new();
                for a in actions {
                    match a.as_str() {
                        Some(s) if ACTIONS.contains(&s) => out.push(s.to_owned()),
                        _ => errors.push(at(
                            a,
                            "expect",
                            format!(
                                "unknown action {:?} (expected pull, push, delete or \"*\")",
                                a.as_str().unwrap_or("")
                            ),
                        )),
                    }
                }
                Some(out)
            }
            _ => {
                errors.push(at(
                    node,
                    "expect",
                    format!("expected a list of actions, found {}", node.describe()),
                ));
                None
            }
        },
    };
    let labels = item
        .get("labels")
        .and_then(|node| match parse_labels(node) {
            Ok(labels) => Some(labels),
            Err((n, msg)) => {
                errors.push(at(n, "labels", msg));
                None
            }
        });
    let ip = item
        .get("ip")
        .and_then(|node| match node.as_str().map(|s| s.parse::<IpAddr>()) {
            Some(Ok(ip)) => Some(ip),
            _ => {
                errors.push(at(node, "ip", "expected an IP address".into()));
                None
            }
        });
    let rule = item.get("rule").and_then(|node| match node.as_str() {
        Some(text) if is_rule_reference(text) => Some(text.to_owned()),
        _ => {
            errors.push(at(
                node,
                "rule",
                "expected file:line of an ACL rule (acl/20-ci.yaml:4)".into(),
            ));
            None
        }
    });
    match (name, account, scope, expect) {
        (Some(name), Some(account), Some(scope), Some(expect)) if errors.is_empty() => Ok(Case {
            name,
            account,
            labels,
            ip,
            scope,
            expect,
            rule,
            file: file.clone(),
            line: item.line,
        }),
        _ => Err(errors),
    }
}

/// A scope as the token service reads it, strictly: a known type, a name, known actions.
fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse_strict(text)
}

/// `labels: {groups: [a, b], team: x}`: a value may be one string or a list of them.
fn parse_labels(node: &Node) -> Result<Labels, (&Node, String)> {
    let NodeKind::Map(entries) = &node.kind else {
        return Err((
            node,
            format!("expected a mapping, found {}", node.describe()),
        ));
    };
    let mut labels = Labels::new();
    for (k, v) in entries {
        let Some(key) = k.as_str() else {
            return Err((k, "a label name must be a string".into()));
        };
        let values = match &v.kind {
            NodeKind::Seq(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or(i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|i| (i, "a label value must be a string".to_owned()))?,
            _ => vec![v
                .as_str()
                .ok_or((v, "a label value must be a string".to_owned()))?
                .to_owned()],
        };
        labels.entry(key.to_owned()).or_default().extend(values);
    }
    Ok(labels)
}

/// `some/file.yaml:12`.
fn is_rule_reference(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(file, line)| !file.is_empty() && line.parse::<usize>().is_ok_and(|l| l > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Suite, Diagnostics> {
        Suite::parse(text, Path::new("tests/acl.yaml"))
    }

    #[test]
    fn a_full_case_parses() {
        let suite = parse(
            "# intent\n- name: ci never deletes in prod\n  account: ci\n  labels: {groups: [deploy, x], team: a}\n  ip: 10.1.2.3\n  scope: repository:prod/api:pull,push,delete\n  expect: [pull, push]\n  rule: acl/20-ci.yaml:4\n- name: anonymous gets nothing\n  account: anonymous\n  scope: registry:catalog:*\n  expect: []\n",
        )
        .unwrap();
        assert_eq!(suite.len(), 2);
        let c = &suite.cases[0];
        assert_eq!(c.name, "ci never deletes in prod");
        assert_eq!(c.account, "ci");
        assert_eq!(c.line, 2);
        assert_eq!(
            c.labels.as_ref().unwrap()["groups"],
            vec!["deploy".to_owned(), "x".to_owned()]
        );
        assert_eq!(c.labels.as_ref().unwrap()["team"], vec!["a".to_owned()]);
        assert_eq!(c.ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(c.scope.name, "prod/api");
        assert_eq!(c.expect, vec!["pull", "push"]);
        assert_eq!(c.rule.as_deref(), Some("acl/20-ci.yaml:4"));
        let anon = &suite.cases[1];
        assert_eq!(anon.account, "");
        assert!(anon.expect.is_empty());
        assert_eq!(anon.labels, None);
        assert_eq!(parse("").unwrap(), Suite::default());
        assert_eq!(
            parse("- {name: x, account: \"\", scope: \"repository:a:pull\", expect: []}\n")
                .unwrap()
                .cases[0]
                .account,
            ""
        );
    }

    /// (file text, line, column, key, part of the message)
    #[test]
    fn bad_cases_are_located() {
        let cases: &[(&str, usize, usize, &str, &str)] = &[
            ("- name: a\n  account: b\n  scope: repository:x:pull\n  expect: [pull]\n  acount: c\n", 5, 3, "acount", "unknown key"),
            ("- name: a\n  account: b\n  scope: repository:x:pul\n  expect: [pull]\n", 3, 10, "scope", "unknown action \"pul\""),
            ("- name: a\n  account: b\n  scope: repositry:x:pull\n  expect: [pull]\n", 3, 10, "scope", "unknown scope type"),
            ("- name: a\n  account: b\n  scope: repository:Team/x:pull\n  expect: [pull]\n", 3, 10, "scope", "not a repository name"),
            ("- name: a\n  account: b\n  scope: repository-x\n  expect: [pull]\n", 3, 10, "scope", "type:name:actions"),
            ("- name: a\n  account: b\n  scope: registry:other:*\n  expect: []\n", 3, 10, "scope", "catalog"),
            ("- name: a\n  account: b\n  scope: repository:x:pull\n  expect: [pull, delet]\n", 4, 18, "expect", "unknown action \"delet\""),
            ("- name: a\n  account: b\n  scope: repository:x:pull\n  expect: pull\n", 4, 11, "expect", "list of actions"),
            ("- name: a\n  account: b\n  scope: repository:x:pull\n", 1, 3, "expect", "needs `expect`"),
            ("- account: b\n  scope: repository:x:pull\n  expect: []\n", 1, 3, "name", "needs `name`"),
            ("- name: a\n  account:\n  scope: repository:x:pull\n  expect: []\n", 2, 3, "account", "expected a string"),
            ("- name: a\n  account: b\n  ip: 10.0.0.300\n  scope: repository:x:pull\n  expect: []\n", 3, 7, "ip", "IP address"),
            ("- name: a\n  account: b\n  rule: acl.yaml\n  scope: repository:x:pull\n  expect: []\n", 3, 9, "rule", "file:line"),
            ("- name: a\n  account: b\n  labels: [x]\n  scope: repository:x:pull\n  expect: []\n", 3, 11, "labels", "mapping"),
        ];
        for (text, line, column, key, message) in cases {
            let e = parse(text).unwrap_err();
            let d = &e.0[0];
            assert_eq!(
                (d.line, d.column, d.key.as_deref()),
                (Some(*line), Some(*column), Some(*key)),
                "{text}: {e}"
            );
            assert!(d.to_string().contains(message), "{text}: {d}");
            assert!(d.to_string().starts_with("tests/acl.yaml:"), "{d}");
        }
        let e = parse("name: a\n").unwrap_err();
        assert!(e.to_string().contains("expected a list"), "{e}");
        let e = parse("- [a]\n").unwrap_err();
        assert!(e.to_string().contains("a mapping"), "{e}");
        let e = parse("- name: [a\n").unwrap_err();
        assert!(e.0[0].line.is_some(), "{e}");
    }

    #[test]
    fn folders_are_read_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let case = |n: &str| {
            format!("- name: {n}\n  account: a\n  scope: repository:x:pull\n  expect: []\n")
        };
        std::fs::write(dir.path().join("20-b.yaml"), case("second")).unwrap();
        std::fs::write(dir.path().join("10-a.yml"), case("first")).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let suite = Suite::load(dir.path()).unwrap();
        let names: Vec<_> = suite.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        std::fs::write(dir.path().join("30-bad.yaml"), "- name: x\n").unwrap();
        std::fs::write(dir.path().join("40-bad.yaml"), "- name: y\n").unwrap();
        let e = Suite::load(dir.path()).unwrap_err();
        assert_eq!(e.0.len(), 6, "every error of every file: {e}");
        assert!(Suite::load(&dir.path().join("missing")).is_err());
    }
}
