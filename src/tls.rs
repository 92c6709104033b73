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

    /// The `notAfter` of the certificate served now, for the expiry metric.
    pub fn not_after(&self) -> Result<i64, NotAfterError> {
        not_after(&self.current.load())
    }
}

/// Why a certificate's `notAfter` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NotAfterError {
    /// The chain is empty.
    #[error("no certificate")]
    Empty,
    /// The first certificate does not parse as X.509.
    #[error("the certificate does not parse: {0}")]
    Parse(String),
}

/// The `notAfter` (Unix seconds) of the first certificate of the chain, the one clients check
/// the date of. Parsed again on every call: it is read at start and after reloads only.
pub fn not_after(key: &CertifiedKey) -> Result<i64, NotAfterError> {
    let leaf = key.cert.first().ok_or(NotAfterError::Empty)?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| NotAfterError::Parse(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A self-signed certificate valid until `(y, m, d)`, written as `cert.pem`/`key.pem`.
    fn write_pair(dir: &Path, prefix: &str, (y, m, d): (i32, u8, u8)) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.join(format!("{prefix}.pem")),
            dir.join(format!("{prefix}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn the_resolver_reports_the_expiry_of_the_certificate_it_serves() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = write_pair(dir.path(), "one", (2031, 5, 17));
        let (c2, k2) = write_pair(dir.path(), "two", (2040, 1, 1));
        let resolver = CertResolver::new(load(&c1, &k1).unwrap());
        // date -u -d 2031-05-17 +%s
        assert_eq!(resolver.not_after().unwrap(), 1_936_742_400);
        resolver.replace(load(&c2, &k2).unwrap());
        assert_eq!(resolver.not_after().unwrap(), 2_208_988_800);
    }

    #[test]
    fn an_empty_or_garbage_chain_has_no_expiry() {
        let key = load_any_key();
        let empty = CertifiedKey::new(vec![], key.clone());
        assert!(matches!(not_after(&empty), Err(NotAfterError::Empty)));
        let garbage = CertifiedKey::new(vec![b"not a certificate".to_vec().into()], key);
        assert!(matches!(not_after(&garbage), Err(NotAfterError::Parse(_))));
    }

    fn load_any_key() -> Arc<dyn rustls::sign::SigningKey> {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        rustls::crypto::ring::sign::any_supported_type(&der).unwrap()
    }
}
