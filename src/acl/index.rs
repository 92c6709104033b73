//! An index over the rules so that a decision looks only at rules that could match.
//!
//! First match wins, so the index must never change *which* rule decides: a rule may be
//! skipped only when one of its conditions provably fails for the request. Each rule is
//! filed under exactly one key it *requires*, chosen in this order:
//!
//! 1. `account` is exact → by that account;
//! 2. `name` is exact → by that name;
//! 3. `name` has a literal prefix (glob up to its first metacharacter, regex prefix
//!    literals) → by that prefix;
//! 4. `account` has a literal prefix → by that prefix;
//! 5. `name` starts with `${account}` and a literal (`${account}/*`) → in the group of
//!    that literal, taken when the request's name starts with its account and the literal;
//! 6. a `labels` value is exact → by label key and value;
//! 7. otherwise the rule is always a candidate.
//!
//! A decision gathers the (few) buckets the request's values select, each a list of rule
//! numbers in ascending order, and walks them merged in rule order, checking every
//! candidate with the full [`Rule::matches`]: the first that matches is exactly the rule a
//! linear scan would have found, because every rule before it that was not a candidate
//! cannot match.

use std::collections::HashMap;

use super::{AccessRequest, Rule};

/// Rules by a literal their value must start with; looked up with every prefix of the
/// request's value whose length is one of the keys' lengths.
#[derive(Debug, Clone, Default)]
struct PrefixMap {
    map: HashMap<Box<str>, Vec<u32>>,
    /// Distinct key lengths in bytes, ascending.
    lens: Vec<usize>,
}

impl PrefixMap {
    fn insert(&mut self, key: String, rule: u32) {
        if let Err(at) = self.lens.binary_search(&key.len()) {
            self.lens.insert(at, key.len());
        }
        self.map.entry(key.into()).or_default().push(rule);
    }

    fn lookup<'a>(&'a self, value: &str, out: &mut Vec<&'a [u32]>) {
        for &len in &self.lens {
            if len > value.len() {
                break;
            }
            if let Some(key) = value.get(..len) {
                if let Some(rules) = self.map.get(key) {
                    out.push(rules);
                }
            }
        }
    }
}

/// The buckets; rule numbers are positions in [`super::Acl::rules`].
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    account: HashMap<Box<str>, Vec<u32>>,
    name: HashMap<Box<str>, Vec<u32>>,
    name_prefix: PrefixMap,
    account_prefix: PrefixMap,
    /// `${account}<literal>…` names: (literal, rules).
    owned: Vec<(Box<str>, Vec<u32>)>,
    /// label key → value → rules.
    labels: HashMap<Box<str>, HashMap<Box<str>, Vec<u32>>>,
    /// Rules with no usable key: candidates for every request.
    rest: Vec<u32>,
}

