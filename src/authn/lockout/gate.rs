//! At most one password check in flight per (account, client address); the others *wait*.
//!
//! Why wait rather than refuse: a Docker client that sends Basic credentials on every request
//! pulls several layers at once, each request carrying the same account from the same address.
//! Refusing all but one would break ordinary pulls whenever the login cache is cold; waiting
//! costs them one bcrypt check (the first fills the cache, the others are then answered from
//! it). An attacker who queues many guesses on one pair only queues behind themself: another
//! address, or another account, never waits here.
//!
//! A gate exists only while some attempt holds or awaits it, so memory is bounded by the
//! requests in flight (themselves bounded by `limits.max_connections`), not by traffic.
//! In-process even when the counters are shared by several replicas: the reservation in
//! [`super::Counters`] is what bounds the number of checks; the gate only orders the checks of
//! one pair on one replica, so that a correct password sent during a burst gets a definite
//! answer instead of a spurious "locked".

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::Key;

/// Independent maps, so attempts on unrelated pairs rarely contend for one lock.
const SHARDS: usize = 64;

/// Pair hash → the pair's gate and how many attempts hold or await it.
type Map = HashMap<u64, (Arc<AsyncMutex<()>>, usize)>;
type Shard = Mutex<Map>;

/// The gates of the pairs that have an attempt in flight.
pub struct Gates {
    hasher: RandomState,
    shards: Vec<Shard>,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Gates {
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Map> {
        self.shards[(hash % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no other attempt on `pair` is in flight, and holds the gate until the
    /// returned guard is dropped. Cancel-safe: a waiter that is dropped leaves nothing behind.
    pub async fn enter(&self, pair: &Key<'_>) -> Entered<'_> {
        let hash = self.hasher.hash_one(pair);
        let gate = {
            let mut shard = self.shard(hash);
            let (gate, users) = shard.entry(hash).or_default();
            *users += 1;
            gate.clone()
        };
        // From here on, dropping `entered` (even while still waiting) undoes the count.
        let mut entered = Entered {
            gates: self,
            hash,
            held: None,
        };
        entered.held = Some(gate.lock_owned().await);
        entered
    }

    /// Attempts holding or awaiting a gate (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .map(|(_, users)| users)
                    .sum::<usize>()
            })
            .sum()
    }

    /// Whether no attempt is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A held (or awaited) gate; dropping it lets the next attempt on the pair in.
pub struct Entered<'a> {
    gates: &'a Gates,
    hash: u64,
    held: Option<OwnedMutexGuard<()>>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // Let the next attempt in first, then forget the gate if nobody else holds or awaits
        // it.
        self.held = None;
        let mut shard = self.gates.shard(self.hash);
        if let Some((_, users)) = shard.get_mut(&self.hash) {
            *users -= 1;
            if *users == 0 {
                shard.remove(&self.hash);
            }
        }
    }
}
