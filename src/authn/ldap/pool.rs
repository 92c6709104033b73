//! Connections to the LDAP server: how to open one (URL, StartTLS, certificate checks, connect
//! timeout) and a small pool of connections bound as the service account.
//!
//! The pool keeps at most [`POOL_SIZE`] connections, each used by one operation at a time.
//! A connection goes back to the pool only after an operation on it succeeded (an LDAP result
//! code that is not success still counts: the connection itself worked). On a transport error
//! or a timeout it is dropped; a pooled connection that turns out to be dead (the server was
//! restarted) is replaced by a fresh one once, within the same time budget. So an outage never
//! leaves the pool in a broken state: the first operation after the server is back connects
//! anew.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchOptions, SearchResult};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::Semaphore;
use tokio::time::{timeout_at, Instant};

/// Service-account connections kept open at most.
pub const POOL_SIZE: usize = 4;

/// Where and how to connect. Certificate verification is always on: there is no setting to
/// turn it off.
pub struct Connector {
    url: String,
    start_tls: bool,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
}

impl Connector {
    /// A connector for `url`. `tls` is required for `ldaps://` and for StartTLS.
    pub fn new(
        url: &str,
        start_tls: bool,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
    ) -> Self {
        Connector {
            url: url.to_owned(),
            start_tls,
            tls,
            timeout,
        }
    }

    /// True when the connection is encrypted (ldaps:// or StartTLS).
    pub fn uses_tls(&self) -> bool {
        self.start_tls || self.url.starts_with("ldaps://")
    }

    /// Opens a connection (TCP, then StartTLS or TLS as configured) and starts its driver
    /// task. Bounded by the timeout. Errors are for logs: they never contain a password.
    pub async fn connect(&self) -> Result<Ldap, String> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.start_tls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.url))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }
}

/// The rustls configuration: `ca` (PEM, one or more certificates) when given, else the
/// system's trust store. TLS 1.2 and 1.3 with ring.
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = read_pem_certs(path)?;
            if certs.is_empty() {
                return Err(format!("{} holds no PEM certificate", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
            }
        }
        None => {
            let path = system_bundle().ok_or_else(|| {
                "no system CA bundle found (set `ca_certificate`, or SSL_CERT_FILE)".to_string()
            })?;
            let (added, _ignored) = roots.add_parsable_certificates(read_pem_certs(&path)?);
            if added == 0 {
                return Err(format!("{} holds no usable CA certificate", path.display()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))
}

/// `$SSL_CERT_FILE`, else the usual places of the system bundle.
fn system_bundle() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SSL_CERT_FILE") {
        return Some(p.into());
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
}

/// Connections bound as the service account.
pub struct Pool {
    connector: Arc<Connector>,
    bind_dn: String,
    bind_password: String,
    timeout: Duration,
    idle: Mutex<Vec<Ldap>>,
    permits: Semaphore,
}

impl Pool {
    /// An empty pool: nothing connects until the first operation.
    pub fn new(
        connector: Arc<Connector>,
        bind_dn: String,
        bind_password: String,
        timeout: Duration,
    ) -> Self {
        Pool {
            connector,
            bind_dn,
            bind_password,
            timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(POOL_SIZE),
        }
    }

    /// Idle connections right now (for tests).
    pub fn idle(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn take_idle(&self) -> Option<Ldap> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut conn) = idle.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, conn: Ldap) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < POOL_SIZE {
                idle.push(conn);
            }
        }
    }

    /// A fresh connection bound as the service account.
    async fn open(&self) -> Result<Ldap, String> {
        let mut ldap = self.connector.connect().await?;
        let result = ldap
            .with_timeout(self.timeout)
            .simple_bind(&self.bind_dn, &self.bind_password)
            .await
            .map_err(|e| match e {
                ldap3::LdapError::Timeout { .. } => format!(
                    "timed out after {:?} binding the service account",
                    self.timeout
                ),
                e => format!("service account bind failed: {e}"),
            })?;
        if result.rc != 0 {
            return Err(format!(
                "service account {:?} bind refused: rc={} {}",
                self.bind_dn, result.rc, result.text
            ));
        }
        Ok(ldap)
    }

    /// Searches the subtree under `base` for `filter`, asking for `attrs` and at most two
    /// entries (more than one is an error to the caller anyway). The whole operation —
    /// waiting for a pool slot, connecting and binding if needed, the search — is bounded by
    /// the timeout. The result code is returned as the server gave it.
    pub async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> Result<SearchResult, String> {
        let deadline = Instant::now() + self.timeout;
        let timed_out = || format!("timed out after {:?}", self.timeout);
        let _permit = timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| format!("{} waiting for a free LDAP connection", timed_out()))?
            .map_err(|_| "connection pool closed".to_string())?;
        for attempt in 0..2 {
            let (mut conn, reused) = match self.take_idle() {
                Some(conn) => (conn, true),
                None => {
                    let conn = timeout_at(deadline, self.open())
                        .await
                        .map_err(|_| format!("{} connecting and binding", timed_out()))??;
                    (conn, false)
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let search = conn
                .with_search_options(SearchOptions::new().sizelimit(2))
                .with_timeout(remaining.max(Duration::from_millis(1)))
                .search(base, Scope::Subtree, filter, attrs);
            match timeout_at(deadline, search).await {
                Err(_) => return Err(format!("{} searching", timed_out())),
                Ok(Ok(result)) => {
                    self.put_back(conn);
                    return Ok(result);
                }
                Ok(Err(ldap3::LdapError::Timeout { .. })) => {
                    return Err(format!("{} searching", timed_out()))
                }
                Ok(Err(e)) if reused && attempt == 0 => {
                    // A pooled connection that died while idle (server restarted): drop it,
                    // and the other idle ones, which are most likely dead too, and try once
                    // on a fresh connection.
                    tracing::debug!(error = %e, "stale pooled LDAP connection dropped");
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.clear();
                    }
                    continue;
                }
                Ok(Err(e)) => return Err(format!("search failed: {e}")),
            }
        }
        Err("search failed on a fresh connection".into())
    }
}
