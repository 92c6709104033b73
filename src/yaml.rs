//! YAML helpers shared by the loaders: line numbers and error locations.
//!
//! serde tells us *where* a document fails to parse, but nothing about where a value that
//! parsed fine sits in the file. Semantic errors ("unknown action `pul`") must still point
//! at `file:line:column`, so this module re-reads the text with yaml-rust2's marked event
//! parser and builds a small tree of [`Node`]s that remember their position.
//!
//! Everything here is total: no input makes it panic (the loaders are fuzzed). The event
//! loop is iterative (no recursion on nesting depth), nesting is capped at
//! [`MAX_DEPTH`], and alias expansion is capped at [`MAX_NODES`] nodes so that a
//! "billion laughs" document is an error rather than an out-of-memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting accepted by [`parse_marked`]; serde_yaml_ng's own limit is 128 too.
pub const MAX_DEPTH: usize = 128;

/// Most nodes [`parse_marked`] will build, counting alias expansions, so that aliases
/// cannot make a small file explode in memory.
pub const MAX_NODES: usize = 1_000_000;

/// True for the names [`files_in`] lists: `*.yaml`/`*.yml`, not starting with `.`
/// (Kubernetes ConfigMap mounts hold `..data` and `..2026_…` entries).
pub fn is_listed_file_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The `*.yaml` and `*.yml` files of `dir` in name order, hidden files skipped: the one rule
/// for every "a file, or a folder read in name order" key (`acl`, `acl_tests`). `what` names
/// the files in errors ("ACL"). Unreadable entries are errors; the files found are returned
/// anyway.
pub fn files_in(dir: &Path, what: &str) -> (Vec<PathBuf>, Vec<crate::diagnostic::Diagnostic>) {
    use crate::diagnostic::Diagnostic;
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(Diagnostic::new(
                dir,
                format!("cannot read {what} folder: {e}"),
            ));
            return (Vec::new(), errors);
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(Diagnostic::new(
                    dir,
                    format!("cannot read {what} folder: {e}"),
                ));
                continue;
            }
        };
        let name = entry.file_name();
        if !is_listed_file_name(&name.to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => files.push((name, path)),
            Ok(_) => {}
            Err(e) => errors.push(Diagnostic::new(
                &path,
                format!("cannot read {what} file: {e}"),
            )),
        }
    }
    files.sort();
    (files.into_iter().map(|(_, path)| path).collect(), errors)
}

/// A YAML node with the position it starts at, so loaders can report semantic errors
/// at the exact line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 1-based line of the node's first character.
    pub line: usize,
    /// 1-based column of the node's first character.
    pub column: usize,
    /// What the node holds.
    pub kind: NodeKind,
}

/// The shape of a [`Node`]: loaders match on it to give "expected a list" errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A scalar, kept as written (no type resolution: `123` stays the text "123").
    Scalar(Scalar),
    /// A sequence, items in document order.
    Seq(Vec<Node>),
    /// A mapping, entries in document order (keys may be any node).
    Map(Vec<(Node, Node)>),
}

/// A scalar's text and whether it was written plain, which decides whether it is null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The scalar's value after unquoting/unescaping.
    pub text: String,
    /// True for plain (unquoted, non-block) scalars: only those can be `null`.
    pub plain: bool,
}

