//! The request audit line as JSON, formatted straight into a byte buffer: the same fields,
//! order and encoding the `tracing` JSON formatter produced (`timestamp`, `level`, `message`,
//! the fields, `target`), without its per-event allocations.

use std::fmt::{self, Display, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

/// One request's audit fields, borrowed from the request context (documented in
/// `docs/operations.md`, "The audit line").
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The client address (`unknown via <peer>` when unreadable).
    pub client: &'a dyn Display,
    /// The account, once known.
    pub account: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request path, without the query.
    pub path: &'a str,
    /// The repository, for repository requests.
    pub repository: &'a str,
    /// `pull`, `push`, … or `""`.
    pub action: &'a str,
    /// The decision label.
    pub decision: &'a str,
    /// The deciding ACL rule, when one matched.
    pub rule: Option<&'a dyn Display>,
    /// Token endpoint: the scopes asked for.
    pub scopes_requested: &'a str,
    /// Token endpoint: the scopes granted.
    pub scopes_granted: &'a str,
    /// Token endpoint: the signing key's id.
    pub key_id: &'a str,
    /// The access key the caller logged in with (its id), if any.
    pub access_key: &'a str,
    /// The CI issuer whose job token the caller logged in with, if any.
    pub issuer: &'a str,
    /// Why a login was refused (`access key k… has expired`).
    pub reason: &'a str,
    /// What the manifest cache did.
    pub cache: &'a str,
    /// The status sent (0: none).
    pub status: u16,
    /// Body bytes received.
    pub bytes_in: usize,
    /// Body bytes sent.
    pub bytes_out: usize,
    /// Milliseconds, microsecond precision.
    pub duration_ms: f64,
    /// The kind of failure, or `""`.
    pub error: &'a str,
}

impl Request<'_> {
    /// Appends the line (with its `\n`) to `out`, stamped `now`.
    pub fn write_json(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(now, out);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\"");
        let mut field = |name: &str, value: &dyn Display| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":\"");
            // Writing into a Vec cannot fail; a Display impl that errors leaves its part out.
            let _ = write!(Escaped(out), "{value}");
            out.push(b'"');
        };
        field("client", self.client);
        field("account", &self.account);
        field("method", &self.method);
        field("path", &self.path);
        field("repository", &self.repository);
        field("action", &self.action);
        field("decision", &self.decision);
        field("rule", self.rule.unwrap_or(&""));
        field("scopes_requested", &self.scopes_requested);
        field("scopes_granted", &self.scopes_granted);
        field("key_id", &self.key_id);
        field("access_key", &self.access_key);
        field("issuer", &self.issuer);
        field("reason", &self.reason);
        field("cache", &self.cache);
        let mut number = |name: &str, value: u64| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            let _ = write!(Escaped(out), "{value}");
        };
        number("status", u64::from(self.status));
        number("bytes_in", self.bytes_in as u64);
        number("bytes_out", self.bytes_out as u64);
        out.extend_from_slice(b",\"duration_ms\":");
        // serde_json prints floats as the JSON formatter did (`1.054`, `90000.0`).
        if serde_json::to_writer(&mut *out, &self.duration_ms).is_err() {
            out.push(b'0');
        }
        out.extend_from_slice(b",\"error\":\"");
        let _ = Escaped(out).write_str(self.error);
        out.extend_from_slice(b"\",\"target\":\"audit\"}\n");
    }
}

/// Writes text into a JSON string body, escaped as serde_json escapes: `"`, `\` and the
/// control characters below U+0020; everything else as it is (UTF-8).
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0x00..=0x1f => b"",
                _ => continue,
            };
            self.0.extend_from_slice(&bytes[start..i]);
            if escape.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.0.extend_from_slice(b"\\u00");
                self.0.push(HEX[usize::from(b >> 4)]);
                self.0.push(HEX[usize::from(b & 0xf)]);
            } else {
                self.0.extend_from_slice(escape);
            }
            start = i + 1;
        }
        self.0.extend_from_slice(&bytes[start..]);
        Ok(())
    }
}

/// RFC 3339 in UTC with microseconds (`2026-12-01T03:13:44.319959Z`), as tracing-subscriber's
/// default timer prints it.
fn timestamp(now: SystemTime, out: &mut Vec<u8>) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let _ = write!(
        Escaped(out),
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    );
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let mut out = Vec::new();
        timestamp(
            UNIX_EPOCH + Duration::from_micros(1_796_096_024_319_959),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-01T03:33:44.319959Z"
        );
        let mut out = Vec::new();
        timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2000-02-29T00:00:00.000000Z"
        );
        for days in [0i64, 59, 365, 10_957, 20_000, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert!(
                (1..=12).contains(&m) && (1..=31).contains(&d) && y >= 1970,
                "{days}"
            );
        }
    }

    #[test]
    fn the_line_is_the_json_the_tracing_formatter_wrote() {
        let rule = "acl.yaml:3 (a \"quoted\" comment)";
        let line = Request {
            client: &"127.0.0.1",
            account: "al\u{1}ice",
            method: "GET",
            path: "/v2/a\\b/manifests/latest",
            repository: "a",
            action: "pull",
            decision: "allowed",
            rule: Some(&rule),
            scopes_requested: "",
            scopes_granted: "",
            key_id: "",
            access_key: "",
            issuer: "",
            reason: "",
            cache: "hit",
            status: 200,
            bytes_in: 0,
            bytes_out: 528,
            duration_ms: 90000.0,
            error: "\n",
        };
        let mut out = Vec::new();
        line.write_json(UNIX_EPOCH, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["account"], "al\u{1}ice");
        assert_eq!(v["path"], "/v2/a\\b/manifests/latest");
        assert_eq!(v["rule"], rule);
        assert_eq!(v["status"], 200);
        assert_eq!(v["error"], "\n");
        assert_eq!(v["target"], "audit");
        // The order and encoding of the tracing JSON formatter's line.
        let head = r#"{"timestamp":"1970-01-01T00:00:00.000000Z","level":"INFO","message":"request","client":"127.0.0.1","account":"al\u0001ice","method":"GET","path":"/v2/a\\b/manifests/latest","#;
        assert!(text.starts_with(head), "{text}");
        let tail = concat!(
            r#""cache":"hit","status":200,"bytes_in":0,"bytes_out":528,"duration_ms":90000.0,"error":"\n","target":"audit"}"#,
            "\n"
        );
        assert!(text.ends_with(tail), "{text}");
    }
}
