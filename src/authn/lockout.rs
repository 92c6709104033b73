//! Failed-login limiting per account and per client address (`auth.lockout`).
//!
//! The proxy calls [`Lockout::check`] *before* checking a password, and
//! [`Lockout::record_failure`] after a wrong password or an unknown account (nothing else
//! counts: a missing header, a malformed one or an unavailable LDAP server is not a guess).
//! A correct password does nothing here: it does not lift an active lockout, and it does not
//! clear the failures counted so far.
//!
//! # Counting
//!
//! A *fixed window* per key, opened by its first failure: failures are counted for `window`
//! from then; the failure that reaches `failures` locks the key for `window` from that moment.
//! A window that passes without reaching the limit is forgotten, and the next failure opens a
//! new one. (A fixed window lets a patient guesser make at most `2 × (failures − 1)` guesses
//! in any `window`-long span; a sliding window would need a timestamp per failure.) Failures
//! of a locked key are not counted and do not extend the lockout — and cannot normally happen,
//! because `check` refuses first.
//!
//! Accounts and client addresses are counted independently: too many failures from one
//! address lock that address for every account, and too many failures on one account lock it
//! from every address. IPv6 clients are counted per /64 (whoever has one address usually has
//! the whole /64); IPv4 per address; IPv4-mapped IPv6 addresses as IPv4.
//!
//! # Bounded memory
//!
//! Each key kind has a fixed-size table allocated up front ([`DEFAULT_CAPACITY`] entries,
//! 64 bytes each: 4 MiB for both kinds by default); nothing grows with traffic. Keys are
//! stored as 64-bit hashes keyed with a per-process random secret, so an account name of any
//! length costs the same and an attacker cannot choose names that land together. The table is set-associative: a key may
//! live in one of [`WAYS`] slots of the bucket its hash picks. When a new key finds its bucket
//! full, it replaces, in this order of preference:
//!
//! 1. an entry whose window or lockout has passed;
//! 2. the unlocked entry with the fewest failures, the least recently failed among equals.
//!
//! Locked entries are never evicted before they expire, and an entry with many failures
//! outlives a spray of one-failure entries, so spraying random account names neither lifts a
//! lockout nor resets the count of an account under attack (see the tests).
//!
//! **Full of locked entries** (all [`WAYS`] slots of a bucket locked and live — which takes
//! `WAYS × failures` failures on keys that happen to share a secret-keyed bucket): the new
//! key is not tracked, i.e. this one kind of counter fails *open* for that key until a slot
//! frees up, rather than locking out a bystander who merely shares the bucket. Existing
//! lockouts stay in force, and the other key kind still counts the attempt. Such events are
//! counted in [`Lockout::untracked`] so they can be logged.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::authn::{Authenticators, AuthnError, Identity};
use crate::config;

/// Entries per key kind (accounts, client addresses) unless [`Lockout::with_capacity`] says.
pub const DEFAULT_CAPACITY: usize = 32_768;

/// Slots per bucket.
pub const WAYS: usize = 8;

/// Longer windows are shortened to this (a year).
const MAX_WINDOW: Duration = Duration::from_secs(365 * 24 * 3600);

/// The failure state of one key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The key's keyed hash.
    key: u64,
    /// Failures in the current window.
    failures: u32,
    /// When the current window opened (its first failure).
    window_start: Instant,
    /// The latest failure, for eviction order.
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

/// One fixed-size set-associative table of failure counters (one per key kind).
struct Table {
    buckets: Vec<Mutex<Bucket>>,
    /// `buckets.len() - 1`; the length is a power of two.
    mask: u64,
}