impl Node {
    /// The scalar text, if this is a non-null scalar (numbers and booleans included, as
    /// written); lets loaders accept `name: 2024` as the string "2024".
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s) if !self.is_null() => Some(&s.text),
            _ => None,
        }
    }

    /// True for `~`, `null`, `Null`, `NULL` and an empty plain scalar (`key:`), so loaders
    /// can tell "absent" from `""`.
    pub fn is_null(&self) -> bool {
        match &self.kind {
            NodeKind::Scalar(s) => {
                s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            _ => false,
        }
    }

    /// The value under scalar key `key` if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            // A list entry by its index (`upstreams.1.url`).
            NodeKind::Seq(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
    }

    /// A short name of the node's shape for error messages ("a list", "a mapping").
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(_) if self.is_null() => "null",
            NodeKind::Scalar(_) => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    fn count(&self) -> usize {
        // Iterative, so a deep tree cannot overflow the stack.
        let mut n = 0;
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            n += 1;
            match &node.kind {
                NodeKind::Scalar(_) => {}
                NodeKind::Seq(items) => stack.extend(items.iter()),
                NodeKind::Map(entries) => {
                    for (k, v) in entries {
                        stack.push(k);
                        stack.push(v);
                    }
                }
            }
        }
        n
    }
}

/// Why [`parse_marked`] failed, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for MarkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

fn pos(mark: &Marker) -> (usize, usize) {
    // yaml-rust2 markers: 1-based line, 0-based column.
    (mark.line().max(1), mark.col().saturating_add(1))
}

enum Frame {
    Seq {
        at: (usize, usize),
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        at: (usize, usize),
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// Parses the first document of `text` into a position-aware tree; `Ok(None)` for a text
/// with no document (empty, or only comments).
///
/// Aliases are expanded (a copy of the anchored node, positioned at the anchor), and
/// merge keys (`<<: *base`) are applied the way YAML 1.1 tools such as docker_auth do:
/// explicit keys win, merged ones are appended.
pub fn parse_marked(text: &str) -> Result<Option<Node>, MarkedError> {
    // yaml-rust2 is not fuzzed as hard as libyaml; never let a bug in it take us down.
    match std::panic::catch_unwind(|| parse_marked_inner(text)) {
        Ok(result) => result,
        Err(_) => Err(MarkedError {
            line: 1,
            column: 1,
            message: "the YAML parser failed on this document".to_string(),
        }),
    }
}

fn parse_marked_inner(text: &str) -> Result<Option<Node>, MarkedError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut budget = MAX_NODES;
    let mut in_document = false;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let (line, column) = pos(e.marker());
            MarkedError {
                line,
                column,
                message: e.info().to_string(),
            }
        })?;
        let at = pos(&mark);
        let err = |message: &str| MarkedError {
            line: at.0,
            column: at.1,
            message: message.to_string(),
        };
        let (node, anchor) = match event {
            Event::StreamEnd => return Ok(None),
            Event::DocumentStart => {
                in_document = true;
                continue;
            }
            Event::DocumentEnd => return Ok(None),
            Event::Nothing | Event::StreamStart => continue,
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err("nesting too deep"));
                }
                stack.push(Frame::Seq {
                    at,
                    anchor,
                    items: Vec::new(),
                });
                continue;
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err("nesting too deep"));
                }
                stack.push(Frame::Map {
                    at,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { at, anchor, items }) => (
                    Node {
                        line: at.0,
                        column: at.1,
                        kind: NodeKind::Seq(items),
                    },
                    anchor,
                ),
                _ => return Err(err("unbalanced sequence end")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    at,
                    anchor,
                    entries,
                    ..
                }) => {
                    // yaml-rust2 marks a block mapping at its first `:`; start it at its
                    // first key instead, which is where a reader looks.
                    let at = match entries.first() {
                        Some((k, _)) if (k.line, k.column) < at => (k.line, k.column),
                        _ => at,
                    };
                    let node = Node {
                        line: at.0,
                        column: at.1,
                        kind: NodeKind::Map(apply_merge(entries)),
                    };
                    (node, anchor)
                }
                _ => return Err(err("unbalanced mapping end")),
            },
            Event::Scalar(text, style, anchor, _) => (
                Node {
                    line: at.0,
                    column: at.1,
                    kind: NodeKind::Scalar(Scalar {
                        text,
                        plain: style == TScalarStyle::Plain,
                    }),
                },
                anchor,
            ),
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => {
                    let n = node.count();
                    if n > budget {
                        return Err(err("alias expansion too large"));
                    }
                    budget -= n;
                    (node.clone(), 0)
                }
                None => return Err(err("unknown anchor")),
            },
        };
        if !in_document {
            continue;
        }
        budget = match budget.checked_sub(1) {
            Some(b) => b,
            None => return Err(err("document too large")),
        };
        if anchor != 0 {
            let n = node.count();
            if n > budget {
                return Err(err("anchor too large"));
            }
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => return Ok(Some(node)),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

fn is_merge_key(node: &Node) -> bool {
    matches!(&node.kind, NodeKind::Scalar(s) if s.plain && s.text == "<<")
}

fn apply_merge(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    if !entries.iter().any(|(k, _)| is_merge_key(k)) {
        return entries;
    }
    let mut own = Vec::with_capacity(entries.len());
    let mut merged = Vec::new();
    for (k, v) in entries {
        if !is_merge_key(&k) {
            own.push((k, v));
            continue;
        }
        match v.kind {
            NodeKind::Map(m) => merged.extend(m),
            NodeKind::Seq(items) => {
                for item in items {
                    match item.kind {
                        NodeKind::Map(m) => merged.extend(m),
                        // Not mergeable: keep it visible so the loader reports it.
                        _ => own.push((k.clone(), item)),
                    }
                }
            }
            _ => own.push((k, v)),
        }
    }
    for (k, v) in merged {
        let dup = own
            .iter()
            .any(|(o, _)| o.as_str().is_some() && o.as_str() == k.as_str());
        if !dup {
            own.push((k, v));
        }
    }
    own
}

/// The top-level node, or the value under top-level key `key` when the top level is a
/// mapping that has it: docker_auth files nest rules under `acl:`, users under `users:`.
fn section<'a>(root: &'a Node, key: &str) -> &'a Node {
    match root.get(key) {
        Some(inner) => inner,
        None => root,
    }
}

