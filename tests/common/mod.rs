//! Test harness: the real registry (Debian's `docker-registry`), the built `portcullis`
//! binary, and skopeo, each started on random loopback ports and stopped by PID on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod haproxy;
pub mod idp;
pub mod issuer;
pub mod redis;
pub mod slapd;
pub mod ui;

/// A free loopback port (bound then released; the tiny race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it is true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (by PID) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// What the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    Proc { child, log }
}

/// Debian's `docker-registry` (CNCF distribution 2.8) with filesystem storage in a temp dir.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub proc: Proc,
    /// How it was started (kept for `restart`).
    pub options: RegistryOptions,
}

/// How a test registry runs: plain or TLS, with or without its own auth, as a pull-through
/// cache or not.
#[derive(Clone, Default)]
pub struct RegistryOptions {
    /// Serve TLS with a certificate for 127.0.0.1 and localhost signed by a fresh private CA
    /// (written as `ca.pem` in the registry's folder).
    pub tls: bool,
    /// Keep the registry's own `auth: htpasswd` on, with these `(user, password)` accounts.
    pub htpasswd: Vec<(String, String)>,
    /// Raw YAML appended to the registry's configuration (e.g. a `proxy:` or `auth: token:`
    /// section).
    pub extra: String,
    /// The loopback address to listen on (`127.0.0.1` when empty; `[::1]` for IPv6).
    pub ip: String,
    /// With `tls`: demand a client certificate signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
    /// The certificate and key (one PEM file) the test's own client presents to it.
    pub client_identity: Option<PathBuf>,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(RegistryOptions::default())
    }

    /// A registry with `options` on a free port.
    pub fn start_with(options: RegistryOptions) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        if options.tls {
            make_certs(dir.path());
        }
        Self::start_in_with(dir, free_port(), options)
    }

    /// A registry with `options` on a given port (two registries on one port, one per
    /// loopback address, stand for one name resolving to two addresses).
    pub fn start_on(port: u16, options: RegistryOptions) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        if options.tls {
            make_certs(dir.path());
        }
        Self::start_in_with(dir, port, options)
    }

    fn ip(&self) -> &str {
        if self.options.ip.is_empty() {
            "127.0.0.1"
        } else {
            &self.options.ip
        }
    }

    /// The private CA that signed its certificate (TLS registries only).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A client for talking to it directly (trusting its CA).
    pub fn direct_client(&self) -> reqwest::blocking::Client {
        let mut b = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        if self.options.tls {
            let ca = std::fs::read(self.ca()).unwrap();
            b = b
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .tls_built_in_root_certs(false);
            if let Some(identity) = &self.options.client_identity {
                let pem = std::fs::read(identity).unwrap();
                b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
            }
        }
        b.build().unwrap()
    }

    fn start_in(dir: tempfile::TempDir, port: u16) -> Registry {
        Self::start_in_with(dir, port, RegistryOptions::default())
    }

    /// Stops the registry process (its storage stays).
    pub fn stop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }

    /// Starts it again on the same port with the same storage.
    pub fn restart(self) -> Registry {
        let Registry {
            dir,
            port,
            proc,
            options,
        } = self;
        drop(proc);
        Self::start_in_with(dir, port, options)
    }

    fn start_in_with(dir: tempfile::TempDir, port: u16, options: RegistryOptions) -> Registry {
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: \"{}:{port}\"\n",
            dir.path().join("data").display(),
            if options.ip.is_empty() { "127.0.0.1" } else { &options.ip }
        );
        if options.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.pem").display(),
                dir.path().join("server.key").display()
            ));
            if let Some(ca) = &options.client_ca {
                config.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
            }
        }
        if !options.htpasswd.is_empty() {
            let lines: String = options
                .htpasswd
                .iter()
                .map(|(u, p)| format!("{u}:{}\n", hash(p)))
                .collect();
            let file = dir.path().join("registry.htpasswd");
            std::fs::write(&file, lines).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                file.display()
            ));
        }
        config.push_str(&options.extra);
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let proc = spawn(
            Command::new("docker-registry").arg("serve").arg(&cfg),
            dir.path().join("registry.log"),
        );
        let registry = Registry {
            dir,
            port,
            proc,
            options,
        };
        // Up when `/v2/` answers at all (200, or 401 when it keeps its own auth on).
        let client = registry.direct_client();
        let url = format!("{}/v2/", registry.url());
        wait_until("registry", Duration::from_secs(20), || {
            client
                .get(&url)
                .send()
                .map(|r| r.status() == 200 || r.status() == 401)
                .unwrap_or(false)
        });
        registry
    }

    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.ip(), self.port)
    }

    /// Pushes a blob straight to the registry (upload start + monolithic PUT); its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let c = reqwest::blocking::Client::new();
        let digest = format!("sha256:{}", sha256_hex(data));
        let r = c
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.url()))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = c
            .put(format!("{loc}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text());
        digest
    }

    /// Pushes an OCI manifest (config `{}` and `layers`, with `annotations`) under `reference`
    /// straight to the registry; the manifest's digest.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        layers: &[(&str, usize)],
        annotations: serde_json::Value,
    ) -> String {
        let config_digest = self.push_blob(repo, b"{}");
        let layers: Vec<_> = layers
            .iter()
            .map(|(d, size)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size}))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2},
            "layers": layers,
            "annotations": annotations,
        })
        .to_string();
        let r = reqwest::blocking::Client::new()
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.url()))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text());
        format!("sha256:{}", sha256_hex(manifest.as_bytes()))
    }
}

