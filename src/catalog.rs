//! The per-user catalog: registry:2 lists every repository to anyone who may call
//! `/v2/_catalog`; portcullis shows each account only the repositories it may pull, with
//! `n`, `last` and the `Link` header applied to that filtered list.
//!
//! The upstream list is fetched page by page (1 000 names a page), kept for a few seconds and
//! shared by all callers, so a burst of catalog requests costs one walk of the upstream.
//! The work is bounded: at most [`MAX_REPOSITORIES`] names and [`MAX_BODY`] bytes per page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::connectors::http::Connector;

use crate::upstream::{self, FetchError};
use crate::upstream::{Target, Upstreams};
use tokio::sync::Mutex;

use crate::acl::Acl;
use crate::policy::{self, Subject};

/// How long a fetched upstream list is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// The most repository names portcullis will hold for one catalog.
pub const MAX_REPOSITORIES: usize = 200_000;
/// The largest upstream page body accepted.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Names asked of the upstream per page.
const UPSTREAM_PAGE: usize = 1000;
/// `n` when the client gives none (registry:2's default).
pub const DEFAULT_N: usize = 100;
/// The largest `n` honoured (registry:2's limit).
pub const MAX_N: usize = 1000;

/// Why the upstream list could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Connecting, sending or reading failed.
    #[error("registry request failed: {0}")]
    Upstream(String),
    /// The registry answered something other than a catalog.
    #[error("registry answered {0}")]
    Status(u16),
    /// The answer was not a catalog document, or too big.
    #[error("registry catalog is malformed: {0}")]
    Malformed(String),
}

/// A client's paging request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// Page size.
    pub n: usize,
    /// Names strictly after this one.
    pub last: Option<String>,
}

impl Paging {
    /// Reads `n` and `last` from a query string (already known to be well-formed). A bad `n`
    /// is an error, as in newer registries (`PAGINATION_NUMBER_INVALID`).
    pub fn from_query(query: Option<&str>) -> Result<Paging, &'static str> {
        let mut paging = Paging {
            n: DEFAULT_N,
            last: None,
        };
        let Some(query) = query else {
            return Ok(paging);
        };
        let pairs = crate::route::parse_query(query).map_err(|_| "malformed query")?;
        for (k, v) in pairs {
            match k.as_str() {
                "n" => {
                    let n: usize = v.parse().map_err(|_| "n must be a whole number")?;
                    paging.n = n.min(MAX_N);
                }
                "last" => paging.last = Some(v),
                _ => {}
            }
        }
        Ok(paging)
    }
}

/// One page of a filtered catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The names on this page.
    pub repositories: Vec<String>,
    /// More names follow: the `last` for the next page's link.
    pub next: Option<String>,
}

/// Pages through the `visible` names of the sorted list `all`.
pub fn page(all: &[String], paging: &Paging, mut visible: impl FnMut(&str) -> bool) -> Page {
    let start = match &paging.last {
        Some(last) => all.partition_point(|name| name.as_str() <= last.as_str()),
        None => 0,
    };
    let mut repositories = Vec::with_capacity(paging.n.min(64));
    let mut more = false;
    for name in &all[start..] {
        if !visible(name) {
            continue;
        }
        if repositories.len() == paging.n {
            more = true;
            break;
        }
        repositories.push(name.clone());
    }
    let next = if more {
        repositories.last().cloned()
    } else {
        None
    };
    Page { repositories, next }
}

/// What a listing shows `subject`: the repositories it may pull ([`policy::may_pull`]). The
/// one visibility rule of the filtered `/v2/_catalog` and the web UI's list.
pub fn visible_to<'a>(acl: &'a Acl, subject: Subject<'a>) -> impl Fn(&str) -> bool + 'a {
    move |name| policy::may_pull(acl, subject, name)
}

/// One numbered page of a search through a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The names on this page.
    pub names: Vec<String>,
    /// Names matching in all.
    pub total: usize,
    /// This page, 1-based (clamped to the last page).
    pub page: usize,
    /// Pages in all (at least 1).
    pub pages: usize,
    /// The position of this page's first name among all matches.
    pub first: usize,
}

