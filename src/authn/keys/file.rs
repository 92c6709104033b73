//! The keys file: one JSON object per line, so a key can be appended, removed or read by
//! hand (or with `jq`) without touching the others, and every error has a line number.
//!
//! ```text
//! # portcullis access keys: written by `portcullis key create`, one key per line.
//! {"id":"kQ3x9Lm2PaZ0","account":"ci-bot","scopes":["repository:team/*:pull,push"],"created":"2026-12-01T02:50:00Z","expires":"2027-03-01T02:50:00Z","description":"release pipeline","sha256":"…64 hex…"}
//! ```
//!
//! Blank lines and lines starting with `#` are ignored. Unknown fields are errors (a
//! misspelt `expire` must not make a key eternal).

use std::collections::HashSet;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::scope::Scopes;
use super::secret::{self, SecretDigest};
use super::Record;
use crate::diagnostic::{Diagnostic, Diagnostics};

/// The configuration key errors in this file are reported under.
pub const KEY: &str = "auth.keys";

/// Longest id, account, description and scope accepted, in bytes: bounds what a line can
/// make the proxy hold and print.
const MAX_FIELD: usize = 1024;
/// Most scopes on one key.
const MAX_SCOPES: usize = 64;

/// One line of the file, as serialised.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    account: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    robot: bool,
    /// A single sign-on person's labels (see [`Record::sso_labels`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sso_labels: Option<crate::authn::Labels>,
    sha256: String,
}

/// One parsed key: its public record, compiled scopes, the digest of its secret, and the
/// line it is on (so `revoke` removes exactly that line).
#[derive(Debug, Clone)]
pub struct Entry {
    /// What `key list` shows.
    pub record: Record,
    /// The record's scopes, compiled.
    pub scopes: Scopes,
    /// SHA-256 of the secret.
    pub digest: SecretDigest,
    /// 1-based line number.
    pub line: usize,
}

/// Formats a time as RFC 3339 UTC with whole seconds (`2026-12-01T02:50:00Z`).
pub fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Parses an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))?;
    let secs = t.unix_timestamp();
    if secs < 0 {
        return Err(format!("{text:?} is before 1970"));
    }
    Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
}

/// True for text a human would not expect in a name or description: control characters
/// (terminal escapes in `key list` output) and Unicode bidi overrides.
fn has_hidden_characters(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
}

/// Checks the fields a caller supplies to `create`, with the same rules the file is
/// loaded with, so a key that is written can always be read back.
pub fn validate_fields(account: &str, scopes: &[String], description: &str) -> Result<(), String> {
    if account.is_empty() {
        return Err("the account must not be empty (anonymous has no keys)".into());
    }
    if account.len() > MAX_FIELD || has_hidden_characters(account) {
        return Err(format!(
            "account {account:?}: too long or has control characters"
        ));
    }
    if description.len() > MAX_FIELD || has_hidden_characters(description) {
        return Err("description: too long or has control characters".into());
    }
    if scopes.len() > MAX_SCOPES {
        return Err(format!("at most {MAX_SCOPES} scopes"));
    }
    if scopes.iter().any(|s| s.len() > MAX_FIELD) {
        return Err("a scope is too long".into());
    }
    Scopes::parse(scopes).map(|_| ())
}

/// Most labels, and values per label, a single sign-on key may record (as a UI session).
const MAX_LABELS: usize = 64;
const MAX_LABEL_VALUES: usize = 200;

/// Checks a single sign-on key's labels: bounded, no hidden characters.
pub fn validate_labels(labels: &crate::authn::Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("sso_labels: at most {MAX_LABELS} labels"));
    }
    for (name, values) in labels {
        if name.is_empty() || name.len() > MAX_FIELD || has_hidden_characters(name) {
            return Err(format!(
                "sso_labels: label {name:?} is empty, too long or has control characters"
            ));
        }
        if values.len() > MAX_LABEL_VALUES
            || values
                .iter()
                .any(|v| v.len() > MAX_FIELD || has_hidden_characters(v))
        {
            return Err(format!(
                "sso_labels.{name}: too many values, or one too long or with control characters"
            ));
        }
    }
    Ok(())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses one non-blank, non-comment line.
fn parse_line(text: &str, line: usize) -> Result<Entry, String> {
    let raw: Line = serde_json::from_str(text).map_err(|e| {
        // serde_json's message ends with "at line 1 column N": only the column is ours.
        let msg = e.to_string();
        match msg.rfind(" at line ") {
            Some(i) => format!("{} (column {})", &msg[..i], e.column()),
            None => msg,
        }
    })?;
    if !valid_id(&raw.id) {
        return Err(format!(
            "id {:?}: 1 to 64 characters of A-Z, a-z, 0-9, - and _",
            raw.id
        ));
    }
    validate_fields(&raw.account, &raw.scopes, &raw.description)?;
    if let Some(labels) = &raw.sso_labels {
        if raw.robot {
            return Err("a key is either a robot's or a single sign-on person's, not both".into());
        }
        validate_labels(labels)?;
    }
    let scopes = Scopes::parse(&raw.scopes)?;
    let created = parse_time(&raw.created).map_err(|e| format!("created: {e}"))?;
    let expires = match &raw.expires {
        Some(t) => Some(parse_time(t).map_err(|e| format!("expires: {e}"))?),
        None => None,
    };
    let digest = secret::from_hex(&raw.sha256)
        .ok_or_else(|| "sha256: expected 64 lower-case hex digits".to_string())?;
    Ok(Entry {
        record: Record {
            id: raw.id,
            account: raw.account,
            scopes: raw.scopes,
            created,
            expires,
            description: raw.description,
            robot: raw.robot,
            sso_labels: raw.sso_labels,
        },
        scopes,
        digest,
        line,
    })
}

