//! Debian's real `redis-server` on a random loopback port, with no persistence, stopped by PID
//! on drop (or by [`Redis::kill`] mid-test, and started again on the same port by
//! [`Redis::restart`]).

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::{free_port, spawn, wait_until, Proc};

/// A running (or killed) redis-server.
pub struct Redis {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub proc: Option<Proc>,
    /// Served over TLS only, with the test CA's certificate (`dir/ca.pem` signs it).
    pub tls: bool,
    /// `requirepass`, when set.
    pub password: Option<String>,
}

impl Redis {
    /// A fresh server on a free port.
    pub fn start() -> Redis {
        Self::start_with(false, None)
    }

    /// A fresh server, over TLS only when `tls` (certificates from [`super::make_certs`] in
    /// its folder), asking for `password` when given.
    pub fn start_with(tls: bool, password: Option<&str>) -> Redis {
        let mut r = Redis {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            proc: None,
            tls,
            password: password.map(str::to_owned),
        };
        if tls {
            super::make_certs(r.dir.path());
        }
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL, by PID): its data is gone, as after a crash without
    /// persistence.
    pub fn kill(&mut self) {
        self.proc = None;
        wait_until("redis-server to stop", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }

    /// Starts the server (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.proc = None;
        let mut cmd = Command::new("/usr/bin/redis-server");
        let port = self.port.to_string();
        if self.tls {
            let d = self.dir.path();
            cmd.args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(d.join("server.pem"))
                .arg("--tls-key-file")
                .arg(d.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(d.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &port]);
        }
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        let proc = spawn(&mut cmd, self.dir.path().join("redis.log"));
        self.proc = Some(proc);
        wait_until("redis-server", Duration::from_secs(10), || {
            self.command(&["PING"]).is_some_and(|r| r.trim() == "PONG")
        });
    }

    /// Runs `redis-cli` (Debian's redis-tools, beside the server) with `args`: its output,
    /// `None` when the server cannot be reached. For checks from the test side only.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("/usr/bin/redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.tls {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(self.dir.path().join("ca.pem"));
        }
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd.args(args).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// The keys matching `pattern` (`KEYS`, fine for a test's few keys).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self
            .command(&["--no-raw", "KEYS", pattern])
            .unwrap_or_default();
        reply
            .lines()
            .filter_map(|l| Some(l.split_once(") ")?.1.trim_matches('"').to_owned()))
            .collect()
    }
}
