//! Revocations: "everything of this subject issued before this time is void", shared by
//! every replica through Redis, generic over what is revoked.
//!
//! A *subject* is a short text naming what is revoked, by kind:
//!
//! | subject | made by | ends |
//! |---|---|---|
//! | `account:NAME` ([`account`]) | `portcullis revoke --account NAME` | every refresh token and UI session of the account issued before then |
//! | `session:NONCE` ([`session`]) | a UI logout | that one session |
//! | `key:ID` (for access keys) | whoever removes the key | credentials derived from the key |
//!
//! Other parts pick a new kind prefix and use [`Revocations::revoke`] and
//! [`Revocations::revoked`] as they are. A credential carries the time it was issued (whole
//! seconds, like a JWT's `iat`); it is revoked when that second is not after the revocation
//! (`issued × 1000 ≤ at`, in milliseconds) — so within the second of a revocation, a
//! credential issued just after it is refused too: the safe side.
//!
//! In Redis each subject is one key, `<prefix>revoked:<subject>`, holding the latest
//! revocation time (ms); a script keeps the later of two revocations and the longer of two
//! expiries, so concurrent revocations cannot undo each other. The key expires when nothing it
//! could revoke can still be valid. Every replica also keeps the revocations it made itself in
//! process (bounded), which is all there is without `cluster:`.
//!
//! **Fail closed**: with `cluster:` set, a check that cannot reach Redis is an error, and the
//! callers refuse the refresh token or session (the user logs in again) rather than accept
//! something that may have been revoked on another replica. Access tokens are never checked
//! here: they are short-lived and stay valid.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use super::{Cluster, ClusterError};

/// Revocations remembered in process at most (expired ones are dropped first).
const MAX_LOCAL: usize = 100_000;

/// Keeps the later revocation and the longer expiry.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = tonumber(redis.call('GET', KEYS[1]))
if cur == nil or cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
",
    )
});

/// The subject of every credential of account `name`.
pub fn account(name: &str) -> String {
    format!("account:{name}")
}

/// The subject of one UI session.
pub fn session(nonce: &str) -> String {
    format!("session:{nonce}")
}

fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whether a credential issued at `issued` (Unix seconds) is void under a revocation at
/// `at_ms` (Unix milliseconds).
pub fn voids(at_ms: u64, issued: u64) -> bool {
    issued.saturating_mul(1000) <= at_ms
}

/// The revocations this process knows of, and the shared ones when clustered.
pub struct Revocations {
    /// subject → (revoked at, ms; forget after, ms).
    local: Mutex<HashMap<String, (u64, u64)>>,
    cluster: Option<Cluster>,
}

impl Revocations {
    /// Revocations kept in process, and in `cluster` when given.
    pub fn new(cluster: Option<Cluster>) -> Self {
        Revocations {
            local: Mutex::default(),
            cluster,
        }
    }

    /// Whether revocations are shared by the replicas.
    pub fn shared(&self) -> bool {
        self.cluster.is_some()
    }

    /// Voids every credential of `subject` issued up to `at`, for `keep` (the longest any of
    /// them can live). Always in process; `Err` when it could not be shared (this replica
    /// still honours it).
    pub async fn revoke(
        &self,
        subject: &str,
        at: SystemTime,
        keep: Duration,
    ) -> Result<(), ClusterError> {
        let at_ms = millis_since_epoch(at);
        let keep_ms = u64::try_from(keep.as_millis())
            .unwrap_or(u64::MAX)
            .max(1000);
        if let Ok(mut local) = self.local.lock() {
            let now = millis_since_epoch(SystemTime::now());
            if local.len() >= MAX_LOCAL {
                local.retain(|_, (_, until)| *until > now);
            }
            if local.len() < MAX_LOCAL || local.contains_key(subject) {
                let entry = local.entry(subject.to_owned()).or_insert((0, 0));
                entry.0 = entry.0.max(at_ms);
                entry.1 = entry.1.max(at_ms.saturating_add(keep_ms));
            }
        }
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let key = cluster.key(&["revoked", subject]);
        cluster
            .run(move |mut c| async move {
                REVOKE
                    .key(key)
                    .arg(at_ms)
                    .arg(keep_ms)
                    .invoke_async::<u8>(&mut c)
                    .await
            })
            .await
            .map(|_| ())
    }

    /// Whether any of `subjects` — each with the time (Unix seconds) its credential was
    /// issued — is revoked. One round trip to Redis for all of them. `Err` (fail closed: the
    /// caller refuses) when the cluster cannot be asked.
    pub async fn revoked(&self, subjects: &[(&str, u64)]) -> Result<bool, ClusterError> {
        if let Ok(local) = self.local.lock() {
            let hit = subjects.iter().any(|(subject, issued)| {
                local
                    .get(*subject)
                    .is_some_and(|(at, _)| voids(*at, *issued))
            });
            if hit {
                return Ok(true);
            }
        }
        let Some(cluster) = &self.cluster else {
            return Ok(false);
        };
        if subjects.is_empty() {
            return Ok(false);
        }
        let keys: Vec<String> = subjects
            .iter()
            .map(|(s, _)| cluster.key(&["revoked", s]))
            .collect();
        let at: Vec<Option<u64>> = cluster
            .run(move |mut c| async move {
                redis::cmd("MGET")
                    .arg(keys)
                    .query_async::<Vec<Option<u64>>>(&mut c)
                    .await
            })
            .await?;
        Ok(at
            .iter()
            .zip(subjects)
            .any(|(at, (_, issued))| at.is_some_and(|at| voids(at, *issued))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_issued_in_the_second_of_a_revocation_is_void() {
        // Revoked at 100.700 s: issued at second 100 (before or after within it) is void,
        // second 101 is not.
        assert!(voids(100_700, 99));
        assert!(voids(100_700, 100));
        assert!(!voids(100_700, 101));
        assert!(voids(100_000, 100));
    }

    #[tokio::test]
    async fn in_process_revocations_are_by_subject_and_time() {
        let r = Revocations::new(None);
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        r.revoke(&account("alice"), at, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(r.revoked(&[(&account("alice"), 999)]).await.unwrap());
        assert!(!r.revoked(&[(&account("alice"), 1_001)]).await.unwrap());
        assert!(!r.revoked(&[(&account("bob"), 999)]).await.unwrap());
        assert!(r
            .revoked(&[(&session("n"), 5), (&account("alice"), 10)])
            .await
            .unwrap());
        // A later revocation wins, an earlier one never undoes it.
        r.revoke(
            &account("alice"),
            at - Duration::from_secs(500),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(r.revoked(&[(&account("alice"), 999)]).await.unwrap());
    }
}
