//! The manifest cache (`cache.manifests`, off unless configured): answers to manifest `GET`
//! and `HEAD` held in memory, so hot manifests — every `docker pull` asks for them first —
//! are served without a registry round trip.
//!
//! Safety first:
//! - the proxy asks the cache only **after** the request was authorized, so a caller never
//!   gets an answer it could not have had from the registry;
//! - only complete `200` answers are kept ([`entry`]), keyed by everything that changes the
//!   registry's answer ([`key`]); blobs and errors never;
//! - a manifest `PUT` or `DELETE` through portcullis moves its repository's write generation
//!   on ([`generation`]) on the way in and again before its answer reaches the client, so no
//!   answer fetched before or during the write is found afterwards — not even one whose fill
//!   was still in flight — and the other replicas are told ([`invalidations`]);
//! - concurrent misses make one registry request ([`flight`]).
//!
//! | file | job |
//! |---|---|
//! | [`settings`] | `cache:` in proxy.yaml |
//! | [`key`] | what an answer is filed under (`Accept` read as the registry reads it) |
//! | [`entry`] | one stored answer, captured from the registry's answer as it streams |
//! | [`generation`] | per-repository write generations |
//! | [`flight`] | single-flight lookups and the leader's fill |
//! | [`invalidations`] | announcing writes to other replicas, hearing theirs |

pub mod entry;
pub mod flight;
pub mod generation;
pub mod invalidations;
pub mod key;
pub mod settings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::notification::RemovalCause;

pub use entry::Entry;
pub use flight::{Coalesced, Fill, Lookup};
pub use invalidations::{Invalidations, Local, Received};
pub use key::{Accepts, Key};
pub use settings::{Manifests, Settings};

use crate::metrics::{CacheResult, Metrics};
use generation::Generations;

/// The largest answer kept: the registry's own manifest limit (4 MiB), and at most a
/// sixteenth of the memory bound so one answer cannot crowd out the rest.
const MAX_MANIFEST: usize = 4 << 20;

/// The manifest cache of one process (shared by all its threads and kept across reloads).
pub struct ManifestCache {
    entries: Cache<Key, Arc<Entry>>,
    generations: Generations,
    settings: Manifests,
    max_entry: usize,
    metrics: Arc<Metrics>,
    invalidations: Arc<dyn Invalidations>,
    /// The cluster subscription is lost: nothing is served or stored.
    suspended: AtomicBool,
}

/// Per-entry lifetime: by digest or by tag.
struct Lifetimes(Manifests);

impl moka::Expiry<Key, Arc<Entry>> for Lifetimes {
    fn expire_after_create(&self, key: &Key, _: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(if key.by_digest() {
            self.0.digest_ttl
        } else {
            self.0.tag_ttl
        })
    }
}

