//! Remembers successful logins so a client that sends Basic credentials on every request pays
//! for bcrypt once. Entries are keyed by HMAC-SHA256(random per-process key, account, password):
//! the password itself is never stored, and a memory dump does not give an offline
//! dictionary target without the key.
//!
//! Every entry carries the [`Stamp`] of the state it was made under: which backend decided
//! and a digest of what that backend held for the account (password hash, labels). It is
//! answered only to a caller presenting the same stamp. The cache object outlives reloads
//! (so unchanged users do not pay bcrypt again), and a login that started under the old
//! state may finish after the new one took over: its entry then carries the *old* stamp, and
//! the new state, whose stamp for a removed or changed account differs, never accepts it.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::Identity;

/// The keyed hash of one (account, password) pair.
pub type CacheKey = [u8; 32];

/// What an entry was made under: (position of the deciding backend, its fingerprint of the
/// account). See [`super::Authenticator::fingerprint`].
pub type Stamp = (usize, u64);

/// One remembered login.
struct Entry {
    identity: Identity,
    stamp: Stamp,
    at: Instant,
}

/// A bounded map from keyed hashes of credentials to the identity they logged in as.
pub struct LoginCache {
    secret: [u8; 32],
    entries: RwLock<HashMap<CacheKey, Entry>>,
    capacity: usize,
    ttl: Duration,
}

impl LoginCache {
    /// A cache of at most `capacity` logins, each remembered for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        LoginCache {
            secret,
            entries: RwLock::new(HashMap::new()),
            capacity,
            ttl,
        }
    }

    /// The key for these credentials. A NUL separates account and password so that
    /// (`ab`, `c`) and (`a`, `bc`) differ.
    pub fn key(&self, account: &str, password: &str) -> CacheKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC accepts any key length");
        mac.update(account.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The identity these credentials logged in as, if remembered under `stamp` and not
    /// expired. An entry made under another stamp (another state of the files) is a miss.
    pub fn get(&self, key: &CacheKey, stamp: Stamp) -> Option<Identity> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(key)?;
        (entry.stamp == stamp && entry.at.elapsed() < self.ttl).then(|| entry.identity.clone())
    }

    /// Remembers a successful login. When full, expired entries go first; if none has expired
    /// the whole cache is dropped (a burst of bcrypt checks beats unbounded memory).
    pub fn insert(&self, key: CacheKey, identity: Identity, stamp: Stamp) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, e| e.at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                identity,
                stamp,
                at: Instant::now(),
            },
        );
    }

    /// Keeps only the logins `keep` accepts (on reload: those still valid, to free memory;
    /// correctness does not depend on it, the stamps do that).
    pub fn retain(&self, mut keep: impl FnMut(&Identity, Stamp) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| keep(&e.identity, e.stamp));
        }
    }

    /// Number of remembered logins.
    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(a: &str) -> Identity {
        Identity {
            account: a.into(),
            labels: Default::default(),
            via: None,
        }
    }

    #[test]
    fn keys_separate_account_and_password() {
        let c = LoginCache::new(10, Duration::from_secs(60));
        assert_ne!(c.key("ab", "c"), c.key("a", "bc"));
        assert_eq!(c.key("a", "b"), c.key("a", "b"));
        // A different process (key) gives a different hash.
        let d = LoginCache::new(10, Duration::from_secs(60));
        assert_ne!(c.key("a", "b"), d.key("a", "b"));
    }

    #[test]
    fn an_entry_is_answered_only_under_its_own_stamp() {
        let c = LoginCache::new(10, Duration::from_secs(60));
        let k = c.key("carol", "pw");
        c.insert(k, id("carol"), (0, 7));
        assert_eq!(c.get(&k, (0, 7)), Some(id("carol")));
        // Another fingerprint (password or labels changed) or another deciding backend.
        assert_eq!(c.get(&k, (0, 8)), None);
        assert_eq!(c.get(&k, (1, 7)), None);
    }

    #[test]
    fn remembers_until_ttl_and_stays_bounded() {
        let c = LoginCache::new(3, Duration::from_millis(50));
        let k = c.key("a", "pw");
        c.insert(k, id("a"), (0, 1));
        assert_eq!(c.get(&k, (0, 1)), Some(id("a")));
        assert_eq!(c.get(&c.key("a", "other"), (0, 1)), None);
        std::thread::sleep(Duration::from_millis(60)); // the TTL itself is under test
        assert_eq!(c.get(&k, (0, 1)), None);
        for i in 0..10 {
            c.insert(c.key(&i.to_string(), "pw"), id("x"), (0, 1));
            assert!(c.len() <= 3);
        }
    }
}
