//! The client-side TLS certificate, held behind a resolver so a new certificate can be swapped
//! in for new connections without a restart.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::diagnostic::Diagnostic;

/// Serves whichever certificate was loaded last.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        CertResolver {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// Serves `key` to connections from now on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Loads a PEM certificate chain and private key, checking that they belong together.
/// Pingora panics on unreadable files, so every problem is caught here first.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, Diagnostic> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| Diagnostic::new(cert, format!("cannot read: {e}")).key("tls.cert"))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            Diagnostic::new(cert, format!("not a PEM certificate chain: {e}")).key("tls.cert")
        })?;
    if certs.is_empty() {
        return Err(Diagnostic::new(cert, "no CERTIFICATE block found").key("tls.cert"));
    }
    let key_pem = std::fs::read(key)
        .map_err(|e| Diagnostic::new(key, format!("cannot read: {e}")).key("tls.key"))?;
    let der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Diagnostic::new(key, format!("not a PEM private key: {e}")).key("tls.key"))?
        .ok_or_else(|| Diagnostic::new(key, "no PRIVATE KEY block found").key("tls.key"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| {
        Diagnostic::new(key, format!("unsupported private key: {e}")).key("tls.key")
    })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        Diagnostic::new(
            key,
            format!("does not match the certificate in tls.cert: {e}"),
        )
        .key("tls.key")
    })?;
    Ok(certified)
}
