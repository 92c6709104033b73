//! The manifest cache across replicas: a manifest write through one replica must not leave
//! the others serving the old answer. Each write is published on the cluster bus
//! ([`Publisher`]), and every replica's cache forgets that repository when it hears it
//! ([`listen`]). Redis pub/sub drops what a disconnected subscriber misses, so while this
//! replica's subscription is down its cache empties and stays out of use (every request asks
//! the registry) until the subscription is back — never a stale answer, only a slower one.

use std::sync::Arc;
use std::time::Duration;

use super::bus::Event;
use super::Cluster;
use crate::cache::{Invalidations, ManifestCache, Received};

/// The bus channel the evictions travel on (under the key prefix).
pub const CHANNEL: &str = "cache-evict";

/// Publishes this replica's manifest writes to the other replicas.
pub struct Publisher {
    cluster: Cluster,
}

impl Publisher {
    /// A publisher on `cluster`'s bus.
    pub fn new(cluster: Cluster) -> Publisher {
        Publisher { cluster }
    }
}

impl Invalidations for Publisher {
    fn publish(&self, repository: &str) {
        let cluster = self.cluster.clone();
        let repository = repository.to_owned();
        // Off the request path: the cluster runtime sends it at once. If Redis cannot be
        // reached, the other replicas' subscriptions are down too and their caches are out
        // of use; the failure is counted in `portcullis_cluster_errors_total`.
        self.cluster.handle().spawn(async move {
            if let Err(e) = cluster.publish(CHANNEL, repository.as_bytes()).await {
                tracing::debug!(error = %e, repository, "manifest eviction not published");
            }
        });
    }
}

/// Feeds the evictions every replica publishes into `cache`, for as long as the process runs.
/// The cache is out of use from now until the subscription is first made.
pub fn listen(cluster: &Cluster, cache: Arc<ManifestCache>) {
    cache.receive(Received::Lost);
    let bus = cluster.clone();
    cluster.handle().spawn(async move {
        let mut subscription = bus.subscribe(CHANNEL).await;
        // A first attempt that failed has already queued `Lost`; otherwise we are subscribed.
        match tokio::time::timeout(Duration::ZERO, subscription.next()).await {
            Ok(Some(Event::Lost)) => {}
            Ok(Some(event)) => {
                cache.receive(Received::Restored);
                deliver(&cache, event);
            }
            Ok(None) => return,
            Err(_) => cache.receive(Received::Restored),
        }
        while let Some(event) = subscription.next().await {
            deliver(&cache, event);
        }
    });
}

fn deliver(cache: &ManifestCache, event: Event) {
    match event {
        Event::Message(bytes) => match std::str::from_utf8(&bytes) {
            Ok(repository) => cache.receive(Received::Evict(repository)),
            // Not one of ours: forget everything rather than guess.
            Err(_) => {
                cache.receive(Received::Lost);
                cache.receive(Received::Restored);
            }
        },
        Event::Lost => cache.receive(Received::Lost),
        Event::Restored => cache.receive(Received::Restored),
    }
}