/// 1-based line of each item of the document's top-level sequence, or of the sequence
/// under top-level key `key` when the document is a mapping; empty when there is no such
/// sequence or the text does not parse. Lets a loader say "rule at line 12".
pub fn item_lines(text: &str, key: &str) -> Vec<usize> {
    let Ok(Some(root)) = parse_marked(text) else {
        return Vec::new();
    };
    match &section(&root, key).kind {
        NodeKind::Seq(items) => items.iter().map(|n| n.line).collect(),
        _ => Vec::new(),
    }
}

/// 1-based line of each key of the top-level mapping, or of the mapping under top-level
/// `key` when the top-level mapping has that key (users files: `users: {alice: {...}}` or
/// a bare map). Non-scalar keys are skipped; empty when the text does not parse.
pub fn key_lines(text: &str, key: &str) -> HashMap<String, usize> {
    let Ok(Some(root)) = parse_marked(text) else {
        return HashMap::new();
    };
    match &section(&root, key).kind {
        NodeKind::Map(entries) => entries
            .iter()
            .filter_map(|(k, _)| k.as_str().map(|s| (s.to_string(), k.line)))
            .collect(),
        _ => HashMap::new(),
    }
}

/// (line, column), both 1-based, of a serde_yaml_ng error, if known; so every loader
/// turns serde failures into a located [`crate::diagnostic::Diagnostic`] the same way.
pub fn error_position(err: &serde_yaml_ng::Error) -> Option<(usize, usize)> {
    err.location().map(|l| (l.line(), l.column()))
}

/// The message of a serde_yaml_ng error without its " at line L column C" suffix, since
/// the [`crate::diagnostic::Diagnostic`] carrying it already prints the position.
pub fn error_message(err: &serde_yaml_ng::Error) -> String {
    let text = err.to_string();
    match error_position(err) {
        Some((line, column)) => text.replacen(&format!(" at line {line} column {column}"), "", 1),
        None => text,
    }
}

