//! String patterns of the ACL's `match` values: exact, glob, `/regex/`, with placeholders.
//!
//! A pattern is compiled once, when the ACL is loaded, into one of:
//!
//! * **exact**: no glob metacharacter (`*?[\`), compared with `==`;
//! * **glob**: Go's `path.Match` syntax (`*`, `?`, `[…]`, `\` escapes; none of them ever
//!   matches `/`) plus `**`, which matches anything including `/`. Globs are matched by a
//!   small NFA simulation over a bit set kept on the stack: linear in the name, no
//!   backtracking blow-up, no allocation for patterns of fewer than 256 tokens;
//! * **regex**: written `/…/` (more than two characters), compiled anchored as
//!   `^(?:…)$`, unlike docker_auth, so `/admin/` does not match `notadmin`;
//! * **template**: any of the above containing placeholders (`${account}`, `${name}`,
//!   `${type}`, `${service}`, `${labels:KEY}`). The request's values are substituted as
//!   *literal* text (a `*` in an account name is not a glob; in a regex the value is
//!   `regex::escape`d) and the result is matched. Only templates allocate at match time;
//!   a regex template is compiled per match (no cache yet).

use std::sync::Arc;

use regex::Regex;

use super::AccessRequest;

/// Most label-value combinations a template with `${labels:…}` placeholders will try;
/// beyond that it does not match (fail closed) rather than burn CPU on one request.
pub const MAX_COMBINATIONS: usize = 4096;

/// Size limit for compiled regular expressions, so a hostile ACL cannot make the
/// loader (or a per-request template compile) use unbounded memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A value a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Account,
    Name,
    Type,
    Service,
    /// Index into [`Template::labels`].
    Label(usize),
}