/// What recording a failure did to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Counted,
    JustLocked,
    AlreadyLocked,
    Untracked,
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

    /// Remaining lockout of `key`, if locked.
    fn check(&self, key: u64, now: Instant) -> Option<Duration> {
        let bucket = self.bucket(key);
        bucket
            .iter()
            .flatten()
            .find(|e| e.key == key)
            .and_then(|e| e.locked_at(now))
    }

    fn record(&self, key: u64, now: Instant, limit: u32, window: Duration) -> Recorded {
        let mut bucket = self.bucket(key);
        let slot = match bucket.iter().position(|e| e.is_some_and(|e| e.key == key)) {
            Some(i) => i,
            None => match Self::victim(&bucket, now, window) {
                Some(i) => {
                    bucket[i] = None;
                    i
                }
                None => return Recorded::Untracked,
            },
        };
        let entry = bucket[slot].get_or_insert(Entry {
            key,
            failures: 0,
            window_start: now,
            last: now,
            locked_until: None,
        });
        if entry.locked_at(now).is_some() {
            return Recorded::AlreadyLocked;
        }
        if entry.expired(now, window) {
            entry.failures = 0;
            entry.window_start = now;
            entry.locked_until = None;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if entry.failures >= limit {
            entry.locked_until = Some(now + window);
            Recorded::JustLocked
        } else {
            Recorded::Counted
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
            .min_by_key(|(_, e)| (e.failures, e.last))
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

/// Failed-login counters for accounts and client addresses. Shared by all proxy threads.
pub struct Lockout {
    limit: u32,
    window: Duration,
    hasher: RandomState,
    accounts: Table,
    addresses: Table,
    untracked: AtomicU64,
}

impl Lockout {
    /// Counters for `config`, with [`DEFAULT_CAPACITY`] entries per key kind. `failures: 0`
    /// turns lockout off (and allocates nothing).
    pub fn new(config: config::Lockout) -> Self {
        Self::with_capacity(config, DEFAULT_CAPACITY)
    }

    /// Counters with room for at least `capacity` accounts and as many client addresses
    /// (rounded up to a power of two times [`WAYS`]).
    pub fn with_capacity(config: config::Lockout, capacity: usize) -> Self {
        let capacity = if config.failures == 0 { 0 } else { capacity };
        Lockout {
            limit: config.failures,
            // `Instant + window` must not overflow; no real lockout is longer than a year.
            window: config.window.min(MAX_WINDOW),
            hasher: RandomState::new(),
            accounts: Table::new(capacity),
            addresses: Table::new(capacity),
            untracked: AtomicU64::new(0),
        }
    }

    /// Whether lockout is on.
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    fn account_key(&self, account: &str) -> u64 {
        self.hasher.hash_one((0u8, account))
    }

    fn address_key(&self, ip: IpAddr) -> u64 {
        self.hasher.hash_one((1u8, address_group(ip)))
    }

    /// `Ok` when neither `account` nor `ip` is locked out; otherwise `Err` with how long the
    /// longer of the two lockouts still lasts (for `Retry-After`). Call before checking the
    /// password.
    pub fn check(&self, account: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let by_account = self.accounts.check(self.account_key(account), now);
        let by_address = ip.and_then(|ip| self.addresses.check(self.address_key(ip), now));
        match by_account.max(by_address) {
            Some(remaining) => Err(remaining),
            None => Ok(()),
        }
    }

    /// Counts one failed login (wrong password or unknown account) for `account` and `ip`.
    /// `true` when this failure locked the account or the address (either or both: count it
    /// as one lockout).
    pub fn record_failure(&self, account: &str, ip: Option<IpAddr>, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut just_locked = false;
        let mut note = |r: Recorded| match r {
            Recorded::JustLocked => just_locked = true,
            Recorded::Untracked => {
                self.untracked.fetch_add(1, Ordering::Relaxed);
            }
            Recorded::Counted | Recorded::AlreadyLocked => {}
        };
        note(
            self.accounts
                .record(self.account_key(account), now, self.limit, self.window),
        );
        if let Some(ip) = ip {
            note(
                self.addresses
                    .record(self.address_key(ip), now, self.limit, self.window),
            );
        }
        just_locked
    }

    /// Failures that could not be counted for one key kind because its bucket was full of live
    /// lockouts (see the module documentation).
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// Entries in use (accounts + addresses). Walks every bucket: for tests and diagnostics.
    pub fn len(&self) -> usize {
        self.accounts.len() + self.addresses.len()
    }

    /// Whether no failure is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fixed number of entries (accounts + addresses) the tables can hold.
    pub fn capacity(&self) -> usize {
        if self.enabled() {
            self.accounts.capacity() + self.addresses.capacity()
        } else {
            0
        }
    }
}

/// The unit a client address is counted in: IPv4 addresses as themselves, IPv6 addresses by
/// their /64, IPv4-mapped IPv6 as IPv4.
fn address_group(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (4, u32::from(v4).into()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (4, u32::from(v4).into()),
            None => (6, u128::from(v6) & !u128::from(u64::MAX)),
        },
    }
}

/// The `Retry-After` value for a remaining lockout: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(remaining: Duration) -> u64 {
    let secs = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    secs.max(1)
}

/// Why a login with the failed-login limits around it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The account or the client address is locked out; the password was not looked at.
    Locked {
        /// Until the lockout ends.
        remaining: Duration,
    },
    /// The login itself failed.
    Failed {
        /// Why.
        error: AuthnError,
        /// This failure reached the limit and started a lockout.
        locked_now: bool,
    },
}

