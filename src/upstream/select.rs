//! Several registries behind one portcullis, chosen by repository prefix (`upstreams:`): the
//! first entry whose prefix the repository name starts with serves it, under its own name or,
//! with `strip_prefix`, under the name without the prefix (a pull-through cache of Docker Hub
//! mounted at `hub/` knows `hub/library/alpine` as `library/alpine`).
//!
//! Everything that names a repository to a registry goes through here: the proxy phases, the
//! catalog merge, the UI's reads. A name no entry serves reaches no registry.

use std::sync::Arc;

use pingora::connectors::http::Connector;

use super::{FetchError, Fetched, LoadError, Settings, Target, Upstream};
use crate::route::{self, Route};

/// One entry of `upstreams:` as read from proxy.yaml (`upstream:` is the one-entry shorthand
/// with an empty prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Repository names starting with this are served here; `""` serves every name. Empty or
    /// ending in `/`, so `hub/` never catches `hubris/app`.
    pub prefix: String,
    /// Whether the registry knows the repositories without the prefix.
    pub strip_prefix: bool,
    /// Where it is and how it is reached.
    pub settings: Settings,
}

/// Why an entry can never serve anything: an earlier entry's prefix covers its own.
pub fn shadowed(entries: &[Entry]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (j, later) in entries.iter().enumerate() {
        if let Some(i) = entries[..j]
            .iter()
            .position(|earlier| later.prefix.starts_with(&earlier.prefix))
        {
            out.push((j, i));
        }
    }
    out
}

/// Which entry serves `repository` and the name that registry knows it by: the choice
/// [`Upstreams::select`] makes, from the configuration alone (for `explain`).
pub fn choose(entries: &[Entry], repository: &str) -> Option<(usize, String)> {
    first_match(
        entries.iter().map(|e| (e.prefix.as_str(), e.strip_prefix)),
        repository,
    )
}

/// The one rule: the first `(prefix, strip_prefix)` the name starts with, and the name
/// without the prefix where it is stripped.
fn first_match<'a>(
    entries: impl Iterator<Item = (&'a str, bool)>,
    repository: &str,
) -> Option<(usize, String)> {
    entries
        .enumerate()
        .find(|(_, (prefix, _))| repository.starts_with(prefix))
        .map(|(index, (prefix, strip))| {
            let name = if strip {
                &repository[prefix.len()..]
            } else {
                repository
            };
            (index, name.to_owned())
        })
}

/// Whether `prefix` can start repository names: empty, or name components each followed by `/`.
pub fn valid_prefix(prefix: &str) -> bool {
    prefix.is_empty()
        || (prefix.ends_with('/')
            && route::is_valid_name(prefix.trim_end_matches('/'))
            && !prefix.ends_with("//"))
}

struct Routed {
    prefix: String,
    strip_prefix: bool,
    upstream: Arc<Upstream>,
}

/// The loaded `upstreams:` list, in order. Cheap to clone (shared).
#[derive(Clone)]
pub struct Upstreams {
    routes: Arc<Vec<Routed>>,
}

/// The registry a repository goes to and the name it knows it by.
#[derive(Clone)]
pub struct Selected<'a> {
    /// The registry.
    pub upstream: &'a Arc<Upstream>,
    /// Its position in `upstreams:` (stable: the same entry is the same registry).
    pub index: usize,
    /// The repository's name at that registry.
    pub name: String,
    prefix: &'a str,
    strip_prefix: bool,
}

impl Selected<'_> {
    /// Puts the prefix back into a path the registry answered with (`Location`, `Link`):
    /// `/v2/library/alpine/blobs/uploads/…` → `/v2/hub/library/alpine/blobs/uploads/…`, so
    /// clients follow it back through the same entry. Only where the prefix was stripped.
    pub fn public_path(&self, value: &str) -> String {
        if !self.strip_prefix || self.prefix.is_empty() {
            return value.to_owned();
        }
        let needle = format!("/v2/{}/", self.name);
        match value.find(&needle) {
            Some(at) => format!(
                "{}/v2/{}{}/{}",
                &value[..at],
                self.prefix,
                self.name,
                &value[at + needle.len()..]
            ),
            None => value.to_owned(),
        }
    }

    /// Whether names are sent without the prefix.
    pub fn strips(&self) -> bool {
        self.strip_prefix && !self.prefix.is_empty()
    }
}

impl Upstreams {
    /// Loads every entry (files read, names resolved).
    pub fn load(entries: &[Entry]) -> Result<Upstreams, LoadError> {
        let mut routes = Vec::with_capacity(entries.len());
        for e in entries {
            routes.push(Routed {
                prefix: e.prefix.clone(),
                strip_prefix: e.strip_prefix,
                upstream: Arc::new(Upstream::load(&e.settings)?),
            });
        }
        Ok(Upstreams {
            routes: Arc::new(routes),
        })
    }

