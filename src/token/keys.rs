//! Signing and verification keys: PEM loading (PKCS#8, PKCS#1, SEC1), the certificate that
//! must match the key, the libtrust key id registry:2 looks keys up by, and a development key
//! pair.
//!
//! Only RSA (≥ 2048 bits, signed RS256) and EC P-256 (ES256) are accepted, because those are
//! what registry:2 (through libtrust) verifies; anything else is refused at load with a message
//! naming the file, never discovered later as a registry that rejects every token.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::der::oid::ObjectIdentifier;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::diagnostic::Diagnostic;

/// The configuration key a bad private key is reported under.
pub const KEY_SETTING: &str = "auth.token.key";
/// The configuration key a bad certificate is reported under.
pub const CERTIFICATE_SETTING: &str = "auth.token.certificate";

/// Smallest RSA modulus accepted: NIST's floor, and what jsonwebtoken's backends assume.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted: bigger keys make every signature and verification slow
/// (and would let a key file turn the token endpoint into a CPU sink).
pub const MAX_RSA_BITS: usize = 8192;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A public key that verifies tokens, with what registry:2 needs to find it: the algorithm it
/// is used with and its libtrust key id.
#[derive(Clone)]
pub struct PublicKey {
    alg: Algorithm,
    kid: String,
    spki: Vec<u8>,
    decoding: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

impl PublicKey {
    /// Reads a DER SubjectPublicKeyInfo (RSA or EC P-256), so extra verification keys (key
    /// rotation) and certificates can be turned into keys the [`super::Verifier`] holds.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
        let info = p256::pkcs8::SubjectPublicKeyInfoRef::try_from(der)
            .map_err(|_| "not a DER SubjectPublicKeyInfo".to_string())?;
        let oid = info.algorithm.oid;
        if oid == OID_EC_PUBLIC_KEY {
            let curve = info.algorithm.parameters_oid().ok();
            if curve != Some(OID_P256) {
                return Err(format!(
                    "EC key on curve {}: only P-256 (ES256) is supported",
                    curve_name(curve)
                ));
            }
            let key = p256::PublicKey::from_public_key_der(der)
                .map_err(|_| "invalid EC P-256 public key".to_string())?;
            Ok(Self::from_p256(&key))
        } else if oid == OID_RSA {
            let key = rsa::RsaPublicKey::from_public_key_der(der)
                .map_err(|_| "invalid RSA public key".to_string())?;
            check_rsa_size(key.n().bits())?;
            Self::from_rsa(&key)
        } else {
            Err(unsupported_algorithm(oid))
        }
    }

    /// Reads the first `PUBLIC KEY` or `CERTIFICATE` block of a PEM text: the form extra
    /// verification keys are configured in.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, String> {
        for item in rustls_pemfile::read_all(&mut &pem[..]) {
            match item {
                Ok(rustls_pemfile::Item::SubjectPublicKeyInfo(spki)) => {
                    return Self::from_spki_der(spki.as_ref())
                }
                Ok(rustls_pemfile::Item::X509Certificate(cert)) => {
                    let spki = certificate_spki(cert.as_ref())
                        .ok_or_else(|| "the certificate cannot be read".to_string())?;
                    return Self::from_spki_der(spki);
                }
                Ok(_) => continue,
                Err(_) => return Err("not a valid PEM file".into()),
            }
        }
        Err("no `PUBLIC KEY` or `CERTIFICATE` PEM block found".into())
    }

    fn from_p256(key: &p256::PublicKey) -> PublicKey {
        // Encoding a valid point cannot fail; an empty SPKI would only give a useless kid.
        let spki = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let point = key.to_sec1_bytes();
        PublicKey {
            alg: Algorithm::ES256,
            kid: libtrust_key_id(&spki),
            spki,
            decoding: DecodingKey::from_ec_der(&point),
        }
    }

    fn from_rsa(key: &rsa::RsaPublicKey) -> Result<PublicKey, String> {
        let spki = key
            .to_public_key_der()
            .map_err(|_| "cannot encode the RSA public key".to_string())?
            .as_bytes()
            .to_vec();
        Ok(PublicKey {
            alg: Algorithm::RS256,
            kid: libtrust_key_id(&spki),
            spki,
            // Raw components: no DER parsing on every verification.
            decoding: DecodingKey::from_rsa_raw_components(
                &key.n().to_bytes_be(),
                &key.e().to_bytes_be(),
            ),
        })
    }

    /// The one algorithm tokens under this key may use (RS256 or ES256): verification is pinned
    /// to it, whatever a token's header says.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The libtrust key id (`ABCD:EFGH:…`), sent as `kid` and matched by registry:2 against its
    /// `rootcertbundle`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The DER SubjectPublicKeyInfo, to compare with a certificate's.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The private key that signs tokens, with its public half.
