//! Loading ACL rules from a file or a folder, with every error located at file:line:column.
//!
//! Each file is read twice: serde_yaml_ng (libyaml) decides whether it is valid YAML and
//! locates syntax errors; [`crate::yaml::parse_marked`] then gives the position of every
//! key and value, so that semantic errors (unknown key, bad CIDR, unknown action) point at
//! the exact spot. All errors of all files are reported together.
//!
//! Strictness, where docker_auth is lenient: unknown keys in a rule or in `match` are
//! errors (a misspelt match key would otherwise turn the rule into "match everything"),
//! a `null` match value is an error (write `""` for anonymous, or drop the key), a top-level
//! mapping without `acl:` is an error, and `match`/`actions` are both required.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pattern::Compiled;
use super::rule::{parse_ip_condition, Conditions, Rule, RuleActions};
use super::{Acl, Loaded, Pattern, RuleOrigin};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::yaml::{self, Node, NodeKind};

/// Collects rules, errors and warnings across the files of one load.
struct Sink {
    rules: Vec<Rule>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

/// Regular expressions compiled so far in one load, by source text, shared by the threads
/// of [`parse_all`]: large ACLs repeat the same values (`/.+/`, a team's regex) thousands
/// of times, and a regex costs ~50 µs and ~12 KiB to compile; a repeat shares it.
type RegexCache = std::sync::Mutex<HashMap<String, Compiled>>;

impl Sink {
    fn new() -> Sink {
        Sink {
            rules: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn finish(mut self) -> Result<Loaded, Diagnostics> {
        if self.errors.is_empty() {
            for (later, earlier) in super::shadow::unreachable(&self.rules) {
                let (l, e) = (&self.rules[later].origin, &self.rules[earlier].origin);
                self.warnings.push(
                    Diagnostic::new(&*l.file, format!(
                        "this rule can never match: the rule at {}:{} above matches every request it does (first match wins); remove it or move it above",
                        e.file.display(),
                        e.line
                    ))
                    .at_line(l.line),
                );
            }
            Ok(Loaded {
                acl: Acl::from_rules(self.rules),
                warnings: self.warnings,
            })
        } else {
            Err(Diagnostics(self.errors))
        }
    }
}

/// Per-file context for building located diagnostics.
struct FileCx<'s> {
    file: Arc<Path>,
    sink: &'s mut Sink,
    regexes: &'s RegexCache,
}

impl FileCx<'_> {
    fn diag(&self, node: &Node, key: &str, message: impl Into<String>) -> Diagnostic {
        let d = Diagnostic::new(&*self.file, message).at(node.line, node.column);
        if key.is_empty() {
            d
        } else {
            d.key(key)
        }
    }

    fn error(&mut self, node: &Node, key: &str, message: impl Into<String>) {
        let d = self.diag(node, key, message);
        self.sink.errors.push(d);
    }

    fn warn(&mut self, node: &Node, key: &str, message: impl Into<String>) {
        let d = self.diag(node, key, message);
        self.sink.warnings.push(d);
    }
}

/// Parses one file's text (see [`Acl::parse`]).
pub(super) fn parse(text: &str, file: &Path) -> Result<Loaded, Diagnostics> {
    let mut sink = Sink::new();
    parse_all(vec![Ok((Arc::from(file), text.to_string()))], &mut sink);
    sink.finish()
}

/// Loads a file or a folder (see [`Acl::load`]).
pub(super) fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    let mut sink = Sink::new();
    let files = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => list_dir(path, &mut sink),
        Ok(_) => vec![path.to_path_buf()],
        Err(e) => {
            sink.errors
                .push(Diagnostic::new(path, format!("cannot read ACL: {e}")));
            Vec::new()
        }
    };
    let sources = files.iter().map(|p| read_file(p)).collect();
    parse_all(sources, &mut sink);
    if sink.rules.is_empty() && sink.errors.is_empty() && sink.warnings.is_empty() {
        // As for an empty folder: an empty file (or `acl: []`) is allowed, but it is far more
        // often a truncated or wrong file than a wish to deny everything.
        sink.warnings.push(Diagnostic::new(
            path,
            "no rules in the ACL: every request will be denied",
        ));
    }
    sink.finish()
}

/// One file's text, or the error that stopped it from being read.
type Source = Result<(Arc<Path>, String), Diagnostic>;

