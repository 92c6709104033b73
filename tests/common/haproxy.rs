//! Debian's real `haproxy` (2.6) on a random loopback port, round-robin in HTTP mode in front
//! of N backends, stopped by PID on drop.
//!
//! The settings are the ones a fleet of replicas needs to be restarted one at a time without a
//! client noticing: health checks on each backend's readiness endpoint (a draining replica
//! turns not-ready and is taken out within one check interval), `retry-on conn-failure
//! empty-response 503` with `option redispatch 1` (a request refused by a stopping replica is
//! replayed on another one, when its body fit in HAProxy's buffer), and the admin socket, so a
//! test can read the servers' states and move a backend to another address.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{free_port, spawn, wait_until, Proc};

/// The backend's name in the generated configuration.
pub const BACKEND: &str = "replicas";

/// One server behind HAProxy.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Where requests go.
    pub addr: SocketAddr,
    /// Where the health check goes (`GET {health_path}` must answer 200), when it is another
    /// port than `addr`'s (an admin listener); `None` checks on `addr` itself.
    pub check_port: Option<u16>,
}

/// What to generate besides the backends.
#[derive(Debug, Clone)]
pub struct Options {
    /// The path each backend answers 200 on while it should get traffic.
    pub health_path: String,
    /// Time between health checks (HAProxy's `inter`): how fast a draining backend leaves.
    pub check_interval: Duration,
    /// Client and server inactivity timeouts.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            health_path: "/readyz".into(),
            check_interval: Duration::from_millis(200),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A running HAProxy.
pub struct Haproxy {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub proc: Proc,
    servers: usize,
}

fn ms(d: Duration) -> u128 {
    d.as_millis().max(1)
}

/// The generated `haproxy.cfg`.
fn config(port: u16, socket: &std::path::Path, backends: &[Backend], o: &Options) -> String {
    let mut cfg = format!(
        "global\n\
         \x20 stats socket {socket} mode 600 level admin\n\
         \x20 maxconn 4096\n\
         \x20 log stdout format raw local0 info\n\
         defaults\n\
         \x20 mode http\n\
         \x20 log global\n\
         \x20 option httplog\n\
         \x20 option dontlognull\n\
         \x20 option forwardfor\n\
         \x20 timeout connect 2s\n\
         \x20 timeout client {t}ms\n\
         \x20 timeout server {t}ms\n\
         \x20 timeout http-request {t}ms\n\
         \x20 timeout queue 10s\n\
         \x20 retries 3\n\
         \x20 option redispatch 1\n\
         \x20 retry-on conn-failure empty-response 503\n\
         frontend clients\n\
         \x20 bind 127.0.0.1:{port}\n\
         \x20 default_backend {BACKEND}\n\
         backend {BACKEND}\n\
         \x20 balance roundrobin\n\
         \x20 option httpchk GET {health}\n\
         \x20 http-check expect status 200\n\
         \x20 default-server inter {i}ms fastinter {i}ms downinter {i}ms fall 1 rise 1\n",
        socket = socket.display(),
        t = ms(o.timeout),
        i = ms(o.check_interval),
        health = o.health_path,
    );
    for (n, b) in backends.iter().enumerate() {
        cfg.push_str(&format!("  server s{n} {} check", b.addr));
        if let Some(p) = b.check_port {
            cfg.push_str(&format!(" port {p}"));
        }
        cfg.push('\n');
    }
    cfg
}

impl Haproxy {
    /// Starts HAProxy in front of `backends` and waits until it accepts connections and every
    /// backend passed its health check.
    pub fn start(backends: &[Backend], options: &Options) -> Haproxy {
        let h = Self::start_unchecked(backends, options);
        for n in 0..backends.len() {
            h.wait_up(n);
        }
        h
    }

    /// Starts HAProxy and waits only until it accepts connections (backends may be down).
    pub fn start_unchecked(backends: &[Backend], options: &Options) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let socket = dir.path().join("admin.sock");
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(port, &socket, backends, options)).unwrap();
        let check = Command::new("/usr/sbin/haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .expect("haproxy is installed");
        assert!(
            check.status.success(),
            "haproxy rejects the generated configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let proc = spawn(
            Command::new("/usr/sbin/haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&cfg),
            dir.path().join("haproxy.log"),
        );
        let h = Haproxy {
            dir,
            port,
            proc,
            servers: backends.len(),
        };
        wait_until("haproxy", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() && h.socket().exists()
        });
        h
    }

    /// The client-facing base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:port`, for image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// Sends one command to the admin socket; its answer.
    pub fn command(&self, cmd: &str) -> String {
        let mut s = UnixStream::connect(self.socket()).expect("haproxy admin socket");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Column `column` of each server's line in HAProxy's statistics (`show stat`, CSV).
    fn stat_column(&self, column: usize) -> Vec<String> {
        let csv = self.command("show stat");
        let mut values = vec![String::new(); self.servers];
        for line in csv.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() > column && fields[0] == BACKEND {
                if let Some(n) = fields[1]
                    .strip_prefix('s')
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    if n < values.len() {
                        values[n] = fields[column].to_string();
                    }
                }
            }
        }
        values
    }

    /// Each server's status as HAProxy's statistics show it (`UP`, `DOWN`, `MAINT`, ...).
    pub fn states(&self) -> Vec<String> {
        self.stat_column(17)
    }

    /// Requests server `n` is handling now (`scur`): to stop a backend while it is busy.
    pub fn current_sessions(&self, n: usize) -> usize {
        self.stat_column(4)[n].parse().unwrap_or(0)
    }

    /// Waits until server `n` passed its health check.
    pub fn wait_up(&self, n: usize) {
        wait_until(
            &format!("haproxy server s{n} up"),
            Duration::from_secs(30),
            || self.states()[n] == "UP",
        );
    }

    /// Waits until server `n` is out of rotation (failed its health check).
    pub fn wait_down(&self, n: usize) {
        wait_until(
            &format!("haproxy server s{n} down"),
            Duration::from_secs(30),
            || self.states()[n].starts_with("DOWN"),
        );
    }

    /// Points server `n` (and its health check) at `addr` from now on.
    pub fn set_backend(&self, n: usize, backend: &Backend) {
        let out = self.command(&format!(
            "set server {BACKEND}/s{n} addr {} port {}",
            backend.addr.ip(),
            backend.addr.port()
        ));
        assert!(
            out.contains("changed") || out.trim().is_empty() || out.contains("no need"),
            "haproxy refused the new address: {out}"
        );
        let p = backend.check_port.unwrap_or(backend.addr.port());
        let out = self.command(&format!("set server {BACKEND}/s{n} check-port {p}"));
        assert!(
            !out.to_ascii_lowercase().contains("error") && !out.contains("require"),
            "haproxy refused the check port: {out}"
        );
    }

    /// What HAProxy printed so far (its request log, one line per request).
    pub fn output(&self) -> String {
        self.proc.output()
    }

    /// The logged requests that did not end normally (termination state other than `----`,
    /// e.g. `SH--` for a server that closed mid-answer) or were retried or redispatched: what
    /// to look at when a client saw an error.
    pub fn unusual_requests(&self) -> Vec<String> {
        self.output()
            .lines()
            .filter(|l| l.contains('"') && (!l.contains(" ---- ") || l.contains(" +")))
            .map(str::to_string)
            .collect()
    }
}