pub struct SigningKey {
    public: PublicKey,
    encoding: EncodingKey,
    binding: [u8; 32],
}

/// A secret derived from private key bytes, for keyed MACs that must be the same on every
/// replica and across restarts (it is as secret, and as shared, as the key itself), and never
/// usable as the key: SHA-256 of a fixed label and the private key's DER.
fn derive_secret(private_der: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"portcullis refresh-token credential binding v1\0");
    h.update(private_der);
    h.finalize().into()
}

// Hand-written so that a stray `{:?}` can never print key material.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads `auth.token.key`; every problem is a diagnostic naming the file and the key.
    pub fn load(path: &Path) -> Result<SigningKey, Diagnostic> {
        let text = std::fs::read(path).map_err(|e| {
            Diagnostic::new(path, format!("cannot read the token signing key: {e}"))
                .key(KEY_SETTING)
        })?;
        Self::from_pem(&text).map_err(|m| Diagnostic::new(path, m).key(KEY_SETTING))
    }

    /// Parses a PEM private key: `PRIVATE KEY` (PKCS#8, RSA or EC), `RSA PRIVATE KEY`
    /// (PKCS#1) or `EC PRIVATE KEY` (SEC1). Exactly one private key must be present.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        let mut found = None;
        for item in rustls_pemfile::read_all(&mut &pem[..]) {
            let key = match item {
                Ok(rustls_pemfile::Item::Pkcs8Key(k)) => Pem::Pkcs8(k.secret_pkcs8_der().to_vec()),
                Ok(rustls_pemfile::Item::Pkcs1Key(k)) => Pem::Pkcs1(k.secret_pkcs1_der().to_vec()),
                Ok(rustls_pemfile::Item::Sec1Key(k)) => Pem::Sec1(k.secret_sec1_der().to_vec()),
                Ok(_) => continue,
                Err(_) => return Err("not a valid PEM file".into()),
            };
            if found.replace(key).is_some() {
                return Err("holds more than one private key".into());
            }
        }
        match found {
            Some(Pem::Pkcs8(der)) => Self::from_pkcs8(&der),
            Some(Pem::Pkcs1(der)) => {
                let key = rsa::RsaPrivateKey::from_pkcs1_der(&der)
                    .map_err(|_| "invalid PKCS#1 RSA private key".to_string())?;
                Self::from_rsa(key)
            }
            Some(Pem::Sec1(der)) => match p256::SecretKey::from_sec1_der(&der) {
                Ok(key) => Self::from_p256(&key),
                Err(_) => Err(format!(
                    "EC private key on curve {}: only P-256 (ES256) is supported",
                    sec1_curve_guess(&der)
                )),
            },
            None if String::from_utf8_lossy(pem).contains("ENCRYPTED") => {
                Err("encrypted private keys are not supported: decrypt it (openssl pkey)".into())
            }
            None => Err(
                "no private key found: expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` \
                         or `EC PRIVATE KEY` block"
                    .into(),
            ),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        let info = p256::pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|_| "invalid PKCS#8 private key".to_string())?;
        let oid = info.algorithm.oid;
        if oid == OID_EC_PUBLIC_KEY {
            let curve = info.algorithm.parameters_oid().ok();
            if curve != Some(OID_P256) {
                return Err(format!(
                    "EC private key on curve {}: only P-256 (ES256) is supported",
                    curve_name(curve)
                ));
            }
            let key = p256::SecretKey::from_pkcs8_der(der)
                .map_err(|_| "invalid EC P-256 private key".to_string())?;
            Self::from_p256(&key)
        } else if oid == OID_RSA {
            let key = rsa::RsaPrivateKey::from_pkcs8_der(der)
                .map_err(|_| "invalid PKCS#8 RSA private key".to_string())?;
            Self::from_rsa(key)
        } else {
            Err(unsupported_algorithm(oid))
        }
    }

    fn from_p256(key: &p256::SecretKey) -> Result<SigningKey, String> {
        // jsonwebtoken's ES256 signer reads PKCS#8, whatever the file held.
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|_| "cannot encode the EC private key".to_string())?;
        Ok(SigningKey {
            public: PublicKey::from_p256(&key.public_key()),
            encoding: EncodingKey::from_ec_der(pkcs8.as_bytes()),
            binding: derive_secret(pkcs8.as_bytes()),
        })
    }

    fn from_rsa(key: rsa::RsaPrivateKey) -> Result<SigningKey, String> {
        check_rsa_size(key.n().bits())?;
        key.validate()
            .map_err(|_| "inconsistent RSA private key".to_string())?;
        // jsonwebtoken's RS256 signer reads PKCS#1, whatever the file held.
        let pkcs1 = key
            .to_pkcs1_der()
            .map_err(|_| "cannot encode the RSA private key".to_string())?;
        Ok(SigningKey {
            public: PublicKey::from_rsa(&key.to_public_key())?,
            encoding: EncodingKey::from_rsa_der(pkcs1.as_bytes()),
            binding: derive_secret(pkcs1.as_bytes()),
        })
    }

    /// The public half: algorithm, kid, and the key the verifier uses.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The secret that keys the credential binding of refresh tokens signed by this key
    /// (derived from the private key, so every replica holding the key agrees on it).
    pub(crate) fn binding_secret(&self) -> &[u8; 32] {
        &self.binding
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

enum Pem {
    Pkcs8(Vec<u8>),
    Pkcs1(Vec<u8>),
    Sec1(Vec<u8>),
}

fn check_rsa_size(bits: usize) -> Result<(), String> {
    if bits < MIN_RSA_BITS {
        Err(format!(
            "RSA key of {bits} bits: at least {MIN_RSA_BITS} are required"
        ))
    } else if bits > MAX_RSA_BITS {
        Err(format!(
            "RSA key of {bits} bits: at most {MAX_RSA_BITS} are supported"
        ))
    } else {
        Ok(())
    }
}

fn curve_name(oid: Option<ObjectIdentifier>) -> String {
    match oid.map(|o| o.to_string()).as_deref() {
        Some("1.3.132.0.34") => "P-384".into(),
        Some("1.3.132.0.35") => "P-521".into(),
        Some("1.3.132.0.10") => "secp256k1".into(),
        Some(other) => other.into(),
        None => "(unnamed)".into(),
    }
}

/// The curve of a SEC1 key p256 refused, by looking for a known curve OID in its DER.
fn sec1_curve_guess(der: &[u8]) -> String {
    const CURVES: &[(&[u8], &str)] = &[
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22], "P-384"),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23], "P-521"),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
    ];
    CURVES
        .iter()
        .find(|(oid, _)| der.windows(oid.len()).any(|w| w == *oid))
        .map_or_else(|| "(unknown or invalid)".into(), |(_, name)| (*name).into())
}