/// A serde_yaml_ng error as a located [`crate::diagnostic::Diagnostic`] in the documented
/// `file:line:column: key: message` form: the path serde puts before its message
/// (`auth.token.expiration: …`) becomes the key, Rust type names (`expected usize`) become
/// words, and a tab where indentation was expected is named as such.
pub fn serde_diagnostic(
    file: &Path,
    text: &str,
    err: &serde_yaml_ng::Error,
) -> crate::diagnostic::Diagnostic {
    let mut message = error_message(err);
    let mut key = None;
    if let Some((path, rest)) = message.split_once(": ") {
        // serde_yaml_ng writes `path: message` where path is `a.b[0].c`: no spaces.
        if !path.is_empty() && !path.contains([' ', '`', '"']) {
            key = Some(path.to_string());
            message = rest.to_string();
        }
    }
    for (rust, words) in [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u8", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
    ] {
        message = message.replace(rust, words);
    }
    let mut d = crate::diagnostic::Diagnostic::new(file, message);
    if let Some((line, column)) = error_position(err) {
        if has_tab_at(text, line, column) {
            d.message
                .push_str(" (a tab: YAML indents with spaces only; replace the tab with spaces)");
        }
        d = d.at(line, column);
    }
    if let Some(key) = key {
        d = d.key(key);
    }
    d
}

/// True when line `line` (1-based) has a tab in its indentation or at `column`: the cause of
/// libyaml's "found character that cannot start any token" that people do not guess.
pub fn has_tab_at(text: &str, line: usize, column: usize) -> bool {
    let Some(l) = text.lines().nth(line.saturating_sub(1)) else {
        return false;
    };
    let indent = l.len() - l.trim_start_matches([' ', '\t']).len();
    l[..indent].contains('\t') || l.chars().nth(column.saturating_sub(1)) == Some('\t')
}

/// The node at a dotted key path (`auth.token.expiration`) from `root`, following mappings:
/// where a value error is reported, so it points at the value itself.
pub fn at_path<'a>(root: &'a Node, path: &[&str]) -> Option<&'a Node> {
    let mut node = root;
    for key in path {
        // A number steps into a sequence (`auth.federation.1.issuer`).
        node = match (&node.kind, key.parse::<usize>()) {
            (NodeKind::Seq(items), Ok(i)) => items.get(i)?,
            _ => node.get(key)?,
        };
    }
    Some(node)
}

