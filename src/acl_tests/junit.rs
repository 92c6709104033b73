//! The report as JUnit XML, the format CI systems (GitHub Actions reporters, GitLab's
//! `artifacts:reports:junit`, Jenkins) show test results in. Written with nextest's
//! `quick-junit`, so escaping and the schema are somebody's tested code, not ours.

use quick_junit::{NonSuccessKind, Report as JUnit, TestCase, TestCaseStatus, TestSuite};

use super::Report;

/// One `<testsuite name="portcullis ACL">` with a `<testcase>` per case: `classname` is the
/// case's `file:line`, a failure carries the message and what was granted.
pub fn to_xml(report: &Report<'_>) -> String {
    let mut suite = TestSuite::new("portcullis ACL");
    for result in &report.results {
        let status = match &result.failure {
            None => TestCaseStatus::success(),
            Some(failure) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(failure.as_str());
                status.set_description(result.to_string());
                status
            }
        };
        let mut case = TestCase::new(result.case.name.as_str(), status);
        case.set_classname(format!(
            "{}:{}",
            result.case.file.display(),
            result.case.line
        ));
        suite.add_test_case(case);
    }
    let mut junit = JUnit::new("portcullis test");
    junit.add_test_suite(suite);
    // Serialising owned strings into memory cannot fail.
    junit.to_string().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Acl, Labels};
    use crate::acl_tests::{run, Suite};
    use std::path::Path;

    #[test]
    fn failures_are_counted_and_escaped() {
        let acl = Acl::parse(
            "- match: {account: a}\n  actions: [pull]\n  comment: \"<readers & co>\"\n",
            Path::new("acl.yaml"),
        )
        .unwrap()
        .acl;
        let suite = Suite::parse(
            "- {name: \"a <pulls>\", account: a, scope: \"repository:x:pull\", expect: [pull]}\n- {name: a pushes, account: a, scope: \"repository:x:push\", expect: [push]}\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let report = run(&suite, &acl, &|_| Labels::new(), "s");
        let xml = to_xml(&report);
        assert!(xml.contains("tests=\"2\""), "{xml}");
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"a &lt;pulls&gt;\""), "{xml}");
        assert!(xml.contains("classname=\"t.yaml:2\""), "{xml}");
        assert!(!xml.contains("<readers"), "{xml}");
    }
}