fn unsupported_algorithm(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.3.101.112" => "Ed25519".to_string(),
        "1.3.101.113" => "Ed448".to_string(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".to_string(),
        other => format!("algorithm {other}"),
    };
    format!(
        "{name} keys are not supported: registry:2 verifies only RSA (RS256) and EC P-256 (ES256)"
    )
}

/// The libtrust key id of a public key: SHA-256 of its DER SubjectPublicKeyInfo, first 30
/// bytes, base32 (RFC 4648, no padding), 12 groups of 4 joined by `:`. This is how
/// registry:2 names the keys of its `rootcertbundle`, so the `kid` header must use it.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = base32(&digest[..30]);
    let mut out = String::with_capacity(59);
    for (i, chunk) in b32.as_bytes().chunks(4).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.extend(chunk.iter().map(|&c| c as char));
    }
    out
}

/// RFC 4648 base32 without padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Reads `auth.token.certificate`: the PEM chain (leaf first), which must hold the public key
/// of the signing key. Returns the DER of each certificate, for the `x5c` header.
pub fn load_certificate_chain(path: &Path, key: &PublicKey) -> Result<Vec<Vec<u8>>, Diagnostic> {
    let err = |m: String| Diagnostic::new(path, m).key(CERTIFICATE_SETTING);
    let text = std::fs::read(path).map_err(|e| err(format!("cannot read the certificate: {e}")))?;
    let chain = certificate_chain_from_pem(&text).map_err(err)?;
    let leaf_spki = certificate_spki(&chain[0])
        .ok_or_else(|| err("the first certificate cannot be read".into()))?;
    let leaf = PublicKey::from_spki_der(leaf_spki)
        .map_err(|m| err(format!("the first certificate's key: {m}")))?;
    if leaf.spki_der() != key.spki_der() {
        return Err(err(format!(
            "the first certificate holds key {} but {KEY_SETTING} is key {}: \
             it must be the certificate of the signing key",
            leaf.kid(),
            key.kid()
        )));
    }
    Ok(chain)
}

