//! Unreachable rules: a rule that can never decide anything because an earlier rule matches
//! every request it matches (first match wins), e.g. `{account: "/.+/"}` above
//! `{account: serviceaccount}`. Found at load and reported as warnings naming both rules.
//!
//! The test is *sound, not complete*: a warned rule is really unreachable (the property
//! tests check it with the matcher on generated requests), while some unreachable rules are
//! not found. Per key, the earlier rule covers the later one when it has no condition on
//! that key, the same pattern text (placeholders then stand for the same values), a pattern
//! without placeholders that matches the later rule's exact value, or an `ip` network that
//! contains the later one's.

use std::collections::HashMap;

use super::pattern::Pattern;
use super::rule::{Conditions, Rule};
use super::{AccessRequest, Labels};

/// Pairwise comparison is quadratic: above this many rules only rules with identical
/// conditions are reported (an ACL that large is generated, and the load must stay fast).
const PAIRWISE_LIMIT: usize = 2_000;

/// True when `wide` matches every value `narrow` matches, for every request.
pub fn pattern_covers(wide: &Pattern, narrow: &Pattern) -> bool {
    if wide.as_str() == narrow.as_str() {
        return true;
    }
    if wide.has_placeholders() {
        return false;
    }
    match narrow.literal() {
        // `wide` has no placeholders, so the request it is given does not matter.
        Some(value) => wide.matches(value, &any_request()),
        None => false,
    }
}

fn any_request() -> AccessRequest<'static> {
    static NO_LABELS: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    AccessRequest {
        account: "",
        labels: NO_LABELS.get_or_init(Labels::new),
        ip: None,
        service: "",
        kind: "",
        name: "",
        actions: &[],
    }
}

fn key_covers(wide: &Option<Pattern>, narrow: &Option<Pattern>) -> bool {
    match (wide, narrow) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(w), Some(n)) => pattern_covers(w, n),
    }
}

/// True when every request `narrow` matches is matched by `wide`.
pub fn conditions_cover(wide: &Conditions, narrow: &Conditions) -> bool {
    let ip = match (&wide.ip, &narrow.ip) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(w), Some(n)) => w.contains(n),
    };
    ip && key_covers(&wide.account, &narrow.account)
        && key_covers(&wide.kind, &narrow.kind)
        && key_covers(&wide.name, &narrow.name)
        && key_covers(&wide.service, &narrow.service)
        && wide.labels.iter().all(|(key, w)| {
            narrow
                .labels
                .iter()
                .any(|(k, n)| k == key && pattern_covers(w, n))
        })
}

/// For each rule that can never match, (its index, the index of an earlier rule that
/// matches everything it does), in rule order.
pub fn unreachable(rules: &[Rule]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    if rules.len() <= PAIRWISE_LIMIT {
        for (later, rule) in rules.iter().enumerate() {
            if let Some(earlier) = rules[..later]
                .iter()
                .position(|e| conditions_cover(&e.conditions, &rule.conditions))
            {
                found.push((later, earlier));
            }
        }
        return found;
    }
    let mut first: HashMap<String, usize> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        match first.entry(signature(&rule.conditions)) {
            std::collections::hash_map::Entry::Occupied(e) => found.push((i, *e.get())),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
        }
    }
    found
}

