//! The decision: first matching rule wins, granting what it allows of what was asked.

use super::{AccessRequest, Acl, Grant, Rule};

impl Acl {
    /// Decides a request: the first rule (top to bottom, files in name order) whose
    /// `match` holds grants the intersection of its actions and the requested ones, in
    /// requested order; an empty grant from a matching rule is a deny that still names
    /// the rule. No matching rule: nothing granted, `rule: None`.
    pub fn decide(&self, req: &AccessRequest<'_>) -> Grant {
        match self.first_match(req) {
            Some(rule) => Grant {
                actions: rule.grant(req.actions),
                rule: Some(rule.origin.clone()),
            },
            None => Grant {
                actions: Vec::new(),
                rule: None,
            },
        }
    }

    /// The rule that decides `req`, without building a [`Grant`]; for `explain` and for
    /// callers that only need the origin.
    pub fn first_match(&self, req: &AccessRequest<'_>) -> Option<&Rule> {
        self.index.first_match(&self.rules, req)
    }

    /// [`Acl::first_match`] by scanning every rule, without the index: the reference the
    /// index is tested against, and the baseline of the scale benchmark.
    pub fn first_match_linear(&self, req: &AccessRequest<'_>) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches(req))
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use super::*;
    use crate::acl::Labels;

    fn acl(text: &str) -> Acl {
        match Acl::parse(text, Path::new("acl.yaml")) {
            Ok(loaded) => loaded.acl,
            Err(e) => panic!("{e}"),
        }
    }

    struct Req {
        account: String,
        labels: Labels,
        ip: Option<IpAddr>,
        service: String,
        kind: String,
        name: String,
        actions: Vec<&'static str>,
    }

    impl Req {
        fn new(account: &str, scope: &str) -> Req {
            let mut parts = scope.splitn(3, ':');
            let kind = parts.next().unwrap_or("").to_string();
            let name = parts.next().unwrap_or("").to_string();
            let actions = parts
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|a| !a.is_empty())
                .map(|a| -> &'static str { Box::leak(a.to_string().into_boxed_str()) })
                .collect();
            Req {
                account: account.into(),
                labels: Labels::new(),
                ip: None,
                service: "registry.example".into(),
                kind,
                name,
                actions,
            }
        }
        fn label(mut self, key: &str, values: &[&str]) -> Req {
            self.labels
                .insert(key.into(), values.iter().map(|s| s.to_string()).collect());
            self
        }
        fn ip(mut self, ip: &str) -> Req {
            self.ip = Some(ip.parse().unwrap());
            self
        }
        fn service(mut self, s: &str) -> Req {
            self.service = s.into();
            self
        }
        fn decide(&self, acl: &Acl) -> Grant {
            acl.decide(&AccessRequest {
                account: &self.account,
                labels: &self.labels,
                ip: self.ip,
                service: &self.service,
                kind: &self.kind,
                name: &self.name,
                actions: &self.actions,
            })
        }
        /// Granted actions, comma-joined.
        fn granted(&self, acl: &Acl) -> String {
            self.decide(acl).actions.join(",")
        }
    }

    const EXAMPLE: &str = r#"
- match: {account: admin}
  actions: ["*"]
  comment: admins do everything
- match: {account: "/.+/", name: "${account}/*"}
  actions: ["*"]
  comment: everyone owns their namespace
- match: {labels: {groups: builders}, name: "ci/*"}
  actions: [pull, push]
- match: {account: "", name: "public/*"}
  actions: [pull]
  comment: anonymous pulls of public/*
- match: {labels: {groups: auditors}, type: registry, name: catalog}
  actions: ["*"]
- match: {account: test}
  actions: []                   # empty: deny, and stop
- match: {name: "shared/**"}
  actions: [pull]
"#;

    #[test]
    fn the_design_document_example() {
        let acl = acl(EXAMPLE);
        assert_eq!(acl.len(), 7);
        assert_eq!(
            Req::new("admin", "repository:x/y:pull,push,delete").granted(&acl),
            "pull,push,delete"
        );
        assert_eq!(
            Req::new("alice", "repository:alice/app:push,pull").granted(&acl),
            "push,pull"
        );
        assert_eq!(
            Req::new("alice", "repository:bob/app:push").granted(&acl),
            ""
        );
        let g = Req::new("alice", "repository:alice/app:pull").decide(&acl);
        assert_eq!(
            g.rule.unwrap().to_string(),
            "acl.yaml:5 (everyone owns their namespace)"
        );
        let builder = Req::new("carol", "repository:ci/tool:pull,push,delete")
            .label("groups", &["x", "builders"]);
        assert_eq!(builder.granted(&acl), "pull,push");
        assert_eq!(
            Req::new("", "repository:public/base:pull,push").granted(&acl),
            "pull"
        );
        assert_eq!(
            Req::new("bob", "repository:public/base:pull").granted(&acl),
            ""
        );
        let auditor = Req::new("dave", "registry:catalog:*").label("groups", &["auditors"]);
        assert_eq!(auditor.granted(&acl), "*");
        assert_eq!(Req::new("dave", "registry:catalog:*").granted(&acl), "");
        // `test` owns test/* by rule 2, which comes first.
        assert_eq!(
            Req::new("test", "repository:test/x:pull").granted(&acl),
            "pull"
        );
        // Empty actions: deny and stop (the shared/** rule below is not reached).
        let g = Req::new("test", "repository:shared/x:pull").decide(&acl);
        assert_eq!(g.actions, Vec::<String>::new());
        assert_eq!(g.rule.unwrap().line, 15);
        assert_eq!(
            Req::new("eve", "repository:shared/a/b:pull").granted(&acl),
            "pull"
        );
    }

    #[test]
    fn no_match_is_deny_without_rule() {
        let acl = acl("- match: {account: admin}\n  actions: ['*']\n");
        let g = Req::new("bob", "repository:x:pull").decide(&acl);
        assert_eq!(
            g,
            Grant {
                actions: vec![],
                rule: None
            }
        );
        let empty = Acl::default();
        assert!(empty.is_empty());
        assert_eq!(
            Req::new("bob", "repository:x:pull").decide(&empty).rule,
            None
        );
    }

    #[test]
    fn first_match_wins() {
        let acl = acl(
            "- match: {name: 'a/*'}\n  actions: [pull]\n  comment: first\n\
             - match: {name: 'a/b'}\n  actions: [push]\n  comment: second\n",
        );
        let g = Req::new("x", "repository:a/b:pull,push").decide(&acl);
        assert_eq!(g.actions, vec!["pull"]);
        assert_eq!(g.rule.unwrap().comment.as_deref(), Some("first"));
    }

    #[test]
    fn intersection_keeps_requested_order_and_dedups() {
        let acl = acl("- match: {}\n  actions: [delete, pull, push]\n");
        assert_eq!(
            Req::new("x", "repository:a:push,pull,push,frob,*").granted(&acl),
            "push,pull"
        );
        let all = acl_all();
        assert_eq!(
            Req::new("x", "repository:a:delete,pull").granted(&all),
            "delete,pull"
        );
        assert_eq!(Req::new("x", "registry:catalog:*").granted(&all), "*");
    }

    fn acl_all() -> Acl {
        acl("- match: {}\n  actions: ['*']\n")
    }

    #[test]
    fn pull_does_not_grant_a_requested_star() {
        let acl = acl("- match: {type: registry}\n  actions: [pull, push, delete]\n");
        assert_eq!(Req::new("x", "registry:catalog:*").granted(&acl), "");
    }

    #[test]
    fn match_type_and_service() {
        let acl = acl("- match: {type: registry}\n  actions: ['*']\n\
             - match: {service: 'other.example'}\n  actions: [push]\n");
        assert_eq!(Req::new("x", "registry:catalog:*").granted(&acl), "*");
        assert_eq!(Req::new("x", "repository:catalog:*").granted(&acl), "");
        let r = Req::new("x", "repository:a:push").service("other.example");
        assert_eq!(r.granted(&acl), "push");
        assert_eq!(Req::new("x", "repository:a:push").granted(&acl), "");
    }

    #[test]
    fn match_ip() {
        let acl = acl("- match: {ip: 10.0.0.0/8}\n  actions: [pull]\n\
             - match: {ip: 192.168.1.7}\n  actions: [push]\n\
             - match: {ip: 'fd00::/8'}\n  actions: [delete]\n");
        let r = |ip: &str| {
            Req::new("x", "repository:a:pull,push,delete")
                .ip(ip)
                .granted(&acl)
        };
        assert_eq!(r("10.1.2.3"), "pull");
        assert_eq!(r("::ffff:10.1.2.3"), "pull");
        assert_eq!(r("11.0.0.1"), "");
        assert_eq!(r("192.168.1.7"), "push");
        assert_eq!(r("::ffff:192.168.1.7"), "push");
        assert_eq!(r("192.168.1.8"), "");
        assert_eq!(r("fd12::1"), "delete");
        assert_eq!(r("fe80::1"), "");
        // No known address never matches a rule with `ip`.
        assert_eq!(Req::new("x", "repository:a:pull").granted(&acl), "");
    }

    #[test]
    fn match_labels() {
        let acl = acl(
            "- match: {labels: {team: red, env: 'prod-*'}}\n  actions: [push]\n\
             - match: {labels: {team: '/bl.e/'}}\n  actions: [pull]\n",
        );
        let r = || Req::new("x", "repository:a:pull,push");
        assert_eq!(
            r().label("team", &["red"])
                .label("env", &["prod-eu"])
                .granted(&acl),
            "push"
        );
        // Multi-value: one matching value is enough, for each key.
        assert_eq!(
            r().label("team", &["green", "red"])
                .label("env", &["dev", "prod-us"])
                .granted(&acl),
            "push"
        );
        // Every key must hold.
        assert_eq!(r().label("team", &["red"]).granted(&acl), "");
        assert_eq!(
            r().label("team", &["red"])
                .label("env", &["dev"])
                .granted(&acl),
            ""
        );
        assert_eq!(r().label("team", &["blue"]).granted(&acl), "pull");
        assert_eq!(r().label("team", &["xblue"]).granted(&acl), "");
        assert_eq!(r().granted(&acl), "");
    }

    #[test]
    fn label_placeholder_in_name() {
        let acl = acl("- match: {name: '${labels:team}/*'}\n  actions: [push]\n");
        let r = |name: &str| {
            Req::new("x", &format!("repository:{name}:push")).label("team", &["red", "blue"])
        };
        assert_eq!(r("red/a").granted(&acl), "push");
        assert_eq!(r("blue/a").granted(&acl), "push");
        assert_eq!(r("green/a").granted(&acl), "");
        assert_eq!(Req::new("x", "repository:red/a:push").granted(&acl), "");
    }

    #[test]
    fn account_star_is_literal() {
        let acl = acl("- match: {name: '${account}/x'}\n  actions: [pull]\n");
        assert_eq!(Req::new("a*", "repository:ab/x:pull").granted(&acl), "");
        assert_eq!(Req::new("a*", "repository:a*/x:pull").granted(&acl), "pull");
    }