/// The DER of every `CERTIFICATE` block of a PEM text (at least one).
pub fn certificate_chain_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut chain = Vec::new();
    for item in rustls_pemfile::read_all(&mut &pem[..]) {
        match item {
            Ok(rustls_pemfile::Item::X509Certificate(c)) => chain.push(c.as_ref().to_vec()),
            Ok(_) => continue,
            Err(_) => return Err("not a valid PEM file".into()),
        }
    }
    if chain.is_empty() {
        return Err("no `CERTIFICATE` PEM block found".into());
    }
    Ok(chain)
}

/// The SubjectPublicKeyInfo (whole TLV) of a DER X.509 certificate, by walking
/// `Certificate → tbsCertificate → [version], serial, signature, issuer, validity, subject,
/// subjectPublicKeyInfo`. `None` on anything unexpected; never panics.
pub fn certificate_spki(cert: &[u8]) -> Option<&[u8]> {
    let (cert_body, _) = der_tlv(cert, 0x30)?;
    let (tbs, _) = der_tlv(cert_body, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_tlv(rest, 0xa0)?.1;
    }
    rest = der_tlv(rest, 0x02)?.1; // serialNumber
    for _ in 0..4 {
        // signature, issuer, validity, subject
        rest = der_tlv(rest, 0x30)?.1;
    }
    let (_, after) = der_tlv(rest, 0x30)?;
    Some(&rest[..rest.len() - after.len()])
}

/// One DER TLV with tag `tag` at the start of `input`: (contents, the bytes after it).
fn der_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// File names [`generate_dev_keypair`] writes.
pub const DEV_KEY_FILE: &str = "token.key";
/// See [`DEV_KEY_FILE`].
pub const DEV_CERT_FILE: &str = "token.crt";