/// The conditions as written, so identical ones compare equal.
fn signature(c: &Conditions) -> String {
    let p = |p: &Option<Pattern>| p.as_ref().map_or("\u{0}".to_string(), |p| p.to_string());
    let mut labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!(
        "{}\u{1}{}\u{1}{}\u{1}{}\u{1}{:?}\u{1}{}",
        p(&c.account),
        p(&c.kind),
        p(&c.name),
        p(&c.service),
        c.ip,
        labels.join("\u{2}")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Acl;
    use std::net::IpAddr;
    use std::path::Path;

    fn rules(text: &str) -> Vec<Rule> {
        Acl::parse(text, Path::new("a.yaml"))
            .unwrap()
            .acl
            .rules()
            .to_vec()
    }

    fn pairs(text: &str) -> Vec<(usize, usize)> {
        unreachable(&rules(text))
    }

    #[test]
    fn common_shapes() {
        // The kwk seed config: /.+/ above serviceaccount.
        assert_eq!(
            pairs("- {match: {account: \"/.+/\"}, actions: [pull]}\n- {match: {account: serviceaccount}, actions: ['*']}\n"),
            vec![(1, 0)]
        );
        // Identical match, with placeholders.
        assert_eq!(
            pairs("- {match: {name: \"${account}/*\"}, actions: ['*']}\n- {match: {name: \"${account}/*\"}, actions: [pull]}\n"),
            vec![(1, 0)]
        );
        // No condition above: everything below is unreachable.
        assert_eq!(
            pairs("- {match: {}, actions: [pull]}\n- {match: {account: a}, actions: []}\n- {match: {ip: 10.0.0.0/8}, actions: []}\n"),
            vec![(1, 0), (2, 0)]
        );
        // Wider keys above: glob over exact, CIDR over a smaller CIDR, fewer labels.
        assert_eq!(
            pairs("- {match: {name: \"team/*\", ip: 10.0.0.0/8}, actions: [pull]}\n- {match: {name: team/app, ip: 10.1.0.0/16, account: x}, actions: ['*']}\n"),
            vec![(1, 0)]
        );
        assert_eq!(
            pairs("- {match: {labels: {g: \"/a.*/\"}}, actions: [pull]}\n- {match: {labels: {g: ab, h: x}}, actions: ['*']}\n"),
            vec![(1, 0)]
        );
        // Not covered: narrower above, disjoint, or a key only the earlier rule has.
        for text in [
            "- {match: {account: serviceaccount}, actions: ['*']}\n- {match: {account: \"/.+/\"}, actions: [pull]}\n",
            "- {match: {account: a}, actions: []}\n- {match: {account: b}, actions: []}\n",
            "- {match: {account: a, name: x}, actions: []}\n- {match: {account: a}, actions: []}\n",
            "- {match: {ip: 10.1.0.0/16}, actions: []}\n- {match: {ip: 10.0.0.0/8}, actions: []}\n",
            "- {match: {name: \"${account}/*\"}, actions: []}\n- {match: {name: alice/x}, actions: []}\n",
            "- {match: {account: \"/.+/\"}, actions: []}\n- {match: {account: \"\"}, actions: []}\n",
            "- {match: {labels: {g: a}}, actions: []}\n- {match: {labels: {h: a}}, actions: []}\n",
        ] {
            assert_eq!(pairs(text), vec![], "{text}");
        }
    }

    // Small alphabets, so that generated rules and requests often meet.
    const VALUES: &[&str] = &["", "a", "b", "ab", "a/b", "a/b/c", "b/a"];
    const PATTERNS: &[&str] = &[
        "a",
        "b",
        "ab",
        "a/b",
        "\"\"",
        "\"*\"",
        "\"a*\"",
        "\"a/*\"",
        "\"**\"",
        "\"a/**\"",
        "\"/.+/\"",
        "\"/.*/\"",
        "\"/a.*/\"",
        "\"/[ab]+/\"",
        "\"${account}\"",
        "\"${account}/*\"",
        "\"${labels:g}\"",
        "\"${labels:g}/**\"",
    ];
    const NETS: &[&str] = &["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "192.168.0.0/16"];
    const IPS: &[&str] = &["10.1.2.3", "10.9.9.9", "192.168.1.1", "127.0.0.1"];

    fn rule_text(keys: &[(usize, usize)], ip: Option<usize>, label: Option<usize>) -> String {
        let mut m: Vec<String> = keys
            .iter()
            .map(|&(k, p)| format!("{}: {}", ["account", "name", "service"][k], PATTERNS[p]))
            .collect();
        m.sort();
        m.dedup_by(|a, b| a.split(':').next() == b.split(':').next());
        if let Some(i) = ip {
            m.push(format!("ip: {}", NETS[i]));
        }
        if let Some(l) = label {
            m.push(format!("labels: {{g: {}}}", PATTERNS[l]));
        }
        format!("- {{match: {{{}}}, actions: [pull]}}\n", m.join(", "))
    }

    /// Every request over the alphabets.
    fn every_request(mut check: impl FnMut(&AccessRequest<'_>)) {
        let label_sets: Vec<Labels> = vec![
            Labels::new(),
            [("g".to_string(), vec!["a".to_string()])].into(),
            [("g".to_string(), vec!["b".to_string(), "a/b".to_string()])].into(),
        ];
        for account in VALUES {
            for name in VALUES {
                for service in ["a", "b"] {
                    for ip in IPS
                        .iter()
                        .map(|i| Some(i.parse::<IpAddr>().unwrap()))
                        .chain([None])
                    {
                        for labels in &label_sets {
                            check(&AccessRequest {
                                account,
                                labels,
                                ip,
                                service,
                                kind: "repository",
                                name,
                                actions: &["pull"],
                            });
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// A warned rule is really unreachable: every request it matches, the earlier rule
        /// named in the warning matches too.
        #[test]
        fn a_warned_rule_is_really_unreachable(
            a in proptest::collection::vec((0..3usize, 0..PATTERNS.len()), 0..3),
            b in proptest::collection::vec((0..3usize, 0..PATTERNS.len()), 0..3),
            ip_a in proptest::option::of(0..NETS.len()),
            ip_b in proptest::option::of(0..NETS.len()),
            l_a in proptest::option::of(0..PATTERNS.len()),
            l_b in proptest::option::of(0..PATTERNS.len()),
        ) {
            let text = format!("{}{}", rule_text(&a, ip_a, l_a), rule_text(&b, ip_b, l_b));
            let rules = rules(&text);
            if unreachable(&rules) == vec![(1, 0)] {
                every_request(|req| {
                    if rules[1].matches(req) {
                        assert!(rules[0].matches(req), "{text}: {req:?}");
                    }
                });
            }
        }
    }

    #[test]
    fn exhaustive_pairs_of_single_key_rules() {
        // Every pair of one-key rules over the alphabet: a warning implies unreachability.
        let mut warned = 0;
        for w in 0..PATTERNS.len() {
            for n in 0..PATTERNS.len() {
                for key in 0..3 {
                    let text = format!(
                        "{}{}",
                        rule_text(&[(key, w)], None, None),
                        rule_text(&[(key, n)], None, None)
                    );
                    let rules = rules(&text);
                    if unreachable(&rules) == vec![(1, 0)] {
                        warned += 1;
                        every_request(|req| {
                            if rules[1].matches(req) {
                                assert!(rules[0].matches(req), "{text}: {req:?}");
                            }
                        });
                    }
                }
            }
        }
        assert!(warned > PATTERNS.len() * 3, "only {warned} warnings");
    }

    #[test]
    fn large_acls_report_identical_rules_only() {
        let mut text = String::new();
        for i in 0..PAIRWISE_LIMIT + 10 {
            text.push_str(&format!(
                "- {{match: {{account: u{i}}}, actions: [pull]}}\n"
            ));
        }
        text.push_str("- {match: {account: u7}, actions: ['*']}\n");
        assert_eq!(pairs(&text), vec![(PAIRWISE_LIMIT + 10, 7)]);
    }
}
