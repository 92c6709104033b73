//! `cluster:` as the cluster connection reads it (parsed and checked by [`crate::config`]).

use std::path::PathBuf;
use std::time::Duration;

/// The default `cluster.key_prefix`: every key portcullis writes starts with it, so one Redis
/// can serve other applications (or several portcullis fleets, each with its own prefix).
pub const DEFAULT_PREFIX: &str = "portcullis:";

/// The default `cluster.timeout`: a request waits at most this long for Redis before it is
/// answered from this replica's own state (or, for revocation checks, refused).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// `cluster:`: the Redis (or Valkey) server the replicas share their security state through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS), without a password (that is
    /// in `password_file`, so the URL can be logged and shown).
    pub redis: String,
    /// With `rediss://`: the CA certificate (PEM) the server's certificate must chain to;
    /// `None` uses the system's roots.
    pub ca_certificate: Option<PathBuf>,
    /// A file holding the Redis password (`AUTH`); a trailing line end is removed.
    pub password_file: Option<PathBuf>,
    /// Prepended to every key.
    pub key_prefix: String,
    /// How long one Redis operation may take before this replica falls back.
    pub timeout: Duration,
}

impl Settings {
    /// Whether the URL asks for TLS.
    pub fn tls(&self) -> bool {
        self.redis.starts_with("rediss://")
    }

    /// Why `url` is not a usable `cluster.redis` value, if it is not: the scheme, a host, no
    /// password inside it (it would end up in logs; `password_file` holds it).
    pub fn check_url(url: &str) -> Result<(), String> {
        let rest = url
            .strip_prefix("redis://")
            .or_else(|| url.strip_prefix("rediss://"))
            .ok_or_else(|| format!("{url:?} must start with redis:// or rediss://"))?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(format!(
                "{url:?} carries credentials: put the password in cluster.password_file (a URL is logged and shown)"
            ));
        }
        if authority.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        use redis::IntoConnectionInfo;
        url.into_connection_info()
            .map(|_| ())
            .map_err(|e| format!("{url:?} is not a Redis URL: {e}"))
    }
}
