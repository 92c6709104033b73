//! The distribution-spec grammars of the parts of a request: repository names, tags, digests,
//! upload ids. Byte scanners rather than regexes (they run on every request); the tests in
//! the parent module compare each with the spec's regex.

use super::*;

/// The tag grammar's length limit (`[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}`).
pub(super) const TAG_MAX_LEN: usize = 128;

pub(super) fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Whether `name` is a repository name in the registry's grammar
/// (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` components joined by `/`, at most
/// [`NAME_MAX_LEN`] bytes).
///
/// Exists as a byte scanner (no regex on the hot path) and as a public
/// function so the ACL/config loaders can refuse names no request can ever
/// carry.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > NAME_MAX_LEN {
        return false;
    }
    b.split(|&c| c == b'/').all(is_valid_component)
}

/// One `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` component.
pub(super) fn is_valid_component(c: &[u8]) -> bool {
    let n = c.len();
    let mut i = 0;
    loop {
        // An alphanumeric run, at least one byte: a component never starts
        // or ends with a separator, and separators never touch.
        let start = i;
        while i < n && is_lower_alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == n {
            return true;
        }
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < n && c[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < n && c[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Whether `s` is a tag (`[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}`).
///
/// Exists so a manifest reference is either a tag or a digest and nothing
/// the registry might read as a third thing.
pub fn is_valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(&c) if c.is_ascii_alphanumeric() || c == b'_' => {}
        _ => return false,
    }
    b.len() <= TAG_MAX_LEN
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Whether `s` is an OCI digest (`algorithm ":" encoded`), with the exact
/// lengths for `sha256` and `sha512`.
///
/// Exists because digests appear in paths and in `mount=`; a strict grammar
/// means no encoding tricks (`sha256:../..`) ever reach the registry's
/// storage layer.
pub fn is_valid_digest(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    if !is_valid_algorithm(algorithm)
        || encoded.is_empty()
        || !encoded
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
    {
        return false;
    }
    let lower_hex = |len: usize| {
        encoded.len() == len
            && encoded
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    match algorithm {
        "sha256" => lower_hex(64),
        "sha512" => lower_hex(128),
        _ => true,
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`.
pub(super) fn is_valid_algorithm(a: &str) -> bool {
    let b = a.as_bytes();
    let n = b.len();
    let mut i = 0;
    loop {
        let start = i;
        while i < n && is_lower_alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == n {
            return true;
        }
        if !matches!(b[i], b'+' | b'.' | b'_' | b'-') {
            return false;
        }
        i += 1;
    }
}

/// Whether `s` is an upload id (`[a-zA-Z0-9-_.=]+`, but not `.` or `..`).
///
/// Exists because the id is a path segment the registry maps to storage;
/// dot segments are refused even though the path check already does.
pub fn is_valid_upload_id(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'='))
}
