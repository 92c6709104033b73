//! Failed-login limits (`auth.lockout`): who may guess how often, and from where.
//!
//! # The model
//!
//! Three kinds of counters, each a *fixed window* per key opened by its first attempt and
//! lasting `window`:
//!
//! | key | limit | on reaching it |
//! |---|---|---|
//! | (account, client address) | `failures` | that account is locked **from that address** for `window` |
//! | client address | `2 × failures` ([`ADDRESS_FACTOR`]) | that address is locked **for every account** (spraying) |
//! | account | none | every later login of the account, from anywhere, first waits a bounded delay |
//!
//! The account as a whole is never locked: anyone could otherwise lock anyone out with
//! `failures` requests per window, without an account. Instead, once an account has `failures`
//! failures in its window from all addresses together, each login of it waits
//! [`DELAY_BASE`] × 2^(failures beyond that), at most [`DELAY_MAX`] (1 s, 2 s, 4 s, 8 s, then
//! 10 s), before its password is checked. A login whose password is already in the login cache
//! (proven correct without a guess) does not wait.
//!
//! Addresses in `exempt` are never locked (neither kind of lock) and are not counted per
//! address; their failures still count for the account and they wait its delay like anyone,
//! so an insider cannot guess at bcrypt speed.
//!
//! # Counting before checking
//!
//! An attempt is counted **before** its password is looked at — a *reservation*, made
//! atomically with the lock check — and given back if the password was right (or the backend
//! could not answer). So the number of password checks can never exceed the limit, however
//! many requests arrive at once: the attempt that takes the last reservation locks the key
//! provisionally, and every other attempt is refused until it is known whether it failed.
//! In addition, at most one password check per (account, address) is in flight at a time
//! ([`gate`]: the others wait, so a correct password sent during a burst gets a definite
//! answer).
//!
//! An attempt abandoned once its password has been looked at (the client hung up; the login
//! cache is looked at before the delay) counts as a failure: otherwise a guesser could hang up
//! as soon as the answer is slower than a cache hit and never be counted. An attempt abandoned
//! before that (waiting at the gate) was never counted.
//!
//! Only a wrong password or an unknown account is a failure (not a missing or malformed header,
//! not an unavailable LDAP server). A correct password does not lift an active lockout and
//! does not clear the failures already counted.
//!
//! IPv6 clients are counted per /64 (whoever has one address usually has the whole /64); IPv4
//! per address; IPv4-mapped IPv6 as IPv4. An unknown client address is one address of its own.
//! A fixed window lets a patient guesser make at most `2 × (limit − 1)` guesses in any
//! `window`-long span; a sliding one would need a timestamp per failure.
//!
//! # Storage
//!
//! The model speaks to its storage through [`Counters`], whose operations are each atomic per
//! key: [`table::Tables`] keeps them in process, in fixed-size tables (bounded memory, and
//! resistant to flushing by random names: see its documentation);
//! [`crate::cluster::counters`] keeps them in Redis, each operation one Lua script, so every
//! replica counts against the same limits. The operations are `async` for that store's sake;
//! the in-process one never waits.

mod settings;
pub use settings::Settings;

pub mod gate;
pub mod table;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use ipnet::IpNet;

use crate::authn::{Authenticators, AuthnError, Identity};

pub use table::{Tables, DEFAULT_CAPACITY, WAYS};

/// The per-address limit is this many times `failures`: an address shared by many people (an
/// office behind NAT) has more room than one account from it, while one sprayer still gets
/// only a few guesses per window.
pub const ADDRESS_FACTOR: u32 = 2;

/// The account-wide delay once an account has `failures` failures in its window; doubled by
/// every further failure.
pub const DELAY_BASE: Duration = Duration::from_secs(1);

/// The longest account-wide delay: long enough to slow a guesser holding many addresses, short
/// enough that the account's owner still gets in.
pub const DELAY_MAX: Duration = Duration::from_secs(10);

/// The pseudo-account that failed access-key logins are counted under, per client address
/// (limit `2 × failures`, as for an address). It starts with NUL, which no account name
/// can, so it never shares a counter with a real account: a wrong key neither counts
/// towards nor is blocked by any account's password lockout.
pub const KEY_COUNTER: &str = "\0access-keys";

/// The pseudo-account forged CI tokens are counted under, per client address, as
/// [`KEY_COUNTER`] is for access keys.
pub const CI_COUNTER: &str = "\0ci-tokens";

/// Longer windows are shortened to this (a year).
const MAX_WINDOW: Duration = Duration::from_secs(365 * 24 * 3600);

/// The unit a client address is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// The client address is not known: all such clients are one address.
    Unknown,
    /// An IPv4 address (also from an IPv4-mapped IPv6 one).
    V4(u32),
    /// The /64 prefix of an IPv6 address.
    V6(u64),
}

