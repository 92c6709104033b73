//! A real OpenLDAP `slapd` for the LDAP tests: run as the current user from
//! `tests/fixtures/ldap/slapd.conf` (mdb, memberof overlay) with its data in a temp dir, on
//! random loopback ports, seeded from `tests/fixtures/ldap/seed.ldif` with `ldapadd` (not
//! `slapadd`, which would bypass the memberof overlay). Stopped by PID on drop; can be
//! stopped, paused and restarted on the same ports to simulate outages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, make_certs, spawn, wait_until, Proc};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ldap");

/// The seed's service account.
pub const BIND_DN: &str = "uid=serviceaccount,ou=it,dc=example,dc=com";
/// Its password.
pub const BIND_PASSWORD: &str = "servicepw";
/// The search base: the musicians. The philosophers are outside it.
pub const BASE: &str = "ou=musicians,dc=example,dc=com";
/// The filter the tests configure.
pub const FILTER: &str = "(&(objectClass=inetOrgPerson)(uid={account}))";

const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
const ROOT_PW: &str = "adminpw";

/// A running (or stopped) slapd.
pub struct Slapd {
    pub dir: tempfile::TempDir,
    /// `ldap://` port (StartTLS works on it when started with TLS).
    pub port: u16,
    /// `ldaps://` port, when started with TLS.
    pub ldaps_port: Option<u16>,
    proc: Option<Proc>,
}

impl Slapd {
    /// Starts slapd (with TLS on a second, ldaps, port when `tls`) and loads the seed.
    pub fn start(tls: bool) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let tls_directives = if tls {
            let tls_dir = dir.path().join("tls");
            std::fs::create_dir_all(&tls_dir).unwrap();
            make_certs(&tls_dir);
            format!(
                "TLSCACertificateFile {0}/ca.pem\nTLSCertificateFile {0}/server.pem\nTLSCertificateKeyFile {0}/server.key\n",
                tls_dir.display()
            )
        } else {
            String::new()
        };
        let template = std::fs::read_to_string(Path::new(FIXTURES).join("slapd.conf")).unwrap();
        let conf = template
            .replace("@DIR@", &dir.path().display().to_string())
            .replace("@TLS@", &tls_directives);
        std::fs::write(dir.path().join("slapd.conf"), conf).unwrap();
        std::fs::write(dir.path().join("bind.pw"), format!("{BIND_PASSWORD}\n")).unwrap();
        let mut slapd = Slapd {
            dir,
            port: free_port(),
            ldaps_port: tls.then(free_port),
            proc: None,
        };
        slapd.run();
        let out = Command::new("ldapadd")
            .args(["-x", "-H", &slapd.url(), "-D", ROOT_DN, "-w", ROOT_PW, "-f"])
            .arg(Path::new(FIXTURES).join("seed.ldif"))
            .output()
            .expect("ldapadd is installed");
        assert!(
            out.status.success(),
            "seeding failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        slapd
    }

    /// Starts the process on the configured ports and waits until it answers a bind.
    fn run(&mut self) {
        assert!(self.proc.is_none(), "slapd is already running");
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.ldaps_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let proc = spawn(
            Command::new("/usr/sbin/slapd")
                .arg("-f")
                .arg(self.dir.path().join("slapd.conf"))
                .args(["-h", &urls, "-d", "0"]),
            self.dir.path().join("slapd.log"),
        );
        self.proc = Some(proc);
        let url = self.url();
        let log = self.dir.path().join("slapd.log");
        wait_until("slapd", Duration::from_secs(20), || {
            if let Some(p) = self.proc.as_mut() {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!(
                        "slapd exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            Command::new("ldapwhoami")
                .args(["-x", "-H", &url, "-D", ROOT_DN, "-w", ROOT_PW])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    }

    /// Kills slapd (SIGKILL, by PID): an outage. The data stays for [`Slapd::restart`].
    pub fn stop(&mut self) {
        drop(self.proc.take());
    }

    /// Starts slapd again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.run();
    }

    /// SIGSTOP: slapd keeps its sockets but answers nothing (a hung server).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Slapd::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.proc.as_ref().expect("slapd is running").child.id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// An OpenLDAP client tool (`ldapmodify`, `ldapmodrdn`, …) bound as the directory's
    /// administrator; add its own arguments and run it.
    #[allow(dead_code)] // not every test binary edits the directory
    pub fn as_admin(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW]);
        cmd
    }

    /// `ldap://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:port` (TLS only).
    pub fn ldaps_url(&self) -> String {
        format!(
            "ldaps://127.0.0.1:{}",
            self.ldaps_port.expect("started with TLS")
        )
    }

    /// The CA that signed the server certificate (TLS only).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// A file with the service account's password and a trailing newline.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("bind.pw")
    }

    /// What slapd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// An `auth.ldap` configuration for this server over plain `ldap://`, with labels
    /// `groups` (from memberOf) and `dept` (from departmentNumber).
    pub fn config(&self) -> portcullis::config::Ldap {
        portcullis::config::Ldap {
            url: self.url(),
            start_tls: false,
            ca_certificate: None,
            bind_dn: BIND_DN.into(),
            bind_password_file: self.password_file(),
            base: BASE.into(),
            filter: FILTER.into(),
            account_attribute: "uid".into(),
            labels: [
                ("groups".to_string(), "memberOf".to_string()),
                ("dept".to_string(), "departmentNumber".to_string()),
            ]
            .into(),
            timeout: Duration::from_secs(2),
            cache: Duration::from_secs(60),
        }
    }

    /// The same, as proxy.yaml's `auth.ldap:` section (indented for `auth:`), with the
    /// password file at `password_file` (relative to proxy.yaml).
    pub fn yaml(&self, password_file: &str, cache: &str) -> String {
        format!(
            "  ldap:\n    url: {}\n    bind_dn: \"{BIND_DN}\"\n    bind_password_file: {password_file}\n    base: \"{BASE}\"\n    filter: \"{FILTER}\"\n    labels: {{groups: memberOf}}\n    timeout: 1s\n    cache: {cache}\n",
            self.url()
        )
    }
}
