//! Deciding each case with the proxy's own matcher ([`crate::explain`], which asks
//! [`crate::acl::Acl::decide`] exactly as a request does) and reporting the result.

use std::fmt;
use std::path::Path;

use super::{Case, Suite};
use crate::acl::{Acl, Labels, RuleOrigin};
use crate::diagnostic::Diagnostic;
use crate::explain::{self, Asker};

/// How one case came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult<'a> {
    /// The case.
    pub case: &'a Case,
    /// What the ACL granted.
    pub granted: Vec<String>,
    /// The rule that decided; `None` when no rule matched.
    pub rule: Option<RuleOrigin>,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

impl CaseResult<'_> {
    /// True when the case holds.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The failure as a located diagnostic (the case's own file and line, key `acl_tests`),
    /// so `check`, a refused start and a refused reload say where the broken promise is.
    pub fn diagnostic(&self) -> Option<Diagnostic> {
        let failure = self.failure.as_ref()?;
        Some(
            Diagnostic::new(
                &*self.case.file,
                format!("ACL test {:?} failed: {failure}", self.case.name),
            )
            .at_line(self.case.line)
            .key("acl_tests"),
        )
    }
}

impl fmt::Display for CaseResult<'_> {
    /// `PASS tests/acl.yaml:2 ci never deletes in prod: granted pull,push; decided by …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        write!(
            f,
            "{verdict} {}:{} {}: granted {}; expected {}; {}",
            self.case.file.display(),
            self.case.line,
            self.case.name,
            actions(&self.granted),
            actions(&self.case.expect),
            decided_by(self.rule.as_ref()),
        )?;
        if let (Some(want), false) = (&self.case.rule, self.passed()) {
            write!(f, "; expected rule {want}")?;
        }
        Ok(())
    }
}

/// Every case's result, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    /// One per case.
    pub results: Vec<CaseResult<'a>>,
}

impl Report<'_> {
    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed()).count()
    }

    /// Cases that held.
    pub fn passed(&self) -> usize {
        self.results.len() - self.failed()
    }

    /// `12 passed, 1 failed`, the summary line.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Decides every case of `suite` under `acl`. `labels_of` gives an account's own labels (from
/// the users file) for cases that do not state theirs; `service` is what `service:` rules see.
pub fn run<'a>(
    suite: &'a Suite,
    acl: &Acl,
    labels_of: &dyn Fn(&str) -> Labels,
    service: &str,
) -> Report<'a> {
    let results = suite
        .cases
        .iter()
        .map(|case| {
            let own;
            let labels = match &case.labels {
                Some(labels) => labels,
                None => {
                    own = labels_of(&case.account);
                    &own
                }
            };
            let asker = Asker {
                account: &case.account,
                labels,
                ip: case.ip,
                service,
            };
            let answer = explain::explain(acl, asker, &case.scope);
            let failure = judge(case, &answer.granted, answer.rule.as_ref());
            CaseResult {
                case,
                granted: answer.granted,
                rule: answer.rule,
                failure,
            }
        })
        .collect();
    Report { results }
}

/// Why the answer breaks the case, if it does.
fn judge(case: &Case, granted: &[String], rule: Option<&RuleOrigin>) -> Option<String> {
    let mut got: Vec<&str> = granted.iter().map(String::as_str).collect();
    let mut want: Vec<&str> = case.expect.iter().map(String::as_str).collect();
    got.sort_unstable();
    got.dedup();
    want.sort_unstable();
    want.dedup();
    if got != want {
        return Some(format!(
            "granted {}, expected {} ({})",
            actions(granted),
            actions(&case.expect),
            decided_by(rule)
        ));
    }
    if let Some(want_rule) = &case.rule {
        if !rule.is_some_and(|r| same_rule(r, want_rule)) {
            return Some(format!(
                "{}, expected the rule at {want_rule}",
                decided_by(rule)
            ));
        }
    }
    None
}

/// Whether `origin` is the rule written `file:line`, the file matched by its trailing path
/// components (`acl/20-ci.yaml` matches `/etc/portcullis/acl/20-ci.yaml`).
fn same_rule(origin: &RuleOrigin, reference: &str) -> bool {
    let Some((file, line)) = reference.rsplit_once(':') else {
        return false;
    };
    if line.parse::<usize>().ok() != Some(origin.line) {
        return false;
    }
    let want: Vec<_> = Path::new(file)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let have: Vec<_> = origin.file.components().collect();
    have.len() >= want.len() && have[have.len() - want.len()..] == want[..]
}

fn actions(list: &[String]) -> String {
    if list.is_empty() {
        "nothing".to_owned()
    } else {
        list.join(",")
    }
}