    /// One registry serving every name (tests and tools).
    pub fn single(upstream: Arc<Upstream>) -> Upstreams {
        Upstreams {
            routes: Arc::new(vec![Routed {
                prefix: String::new(),
                strip_prefix: false,
                upstream,
            }]),
        }
    }

    /// The registry serving `repository`, if any entry does.
    pub fn select(&self, repository: &str) -> Option<Selected<'_>> {
        let (index, name) = first_match(
            self.routes
                .iter()
                .map(|r| (r.prefix.as_str(), r.strip_prefix)),
            repository,
        )?;
        let r = &self.routes[index];
        Some(Selected {
            upstream: &r.upstream,
            index,
            name,
            prefix: &r.prefix,
            strip_prefix: r.strip_prefix,
        })
    }

    /// The registry asked for `/v2/` itself: the catch-all entry, else the first.
    pub fn base(&self) -> &Arc<Upstream> {
        let r = self
            .routes
            .iter()
            .find(|r| r.prefix.is_empty())
            .unwrap_or(&self.routes[0]);
        &r.upstream
    }

    /// Every registry, in order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.routes.iter().map(|r| &r.upstream)
    }

    /// More than one registry, or one that knows names without a prefix: the catalog must
    /// then be merged by portcullis rather than passed through.
    pub fn is_merged(&self) -> bool {
        self.routes.len() > 1
            || self
                .routes
                .iter()
                .any(|r| r.strip_prefix && !r.prefix.is_empty())
    }

    /// The name clients know a repository listed by registry `index` as, when that name
    /// would route back to it (a name another entry catches is unreachable through
    /// portcullis and is not listed).
    pub fn public_name(&self, index: usize, listed: &str) -> Option<String> {
        let r = self.routes.get(index)?;
        let name = if r.strip_prefix {
            format!("{}{listed}", r.prefix)
        } else {
            listed.to_owned()
        };
        (self.select(&name)?.index == index).then_some(name)
    }

    /// Where a request target naming public repositories goes: the registry and the target
    /// as it names them. The target is parsed with the proxy's own parser and rebuilt, so a
    /// name is found exactly where `/v2` finds it. `None` for a target that does not parse or
    /// a repository no entry serves.
    pub fn route(&self, method: &str, target: &str) -> Option<(Target, String)> {
        let parsed = route::parse_request(method, target.as_bytes()).ok()?;
        match &parsed.route {
            Route::Base | Route::Catalog => Some((self.base().target(), parsed.target(false))),
            Route::Repository { name, mount, .. } => {
                let chosen = self.select(name)?;
                // A mount from a repository of another registry cannot work: dropped.
                let drop_mount = mount
                    .as_ref()
                    .is_some_and(|m| self.select(&m.from).map(|s| s.index) != Some(chosen.index));
                let rename = self.renamer(chosen.index);
                Some((
                    chosen.upstream.target(),
                    parsed.target_renamed(drop_mount, &rename),
                ))
            }
        }
    }

    /// Looks every registry's name up again at its `resolve_interval` until `shutdown`
    /// turns true, logging each change of addresses and each failed lookup (which keeps the
    /// addresses known).
    pub async fn keep_resolving(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        for upstream in self.all() {
            let upstream = upstream.clone();
            tasks.spawn(async move {
                let interval = upstream.settings().resolve_interval;
                loop {
                    tokio::time::sleep(interval).await;
                    match upstream.addresses().refresh().await {
                        Ok(true) => tracing::info!(
                            upstream = %upstream.url(),
                            addresses = ?upstream.addresses().all(),
                            "the registry's name resolves to new addresses"
                        ),
                        Ok(false) => {}
                        Err(why) => tracing::warn!(
                            upstream = %upstream.url(),
                            error = %why,
                            "cannot resolve the registry's name again: keeping its addresses"
                        ),
                    }
                }
            });
        }
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        tasks.abort_all();
    }

    /// `GET target` (naming public repositories) on the registry that serves it, as
    /// [`super::fetch::get`] does for one registry.
    pub async fn get(
        &self,
        connector: &Connector,
        target: &str,
        accept: Option<&str>,
        max: usize,
    ) -> Result<Fetched, FetchError> {
        let (to, target) = self.route("GET", target).ok_or(FetchError::NoRegistry)?;
        super::fetch::get(connector, &to, &target, accept, max).await
    }

    /// [`Upstreams::get`] with any `headers` (see [`super::fetch::get_with`]).
    pub async fn get_with(
        &self,
        connector: &Connector,
        target: &str,
        headers: &http::HeaderMap,
        max: usize,
    ) -> Result<Fetched, FetchError> {
        let (to, target) = self.route("GET", target).ok_or(FetchError::NoRegistry)?;
        super::fetch::get_with(connector, &to, &target, headers, max).await
    }

    /// `DELETE target` on the registry that serves it.
    pub async fn delete(
        &self,
        connector: &Connector,
        target: &str,
        max: usize,
    ) -> Result<Fetched, FetchError> {
        let (to, target) = self.route("DELETE", target).ok_or(FetchError::NoRegistry)?;
        super::fetch::delete(connector, &to, &target, max).await
    }

    /// The name registry `index` knows a public repository name by.
    pub fn renamer(&self, index: usize) -> impl Fn(&str) -> String + '_ {
        move |name: &str| match self.routes.get(index) {
            Some(r) if r.strip_prefix => name
                .strip_prefix(r.prefix.as_str())
                .unwrap_or(name)
                .to_owned(),
            _ => name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(prefix: &str, strip: bool, port: u16) -> Entry {
        Entry {
            prefix: prefix.into(),
            strip_prefix: strip,
            settings: Settings {
                address: format!("127.0.0.1:{port}"),
                host: "127.0.0.1".into(),
                tls: None,
                auth: None,
                connect_timeout: std::time::Duration::from_secs(1),
                read_timeout: std::time::Duration::from_secs(1),
                resolve_interval: std::time::Duration::from_secs(30),
            },
        }
    }

    fn two() -> Upstreams {
        Upstreams::load(&[entry("hub/", true, 5001), entry("", false, 5002)]).unwrap()
    }

    #[test]
    fn first_matching_prefix_wins_and_strips() {
        let u = two();
        let s = u.select("hub/library/alpine").unwrap();
        assert_eq!((s.index, s.name.as_str()), (0, "library/alpine"));
        let s = u.select("hubris/app").unwrap();
        assert_eq!((s.index, s.name.as_str()), (1, "hubris/app"));
        assert_eq!(u.base().addresses().pick().port(), 5002);
        assert!(u.is_merged());
        // Only prefix "" and names of the grammar followed by `/`.
        assert!(valid_prefix("") && valid_prefix("hub/") && valid_prefix("a/b-c/"));
        assert!(!valid_prefix("hub") && !valid_prefix("/hub/") && !valid_prefix("Hub/"));
    }

    #[test]
    fn targets_are_rebuilt_with_the_upstream_names() {
        let u = two();
        let (to, target) = u
            .route("GET", "/v2/hub/library/alpine/manifests/3")
            .unwrap();
        assert_eq!(to.peer._address.to_string(), "127.0.0.1:5001");
        assert_eq!(target, "/v2/library/alpine/manifests/3");
        let (_, target) = u
            .route("POST", "/v2/hub/a/blobs/uploads/?mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=hub/b")
            .unwrap();
        assert!(
            target.starts_with("/v2/a/blobs/uploads/?mount="),
            "{target}"
        );
        assert!(target.ends_with("&from=b"), "{target}");
        // A mount across registries is dropped: a plain upload.
        let (_, target) = u
            .route("POST", "/v2/hub/a/blobs/uploads/?mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=team/b")
            .unwrap();
        assert_eq!(target, "/v2/a/blobs/uploads/");
        assert_eq!(
            u.public_name(0, "library/alpine").as_deref(),
            Some("hub/library/alpine")
        );
        // The catch-all's own `hub/x` is unreachable (the hub entry catches it): not listed.
        assert_eq!(u.public_name(1, "hub/x"), None);
        assert_eq!(u.public_name(1, "team/app").as_deref(), Some("team/app"));
    }

    #[test]
    fn locations_get_the_prefix_back() {
        let u = two();
        let s = u.select("hub/library/alpine").unwrap();
        assert_eq!(
            s.public_path("/v2/library/alpine/blobs/uploads/u-1?_state=x"),
            "/v2/hub/library/alpine/blobs/uploads/u-1?_state=x"
        );
        assert_eq!(
            s.public_path("https://h:5000/v2/library/alpine/blobs/sha256:ab"),
            "https://h:5000/v2/hub/library/alpine/blobs/sha256:ab"
        );
        assert_eq!(
            s.public_path("</v2/library/alpine/tags/list?last=b&n=1>; rel=\"next\""),
            "</v2/hub/library/alpine/tags/list?last=b&n=1>; rel=\"next\""
        );
    }

    #[test]
    fn shadowed_entries_are_found() {
        let e = [entry("", false, 1), entry("hub/", true, 2)];
        assert_eq!(shadowed(&e), [(1, 0)]);
        let e = [
            entry("a/", false, 1),
            entry("a/b/", false, 2),
            entry("a/", false, 3),
        ];
        assert_eq!(shadowed(&e), [(1, 0), (2, 0)]);
        let e = [
            entry("a/b/", false, 1),
            entry("a/", false, 2),
            entry("", false, 3),
        ];
        assert!(shadowed(&e).is_empty());
    }
}
