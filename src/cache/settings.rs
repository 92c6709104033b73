//! `cache:` as the manifest cache reads it (parsed and checked by [`crate::config`]).

use std::time::Duration;

/// `cache:`: what portcullis may answer from memory. Everything is off unless written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `cache.manifests`: manifest `GET`/`HEAD` answers; `None` (the default) caches nothing.
    pub manifests: Option<Manifests>,
}

/// `cache.manifests`: how much memory manifests may take and how long an answer is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifests {
    /// The most bytes of answers (bodies, the headers kept, keys) held at once; the least
    /// recently useful answers are evicted beyond it.
    pub max_memory: u64,
    /// How long an answer fetched by digest is reused. The content behind a digest never
    /// changes; only a delete that bypasses portcullis can make such an answer stale.
    pub digest_ttl: Duration,
    /// How long an answer fetched by tag is served without asking the registry; after it —
    /// on every read with zero, the default — the registry is asked whether the tag still
    /// names the same manifest (`If-None-Match`), because a tag moved by a push that bypasses
    /// portcullis is invisible to us.
    pub tag_ttl: Duration,
}

impl Default for Manifests {
    fn default() -> Self {
        Manifests {
            max_memory: 64 << 20,
            digest_ttl: Duration::from_secs(600),
            tag_ttl: Duration::ZERO,
        }
    }
}

/// Parses a byte size: a whole number with a binary unit (`512KiB`, `64MiB`, `1GiB`) or `B`
/// for bytes. Decimal units (`MB`) are refused rather than guessed at: `64MB` and `64MiB`
/// differ by 5%, and a memory bound should mean what it says.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("size {text:?} needs a unit (B, KiB, MiB, GiB)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("size {text:?} must start with a whole number"))?;
    let shift = match unit {
        "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(format!("size {text:?}: unit must be B, KiB, MiB or GiB")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100B"), Ok(100));
        for bad in [
            "64",
            "",
            "MiB",
            "64MB",
            "1.5GiB",
            "-1MiB",
            "64 MiB",
            "99999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