fn read_file(path: &Path) -> Source {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok((Arc::from(path), text)),
            Err(e) => Err(Diagnostic::new(
                path,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            )),
        },
        Err(e) => Err(Diagnostic::new(path, format!("cannot read ACL file: {e}"))),
    }
}

/// Below this much YAML, files are parsed on the calling thread: threads cost more than
/// they save.
const PARALLEL_BYTES: usize = 256 * 1024;

/// Parses every file into `sink`, in order. Each file is two independent jobs: the syntax
/// check with serde_yaml_ng (the reference for "is this valid YAML", which also catches
/// duplicate keys) and the marked parse + rule compilation. For a large ACL the jobs of
/// all files run on up to one thread per CPU (a 100 000-rule ACL is several MiB of YAML),
/// and the results are merged in file order, so rules, errors and warnings come out
/// exactly as a sequential load would give them.
fn parse_all(sources: Vec<Source>, sink: &mut Sink) {
    let total: usize = sources
        .iter()
        .map(|s| s.as_ref().map_or(0, |(_, t)| t.len()))
        .sum();
    let jobs = sources.len() * 2;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs);
    let check = |text: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).err();
    let regexes = RegexCache::default();
    let build = |file: &Arc<Path>, text: &str| {
        let mut out = Sink::new();
        build_rules(text, file.clone(), &mut out, &regexes);
        out
    };
    let mut checked: Vec<Option<serde_yaml_ng::Error>> = Vec::with_capacity(sources.len());
    let mut built: Vec<Option<Sink>> = Vec::with_capacity(sources.len());
    if threads <= 1 || total < PARALLEL_BYTES {
        for source in &sources {
            match source {
                Ok((file, text)) => {
                    let error = check(text);
                    // As before: a file that is not valid YAML is not compiled at all.
                    let out = error.is_none().then(|| build(file, text));
                    checked.push(error);
                    built.push(out);
                }
                Err(_) => {
                    checked.push(None);
                    built.push(None);
                }
            }
        }
    } else {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        let next = AtomicUsize::new(0);
        let checks: Vec<Mutex<Option<serde_yaml_ng::Error>>> =
            sources.iter().map(|_| Mutex::new(None)).collect();
        let builds: Vec<Mutex<Option<Sink>>> = sources.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let work = || loop {
                    let job = next.fetch_add(1, Ordering::Relaxed);
                    if job >= jobs {
                        break;
                    }
                    let Ok((file, text)) = &sources[job / 2] else {
                        continue;
                    };
                    if job.is_multiple_of(2) {
                        let error = check(text);
                        *checks[job / 2].lock().unwrap_or_else(|p| p.into_inner()) = error;
                    } else {
                        let out = build(file, text);
                        *builds[job / 2].lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
                    }
                };
                // serde_yaml_ng recurses up to 128 levels: give workers a main-thread stack.
                let spawned = std::thread::Builder::new()
                    .name("acl-load".into())
                    .stack_size(8 << 20)
                    .spawn_scoped(scope, work);
                if spawned.is_err() {
                    // No thread to be had: do the remaining jobs here.
                    work();
                }
            }
        });
        checked = checks
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect();
        built = builds
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect();
    }
    for ((source, error), out) in sources.into_iter().zip(checked).zip(built) {
        match (source, error, out) {
            (Err(unreadable), _, _) => sink.errors.push(unreadable),
            (Ok((file, _)), Some(e), _) => {
                let mut d = Diagnostic::new(&*file, yaml::error_message(&e));
                if let Some((line, column)) = yaml::error_position(&e) {
                    d = d.at(line, column);
                }
                sink.errors.push(d);
            }
            (Ok(_), None, Some(out)) => {
                sink.rules.extend(out.rules);
                sink.errors.extend(out.errors);
                sink.warnings.extend(out.warnings);
            }
            (Ok(_), None, None) => {}
        }
    }
}

/// True for the names [`list_dir`] reads in an ACL folder: `*.yaml`/`*.yml`, not starting
/// with `.`. Also what the reloader compares between two reads of the folder.
pub fn is_acl_file_name(name: &str) -> bool {
    yaml::is_listed_file_name(name)
}

