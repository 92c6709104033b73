//! Where this replica's manifest writes are announced, and what it hears from the others.
//!
//! A write through one replica makes the others' cached answers for that repository stale.
//! [`Invalidations::publish`] is how the cache tells the other replicas (the cluster bus
//! implements it); what they publish comes back into [`super::ManifestCache::receive`] as a
//! [`Received`] event. Without a cluster, [`Local`] publishes nowhere.

/// Announces writes to other replicas.
pub trait Invalidations: Send + Sync {
    /// A manifest of `repository` was written or deleted through this replica (called after
    /// the registry answered the write, before the client sees that answer).
    fn publish(&self, repository: &str);
}

/// One replica alone: nobody to tell.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Invalidations for Local {
    fn publish(&self, _repository: &str) {}
}

/// What the cluster bus delivers to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received<'a> {
    /// Another replica wrote a manifest of this repository: forget its answers.
    Evict(&'a str),
    /// The subscription is lost: evictions may be missed from now on, so the cache empties
    /// and stays out of use (every request asks the registry) until [`Received::Restored`].
    Lost,
    /// The subscription is back: the cache starts again from empty.
    Restored,
}
