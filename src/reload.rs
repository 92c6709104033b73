//! Hot reload: watch every file the configuration names (and `SIGHUP`), build a complete new
//! [`State`] off the request path, and swap it in atomically. A set that fails to load is
//! not used: the old one stays and every error is logged with file:line.
//!
//! Files are watched through their folders, not directly, because both ways files get
//! replaced in production break a watch on the file itself: editors write a temporary file and
//! rename it over the original, and Kubernetes updates a mounted ConfigMap by swapping the
//! `..data` symlink in the folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::diagnostic::Diagnostics;
use crate::state::{State, Summary};
use crate::tls::CertResolver;

/// How long the files must stay quiet before a reload: editors and `kubectl` touch several
/// files in a burst, and one reload per burst is enough.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Called after every reload attempt with its outcome (metrics hang here).
pub type ReloadHook = Box<dyn Fn(&Result<Summary, Diagnostics>) + Send + Sync>;

/// Rebuilds and swaps the state; watches files in the background when run as a service.
pub struct Reloader {
    config_path: PathBuf,
    started_with: Arc<Config>,
    state: Arc<ArcSwap<State>>,
    certs: Option<Arc<CertResolver>>,
    hook: Option<ReloadHook>,
    /// One reload at a time: a SIGHUP during a file-triggered reload waits its turn.
    lock: Mutex<()>,
}

impl Reloader {
    /// A reloader for the state built from `config_path`, which started as `started_with`.
    pub fn new(
        config_path: PathBuf,
        started_with: Arc<Config>,
        state: Arc<ArcSwap<State>>,
        certs: Option<Arc<CertResolver>>,
    ) -> Self {
        Reloader {
            config_path,
            started_with,
            state,
            certs,
            hook: None,
            lock: Mutex::new(()),
        }
    }

    /// Sets the function told about every reload.
    pub fn with_hook(mut self, hook: ReloadHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Loads everything again and, if it all validates, swaps it in. Blocking (bcrypt-free but
    /// possibly large ACLs): call it off the async runtime.
    pub fn reload(&self) -> Result<Summary, Diagnostics> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.build_and_swap();
        match &result {
            Ok(summary) => tracing::info!(
                users = summary.users,
                htpasswd_users = summary.htpasswd_users,
                rules = summary.rules,
                "configuration reloaded"
            ),
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "configuration error");
                }
                tracing::error!(
                    errors = errors.0.len(),
                    "reload failed; the previous configuration stays in force"
                );
            }
        }
        if let Some(hook) = &self.hook {
            hook(&result);
        }
        result
    }

    fn build_and_swap(&self) -> Result<Summary, Diagnostics> {
        let config = Config::load(&self.config_path)?;
        self.warn_about_restart_only_changes(&config);
        let cert = match (&config.tls, &self.certs) {
            (Some(tls), Some(_)) => Some(crate::tls::load(&tls.cert, &tls.key)?),
            _ => None,
        };
        let (mut built, summary) = State::build(Arc::new(config))?;
        for w in &built.warnings {
            tracing::warn!("{w}");
        }
        let old = self.state.load();
        built.state.authn.adopt_cache(&old.authn);
        self.state.store(Arc::new(built.state));
        if let (Some(cert), Some(resolver)) = (cert, &self.certs) {
            resolver.replace(cert);
        }
        Ok(summary)
    }

    fn warn_about_restart_only_changes(&self, new: &Config) {
        let old = &self.started_with;
        let changed = [
            ("listen", old.listen != new.listen),
            ("admin_listen", old.admin_listen != new.admin_listen),
            ("upstream", old.upstream != new.upstream),
            ("tls (on/off)", old.tls.is_some() != new.tls.is_some()),
            ("threads", old.threads != new.threads),
            (
                "trusted_proxies",
                old.trusted_proxies != new.trusted_proxies,
            ),
            (
                "shutdown_timeout",
                old.shutdown_timeout != new.shutdown_timeout,
            ),
            ("limits", old.limits != new.limits),
            ("auth.lockout", old.auth.lockout != new.auth.lockout),
            (
                "ui.session_key_file",
                old.ui.session_key_file != new.ui.session_key_file,
            ),
        ];
        for (key, differs) in changed {
            if differs {
                tracing::warn!(
                    key,
                    "this setting changed but takes effect only after a restart"
                );
            }
        }
    }

    /// The folders to watch, and the paths inside them that matter.
    fn targets(&self) -> (BTreeSet<PathBuf>, Targets) {
        let state = self.state.load();
        let config = &state.config;
        let mut files = vec![self.config_path.clone()];
        if let Some(crate::config::UsersSource::File(p)) = &config.auth.users {
            files.push(p.clone());
        }
        files.extend(config.auth.htpasswd.iter().cloned());
        if let Some(tls) = &config.tls {
            files.push(tls.cert.clone());
            files.push(tls.key.clone());
        }
        if let Some(token) = &config.auth.token {
            files.push(token.key.clone());
            files.extend(token.certificate.iter().cloned());
        }
        let mut dirs = BTreeSet::new();
        // The ACL and the ACL tests may each be a file or a folder whose files all matter.
        let mut folders = Vec::new();
        for path in std::iter::once(&config.acl).chain(&config.acl_tests) {
            if path.is_dir() {
                dirs.insert(absolute(path));
                folders.push(absolute(path));
            } else {
                files.push(path.clone());
            }
        }
        let files: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        for f in &files {
            if let Some(parent) = f.parent() {
                dirs.insert(parent.to_path_buf());
            }
        }
        (dirs, Targets { files, folders })
    }
}