/// Test TLS material made with rcgen: a CA and a server certificate for 127.0.0.1.
pub struct Certs {
    pub dir: PathBuf,
    pub ca_pem: String,
}

pub fn make_certs(dir: &Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portcullis test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    // skopeo's --cert-dir wants *.crt for CAs.
    let cert_dir = dir.join("skopeo-certs");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::write(cert_dir.join("ca.crt"), ca.pem()).unwrap();
    Certs {
        dir: dir.to_path_buf(),
        ca_pem: ca.pem(),
    }
}

/// bcrypt at the lowest cost: the tests exercise logic, not hashing speed.
pub fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// A running portcullis.
pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls: bool,
    pub proc: Proc,
}

/// Files to write next to proxy.yaml before starting.
pub struct ProxySetup<'a> {
    /// proxy.yaml without `listen:` (added here), may use `{upstream}`.
    pub config: &'a str,
    pub files: &'a [(&'a str, String)],
    pub tls: bool,
}

impl Proxy {
    pub fn start(setup: ProxySetup<'_>, upstream: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        for (name, text) in setup.files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let mut config = format!("listen: 127.0.0.1:{port}\nthreads: 2\n");
        if setup.tls {
            make_certs(dir.path());
            config.push_str("tls:\n  cert: server.pem\n  key: server.key\n");
        }
        config.push_str(&setup.config.replace("{upstream}", upstream));
        std::fs::write(dir.path().join("proxy.yaml"), config).unwrap();
        Self::launch(dir, port, setup.tls)
    }

    /// Runs `portcullis serve` on the proxy.yaml in `dir` and waits until it answers.
    fn launch(dir: tempfile::TempDir, port: u16, tls: bool) -> Proxy {
        let proc = spawn(
            Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .arg("serve")
                .arg("-c")
                .arg(dir.path().join("proxy.yaml"))
                .env("RUST_LOG", "info"),
            dir.path().join("portcullis.log"),
        );
        let proxy = Proxy {
            dir,
            port,
            tls,
            proc,
        };
        let client = proxy.client();
        let url = proxy.url("/v2/");
        wait_until("portcullis", Duration::from_secs(20), || {
            client
                .get(&url)
                .send()
                .map(|r| r.status() == 401)
                .unwrap_or(false)
        });
        // The admin listener is a service of its own, bound on its own thread: the proxy
        // answering says nothing about it. Tests read metrics right away, so wait for it too.
        let config = std::fs::read_to_string(proxy.dir.path().join("proxy.yaml")).unwrap();
        if let Some(admin) = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("admin_listen:"))
        {
            let metrics = format!("http://{}/metrics", admin.trim());
            wait_until("the admin listener", Duration::from_secs(20), || {
                reqwest::blocking::get(&metrics).is_ok()
            });
        }
        proxy
    }

    /// Sends SIGTERM and waits (up to `within`) until the process exits; its exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let pid = self.proc.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.proc.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                start.elapsed() < within,
                "portcullis did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the same configuration again on the same port, once this process has stopped
    /// (as a service manager restarts a replica); the previous log is kept as
    /// `portcullis.log.N`.
    pub fn restart(self) -> Proxy {
        let Proxy {
            dir,
            port,
            tls,
            proc,
            ..
        } = self;
        drop(proc);
        let log = dir.path().join("portcullis.log");
        let n = (1..)
            .find(|n| !dir.path().join(format!("portcullis.log.{n}")).exists())
            .unwrap();
        std::fs::rename(&log, dir.path().join(format!("portcullis.log.{n}"))).unwrap();
        Self::launch(dir, port, tls)
    }

    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// An HTTP client that trusts the test CA and never follows redirects.
    pub fn client(&self) -> reqwest::blocking::Client {
        let mut b = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60));
        if self.tls {
            let ca = std::fs::read(self.dir.path().join("ca.pem")).unwrap();
            b = b
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .tls_built_in_root_certs(false);
        }
        b.build().unwrap()
    }

    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("skopeo-certs")
    }
}

/// The `Etag` a [`Recorder`] answers with (the digest of `{}`); asked with it in
/// `If-None-Match`, it answers `304 Not Modified`, as distribution does for a manifest.
pub const RECORDER_ETAG: &str =
    "\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\"";