/// The `page`-th block of `per_page` names of the sorted list `all` that contain `q` (as a
/// substring, ignoring ASCII case) and are `visible`, with the total count. The cheap
/// substring test runs before `visible`.
pub fn search(
    all: &[String],
    q: &str,
    page: usize,
    per_page: usize,
    visible: impl Fn(&str) -> bool,
) -> Found {
    let per_page = per_page.max(1);
    let q = q.trim().to_ascii_lowercase();
    let matching: Vec<&String> = all
        .iter()
        .filter(|name| q.is_empty() || name.to_ascii_lowercase().contains(&q))
        .filter(|name| visible(name))
        .collect();
    let total = matching.len();
    let pages = total.div_ceil(per_page).max(1);
    let page = page.clamp(1, pages);
    let first = (page - 1) * per_page;
    let names = matching
        .into_iter()
        .skip(first)
        .take(per_page)
        .cloned()
        .collect();
    Found {
        names,
        total,
        page,
        pages,
        first,
    }
}

/// The `Link` header for the page after `page`, in registry:2's form.
pub fn link(page: &Page, n: usize) -> Option<String> {
    let last = page.next.as_ref()?;
    let encoded: String = url_encode(last);
    Some(format!("</v2/_catalog?last={encoded}&n={n}>; rel=\"next\""))
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The body of a catalog answer.
pub fn body(repositories: &[String]) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::json!({ "repositories": repositories }).to_string())
}

/// Fetches and caches the upstream's full repository list.
pub struct Catalog {
    connector: Connector,
    cache: Mutex<Option<(Instant, Arc<Vec<String>>)>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// An empty cache with its own upstream connection pool.
    pub fn new() -> Self {
        Catalog {
            connector: Connector::new(None),
            cache: Mutex::new(None),
        }
    }

