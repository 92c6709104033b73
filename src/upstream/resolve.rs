//! Every address the registry's name resolves to, kept current: the name is looked up again
//! every `upstream_resolve_interval`, requests go to the addresses in turn, and an address
//! that refused a connection is skipped for a while. So a Kubernetes headless Service (one
//! address per registry pod) or a DNS change needs no restart.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

/// How long an address that failed to connect is skipped (unless every address failed).
pub const SKIP_FAILED_FOR: Duration = Duration::from_secs(10);

/// A name lookup: the system resolver by default, another in tests.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system resolver (`getaddrinfo`, so `/etc/hosts` and the search domains count).
pub fn system() -> Lookup {
    Arc::new(|name: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host(name).await?.collect()) })
    })
}

/// The addresses of one registry.
pub struct Addresses {
    name: String,
    current: ArcSwap<Vec<SocketAddr>>,
    next: AtomicUsize,
    failed: Mutex<HashMap<SocketAddr, Instant>>,
    lookup: Lookup,
}

impl std::fmt::Debug for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addresses")
            .field("name", &self.name)
            .field("current", &self.current.load())
            .finish()
    }
}

impl Addresses {
    /// `name` (`host:port`) resolved once with the system resolver, blocking (at start).
    pub fn resolve(name: &str) -> Result<Addresses, String> {
        use std::net::ToSocketAddrs;
        let found: Vec<SocketAddr> = name
            .to_socket_addrs()
            .map_err(|e| format!("upstream {name} does not resolve: {e}"))?
            .collect();
        Self::with(name, found, system())
    }

    /// `name` with the addresses already known and the lookup to refresh them with.
    pub fn with(name: &str, found: Vec<SocketAddr>, lookup: Lookup) -> Result<Addresses, String> {
        if found.is_empty() {
            return Err(format!("upstream {name} has no address"));
        }
        Ok(Addresses {
            name: name.to_owned(),
            current: ArcSwap::from_pointee(dedup(found)),
            next: AtomicUsize::new(0),
            failed: Mutex::new(HashMap::new()),
            lookup,
        })
    }

    /// Every address, as last resolved.
    pub fn all(&self) -> Arc<Vec<SocketAddr>> {
        self.current.load_full()
    }

    /// The next address in turn, skipping those that failed lately (unless all did).
    pub fn pick(&self) -> SocketAddr {
        let all = self.current.load();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        (0..all.len())
            .map(|i| all[(start + i) % all.len()])
            .find(|a| failed.get(a).is_none_or(|until| *until <= now))
            .unwrap_or(all[start % all.len()])
    }

    /// Skips `addr` for [`SKIP_FAILED_FOR`]; true when another address is left to try.
    pub fn mark_failed(&self, addr: SocketAddr) -> bool {
        let now = Instant::now();
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.insert(addr, now + SKIP_FAILED_FOR);
        self.current
            .load()
            .iter()
            .any(|a| failed.get(a).is_none_or(|until| *until <= now))
    }

    /// Marks `addr` as answering again.
    pub fn mark_ok(&self, addr: SocketAddr) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
    }

    /// Looks the name up again. An answer with addresses replaces the list (a failed or
    /// empty lookup keeps the old one: a DNS hiccup must not take the registry away).
    /// Returns whether the list changed.
    pub async fn refresh(&self) -> Result<bool, String> {
        let found = (self.lookup)(self.name.clone())
            .await
            .map_err(|e| format!("upstream {} does not resolve: {e}", self.name))?;
        if found.is_empty() {
            return Err(format!("upstream {} resolved to no address", self.name));
        }
        let found = dedup(found);
        if *self.current.load_full() == found {
            return Ok(false);
        }
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|a, _| found.contains(a));
        self.current.store(Arc::new(found));
        Ok(true)
    }
}

/// Sorted without repeats, so an answer in another order is no change.
fn dedup(mut found: Vec<SocketAddr>) -> Vec<SocketAddr> {
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(answers: Arc<Mutex<Vec<SocketAddr>>>) -> Lookup {
        Arc::new(move |_| {
            let now = answers.lock().unwrap().clone();
            Box::pin(async move { Ok(now) })
        })
    }

    #[tokio::test]
    async fn round_robin_skips_failed_and_follows_new_answers() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "[::1]:5000".parse().unwrap();
        let c: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let answers = Arc::new(Mutex::new(vec![a, b]));
        let addrs = Addresses::with("reg:5000", vec![b, a, a], fixed(answers.clone())).unwrap();
        assert_eq!(*addrs.all(), vec![a, b]);
        let picks: Vec<_> = (0..4).map(|_| addrs.pick()).collect();
        assert_eq!(picks, [a, b, a, b]);
        // A failed address is skipped while another is left.
        assert!(addrs.mark_failed(a));
        assert!((0..4).all(|_| addrs.pick() == b));
        // Every address failed: still try one rather than none.
        assert!(!addrs.mark_failed(b));
        let _ = addrs.pick();
        addrs.mark_ok(a);
        assert_eq!(addrs.pick(), a);
        // Same answer in another order: no change. A new answer replaces the list.
        *answers.lock().unwrap() = vec![b, a];
        assert_eq!(addrs.refresh().await, Ok(false));
        *answers.lock().unwrap() = vec![c];
        assert_eq!(addrs.refresh().await, Ok(true));
        assert_eq!(*addrs.all(), vec![c]);
        assert_eq!(addrs.pick(), c);
        // An empty answer keeps the list.
        answers.lock().unwrap().clear();
        assert!(addrs.refresh().await.is_err());
        assert_eq!(*addrs.all(), vec![c]);
    }
}
