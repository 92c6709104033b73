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
//! - concurrent misses make one registry request ([`flight`]);
//! - an answer by tag older than `tag_ttl` is revalidated, never served unasked: a conditional
//!   `GET` (`If-None-Match` with its `Etag`) that concurrent requests share only when it was
//!   sent after they arrived ([`rounds`]).
//!
//! | file | job |
//! |---|---|
//! | [`settings`] | `cache:` in proxy.yaml |
//! | [`key`] | what an answer is filed under (`Accept` read as the registry reads it) |
//! | [`entry`] | one stored answer, captured from the registry's answer as it streams |
//! | [`generation`] | per-repository write generations |
//! | [`flight`] | single-flight lookups and the leader's fill |
//! | [`rounds`] | coalesced revalidation of answers by tag, never older than the request |
//! | [`invalidations`] | announcing writes to other replicas, hearing theirs |

pub mod entry;
pub mod flight;
pub mod generation;
pub mod invalidations;
pub mod key;
pub mod rounds;
pub mod settings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::notification::RemovalCause;

pub use entry::{Capture, Entry};
pub use flight::{Coalesced, Fill, Lookup};
pub use invalidations::{Invalidations, Local, Received};
pub use key::{Accepts, Key};
pub use settings::{Manifests, Settings};

use crate::metrics::{CacheResult, Metrics};
use generation::Generations;

/// The largest answer kept: the registry's own manifest limit (4 MiB), and at most a
/// sixteenth of the memory bound so one answer cannot crowd out the rest.
pub const MAX_MANIFEST: usize = 4 << 20;

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
    /// Revalidations in progress.
    rounds: rounds::Rounds,
}

/// The registry's whole answer to a request portcullis made itself.
struct Answer<'a> {
    status: http::StatusCode,
    headers: &'a http::HeaderMap,
    body: &'a [u8],
}

/// How long an entry is kept. By digest: `digest_ttl`. By tag: as long as by digest (at least
/// `tag_ttl`), because after `tag_ttl` a stored answer by tag is not dropped but revalidated
/// ([`Lookup::Stale`]): the bytes behind a digest never change, so only the tag needs asking.
struct Lifetimes(Manifests);