fn decided_by(rule: Option<&RuleOrigin>) -> String {
    match rule {
        Some(rule) => format!("decided by {rule}"),
        None => "no rule matched".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Acl;

    const ACL: &str = "- match: {account: admin}\n  actions: [\"*\"]\n  comment: admins\n- match: {account: ci, name: \"prod/*\"}\n  actions: [pull, push]\n- match: {labels: {groups: deploy}, name: \"stage/*\"}\n  actions: [pull, push, delete]\n- match: {ip: 10.0.0.0/8, name: \"internal/*\"}\n  actions: [pull]\n- match: {account: \"\", name: \"public/*\"}\n  actions: [pull]\n";

    fn acl() -> Acl {
        Acl::parse(ACL, Path::new("/etc/portcullis/acl/20-ci.yaml"))
            .unwrap()
            .acl
    }

    fn suite(text: &str) -> Suite {
        Suite::parse(text, Path::new("tests/acl.yaml")).unwrap()
    }

    fn no_labels(_: &str) -> Labels {
        Labels::new()
    }

    fn outcome(text: &str, labels_of: &dyn Fn(&str) -> Labels) -> Vec<Option<String>> {
        let s = suite(text);
        run(&s, &acl(), labels_of, "Docker registry")
            .results
            .into_iter()
            .map(|r| r.failure)
            .collect()
    }

    #[test]
    fn exact_grants_pass_and_anything_else_fails() {
        let text = "\
- {name: ci pushes prod, account: ci, scope: \"repository:prod/api:pull,push,delete\", expect: [push, pull], rule: acl/20-ci.yaml:4}
- {name: ci may not delete, account: ci, scope: \"repository:prod/api:delete\", expect: []}
- {name: too little expected, account: ci, scope: \"repository:prod/api:pull,push\", expect: [pull]}
- {name: too much expected, account: ci, scope: \"repository:prod/api:pull,push,delete\", expect: [pull, push, delete]}
- {name: wrong rule, account: admin, scope: \"repository:prod/api:pull\", expect: [pull], rule: acl/20-ci.yaml:4}
- {name: right rule, account: admin, scope: \"registry:catalog:*\", expect: [\"*\"], rule: 20-ci.yaml:1}
- {name: rule in another folder, account: admin, scope: \"repository:a:pull\", expect: [pull], rule: other/20-ci.yaml:1}
- {name: anonymous, account: anonymous, scope: \"repository:public/x:pull,push\", expect: [pull]}
";
        let got = outcome(text, &no_labels);
        assert_eq!(got[0], None);
        assert_eq!(got[1], None);
        assert_eq!(
            got[2].as_deref(),
            Some("granted pull,push, expected pull (decided by /etc/portcullis/acl/20-ci.yaml:4)")
        );
        assert!(got[3]
            .as_deref()
            .unwrap()
            .starts_with("granted pull,push, expected pull,push,delete"));
        assert_eq!(
            got[4].as_deref(),
            Some("decided by /etc/portcullis/acl/20-ci.yaml:1 (admins), expected the rule at acl/20-ci.yaml:4")
        );
        assert_eq!(got[5], None);
        assert!(got[6].is_some(), "the folder is part of the reference");
        assert_eq!(got[7], None);
    }

    #[test]
    fn labels_come_from_the_case_or_the_account() {
        let text = "\
- {name: stated labels, account: bot, labels: {groups: [x, deploy]}, scope: \"repository:stage/a:delete\", expect: [delete]}
- {name: own labels, account: deployer, scope: \"repository:stage/a:delete\", expect: [delete]}
- {name: nobody's labels, account: other, scope: \"repository:stage/a:delete\", expect: []}
- {name: stated labels replace own ones, account: deployer, labels: {}, scope: \"repository:stage/a:delete\", expect: []}
";
        let labels_of = |account: &str| {
            let mut l = Labels::new();
            if account == "deployer" {
                l.insert("groups".into(), vec!["deploy".into()]);
            }
            l
        };
        assert_eq!(outcome(text, &labels_of), vec![None, None, None, None]);
    }

    #[test]
    fn addresses_decide_ip_rules() {
        let text = "\
- {name: inside, account: x, ip: 10.1.2.3, scope: \"repository:internal/a:pull\", expect: [pull]}
- {name: outside, account: x, ip: 192.0.2.1, scope: \"repository:internal/a:pull\", expect: []}
- {name: unknown, account: x, scope: \"repository:internal/a:pull\", expect: []}
";
        assert_eq!(outcome(text, &no_labels), vec![None, None, None]);
    }

    #[test]
    fn report_lines_and_diagnostics() {
        let s = suite("- {name: ci may delete, account: ci, scope: \"repository:prod/api:delete\", expect: [delete]}\n- {name: ok, account: ci, scope: \"repository:prod/api:pull\", expect: [pull]}\n");
        let report = run(&s, &acl(), &no_labels, "Docker registry");
        assert_eq!(report.summary(), "1 passed, 1 failed");
        assert_eq!(
            report.results[0].to_string(),
            "FAIL tests/acl.yaml:1 ci may delete: granted nothing; expected delete; decided by /etc/portcullis/acl/20-ci.yaml:4"
        );
        assert!(report.results[1]
            .to_string()
            .starts_with("PASS tests/acl.yaml:2 ok: granted pull"));
        let d = report.results[0].diagnostic().unwrap();
        assert_eq!(
            d.to_string(),
            "tests/acl.yaml:1: acl_tests: ACL test \"ci may delete\" failed: granted nothing, expected delete (decided by /etc/portcullis/acl/20-ci.yaml:4)"
        );
        assert!(report.results[1].diagnostic().is_none());
    }
}