    #[test]
    fn acl_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Acl>();
        check::<crate::acl::Loaded>();
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decide_never_panics(
            pattern in "\\PC{0,16}",
            account in "\\PC{0,8}",
            name in "\\PC{0,16}",
            label in "\\PC{0,8}",
            actions in proptest::collection::vec("(pull|push|delete|\\*|\\PC{0,4})", 0..4),
            v6 in any::<u128>(),
        ) {
            let text = format!(
                "- match: {{name: {0:?}, account: {0:?}, labels: {{g: {0:?}}}}}\n  actions: ['*']\n\
                 - match: {{ip: '::/0', service: {0:?}}}\n  actions: [pull]\n",
                pattern
            );
            if let Ok(loaded) = Acl::parse(&text, Path::new("p.yaml")) {
                let mut labels = Labels::new();
                labels.insert("g".into(), vec![label.clone(), "x".into()]);
                let acts: Vec<&str> = actions.iter().map(|s| s.as_str()).collect();
                let g = loaded.acl.decide(&AccessRequest {
                    account: &account,
                    labels: &labels,
                    ip: Some(IpAddr::V6(v6.into())),
                    service: &label,
                    kind: "repository",
                    name: &name,
                    actions: &acts,
                });
                for a in &g.actions {
                    prop_assert!(acts.contains(&a.as_str()));
                }
            }
        }
    }
}
