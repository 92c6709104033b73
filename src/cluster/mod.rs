//! Cluster mode (`cluster:`): the security state several replicas must agree on, kept in one
//! Redis (or Valkey) server.
//!
//! Without `cluster:` every replica keeps its own state, and N replicas behind a load balancer
//! give an attacker N× the guesses, forget a logout made on another replica, and cannot limit
//! one account's request rate across the fleet. With it:
//!
//! | part | file | in Redis | when Redis cannot be reached |
//! |---|---|---|---|
//! | failed-login counters and locks | [`counters`] | one hash per key, changed by Lua scripts | counted per replica |
//! | revocations (logout, `portcullis revoke`) | [`revocations`] | one key per subject: the time before which it is revoked | refresh tokens and UI sessions are **refused** (fail closed) |
//! | request rate limits | [`rate`] | GCRA, one Lua script per check | limited per replica |
//! | publish/subscribe for other parts | [`bus`] | Redis pub/sub channels | subscribers are told `Lost`, then `Restored` |
//!
//! Every change is one script or one atomic command, never a read-modify-write from Rust, so
//! concurrent replicas cannot lose each other's updates. Redis's own clock (`TIME`) dates
//! windows and buckets, so replicas whose clocks differ still agree.
//!
//! # Failure handling
//!
//! [`Cluster`] owns one multiplexed connection ([`redis::aio::ConnectionManager`], which
//! reconnects by itself) on a small runtime of its own, so its background tasks outlive any
//! one request and are independent of the proxy's threads. Each operation waits at most
//! `cluster.timeout`. The first operation that cannot reach Redis marks it down
//! ([`health`]); from then on callers fall back at once without trying, and a probe every
//! [`PROBE_INTERVAL`] brings it back up. `/readyz` never looks at Redis: an outage must not
//! take the whole fleet out of the load balancer. Operators see `portcullis_cluster_up` and
//! `portcullis_cluster_errors_total`, and one log line per change of state.

mod settings;
pub use settings::{Settings, DEFAULT_PREFIX, DEFAULT_TIMEOUT};

pub mod bus;
pub mod counters;
pub mod health;
pub mod rate;
pub mod revocations;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use health::{Change, Health};

/// How often the background probe asks Redis whether it is there.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Why a cluster operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Redis is known to be unreachable; nothing was tried.
    #[error("Redis is unreachable")]
    Down,
    /// Redis could not be reached, or did not answer within `cluster.timeout`.
    #[error("Redis did not answer: {0}")]
    Unreachable(String),
    /// Redis answered with an error (a bug, or a key of the wrong type under the prefix).
    #[error("Redis refused the operation: {0}")]
    Refused(String),
    /// The settings cannot be used (unreadable password or CA file).
    #[error("{0}")]
    Settings(String),
}

/// Told about the cluster's health: the metrics implement it.
pub trait Observer: Send + Sync {
    /// Redis became reachable (`true`) or unreachable (`false`).
    fn up(&self, up: bool);
    /// One operation or probe failed.
    fn error(&self);
}

/// The runtime the connection lives on; shut down without waiting when the cluster is dropped
/// (possibly from inside another runtime, where a blocking shutdown would panic).
struct Engine(Option<tokio::runtime::Runtime>);

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    prefix: String,
    timeout: Duration,
    client: redis::Client,
    manager: ConnectionManager,
    health: Health,
    observer: Option<Arc<dyn Observer>>,
    handle: tokio::runtime::Handle,
    url: String,
    _engine: Engine,
}

/// A handle on the shared Redis; cheap to clone, shared by every part that uses it.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("redis", &self.inner.url)
            .field("up", &self.is_up())
            .finish()
    }
}

/// Reads a secret file: its contents less one trailing line end.
fn read_secret(path: &std::path::Path) -> Result<String, ClusterError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClusterError::Settings(format!("cannot read {}: {e}", path.display())))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(text.to_owned())
}

/// The Redis client for `settings`: password from its file, the CA for `rediss://`.
fn client(settings: &Settings) -> Result<redis::Client, ClusterError> {
    use redis::IntoConnectionInfo;
    let bad = |e: redis::RedisError| ClusterError::Settings(format!("cluster.redis: {e}"));
    let mut info = settings
        .redis
        .as_str()
        .into_connection_info()
        .map_err(bad)?;
    if let Some(path) = &settings.password_file {
        let password = read_secret(path)?;
        info = info
            .clone()
            .set_redis_settings(info.redis_settings().clone().set_password(password));
    }
    match (&settings.ca_certificate, settings.tls()) {
        (Some(ca), true) => {
            let pem = std::fs::read(ca).map_err(|e| {
                ClusterError::Settings(format!("cannot read {}: {e}", ca.display()))
            })?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(bad)
        }
        _ => redis::Client::open(info).map_err(bad),
    }
}

/// Whether `e` means Redis could not be reached (as opposed to answering with an error).
fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

