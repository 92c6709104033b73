//! Remembers successful logins so a client that sends Basic credentials on every request pays
//! for bcrypt once. Entries are keyed by HMAC-SHA256(random per-process key, account, password):
//! the password itself is never stored, and a memory dump does not give an offline
//! dictionary target without the key.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::Identity;

/// The keyed hash of one (account, password) pair.
pub type CacheKey = [u8; 32];

/// A bounded map from keyed hashes of credentials to the identity they logged in as.
pub struct LoginCache {
    secret: [u8; 32],
    entries: RwLock<HashMap<CacheKey, (Identity, Instant)>>,
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

    /// The identity these credentials logged in as, if remembered and not expired.
    pub fn get(&self, key: &CacheKey) -> Option<Identity> {
        let entries = self.entries.read().ok()?;
        let (identity, at) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| identity.clone())
    }

    /// Remembers a successful login. When full, expired entries go first; if none has expired
    /// the whole cache is dropped (a burst of bcrypt checks beats unbounded memory).
    pub fn insert(&self, key: CacheKey, identity: Identity) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (identity, Instant::now()));
    }

    /// Keeps only the logins `keep` accepts (used on reload for changed accounts).
    pub fn retain(&self, mut keep: impl FnMut(&Identity) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (identity, _)| keep(identity));
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
    fn remembers_until_ttl_and_stays_bounded() {
        let c = LoginCache::new(3, Duration::from_millis(50));
        let k = c.key("a", "pw");
        c.insert(k, id("a"));
        assert_eq!(c.get(&k), Some(id("a")));
        assert_eq!(c.get(&c.key("a", "other")), None);
        std::thread::sleep(Duration::from_millis(60)); // the TTL itself is under test
        assert_eq!(c.get(&k), None);
        for i in 0..10 {
            c.insert(c.key(&i.to_string(), "pw"), id("x"));
            assert!(c.len() <= 3);
        }
    }
}
