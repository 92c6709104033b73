//! What one cached answer is filed under: the repository and reference as forwarded, the
//! `Accept` media types that change the registry's answer, and the repository's write
//! generation when the answer was asked for.

use http::HeaderMap;

/// The manifest media types distribution 2.8 looks for in `Accept`
/// (`registry/handlers/manifests.go`, `GetManifest`): each one it finds changes which
/// manifest, or which error, it answers with. Nothing else in `Accept` does.
const NEGOTIATED: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// Which of [`NEGOTIATED`] a request accepts, as the registry reads its `Accept` headers: two
/// requests with the same set get the same answer, however their headers are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Accepts(u8);

impl Accepts {
    /// Reads every `Accept` header exactly as distribution 2.8 does: each value split at `,`,
    /// cut at the first `;`, trimmed of Unicode white space (Go's `strings.TrimSpace`, the
    /// same set as Rust's `trim`), compared byte for byte. `None` when a value is not UTF-8:
    /// Go would compare its bytes, and rather than imitate that, such a request is not
    /// cached.
    pub fn of(headers: &HeaderMap) -> Option<Accepts> {
        let mut bits = 0u8;
        for value in headers.get_all(http::header::ACCEPT) {
            let value = std::str::from_utf8(value.as_bytes()).ok()?;
            for item in value.split(',') {
                let media = item.split(';').next().unwrap_or("").trim();
                if let Some(i) = NEGOTIATED.iter().position(|n| *n == media) {
                    bits |= 1 << i;
                }
            }
        }
        Some(Accepts(bits))
    }
}

/// The key of one cached manifest answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The repository, as forwarded to the registry.
    pub repository: Box<str>,
    /// The tag or digest, as forwarded.
    pub reference: Box<str>,
    /// The negotiated media types.
    pub accepts: Accepts,
    /// The repository's write generation when this answer was asked for: a write through
    /// portcullis moves it on, so an answer fetched before the write (or while it ran) is
    /// filed under a key no later request builds.
    pub generation: u64,
}

impl Key {
    /// True when the reference is a digest (`algorithm:hex`): tags never contain `:`.
    pub fn by_digest(&self) -> bool {
        self.reference.contains(':')
    }

    /// Bytes this key takes, for the memory bound.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Key>() + self.repository.len() + self.reference.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&[u8]]) -> Option<Accepts> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::ACCEPT,
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        Accepts::of(&h)
    }

    #[test]
    fn accept_is_read_as_the_registry_reads_it() {
        let schema2 = accepts(&[b"application/vnd.docker.distribution.manifest.v2+json"]);
        assert_eq!(schema2, Some(Accepts(0b0001)));
        // Spelling that the registry ignores gives the same key.
        assert_eq!(
            accepts(&[b"text/html, application/vnd.docker.distribution.manifest.v2+json; q=0.5"]),
            schema2
        );
        assert_eq!(
            accepts(&[
                b"*/*",
                b"\xc2\xa0application/vnd.docker.distribution.manifest.v2+json\t"
            ]),
            schema2
        );
        // Case matters to Go's comparison, so it matters here.
        assert_eq!(
            accepts(&[b"Application/vnd.docker.distribution.manifest.v2+json"]),
            Some(Accepts(0))
        );
        assert_eq!(accepts(&[]), Some(Accepts(0)));
        assert_eq!(
            accepts(&[b"application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json"]),
            Some(Accepts(0b1100))
        );
        assert_eq!(accepts(&[b"application/\xff"]), None);
    }

    #[test]
    fn digests_are_told_from_tags() {
        let key = |reference: &str| Key {
            repository: "a".into(),
            reference: reference.into(),
            accepts: Accepts(0),
            generation: 0,
        };
        assert!(key("sha256:0123").by_digest());
        assert!(!key("latest").by_digest());
    }
}
