//! Request rate limits (`limits.rate`): per account and per client address, fleet-wide
//! through Redis with `cluster:`, per replica without it (or while Redis cannot be reached).
//!
//! The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one
//! number): each key stores the *theoretical arrival time* of its next request. A request is
//! allowed when that time is no more than the burst tolerance ahead of now, and moves it one
//! emission interval (`period / requests`) on. So `100/s` with `burst: 2x` allows 200 requests
//! at once, then 100 per second; a refused request changes nothing and is told how long to
//! wait (`Retry-After`). In Redis it is one Lua script dated by Redis's clock, so replicas
//! share one bucket per key; a key expires as soon as its bucket is full again.
//!
//! The per-address key is the client address as the lockout counts it (IPv4 address, IPv6
//! /64), from [`crate::client::ClientAddr::key`], so it follows `trusted_proxies`. The
//! anonymous account has no per-account limit (everyone anonymous shares it); its requests are
//! limited per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::Script;

use super::counters::address_text;
use super::Cluster;
use crate::authn::lockout::Address;

/// Buckets kept in process at most; full buckets are forgotten first, and past that a new
/// key is not limited in process (it is still limited in Redis when clustered).
const MAX_LOCAL: usize = 100_000;

/// A rate: `requests` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many requests.
    pub requests: u32,
    /// Per how long: a second (`N/s`) or a minute (`N/m`).
    pub period: Duration,
}

impl Rate {
    /// Parses `100/s` or `6000/m`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (n, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{text:?} must be a rate such as 100/s or 600/m"))?;
        let requests: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: {n:?} is not a whole number of requests"))?;
        if requests == 0 {
            return Err(format!("{text:?} must allow at least 1 request"));
        }
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            other => return Err(format!("{text:?}: unit {other:?} must be s or m")),
        };
        Ok(Rate { requests, period })
    }

    /// Microseconds between requests at this rate (at least 1).
    fn interval_us(&self) -> u64 {
        (u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX) / u64::from(self.requests))
            .max(1)
    }
}

/// Parses a burst multiple: `2x` (or `2`), at least 1.
pub fn parse_burst(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let n = t.strip_suffix('x').unwrap_or(t);
    match n.parse::<u32>() {
        Ok(b) if (1..=1000).contains(&b) => Ok(b),
        _ => Err(format!(
            "{text:?} must be a whole multiple of the rate from 1x to 1000x, such as 2x"
        )),
    }
}

/// `limits.rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Requests of one logged-in account, from anywhere.
    pub per_account: Option<Rate>,
    /// Requests from one client address, whoever is asking.
    pub per_address: Option<Rate>,
    /// How many periods' worth of requests may come at once.
    pub burst: u32,
}

/// The default burst multiple.
pub const DEFAULT_BURST: u32 = 2;

/// Which limit refused a request, and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// `per_account`.
    Account(Duration),
    /// `per_address`.
    Address(Duration),
}

impl Limited {
    /// How long until the request would be allowed.
    pub fn wait(&self) -> Duration {
        match self {
            Limited::Account(d) | Limited::Address(d) => *d,
        }
    }
}

/// One GCRA step. `Ok(new_tat)` to store when allowed, `Err(wait)` when not.
pub fn gcra(tat: u64, now: u64, interval: u64, tolerance: u64) -> Result<u64, u64> {
    let new = tat.max(now).saturating_add(interval);
    let ahead = new - now;
    if ahead > tolerance {
        Err(ahead - tolerance)
    } else {
        Ok(new)
    }
}

/// Returns microseconds to wait; 0 when allowed (and then counted).
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new = tat + interval
local wait = new - now - tolerance
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
return 0
",
    )
});

/// The buckets of one replica.
struct Local {
    base: Instant,
    buckets: Mutex<HashMap<String, u64>>,
}

impl Local {
    fn check(&self, key: &str, interval: u64, tolerance: u64) -> Result<(), u64> {
        let now = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX);
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_LOCAL && !buckets.contains_key(key) {
            buckets.retain(|_, tat| *tat > now);
            if buckets.len() >= MAX_LOCAL {
                return Ok(());
            }
        }
        let tat = buckets.get(key).copied().unwrap_or(now);
        let new = gcra(tat, now, interval, tolerance)?;
        buckets.insert(key.to_owned(), new);
        Ok(())
    }
}

