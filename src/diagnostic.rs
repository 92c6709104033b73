//! A problem found while loading a configuration file, located at file:line:column.
//!
//! Every loader (proxy.yaml, users, htpasswd, ACL) reports through this one type so that
//! `portcullis check`, a failed reload and a failed start all print errors the same way:
//! `acl/10-team.yaml:12:5: match.ip: invalid CIDR "10.0.0.0/33"`.

use std::fmt;
use std::path::{Path, PathBuf};

/// One located error or warning from a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The configuration key concerned (`auth.users`, `match.ip`), when there is one.
    pub key: Option<String>,
    /// What is wrong, for a human.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic for `file` with no position yet.
    pub fn new(file: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.as_ref().to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
        }
    }

    /// Sets the 1-based line.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// Sets the 1-based line and column.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Names the configuration key the problem is about.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Several diagnostics from one load: loaders report every error they find, not just the first.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// The first line (1-based) on which `key:` appears as a mapping key, quoted or not. serde keeps
/// no positions for values that parsed fine, so semantic errors (a bad hash, a missing file)
/// are pointed at the line of their key this way.
pub fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let forms = [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ];
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            forms.iter().any(|f| {
                t.strip_prefix(f.trim_end_matches(':'))
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
        })
        .map(|i| i + 1)
}

/// Why `p` cannot be read as a file, if it cannot: missing, or a folder where a file is due.
pub fn not_a_file(p: &Path) -> Option<String> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => None,
        Ok(m) if m.is_dir() => Some(format!("{} is a folder, not a file", p.display())),
        Ok(_) => Some(format!("{} is not a regular file", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("{} does not exist", p.display()))
        }
        Err(e) => Some(format!("{}: {e}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_key_lines() {
        let text = "a: 1\nusers:\n  \"\": {}\n  'q': 2\n  bob :\n";
        assert_eq!(find_key_line(text, "users"), Some(2));
        assert_eq!(find_key_line(text, ""), Some(3));
        assert_eq!(find_key_line(text, "q"), Some(4));
        assert_eq!(find_key_line(text, "bob"), Some(5));
        assert_eq!(find_key_line(text, "b"), None);
    }

    #[test]
    fn display_has_file_line_column_key() {
        let d = Diagnostic::new("acl/a.yaml", "bad CIDR")
            .at(3, 7)
            .key("match.ip");
        assert_eq!(d.to_string(), "acl/a.yaml:3:7: match.ip: bad CIDR");
        let d = Diagnostic::new("users.yaml", "missing").at_line(2);
        assert_eq!(d.to_string(), "users.yaml:2: missing");
    }
}