/// Every key written twice in one mapping, anywhere in the tree: (dotted path of the second
/// one, its key node). YAML forbids them, and which one wins differs between tools.
pub fn duplicate_keys(root: &Node) -> Vec<(String, &Node)> {
    let mut found = Vec::new();
    let mut stack: Vec<(String, &Node)> = vec![(String::new(), root)];
    while let Some((path, node)) = stack.pop() {
        match &node.kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    stack.push((format!("{path}[{i}]"), item));
                }
            }
            NodeKind::Map(entries) => {
                let mut seen = std::collections::HashSet::new();
                for (k, v) in entries {
                    let Some(name) = k.as_str() else { continue };
                    let full = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    if !seen.insert(name) {
                        found.push((full.clone(), k));
                    }
                    stack.push((full, v));
                }
            }
        }
    }
    found.sort_by_key(|(_, k)| (k.line, k.column));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_tabs_and_paths() {
        let root = parse_marked("a: 1\nb:\n  c: 2\n  c: 3\na: 4\n")
            .unwrap()
            .unwrap();
        let d: Vec<_> = duplicate_keys(&root)
            .into_iter()
            .map(|(p, k)| (p, k.line, k.column))
            .collect();
        assert_eq!(d, vec![("b.c".into(), 4, 3), ("a".into(), 5, 1)]);
        let c = at_path(&root, &["b", "c"]).unwrap();
        assert_eq!((c.line, c.column), (3, 6));
        assert!(has_tab_at("a:\n\tb: 1\n", 2, 1));
        assert!(!has_tab_at("a:\n  b: 1\n", 2, 1));
    }

    #[test]
    fn item_lines_bare_list() {
        let text =
            "# rules\n- match: {account: a}\n  actions: []\n\n- match: {}\n  actions: [pull]\n";
        assert_eq!(item_lines(text, "acl"), vec![2, 5]);
    }

    #[test]
    fn item_lines_under_key() {
        let text = "server: {addr: x}\nacl:\n  - match: {}\n    actions: []\n  - {match: {}, actions: []}\nusers: {}\n";
        assert_eq!(item_lines(text, "acl"), vec![3, 5]);
        assert_eq!(item_lines(text, "nope"), Vec::<usize>::new());
    }

    #[test]
    fn key_lines_bare_and_nested() {
        let bare = "alice:\n  password: x\nbob: {password: y}\n";
        let m = key_lines(bare, "users");
        assert_eq!(m.get("alice"), Some(&1));
        assert_eq!(m.get("bob"), Some(&3));
        let nested = "server: {}\nusers:\n  alice: {}\n\n  bob: {}\n";
        let m = key_lines(nested, "users");
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("alice"), Some(&3));
        assert_eq!(m.get("bob"), Some(&5));
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse_marked("a:\n  b: [x, 'y']\n").unwrap().unwrap();
        assert_eq!((root.line, root.column), (1, 1));
        let a = root.get("a").unwrap();
        assert_eq!((a.line, a.column), (2, 3));
        let b = a.get("b").unwrap();
        assert_eq!((b.line, b.column), (2, 6));
        let NodeKind::Seq(items) = &b.kind else {
            panic!()
        };
        assert_eq!((items[1].line, items[1].column), (2, 10));
        assert_eq!(items[1].as_str(), Some("y"));
    }

    #[test]
    fn null_and_empty() {
        assert_eq!(parse_marked("").unwrap(), None);
        assert_eq!(parse_marked("# only a comment\n").unwrap(), None);
        let root = parse_marked("a:\nb: ~\nc: ''\nd: null\n").unwrap().unwrap();
        assert!(root.get("a").unwrap().is_null());
        assert!(root.get("b").unwrap().is_null());
        assert!(!root.get("c").unwrap().is_null());
        assert_eq!(root.get("c").unwrap().as_str(), Some(""));
        assert!(root.get("d").unwrap().is_null());
    }

    #[test]
    fn aliases_and_merge() {
        let root = parse_marked("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nl: *b\n")
            .unwrap()
            .unwrap();
        let m = root.get("m").unwrap();
        assert_eq!(m.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(m.get("y").unwrap().as_str(), Some("3"));
        assert_eq!(root.get("l").unwrap().get("y").unwrap().as_str(), Some("2"));
    }

    #[test]
    fn billion_laughs_is_an_error() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse_marked(&text).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let text = "[".repeat(10_000);
        assert!(parse_marked(&text).is_err());
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_marked(&text).is_err());
    }

    #[test]
    fn scan_error_is_located() {
        let e = parse_marked("a: [1, 2\nb: c\n").unwrap_err();
        assert!(e.line >= 1 && e.column >= 1, "{e}");
    }

    #[test]
    fn serde_error_position_and_message() {
        let err = serde_yaml_ng::from_str::<serde_yaml_ng::Value>("a: b\n c: d: e\n").unwrap_err();
        let (line, column) = error_position(&err).unwrap();
        assert_eq!(line, 2);
        assert!(column >= 1);
        let msg = error_message(&err);
        assert!(
            !msg.contains(&format!("at line {line} column {column}")),
            "{msg}"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse_marked(&text);
            let _ = item_lines(&text, "acl");
            let _ = key_lines(&text, "users");
        }

        #[test]
        fn never_panics_yamlish(text in "[-:\\[\\]{}&*!|>'\" \n#a-c0-9,?%@`]{0,120}") {
            let _ = parse_marked(&text);
        }
    }
}