/// A listener that records every request it receives and answers 200 `{}` (or 304 to its own
/// Etag): used where a test must prove that something never reached the upstream, or what
/// headers did.
pub struct Recorder {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let recorder = Self::start_gated();
        recorder.open();
        recorder
    }

    /// A recorder that records requests at once but holds every answer until [`Recorder::open`]
    /// (to keep requests in flight upstream while a test looks at what else arrives).
    pub fn start_gated() -> Recorder {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let recorder = Self::start_with(gate.clone());
        Recorder { gate, ..recorder }
    }

    /// Lets held and future answers go.
    pub fn open(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    /// Holds answers again from now on, until the next [`Recorder::open`].
    pub fn close(&self) {
        *self.gate.0.lock().unwrap() = false;
    }

    fn start_with(gate: Arc<(Mutex<bool>, std::sync::Condvar)>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let held = gate.clone();
        std::thread::spawn(move || {
            let gate = held;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let seen = seen.clone();
                let gate = gate.clone();
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // Read one request head (these tests send no bodies upstream).
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end);
                        let head_only = head.starts_with("HEAD ");
                        let unchanged = head.lines().any(|l| {
                            l.to_ascii_lowercase().starts_with("if-none-match:")
                                && l.contains(RECORDER_ETAG)
                        });
                        seen.lock().unwrap().push(head);
                        let (open, opened) = &*gate;
                        let mut is_open = open.lock().unwrap();
                        while !*is_open {
                            is_open = opened.wait(is_open).unwrap();
                        }
                        drop(is_open);
                        // A HEAD answer has the GET answer's headers and no body.
                        let body = "{}";
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDocker-Distribution-API-Version: registry/2.0\r\nEtag: {RECORDER_ETAG}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let resp = if unchanged {
                            format!("HTTP/1.1 304 Not Modified\r\nEtag: {RECORDER_ETAG}\r\n\r\n")
                        } else if head_only {
                            resp.trim_end_matches(body).to_string()
                        } else {
                            resp
                        };
                        if stream.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Recorder {
            port,
            requests,
            gate,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Sends raw bytes on a new connection and returns the whole answer (connection closed by
/// the server or 5 s of silence). For requests no HTTP client library would send.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One answer is enough: stop at the end of its body when there is a length.
                if let Ok(text) = std::str::from_utf8(&out) {
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end].lines().find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        });
                        if let Some(len) = len {
                            if out.len() >= head_end + 4 + len {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Deterministic pseudo-random bytes (xorshift), so a big layer needs no entropy or storage.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    format!("{:x}", h.finalize())
}

/// Writes an OCI image layout at `dir` with one layer of `layer` bytes, tagged `tag`.
/// Returns the layer digest.
pub fn write_oci_image(dir: &Path, tag: &str, layer: &[u8]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_hex = sha256_hex(layer);
    std::fs::write(blobs.join(&layer_hex), layer).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
        "config": {}
    })
    .to_string();
    let config_hex = sha256_hex(config.as_bytes());
    std::fs::write(blobs.join(&config_hex), &config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_hex}"), "size": layer.len()}]
    })
    .to_string();
    let manifest_hex = sha256_hex(manifest.as_bytes());
    std::fs::write(blobs.join(&manifest_hex), &manifest).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{manifest_hex}"), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}]
    })
    .to_string();
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("sha256:{layer_hex}")
}

/// Runs skopeo; returns (success, stderr).
pub fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args)
        .output()
        .expect("skopeo is installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `skopeo copy` through the proxy with TLS trust or plain HTTP, as `creds` (`user:pass`).
pub fn copy(proxy: &Proxy, src: &str, dst: &str, creds: Option<&str>) -> (bool, String) {
    // --preserve-digests: layers travel byte for byte (no recompression), so tests can compare
    // what was pushed with what was pulled by digest.
    let mut args: Vec<String> = vec![
        "copy".into(),
        "--retry-times".into(),
        "0".into(),
        "--preserve-digests".into(),
    ];
    let remote_is_dst = dst.starts_with("docker://");
    let side = if remote_is_dst { "dest" } else { "src" };
    if proxy.tls {
        args.push(format!("--{side}-cert-dir={}", proxy.cert_dir().display()));
    } else {
        args.push(format!("--{side}-tls-verify=false"));
    }
    match creds {
        Some(c) => args.push(format!("--{side}-creds={c}")),
        None => args.push(format!("--{side}-no-creds")),
    }
    args.push(src.into());
    args.push(dst.into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    skopeo(&refs)
}

/// A series from the admin listener's /metrics.
pub fn metric(admin_port: u16, series: &str) -> f64 {
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// `portcullis_config_reloads_total{result}`.
pub fn reloads(admin_port: u16, result: &str) -> f64 {
    metric(
        admin_port,
        &format!("portcullis_config_reloads_total{{result=\"{result}\"}}"),
    )
}

/// Waits until the reload counter for `result` passed `before`; returns when it was seen.
pub fn wait_for_reload(admin_port: u16, result: &str, before: f64, within: Duration) -> Instant {
    let start = Instant::now();
    loop {
        if reloads(admin_port, result) > before {
            return Instant::now();
        }
        assert!(
            start.elapsed() < within,
            "no {result} reload within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the `portcullis` binary in `dir` as an operator would: exit code, stdout, stderr.
pub fn portcullis(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(dir)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Writes `files` (name, text) under `dir`, making folders as needed.
pub fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}
