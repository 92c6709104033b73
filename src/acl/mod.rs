//! The access control list: docker_auth's rule schema, matched first-match-wins.
//!
//! ```yaml
//! - match: {account: "/.+/", name: "${account}/*"}
//!   actions: ["*"]
//!   comment: everyone owns their namespace
//! ```
//!
//! | file | job |
//! |---|---|
//! | [`pattern`] | `match` values: exact, glob (Go `path.Match` + `**`), anchored `/regex/`, placeholders |
//! | [`rule`] | one compiled rule: conditions (incl. `ip`, `labels`), actions, origin |
//! | `load` | YAML file or folder → rules, every error located at file:line:column |
//! | `index` | rules bucketed by a literal they require, so a decision checks only candidates |
//! | `decide` | first matching rule → [`Grant`] |
//! | [`shadow`] | rules that can never match: an earlier rule matches all they do (warnings) |
//!
//! Everything is compiled (and indexed) at load; [`Acl`] is immutable, `Send + Sync`, and
//! shared behind an `Arc` (swapped as a whole on reload).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Diagnostics};

mod decide;
mod index;
mod load;
pub mod pattern;
pub mod rule;
pub mod shadow;

pub use load::is_acl_file_name;
pub use pattern::Pattern;
pub use rule::{Conditions, Rule, RuleActions};

/// An account's labels (`groups: [builders, auditors]`), as authentication produced them;
/// rules match them with `labels:` and `${labels:KEY}`.
pub type Labels = BTreeMap<String, Vec<String>>;

/// What is being asked: one scope of one request, with who asks and from where.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The authenticated account; "" for anonymous.
    pub account: &'a str,
    /// The account's labels.
    pub labels: &'a Labels,
    /// The client address, if known; rules with `ip` never match without one.
    pub ip: Option<IpAddr>,
    /// The service the token is for.
    pub service: &'a str,
    /// The scope type: "repository", "registry", ...
    pub kind: &'a str,
    /// The scope name: "team/app", "catalog".
    pub name: &'a str,
    /// Requested actions: "pull", "push", "delete", "*".
    pub actions: &'a [&'a str],
}

/// Where a rule came from, so audit logs and `portcullis explain` can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The file the rule is in, as it was loaded (shared by the rules of one file).
    pub file: Arc<Path>,
    /// 1-based line where the rule starts.
    pub line: usize,
    /// The rule's `comment`, if any (shared: every decision carries its rule's origin, and
    /// a clone per request should not copy the text).
    pub comment: Option<Arc<str>>,
}

impl fmt::Display for RuleOrigin {
    /// `acl/10.yaml:12 (everyone owns their namespace)`, or without the parenthesis when
    /// the rule has no comment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(comment) = &self.comment {
            write!(f, " ({comment})")?;
        }
        Ok(())
    }
}

/// The answer to an [`AccessRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The granted subset of the requested actions, in requested order (empty: denied).
    pub actions: Vec<String>,
    /// The rule that decided; `None` when no rule matched (denied by default).
    pub rule: Option<RuleOrigin>,
}

/// A loaded ACL: compiled rules in order (files in name order, rules top to bottom), and
/// an index over them that [`Acl::decide`] uses to skip rules that cannot match.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
    index: index::Index,
}

/// A successfully loaded ACL and the warnings found on the way (e.g. an unanchored
/// regex), which the caller should print but which do not stop a start or reload.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The rules.
    pub acl: Acl,
    /// Non-fatal findings, located like errors.
    pub warnings: Vec<Diagnostic>,
}

impl Acl {
    /// Loads an ACL from a file, or from a folder of `*.yaml`/`*.yml` files read in
    /// file-name order (non-recursive, names starting with `.` skipped, symlinks
    /// followed: a Kubernetes ConfigMap mount works as is). All errors of all files are
    /// returned together.
    pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
        load::load(path)
    }

    /// Parses one file's text; `file` is only used in diagnostics and rule origins.
    /// Accepts a bare list of rules or a docker_auth config with an `acl:` list (its
    /// other sections are ignored); an empty document is an empty ACL.
    pub fn parse(text: &str, file: &Path) -> Result<Loaded, Diagnostics> {
        load::parse(text, file)
    }

    /// Number of rules, for startup logs and `portcullis check`.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules: every request is denied.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in decision order, for `explain` and diagnostics.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Indexes compiled rules (kept in the given order).
    fn from_rules(rules: Vec<Rule>) -> Acl {
        let index = index::Index::build(&rules);
        Acl { rules, index }
    }

    /// How many rules the index files under a key, and how many are candidates for every
    /// request (no literal to file them under); for benchmarks and diagnostics.
    pub fn index_stats(&self) -> (usize, usize) {
        self.index.stats()
    }
}