impl Address {
    /// The unit `ip` is counted in.
    pub fn of(ip: Option<IpAddr>) -> Self {
        match ip {
            None => Address::Unknown,
            Some(IpAddr::V4(v4)) => Address::V4(v4.into()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Address::V4(v4.into()),
                None => Address::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// One account from one address.
    Pair(&'a str, Address),
    /// One address, whatever the account.
    Address(Address),
    /// One account, whatever the address.
    Account(&'a str),
}

/// Which window a ticket was counted in, as its store dates windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An in-process window, opened at this instant.
    At(Instant),
    /// A shared window, opened at this time of the shared store's clock (ms).
    Shared(u64),
}

/// A counted attempt, to be settled as a failure or given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The window it was counted in (a refund to a later window is dropped).
    pub opened: Opened,
    /// The key's count with this attempt.
    pub count: u32,
    /// This attempt reached the limit and locked the key (provisionally until it fails).
    pub locks: bool,
}

/// The answer to [`Counters::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Counted.
    Reserved(Ticket),
    /// The key is locked for this long; nothing was counted.
    Locked(Duration),
    /// The store had no room for the key: not counted (fails open for this kind only).
    Untracked,
}

/// Where the counters live. Every operation is atomic for its key: that, not the callers, is
/// what keeps concurrent attempts within the limit. `now` dates the in-process windows; a
/// shared store dates its own with its own clock, so that replicas agree.
#[async_trait]
pub trait Counters: Send + Sync {
    /// Attempts counted for `key` in its current window (0 when it has passed), and how long
    /// it stays locked, if it is.
    async fn peek(&self, key: &Key<'_>, window: Duration, now: Instant) -> (u32, Option<Duration>);

    /// Counts one attempt on `key` unless it is locked; reaching `limit` (`None`: never) locks
    /// it for `window` from `now`.
    async fn reserve(
        &self,
        key: &Key<'_>,
        limit: Option<u32>,
        window: Duration,
        now: Instant,
    ) -> Reserve;

    /// The attempt of `ticket` failed: it stays counted. `true` when it locked the key (a lock
    /// taken on a count that has since fallen below `limit` is lifted instead).
    async fn fail(&self, key: &Key<'_>, ticket: Ticket, limit: Option<u32>) -> bool;

    /// The attempt of `ticket` did not fail: uncount it, and lift the lock it took.
    async fn refund(&self, key: &Key<'_>, ticket: Ticket);

    /// Attempts that could not be counted for lack of room (see [`Reserve::Untracked`]).
    fn untracked(&self) -> u64;

    /// Keys remembered now (for tests and diagnostics; may walk everything).
    fn len(&self) -> usize;

    /// Whether no key is remembered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys that can be remembered at most.
    fn capacity(&self) -> usize;
}

/// The failed-login limits of one process, over some [`Counters`]. Shared by all threads.
pub struct Lockout {
    failures: u32,
    window: Duration,
    exempt: Vec<IpNet>,
    counters: Arc<dyn Counters>,
    gates: gate::Gates,
}

impl Lockout {
    /// Limits for `config`, counted in process with [`DEFAULT_CAPACITY`] keys per kind.
    /// `failures: 0` turns lockout off (and allocates next to nothing).
    pub fn new(config: Settings) -> Self {
        Self::with_capacity(config, DEFAULT_CAPACITY)
    }

    /// Limits counted in process, with room for at least `capacity` keys of each kind.
    pub fn with_capacity(config: Settings, capacity: usize) -> Self {
        let capacity = if config.failures == 0 { 0 } else { capacity };
        Self::with_counters(config, Box::new(Tables::with_capacity(capacity)))
    }

    /// Limits counted in `counters`.
    pub fn with_counters(config: Settings, counters: Box<dyn Counters>) -> Self {
        Lockout {
            failures: config.failures,
            // `Instant + window` must not overflow; no real lockout is longer than a year.
            window: config.window.min(MAX_WINDOW),
            exempt: config.exempt,
            counters: Arc::from(counters),
            gates: gate::Gates::default(),
        }
    }

    /// Whether lockout is on.
    pub fn enabled(&self) -> bool {
        self.failures > 0
    }

    fn address_limit(&self) -> u32 {
        self.failures.saturating_mul(ADDRESS_FACTOR)
    }

    /// Whether `ip` is in `exempt`: never locked.
    pub fn is_exempt(&self, ip: Option<IpAddr>) -> bool {
        ip.map(crate::acl::rule::canonical_ip)
            .is_some_and(|ip| self.exempt.iter().any(|net| net.contains(&ip)))
    }

    /// How long a login of an account waits when it already has `failures_so_far` failures in
    /// its window (see the module documentation).
    pub fn delay_after(&self, failures_so_far: u32) -> Duration {
        if failures_so_far < self.failures {
            return Duration::ZERO;
        }
        let doublings = (failures_so_far - self.failures).min(16);
        (DELAY_BASE * 2u32.pow(doublings)).min(DELAY_MAX)
    }

    /// Counts one attempt of `account` from `ip` before its password is checked. `Err` with
    /// how long the longer lockout lasts (for `Retry-After`) when the pair or the address is
    /// locked — the password must then not be looked at.
    ///
    /// Does not wait at the gate or sleep the delay: [`Lockout::begin`] does, around this.
    pub async fn reserve<'a>(
        &'a self,
        account: &'a str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Reservation<'a>, Duration> {
        let address = Address::of(ip);
        let mut reservation = Reservation {
            lockout: self,
            account,
            address,
            tickets: [None, None],
            delay: Duration::ZERO,
            checking: false,
            open: self.enabled(),
            count_account: true,
        };
        if !self.enabled() {
            return Ok(reservation);
        }
        if !self.is_exempt(ip) {
            let keys = [Key::Address(address), Key::Pair(account, address)];
            let limits = [self.address_limit(), self.failures];
            for (i, key) in keys.iter().enumerate() {
                match self
                    .counters
                    .reserve(key, Some(limits[i]), self.window, now)
                    .await
                {
                    Reserve::Reserved(ticket) => reservation.tickets[i] = Some(ticket),
                    Reserve::Untracked => {}
                    Reserve::Locked(remaining) => {
                        // Report the longer lockout; `reservation` gives back what it holds.
                        let other = self.counters.peek(&keys[1 - i], self.window, now).await.1;
                        return Err(remaining.max(other.unwrap_or_default()));
                    }
                }
            }
        }
        let (account_failures, _) = self
            .counters
            .peek(&Key::Account(account), self.window, now)
            .await;
        reservation.delay = self.delay_after(account_failures);
        Ok(reservation)
    }

    /// Counts one access-key attempt from `ip` (see [`KEY_COUNTER`]): no gate (a key check
    /// is a hash lookup), no account-wide delay, nothing counted for any account or for the
    /// address's password counter. `Err` with the remaining time when `ip` is locked for
    /// keys.
    pub async fn reserve_key(
        &self,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Reservation<'_>, Duration> {
        self.reserve_machine(KEY_COUNTER, ip, now).await
    }

    /// [`Self::reserve_key`] under `counter` ([`KEY_COUNTER`] or [`CI_COUNTER`]).
    pub async fn reserve_machine(
        &self,
        counter: &'static str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Reservation<'_>, Duration> {
        let address = Address::of(ip);
        let mut reservation = Reservation {
            lockout: self,
            account: counter,
            address,
            tickets: [None, None],
            delay: Duration::ZERO,
            checking: false,
            open: self.enabled(),
            count_account: false,
        };
        if !self.enabled() || self.is_exempt(ip) {
            return Ok(reservation);
        }
        let key = Key::Pair(counter, address);
        match self
            .counters
            .reserve(&key, Some(self.address_limit()), self.window, now)
            .await
        {
            Reserve::Reserved(ticket) => reservation.tickets[1] = Some(ticket),
            Reserve::Untracked => {}
            Reserve::Locked(remaining) => return Err(remaining),
        }
        Ok(reservation)
    }

    /// Waits for the gate of (`account`, `ip`), counts the attempt ([`Lockout::reserve`]).
    /// The account-wide delay is for the caller to wait ([`Reservation::delay`]), after it has
    /// seen whether the login cache already proves the password right.
    pub async fn begin<'a>(
        &'a self,
        account: &'a str,
        ip: Option<IpAddr>,
    ) -> Result<Attempt<'a>, Duration> {
        let gate = self.gates.enter(&Key::Pair(account, Address::of(ip))).await;
        let reservation = self.reserve(account, ip, Instant::now()).await?;
        Ok(Attempt {
            reservation,
            _gate: gate,
        })
    }

    /// Attempts that could not be counted for one key kind for lack of room.
    pub fn untracked(&self) -> u64 {
        self.counters.untracked()
    }

    /// Keys remembered now. Walks every table: for tests and diagnostics.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fixed number of keys the counters can hold.
    pub fn capacity(&self) -> usize {
        if self.enabled() {
            self.counters.capacity()
        } else {
            0
        }
    }

    /// Attempts in flight or waiting for their pair's gate: bounded by the requests in flight,
    /// and 0 when none is (nothing is left behind).
    pub fn in_flight(&self) -> usize {
        self.gates.len()
    }
}

/// One counted attempt. Settle it with [`Reservation::failed`] or [`Reservation::succeeded`];
/// dropped unsettled, it is given back — or, once [`Reservation::checking`] was called,
/// counted as a failure (see the module documentation).
pub struct Reservation<'a> {
    lockout: &'a Lockout,
    account: &'a str,
    address: Address,
    /// Address, then pair.
    tickets: [Option<Ticket>; 2],
    delay: Duration,
    checking: bool,
    open: bool,
    /// Whether a failure also counts towards the account's delay (not for access keys).
    count_account: bool,
}

impl Reservation<'_> {
    /// The account-wide delay to wait before the password is checked.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The password is about to be looked at (the cache included): from now on, abandoning
    /// the attempt counts as a failure.
    pub fn checking(&mut self) {
        self.checking = true;
    }

    /// The login failed (wrong password, unknown account) at `now`: it stays counted, and the
    /// account's own count goes up. `true` when this failure locked the pair or the address.
    pub async fn failed(mut self, now: Instant) -> bool {
        match self.take() {
            Some(settle) => settle.failed(now).await,
            None => false,
        }
    }

    /// The login succeeded or was not a guess: given back.
    pub async fn succeeded(mut self) {
        if let Some(settle) = self.take() {
            settle.refund().await;
        }
    }

    /// What settling needs, owned (so it can finish on its own when dropped); `None` once
    /// settled.
    fn take(&mut self) -> Option<Settle> {
        if !std::mem::take(&mut self.open) {
            return None;
        }
        let l = self.lockout;
        let limits = if self.count_account {
            [l.address_limit(), l.failures]
        } else {
            [l.address_limit(), l.address_limit()]
        };
        Some(Settle {
            counters: l.counters.clone(),
            account: self.account.to_owned(),
            address: self.address,
            tickets: self.tickets,
            limits,
            window: l.window,
            count_account: self.count_account,
        })
    }
}

/// A reservation's settlement, owning what it needs.
struct Settle {
    counters: Arc<dyn Counters>,
    account: String,
    address: Address,
    /// Address, then pair.
    tickets: [Option<Ticket>; 2],
    limits: [u32; 2],
    window: Duration,
    /// Whether a failure also counts towards the account's delay (not for access keys).
    count_account: bool,
}

impl Settle {
    fn keys(&self) -> [Key<'_>; 2] {
        [
            Key::Address(self.address),
            Key::Pair(&self.account, self.address),
        ]
    }

    async fn failed(self, now: Instant) -> bool {
        let mut locked = false;
        for (i, key) in self.keys().iter().enumerate() {
            if let Some(ticket) = self.tickets[i] {
                locked |= self.counters.fail(key, ticket, Some(self.limits[i])).await;
            }
        }
        if self.count_account {
            self.counters
                .reserve(&Key::Account(&self.account), None, self.window, now)
                .await;
        }
        locked
    }

    async fn refund(self) {
        for (i, key) in self.keys().iter().enumerate() {
            if let Some(ticket) = self.tickets[i] {
                self.counters.refund(key, ticket).await;
            }
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        use futures_util::FutureExt as _;
        let Some(settle) = self.take() else { return };
        let mut settling: futures_util::future::BoxFuture<'static, ()> = if self.checking {
            Box::pin(settle.failed(Instant::now()).map(|_| ()))
        } else {
            Box::pin(settle.refund())
        };
        // The in-process store finishes on the first poll, before the pair's gate opens; a
        // shared one finishes on its own.
        if (&mut settling).now_or_never().is_none() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(settling);
            }
        }
    }
}