/// Writes a new EC P-256 signing key (`token.key`, PKCS#8 PEM, mode 0600) and a self-signed
/// certificate for it (`token.crt`) into `dir`, for development and tests: give the key to
/// `auth.token.key`/`certificate` and the certificate to registry:2 as `rootcertbundle`.
/// Refuses to overwrite existing files, so a real key is never replaced by accident.
pub fn generate_dev_keypair(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let other = |e: rcgen::Error| std::io::Error::other(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(other)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(other)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portcullis token signer");
    let cert = params.self_signed(&key).map_err(other)?;
    let key_path = dir.join(DEV_KEY_FILE);
    let cert_path = dir.join(DEV_CERT_FILE);
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok((key_path, cert_path))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;

    const VECTOR_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4m5bFKJmNT0B4HIStnuDUC4CEXcP
mCMK3wwmUe/FtlSdd1IUPV+oVVyM7KG64BZ3HTAho3tlpiW4YEtR+AD1yQ==
-----END PUBLIC KEY-----
";

    /// A PEM block of `label` around `der`.
    pub(crate) fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    /// `openssl genrsa` (rcgen cannot make RSA keys; the rsa crate is very slow unoptimized).
    pub(crate) fn openssl_rsa(bits: u32, traditional: bool) -> String {
        let mut cmd = std::process::Command::new("openssl");
        cmd.arg("genrsa");
        if traditional {
            cmd.arg("-traditional");
        }
        let out = cmd.arg(bits.to_string()).output().expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn libtrust_kid_test_vector() {
        let key = PublicKey::from_pem(VECTOR_PEM.as_bytes()).unwrap();
        assert_eq!(
            key.kid(),
            "4RBF:DAMC:YSLL:D4WN:2ZM4:7ZEA:WTFG:LYN3:F7CZ:BN6T:XZPZ:I2RX"
        );
        assert_eq!(key.algorithm(), Algorithm::ES256);
        // Directly on the DER, too.
        let der = base64::engine::general_purpose::STANDARD
            .decode(
                VECTOR_PEM
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        assert_eq!(libtrust_key_id(&der), key.kid());
    }

    #[test]
    fn base32_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), want);
        }
    }

    #[test]
    fn loads_every_supported_format() {
        // EC P-256: PKCS#8 (rcgen) and SEC1.
        let ec = rcgen::KeyPair::generate().unwrap();
        let k8 = SigningKey::from_pem(ec.serialize_pem().as_bytes()).unwrap();
        assert_eq!(k8.public().algorithm(), Algorithm::ES256);
        let secret = p256::SecretKey::from_pkcs8_der(&ec.serialize_der()).unwrap();
        let sec1 = pem("EC PRIVATE KEY", &secret.to_sec1_der().unwrap());
        let k1 = SigningKey::from_pem(sec1.as_bytes()).unwrap();
        assert_eq!(k1.public().kid(), k8.public().kid());
        // RSA: PKCS#8 and PKCS#1 of the same key agree.
        let rsa8 = openssl_rsa(2048, false);
        assert!(rsa8.contains("BEGIN PRIVATE KEY"));
        let r8 = SigningKey::from_pem(rsa8.as_bytes()).unwrap();
        assert_eq!(r8.public().algorithm(), Algorithm::RS256);
        let rsa1 = openssl_rsa(2048, true);
        assert!(rsa1.contains("BEGIN RSA PRIVATE KEY"));
        let r1 = SigningKey::from_pem(rsa1.as_bytes()).unwrap();
        assert_eq!(r1.public().algorithm(), Algorithm::RS256);
        assert_ne!(r1.public().kid(), r8.public().kid());
    }

    #[test]
    fn refuses_unsupported_keys_clearly() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let e = SigningKey::from_pem(p384.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.contains("P-384") && e.contains("only P-256"), "{e}");
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let e = SigningKey::from_pem(ed.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.contains("Ed25519"), "{e}");
        let e = SigningKey::from_pem(openssl_rsa(1024, false).as_bytes()).unwrap_err();
        assert!(e.contains("1024 bits"), "{e}");
        let e = SigningKey::from_pem(b"garbage").unwrap_err();
        assert!(e.contains("no private key"), "{e}");
        let e = SigningKey::from_pem(VECTOR_PEM.as_bytes()).unwrap_err();
        assert!(e.contains("no private key"), "{e}");
        let e = SigningKey::from_pem(pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00").as_bytes())
            .unwrap_err();
        assert!(e.contains("invalid PKCS#8"), "{e}");
        let two = format!("{}{}", p384.serialize_pem(), p384.serialize_pem());
        assert!(SigningKey::from_pem(two.as_bytes())
            .unwrap_err()
            .contains("more than one"));
        // A SEC1 P-384 key names its curve.
        let out = std::process::Command::new("openssl")
            .args(["ecparam", "-name", "secp384r1", "-genkey", "-noout"])
            .output()
            .unwrap();
        let e = SigningKey::from_pem(&out.stdout).unwrap_err();
        assert!(e.contains("P-384"), "{e}");
    }

    #[test]
    fn load_reports_a_diagnostic_with_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        std::fs::write(&p, "nope").unwrap();
        let d = SigningKey::load(&p).unwrap_err();
        assert_eq!(d.key.as_deref(), Some(KEY_SETTING));
        assert!(d.to_string().contains("k.pem"), "{d}");
    }

    #[test]
    fn dev_keypair_certificate_matches_and_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (key_path, cert_path) = generate_dev_keypair(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = SigningKey::load(&key_path).unwrap();
        let chain = load_certificate_chain(&cert_path, key.public()).unwrap();
        assert_eq!(chain.len(), 1);
        assert_eq!(
            PublicKey::from_pem(&std::fs::read(&cert_path).unwrap())
                .unwrap()
                .kid(),
            key.public().kid()
        );
        // Never overwrites.
        assert!(generate_dev_keypair(dir.path()).is_err());
        // Another key's certificate is refused under auth.token.certificate.
        let other = tempfile::tempdir().unwrap();
        let (other_key, _) = generate_dev_keypair(other.path()).unwrap();
        let other_key = SigningKey::load(&other_key).unwrap();
        let d = load_certificate_chain(&cert_path, other_key.public()).unwrap_err();
        assert_eq!(d.key.as_deref(), Some(CERTIFICATE_SETTING));
        assert!(d.message.contains("must be the certificate"), "{d}");
    }

    #[test]
    fn certificate_walker_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert_path) = generate_dev_keypair(dir.path()).unwrap();
        let der = certificate_chain_from_pem(&std::fs::read(cert_path).unwrap())
            .unwrap()
            .remove(0);
        assert!(certificate_spki(&der).is_some());
        for n in 0..der.len() {
            let _ = certificate_spki(&der[..n]);
            let mut flipped = der.clone();
            flipped[n] ^= 0xff;
            let _ = certificate_spki(&flipped);
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = certificate_spki(&v);
            let _ = PublicKey::from_spki_der(&v);
            let _ = SigningKey::from_pem(pem("PRIVATE KEY", &v).as_bytes());
            let _ = SigningKey::from_pem(pem("EC PRIVATE KEY", &v).as_bytes());
            let _ = SigningKey::from_pem(pem("RSA PRIVATE KEY", &v).as_bytes());
            let _ = PublicKey::from_pem(pem("CERTIFICATE", &v).as_bytes());
        }
    }
}