/// Checks `account`/`password` with the limits around it: the one place both `/v2` and the
/// token endpoint log in. A locked account or address is refused before the password is
/// looked at; only a wrong password or an unknown account counts as a failure, and a correct
/// password does not lift an active lockout. `lockout: None` checks the password only.
pub async fn guarded_login(
    lockout: Option<&Lockout>,
    authn: &Authenticators,
    account: &str,
    password: &str,
    ip: Option<IpAddr>,
) -> Result<Identity, Refused> {
    let now = Instant::now();
    if let Some(lockout) = lockout {
        lockout
            .check(account, ip, now)
            .map_err(|remaining| Refused::Locked { remaining })?;
    }
    authn.login(account, password).await.map_err(|error| {
        let counted = matches!(error, AuthnError::BadPassword | AuthnError::UnknownAccount);
        let locked_now = counted && lockout.is_some_and(|l| l.record_failure(account, ip, now));
        Refused::Failed { error, locked_now }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const WINDOW: Duration = Duration::from_secs(300);

    fn lockout(failures: u32) -> Lockout {
        Lockout::new(config::Lockout {
            failures,
            window: WINDOW,
        })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn locks_at_the_limit() {
        let l = lockout(3);
        let t = Instant::now();
        let me = ip("192.0.2.1");
        assert_eq!(l.check("alice", me, t), Ok(()));
        assert!(!l.record_failure("alice", me, t));
        assert!(!l.record_failure("alice", me, t + secs(1)));
        assert_eq!(l.check("alice", me, t + secs(2)), Ok(()));
        assert!(l.record_failure("alice", me, t + secs(2)));
        assert_eq!(l.check("alice", me, t + secs(2)), Err(WINDOW));
        assert_eq!(l.check("alice", me, t + secs(12)), Err(WINDOW - secs(10)));
        // Further failures neither lock again nor extend the lockout.
        assert!(!l.record_failure("alice", me, t + secs(100)));
        assert_eq!(l.check("alice", me, t + secs(102)), Err(WINDOW - secs(100)));
    }

    #[test]
    fn a_correct_password_does_not_lift_it() {
        // There is no success call: the only way out is time.
        let l = lockout(2);
        let t = Instant::now();
        l.record_failure("alice", ip("192.0.2.1"), t);
        assert!(l.record_failure("alice", ip("192.0.2.1"), t));
        // Alice, now with the right password, from another address: still locked.
        assert!(l.check("alice", ip("198.51.100.7"), t + secs(10)).is_err());
    }

    #[test]
    fn expires_after_the_window() {
        let l = lockout(2);
        let t = Instant::now();
        l.record_failure("alice", None, t);
        assert!(l.record_failure("alice", None, t + secs(5)));
        assert!(l
            .check(
                "alice",
                None,
                t + secs(5) + WINDOW - Duration::from_millis(1)
            )
            .is_err());
        assert_eq!(l.check("alice", None, t + secs(5) + WINDOW), Ok(()));
        // After a lockout, counting starts afresh.
        assert!(!l.record_failure("alice", None, t + secs(5) + WINDOW));
        assert!(l.record_failure("alice", None, t + secs(6) + WINDOW));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let l = lockout(3);
        let t = Instant::now();
        l.record_failure("alice", None, t);
        l.record_failure("alice", None, t + secs(100));
        // The window opened at t has passed: this failure opens a new one.
        assert!(!l.record_failure("alice", None, t + WINDOW));
        assert!(!l.record_failure("alice", None, t + WINDOW + secs(1)));
        assert_eq!(l.check("alice", None, t + WINDOW + secs(2)), Ok(()));
        assert!(l.record_failure("alice", None, t + WINDOW + secs(2)));
    }

    #[test]
    fn addresses_count_independently_of_accounts() {
        let l = lockout(3);
        let t = Instant::now();
        let attacker = ip("203.0.113.9");
        // One address, a different account each time: the address locks.
        assert!(!l.record_failure("a", attacker, t));
        assert!(!l.record_failure("b", attacker, t));
        assert!(l.record_failure("c", attacker, t));
        assert!(l.check("someone-else", attacker, t).is_err());
        // The accounts themselves are fine from elsewhere.
        assert_eq!(l.check("a", ip("203.0.113.10"), t), Ok(()));
        // One account, a different address each time: the account locks.
        assert!(!l.record_failure("bob", ip("192.0.2.1"), t));
        assert!(!l.record_failure("bob", ip("192.0.2.2"), t));
        assert!(l.record_failure("bob", ip("192.0.2.3"), t));
        assert!(l.check("bob", ip("192.0.2.99"), t).is_err());
        assert_eq!(l.check("carol", ip("192.0.2.1"), t), Ok(()));
    }

    #[test]
    fn reports_the_longer_of_two_lockouts() {
        let l = lockout(1);
        let t = Instant::now();
        l.record_failure("alice", ip("192.0.2.1"), t);
        l.record_failure("bob", ip("192.0.2.2"), t + secs(100));
        // alice's lock ends at t+300, 192.0.2.2's at t+400.
        assert_eq!(
            l.check("alice", ip("192.0.2.2"), t + secs(150)),
            Err(secs(250))
        );
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = lockout(3);
        let t = Instant::now();
        l.record_failure("a", ip("2001:db8:1:2::1"), t);
        l.record_failure("b", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), t);
        assert!(l.record_failure("c", ip("2001:db8:1:2:dead:beef::7"), t));
        assert!(l.check("d", ip("2001:db8:1:2::42"), t).is_err());
        // The neighbouring /64 is someone else.
        assert_eq!(l.check("d", ip("2001:db8:1:3::1"), t), Ok(()));
    }

    #[test]
    fn ipv4_mapped_is_ipv4_and_ipv4_is_per_address() {
        let l = lockout(2);
        let t = Instant::now();
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        l.record_failure("a", Some(mapped), t);
        assert!(l.record_failure("b", ip("192.0.2.1"), t));
        assert!(l.check("c", ip("192.0.2.1"), t).is_err());
        assert_eq!(l.check("c", ip("192.0.2.2"), t), Ok(()));
    }

    #[test]
    fn address_groups() {
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            address_group(IpAddr::V6(v6)),
            (6, u128::from("2001:db8::".parse::<Ipv6Addr>().unwrap()))
        );
        assert_eq!(address_group(ip("10.0.0.1").unwrap()), (4, 0x0a00_0001));
    }

    #[test]
    fn disabled_when_failures_is_zero() {
        let l = lockout(0);
        let t = Instant::now();
        for _ in 0..100 {
            assert!(!l.record_failure("alice", ip("192.0.2.1"), t));
        }
        assert_eq!(l.check("alice", ip("192.0.2.1"), t), Ok(()));
        assert_eq!(l.capacity(), 0);
        assert!(l.is_empty());
    }

    #[test]
    fn entries_are_small() {
        assert!(std::mem::size_of::<Option<Entry>>() <= 64);
    }

    #[test]
    fn a_huge_window_does_not_overflow() {
        let l = Lockout::new(config::Lockout {
            failures: 1,
            window: Duration::MAX,
        });
        let t = Instant::now();
        assert!(l.record_failure("alice", None, t));
        assert_eq!(l.check("alice", None, t), Err(MAX_WINDOW));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(299_001)), 300);
        assert_eq!(retry_after_secs(secs(300)), 300);
    }

    /// An attacker sprays a million random account names from a million addresses, trying to
    /// flush the counters: memory stays within the fixed tables, a locked account stays
    /// locked, and an account with failures close to the limit keeps its count.
    #[test]
    fn spraying_neither_grows_memory_nor_flushes_targets() {
        let l = Lockout::with_capacity(
            config::Lockout {
                failures: 10,
                window: WINDOW,
            },
            4096,
        );
        let capacity = l.capacity();
        assert_eq!(capacity, 2 * 4096);
        let t = Instant::now();
        for i in 0..10 {
            l.record_failure("locked-target", ip(&format!("198.51.100.{i}")), t);
        }
        assert!(l.check("locked-target", None, t).is_err());
        for i in 0..9 {
            l.record_failure("almost-target", ip(&format!("198.51.100.{}", 100 + i)), t);
        }
        assert_eq!(l.check("almost-target", None, t), Ok(()));

        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut name = String::new();
        for i in 0..1_000_000u32 {
            // xorshift: random-looking names without a dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            name.clear();
            use std::fmt::Write;
            write!(name, "spray-{state:016x}").unwrap();
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i));
            let now = t + Duration::from_micros(u64::from(i) * 100);
            l.record_failure(&name, Some(addr), now);
        }
        assert!(l.len() <= capacity, "{} > {capacity}", l.len());
        let later = t + secs(100) + secs(1);
        assert!(l.check("locked-target", None, later).is_err());
        assert_eq!(l.check("almost-target", None, later), Ok(()));
        assert!(l.record_failure("almost-target", None, later));
        assert!(l.check("almost-target", None, later).is_err());
        assert_eq!(l.untracked(), 0);
    }

    /// A bucket full of live lockouts does not lock out a newcomer; the lockouts stay.
    #[test]
    fn a_bucket_full_of_lockouts_fails_open_for_newcomers() {
        let l = Lockout::with_capacity(
            config::Lockout {
                failures: 1,
                window: WINDOW,
            },
            1,
        );
        assert_eq!(l.capacity(), 2 * WAYS);
        let t = Instant::now();
        for i in 0..WAYS {
            assert!(l.record_failure(&format!("locked-{i}"), None, t));
        }
        assert!(!l.record_failure("newcomer", None, t));
        assert_eq!(l.untracked(), 1);
        assert_eq!(l.check("newcomer", None, t), Ok(()));
        for i in 0..WAYS {
            assert!(l.check(&format!("locked-{i}"), None, t).is_err());
        }
        // Once they expire, the newcomer is counted again.
        assert!(l.record_failure("newcomer", None, t + WINDOW));
    }

    #[test]
    fn concurrent_failures_lock_exactly_once() {
        let l = std::sync::Arc::new(lockout(1000));
        let t = Instant::now();
        let locked: usize = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..125)
                        .filter(|_| l.record_failure("alice", None, t))
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(locked, 1);
        assert!(l.check("alice", None, t).is_err());
    }
}