/// Parses a whole keys file. Every bad line is reported (file:line, key `auth.keys`); a file
/// with any bad line yields no keys, so a reload keeps the previous ones.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Entry>, Diagnostics> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut ids = HashSet::new();
    let mut digests = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |msg: String| Diagnostic::new(path, msg).at_line(i + 1).key(KEY);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, i + 1) {
            Ok(entry) => {
                if !ids.insert(entry.record.id.clone()) {
                    errors.push(at(format!("key id {:?} is listed twice", entry.record.id)));
                } else if !digests.insert(entry.digest) {
                    errors.push(at(format!(
                        "key {:?} has the same secret as an earlier line",
                        entry.record.id
                    )));
                } else {
                    entries.push(entry);
                }
            }
            Err(msg) => errors.push(at(msg)),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(Diagnostics(errors))
    }
}

/// The line `create` appends for a new key.
pub fn render(record: &Record, digest: &SecretDigest) -> String {
    let line = Line {
        id: record.id.clone(),
        account: record.account.clone(),
        scopes: record.scopes.clone(),
        created: format_time(record.created),
        expires: record.expires.map(format_time),
        description: record.description.clone(),
        robot: record.robot,
        sso_labels: record.sso_labels.clone(),
        sha256: secret::to_hex(digest),
    };
    // A struct of strings always serialises.
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(id: &str) -> String {
        format!(
            r#"{{"id":"{id}","account":"ci","scopes":["repository:team/*:pull"],"created":"2026-12-01T00:00:00Z","sha256":"{}"}}"#,
            secret::to_hex(&secret::digest(id))
        )
    }

    #[test]
    fn round_trips() {
        let record = Record {
            id: "kabc".into(),
            account: "ci-bot".into(),
            scopes: vec!["repository:team/*:pull,push".into()],
            created: parse_time("2026-12-01T02:50:00Z").unwrap(),
            expires: Some(parse_time("2027-03-01T02:50:00Z").unwrap()),
            description: "release \"pipeline\" ✓".into(),
            robot: true,
            sso_labels: None,
        };
        let d = secret::digest("pcl_x");
        let text = format!("# comment\n\n{}\n", render(&record, &d));
        let entries = parse(&text, Path::new("k")).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].record, record);
        assert_eq!(entries[0].digest, d);
        assert_eq!(entries[0].line, 3);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = [
            good("k1"),
            "not json".into(),
            good("k1"),
            good("k2").replace("\"ci\"", "\"\""),
            good("k3").replace("created", "created\":\"x\",\"expire"),
            good("k4").replace("2026-12-01T00:00:00Z", "yesterday"),
            good("k5").replace("team/*:pull", "team/*:own"),
            good("k6").replace("\"k6\"", "\"k 6\""),
            good("k7").replace("\"ci\"", "\"c\\u001b[31mi\""),
            format!("{}{}", &good("k8")[..good("k8").len() - 3], "X\"}"),
            good("k9").replace(
                &secret::to_hex(&secret::digest("k9")),
                &secret::to_hex(&secret::digest("k1")),
            ),
            "[]".into(),
            "{\"id\":1}".into(),
            format!("{}\u{0}", good("k10")),
        ]
        .join("\n");
        let err = parse(&text, Path::new("keys.jsonl")).unwrap_err();
        let lines: Vec<_> = err.0.iter().map(|d| d.line.unwrap()).collect();
        assert_eq!(lines, (2..=14).collect::<Vec<_>>(), "{err}");
        assert!(err.0.iter().all(|d| d.key.as_deref() == Some(KEY)));
        assert!(
            err.to_string()
                .contains("keys.jsonl:3: auth.keys: key id \"k1\" is listed twice"),
            "{err}"
        );
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        for text in [
            "{",
            "\"",
            "{\"id\":\"a\",\"account\":\"b\",\"created\":\"9999-99-99T00:00:00Z\",\"sha256\":\"\"}",
            "{\"id\":\"a\",\"account\":\"b\",\"created\":\"1969-01-01T00:00:00Z\",\"sha256\":\"00\"}",
            &"[".repeat(10_000),
            "{\"id\":\"a\",\"id\":\"b\"}",
            "\u{feff}{}",
            "é",
        ] {
            assert!(parse(text, Path::new("k")).is_err(), "{text:?}");
        }
    }

    #[test]
    fn times_are_whole_seconds_utc() {
        let t = parse_time("2026-12-01T03:00:00+01:00").unwrap();
        assert_eq!(format_time(t), "2026-12-01T02:00:00Z");
        assert!(parse_time("2026-12-01").is_err());
    }
}