/// A reservation made behind the pair's gate; the gate opens when this is dropped (after the
/// reservation is settled).
pub struct Attempt<'a> {
    /// Dropped first: settled before the next attempt on the pair gets in.
    pub reservation: Reservation<'a>,
    _gate: gate::Entered<'a>,
}

/// The current remaining lockout as a `Retry-After` value: whole seconds, rounded up, at
/// least 1.
pub fn retry_after_secs(remaining: Duration) -> u64 {
    let secs = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    secs.max(1)
}

/// Why a login with the failed-login limits around it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The (account, address) pair or the address is locked out; the password was not looked
    /// at.
    Locked {
        /// Until the lockout ends.
        remaining: Duration,
    },
    /// The login itself failed.
    Failed {
        /// Why.
        error: AuthnError,
        /// This failure reached a limit and started a lockout.
        locked_now: bool,
    },
}

/// Checks `account`/`password` with the limits around it: the one place `/v2`, the token
/// endpoint and the web UI log in. `lockout: None` checks the password only.
///
/// In order: wait for the pair's gate; refuse if the pair or the address is locked, else
/// count the attempt; answer from the login cache if it proves the password right; wait the
/// account-wide delay; check the password; keep the attempt counted if it failed, give it
/// back otherwise.
pub async fn guarded_login(
    lockout: Option<&Lockout>,
    authn: &Authenticators,
    account: &str,
    password: &str,
    ip: Option<IpAddr>,
) -> Result<Identity, Refused> {
    match authn.secret_kind(password) {
        crate::authn::Secret::AccessKey => {
            return guarded_machine_login(lockout, authn, password, ip, KEY_COUNTER).await
        }
        crate::authn::Secret::CiToken => {
            return guarded_machine_login(lockout, authn, password, ip, CI_COUNTER).await
        }
        crate::authn::Secret::Password => {}
    }
    let Some(lockout) = lockout.filter(|l| l.enabled()) else {
        return authn
            .login(account, password)
            .await
            .map_err(|error| Refused::Failed {
                error,
                locked_now: false,
            });
    };
    let mut attempt = lockout
        .begin(account, ip)
        .await
        .map_err(|remaining| Refused::Locked { remaining })?;
    attempt.reservation.checking();
    if let Some(identity) = authn.cached_login(account, password) {
        attempt.reservation.succeeded().await;
        return Ok(identity);
    }
    let delay = attempt.reservation.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match authn.login(account, password).await {
        Ok(identity) => {
            attempt.reservation.succeeded().await;
            Ok(identity)
        }
        Err(error) => {
            let locked_now =
                if matches!(error, AuthnError::BadPassword | AuthnError::UnknownAccount) {
                    attempt.reservation.failed(Instant::now()).await
                } else {
                    attempt.reservation.succeeded().await;
                    false
                };
            Err(Refused::Failed { error, locked_now })
        }
    }
}

