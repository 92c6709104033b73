//! The failed-login counters ([`crate::authn::lockout::Counters`]) in Redis, shared by every
//! replica: the same model (per account and address, per address at
//! [`crate::authn::lockout::ADDRESS_FACTOR`]×, the account-wide delay), the same fixed windows,
//! but one count for the fleet instead of one per replica.
//!
//! Each key is a hash `{c: count, w: window opened (ms), l: locked until (ms)}` under
//! `<prefix>lockout:{pair|address|account}:…`, expiring with its window (or lock), so Redis
//! holds only live counters. Every operation is one Lua script, atomic in Redis, dated by
//! Redis's own clock. A ticket remembers the window it was counted in (`w`), so a refund
//! arriving after the window turned over changes nothing, exactly as in process.
//!
//! When Redis cannot be reached, attempts are counted in this replica's own
//! [`Tables`] instead (per-replica limits, as without `cluster:`); a ticket is settled in the
//! store it was counted in.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::Script;

use super::Cluster;
use crate::authn::lockout::{Address, Counters, Key, Opened, Reserve, Tables, Ticket};

/// Counts one attempt unless locked. `{0, remaining_ms}` when locked, else
/// `{1, count, opened_ms, locks}`.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'c', 'w', 'l')
local c = tonumber(h[1]) or 0
local w = tonumber(h[2])
local l = tonumber(h[3]) or 0
if l > now then return {0, l - now} end
if w == nil or l > 0 or now - w >= window then c = 0; w = now; l = 0 end
c = c + 1
local locks = 0
if limit > 0 and c >= limit then l = now + window; locks = 1 end
redis.call('HSET', KEYS[1], 'c', c, 'w', string.format('%.0f', w), 'l', string.format('%.0f', l))
local expires = w + window
if l > expires then expires = l end
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', expires))
return {1, c, w, locks}
",
    )
});

/// A failed attempt: keeps its count; `1` when its lock stands, `0` (lifting a provisional
/// lock whose count has since fallen below the limit) otherwise.
static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local h = redis.call('HMGET', KEYS[1], 'c', 'w')
if tonumber(h[2]) ~= tonumber(ARGV[1]) then return 0 end
if ARGV[2] ~= '1' then return 0 end
local limit = tonumber(ARGV[3])
if limit > 0 and (tonumber(h[1]) or 0) >= limit then return 1 end
redis.call('HSET', KEYS[1], 'l', 0)
return 0
",
    )
});

/// An attempt that did not fail: uncounted, and its lock lifted.
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local h = redis.call('HMGET', KEYS[1], 'c', 'w')
if tonumber(h[2]) ~= tonumber(ARGV[1]) then return 0 end
local c = (tonumber(h[1]) or 0) - 1
if c < 0 then c = 0 end
redis.call('HSET', KEYS[1], 'c', c)
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'l', 0) end
return 1
",
    )
});

/// `{count, locked_ms}` of the live window (`{0, 0}` when it has passed).
static PEEK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'c', 'w', 'l')
local w = tonumber(h[2])
if w == nil then return {0, 0} end
local c = tonumber(h[1]) or 0
local l = tonumber(h[3]) or 0
if l > now then return {c, l - now} end
if l > 0 or now - w >= window then return {0, 0} end
return {c, 0}
",
    )
});

/// The text an address is keyed by: readable in `redis-cli`.
pub fn address_text(address: Address) -> String {
    match address {
        Address::Unknown => "unknown".into(),
        Address::V4(v4) => std::net::Ipv4Addr::from(v4).to_string(),
        Address::V6(prefix) => format!("{}/64", std::net::Ipv6Addr::from(u128::from(prefix) << 64)),
    }
}

