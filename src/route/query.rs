//! The query string: read strictly the way Go's `url.ParseQuery` reads it (refusing whatever
//! Go would silently drop), and the parameters each endpoint keeps when the target is rebuilt
//! for the registry, re-encoded.

use super::*;

/// Everything but RFC 3986's unreserved characters and `/` is percent-encoded
/// in a forwarded query value, so Go's `url.ParseQuery` decodes exactly the
/// value that was authorized (`+`, `;`, `&`, `=` and `%` never appear raw).
pub(super) const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The query parameters the registry (or another OCI registry) reads on each
/// endpoint, besides `mount`/`from`. Everything else is dropped.
pub(super) fn kept_params(endpoint: Endpoint, method: &str) -> &'static [&'static str] {
    match (endpoint, method) {
        // registry:2 pages the catalog and (in later versions) tags with these.
        (Endpoint::Catalog | Endpoint::TagsList, _) => &["n", "last"],
        // The OCI 1.1 referrers filter.
        (Endpoint::Referrers, _) => &["artifactType"],
        // A monolithic upload (POST with the whole blob and its digest).
        (Endpoint::UploadStart, _) => &["digest"],
        // The registry's signed upload state, and the digest that completes it.
        (Endpoint::Upload, "PUT") => &["_state", "digest"],
        (Endpoint::Upload, _) => &["_state"],
        _ => &[],
    }
}

/// The pairs named in `keep`, in `keep`'s order. A kept key given twice is
/// refused: Go's `FormValue` takes the first, another reader may take the
/// last, and we refuse to be the one that guesses. Other pairs are dropped.
pub(super) fn kept_pairs(
    pairs: &[(String, String)],
    keep: &'static [&'static str],
) -> Result<Vec<(&'static str, String)>, RouteError> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for key in keep {
        let mut values = pairs.iter().filter(|(k, _)| k == key);
        if let Some((_, v)) = values.next() {
            if values.next().is_some() {
                return Err(RouteError::BadQuery(Q_DUP_PARAM));
            }
            if *key == "digest" && !is_valid_digest(v) {
                return Err(RouteError::InvalidDigest);
            }
            out.push((key, v.clone()));
        }
    }
    Ok(out)
}

/// Reads `mount`/`from` off an upload start's query.
pub(super) fn mount_of(pairs: &[(String, String)]) -> Result<Option<Mount>, RouteError> {
    let mut digest: Option<&str> = None;
    let mut from: Option<&str> = None;
    for (k, v) in pairs {
        // Go's FormValue takes the first value; another parser may take the
        // last. We refuse to be the one that guesses.
        let (slot, duplicate) = match k.as_str() {
            "mount" => (&mut digest, Q_DUP_MOUNT),
            "from" => (&mut from, Q_DUP_FROM),
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(RouteError::BadQuery(duplicate));
        }
    }
    // Validated whenever present (even alone, even empty), so the policy
    // never sees a repository name it would have to normalise.
    if let Some(f) = from {
        if !is_valid_name(f) {
            return Err(RouteError::InvalidName);
        }
    }
    if let Some(d) = digest {
        if !is_valid_digest(d) {
            return Err(RouteError::InvalidDigest);
        }
    }
    // The registry mounts only when both are given (non-empty, which the
    // checks above imply).
    Ok(match (digest, from) {
        (Some(d), Some(f)) => Some(Mount {
            digest: d.to_owned(),
            from: f.to_owned(),
        }),
        _ => None,
    })
}

/// Go's url.ParseQuery, strictly: every pair must decode. (pub so the token
/// endpoint can reuse it later.)
///
/// Exists because the registry reads parameters with Go's parser, which
/// silently *drops* pairs containing `;` or a bad `%` escape: a proxy that
/// read those pairs differently (or kept them) would authorize one mount and
/// forward another. Here every such pair is an error instead. Empty pairs
/// (`a&&b`) are skipped, as Go does; a key without `=` has the value `""`.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, RouteError> {
    let mut out = Vec::new();
    for pair in query.split('&') {
        // Go ≥ 1.17 refuses `;` as a separator and drops the pair; older Go
        // (and other stacks) split on it. Either reading is a guess.
        if pair.contains(';') {
            return Err(RouteError::BadQuery(Q_SEMICOLON));
        }
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((query_unescape(k)?, query_unescape(v)?));
    }
    Ok(out)
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` must be two hex digits;
/// additionally the result must be UTF-8 (Go does not check; we refuse so
/// that no two decoders can disagree on lossy conversion).
pub(super) fn query_unescape(s: &str) -> Result<String, RouteError> {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return Ok(s.to_owned());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_value);
                let lo = b.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h << 4) | l),
                    _ => return Err(RouteError::BadQuery(Q_ESCAPE)),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| RouteError::BadQuery(Q_UTF8))
}

pub(super) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
