//! Single flight: concurrent misses for one key make one registry request. The first request
//! leads — it is proxied as usual and its answer fills the cache as it streams through — and
//! the others wait for that answer (for a bounded time) instead of asking the registry too.
//!
//! The coalescing itself is moka's (`try_get_with` evaluates one `init` per key and makes the
//! other callers wait for it). The leader's `init` cannot run to completion inside the
//! lookup, because the answer arrives later, in other proxy phases; so the lookup runs in a
//! task of its own, and the `init` that moka picks hands the lookup a [`Fill`] and waits for
//! the proxy phases to complete it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;
use pingora::http::ResponseHeader;
use tokio::sync::oneshot;

use super::entry::{Capture, Entry};
use super::key::Key;

/// How long a request waits for the leader's answer before asking the registry itself (a
/// manifest answer normally takes milliseconds; a stuck leader must not hold the others).
pub const FOLLOW_WAIT: Duration = Duration::from_secs(10);

/// The leader's answer did not become an entry (not cacheable, incomplete, or the leader
/// went away): the waiting requests ask the registry themselves.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the leading request's answer was not cached")]
pub struct NotFilled;

/// What a lookup found.
pub enum Lookup {
    /// A stored answer (or one another request just fetched): serve it.
    Hit(Arc<Entry>, Coalesced),
    /// This request leads: forward it and feed its answer to the [`Fill`].
    Lead(Box<Fill>),
    /// A stored answer by tag older than `tag_ttl`: ask the registry whether the tag still
    /// names the same manifest (`If-None-Match` with its `Etag`) before serving it.
    Stale(Arc<Entry>),
    /// Forward it and keep nothing (the leader's answer was not cacheable, or waiting took
    /// too long).
    Pass,
}

/// Whether a hit was shared from another request's registry answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalesced(pub bool);

/// The leading request's side: captures its answer from the proxy phases and, when it is
/// complete and cacheable, hands it to moka (which stores it and wakes the waiters).
pub struct Fill {
    max: usize,
    capture: Option<Capture>,
    done: Option<oneshot::Sender<Arc<Entry>>>,
}

impl Fill {
    /// The registry's answer head arrived.
    pub fn response(&mut self, resp: &ResponseHeader) {
        match Capture::start(resp, self.max) {
            Ok(c) => self.capture = Some(c),
            Err(why) => {
                tracing::debug!(%why, "manifest answer not cached");
                self.done = None;
            }
        }
    }

    /// A body chunk passed (`end`: the last one).
    pub fn body(&mut self, chunk: Option<&Bytes>, end: bool) {
        let Some(capture) = self.capture.as_mut() else {
            return;
        };
        match capture.chunk(chunk, end) {
            Ok(None) => {}
            Ok(Some(entry)) => {
                self.capture = None;
                if let Some(done) = self.done.take() {
                    // The lookup task may be gone (shutdown): nothing to fill then.
                    let _ = done.send(Arc::new(entry));
                }
            }
            Err(why) => {
                tracing::debug!(%why, "manifest answer not cached");
                self.capture = None;
                self.done = None;
            }
        }
    }
}

impl Fill {
    /// The registry's whole answer, read by portcullis itself (for a `HEAD`, which has no
    /// body to capture on its way through): filed when it may be kept, and returned.
    pub fn whole(
        mut self,
        status: http::StatusCode,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Option<Arc<Entry>> {
        match Capture::whole(status, headers, body, self.max) {
            Ok(entry) => {
                let entry = Arc::new(entry);
                if let Some(done) = self.done.take() {
                    let _ = done.send(entry.clone());
                }
                Some(entry)
            }
            Err(why) => {
                tracing::debug!(%why, "manifest answer not cached");
                None
            }
        }
    }
}

/// Looks `key` up in `entries`, coalescing with a lookup already leading for it. `on_fill`
/// is called with each entry this lookup's fill stores (for the byte count).
pub async fn lookup(
    entries: &Cache<Key, Arc<Entry>>,
    key: Key,
    max: usize,
    on_fill: impl Fn(&Key, &Entry) + Send + 'static,
) -> Lookup {
    let (lead_tx, lead_rx) = oneshot::channel::<oneshot::Sender<Arc<Entry>>>();
    let cache = entries.clone();
    let task = tokio::spawn(async move {
        let filed = key.clone();
        cache
            .try_get_with(key, async move {
                let (done_tx, done_rx) = oneshot::channel();
                // The lookup stopped waiting (it passed): lead nothing.
                lead_tx.send(done_tx).map_err(|_| NotFilled)?;
                let entry = done_rx.await.map_err(|_| NotFilled)?;
                on_fill(&filed, &entry);
                Ok::<_, NotFilled>(entry)
            })
            .await
    });
    let wait = tokio::time::sleep(FOLLOW_WAIT);
    tokio::pin!(lead_rx, task, wait);
    tokio::select! {
        biased;
        Ok(done) = &mut lead_rx => Lookup::Lead(Box::new(Fill { max, capture: None, done: Some(done) })),
        shared = &mut task => match shared {
            Ok(Ok(entry)) => Lookup::Hit(entry, Coalesced(true)),
            _ => Lookup::Pass,
        },
        _ = &mut wait => Lookup::Pass,
    }
}
