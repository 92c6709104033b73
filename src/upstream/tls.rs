//! TLS to the registry: which CA to trust, which name its certificate must carry, and the
//! client certificate for a registry that asks for one (mTLS).
//!
//! Verification is always on: there is no option to skip it, and the server name is never
//! empty (Pingora turns verification off for an empty SNI). Every file is parsed here, before
//! Pingora sees it, because Pingora's certificate types panic on bad DER.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{CertKey, WrappedX509};
use rustls::pki_types::{PrivateKeyDer, ServerName};

use crate::diagnostic::{Diagnostic, Diagnostics};

/// `upstream_tls:` as written (paths resolved against proxy.yaml's folder).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// PEM CA certificates the registry's chain must lead to; `None`: the system's roots.
    pub ca_certificate: Option<PathBuf>,
    /// PEM certificate chain presented to a registry that asks for a client certificate.
    pub client_certificate: Option<PathBuf>,
    /// The private key of `client_certificate`.
    pub client_key: Option<PathBuf>,
    /// The name the registry's certificate must carry (and the SNI sent), when it differs
    /// from the host in `upstream:` (a registry reached by address, or through a tunnel).
    pub server_name: Option<String>,
}

/// The TLS settings with their files read and checked.
pub struct Loaded {
    ca: Option<Arc<[WrappedX509]>>,
    client: Option<Arc<CertKey>>,
    server_name: String,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("client", &self.client.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Loaded {
    /// Reads and checks every file `settings` names; `host` is the server name when
    /// `server_name` is not set. All problems are returned together, keyed
    /// `upstream_tls.<key>`.
    pub fn load(settings: &Settings, host: &str) -> Result<Loaded, Diagnostics> {
        let mut errors = Vec::new();
        let server_name = settings
            .server_name
            .clone()
            .unwrap_or_else(|| host.to_string());
        // Checked with its line by the configuration already; this guards other callers.
        if ServerName::try_from(server_name.as_str()).is_err() {
            errors.push(
                Diagnostic::new(
                    "proxy.yaml",
                    format!("{server_name:?} is neither a DNS name nor an IP address"),
                )
                .key("upstream_tls.server_name"),
            );
        }
        let ca = match &settings.ca_certificate {
            None => None,
            Some(p) => match read_certs(p, "upstream_tls.ca_certificate") {
                Ok(certs) => Some(Arc::from(certs)),
                Err(d) => {
                    errors.push(d);
                    None
                }
            },
        };
        let client = match (&settings.client_certificate, &settings.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => match read_client(cert, key) {
                Ok(ck) => Some(Arc::new(ck)),
                Err(d) => {
                    errors.push(d);
                    None
                }
            },
            (Some(cert), None) => {
                errors.push(
                    Diagnostic::new(cert, "needs upstream_tls.client_key beside it")
                        .key("upstream_tls.client_certificate"),
                );
                None
            }
            (None, Some(key)) => {
                errors.push(
                    Diagnostic::new(key, "needs upstream_tls.client_certificate beside it")
                        .key("upstream_tls.client_key"),
                );
                None
            }
        };
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(Loaded {
            ca,
            client,
            server_name,
        })
    }

    /// A TLS peer at `addr` with this trust, name and client certificate.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, true, self.server_name.clone());
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        peer.options.ca = self.ca.clone();
        peer.client_cert_key = self.client.clone();
        peer
    }

    /// A TLS peer at `addr` with this trust and client certificate but another name (the
    /// registry's token server, trusted like the registry itself).
    pub fn peer_named(&self, addr: SocketAddr, name: &str) -> HttpPeer {
        let mut peer = self.peer(addr);
        peer.sni = name.to_owned();
        peer
    }

    /// The name the registry's certificate must carry.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }
}

/// PEM certificates from `path`, each checked to parse as X.509 (Pingora would panic).
fn read_certs(path: &Path, key: &str) -> Result<Vec<WrappedX509>, Diagnostic> {
    let pem = std::fs::read(path)
        .map_err(|e| Diagnostic::new(path, format!("cannot read: {e}")).key(key))?;
    let ders: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| Diagnostic::new(path, format!("not PEM certificates: {e}")).key(key))?;
    if ders.is_empty() {
        return Err(Diagnostic::new(path, "no CERTIFICATE block found").key(key));
    }
    let mut out = Vec::with_capacity(ders.len());
    for der in ders {
        if let Err(e) = x509_parser::parse_x509_certificate(der.as_ref()) {
            return Err(
                Diagnostic::new(path, format!("a certificate does not parse: {e}")).key(key),
            );
        }
        out.push(WrappedX509::new(
            der.to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    Ok(out)
}

/// The client certificate chain and key, checked to belong together.
fn read_client(cert: &Path, key: &Path) -> Result<CertKey, Diagnostic> {
    const CERT: &str = "upstream_tls.client_certificate";
    const KEY: &str = "upstream_tls.client_key";
    let chain = read_certs(cert, CERT)?;
    let pem = std::fs::read(key)
        .map_err(|e| Diagnostic::new(key, format!("cannot read: {e}")).key(KEY))?;
    let der: PrivateKeyDer = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| Diagnostic::new(key, format!("not a PEM private key: {e}")).key(KEY))?
        .ok_or_else(|| Diagnostic::new(key, "no PRIVATE KEY block found").key(KEY))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| Diagnostic::new(key, format!("unsupported private key: {e}")).key(KEY))?;
    let ders: Vec<Vec<u8>> = chain.iter().map(|c| c.borrow_raw_cert().clone()).collect();
    let certified =
        rustls::sign::CertifiedKey::new(ders.iter().map(|d| d.clone().into()).collect(), signing);
    certified.keys_match().map_err(|e| {
        Diagnostic::new(
            key,
            format!("does not match upstream_tls.client_certificate: {e}"),
        )
        .key(KEY)
    })?;
    // Pingora reads the key back with `PrivateKeyDer::try_from(Vec<u8>)`, which guesses the
    // format from the DER: check that it will succeed rather than panic at connect.
    let raw = der.secret_der().to_vec();
    if PrivateKeyDer::try_from(raw.clone()).is_err() {
        return Err(Diagnostic::new(key, "unrecognised private key encoding").key(KEY));
    }
    Ok(CertKey::new(ders, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_and_leaf(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let (c, l, k) = (
            dir.join("ca.pem"),
            dir.join("leaf.pem"),
            dir.join("leaf.key"),
        );
        std::fs::write(&c, ca.pem()).unwrap();
        std::fs::write(&l, leaf.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, l, k)
    }

    #[test]
    fn loads_a_ca_and_a_matching_client_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, leaf, key) = ca_and_leaf(dir.path());
        let settings = Settings {
            ca_certificate: Some(ca),
            client_certificate: Some(leaf),
            client_key: Some(key),
            server_name: None,
        };
        let loaded = Loaded::load(&settings, "registry.internal").unwrap();
        assert_eq!(loaded.server_name(), "registry.internal");
        let peer = loaded.peer("127.0.0.1:5000".parse().unwrap());
        assert!(peer.options.verify_cert && peer.options.verify_hostname);
        assert_eq!(peer.sni, "registry.internal");
        assert_eq!(peer.options.ca.as_ref().unwrap().len(), 1);
        assert!(peer.client_cert_key.is_some());
    }

    #[test]
    fn every_bad_file_is_reported_at_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, leaf, _) = ca_and_leaf(dir.path());
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all").unwrap();
        let other_key = dir.path().join("other.key");
        std::fs::write(
            &other_key,
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let settings = Settings {
            ca_certificate: Some(garbage),
            client_certificate: Some(leaf),
            client_key: Some(other_key),
            server_name: Some("bad name!".into()),
        };
        let e = Loaded::load(&settings, "h").unwrap_err();
        let keys: Vec<_> = e.0.iter().map(|d| d.key.clone().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "upstream_tls.server_name",
                "upstream_tls.ca_certificate",
                "upstream_tls.client_key"
            ],
            "{e}"
        );
        assert!(e.to_string().contains("does not match"), "{e}");
        // A certificate without its key is refused, not silently unused.
        let settings = Settings {
            ca_certificate: Some(ca),
            client_certificate: Some(dir.path().join("leaf.pem")),
            ..Settings::default()
        };
        let e = Loaded::load(&settings, "h").unwrap_err();
        assert!(e.to_string().contains("client_key"), "{e}");
    }
}