/// What a filesystem event must touch to be worth a reload.
struct Targets {
    files: Vec<PathBuf>,
    /// Folders any of whose (direct) files matter: the ACL folder, the ACL tests folder.
    folders: Vec<PathBuf>,
}

impl Targets {
    fn matters(&self, event: &notify::Result<notify::Event>) -> bool {
        event
            .as_ref()
            .is_ok_and(|e| is_change(&e.kind) && e.paths.iter().any(|p| self.relevant(p)))
    }

    fn relevant(&self, path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Kubernetes: `..data` and `..2026_…` are swapped in the mounted folder.
        name.starts_with("..")
            || self.files.iter().any(|f| f == path)
            || self
                .folders
                .iter()
                .any(|d| path.parent() == Some(d.as_path()))
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Events that can mean new content. Reads (open, access time) are not: our own reload
/// reads every file, and counting those would reload forever.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        _ => false,
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
        let mut watcher: RecommendedWatcher = match notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch files; reload with SIGHUP only");
                return self.sighup_only(shutdown).await;
            }
        };
        let mut watched = BTreeSet::new();
        let (dirs, mut targets) = self.targets();
        watch_dirs(&mut watcher, &mut watched, dirs);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot handle SIGHUP");
                return;
            }
        };
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => return,
                _ = hangup.recv() => "SIGHUP",
                event = rx.recv() => {
                    let Some(event) = event else { return };
                    if !targets.matters(&event) {
                        continue;
                    }
                    // Debounce: wait until the burst is over. Only events that matter extend
                    // the wait: a busy log file in the same folder must not postpone it forever.
                    let mut quiet_since = tokio::time::Instant::now();
                    loop {
                        match tokio::time::timeout_at(quiet_since + DEBOUNCE, rx.recv()).await {
                            Ok(Some(e)) if targets.matters(&e) => quiet_since = tokio::time::Instant::now(),
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => break,
                        }
                    }
                    "file change"
                }
            };
            tracing::info!(trigger, "reloading configuration");
            // Pingora gives each background service a runtime of its own, so blocking here
            // holds up only the watcher, never a request.
            let _ = self.reload();
            let (dirs, new_targets) = self.targets();
            targets = new_targets;
            watch_dirs(&mut watcher, &mut watched, dirs);
        }
    }
}

impl Reloader {
    async fn sighup_only(&self, mut shutdown: ShutdownWatch) {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hangup.recv() => { let _ = self.reload(); }
            }
        }
    }
}

fn watch_dirs(
    watcher: &mut RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
) {
    for dir in dirs {
        if watched.contains(&dir) {
            continue;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir);
            }
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RenameMode};

    #[test]
    fn reads_are_not_changes() {
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
    }

    #[test]
    fn relevant_paths() {
        let t = Targets {
            files: vec![
                PathBuf::from("/etc/p/proxy.yaml"),
                PathBuf::from("/etc/p/users.yaml"),
            ],
            folders: vec![PathBuf::from("/etc/p/acl")],
        };
        assert!(t.relevant(Path::new("/etc/p/users.yaml")));
        assert!(t.relevant(Path::new("/etc/p/acl/10.yaml")));
        assert!(t.relevant(Path::new("/etc/p/..data")));
        assert!(t.relevant(Path::new("/etc/p/acl/..2026_11_25_07_00_00.123")));
        assert!(!t.relevant(Path::new("/etc/p/README.md")));
        assert!(!t.relevant(Path::new("/etc/p/acl/sub/x.yaml")));
    }
}
