//! The in-process [`Counters`]: one fixed-size, set-associative table per key kind.
//!
//! # Bounded memory
//!
//! Each kind (pairs, addresses, accounts) has a table allocated up front
//! ([`DEFAULT_CAPACITY`] entries of 64 bytes: 2 MiB per kind, 6 MiB in all by default); nothing
//! grows with traffic. Keys are stored as 64-bit hashes keyed with a per-process random secret,
//! so an account name of any length costs the same and an attacker cannot choose names that
//! land together. A key may live in one of [`WAYS`] slots of the bucket its hash picks. When a
//! new key finds its bucket full, it replaces, in this order of preference:
//!
//! 1. an entry whose window or lockout has passed;
//! 2. the unlocked entry with the fewest attempts counted, the least recently counted among
//!    equals.
//!
//! Locked entries are never evicted before they expire, and an entry with many failures
//! outlives a spray of one-failure entries, so spraying random account names neither lifts a
//! lockout nor resets the count of an account under attack. An attempt in flight is counted
//! like a failure (that is what a reservation is), so in-flight attempts pin nothing: an
//! attacker holding many requests open cannot use them to push a target out either.
//!
//! **Full of locked entries** (all [`WAYS`] slots of a bucket locked and live — which takes
//! `WAYS × limit` failures on keys that happen to share a secret-keyed bucket): the new key is
//! not tracked, i.e. this one kind of counter fails *open* for that key until a slot frees up,
//! rather than locking out a bystander who merely shares the bucket. Existing lockouts stay in
//! force, and the other kinds still count the attempt. Such events are counted in
//! [`Counters::untracked`] so they can be logged. (The account kind never locks, so it never
//! fills up.)

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Counters, Key, Opened, Reserve, Ticket};

/// Entries per key kind unless [`Tables::with_capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 32_768;

/// Slots per bucket.
pub const WAYS: usize = 8;

/// The attempts counted for one key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The key's keyed hash.
    key: u64,
    /// Attempts counted in the current window: failures, plus attempts still in flight.
    count: u32,
    /// When the current window opened (its first attempt); also identifies the window, so a
    /// refund never lands in a later one.
    window_start: Instant,
    /// The latest attempt, for eviction order.
    last: Instant,
    /// Set when the limit was reached: locked until then.
    locked_until: Option<Instant>,
}

impl Entry {
    fn locked_at(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Nothing left to remember: the lockout passed, or the window passed unlocked.
    fn expired(&self, now: Instant, window: Duration) -> bool {
        match self.locked_until {
            Some(until) => until <= now,
            None => now.saturating_duration_since(self.window_start) >= window,
        }
    }
}

type Bucket = [Option<Entry>; WAYS];

/// One fixed-size set-associative table of counters (one per key kind).
struct Table {
    buckets: Vec<Mutex<Bucket>>,
    /// `buckets.len() - 1`; the length is a power of two.
    mask: u64,
}

impl Table {
    fn new(capacity: usize) -> Self {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        Table {
            buckets: (0..buckets).map(|_| Mutex::new([None; WAYS])).collect(),
            mask: buckets as u64 - 1,
        }
    }

    fn bucket(&self, key: u64) -> std::sync::MutexGuard<'_, Bucket> {
        // The low bits pick the bucket; the whole hash identifies the entry. A poisoned bucket
        // only means another thread panicked between plain field writes: the data is usable.
        let index = (key & self.mask) as usize;
        self.buckets[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn peek(&self, key: u64, window: Duration, now: Instant) -> (u32, Option<Duration>) {
        let bucket = self.bucket(key);
        match bucket.iter().flatten().find(|e| e.key == key) {
            Some(e) if !e.expired(now, window) => (e.count, e.locked_at(now)),
            _ => (0, None),
        }
    }

    fn reserve(&self, key: u64, limit: Option<u32>, window: Duration, now: Instant) -> Reserve {
        let mut bucket = self.bucket(key);
        let slot = match bucket.iter().position(|e| e.is_some_and(|e| e.key == key)) {
            Some(i) => i,
            None => match Self::victim(&bucket, now, window) {
                Some(i) => {
                    bucket[i] = None;
                    i
                }
                None => return Reserve::Untracked,
            },
        };
        let entry = bucket[slot].get_or_insert(Entry {
            key,
            count: 0,
            window_start: now,
            last: now,
            locked_until: None,
        });
        if let Some(remaining) = entry.locked_at(now) {
            return Reserve::Locked(remaining);
        }
        if entry.expired(now, window) {
            entry.count = 0;
            entry.window_start = now;
            entry.locked_until = None;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let locks = limit.is_some_and(|limit| entry.count >= limit);
        if locks {
            entry.locked_until = Some(now + window);
        }
        Reserve::Reserved(Ticket {
            opened: Opened::At(entry.window_start),
            count: entry.count,
            locks,
        })
    }

    /// The entry `ticket` was taken from, if it is still there in the same window.
    fn entry_of<'b>(bucket: &'b mut Bucket, key: u64, ticket: &Ticket) -> Option<&'b mut Entry> {
        bucket
            .iter_mut()
            .flatten()
            .find(|e| e.key == key && Opened::At(e.window_start) == ticket.opened)
    }