/// An access-key or CI-token login with its own failure counting per address
/// ([`Lockout::reserve_machine`]): only an unknown key or a forged token is a failure (a
/// guess); an expired key or token is a genuine secret that no longer works, and a CI job
/// retrying it must not lock out the other jobs of its address.
async fn guarded_machine_login(
    lockout: Option<&Lockout>,
    authn: &Authenticators,
    secret: &str,
    ip: Option<IpAddr>,
    counter: &'static str,
) -> Result<Identity, Refused> {
    let reservation = match lockout.filter(|l| l.enabled()) {
        Some(l) => Some(
            l.reserve_machine(counter, ip, Instant::now())
                .await
                .map_err(|remaining| Refused::Locked { remaining })?,
        ),
        None => None,
    };
    let result = authn.login("", secret).await;
    let locked_now = match (&result, reservation) {
        (Err(AuthnError::UnknownKey | AuthnError::BadCiToken { forged: true, .. }), Some(r)) => {
            r.failed(Instant::now()).await
        }
        (_, Some(r)) => {
            r.succeeded().await;
            false
        }
        (_, None) => false,
    };
    result.map_err(|error| Refused::Failed { error, locked_now })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::{Authenticator, Lookup};
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const WINDOW: Duration = Duration::from_secs(300);

    /// The in-process counters never wait: their futures are ready on the first poll, so the
    /// model's tests run without a runtime, at the instants they choose.
    trait Now: std::future::Future + Sized {
        fn now(self) -> Self::Output {
            futures_util::FutureExt::now_or_never(self).expect("in-process counters never wait")
        }
    }
    impl<F: std::future::Future> Now for F {}

    fn config(failures: u32) -> Settings {
        Settings {
            failures,
            window: WINDOW,
            exempt: Vec::new(),
        }
    }

    fn lockout(failures: u32) -> Lockout {
        Lockout::new(config(failures))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// One wrong password at `now`, settled as `guarded_login` settles it: `Ok(locked_now)`, or
    /// `Err(remaining)` when refused before the check.
    fn fail(
        l: &Lockout,
        account: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<bool, Duration> {
        l.reserve(account, ip, now)
            .now()
            .map(|r| r.failed(now).now())
    }

    /// One correct password at `now`.
    fn check(l: &Lockout, account: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        l.reserve(account, ip, now)
            .now()
            .map(|r| r.succeeded().now())
    }

    #[test]
    fn a_pair_locks_at_the_limit_from_that_address_only() {
        let l = lockout(3);
        let t = Instant::now();
        let (me, elsewhere) = (ip("192.0.2.1"), ip("198.51.100.7"));
        assert_eq!(fail(&l, "alice", me, t), Ok(false));
        assert_eq!(fail(&l, "alice", me, t + secs(1)), Ok(false));
        assert_eq!(check(&l, "alice", me, t + secs(2)), Ok(()));
        assert_eq!(fail(&l, "alice", me, t + secs(2)), Ok(true));
        assert_eq!(check(&l, "alice", me, t + secs(2)), Err(WINDOW));
        assert_eq!(check(&l, "alice", me, t + secs(12)), Err(WINDOW - secs(10)));
        // Refused attempts are not counted and do not extend the lockout.
        assert_eq!(fail(&l, "alice", me, t + secs(100)), Err(WINDOW - secs(98)));
        // The same account from another address, and another account from this one: fine.
        assert_eq!(check(&l, "alice", elsewhere, t + secs(3)), Ok(()));
        assert_eq!(check(&l, "bob", me, t + secs(3)), Ok(()));
    }

    #[test]
    fn an_address_locks_for_every_account_at_twice_the_limit() {
        let l = lockout(3);
        let t = Instant::now();
        let sprayer = ip("203.0.113.9");
        for (i, account) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert_eq!(fail(&l, account, sprayer, t), Ok(false), "{i}");
        }
        assert_eq!(fail(&l, "f", sprayer, t), Ok(true));
        assert_eq!(check(&l, "someone-else", sprayer, t), Err(WINDOW));
        // The accounts themselves are fine from elsewhere, and not delayed: one failure each.
        let r = l.reserve("a", ip("203.0.113.10"), t).now().unwrap();
        assert_eq!(r.delay(), Duration::ZERO);
    }

    #[test]
    fn the_account_is_never_locked_but_delayed_within_bounds() {
        let l = lockout(3);
        let t = Instant::now();
        let mut delays = Vec::new();
        // A guesser with many addresses, two guesses from each (under the pair limit).
        for i in 0..200u32 {
            let from = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i / 2)));
            let r = l
                .reserve("alice", from, t)
                .now()
                .expect("never locked account-wide");
            delays.push(r.delay());
            r.failed(t).now();
        }
        assert_eq!(&delays[..3], &[Duration::ZERO; 3]);
        assert_eq!(
            &delays[3..8],
            &[secs(1), secs(2), secs(4), secs(8), DELAY_MAX]
        );
        assert!(delays.iter().all(|d| *d <= DELAY_MAX));
        assert_eq!(delays[199], DELAY_MAX);
        // The owner, from their own address, gets in after at most the bounded delay.
        let owner = l.reserve("alice", ip("192.0.2.50"), t).now().unwrap();
        assert_eq!(owner.delay(), DELAY_MAX);
        owner.succeeded().now();
        // Another account is not delayed; after the window nobody is.
        assert_eq!(
            l.reserve("bob", ip("192.0.2.50"), t).now().unwrap().delay(),
            Duration::ZERO
        );
        let after = t + WINDOW;
        assert_eq!(
            l.reserve("alice", ip("192.0.2.50"), after)
                .now()
                .unwrap()
                .delay(),
            Duration::ZERO
        );
    }

    #[test]
    fn exempt_networks_are_never_locked_but_count_for_the_account_delay() {
        let l = Lockout::new(Settings {
            exempt: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..config(3)
        });
        let t = Instant::now();
        for i in 0..50 {
            assert_eq!(fail(&l, "alice", ip("10.1.2.3"), t), Ok(false), "{i}");
            assert_eq!(
                fail(&l, &format!("spray{i}"), ip("2001:db8::1"), t),
                Ok(false)
            );
        }
        let mapped = Some(IpAddr::V6(Ipv4Addr::new(10, 9, 9, 9).to_ipv6_mapped()));
        assert!(l.is_exempt(mapped));
        assert_eq!(check(&l, "alice", ip("10.1.2.3"), t), Ok(()));
        // Not exempt from the account-wide delay, for anyone.
        assert_eq!(
            l.reserve("alice", ip("10.1.2.3"), t).now().unwrap().delay(),
            DELAY_MAX
        );
        assert_eq!(
            l.reserve("alice", ip("192.0.2.1"), t)
                .now()
                .unwrap()
                .delay(),
            DELAY_MAX
        );
        // Next door is not exempt.
        for _ in 0..3 {
            let _ = fail(&l, "bob", ip("11.0.0.1"), t);
        }
        assert!(check(&l, "bob", ip("11.0.0.1"), t).is_err());
    }

    #[test]
    fn successes_neither_lift_a_lockout_nor_clear_failures() {
        let l = lockout(3);
        let t = Instant::now();
        let me = ip("192.0.2.1");
        fail(&l, "alice", me, t).unwrap();
        fail(&l, "alice", me, t).unwrap();
        check(&l, "alice", me, t).unwrap();
        assert_eq!(fail(&l, "alice", me, t), Ok(true));
        assert!(check(&l, "alice", me, t + secs(10)).is_err());
    }

    /// The attempt that takes the last reservation locks provisionally; whether the lock stays
    /// depends on how the attempts in flight end.
    #[test]
    fn reservations_bound_attempts_in_flight() {
        let l = lockout(2);
        let t = Instant::now();
        let me = ip("192.0.2.1");
        let r1 = l.reserve("alice", me, t).now().unwrap();
        let r2 = l.reserve("alice", me, t).now().unwrap();
        assert_eq!(
            check(&l, "alice", me, t),
            Err(WINDOW),
            "no third check in flight"
        );
        r2.succeeded().now();
        let r3 = l.reserve("alice", me, t).now().unwrap();
        assert!(!r1.failed(t).now());
        assert!(r3.failed(t).now(), "two failures: locked");
        assert!(check(&l, "alice", me, t).is_err());

        // A lock taken on a count that included a success is lifted when the rest fail.
        let other = ip("192.0.2.2");
        let r1 = l.reserve("alice", other, t).now().unwrap();
        let r2 = l.reserve("alice", other, t).now().unwrap();
        r1.succeeded().now();
        assert!(!r2.failed(t).now());
        assert_eq!(check(&l, "alice", other, t), Ok(()));
    }

    #[test]
    fn an_abandoned_attempt_counts_once_its_password_was_looked_at() {
        let l = lockout(2);
        let t = Instant::now();
        let me = ip("192.0.2.1");
        for _ in 0..10 {
            drop(l.reserve("alice", me, t).now().unwrap());
        }
        assert_eq!(
            check(&l, "alice", me, t),
            Ok(()),
            "never looked at: given back"
        );
        for _ in 0..2 {
            let mut r = l.reserve("alice", me, t).now().unwrap();
            r.checking();
            drop(r);
        }
        assert!(
            check(&l, "alice", me, t).is_err(),
            "hung up after the check: failures"
        );
    }

    #[test]
    fn the_longer_of_two_lockouts_is_reported() {
        let l = lockout(1);
        let t = Instant::now();
        let me = ip("192.0.2.1");
        // alice from here locks at t; the address (limit 2) at t+100.
        assert_eq!(fail(&l, "alice", me, t), Ok(true));
        assert_eq!(fail(&l, "bob", me, t + secs(100)), Ok(true));
        assert_eq!(check(&l, "alice", me, t + secs(150)), Err(secs(250)));
    }

    #[test]
    fn expires_after_the_window_and_counts_afresh() {
        let l = lockout(2);
        let t = Instant::now();
        fail(&l, "alice", None, t).unwrap();
        assert_eq!(fail(&l, "alice", None, t + secs(5)), Ok(true));
        let almost = t + secs(5) + WINDOW - Duration::from_millis(1);
        assert!(check(&l, "alice", None, almost).is_err());
        let after = t + secs(5) + WINDOW;
        assert_eq!(check(&l, "alice", None, after), Ok(()));
        assert_eq!(fail(&l, "alice", None, after), Ok(false));
        assert_eq!(fail(&l, "alice", None, after + secs(1)), Ok(true));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let l = lockout(3);
        let t = Instant::now();
        fail(&l, "alice", None, t).unwrap();
        fail(&l, "alice", None, t + secs(100)).unwrap();
        // The window opened at t has passed: this failure opens a new one.
        assert_eq!(fail(&l, "alice", None, t + WINDOW), Ok(false));
        assert_eq!(fail(&l, "alice", None, t + WINDOW + secs(1)), Ok(false));
        assert_eq!(fail(&l, "alice", None, t + WINDOW + secs(2)), Ok(true));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = lockout(3);
        let t = Instant::now();
        fail(&l, "a", ip("2001:db8:1:2::1"), t).unwrap();
        fail(&l, "a", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), t).unwrap();
        assert_eq!(fail(&l, "a", ip("2001:db8:1:2:dead:beef::7"), t), Ok(true));
        assert!(check(&l, "a", ip("2001:db8:1:2::42"), t).is_err());
        assert_eq!(check(&l, "a", ip("2001:db8:1:3::1"), t), Ok(()));
        let mapped = Some(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()));
        fail(&l, "b", mapped, t).unwrap();
        fail(&l, "b", ip("192.0.2.1"), t).unwrap();
        assert_eq!(fail(&l, "b", mapped, t), Ok(true));
        assert!(check(&l, "b", ip("192.0.2.1"), t).is_err());
        assert_eq!(check(&l, "b", ip("192.0.2.2"), t), Ok(()));
        assert_eq!(
            Address::of(ip("2001:db8::1")),
            Address::V6(0x2001_0db8_0000_0000)
        );
        assert_eq!(Address::of(ip("10.0.0.1")), Address::V4(0x0a00_0001));
        assert_eq!(Address::of(None), Address::Unknown);
    }

    #[test]
    fn disabled_when_failures_is_zero() {
        let l = lockout(0);
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(fail(&l, "alice", ip("192.0.2.1"), t), Ok(false));
        }
        assert_eq!(check(&l, "alice", ip("192.0.2.1"), t), Ok(()));
        assert_eq!(l.capacity(), 0);
        assert!(l.is_empty());
    }

    #[test]
    fn a_huge_window_does_not_overflow() {
        let l = Lockout::new(Settings {
            window: Duration::MAX,
            ..config(1)
        });
        let t = Instant::now();
        assert_eq!(fail(&l, "alice", None, t), Ok(true));
        assert_eq!(check(&l, "alice", None, t), Err(MAX_WINDOW));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(299_001)), 300);
        assert_eq!(retry_after_secs(secs(300)), 300);
    }

    /// An attacker sprays a million random account names from a million addresses, trying to
    /// flush the counters: memory stays within the fixed tables, a locked pair stays locked, a
    /// pair close to the limit keeps its count, and an account's delay is not forgotten.
    #[test]
    fn spraying_neither_grows_memory_nor_flushes_targets() {
        let l = Lockout::with_capacity(config(10), 4096);
        let capacity = l.capacity();
        assert_eq!(capacity, 3 * 4096);
        let t = Instant::now();
        let (a, b) = (ip("198.51.100.1"), ip("198.51.100.2"));
        for _ in 0..10 {
            let _ = fail(&l, "locked-target", a, t);
        }
        assert!(check(&l, "locked-target", a, t).is_err());
        for _ in 0..9 {
            fail(&l, "almost-target", b, t).unwrap();
        }
        for i in 0..12 {
            fail(
                &l,
                "delayed-target",
                ip(&format!("198.51.100.{}", 10 + i)),
                t,
            )
            .unwrap();
        }

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
            let _ = fail(&l, &name, Some(addr), now);
        }
        assert!(l.len() <= capacity, "{} > {capacity}", l.len());
        let later = t + secs(100) + secs(1);
        assert!(check(&l, "locked-target", a, later).is_err());
        assert_eq!(
            l.reserve("delayed-target", None, later)
                .now()
                .unwrap()
                .delay(),
            secs(4)
        );
        assert_eq!(check(&l, "almost-target", b, later), Ok(()));
        assert_eq!(fail(&l, "almost-target", b, later), Ok(true));
        assert!(check(&l, "almost-target", b, later).is_err());
        assert_eq!(l.untracked(), 0);
    }

    /// A bucket full of live lockouts does not lock out a newcomer; the lockouts stay.
    #[test]
    fn a_bucket_full_of_lockouts_fails_open_for_newcomers() {
        let l = Lockout::with_capacity(config(1), 1);
        assert_eq!(l.capacity(), 3 * WAYS);
        let t = Instant::now();
        let from = |i: usize| ip(&format!("10.0.0.{i}"));
        for i in 0..WAYS {
            assert_eq!(fail(&l, &format!("locked-{i}"), from(i), t), Ok(true));
        }
        assert_eq!(fail(&l, "newcomer", from(100), t), Ok(false));
        assert_eq!(l.untracked(), 1);
        assert_eq!(check(&l, "newcomer", from(100), t), Ok(()));
        for i in 0..WAYS {
            assert!(check(&l, &format!("locked-{i}"), from(i), t).is_err());
        }
        // Once they expire, the newcomer is counted again.
        assert_eq!(fail(&l, "newcomer", from(100), t + WINDOW), Ok(true));
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let l = Arc::new(lockout(5));
        let t = Instant::now();
        let barrier = Arc::new(std::sync::Barrier::new(100));
        let reserved: usize = (0..100)
            .map(|_| {
                let (l, barrier) = (l.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    // Hold the reservation while the others try: all are "in flight".
                    let r = l.reserve("alice", ip("192.0.2.1"), t).now().ok();
                    barrier.wait();
                    r.map(|r| r.failed(t).now()).is_some() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(reserved, 5);
        assert!(check(&l, "alice", ip("192.0.2.1"), t).is_err());
    }

    /// A backend that knows `alice` (password `right`), counts password checks, and takes a
    /// while over each so that concurrent logins overlap. While `open` is false, checks wait
    /// for it: a test can hold the first check until the rest have queued.
    struct Counting {
        checks: AtomicUsize,
        open: tokio::sync::watch::Sender<bool>,
    }

    impl Default for Counting {
        fn default() -> Self {
            Counting {
                checks: AtomicUsize::new(0),
                open: tokio::sync::watch::Sender::new(true),
            }
        }
    }

    #[async_trait::async_trait]
    impl Authenticator for Counting {
        async fn authenticate(&self, account: &str, password: &str) -> Lookup {
            if account != "alice" {
                return Lookup::Unknown;
            }
            self.checks.fetch_add(1, Ordering::SeqCst);
            let _ = self.open.subscribe().wait_for(|open| *open).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            Lookup::Decided(if password == "right" {
                Ok(Identity {
                    account: account.into(),
                    labels: Default::default(),
                    via: None,
                })
            } else {
                Err(AuthnError::BadPassword)
            })
        }
        async fn lookup(&self, _: &str) -> Lookup {
            Lookup::Unknown
        }
        fn name(&self) -> &str {
            "counting"
        }
        /// Fixed, like a file's: the chain may remember alice's logins.
        fn fingerprint(&self, account: &str) -> Option<u64> {
            (account == "alice").then_some(1)
        }
    }

    fn counting() -> (Arc<Counting>, Arc<Authenticators>) {
        let backend = Arc::new(Counting::default());
        let authn = Arc::new(Authenticators::new(vec![backend.clone()], false));
        (backend, authn)
    }

    fn spawn_login(
        l: &Arc<Lockout>,
        authn: &Arc<Authenticators>,
        password: &'static str,
        from: Option<IpAddr>,
    ) -> tokio::task::JoinHandle<Result<Identity, Refused>> {
        let (l, authn) = (l.clone(), authn.clone());
        tokio::spawn(async move { guarded_login(Some(&l), &authn, "alice", password, from).await })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_hundred_concurrent_wrong_passwords_get_at_most_the_limit_of_checks() {
        let (backend, authn) = counting();
        let l = Arc::new(lockout(5));
        let logins: Vec<_> = (0..100)
            .map(|_| spawn_login(&l, &authn, "wrong", ip("192.0.2.1")))
            .collect();
        let mut locked = 0;
        for login in logins {
            match login.await.unwrap() {
                Err(Refused::Locked { .. }) => locked += 1,
                Err(Refused::Failed { .. }) => {}
                Ok(_) => panic!("a wrong password logged in"),
            }
        }
        assert_eq!(backend.checks.load(Ordering::SeqCst), 5);
        assert_eq!(locked, 95);
        assert!(l.in_flight() == 0, "no gate left behind");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_right_password_after_a_burst_is_refused_there_and_works_elsewhere() {
        let (backend, authn) = counting();
        let l = Arc::new(lockout(5));
        let me = ip("192.0.2.1");
        // The first check is held until the whole burst, and then the right password, are
        // queued at the pair's gate.
        backend.open.send_replace(false);
        let burst: Vec<_> = (0..59)
            .map(|_| spawn_login(&l, &authn, "wrong", me))
            .collect();
        let queued = |n| {
            let l = l.clone();
            tokio::time::timeout(Duration::from_secs(30), async move {
                while l.in_flight() < n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        queued(59).await.expect("the burst queues");
        let right = spawn_login(&l, &authn, "right", me);
        queued(60).await.expect("the right password queues");
        backend.open.send_replace(true);
        let right = right.await.unwrap();
        assert!(matches!(right, Err(Refused::Locked { .. })), "{right:?}");
        for login in burst {
            assert!(login.await.unwrap().is_err());
        }
        assert_eq!(backend.checks.load(Ordering::SeqCst), 5);
        // From another address the owner gets in, after the account-wide delay (5 failures:
        // the first step, 1 s).
        let started = Instant::now();
        let elsewhere = spawn_login(&l, &authn, "right", ip("198.51.100.7"))
            .await
            .unwrap();
        assert_eq!(elsewhere.unwrap().account, "alice");
        let waited = started.elapsed();
        assert!(
            waited >= DELAY_BASE && waited < DELAY_BASE * 3,
            "{waited:?}"
        );
        // Proven by the login cache now: no delay, no check.
        let started = Instant::now();
        spawn_login(&l, &authn, "right", ip("198.51.100.8"))
            .await
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < DELAY_BASE);
        assert_eq!(backend.checks.load(Ordering::SeqCst), 6);
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test]
    async fn wrong_keys_count_per_address_only_and_never_lock_the_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let (_, good) = crate::authn::keys::create(&path, "alice", &[], None, "").unwrap();
        let store = crate::authn::keys::KeyStore::load(&path).unwrap();
        let users = crate::authn::users::StaticUsers::parse(
            &format!(
                "alice:\n  password: \"{}\"\n",
                bcrypt::hash("pw", 4).unwrap()
            ),
            std::path::Path::new("u"),
        )
        .unwrap();
        let authn = Authenticators::new(vec![Arc::new(users)], false).with_keys(Arc::new(store));
        let l = lockout(2);
        let (me, other) = (ip("192.0.2.1"), ip("192.0.2.2"));
        // 2 × failures wrong keys lock keys from this address...
        for _ in 0..4 {
            let r = guarded_login(
                Some(&l),
                &authn,
                "alice",
                &crate::authn::keys::secret::generate(),
                me,
            )
            .await;
            assert!(
                matches!(
                    r,
                    Err(Refused::Failed {
                        error: AuthnError::UnknownKey,
                        ..
                    })
                ),
                "{r:?}"
            );
        }
        let r = guarded_login(Some(&l), &authn, "alice", &good, me).await;
        assert!(matches!(r, Err(Refused::Locked { .. })), "{r:?}");
        // ...but not alice's password from here, nor the key from elsewhere.
        assert!(guarded_login(Some(&l), &authn, "alice", "pw", me)
            .await
            .is_ok());
        assert!(guarded_login(Some(&l), &authn, "alice", &good, other)
            .await
            .is_ok());
        // And wrong passwords that lock alice's pair do not block her key.
        for _ in 0..2 {
            let _ = guarded_login(Some(&l), &authn, "alice", "wrong", other).await;
        }
        assert!(matches!(
            guarded_login(Some(&l), &authn, "alice", "pw", other).await,
            Err(Refused::Locked { .. })
        ));
        assert!(guarded_login(Some(&l), &authn, "alice", &good, other)
            .await
            .is_ok());
    }
}
