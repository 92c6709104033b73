//! A CI token issuer for the federation tests: a small HTTPS server (rustls, a private CA
//! made with rcgen) serving an OpenID discovery document and a JWKS, and signing job tokens
//! with RSA (openssl) or EC P-256 (rcgen) keys. The published keys can be replaced while it
//! runs (rotation), and it counts how often the JWKS was fetched.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// A signing key and its public JWK.
#[derive(Clone)]
pub struct SignKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
    /// The public key as PEM (what an attacker would use as an HMAC secret).
    pub public_pem: String,
}

impl SignKey {
    /// An RSA 2048 key (RS256), made with `openssl genrsa`.
    pub fn rsa(kid: &str) -> SignKey {
        let out = std::process::Command::new("openssl")
            .args(["genrsa", "2048"])
            .output()
            .expect("openssl");
        assert!(out.status.success());
        let pem = out.stdout;
        let public = std::process::Command::new("openssl")
            .args(["rsa", "-pubout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&pem)?;
                c.wait_with_output()
            })
            .unwrap();
        let encoding = EncodingKey::from_rsa_pem(&pem).unwrap();
        Self::new(
            kid,
            Algorithm::RS256,
            encoding,
            String::from_utf8(public.stdout).unwrap(),
        )
    }

    /// An EC P-256 key (ES256), made with rcgen.
    pub fn ec(kid: &str) -> SignKey {
        let pair = rcgen::KeyPair::generate().unwrap();
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        Self::new(kid, Algorithm::ES256, encoding, pair.public_key_pem())
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey, public_pem: String) -> SignKey {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        SignKey {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk,
            public_pem,
        }
    }

    /// A token signed with this key, its kid in the header.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The running issuer.
pub struct Issuer {
    /// `https://127.0.0.1:PORT`: the `iss` of its tokens.
    pub url: String,
    /// The CA that signed its certificate (PEM file), for `ca_certificate`.
    pub ca_path: PathBuf,
    published: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Issuer {
    /// Starts serving `keys`.
    pub fn start(keys: &[&SignKey]) -> Issuer {
        let dir = tempfile::tempdir().unwrap();
        let certs = super::make_certs(dir.path());
        let ca_path = certs.dir.join("ca.pem");
        let chain: Vec<_> =
            rustls_pemfile::certs(&mut &std::fs::read(dir.path().join("server.pem")).unwrap()[..])
                .collect::<Result<_, _>>()
                .unwrap();
        let key = rustls_pemfile::private_key(
            &mut &std::fs::read(dir.path().join("server.key")).unwrap()[..],
        )
        .unwrap()
        .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let published = Arc::new(Mutex::new(
            keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (p, f, u) = (published.clone(), fetches.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, p, f, u) = (config.clone(), p.clone(), f.clone(), u.clone());
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split_whitespace().nth(1).unwrap_or("");
                    let (status, body) = match path {
                        "/.well-known/openid-configuration" => (
                            "200 OK",
                            serde_json::json!({"issuer": u, "jwks_uri": format!("{u}/jwks")})
                                .to_string(),
                        ),
                        "/jwks" => {
                            f.fetch_add(1, Ordering::SeqCst);
                            let keys = p.lock().unwrap().clone();
                            ("200 OK", serde_json::json!({ "keys": keys }).to_string())
                        }
                        _ => ("404 Not Found", "{}".to_string()),
                    };
                    let _ = write!(
                        tls,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        Issuer {
            url,
            ca_path,
            published,
            fetches,
            _dir: dir,
        }
    }

    /// Publishes `keys` instead of the current ones (a rotation).
    pub fn publish(&self, keys: &[&SignKey]) {
        *self.published.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// How often the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Claims of a GitHub-style job token for `repository`, audience `aud`, expiring
    /// `exp_in` seconds from now (negative: already expired).
    pub fn claims(&self, aud: &str, repository: &str, exp_in: i64) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        serde_json::json!({
            "iss": self.url,
            "aud": aud,
            "sub": format!("repo:{repository}:ref:refs/heads/main"),
            "repository": repository,
            "ref": "refs/heads/main",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + exp_in,
        })
    }
}