impl moka::Expiry<Key, Arc<Entry>> for Lifetimes {
    fn expire_after_create(&self, key: &Key, _: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(if key.by_digest() {
            self.0.digest_ttl
        } else {
            self.0.digest_ttl.max(self.0.tag_ttl)
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
            rounds: rounds::Rounds::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Manifests {
        &self.settings
    }

    /// The key a manifest `GET`/`HEAD` of `repository`/`reference` with `headers` would be
    /// filed under, or `None` when such a request is never answered from the cache: a
    /// conditional request (`If-None-Match`, which the registry answers 304), an `Accept`
    /// that is not UTF-8, or while the cluster subscription is lost.
    pub fn key(&self, repository: &str, reference: &str, headers: &http::HeaderMap) -> Option<Key> {
        if self.suspended.load(Ordering::Acquire)
            || headers.contains_key(http::header::IF_NONE_MATCH)
        {
            return None;
        }
        Some(Key {
            repository: repository.into(),
            reference: reference.into(),
            accepts: Accepts::of(headers)?,
            generation: self.generations.current(repository),
        })
    }

    /// Looks `key` up for an authorized `GET` or `HEAD`. A fresh answer is a hit; an answer by
    /// tag older than `tag_ttl` is [`Lookup::Stale`]; a miss leads or joins one registry
    /// request ([`flight`]).
    pub async fn lookup(&self, key: &Key) -> Lookup {
        let found = match self.entries.get(key).await {
            Some(entry) if key.by_digest() || entry.fresh(self.settings.tag_ttl) => {
                Lookup::Hit(entry, Coalesced(false))
            }
            Some(entry) if entry.etag().is_some() => Lookup::Stale(entry),
            stored => {
                if stored.is_some() {
                    // Nothing to revalidate with: fetch it again.
                    self.entries.invalidate(key).await;
                }
                let metrics = self.metrics.clone();
                // Only a miss needs a key of its own (filed by the flight's task).
                flight::lookup(&self.entries, key.clone(), self.max_entry, move |k, e| {
                    metrics.cache_bytes(i64::from(weight(k, e)));
                })
                .await
            }
        };
        match &found {
            Lookup::Hit(_, Coalesced(false)) => self.metrics.cache_request(CacheResult::Hit),
            Lookup::Hit(_, Coalesced(true)) => self.metrics.cache_request(CacheResult::Coalesced),
            Lookup::Lead(_) | Lookup::Pass => self.metrics.cache_request(CacheResult::Miss),
            // Counted when the registry has answered ([`ManifestCache::revalidate`]).
            Lookup::Stale(_) => {}
        }
        if matches!(found, Lookup::Lead(_))
            && self.entries.weighted_size() > self.settings.max_memory
        {
            // moka evicts in batches; keep the bound tight when fills outrun it.
            self.entries.run_pending_tasks().await;
        }
        found
    }

    /// Asks the registry whether `stale` (filed under `key`) still stands, sharing the question
    /// with concurrent requests for the same key ([`rounds`]). `ask` sends the conditional
    /// `GET` with the `If-None-Match` value it is given and returns the registry's answer
    /// (`None`: it failed). The answer to serve, or `None` to forward the request; and what
    /// the cache did, for the audit line.
    pub async fn revalidate<F, Fut>(
        &self,
        key: Key,
        stale: Arc<Entry>,
        ask: F,
    ) -> (Option<Arc<Entry>>, CacheResult)
    where
        F: FnOnce(http::HeaderValue) -> Fut,
        Fut: std::future::Future<Output = Option<(http::StatusCode, http::HeaderMap, Vec<u8>)>>,
    {
        let mut lead = match self.rounds.join(&key) {
            rounds::Role::Follow(round) => {
                let shared = tokio::time::timeout(flight::FOLLOW_WAIT, round.outcome()).await;
                return match shared {
                    Ok(Some(Some(entry))) => {
                        self.metrics.cache_request(CacheResult::Coalesced);
                        (Some(entry), CacheResult::Coalesced)
                    }
                    _ => {
                        self.metrics.cache_request(CacheResult::Miss);
                        (None, CacheResult::Miss)
                    }
                };
            }
            rounds::Role::Lead(lead) => lead,
        };
        let stale = if lead.start(flight::FOLLOW_WAIT).await {
            // The round before may have replaced the answer (the tag moved): ask about the
            // newest one.
            self.entries.get(&key).await.unwrap_or(stale)
        } else {
            stale
        };
        let answer = match stale.etag().cloned() {
            Some(etag) => ask(etag).await,
            None => None,
        };
        let (entry, result) = match &answer {
            Some((status, headers, body)) => {
                let answer = Answer {
                    status: *status,
                    headers,
                    body,
                };
                self.revalidated(key, stale, answer).await
            }
            None => {
                self.entries.invalidate(&key).await;
                (None, CacheResult::Miss)
            }
        };
        self.metrics.cache_request(result);
        lead.finish(entry.clone());
        (entry, result)
    }

    /// The registry answered the revalidation of `stale` (filed under `key`): `304` confirms
    /// it; a `200` that may be kept replaces it; anything else drops it (`None`: the request
    /// is forwarded and the client gets the registry's own answer).
    async fn revalidated(
        &self,
        key: Key,
        stale: Arc<Entry>,
        answer: Answer<'_>,
    ) -> (Option<Arc<Entry>>, CacheResult) {
        if answer.status == http::StatusCode::NOT_MODIFIED {
            stale.confirm();
            return (Some(stale), CacheResult::Revalidated);
        }
        match Capture::whole(answer.status, answer.headers, answer.body, self.max_entry) {
            Ok(entry) => {
                let entry = Arc::new(entry);
                self.metrics.cache_bytes(i64::from(weight(&key, &entry)));
                self.entries.insert(key, entry.clone()).await;
                (Some(entry), CacheResult::Miss)
            }
            Err(why) => {
                tracing::debug!(%why, "manifest answer not cached");
                self.entries.invalidate(&key).await;
                (None, CacheResult::Miss)
            }
        }
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
        let Lookup::Lead(mut fill) = c.lookup(&key).await else {
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
            Some(key) => c.entries.get(&key).await.is_some(),
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
    async fn conditional_requests_are_not_answered_from_the_cache() {
        let c = cache(Arc::new(Spy::default()));
        let none = http::HeaderMap::new();
        assert!(c.key("a", "latest", &none).is_some());
        assert!(c.key("a", "sha256:00", &none).is_some());
        let mut conditional = http::HeaderMap::new();
        conditional.insert(
            http::header::IF_NONE_MATCH,
            "\"sha256:00\"".parse().unwrap(),
        );
        assert!(c.key("a", "sha256:00", &conditional).is_none());
    }

    /// The registry's answer to a manifest GET, with its Etag.
    fn answer(etag: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("content-length", "2".parse().unwrap());
        if let Some(etag) = etag {
            h.insert("etag", etag.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn a_tag_older_than_tag_ttl_is_revalidated_not_served() {
        let c = cache(Arc::new(Spy::default()));
        let key = || c.key("a", "latest", &http::HeaderMap::new()).unwrap();
        let Lookup::Lead(fill) = c.lookup(&key()).await else {
            panic!("an empty cache leads");
        };
        fill.whole(http::StatusCode::OK, &answer(Some("\"sha256:01\"")), b"{}")
            .unwrap();
        // moka stores it from the lookup's task.
        while c.entries.get(&key()).await.is_none() {
            tokio::task::yield_now().await;
        }
        // tag_ttl is 0: the stored answer is stale at once and offered for revalidation.
        let Lookup::Stale(stale) = c.lookup(&key()).await else {
            panic!("a tag with tag_ttl 0 is never served unasked");
        };
        assert_eq!(stale.etag().unwrap(), "\"sha256:01\"");
        // What the registry answers, and what it was asked with.
        let reply = |status: u16, headers: http::HeaderMap, body: &'static [u8]| {
            let asked = Arc::new(Mutex::new(None));
            let seen = asked.clone();
            let ask = move |etag: http::HeaderValue| {
                *seen.lock().unwrap() = Some(etag);
                let status = http::StatusCode::from_u16(status).unwrap();
                async move { Some((status, headers, body.to_vec())) }
            };
            (ask, asked)
        };
        // 304: the same answer, confirmed.
        let (ask, asked) = reply(304, http::HeaderMap::new(), b"");
        let (served, result) = c.revalidate(key(), stale.clone(), ask).await;
        assert_eq!(asked.lock().unwrap().as_ref().unwrap(), "\"sha256:01\"");
        assert_eq!(result, CacheResult::Revalidated);
        let served = served.unwrap();
        assert!(Arc::ptr_eq(&served, &stale));
        assert!(served.fresh(Duration::from_secs(60)));
        // 200: the tag moved; the new answer replaces the old.
        let (ask, _) = reply(200, answer(Some("\"sha256:02\"")), b"[]");
        let (moved, result) = c.revalidate(key(), stale, ask).await;
        assert_eq!(result, CacheResult::Miss);
        assert_eq!(moved.unwrap().body().as_ref(), b"[]");
        let Lookup::Stale(now) = c.lookup(&key()).await else {
            panic!("the new answer is stored");
        };
        assert_eq!(now.etag().unwrap(), "\"sha256:02\"");
        // Anything else (the tag is gone, the registry failed): dropped, the request forwarded.
        let (ask, _) = reply(404, http::HeaderMap::new(), b"");
        assert!(c.revalidate(key(), now, ask).await.0.is_none());
        assert!(c.entries.get(&key()).await.is_none());
        assert_eq!(c.rounds.open(), 0);
    }

    #[tokio::test]
    async fn a_tag_within_tag_ttl_is_a_hit_and_one_without_etag_is_fetched_again() {
        for (tag_ttl, fresh) in [(600, true), (0, false)] {
            let c = ManifestCache::new(
                Manifests {
                    max_memory: 1 << 20,
                    digest_ttl: Duration::from_secs(600),
                    tag_ttl: Duration::from_secs(tag_ttl),
                },
                Arc::new(Metrics::new()),
                Arc::new(Spy::default()),
            );
            let key = |tag: &str| c.key("a", tag, &http::HeaderMap::new()).unwrap();
            for (tag, etag) in [("v1", Some("\"sha256:01\"")), ("v2", None)] {
                let Lookup::Lead(fill) = c.lookup(&key(tag)).await else {
                    panic!("an empty cache leads");
                };
                fill.whole(http::StatusCode::OK, &answer(etag), b"{}")
                    .unwrap();
                while c.entries.get(&key(tag)).await.is_none() {
                    tokio::task::yield_now().await;
                }
            }
            if fresh {
                // Within tag_ttl both are served unasked.
                assert!(matches!(c.lookup(&key("v1")).await, Lookup::Hit(..)));
                assert!(matches!(c.lookup(&key("v2")).await, Lookup::Hit(..)));
            } else {
                // Past it: one with an Etag is revalidated; one without has nothing to
                // revalidate with, so it is dropped and this request leads a fresh fetch.
                assert!(matches!(c.lookup(&key("v1")).await, Lookup::Stale(_)));
                assert!(matches!(c.lookup(&key("v2")).await, Lookup::Lead(_)));
            }
        }
    }
}