impl Index {
    /// Files every rule under one key it requires (see the module documentation).
    pub(super) fn build(rules: &[Rule]) -> Index {
        let mut index = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^32 rules");
            let c = &rule.conditions;
            if let Some(account) = c.account.as_ref().and_then(|p| p.literal()) {
                index.account.entry(account.into()).or_default().push(i);
                continue;
            }
            if let Some(name) = c.name.as_ref().and_then(|p| p.literal()) {
                index.name.entry(name.into()).or_default().push(i);
                continue;
            }
            let prefix = c
                .name
                .as_ref()
                .map(|p| p.required_prefix())
                .unwrap_or_default();
            if !prefix.is_empty() {
                index.name_prefix.insert(prefix, i);
                continue;
            }
            let prefix = c
                .account
                .as_ref()
                .map(|p| p.required_prefix())
                .unwrap_or_default();
            if !prefix.is_empty() {
                index.account_prefix.insert(prefix, i);
                continue;
            }
            if let Some(literal) = c.name.as_ref().and_then(|p| p.account_prefixed()) {
                match index.owned.iter_mut().find(|(l, _)| **l == *literal) {
                    Some((_, list)) => list.push(i),
                    None => index.owned.push((literal.into(), vec![i])),
                }
                continue;
            }
            if let Some((key, value)) = c
                .labels
                .iter()
                .find_map(|(k, p)| p.literal().map(|v| (k, v)))
            {
                index
                    .labels
                    .entry(key.as_str().into())
                    .or_default()
                    .entry(value.into())
                    .or_default()
                    .push(i);
                continue;
            }
            index.rest.push(i);
        }
        index
    }

    /// The buckets that may hold a rule matching `req`; together they hold every such rule.
    fn candidates<'a>(&'a self, req: &AccessRequest<'_>, out: &mut Vec<&'a [u32]>) {
        if let Some(rules) = self.account.get(req.account) {
            out.push(rules);
        }
        if let Some(rules) = self.name.get(req.name) {
            out.push(rules);
        }
        self.name_prefix.lookup(req.name, out);
        self.account_prefix.lookup(req.account, out);
        if let Some(after) = req.name.strip_prefix(req.account) {
            for (literal, rules) in &self.owned {
                if after.starts_with(&**literal) {
                    out.push(rules);
                }
            }
        }
        if !self.labels.is_empty() {
            for (key, values) in req.labels {
                if let Some(by_value) = self.labels.get(key.as_str()) {
                    for v in values {
                        if let Some(rules) = by_value.get(v.as_str()) {
                            out.push(rules);
                        }
                    }
                }
            }
        }
        if !self.rest.is_empty() {
            out.push(&self.rest);
        }
    }

    /// The first rule (in rule order) among the candidates that matches `req`.
    pub(super) fn first_match<'r>(
        &self,
        rules: &'r [Rule],
        req: &AccessRequest<'_>,
    ) -> Option<&'r Rule> {
        let mut lists: Vec<&[u32]> = Vec::with_capacity(8);
        self.candidates(req, &mut lists);
        match lists.len() {
            0 => None,
            1 => lists[0]
                .iter()
                .map(|&i| &rules[i as usize])
                .find(|r| r.matches(req)),
            _ => {
                // A k-way merge by smallest head; k is small (a handful of buckets). The same
                // bucket can be selected twice (a label value listed twice), hence `last`.
                let mut last = None;
                loop {
                    let (which, &head) = lists
                        .iter()
                        .enumerate()
                        .filter_map(|(k, l)| l.first().map(|h| (k, h)))
                        .min_by_key(|&(_, h)| *h)?;
                    lists[which] = &lists[which][1..];
                    if last == Some(head) {
                        continue;
                    }
                    last = Some(head);
                    let rule = &rules[head as usize];
                    if rule.matches(req) {
                        return Some(rule);
                    }
                }
            }
        }
    }

    /// How the rules were filed, for the scale benchmark and `check`-style summaries:
    /// (bucketed by a key, always candidates).
    pub(super) fn stats(&self) -> (usize, usize) {
        let count = |m: &HashMap<Box<str>, Vec<u32>>| m.values().map(Vec::len).sum::<usize>();
        let keyed = count(&self.account)
            + count(&self.name)
            + count(&self.name_prefix.map)
            + count(&self.account_prefix.map)
            + self.owned.iter().map(|(_, l)| l.len()).sum::<usize>()
            + self.labels.values().map(count).sum::<usize>();
        (keyed, self.rest.len())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use crate::acl::{AccessRequest, Acl, Labels};

    /// Patterns from small alphabets, so that random rules and requests often meet.
    const ACCOUNTS: &[&str] = &[
        "",
        "a",
        "ab",
        "b",
        "a*",
        "/a.*/",
        "/(a|b)b?/",
        "/.+/",
        "a?",
        "[ab]",
        "${name}",
    ];
    const NAMES: &[&str] = &[
        "a",
        "a/b",
        "ab/c",
        "b/a",
        "a/*",
        "a*",
        "*",
        "**",
        "a/**",
        "[ab]/*",
        "?b/*",
        "\\a/b",
        "/a.*/",
        "/(a|ab)/.*/",
        "/a/[bc]/",
        "/(?i)A/B/",
        "/.*b/",
        "${account}/*",
        "${account}",
        "${account}b/**",
        "${account}/${labels:g}",
        "${labels:g}/*",
        "/${account}.*/",
        "catalog",
    ];
    const LABELS: &[&str] = &["a", "b", "a*", "/a|b/"];
    const REQ_ACCOUNTS: &[&str] = &["", "a", "ab", "b", "a*", "c"];
    const REQ_NAMES: &[&str] = &[
        "a", "a/b", "ab/c", "b/a", "a/c", "ab/b/c", "a*/x", "b", "A/B", "c/b", "catalog", "",
    ];

    fn rule_text(
        account: Option<usize>,
        name: Option<usize>,
        label: Option<usize>,
        registry: bool,
        action: usize,
    ) -> String {
        let mut m = Vec::new();
        if let Some(a) = account {
            m.push(format!("account: {:?}", ACCOUNTS[a % ACCOUNTS.len()]));
        }
        if let Some(n) = name {
            m.push(format!("name: {:?}", NAMES[n % NAMES.len()]));
        }
        if let Some(l) = label {
            m.push(format!("labels: {{g: {:?}}}", LABELS[l % LABELS.len()]));
        }
        if registry {
            m.push("type: registry".into());
        }
        let actions = ["[]", "[pull]", "[push]", "['*']"][action % 4];
        format!("- match: {{{}}}\n  actions: {actions}\n", m.join(", "))
    }

    fn rules_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            (
                proptest::option::of(0..ACCOUNTS.len()),
                proptest::option::of(0..NAMES.len()),
                proptest::option::weighted(0.3, 0..LABELS.len()),
                proptest::bool::weighted(0.1),
                0..4usize,
            ),
            0..40,
        )
        .prop_map(|rules| {
            rules
                .into_iter()
                .map(|(a, n, l, r, act)| rule_text(a, n, l, r, act))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn indexed_decide_equals_linear_scan(
            text in rules_strategy(),
            requests in proptest::collection::vec(
                (
                    0..REQ_ACCOUNTS.len(),
                    0..REQ_NAMES.len(),
                    proptest::collection::vec(0..3usize, 0..3),
                    proptest::bool::weighted(0.1),
                ),
                1..24,
            ),
        ) {
            let acl = Acl::parse(&text, Path::new("p.yaml")).unwrap().acl;
            for (a, n, label_values, registry) in requests {
                let mut labels = Labels::new();
                if !label_values.is_empty() {
                    labels.insert(
                        "g".into(),
                        label_values.iter().map(|&v| ["a", "b", "c"][v].to_string()).collect(),
                    );
                }
                let req = AccessRequest {
                    account: REQ_ACCOUNTS[a],
                    labels: &labels,
                    ip: None,
                    service: "s",
                    kind: if registry { "registry" } else { "repository" },
                    name: REQ_NAMES[n],
                    actions: &["pull", "push"],
                };
                let indexed = acl.first_match(&req).map(|r| r.origin.line);
                let linear = acl.first_match_linear(&req).map(|r| r.origin.line);
                prop_assert_eq!(indexed, linear, "request {:?}\n{}", req, text);
            }
        }
    }

    #[test]
    fn rules_are_filed_under_required_literals() {
        let text = "- match: {account: alice}\n  actions: ['*']\n\
                    - match: {name: team/app}\n  actions: [pull]\n\
                    - match: {name: 'team/*'}\n  actions: [pull]\n\
                    - match: {name: '/svc-[0-9]+/.*/'}\n  actions: [pull]\n\
                    - match: {account: '/ci-.*/'}\n  actions: [pull]\n\
                    - match: {account: '/.+/', name: '${account}/*'}\n  actions: ['*']\n\
                    - match: {labels: {groups: builders}}\n  actions: [push]\n\
                    - match: {account: '/.+/'}\n  actions: []\n";
        let acl = Acl::parse(text, Path::new("a.yaml")).unwrap().acl;
        assert_eq!(acl.index_stats(), (7, 1));
        let idx = &acl.index;
        assert!(idx.account.contains_key("alice"));
        assert!(idx.name.contains_key("team/app"));
        assert!(idx.name_prefix.map.contains_key("team/"));
        assert!(idx.name_prefix.map.contains_key("svc-"));
        assert!(idx.account_prefix.map.contains_key("ci-"));
        assert_eq!(&*idx.owned[0].0, "/");
        assert!(idx.labels["groups"].contains_key("builders"));
    }
}