/// Reads `*.yaml`/`*.yml` in file-name order, non-recursively, skipping names that start
/// with `.` (Kubernetes ConfigMap mounts hold `..data` and `..2026_…` entries) and
/// following symlinks (ConfigMap files are symlinks into those entries).
fn list_dir(dir: &Path, sink: &mut Sink) -> Vec<PathBuf> {
    let (files, errors) = yaml::files_in(dir, "ACL");
    sink.errors.extend(errors);
    if files.is_empty() && sink.errors.is_empty() {
        sink.warnings.push(Diagnostic::new(
            dir,
            "no *.yaml or *.yml files in the ACL folder: every request will be denied",
        ));
    }
    files
}

/// The marked parse and rule compilation of one file (its syntax is checked apart, by
/// [`parse_all`]).
fn build_rules(text: &str, file: Arc<Path>, sink: &mut Sink, regexes: &RegexCache) {
    let mut cx = FileCx {
        file,
        sink,
        regexes,
    };
    let root = match yaml::parse_marked(text) {
        Ok(Some(root)) => root,
        Ok(None) => return,
        Err(e) => {
            let d = Diagnostic::new(&*cx.file, e.message).at(e.line, e.column);
            cx.sink.errors.push(d);
            return;
        }
    };
    let list = match &root.kind {
        _ if root.is_null() => return,
        NodeKind::Seq(_) => &root,
        NodeKind::Map(_) => match root.get("acl") {
            Some(acl) if acl.is_null() => return,
            Some(acl) => {
                if !matches!(acl.kind, NodeKind::Seq(_)) {
                    cx.error(
                        acl,
                        "acl",
                        format!("expected a list of rules, found {}", acl.describe()),
                    );
                    return;
                }
                acl
            }
            None => {
                cx.error(
                    &root,
                    "",
                    "expected a list of rules, or a mapping with an `acl:` list",
                );
                return;
            }
        },
        NodeKind::Scalar(_) => {
            cx.error(
                &root,
                "",
                format!("expected a list of rules, found {}", root.describe()),
            );
            return;
        }
    };
    if let NodeKind::Seq(items) = &list.kind {
        for item in items {
            if let Some(rule) = compile_rule(&mut cx, item) {
                cx.sink.rules.push(rule);
            }
        }
    }
}

fn compile_rule(cx: &mut FileCx<'_>, node: &Node) -> Option<Rule> {
    let NodeKind::Map(entries) = &node.kind else {
        cx.error(
            node,
            "",
            format!(
                "a rule must be a mapping with `match` and `actions`, found {}",
                node.describe()
            ),
        );
        return None;
    };
    let errors_before = cx.sink.errors.len();
    let mut conditions = None;
    let mut actions = None;
    let mut comment = None;
    for (k, v) in entries {
        match k.as_str() {
            Some("match") => conditions = compile_match(cx, v),
            Some("actions") => actions = compile_actions(cx, v),
            Some("comment") => match &v.kind {
                _ if v.is_null() => {}
                NodeKind::Scalar(s) => comment = Some(s.text.clone()),
                _ => cx.error(
                    v,
                    "comment",
                    format!("expected text, found {}", v.describe()),
                ),
            },
            Some(other) => cx.error(
                k,
                other,
                "unknown key in a rule (a rule has only `match`, `actions` and `comment`)",
            ),
            None => cx.error(
                k,
                "",
                format!("a rule's keys must be text, found {}", k.describe()),
            ),
        }
    }
    if entries.iter().all(|(k, _)| k.as_str() != Some("match")) {
        cx.error(
            node,
            "match",
            "missing `match` (write `match: {}` to match every request)",
        );
    }
    if entries.iter().all(|(k, _)| k.as_str() != Some("actions")) {
        cx.error(
            node,
            "actions",
            "missing `actions` (write `actions: []` to deny)",
        );
    }
    if cx.sink.errors.len() != errors_before {
        return None;
    }
    Some(Rule {
        conditions: conditions?,
        actions: actions?,
        origin: RuleOrigin {
            file: cx.file.clone(),
            line: node.line,
            comment: comment.map(Arc::from),
        },
    })
}

