//! The registry portcullis forwards to, as one thing the proxy phases, the catalog, the UI and
//! the readiness probe ask for a connection: where it is, whether it speaks TLS (and with
//! which trust and client certificate), and which credentials of its own it wants.
//!
//! One job per file: [`tls`] (the upstream's TLS trust and client certificate, loaded for
//! `serve` and `check` alike), [`auth`] (the service account's credentials for a registry that
//! keeps its own auth on), [`fetch`] (the small requests portcullis makes on its own behalf),
//! [`select`] (several registries by repository prefix).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use pingora::upstreams::peer::HttpPeer;

use crate::diagnostic::Diagnostics;

pub mod auth;
pub mod fetch;
pub mod resolve;
pub mod select;
pub mod tls;

pub use fetch::{delete, get, FetchError, Fetched};
pub use select::{Selected, Upstreams};

/// `upstream:` and its companions (`upstream_tls`, `upstream_auth`, `upstream_timeouts`) as
/// read from proxy.yaml. Plain data: [`Upstream::load`] reads the files it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `host:port`, as written (a name is resolved when connecting).
    pub address: String,
    /// The host alone (a name or an address, without brackets): what the registry's
    /// certificate must name unless `upstream_tls.server_name` says otherwise.
    pub host: String,
    /// TLS to the registry (`https://`); `None` is plain HTTP.
    pub tls: Option<tls::Settings>,
    /// The registry's own auth, when it keeps it on.
    pub auth: Option<auth::Settings>,
    /// How long a TCP connect (and TLS handshake) may take.
    pub connect_timeout: Duration,
    /// How long the upstream may stay silent while we wait for a read: generous, because the
    /// registry hashes a whole blob before it answers the final PUT of an upload.
    pub read_timeout: Duration,
    /// How often the name is looked up again (`upstream_resolve_interval`).
    pub resolve_interval: Duration,
}

/// What [`Upstream::load_files`] read: the TLS settings and the credentials.
pub type Files = (Option<Arc<tls::Loaded>>, Option<Arc<auth::Credentials>>);

/// Why an upstream could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file it names is missing or wrong.
    #[error("{0}")]
    Files(Diagnostics),
    /// Its name does not resolve.
    #[error("{0}")]
    Resolve(String),
}

/// A registry ready to be connected to: its settings with every file they name loaded.
#[derive(Debug)]
pub struct Upstream {
    settings: Settings,
    addresses: resolve::Addresses,
    tls: Option<Arc<tls::Loaded>>,
    auth: Option<Arc<auth::Credentials>>,
}

/// Where a request for one registry goes and what it carries there: handed to [`fetch`] so a
/// small request gets the same peer, `Host` and credentials as a proxied one.
#[derive(Debug, Clone)]
pub struct Target {
    /// The connection to ask for (address, TLS, timeouts).
    pub peer: HttpPeer,
    /// The `Host` the registry is asked with.
    pub host: String,
    /// The registry itself, for the credentials a request needs.
    pub upstream: Arc<Upstream>,
}