impl ManifestCache {
    /// An empty cache bounded by `settings`, counting into `metrics`, announcing writes
    /// through `invalidations`.
    pub fn new(
        settings: Manifests,
        metrics: Arc<Metrics>,
        invalidations: Arc<dyn Invalidations>,
    ) -> ManifestCache {
        let listener_metrics = metrics.clone();
        let entries = Cache::builder()
            .max_capacity(settings.max_memory)
            .weigher(|k: &Key, v: &Arc<Entry>| weight(k, v))
            .expire_after(Lifetimes(settings))
            .support_invalidation_closures()
            .eviction_listener(move |k: Arc<Key>, v: Arc<Entry>, cause: RemovalCause| {
                listener_metrics.cache_bytes(-i64::from(weight(&k, &v)));
                if cause.was_evicted() {
                    listener_metrics.cache_eviction();
                }
            })
            .build();
        let max_entry =
            MAX_MANIFEST.min(usize::try_from(settings.max_memory / 16).unwrap_or(MAX_MANIFEST));
        ManifestCache {
            entries,
            generations: Generations::default(),
            settings,
            max_entry,
            metrics,
            invalidations,
            suspended: AtomicBool::new(false),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Manifests {
        &self.settings
    }

    /// The key a manifest `GET`/`HEAD` of `repository`/`reference` with `headers` would be
    /// filed under, or `None` when such a request is never answered from the cache: a tag
    /// while `tag_ttl` is 0, a conditional request (`If-None-Match`, which the registry
    /// answers 304), an `Accept` that is not UTF-8, or while the cluster subscription is lost.
    pub fn key(&self, repository: &str, reference: &str, headers: &http::HeaderMap) -> Option<Key> {
        if self.suspended.load(Ordering::Acquire)
            || headers.contains_key(http::header::IF_NONE_MATCH)
        {
            return None;
        }
        let key = Key {
            repository: repository.into(),
            reference: reference.into(),
            accepts: Accepts::of(headers)?,
            generation: self.generations.current(repository),
        };
        (key.by_digest() || !self.settings.tag_ttl.is_zero()).then_some(key)
    }

    /// Looks `key` up for an authorized request. A `GET` (`may_lead`) that misses leads or
    /// joins a registry request; a `HEAD` that misses just goes to the registry (its answer
    /// has no body to keep).
    pub async fn lookup(&self, key: Key, may_lead: bool) -> Lookup {
        let found = if may_lead {
            let metrics = self.metrics.clone();
            flight::lookup(&self.entries, key, self.max_entry, move |k, e| {
                metrics.cache_bytes(i64::from(weight(k, e)));
            })
            .await
        } else {
            match self.entries.get(&key).await {
                Some(entry) => Lookup::Hit(entry, Coalesced(false)),
                None => Lookup::Pass,
            }
        };
        self.metrics.cache_request(match &found {
            Lookup::Hit(_, Coalesced(false)) => CacheResult::Hit,
            Lookup::Hit(_, Coalesced(true)) => CacheResult::Coalesced,
            Lookup::Lead(_) | Lookup::Pass => CacheResult::Miss,
        });
        if matches!(found, Lookup::Lead(_))
            && self.entries.weighted_size() > self.settings.max_memory
        {
            // moka evicts in batches; keep the bound tight when fills outrun it.
            self.entries.run_pending_tasks().await;
        }
        found
    }

    /// A manifest `PUT` or `DELETE` of `repository` is about to be forwarded: nothing cached
    /// for it is served from now on (an answer filled while the write runs is filed under
    /// this new generation, which [`ManifestCache::written`] moves on again).
    pub fn writing(&self, repository: &str) {
        self.forget(repository);
    }

    /// The registry answered a manifest write of `repository` through this replica (or it
    /// failed, and may have been applied anyway): forget the repository's answers again —
    /// before the client sees the answer — and tell the other replicas.
    pub fn written(&self, repository: &str) {
        self.forget(repository);
        self.invalidations.publish(repository);
    }

    /// What the cluster bus heard.
    pub fn receive(&self, event: Received<'_>) {
        match event {
            Received::Evict(repository) => self.forget(repository),
            Received::Lost => {
                self.suspended.store(true, Ordering::Release);
                self.clear();
            }
            Received::Restored => {
                self.clear();
                self.suspended.store(false, Ordering::Release);
            }
        }
    }

    fn forget(&self, repository: &str) {
        self.generations.advance(repository);
        // The entries are unreachable already (their generation is past); this frees their
        // memory without waiting for their time or for space pressure.
        let repository: Box<str> = repository.into();
        if let Err(e) = self
            .entries
            .invalidate_entries_if(move |k, _| k.repository == repository)
        {
            tracing::debug!(error = %e, "cache entries left to expire");
        }
    }

    fn clear(&self) {
        self.generations.advance_all();
        self.entries.invalidate_all();
    }
}

/// What one entry counts against `max_memory` (moka weighs in `u32`; entries are far smaller).
fn weight(key: &Key, entry: &Entry) -> u32 {
    u32::try_from(key.weight() + entry.weight()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pingora::http::ResponseHeader;
    use std::sync::Mutex;

    /// Records what would go to the other replicas.
    #[derive(Default)]
    struct Spy(Mutex<Vec<String>>);

    impl Invalidations for Spy {
        fn publish(&self, repository: &str) {
            self.0.lock().unwrap().push(repository.to_owned());
        }
    }

    fn cache(spy: Arc<Spy>) -> ManifestCache {
        ManifestCache::new(
            Manifests {
                max_memory: 1 << 20,
                digest_ttl: Duration::from_secs(600),
                tag_ttl: Duration::ZERO,
            },
            Arc::new(Metrics::new()),
            spy,
        )
    }

    /// Leads a fill for `repository`@digest and completes it with `{}`; then waits until the
    /// entry is found (moka stores it from the lookup's task).
    async fn fill(c: &ManifestCache, repository: &str) {
        let key = c
            .key(repository, "sha256:00", &http::HeaderMap::new())
            .unwrap();
        let Lookup::Lead(mut fill) = c.lookup(key, true).await else {
            panic!("an empty cache leads");
        };
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("Content-Length", "2").unwrap();
        fill.response(&resp);
        fill.body(Some(&Bytes::from_static(b"{}")), true);
        for _ in 0..1000 {
            if hit(c, repository).await {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the fill was never stored");
    }

    async fn hit(c: &ManifestCache, repository: &str) -> bool {
        match c.key(repository, "sha256:00", &http::HeaderMap::new()) {
            Some(key) => matches!(c.lookup(key, false).await, Lookup::Hit(..)),
            None => false,
        }
    }

    #[tokio::test]
    async fn writes_and_bus_events_forget_what_they_must() {
        let spy = Arc::new(Spy::default());
        let c = cache(spy.clone());
        fill(&c, "a").await;
        fill(&c, "b").await;

        // A write here: forgotten on the way in, again on the way out, and published once.
        c.writing("a");
        assert!(!hit(&c, "a").await);
        c.written("a");
        assert_eq!(*spy.0.lock().unwrap(), vec!["a".to_owned()]);
        fill(&c, "a").await;

        // A write elsewhere: forgotten, not published again.
        c.receive(Received::Evict("a"));
        assert!(!hit(&c, "a").await);
        assert_eq!(spy.0.lock().unwrap().len(), 1);

        // The subscription lost: nothing is served or stored until it is back.
        c.receive(Received::Lost);
        assert!(!hit(&c, "b").await);
        assert!(c.key("b", "sha256:00", &http::HeaderMap::new()).is_none());
        c.receive(Received::Restored);
        assert!(!hit(&c, "b").await, "the cache starts again from empty");
        fill(&c, "b").await;
    }

    #[tokio::test]
    async fn tags_are_not_cached_while_tag_ttl_is_zero_nor_conditional_requests() {
        let c = cache(Arc::new(Spy::default()));
        let none = http::HeaderMap::new();
        assert!(c.key("a", "latest", &none).is_none());
        assert!(c.key("a", "sha256:00", &none).is_some());
        let mut conditional = http::HeaderMap::new();
        conditional.insert(
            http::header::IF_NONE_MATCH,
            "\"sha256:00\"".parse().unwrap(),
        );
        assert!(c.key("a", "sha256:00", &conditional).is_none());
    }
}