/// A class `[…]` of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        // A class never matches `/`, negated or not, like `*` and `?`.
        c != '/' && self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// One element of a compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character other than `/`.
    Any,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**`: any run of characters.
    DStar,
    Class(Class),
    /// A placeholder; only in templates, replaced by literal characters before matching.
    Var(Var),
}

/// A piece of an exact or regex template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Literal text (exact) or regex source (regex).
    Lit(String),
    Var(Var),
}

#[derive(Debug, Clone)]
enum TemplateBody {
    Exact(Vec<Part>),
    Glob(Vec<Tok>),
    Regex(Vec<Part>),
}

#[derive(Debug, Clone)]
struct Template {
    /// Distinct label keys named by `${labels:KEY}`, in order of first use. Two
    /// occurrences of the same key stand for the same value within one combination.
    labels: Vec<String>,
    body: TemplateBody,
}

#[derive(Debug, Clone)]
enum Kind {
    Exact(Box<str>),
    Glob(Vec<Tok>),
    /// Shared: a pattern written many times in one ACL (`/.+/`) is compiled once at load.
    Regex(Arc<Regex>),
    Template(Template),
}

/// A compiled `match` value; built once at load so that matching a request is cheap.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: Box<str>,
    kind: Kind,
}

/// A pattern that compiled, and a warning about it if it probably does not do what
/// its author meant (an unanchored regex).
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The pattern.
    pub pattern: Pattern,
    /// Why the author should look at it again, if anything.
    pub warning: Option<String>,
}

impl Pattern {
    /// Compiles a `match` value; `Err` carries a message for a load diagnostic
    /// (malformed glob, bad regex, unknown placeholder).
    pub fn compile(source: &str) -> Result<Compiled, String> {
        let mut labels = Vec::new();
        let mut warning = None;
        let kind = if let Some(body) = regex_body(source) {
            warning = anchoring_warning(body);
            let parts = split_placeholders(body, &mut labels)?;
            if parts.iter().any(|p| matches!(p, Part::Var(_))) {
                // Validate now with a harmless stand-in for each placeholder.
                let probe = regex_source(&parts, |_| "x".into());
                build_regex(&probe)?;
                Kind::Template(Template {
                    labels,
                    body: TemplateBody::Regex(parts),
                })
            } else {
                Kind::Regex(Arc::new(build_regex(body)?))
            }
        } else if source.contains(['*', '?', '[', '\\']) {
            let toks = parse_glob(source, &mut labels)?;
            if toks.iter().any(|t| matches!(t, Tok::Var(_))) {
                Kind::Template(Template {
                    labels,
                    body: TemplateBody::Glob(toks),
                })
            } else {
                Kind::Glob(toks)
            }
        } else {
            let parts = split_placeholders(source, &mut labels)?;
            if parts.iter().any(|p| matches!(p, Part::Var(_))) {
                Kind::Template(Template {
                    labels,
                    body: TemplateBody::Exact(parts),
                })
            } else {
                Kind::Exact(source.into())
            }
        };
        Ok(Compiled {
            pattern: Pattern {
                source: source.into(),
                kind,
            },
            warning,
        })
    }

    /// The pattern as written in the ACL, for `explain` output and logs.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The exact string this pattern matches, if it matches only one; lets a future rule
    /// index put exact rules in a hash map.
    pub fn literal(&self) -> Option<&str> {
        match &self.kind {
            Kind::Exact(s) => Some(s),
            _ => None,
        }
    }

    /// True if the pattern contains placeholders and so depends on the request.
    pub fn has_placeholders(&self) -> bool {
        matches!(self.kind, Kind::Template(_))
    }

    /// A literal every matching value starts with ("" when none is known), for the rule
    /// index: exact patterns give themselves, globs their leading literal characters,
    /// regexes the longest common prefix of the literals that regex-syntax proves every
    /// match begins with. Templates give "" (see [`Pattern::account_prefixed`]).
    pub fn required_prefix(&self) -> String {
        match &self.kind {
            Kind::Exact(s) => s.to_string(),
            Kind::Glob(toks) => leading_literal(toks),
            Kind::Regex(_) => regex_body(&self.source)
                .map(regex_required_prefix)
                .unwrap_or_default(),
            Kind::Template(_) => String::new(),
        }
    }

    /// For a template that starts with `${account}` (`${account}/*`, `${account}-ci/**`):
    /// the literal text that follows it, so a matching value starts with the request's
    /// account followed by that text. `None` for anything else (and for regex templates).
    pub fn account_prefixed(&self) -> Option<String> {
        let Kind::Template(t) = &self.kind else {
            return None;
        };
        match &t.body {
            TemplateBody::Exact(parts) => match parts.as_slice() {
                [Part::Var(Var::Account), Part::Lit(s), ..] => Some(s.clone()),
                [Part::Var(Var::Account), ..] => Some(String::new()),
                _ => None,
            },
            TemplateBody::Glob(toks) => match toks.split_first() {
                Some((Tok::Var(Var::Account), rest)) => Some(leading_literal(rest)),
                _ => None,
            },
            TemplateBody::Regex(_) => None,
        }
    }

    /// Whether `value` matches, with placeholders taken from `req`. Never allocates for
    /// a pattern without placeholders (regexes use the regex crate's per-thread cache).
    pub fn matches(&self, value: &str, req: &AccessRequest<'_>) -> bool {
        match &self.kind {
            Kind::Exact(s) => **s == *value,
            Kind::Glob(toks) => glob_match(toks, value),
            Kind::Regex(re) => re.is_match(value),
            Kind::Template(t) => t.matches(value, req),
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// The body of a `/…/` regex pattern, as docker_auth tells them apart: more than two
/// characters, starting and ending with `/`.
fn regex_body(source: &str) -> Option<&str> {
    if source.len() > 2 && source.starts_with('/') && source.ends_with('/') {
        Some(&source[1..source.len() - 1])
    } else {
        None
    }
}

fn build_regex(body: &str) -> Result<Regex, String> {
    // The body is parsed on its own first: the message then speaks of what was written
    // (not of the anchored `^(?:…)$` we compile), and a body that only parses once wrapped
    // (`a)|(?:b`) is refused instead of changing the anchoring.
    if let Err(e) = regex_syntax::Parser::new().parse(body) {
        let (kind, at) = match &e {
            regex_syntax::Error::Parse(e) => (e.kind().to_string(), e.span().start.offset),
            regex_syntax::Error::Translate(e) => (e.kind().to_string(), e.span().start.offset),
            _ => ("not a regular expression".to_string(), 0),
        };
        return Err(format!(
            "invalid regular expression /{body}/: {kind} (at character {})",
            at + 1
        ));
    }
    regex::RegexBuilder::new(&format!("^(?:{body})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => {
                format!("regular expression /{body}/ is too large (over {limit} bytes compiled)")
            }
            _ => format!("invalid regular expression /{body}/"),
        })
}

/// The anchoring heuristic: docker_auth searches regexes unanchored, we anchor them, so
/// a regex whose meaning changes deserves a warning. A regex is considered already
/// anchored at the start if it begins with `^`, `.*` or `.+`, and at the end if it ends
/// with an unescaped `$`, `.*` or `.+` (a `.*`/`.+` pad absorbs whatever an unanchored
/// search would have skipped). Anything else (`/admin/`, `/^team-/`) gets a warning.
/// Deliberately textual: it does not parse alternations (`/^a|b$/` passes unwarned).
fn anchoring_warning(body: &str) -> Option<String> {
    let start = body.starts_with('^') || body.starts_with(".*") || body.starts_with(".+");
    let escaped_end = |suffix: &str| {
        body.strip_suffix(suffix)
            .is_some_and(|rest| rest.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1)
    };
    let end = (body.ends_with('$') && !escaped_end("$"))
        || (body.ends_with(".*") && !escaped_end(".*"))
        || (body.ends_with(".+") && !escaped_end(".+"));
    if start && end {
        None
    } else {
        Some(format!(
            "regular expression /{body}/ is matched against the whole value (as /^(?:{body})$/), \
             while docker_auth would also accept values that merely contain a match; \
             write it with ^ and $ (or .* padding) to make the intent explicit"
        ))
    }
}

fn placeholder_var(name: &str, labels: &mut Vec<String>) -> Result<Var, String> {
    Ok(match name {
        "account" => Var::Account,
        "name" => Var::Name,
        "type" => Var::Type,
        "service" => Var::Service,
        _ => match name.strip_prefix("labels:") {
            Some(key) if !key.is_empty() => {
                let i = match labels.iter().position(|k| k == key) {
                    Some(i) => i,
                    None => {
                        labels.push(key.to_string());
                        labels.len() - 1
                    }
                };
                Var::Label(i)
            }
            _ => {
                return Err(format!(
                    "unknown placeholder ${{{name}}} (known: ${{account}}, ${{name}}, \
                     ${{type}}, ${{service}}, ${{labels:KEY}})"
                ))
            }
        },
    })
}

/// If `rest` starts a placeholder (`${`), its name and the length consumed.
fn placeholder_at(rest: &str) -> Option<Result<(&str, usize), String>> {
    let inner = rest.strip_prefix("${")?;
    Some(match inner.find('}') {
        Some(end) => Ok((&inner[..end], end + 3)),
        None => Err(format!("unterminated placeholder {rest:?} (missing `}}`)")),
    })
}

/// Splits text into literal pieces and placeholders (exact and regex patterns).
fn split_placeholders(source: &str, labels: &mut Vec<String>) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < source.len() {
        let rest = &source[i..];
        if let Some(found) = placeholder_at(rest) {
            let (name, len) = found?;
            let var = placeholder_var(name, labels)?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
            i += len;
        } else {
            let c = rest.chars().next().unwrap_or('\0');
            lit.push(c);
            i += c.len_utf8();
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

fn regex_source(parts: &[Part], mut value: impl FnMut(Var) -> String) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Lit(s) => out.push_str(s),
            Part::Var(v) => out.push_str(&regex::escape(&value(*v))),
        }
    }
    out
}

/// Parses a glob with Go `path.Match` rules (plus `**` and placeholders).
fn parse_glob(source: &str, labels: &mut Vec<String>) -> Result<Vec<Tok>, String> {
    let bad = |why: &str| format!("malformed glob {source:?}: {why}");
    let mut toks = Vec::new();
    let mut i = 0;
    while i < source.len() {
        let rest = &source[i..];
        if let Some(found) = placeholder_at(rest) {
            let (name, len) = found?;
            toks.push(Tok::Var(placeholder_var(name, labels)?));
            i += len;
            continue;
        }
        let mut chars = rest.chars();
        let c = chars.next().unwrap_or('\0');
        i += c.len_utf8();
        match c {
            '*' => {
                if source[i..].starts_with('*') {
                    i += 1;
                    toks.push(Tok::DStar);
                } else {
                    toks.push(Tok::Star);
                }
            }
            '?' => toks.push(Tok::Any),
            '\\' => match chars.next() {
                Some(e) => {
                    i += e.len_utf8();
                    toks.push(Tok::Lit(e));
                }
                None => return Err(bad("trailing `\\`")),
            },
            '[' => {
                let (class, len) = parse_class(&source[i..]).map_err(|why| bad(&why))?;
                i += len;
                toks.push(Tok::Class(class));
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Parses a class body after `[`; returns it and the bytes consumed including `]`.
fn parse_class(s: &str) -> Result<(Class, usize), String> {
    let mut it = s.char_indices().peekable();
    let mut negated = false;
    if let Some(&(_, '^')) = it.peek() {
        negated = true;
        it.next();
    }
    // One class character: `\` escapes; an unescaped `-` or `]` is not allowed here.
    fn class_char(it: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> Result<char, String> {
        match it.next() {
            None => Err("unclosed `[`".into()),
            Some((_, '\\')) => it
                .next()
                .map(|(_, c)| c)
                .ok_or_else(|| "unclosed `[`".to_string()),
            Some((_, c @ ('-' | ']'))) => Err(format!(
                "unexpected `{c}` in a character class (escape it as `\\{c}`)"
            )),
            Some((_, c)) => Ok(c),
        }
    }
    let mut ranges = Vec::new();
    loop {
        match it.peek() {
            None => return Err("unclosed `[`".into()),
            Some(&(at, ']')) if !ranges.is_empty() => {
                return Ok((Class { negated, ranges }, at + 1));
            }
            _ => {}
        }
        let lo = class_char(&mut it)?;
        let mut hi = lo;
        if let Some(&(_, '-')) = it.peek() {
            it.next();
            hi = class_char(&mut it)?;
            if hi < lo {
                return Err(format!("empty range `{lo}-{hi}` in a character class"));
            }
        }
        ranges.push((lo, hi));
    }
}

/// The literal characters a glob starts with, up to its first metacharacter or placeholder.
fn leading_literal(toks: &[Tok]) -> String {
    toks.iter()
        .map_while(|t| match t {
            Tok::Lit(c) => Some(*c),
            _ => None,
        })
        .collect()
}

/// The longest prefix every match of the anchored regex `^(?:body)$` starts with, from
/// regex-syntax's prefix extraction (which is sound: it feeds the regex crate's
/// prefilters, so a match can never start with anything outside the extracted set).
/// Falls back to "" on anything unexpected, which only makes the index less selective.
fn regex_required_prefix(body: &str) -> String {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .build()
        .parse(&format!("^(?:{body})$"))
    else {
        return String::new();
    };
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    if !seq.is_finite() || seq.is_empty() {
        return String::new();
    }
    let Some(lcp) = seq.longest_common_prefix() else {
        return String::new();
    };
    match std::str::from_utf8(lcp) {
        Ok(s) => s.to_string(),
        // Cut inside a multi-byte character: keep the whole characters before it.
        Err(e) => String::from_utf8_lossy(&lcp[..e.valid_up_to()]).into_owned(),
    }
}

/// Matches `s` against glob tokens (no [`Tok::Var`] left) by simulating the NFA whose
/// states are token positions. Stack-only for fewer than 256 tokens.
fn glob_match(toks: &[Tok], s: &str) -> bool {
    let words = (toks.len() + 1).div_ceil(64);
    if words <= 4 {
        let mut a = [0u64; 4];
        let mut b = [0u64; 4];
        run_nfa(toks, s, &mut a[..words], &mut b[..words])
    } else {
        let mut a = vec![0u64; words];
        let mut b = vec![0u64; words];
        run_nfa(toks, s, &mut a, &mut b)
    }
}

fn get(set: &[u64], i: usize) -> bool {
    set.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set(bits: &mut [u64], i: usize) {
    if let Some(w) = bits.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// Adds the states reachable by letting a star match nothing.
fn closure(toks: &[Tok], bits: &mut [u64]) {
    for (i, t) in toks.iter().enumerate() {
        if matches!(t, Tok::Star | Tok::DStar) && get(bits, i) {
            set(bits, i + 1);
        }
    }
}

fn run_nfa<'b>(toks: &[Tok], s: &str, mut cur: &'b mut [u64], mut next: &'b mut [u64]) -> bool {
    set(cur, 0);
    closure(toks, cur);
    for c in s.chars() {
        next.fill(0);
        for (i, t) in toks.iter().enumerate() {
            if !get(cur, i) {
                continue;
            }
            match t {
                Tok::Lit(x) if *x == c => set(next, i + 1),
                Tok::Any if c != '/' => set(next, i + 1),
                Tok::Class(class) if class.matches(c) => set(next, i + 1),
                Tok::Star if c != '/' => set(next, i),
                Tok::DStar => set(next, i),
                _ => {}
            }
        }
        closure(toks, next);
        if next.iter().all(|&w| w == 0) {
            return false;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    get(cur, toks.len())
}

impl Template {
    fn matches<'a>(&self, value: &str, req: &AccessRequest<'a>) -> bool {
        // Each label placeholder needs the account to have that label; no values, no match.
        let mut values: Vec<&'a [String]> = Vec::with_capacity(self.labels.len());
        let mut total: usize = 1;
        for key in &self.labels {
            match req.labels.get(key) {
                Some(v) if !v.is_empty() => {
                    total = total.saturating_mul(v.len());
                    values.push(v);
                }
                _ => return false,
            }
        }
        if total > MAX_COMBINATIONS {
            return false;
        }
        let mut combo = vec![0usize; values.len()];
        loop {
            let resolve = |v: Var| -> &'a str {
                match v {
                    Var::Account => req.account,
                    Var::Name => req.name,
                    Var::Type => req.kind,
                    Var::Service => req.service,
                    Var::Label(i) => match (values.get(i), combo.get(i)) {
                        (Some(vals), Some(&j)) => vals.get(j).map_or("", |s| s.as_str()),
                        _ => "",
                    },
                }
            };
            if self.matches_one(value, resolve) {
                return true;
            }
            // Next combination (odometer); done when it wraps around.
            let mut k = 0;
            loop {
                if k == combo.len() {
                    return false;
                }
                combo[k] += 1;
                if combo[k] < values[k].len() {
                    break;
                }
                combo[k] = 0;
                k += 1;
            }
        }
    }

    fn matches_one<'r>(&self, value: &str, resolve: impl Fn(Var) -> &'r str) -> bool {
        match &self.body {
            TemplateBody::Exact(parts) => {
                let mut rest = value;
                for p in parts {
                    let piece = match p {
                        Part::Lit(s) => s.as_str(),
                        Part::Var(v) => resolve(*v),
                    };
                    match rest.strip_prefix(piece) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                rest.is_empty()
            }
            TemplateBody::Glob(toks) => {
                let mut expanded = Vec::with_capacity(toks.len() + 16);
                for t in toks {
                    match t {
                        Tok::Var(v) => expanded.extend(resolve(*v).chars().map(Tok::Lit)),
                        t => expanded.push(t.clone()),
                    }
                }
                glob_match(&expanded, value)
            }
            TemplateBody::Regex(parts) => {
                let source = regex_source(parts, |v| resolve(v).to_string());
                // Validated at load; an error here can only be a size limit: no match.
                build_regex(&source).is_ok_and(|re| re.is_match(value))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Labels;

    fn req<'a>(account: &'a str, labels: &'a Labels) -> AccessRequest<'a> {
        AccessRequest {
            account,
            labels,
            ip: None,
            service: "registry.example",
            kind: "repository",
            name: "team/app",
            actions: &[],
        }
    }

    fn m(pattern: &str, value: &str) -> bool {
        let labels = Labels::new();
        Pattern::compile(pattern)
            .unwrap()
            .pattern
            .matches(value, &req("alice", &labels))
    }

    #[test]
    fn exact() {
        assert!(m("team/app", "team/app"));
        assert!(!m("team/app", "team/app2"));
        assert!(!m("team/app", "Team/app"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("/", "/"));
        assert!(m("//", "//"), "two characters is not a regex");
        assert!(m("a]-b", "a]-b"));
        let p = Pattern::compile("x").unwrap().pattern;
        assert_eq!(p.literal(), Some("x"));
    }

    #[test]
    fn glob_star_and_question() {
        assert!(m("team/*", "team/app"));
        assert!(m("team/*", "team/"));
        assert!(!m("team/*", "team/a/b"));
        assert!(!m("team/*", "team"));
        assert!(m("*", ""));
        assert!(m("*", "abc"));
        assert!(!m("*", "a/b"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(!m("a?c", "ac"));
        assert!(m("*/*-ci", "team/app-ci"));
        assert!(m("*a*a*a*b", "xaxaxaab"));
        assert!(!m("*a*a*a*b", &"a".repeat(200)));
    }

    #[test]
    fn glob_double_star() {
        assert!(m("team/**", "team/a"));
        assert!(m("team/**", "team/a/b/c"));
        assert!(m("team/**", "team/"));
        assert!(!m("team/**", "team"));
        assert!(!m("team/**", "other/a"));
        assert!(m("**/app", "a/b/app"));
        assert!(m("**", "x/y/z"));
        assert!(m("a/**/z", "a/b/c/z"));
        assert!(!m("a/*/z", "a/b/c/z"));
    }

    #[test]
    fn glob_classes_and_escapes() {
        assert!(m("[abc]x", "bx"));
        assert!(!m("[abc]x", "dx"));
        assert!(m("[a-c]", "b"));
        assert!(!m("[a-c]", "d"));
        assert!(m("[^a-c]", "d"));
        assert!(!m("[^a-c]", "b"));
        assert!(!m("[^a-c]", "/"), "a negated class never matches /");
        assert!(
            !m("a[!-0]b", "a/b"),
            "a range covering / still does not match it"
        );
        assert!(m("[\\]]", "]"));
        assert!(m("[\\-]", "-"));
        assert!(m("[a\\-z]", "-"));
        assert!(!m("[a\\-z]", "b"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("a\\?", "a?"));
        assert!(m("\\[x]", "[x]"));
        assert!(m("[é]", "é"));
    }

    #[test]
    fn malformed_globs() {
        for bad in [
            "[", "a[b", "[]", "[]a]", "[^]", "a\\", "[a-]", "[-a]", "[z-a]", "[a",
        ] {
            let err = Pattern::compile(bad).unwrap_err();
            assert!(err.contains("malformed glob"), "{bad}: {err}");
        }
    }

    #[test]
    fn regex_is_anchored() {
        assert!(m("/admin/", "admin"));
        assert!(!m("/admin/", "notadmin"));
        assert!(!m("/admin/", "admins"));
        assert!(m("/.+/", "x"));
        assert!(!m("/.+/", ""));
        assert!(m("/team-(a|b)/", "team-b"));
        assert!(!m("/a|b/", "ab"));
        assert!(Pattern::compile("/(/")
            .unwrap_err()
            .contains("invalid regular expression"));
        // The message speaks of the regex as written, never of the anchored one compiled.
        let e = Pattern::compile("/(admin/").unwrap_err();
        assert_eq!(
            e,
            "invalid regular expression /(admin/: unclosed group (at character 1)"
        );
        // A body that parses only once wrapped in `^(?:…)$` would escape the anchoring
        // (`^(?:a)|(?:b)$` matches anything starting with `a`): refused.
        let e = Pattern::compile("/a)|(?:b/").unwrap_err();
        assert!(e.contains("invalid regular expression /a)|(?:b/"), "{e}");
        assert!(!e.contains("^(?:"), "{e}");
    }

    #[test]
    fn regex_warning_heuristic() {
        let warn = |p: &str| Pattern::compile(p).unwrap().warning.is_some();
        assert!(warn("/admin/"));
        assert!(warn("/^team-/"));
        assert!(warn("/-prod$/"));
        assert!(warn("/^a\\$/"), "escaped $ is not an anchor");
        assert!(!warn("/^admin$/"));
        assert!(!warn("/.+/"));
        assert!(!warn("/.*/"));
        assert!(!warn("/.*admin.*/"));
        assert!(!warn("/^team-.*/"));
        assert!(warn("/^a\\.*/"), "escaped dot is not padding");
        assert!(!warn("/^a\\\\.*/"), "escaped backslash then padding");
        assert!(!warn("plain"));
        assert!(!warn("glob/*"));
    }

    #[test]
    fn placeholders_exact_glob_regex() {
        let labels = Labels::new();
        let r = req("alice", &labels);
        let p = |s: &str| Pattern::compile(s).unwrap().pattern;
        assert!(p("${account}/*").matches("alice/app", &r));
        assert!(!p("${account}/*").matches("bob/app", &r));
        assert!(!p("${account}/*").matches("alice/a/b", &r));
        assert!(p("${account}").matches("alice", &r));
        assert!(!p("${account}").matches("alice2", &r));
        assert!(p("${service}").matches("registry.example", &r));
        assert!(p("${type}").matches("repository", &r));
        assert!(p("${name}").matches("team/app", &r));
        assert!(p("x-${account}-y").matches("x-alice-y", &r));
        assert!(p("/${account}-[0-9]+/").matches("alice-42", &r));
        assert!(!p("/${account}-[0-9]+/").matches("alice-x", &r));
        assert!(p("${account}").has_placeholders());
        assert!(!p("a").has_placeholders());
        assert!(p("$account").matches("$account", &r), "no braces: literal");
    }

    #[test]
    fn placeholder_values_are_literal() {
        let labels = Labels::new();
        let p = |s: &str| Pattern::compile(s).unwrap().pattern;
        let r = req("a*", &labels);
        assert!(!p("${account}/x").matches("ab/x", &r));
        assert!(p("${account}/x").matches("a*/x", &r));
        assert!(!p("${account}/*").matches("ab/x", &r));
        assert!(p("${account}/*").matches("a*/x", &r));
        assert!(!p("/${account}/").matches("aaa", &r));
        assert!(p("/${account}/").matches("a*", &r));
        let r = req("a.c", &labels);
        assert!(!p("/${account}/").matches("abc", &r));
        let r = req("[x]", &labels);
        assert!(p("${account}/?").matches("[x]/y", &r));
        assert!(!p("${account}/?").matches("x/y", &r));
    }

    #[test]
    fn label_placeholders() {
        let mut labels = Labels::new();
        labels.insert("team".into(), vec!["red".into(), "blue".into()]);
        labels.insert("env".into(), vec!["dev".into(), "prod".into()]);
        labels.insert("none".into(), vec![]);
        let r = req("alice", &labels);
        let p = |s: &str| Pattern::compile(s).unwrap().pattern;
        assert!(p("${labels:team}/*").matches("red/app", &r));
        assert!(p("${labels:team}/*").matches("blue/app", &r));
        assert!(!p("${labels:team}/*").matches("green/app", &r));
        let two = p("${labels:team}-${labels:env}/*");
        for ok in ["red-dev/x", "red-prod/x", "blue-dev/x", "blue-prod/x"] {
            assert!(two.matches(ok, &r), "{ok}");
        }
        assert!(!two.matches("red-red/x", &r));
        // Same key twice: the same value.
        let same = p("${labels:team}/${labels:team}");
        assert!(same.matches("red/red", &r));
        assert!(!same.matches("red/blue", &r));
        assert!(!p("${labels:missing}/*").matches("red/app", &r));
        assert!(!p("${labels:none}").matches("", &r));
        assert!(p("/${labels:team}/").matches("blue", &r));
    }

    #[test]
    fn bad_placeholders() {
        for bad in [
            "${foo}",
            "${labels:}",
            "x/${account",
            "/${nope}/",
            "${Account}/*",
        ] {
            assert!(Pattern::compile(bad).is_err(), "{bad}");
        }
        assert!(Pattern::compile("${foo}")
            .unwrap_err()
            .contains("unknown placeholder ${foo}"));
    }

    #[test]
    fn long_globs_use_the_heap_path() {
        let pat = format!("{}*", "a/".repeat(200));
        assert!(m(&pat, &format!("{}xyz", "a/".repeat(200))));
        assert!(!m(&pat, &format!("{}x/z", "a/".repeat(200))));
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn glob_without_double_star_never_crosses_slash(
            pat in "([a-c/?*]|\\[[a-c/]\\]|\\[\\^a\\]|\\\\/){0,12}",
            name in "[a-c/]{0,16}",
        ) {
            prop_assume!(!pat.contains("**"));
            if let Ok(c) = Pattern::compile(&pat) {
                let labels = Labels::new();
                if c.pattern.matches(&name, &req("u", &labels)) {
                    let toks = parse_glob(&pat, &mut Vec::new()).unwrap_or_default();
                    let slashes = toks.iter().filter(|t| **t == Tok::Lit('/')).count();
                    prop_assert_eq!(name.matches('/').count(), slashes);
                }
            }
        }

        #[test]
        fn plain_patterns_match_only_themselves(
            pat in "[a-z0-9/._-]{0,12}",
            other in "[a-z0-9/._-]{0,12}",
        ) {
            let labels = Labels::new();
            let r = req("u", &labels);
            // `/x/` is a regex; leave those out.
            prop_assume!(regex_body(&pat).is_none());
            let p = Pattern::compile(&pat).unwrap().pattern;
            prop_assert!(p.matches(&pat, &r));
            prop_assert_eq!(p.matches(&other, &r), other == pat);
        }

        #[test]
        fn glob_agrees_with_regex_translation(
            pat in "([ab/?*]|\\*\\*|\\[a\\]){0,8}",
            name in "[ab/]{0,10}",
        ) {
            let toks = parse_glob(&pat, &mut Vec::new()).unwrap();
            let mut re = String::from("^");
            for t in &toks {
                match t {
                    Tok::Lit(c) => re.push_str(&regex::escape(&c.to_string())),
                    Tok::Any => re.push_str("[^/]"),
                    Tok::Star => re.push_str("[^/]*"),
                    Tok::DStar => re.push_str("(?s:.)*"),
                    Tok::Class(_) => re.push('a'),
                    Tok::Var(_) => unreachable!(),
                }
            }
            re.push('$');
            let re = Regex::new(&re).unwrap();
            prop_assert_eq!(glob_match(&toks, &name), re.is_match(&name));
        }

        #[test]
        fn compile_and_match_never_panic(pat in "\\PC{0,24}", value in "\\PC{0,24}") {
            let mut labels = Labels::new();
            labels.insert("g".into(), vec!["x".into(), "*".into()]);
            if let Ok(c) = Pattern::compile(&pat) {
                let _ = c.pattern.matches(&value, &req("a*", &labels));
            }
        }
    }
}