impl Cluster {
    /// A cluster handle for `settings`. Does not wait for Redis: a replica starts (and serves,
    /// falling back) while Redis is down, and connects when it comes. Errors only for settings
    /// that cannot work (an unreadable password or CA file).
    pub fn connect(
        settings: &Settings,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Cluster, ClusterError> {
        let client = client(settings)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portcullis-cluster")
            .enable_all()
            .build()
            .map_err(|e| {
                ClusterError::Settings(format!("cannot start the cluster runtime: {e}"))
            })?;
        let handle = runtime.handle().clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = {
            // Its background tasks are spawned on the current runtime: ours.
            let _entered = handle.enter();
            ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| ClusterError::Settings(format!("cluster.redis: {e}")))?
        };
        let inner = Arc::new(Inner {
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            client,
            manager,
            health: Health::default(),
            observer,
            handle: handle.clone(),
            url: settings.redis.clone(),
            _engine: Engine(Some(runtime)),
        });
        handle.spawn(probe_loop(Arc::downgrade(&inner)));
        Ok(Cluster { inner })
    }

    /// Whether Redis answered the last operation or probe.
    pub fn is_up(&self) -> bool {
        self.inner.health.is_up()
    }

    /// Failed operations and probes since start.
    pub fn errors(&self) -> u64 {
        self.inner.health.errors()
    }

    /// The key for `parts` under the configured prefix (`portcullis:lockout:pair:…`).
    pub fn key(&self, parts: &[&str]) -> String {
        key(&self.inner.prefix, parts)
    }

    /// The client, for connections of their own (pub/sub).
    pub(crate) fn client(&self) -> redis::Client {
        self.inner.client.clone()
    }

    /// The runtime the connection lives on, for tasks that must outlive a request.
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// How long one operation may take.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Asks Redis now, whatever the known state (the background probe, `portcullis revoke`).
    /// Waits at least a second: nobody's request waits on it, and a first connection (TLS,
    /// a distant server) may take longer than `cluster.timeout`.
    pub async fn ping(&self) -> Result<(), ClusterError> {
        let timeout = self.inner.timeout.max(Duration::from_secs(1));
        self.attempt(timeout, |mut c| async move {
            redis::cmd("PING").query_async::<()>(&mut c).await
        })
        .await
    }

    /// Runs `op` on the shared connection, bounded by `cluster.timeout`, unless Redis is
    /// known to be down (then [`ClusterError::Down`] at once: the caller falls back).
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        if !self.is_up() {
            return Err(ClusterError::Down);
        }
        self.attempt(self.inner.timeout, op).await
    }

    async fn attempt<T, F, Fut>(&self, timeout: Duration, op: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.inner.manager.clone();
        // On our runtime: reconnects the operation triggers are spawned there too.
        let joined = self
            .inner
            .handle
            .spawn(async move { tokio::time::timeout(timeout, op(conn)).await })
            .await;
        let result = match joined {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) if !unreachable(&e) => Err(ClusterError::Refused(e.to_string())),
            Ok(Ok(Err(e))) => Err(ClusterError::Unreachable(e.to_string())),
            Ok(Err(_elapsed)) => Err(ClusterError::Unreachable(format!(
                "no answer within {timeout:?}"
            ))),
            Err(e) => Err(ClusterError::Unreachable(format!("task failed: {e}"))),
        };
        match &result {
            Ok(_) => self.inner.report(true, None),
            Err(ClusterError::Refused(why)) => {
                // Reachable, but something is wrong: counted, logged, not a state change.
                if let Some(o) = &self.inner.observer {
                    o.error();
                }
                tracing::warn!(error = %why, "cluster: Redis refused an operation");
            }
            Err(e) => self.inner.report(false, Some(e)),
        }
        result
    }
}

impl Inner {
    fn report(&self, reached: bool, error: Option<&ClusterError>) {
        if !reached {
            if let Some(o) = &self.observer {
                o.error();
            }
        }
        let Some(change) = self.health.report(reached) else {
            return;
        };
        if let Some(o) = &self.observer {
            o.up(reached);
        }
        match change {
            Change::Connected => tracing::info!(redis = %self.url, "cluster: connected to Redis"),
            Change::Restored => tracing::warn!(
                redis = %self.url,
                "cluster: Redis reachable again; lockout, rate limits and revocations are shared again"
            ),
            Change::Lost => tracing::warn!(
                redis = %self.url,
                error = %error.map(|e| e.to_string()).unwrap_or_default(),
                "cluster: Redis unreachable; lockout and rate limits count per replica, refresh tokens and UI sessions are refused until it is back"
            ),
        }
    }
}

/// Probes Redis every [`PROBE_INTERVAL`] while the cluster exists.
async fn probe_loop(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let cluster = Cluster { inner: strong };
        let _ = cluster.ping().await;
        drop(cluster);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// `prefix` followed by `parts` joined with `:`. The parts are written as they are: Redis keys
/// are binary-safe, and a part that may itself hold `:` (an account name) is placed last by
/// the callers, so two different key tuples never give the same key.
pub fn key(prefix: &str, parts: &[&str]) -> String {
    let mut k =
        String::with_capacity(prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push_str(prefix);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            k.push(':');
        }
        k.push_str(part);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_and_joined() {
        assert_eq!(
            key(
                "portcullis:",
                &["lockout", "pair", "v4:3221225985", "alice"]
            ),
            "portcullis:lockout:pair:v4:3221225985:alice"
        );
        assert_eq!(
            key("p:", &["revoked", "account:a:b"]),
            "p:revoked:account:a:b"
        );
    }

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused() {
        assert!(Settings::check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(Settings::check_url("rediss://cache.example:6380").is_ok());
        assert!(Settings::check_url("redis://:secret@host:6379").is_err());
        assert!(Settings::check_url("http://host:6379").is_err());
        assert!(Settings::check_url("redis:///0").is_err());
    }
}