/// The limits of one replica, fleet-wide when clustered.
pub struct RateLimiter {
    settings: Settings,
    cluster: Option<Cluster>,
    local: Local,
}

impl RateLimiter {
    /// Limits for `settings`, in `cluster` when given.
    pub fn new(settings: Settings, cluster: Option<Cluster>) -> Self {
        RateLimiter {
            settings,
            cluster,
            local: Local {
                base: Instant::now(),
                buckets: Mutex::default(),
            },
        }
    }

    async fn check_one(&self, kind: &str, name: &str, rate: Rate) -> Result<(), Duration> {
        let interval = rate.interval_us();
        let tolerance = interval.saturating_mul(
            u64::from(rate.requests).saturating_mul(u64::from(self.settings.burst)),
        );
        if let Some(cluster) = &self.cluster {
            let key = cluster.key(&["rate", kind, name]);
            let shared = cluster
                .run(move |mut c| async move {
                    GCRA.key(key)
                        .arg(interval)
                        .arg(tolerance)
                        .invoke_async::<u64>(&mut c)
                        .await
                })
                .await;
            if let Ok(wait) = shared {
                return if wait == 0 {
                    Ok(())
                } else {
                    Err(Duration::from_micros(wait))
                };
            }
        }
        self.local
            .check(&format!("{kind}:{name}"), interval, tolerance)
            .map_err(Duration::from_micros)
    }

    /// Counts one request from `address` (the client key; `None`: unknown); `Err` when over
    /// `per_address`.
    pub async fn check_address(&self, address: Option<IpAddr>) -> Result<(), Limited> {
        let Some(rate) = self.settings.per_address else {
            return Ok(());
        };
        let name = address_text(Address::of(address));
        self.check_one("address", &name, rate)
            .await
            .map_err(Limited::Address)
    }

    /// Counts one request of `account`; `Err` when over `per_account`. The anonymous
    /// account (`""`) is not limited per account.
    pub async fn check_account(&self, account: &str) -> Result<(), Limited> {
        let Some(rate) = self.settings.per_account.filter(|_| !account.is_empty()) else {
            return Ok(());
        };
        self.check_one("account", account, rate)
            .await
            .map_err(Limited::Account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_bursts_parse() {
        assert_eq!(
            Rate::parse("100/s").unwrap(),
            Rate {
                requests: 100,
                period: Duration::from_secs(1)
            }
        );
        assert_eq!(
            Rate::parse(" 600/m ").unwrap().period,
            Duration::from_secs(60)
        );
        for bad in ["100", "0/s", "-1/s", "1.5/s", "10/h", "x/s", "/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_burst("2x"), Ok(2));
        assert_eq!(parse_burst("1"), Ok(1));
        for bad in ["0x", "x", "1.5x", "-2x", "2y"] {
            assert!(parse_burst(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        // 10/s (100 ms apart), burst 2x: 20 at once, then one per 100 ms.
        let (interval, tolerance) = (100_000, 2_000_000);
        let mut tat = 0;
        for i in 0..20 {
            tat = gcra(tat, 0, interval, tolerance).unwrap_or_else(|_| panic!("request {i}"));
        }
        assert_eq!(gcra(tat, 0, interval, tolerance), Err(100_000));
        assert_eq!(gcra(tat, 50_000, interval, tolerance), Err(50_000));
        let tat = gcra(tat, 100_000, interval, tolerance).unwrap();
        assert!(gcra(tat, 100_000, interval, tolerance).is_err());
    }

    #[tokio::test]
    async fn in_process_limits_are_per_key_and_skip_the_anonymous_account() {
        let r = RateLimiter::new(
            Settings {
                per_account: Some(Rate::parse("2/m").unwrap()),
                per_address: None,
                burst: 1,
            },
            None,
        );
        assert!(r.check_account("alice").await.is_ok());
        assert!(r.check_account("alice").await.is_ok());
        let Err(Limited::Account(wait)) = r.check_account("alice").await else {
            panic!("the third request within the minute is limited")
        };
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert!(r.check_account("bob").await.is_ok());
        for _ in 0..5 {
            assert!(r.check_account("").await.is_ok());
        }
        assert!(
            r.check_address(None).await.is_ok(),
            "no per-address limit set"
        );
    }
}
