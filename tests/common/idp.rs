//! A real OpenID provider for the single sign-on tests: `tests/oidc-provider/server.mjs`
//! (npm's certified `oidc-provider`) over TLS with its own test CA, issuer
//! `https://localhost:<port>` — another site than portcullis on `127.0.0.1`, as a real provider
//! is. Stopped by PID on drop; restarting it on the same port rotates its signing key.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, make_certs, spawn, wait_until, Proc};

/// The static client registered at the provider.
pub const CLIENT_ID: &str = "portcullis";
/// Its secret.
pub const CLIENT_SECRET: &str = "test-client-secret";

/// Where the fixture lives.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// True when node and the fixture's npm packages are there; otherwise says why and skips, or
/// fails when `PORTCULLIS_REQUIRE_DEPLOY_TOOLS` is set (scripts/test.sh installs them and sets it).
pub fn available() -> bool {
    let node = Command::new("node").arg("--version").output().is_ok();
    let packages = fixture()
        .join("node_modules/oidc-provider/package.json")
        .is_file();
    if node && packages {
        return true;
    }
    let message = "SKIPPED: node or tests/oidc-provider/node_modules is missing (scripts/test.sh runs npm ci there; PORTCULLIS_REQUIRE_DEPLOY_TOOLS=1 makes this a failure)";
    if std::env::var_os("PORTCULLIS_REQUIRE_DEPLOY_TOOLS").is_some() {
        panic!("{message}");
    }
    eprintln!("{message}");
    false
}

/// A running provider.
pub struct Idp {
    pub dir: tempfile::TempDir,
    pub port: u16,
    spec: String,
    proc: Option<Proc>,
    starts: u32,
}

impl Idp {
    /// A provider not started yet: its port, folder and TLS material, so portcullis can be
    /// configured with its issuer and CA first.
    pub fn new() -> Idp {
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path());
        Idp {
            dir,
            port: free_port(),
            spec: String::new(),
            proc: None,
            starts: 0,
        }
    }

    /// Starts the provider with `accounts` (login → claims) and a client whose only redirect
    /// address is `redirect_uri`.
    pub fn start(&mut self, accounts: serde_json::Value, redirect_uri: &str) {
        self.spec = serde_json::json!({
            "issuer": self.issuer(),
            "client": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                       "redirect_uris": [redirect_uri]},
            "accounts": accounts,
        })
        .to_string();
        self.run();
    }

    fn run(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("idp-{}.log", self.starts));
        let proc = spawn(
            Command::new("node")
                .arg(fixture().join("server.mjs"))
                .arg(self.port.to_string())
                .arg(self.dir.path().join("server.pem"))
                .arg(self.dir.path().join("server.key"))
                .env("OIDC_TEST_SPEC", &self.spec),
            log,
        );
        wait_until("the OpenID provider", Duration::from_secs(30), || {
            proc.output().contains("listening ")
        });
        self.proc = Some(proc);
    }

    /// Stops the provider and starts it again on the same port: a new signing key and `kid`.
    pub fn restart(&mut self) {
        self.proc = None;
        self.run();
    }

    /// The signing key id of the running provider.
    pub fn kid(&self) -> String {
        let out = self.proc.as_ref().unwrap().output();
        out.split("kid=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }

    /// `https://localhost:<port>`.
    pub fn issuer(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The PEM file of the CA that signed the provider's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// What the provider printed.
    pub fn output(&self) -> String {
        self.proc.as_ref().map(|p| p.output()).unwrap_or_default()
    }
}