impl Upstream {
    /// Reads the files the settings name (CA, client certificate and key, password file),
    /// exactly as `serve` needs them, so `check` fails where the start would. Does not
    /// resolve or connect.
    pub fn load_files(settings: &Settings) -> Result<Files, Diagnostics> {
        let mut errors = Vec::new();
        let tls = match &settings.tls {
            None => None,
            Some(t) => match tls::Loaded::load(t, &settings.host) {
                Ok(l) => Some(Arc::new(l)),
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            },
        };
        let authorization = match &settings.auth {
            None => None,
            Some(a) => match a.load() {
                Ok(h) => Some(Arc::new(h)),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok((tls, authorization))
        } else {
            Err(Diagnostics(errors))
        }
    }

    /// Loads the files and resolves the address (once, at start).
    pub fn load(settings: &Settings) -> Result<Upstream, LoadError> {
        let addresses =
            resolve::Addresses::resolve(&settings.address).map_err(LoadError::Resolve)?;
        Self::with_addresses(settings, addresses)
    }

    /// Loads the files, with the addresses (and the lookup that refreshes them) given.
    pub fn with_addresses(
        settings: &Settings,
        addresses: resolve::Addresses,
    ) -> Result<Upstream, LoadError> {
        let (tls, auth) = Self::load_files(settings).map_err(LoadError::Files)?;
        Ok(Upstream {
            settings: settings.clone(),
            addresses,
            tls,
            auth,
        })
    }

    /// A plain-HTTP registry at `addr` with no auth of its own and the default timeouts
    /// (tests and tools that have an address, not a configuration).
    pub fn plain(addr: SocketAddr) -> Upstream {
        Upstream {
            settings: Settings {
                address: addr.to_string(),
                host: addr.ip().to_string(),
                tls: None,
                auth: None,
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs(300),
                resolve_interval: Duration::from_secs(30),
            },
            addresses: resolve::Addresses::with(&addr.to_string(), vec![addr], resolve::system())
                .expect("one address"),
            tls: None,
            auth: None,
        }
    }

    /// The settings this was loaded from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every address the name resolves to, and which of them answer.
    pub fn addresses(&self) -> &resolve::Addresses {
        &self.addresses
    }

    /// The connection to the registry, with the configured timeouts and, over TLS, the
    /// configured trust, server name and client certificate. Verification is always on:
    /// Pingora skips it for an empty SNI, so the name is never empty.
    pub fn peer(&self) -> HttpPeer {
        self.peer_at(self.addresses.pick())
    }

    /// [`Upstream::peer`] at one given address of the registry (the readiness probe tries
    /// each).
    pub fn peer_at(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = match &self.tls {
            None => HttpPeer::new(addr, false, String::new()),
            Some(t) => t.peer(addr),
        };
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.read_timeout = Some(self.settings.read_timeout);
        peer.options.write_timeout = Some(self.settings.read_timeout);
        peer
    }

    /// The `Host` portcullis's own requests carry (`host:port`).
    pub fn host_header(&self) -> &str {
        &self.settings.address
    }

    /// The `Authorization` a request needing `scopes` carries, when the registry keeps its
    /// own auth on: the service account's Basic credentials, or a token for exactly those
    /// scopes (cached; fetched from the registry's token server when none is).
    pub async fn authorization(
        &self,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>, auth::token::TokenError> {
        match self.auth.as_deref() {
            None => Ok(None),
            Some(auth::Credentials::Basic(h)) => Ok(Some(h.clone())),
            Some(auth::Credentials::Token(client)) => client
                .header(&self.peer(), self.host_header(), self.tls.as_ref(), scopes)
                .await
                .map(Some),
        }
    }

    /// Forgets the token cached for `scopes` (the registry refused it); true when the
    /// registry is in token mode, so asking again may help.
    pub fn forget_token(&self, scopes: &[String]) -> bool {
        match self.auth.as_deref() {
            Some(auth::Credentials::Token(client)) => {
                client.forget(scopes);
                true
            }
            _ => false,
        }
    }

    /// Tokens fetched from the registry's token server so far (0 without token auth).
    pub fn tokens_fetched(&self) -> u64 {
        match self.auth.as_deref() {
            Some(auth::Credentials::Token(client)) => client.fetched(),
            _ => 0,
        }
    }

    /// Whether the registry keeps its own auth on (then a 401 from it means portcullis's
    /// credentials are wrong, never the client's).
    pub fn has_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// Everything a small request needs.
    pub fn target(self: &Arc<Self>) -> Target {
        Target {
            peer: self.peer(),
            host: self.host_header().to_string(),
            upstream: self.clone(),
        }
    }

    /// `https://host:port` or `http://host:port`, for logs.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.settings.address)
    }
}

/// What a trial TLS handshake with the registry showed (`portcullis check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Plain HTTP: nothing to check.
    NotTls,
    /// The registry's certificate was verified (and a client certificate accepted).
    Verified,
    /// The registry could not be reached from here: the certificate was not checked.
    Unreachable(String),
    /// The registry was reached but the handshake failed: a CA that did not sign its
    /// certificate, a name the certificate does not carry, a refused client certificate.
    Failed(String),
}

/// Connects to the registry once and completes a TLS handshake exactly as `serve` would
/// (same trust, name and client certificate), so `check` refuses a wrong CA before a start
/// that would answer every request 502. Blocks for at most the connect timeout.
pub fn check_handshake(settings: &Settings) -> Handshake {
    if settings.tls.is_none() {
        return Handshake::NotTls;
    }
    let upstream = match Upstream::load(settings) {
        Ok(u) => u,
        Err(LoadError::Resolve(why)) => return Handshake::Unreachable(why),
        Err(LoadError::Files(e)) => return Handshake::Failed(e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Handshake::Unreachable(format!("no runtime to connect with: {e}")),
    };
    runtime.block_on(async {
        let connector = pingora::connectors::http::Connector::new(None);
        let peer = upstream.peer();
        let limit = settings.connect_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, connector.get_http_session(&peer)).await {
            Err(_) => Handshake::Unreachable(format!("no answer within {limit:?}")),
            Ok(Ok(_)) => Handshake::Verified,
            Ok(Err(e)) => {
                use pingora::ErrorType as E;
                match e.etype() {
                    E::TLSHandshakeFailure | E::InvalidCert | E::HandshakeError => {
                        Handshake::Failed(e.to_string())
                    }
                    _ => Handshake::Unreachable(e.to_string()),
                }
            }
        }
    })
}

/// Reads `upstream:` (`http://host:port` or `https://host:port`, no path, no user info):
/// `(tls, host:port, host)`. The port defaults to 80 or 443.
pub fn parse_url(text: &str) -> Result<(bool, String, String), String> {
    let (tls, rest) = if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(format!("{text:?} must start with http:// or https://"));
    };
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() || host_port.contains(['/', '@', '?', '#']) {
        return Err(format!("{text:?} must be http(s)://host:port with no path"));
    }
    let has_port = !host_port.ends_with(']')
        && host_port
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let with_port = if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:{}", if tls { 443 } else { 80 })
    };
    let host = with_port
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("{text:?} names no host"));
    }
    Ok((tls, with_port, host))
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn upstream_forms() {
        let ok = |t: &str| parse_url(t).unwrap();
        assert_eq!(
            ok("http://reg:5000"),
            (false, "reg:5000".into(), "reg".into())
        );
        assert_eq!(
            ok("http://reg:5000/"),
            (false, "reg:5000".into(), "reg".into())
        );
        assert_eq!(ok("http://reg"), (false, "reg:80".into(), "reg".into()));
        assert_eq!(ok("https://reg"), (true, "reg:443".into(), "reg".into()));
        assert_eq!(
            ok("https://[::1]:5000"),
            (true, "[::1]:5000".into(), "::1".into())
        );
        assert!(parse_url("reg:5000").is_err());
        assert!(parse_url("ftp://reg:5000").is_err());
        assert!(parse_url("http://reg:5000/v2").is_err());
        assert!(parse_url("http://u@reg:5000").is_err());
        assert!(parse_url("https://:5000").is_err());
    }
}
