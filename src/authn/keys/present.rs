//! What `portcullis key` reads and prints: expiry arguments (`90d`, `never`, a date) and the
//! `key list` table. Here, not in `main`, so the UI's "CLI access key" page can share them.

use std::time::{Duration, SystemTime};

use super::file::{format_time, parse_time};
use super::Record;

/// The expiry of a key made without `--expires`: long enough for a CI secret's rotation
/// cycle, short enough that a forgotten key dies on its own.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(90 * 86_400);

/// Parses `--expires`: `never`, a duration (`90d`, `12h`, `30m`; `d` for days, `w` for
/// weeks), or an RFC 3339 time (`2027-03-01T00:00:00Z`). `Ok(None)` is `never`.
pub fn parse_expiry(text: &str, now: SystemTime) -> Result<Option<SystemTime>, String> {
    let text = text.trim();
    if text == "never" {
        return Ok(None);
    }
    if text.contains('T') {
        let at = parse_time(text)?;
        if at <= now {
            return Err(format!("{text} is in the past"));
        }
        return Ok(Some(at));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .ok_or_else(|| format!("--expires {text:?}: expected 90d, 12h, a date or `never`"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("--expires {text:?}: the number is too large"))?;
    let unit_secs = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("--expires {text:?}: the unit must be m, h, d or w")),
    };
    if n == 0 {
        return Err("--expires must be in the future".into());
    }
    // Beyond ~100 years is `never` in all but name; refuse rather than overflow.
    let secs = n
        .checked_mul(unit_secs)
        .filter(|&s| s <= 100 * 365 * 86_400)
        .ok_or_else(|| format!("--expires {text:?} is too far away; use `never`"))?;
    Ok(Some(now + Duration::from_secs(secs)))
}

/// The `key list` table: one line per key, tab-separated (id, account, expires, created,
/// scopes, description), with a header. Never the secret (the file has none).
pub fn table(records: &[Record], now: SystemTime) -> String {
    let mut out = String::from("ID\tACCOUNT\tEXPIRES\tCREATED\tSCOPES\tDESCRIPTION\n");
    for r in records {
        let expires = match r.expires {
            None => "never".to_owned(),
            Some(e) if e <= now => format!("{} (expired)", format_time(e)),
            Some(e) => format_time(e),
        };
        let scopes = if r.scopes.is_empty() {
            "(all of the account's rights)".to_owned()
        } else {
            r.scopes.join(" ")
        };
        let account = if r.robot {
            format!("{} (robot)", r.account)
        } else if r.sso_labels.is_some() {
            format!("{} (single sign-on)", r.account)
        } else {
            r.account.clone()
        };
        out.push_str(&format!(
            "{}\t{account}\t{expires}\t{}\t{scopes}\t{}\n",
            r.id,
            format_time(r.created),
            r.description
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries() {
        let now = parse_time("2026-12-01T00:00:00Z").unwrap();
        let at = |t: &str| Some(parse_time(t).unwrap());
        assert_eq!(parse_expiry("90d", now), Ok(at("2027-03-01T00:00:00Z")));
        assert_eq!(parse_expiry("2w", now), Ok(at("2026-12-15T00:00:00Z")));
        assert_eq!(parse_expiry("12h", now), Ok(at("2026-12-01T12:00:00Z")));
        assert_eq!(parse_expiry("never", now), Ok(None));
        assert_eq!(
            parse_expiry("2027-01-01T00:00:00Z", now),
            Ok(at("2027-01-01T00:00:00Z"))
        );
        for bad in [
            "",
            "d",
            "0d",
            "90",
            "90y",
            "-1d",
            "2020-01-01T00:00:00Z",
            "99999999999999999999d",
            "999999999999d",
            "ｄ",
        ] {
            assert!(parse_expiry(bad, now).is_err(), "{bad:?}");
        }
    }
}