    fn fail(&self, key: u64, ticket: Ticket, limit: Option<u32>) -> bool {
        let mut bucket = self.bucket(key);
        let Some(entry) = Self::entry_of(&mut bucket, key, &ticket) else {
            return false;
        };
        if !ticket.locks {
            return false;
        }
        if limit.is_some_and(|limit| entry.count >= limit) {
            true
        } else {
            // The lock was taken on a count that included attempts which have since succeeded:
            // fewer than `limit` failures remain, so there is no lockout after all.
            entry.locked_until = None;
            false
        }
    }

    fn refund(&self, key: u64, ticket: Ticket) {
        let mut bucket = self.bucket(key);
        if let Some(entry) = Self::entry_of(&mut bucket, key, &ticket) {
            entry.count = entry.count.saturating_sub(1);
            if ticket.locks {
                entry.locked_until = None;
            }
        }
    }

    /// The slot a new key may take, or `None` when every slot holds a live lockout.
    fn victim(bucket: &Bucket, now: Instant, window: Duration) -> Option<usize> {
        if let Some(i) = bucket
            .iter()
            .position(|e| e.is_none_or(|e| e.expired(now, window)))
        {
            return Some(i);
        }
        bucket
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (i, e)))
            .filter(|(_, e)| e.locked_at(now).is_none())
            .min_by_key(|(_, e)| (e.count, e.last))
            .map(|(i, _)| i)
    }

    fn len(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| {
                b.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .flatten()
                    .count()
            })
            .sum()
    }

    fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }
}

/// The three tables, and the secret their keys are hashed with.
pub struct Tables {
    hasher: RandomState,
    pairs: Table,
    addresses: Table,
    accounts: Table,
    untracked: AtomicU64,
}

impl Tables {
    /// Tables with room for at least `capacity` keys of each kind (rounded up to a power of two
    /// times [`WAYS`]).
    pub fn with_capacity(capacity: usize) -> Self {
        Tables {
            hasher: RandomState::new(),
            pairs: Table::new(capacity),
            addresses: Table::new(capacity),
            accounts: Table::new(capacity),
            untracked: AtomicU64::new(0),
        }
    }

    fn table(&self, key: &Key<'_>) -> (&Table, u64) {
        let hash = self.hasher.hash_one(key);
        match key {
            Key::Pair(..) => (&self.pairs, hash),
            Key::Address(_) => (&self.addresses, hash),
            Key::Account(_) => (&self.accounts, hash),
        }
    }
}

/// The [`Counters`] operations, synchronous: nothing here waits (the cluster store falls back
/// to these when Redis cannot be reached).
impl Tables {
    /// See [`Counters::peek`].
    pub fn peek(&self, key: &Key<'_>, window: Duration, now: Instant) -> (u32, Option<Duration>) {
        let (table, hash) = self.table(key);
        table.peek(hash, window, now)
    }

    /// See [`Counters::reserve`].
    pub fn reserve(
        &self,
        key: &Key<'_>,
        limit: Option<u32>,
        window: Duration,
        now: Instant,
    ) -> Reserve {
        let (table, hash) = self.table(key);
        let reserved = table.reserve(hash, limit, window, now);
        if reserved == Reserve::Untracked {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
        reserved
    }

    /// See [`Counters::fail`].
    pub fn fail(&self, key: &Key<'_>, ticket: Ticket, limit: Option<u32>) -> bool {
        let (table, hash) = self.table(key);
        table.fail(hash, ticket, limit)
    }

    /// See [`Counters::refund`].
    pub fn refund(&self, key: &Key<'_>, ticket: Ticket) {
        let (table, hash) = self.table(key);
        table.refund(hash, ticket)
    }

    /// See [`Counters::untracked`].
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// See [`Counters::len`].
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.pairs.len() + self.addresses.len() + self.accounts.len()
    }

    /// See [`Counters::capacity`].
    pub fn capacity(&self) -> usize {
        self.pairs.capacity() + self.addresses.capacity() + self.accounts.capacity()
    }
}

#[async_trait]
impl Counters for Tables {
    async fn peek(&self, key: &Key<'_>, window: Duration, now: Instant) -> (u32, Option<Duration>) {
        Tables::peek(self, key, window, now)
    }

    async fn reserve(
        &self,
        key: &Key<'_>,
        limit: Option<u32>,
        window: Duration,
        now: Instant,
    ) -> Reserve {
        Tables::reserve(self, key, limit, window, now)
    }

    async fn fail(&self, key: &Key<'_>, ticket: Ticket, limit: Option<u32>) -> bool {
        Tables::fail(self, key, ticket, limit)
    }

    async fn refund(&self, key: &Key<'_>, ticket: Ticket) {
        Tables::refund(self, key, ticket)
    }

    fn untracked(&self) -> u64 {
        Tables::untracked(self)
    }

    fn len(&self) -> usize {
        Tables::len(self)
    }

    fn capacity(&self) -> usize {
        Tables::capacity(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_small() {
        assert!(std::mem::size_of::<Option<Entry>>() <= 64);
    }

    #[test]
    fn a_refund_never_lands_in_a_later_window() {
        let t = Table::new(WAYS);
        let now = Instant::now();
        let window = Duration::from_secs(10);
        let Reserve::Reserved(old) = t.reserve(1, Some(3), window, now) else {
            panic!()
        };
        // The window passes while the attempt is in flight; a new one opens with a failure.
        let later = now + window;
        assert!(matches!(
            t.reserve(1, Some(3), window, later),
            Reserve::Reserved(Ticket { count: 1, .. })
        ));
        t.refund(1, old);
        assert!(matches!(
            t.reserve(1, Some(3), window, later),
            Reserve::Reserved(Ticket { count: 2, .. })
        ));
    }
}