/// Compiles one string pattern at `node`; errors and warnings go to `cx`.
fn pattern(cx: &mut FileCx<'_>, node: &Node, key: &str) -> Option<Pattern> {
    let text = match &node.kind {
        _ if node.is_null() => {
            cx.error(
                node,
                key,
                "null matches nothing useful: remove the key to match everything, or write \"\" for the empty value",
            );
            return None;
        }
        NodeKind::Scalar(s) => &s.text,
        _ => {
            cx.error(
                node,
                key,
                format!("expected a string pattern, found {}", node.describe()),
            );
            return None;
        }
    };
    let is_regex = text.len() > 2 && text.starts_with('/') && text.ends_with('/');
    let cached = if is_regex {
        let cache = cx.regexes.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(text.as_str()).cloned()
    } else {
        None
    };
    let compiled = match cached {
        Some(done) => Ok(done),
        None => Pattern::compile(text).inspect(|c| {
            if is_regex {
                let mut cache = cx.regexes.lock().unwrap_or_else(|p| p.into_inner());
                cache.insert(text.clone(), c.clone());
            }
        }),
    };
    match compiled {
        Ok(compiled) => {
            if let Some(w) = compiled.warning {
                cx.warn(node, key, w);
            }
            Some(compiled.pattern)
        }
        Err(message) => {
            cx.error(node, key, message);
            None
        }
    }
}

fn compile_match(cx: &mut FileCx<'_>, node: &Node) -> Option<Conditions> {
    let NodeKind::Map(entries) = &node.kind else {
        cx.error(
            node,
            "match",
            format!(
                "expected a mapping (`{{}}` matches every request), found {}",
                node.describe()
            ),
        );
        return None;
    };
    let mut c = Conditions::default();
    let mut ok = true;
    for (k, v) in entries {
        let Some(name) = k.as_str() else {
            cx.error(
                k,
                "match",
                format!("match keys must be text, found {}", k.describe()),
            );
            ok = false;
            continue;
        };
        let key = format!("match.{name}");
        let slot = match name {
            "account" => &mut c.account,
            "type" => &mut c.kind,
            "name" => &mut c.name,
            "service" => &mut c.service,
            "ip" => {
                match v.as_str() {
                    Some(text) => match parse_ip_condition(text) {
                        Ok(net) => c.ip = Some(net),
                        Err(message) => {
                            cx.error(v, &key, message);
                            ok = false;
                        }
                    },
                    None => {
                        cx.error(
                            v,
                            &key,
                            format!("expected an address or CIDR, found {}", v.describe()),
                        );
                        ok = false;
                    }
                }
                continue;
            }
            "labels" => {
                ok &= compile_labels(cx, v, &mut c.labels);
                continue;
            }
            _ => {
                cx.error(
                    k,
                    &key,
                    "unknown match key (known: account, type, name, ip, service, labels)",
                );
                ok = false;
                continue;
            }
        };
        match pattern(cx, v, &key) {
            Some(p) => *slot = Some(p),
            None => ok = false,
        }
    }
    ok.then_some(c)
}

fn compile_labels(cx: &mut FileCx<'_>, node: &Node, out: &mut Vec<(String, Pattern)>) -> bool {
    let NodeKind::Map(entries) = &node.kind else {
        cx.error(
            node,
            "match.labels",
            format!(
                "expected a mapping of label name to pattern, found {}",
                node.describe()
            ),
        );
        return false;
    };
    let mut ok = true;
    for (k, v) in entries {
        let Some(label) = k.as_str() else {
            cx.error(
                k,
                "match.labels",
                format!("label names must be text, found {}", k.describe()),
            );
            ok = false;
            continue;
        };
        match pattern(cx, v, &format!("match.labels.{label}")) {
            Some(p) => out.push((label.to_string(), p)),
            None => ok = false,
        }
    }
    ok
}