    /// The full, sorted upstream list, from the cache when fresh. Concurrent callers wait for
    /// one fetch rather than each walking the upstream.
    ///
    /// With several registries, each one's list is read, its names given back the prefix
    /// they are reached by, names another entry would catch left out (unreachable through
    /// portcullis), and the whole merged, sorted and deduplicated.
    pub async fn all(&self, upstreams: &Upstreams) -> Result<Arc<Vec<String>>, CatalogError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, list)) = cache.as_ref() {
            if at.elapsed() < CACHE_TTL {
                return Ok(list.clone());
            }
        }
        let mut merged = Vec::new();
        for (index, upstream) in upstreams.all().enumerate() {
            let listed = self.fetch(&upstream.target()).await?;
            merged.extend(
                listed
                    .iter()
                    .filter_map(|name| upstreams.public_name(index, name)),
            );
            if merged.len() > MAX_REPOSITORIES {
                return Err(CatalogError::Malformed(format!(
                    "more than {MAX_REPOSITORIES} repositories"
                )));
            }
        }
        merged.sort();
        merged.dedup();
        let list = Arc::new(merged);
        *cache = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    async fn fetch(&self, to: &Target) -> Result<Vec<String>, CatalogError> {
        let mut all: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let mut target = format!("/v2/_catalog?n={UPSTREAM_PAGE}");
            if let Some(last) = &last {
                target.push_str("&last=");
                target.push_str(&url_encode(last));
            }
            let (names, more) = self.fetch_page(to, &target).await?;
            let got = names.len();
            all.extend(names);
            if all.len() > MAX_REPOSITORIES {
                return Err(CatalogError::Malformed(format!(
                    "more than {MAX_REPOSITORIES} repositories"
                )));
            }
            if !more || got == 0 {
                break;
            }
            let next = all.last().cloned();
            if next <= last {
                return Err(CatalogError::Malformed("pages do not advance".into()));
            }
            last = next;
        }
        // The registry lists in order already; sorting makes `page` correct regardless.
        all.sort();
        all.dedup();
        Ok(all)
    }

    async fn fetch_page(
        &self,
        to: &Target,
        target: &str,
    ) -> Result<(Vec<String>, bool), CatalogError> {
        let page = upstream::get(&self.connector, to, target, None, MAX_BODY)
            .await
            .map_err(|e| match e {
                FetchError::TooLarge(_) => CatalogError::Malformed("page too large".into()),
                FetchError::Upstream(why) => CatalogError::Upstream(why),
                FetchError::NoRegistry => CatalogError::Upstream(e.to_string()),
            })?;
        let status = page.status;
        let more = page
            .header("link")
            .is_some_and(|v| v.contains("rel=\"next\""));
        let body = page.body;
        if status != 200 {
            return Err(CatalogError::Status(status));
        }
        #[derive(serde::Deserialize)]
        struct Doc {
            repositories: Vec<String>,
        }
        let doc: Doc =
            serde_json::from_slice(&body).map_err(|e| CatalogError::Malformed(e.to_string()))?;
        Ok((doc.repositories, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("r{i:05}")).collect();
        v.sort();
        v
    }

    #[test]
    fn paging_parses_n_and_last() {
        assert_eq!(
            Paging::from_query(None).unwrap(),
            Paging { n: 100, last: None }
        );
        assert_eq!(
            Paging::from_query(Some("n=5&last=a%2Fb")).unwrap(),
            Paging {
                n: 5,
                last: Some("a/b".into())
            }
        );
        assert_eq!(Paging::from_query(Some("n=100000")).unwrap().n, MAX_N);
        assert!(Paging::from_query(Some("n=-1")).is_err());
        assert!(Paging::from_query(Some("n=x")).is_err());
    }

    #[test]
    fn walking_every_page_gives_exactly_the_visible_names() {
        let all = names(1000);
        let visible = |name: &str| name.ends_with('3') || name.ends_with('7');
        for n in [1, 7, 100, 199, 200, 201, 1000] {
            let mut seen = Vec::new();
            let mut paging = Paging { n, last: None };
            let mut pages = 0;
            loop {
                let p = page(&all, &paging, visible);
                assert!(p.repositories.len() <= n);
                seen.extend(p.repositories.iter().cloned());
                pages += 1;
                match (&p.next, link(&p, n)) {
                    (Some(next), Some(l)) => {
                        assert!(l.contains(&format!("last={next}")) && l.ends_with("rel=\"next\""));
                        paging.last = Some(next.clone());
                    }
                    (None, None) => break,
                    other => panic!("next and link disagree: {other:?}"),
                }
            }
            let expected: Vec<String> = all.iter().filter(|x| visible(x)).cloned().collect();
            assert_eq!(seen, expected, "n={n}");
            assert_eq!(pages, expected.len().div_ceil(n).max(1), "n={n}");
        }
    }

    #[test]
    fn last_may_name_an_invisible_or_missing_repository() {
        let all = names(10);
        let p = page(
            &all,
            &Paging {
                n: 2,
                last: Some("r00004x".into()),
            },
            |_| true,
        );
        assert_eq!(p.repositories, vec!["r00005", "r00006"]);
        let p = page(
            &all,
            &Paging {
                n: 2,
                last: Some("zzz".into()),
            },
            |_| true,
        );
        assert!(p.repositories.is_empty() && p.next.is_none());
        let p = page(&all, &Paging { n: 0, last: None }, |_| true);
        assert!(p.repositories.is_empty());
    }

    #[test]
    fn search_pages_through_visible_matches() {
        let all = names(100);
        let visible = |name: &str| name.ends_with('3');
        let f = search(&all, "", 1, 4, visible);
        assert_eq!(f.total, 10);
        assert_eq!(f.pages, 3);
        assert_eq!(f.names, vec!["r00003", "r00013", "r00023", "r00033"]);
        let f = search(&all, "", 3, 4, visible);
        assert_eq!(f.names, vec!["r00083", "r00093"]);
        assert_eq!(f.first, 8);
        // Past the end: the last page; before the start: the first.
        assert_eq!(search(&all, "", 99, 4, visible).page, 3);
        assert_eq!(search(&all, "", 0, 4, visible).page, 1);
        let f = search(&all, "R0004", 1, 50, visible);
        assert_eq!(f.names, vec!["r00043"]);
        let f = search(&all, "zzz", 1, 50, visible);
        assert_eq!((f.total, f.pages, f.names.len()), (0, 1, 0));
    }

    #[test]
    fn link_escapes_names() {
        let p = Page {
            repositories: vec!["a/b".into()],
            next: Some("a/b".into()),
        };
        assert_eq!(
            link(&p, 1).unwrap(),
            "</v2/_catalog?last=a%2Fb&n=1>; rel=\"next\""
        );
    }
}