/// The Redis key of a counter. The account (which may hold `:`) comes last.
pub fn counter_key(cluster: &Cluster, key: &Key<'_>) -> String {
    match key {
        Key::Pair(account, address) => {
            cluster.key(&["lockout", "pair", &address_text(*address), account])
        }
        Key::Address(address) => cluster.key(&["lockout", "address", &address_text(*address)]),
        Key::Account(account) => cluster.key(&["lockout", "account", account]),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Lockout counters in Redis, falling back to this replica's own tables.
pub struct SharedCounters {
    cluster: Cluster,
    local: Tables,
}

impl SharedCounters {
    /// Counters in `cluster`, with in-process tables of `capacity` keys per kind for when it
    /// cannot be reached.
    pub fn new(cluster: Cluster, capacity: usize) -> Self {
        SharedCounters {
            cluster,
            local: Tables::with_capacity(capacity),
        }
    }
}

#[async_trait]
impl Counters for SharedCounters {
    async fn peek(&self, key: &Key<'_>, window: Duration, now: Instant) -> (u32, Option<Duration>) {
        let k = counter_key(&self.cluster, key);
        let window_ms = millis(window);
        let shared = self
            .cluster
            .run(move |mut c| async move {
                PEEK.key(k)
                    .arg(window_ms)
                    .invoke_async::<(u64, u64)>(&mut c)
                    .await
            })
            .await;
        match shared {
            Ok((count, locked_ms)) => (
                u32::try_from(count).unwrap_or(u32::MAX),
                (locked_ms > 0).then(|| Duration::from_millis(locked_ms)),
            ),
            Err(_) => self.local.peek(key, window, now),
        }
    }

    async fn reserve(
        &self,
        key: &Key<'_>,
        limit: Option<u32>,
        window: Duration,
        now: Instant,
    ) -> Reserve {
        let k = counter_key(&self.cluster, key);
        let window_ms = millis(window);
        let limit_arg = limit.unwrap_or(0);
        let shared = self
            .cluster
            .run(move |mut c| async move {
                RESERVE
                    .key(k)
                    .arg(limit_arg)
                    .arg(window_ms)
                    .invoke_async::<Vec<u64>>(&mut c)
                    .await
            })
            .await;
        match shared.as_deref() {
            Ok([0, remaining_ms, ..]) => Reserve::Locked(Duration::from_millis(*remaining_ms)),
            Ok([1, count, opened, locks, ..]) => Reserve::Reserved(Ticket {
                opened: Opened::Shared(*opened),
                count: u32::try_from(*count).unwrap_or(u32::MAX),
                locks: *locks == 1,
            }),
            // An unexpected answer or no answer: this replica counts it.
            _ => self.local.reserve(key, limit, window, now),
        }
    }

    async fn fail(&self, key: &Key<'_>, ticket: Ticket, limit: Option<u32>) -> bool {
        let Opened::Shared(opened) = ticket.opened else {
            return self.local.fail(key, ticket, limit);
        };
        let k = counter_key(&self.cluster, key);
        let locks = u8::from(ticket.locks);
        let limit_arg = limit.unwrap_or(0);
        self.cluster
            .run(move |mut c| async move {
                FAIL.key(k)
                    .arg(opened)
                    .arg(locks)
                    .arg(limit_arg)
                    .invoke_async::<u8>(&mut c)
                    .await
            })
            .await
            // Unsettled in Redis: the attempt stays counted there, and a lock it took stands
            // until the window ends (the safe side).
            .map_or(ticket.locks, |locked| locked == 1)
    }

    async fn refund(&self, key: &Key<'_>, ticket: Ticket) {
        let Opened::Shared(opened) = ticket.opened else {
            return self.local.refund(key, ticket);
        };
        let k = counter_key(&self.cluster, key);
        let locks = u8::from(ticket.locks);
        let _ = self
            .cluster
            .run(move |mut c| async move {
                REFUND
                    .key(k)
                    .arg(opened)
                    .arg(locks)
                    .invoke_async::<u8>(&mut c)
                    .await
            })
            .await;
    }

    fn untracked(&self) -> u64 {
        self.local.untracked()
    }

    fn len(&self) -> usize {
        self.local.len()
    }

    fn capacity(&self) -> usize {
        self.local.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_readably() {
        assert_eq!(
            address_text(Address::of(Some("192.0.2.1".parse().unwrap()))),
            "192.0.2.1"
        );
        assert_eq!(
            address_text(Address::of(Some("2001:db8:1:2:3:4:5:6".parse().unwrap()))),
            "2001:db8:1:2::/64"
        );
        assert_eq!(address_text(Address::Unknown), "unknown");
    }
}