fn compile_actions(cx: &mut FileCx<'_>, node: &Node) -> Option<RuleActions> {
    let NodeKind::Seq(items) = &node.kind else {
        cx.error(
            node,
            "actions",
            format!(
                "expected a list of actions (pull, push, delete, \"*\"), found {}",
                node.describe()
            ),
        );
        return None;
    };
    let mut actions = RuleActions::default();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("actions[{i}]");
        match item.as_str() {
            Some(a) if actions.add(a) => {}
            Some(a) => {
                cx.error(
                    item,
                    &key,
                    format!("unknown action {a:?} (known: pull, push, delete, \"*\")"),
                );
                ok = false;
            }
            None => {
                cx.error(
                    item,
                    &key,
                    format!("expected an action, found {}", item.describe()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(actions)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::acl::{AccessRequest, Labels};

    fn errors(text: &str) -> Vec<String> {
        match Acl::parse(text, Path::new("acl/10.yaml")) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn one_error(text: &str) -> String {
        let e = errors(text);
        assert_eq!(e.len(), 1, "{e:#?}");
        e.into_iter().next().unwrap_or_default()
    }

    fn ok(text: &str) -> Loaded {
        match Acl::parse(text, Path::new("acl/10.yaml")) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    fn pull(acl: &Acl, account: &str, name: &str) -> Vec<String> {
        let labels = Labels::new();
        acl.decide(&AccessRequest {
            account,
            labels: &labels,
            ip: None,
            service: "",
            kind: "repository",
            name,
            actions: &["pull"],
        })
        .actions
    }

    #[test]
    fn bare_list() {
        let l = ok("- match: {account: a}\n  actions: [pull]\n  comment: hi\n");
        assert_eq!(l.acl.len(), 1);
        assert!(l.warnings.is_empty());
        let o = &l.acl.rules()[0].origin;
        assert_eq!(o.to_string(), "acl/10.yaml:1 (hi)");
    }

    #[test]
    fn acl_document_ignores_other_sections() {
        let text = "server:\n  addr: :5001\ntoken:\n  issuer: x\nusers:\n  alice: {password: x}\nacl:\n  - match: {account: alice}\n    actions: [pull]\n";
        let l = ok(text);
        assert_eq!(l.acl.len(), 1);
        assert_eq!(l.acl.rules()[0].origin.line, 8);
        assert!(ok("server: {}\nacl:\n").acl.is_empty());
        assert!(ok("acl: []\n").acl.is_empty());
    }

    #[test]
    fn empty_inputs() {
        for text in ["", "\n", "# nothing\n", "[]", "~", "---\n"] {
            assert!(ok(text).acl.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn flow_and_block_rule_lines() {
        let l = ok("\n\n- {match: {}, actions: []}\n-\n  match: {}\n  actions: []\n");
        let lines: Vec<usize> = l.acl.rules().iter().map(|r| r.origin.line).collect();
        assert_eq!(lines, vec![3, 5]);
    }

    #[test]
    fn malformed_yaml() {
        let e = one_error("- match: {account: a\n  actions: [pull]\n");
        assert!(e.starts_with("acl/10.yaml:"), "{e}");
        let e = one_error("- match: {}\n  actions: [pull]\n - oops\n");
        assert!(e.starts_with("acl/10.yaml:3:"), "{e}");
        let e = one_error("- match: {}\n  match: {}\n  actions: []\n");
        assert!(e.contains("duplicate"), "{e}");
        let e = one_error("- a\n---\n- b\n");
        assert!(e.contains("more than one document"), "{e}");
    }

    #[test]
    fn rule_not_a_mapping() {
        assert_eq!(
            one_error("- match: {}\n  actions: []\n- just text\n"),
            "acl/10.yaml:3:3: a rule must be a mapping with `match` and `actions`, found a scalar"
        );
        assert_eq!(
            one_error("account: admin\nactions: [pull]\n"),
            "acl/10.yaml:1:1: expected a list of rules, or a mapping with an `acl:` list"
        );
        assert_eq!(
            one_error("acl: {account: admin}\n"),
            "acl/10.yaml:1:6: acl: expected a list of rules, found a mapping"
        );
        assert_eq!(
            one_error("hello\n"),
            "acl/10.yaml:1:1: expected a list of rules, found a scalar"
        );
    }

    #[test]
    fn unknown_keys() {
        assert_eq!(
            one_error("- match: {}\n  actions: []\n  coment: typo\n"),
            "acl/10.yaml:3:3: coment: unknown key in a rule (a rule has only `match`, `actions` and `comment`)"
        );
        assert_eq!(
            one_error("- match: {acount: admin}\n  actions: ['*']\n"),
            "acl/10.yaml:1:11: match.acount: unknown match key (known: account, type, name, ip, service, labels)"
        );
    }

    #[test]
    fn missing_match_and_actions() {
        assert_eq!(
            one_error("- actions: []\n"),
            "acl/10.yaml:1:3: match: missing `match` (write `match: {}` to match every request)"
        );
        assert_eq!(
            one_error("- comment: x\n  match: {}\n"),
            "acl/10.yaml:1:3: actions: missing `actions` (write `actions: []` to deny)"
        );
        assert_eq!(errors("- {}\n").len(), 2);
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            one_error("- match: {account: a}\n  actions: []\n- match:\n    ip: 10.0.0.0/33\n  actions: [pull]\n"),
            "acl/10.yaml:4:9: match.ip: invalid CIDR \"10.0.0.0/33\""
        );
        assert_eq!(
            one_error("- match: {account: a}\n  actions: []\n- match:\n    ip: 127.0.0.1/3\n  actions: [pull]\n"),
            "acl/10.yaml:4:9: match.ip: CIDR \"127.0.0.1/3\" has host bits set: write the network (96.0.0.0/3) or the single address (127.0.0.1)"
        );
        assert_eq!(
            one_error("- match: {ip: [10.0.0.1]}\n  actions: []\n"),
            "acl/10.yaml:1:15: match.ip: expected an address or CIDR, found a list"
        );
        assert_eq!(
            one_error("- match: {name: 'team/[a-'}\n  actions: []\n"),
            "acl/10.yaml:1:17: match.name: malformed glob \"team/[a-\": unclosed `[`"
        );
        let e = one_error("- match: {account: '/(/'}\n  actions: []\n");
        assert!(
            e.starts_with("acl/10.yaml:1:20: match.account: invalid regular expression /(/: "),
            "{e}"
        );
        assert_eq!(
            one_error("- match: {}\n  actions: [pull, push, pul]\n"),
            "acl/10.yaml:2:25: actions[2]: unknown action \"pul\" (known: pull, push, delete, \"*\")"
        );
        assert_eq!(
            one_error("- match: {name: '${acount}/*'}\n  actions: []\n"),
            "acl/10.yaml:1:17: match.name: unknown placeholder ${acount} (known: ${account}, ${name}, ${type}, ${service}, ${labels:KEY})"
        );
        assert_eq!(
            one_error("- match: {labels: {team: '${foo}'}}\n  actions: []\n"),
            "acl/10.yaml:1:26: match.labels.team: unknown placeholder ${foo} (known: ${account}, ${name}, ${type}, ${service}, ${labels:KEY})"
        );
        assert!(one_error("- match: {account: }\n  actions: []\n").contains("match.account: null"));
        assert!(one_error("- match: {labels: [a]}\n  actions: []\n")
            .contains("match.labels: expected a mapping"));
        assert!(
            one_error("- match: []\n  actions: []\n").contains("1:10: match: expected a mapping")
        );
        assert!(
            one_error("- match: {}\n  actions: pull\n").contains("2:12: actions: expected a list")
        );
        assert!(one_error("- match: {}\n  actions: [[pull]]\n")
            .contains("actions[0]: expected an action"));
    }

    #[test]
    fn all_errors_are_reported() {
        let text = "\
- match: {ip: nope, acount: x}
  actions: [pull, fly]
- match: {name: '['}
  actions: []
- not a rule
- match: {account: ok}
  actions: [pull]
";
        let e = errors(text);
        assert_eq!(
            e,
            vec![
                "acl/10.yaml:1:15: match.ip: invalid IP address \"nope\"",
                "acl/10.yaml:1:21: match.acount: unknown match key (known: account, type, name, ip, service, labels)",
                "acl/10.yaml:2:19: actions[1]: unknown action \"fly\" (known: pull, push, delete, \"*\")",
                "acl/10.yaml:3:17: match.name: malformed glob \"[\": unclosed `[`",
                "acl/10.yaml:5:3: a rule must be a mapping with `match` and `actions`, found a scalar",
            ]
        );
    }

    #[test]
    fn unanchored_regex_warns() {
        let l = ok("- match: {account: '/admin/'}\n  actions: ['*']\n- match: {account: '/^ok$/'}\n  actions: []\n");
        assert_eq!(l.warnings.len(), 1);
        let w = l.warnings[0].to_string();
        assert!(w.starts_with("acl/10.yaml:1:20: match.account: regular expression /admin/ is matched against the whole value"), "{w}");
        assert_eq!(pull(&l.acl, "admin", "x"), vec!["pull"]);
        assert!(pull(&l.acl, "notadmin", "x").is_empty());
    }

    #[test]
    fn scalars_of_other_types_are_text() {
        let l = ok("- match: {name: 2024, account: true}\n  actions: [pull]\n");
        assert_eq!(pull(&l.acl, "true", "2024"), vec!["pull"]);
    }

    #[test]
    fn anchors_and_merge_keys() {
        let l = ok("- &base\n  match: {account: a}\n  actions: [pull]\n- <<: *base\n  match: {account: b}\n");
        assert_eq!(l.acl.len(), 2);
        assert_eq!(pull(&l.acl, "b", "x"), vec!["pull"]);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn folder_order_and_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "20-b.yml",
            "- match: {account: b}\n  actions: [pull]\n  comment: twenty\n",
        );
        write(d, "10-a.yaml", "- match: {account: b}\n  actions: []\n  comment: ten\n- match: {}\n  actions: [pull]\n");
        write(d, ".hidden.yaml", "- garbage\n");
        write(d, "notes.txt", "- garbage\n");
        std::fs::create_dir(d.join("..2026_01_01")).unwrap();
        write(&d.join("..2026_01_01"), "00-x.yaml", "- garbage\n");
        std::fs::create_dir(d.join("sub.yaml")).unwrap();
        let l = Acl::load(d).unwrap();
        assert_eq!(l.acl.len(), 3);
        let origins: Vec<String> = l.acl.rules().iter().map(|r| r.origin.to_string()).collect();
        assert_eq!(
            origins,
            vec![
                format!("{}:1 (ten)", d.join("10-a.yaml").display()),
                format!("{}:4", d.join("10-a.yaml").display()),
                format!("{}:1 (twenty)", d.join("20-b.yml").display()),
            ]
        );
        assert!(pull(&l.acl, "b", "x").is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn folder_follows_symlinks_like_a_configmap() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let data = d.join("..2026_05_01_12_00_00.123");
        std::fs::create_dir(&data).unwrap();
        write(&data, "acl.yaml", "- match: {}\n  actions: [pull]\n");
        std::os::unix::fs::symlink("..2026_05_01_12_00_00.123", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/acl.yaml", d.join("acl.yaml")).unwrap();
        let l = Acl::load(d).unwrap();
        assert_eq!(l.acl.len(), 1);
    }

    #[test]
    fn folder_errors_from_all_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.yaml", "- match: {}\n  actions: [fly]\n");
        write(d, "b.yaml", "- match: {ip: x}\n  actions: []\n");
        write(d, "c.yaml", "- match: {}\n  actions: [pull]\n");
        let e = Acl::load(d).unwrap_err();
        let e: Vec<String> = e.0.iter().map(|d| d.to_string()).collect();
        assert_eq!(e.len(), 2);
        assert!(
            e[0].starts_with(&format!("{}:2:13: actions[0]", d.join("a.yaml").display())),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(&format!("{}:1:15: match.ip", d.join("b.yaml").display())),
            "{e:?}"
        );
    }

    #[test]
    fn empty_folder_warns_and_single_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let l = Acl::load(dir.path()).unwrap();
        assert!(l.acl.is_empty());
        assert_eq!(l.warnings.len(), 1);
        // An empty file, or a folder whose files hold no rule, warns the same way.
        let f = write(dir.path(), "x.yaml", "");
        let l = Acl::load(&f).unwrap();
        assert!(l.acl.is_empty());
        assert_eq!(l.warnings.len(), 1);
        assert!(
            l.warnings[0].to_string().contains("no rules"),
            "{:?}",
            l.warnings
        );
        let l = Acl::load(dir.path()).unwrap();
        assert_eq!(l.warnings.len(), 1);
        let f = write(dir.path(), "x.yaml", "acl: []\n");
        assert_eq!(Acl::load(&f).unwrap().warnings.len(), 1);
        let f = write(dir.path(), "x.yaml", "- {match: {}, actions: []}\n");
        assert!(Acl::load(&f).unwrap().warnings.is_empty());
        let e = Acl::load(&dir.path().join("missing.yaml")).unwrap_err();
        assert!(e.to_string().contains("cannot read ACL"));
        std::fs::write(dir.path().join("bin.yaml"), [0xff, 0xfe]).unwrap();
        let e = Acl::load(&dir.path().join("bin.yaml")).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,200}") {
            let _ = Acl::parse(&text, Path::new("f.yaml"));
        }

        #[test]
        fn parse_never_panics_on_rule_shaped_text(
            text in "(- |  |match: |actions: |comment: |\\{|\\}|\\[|\\]|, |: |\\n|account|ip|labels|pull|\\*|/|\\$\\{account\\}|'|a|&x |\\*x |<<){0,40}"
        ) {
            let _ = Acl::parse(&text, Path::new("f.yaml"));
        }
    }
}
