//! Hot reload: watch every file the configuration names (and `SIGHUP`), build a complete new
//! [`State`] off the request path, and swap it in atomically. A set that fails to load is
//! not used: the old one stays and every error is logged with file:line.
//!
//! Files are watched through their folders, not directly, because both ways files get
//! replaced in production break a watch on the file itself: editors write a temporary file and
//! rename it over the original, and Kubernetes updates a mounted ConfigMap by swapping the
//! `..data` symlink in the folder.
//!
//! A file rewritten in place can be read half-written, and a half that still parses can be
//! more permissive than the whole (a deny rule not yet written, a label cut off). So a reload
//! first waits until the files have been quiet for [`DEBOUNCE`], then reads every watched file
//! twice, [`DEBOUNCE`] apart, and builds only when both reads agree; after the build it reads
//! them once more and swaps only if they still agree. A write that pauses for less than two
//! debounces between its chunks therefore never takes effect half-way (a longer pause cannot
//! be told from a finished write: replace files atomically). Files that keep changing for
//! [`SETTLE_ROUNDS`] rounds give up with a logged, counted failure; the old state stays, and
//! the reloader starts over (quiet period, two reads) so the final content is loaded once the
//! writer stops, without waiting for another change.

pub mod snapshot;

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
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::state::{State, Summary};
use crate::tls::CertResolver;

/// How long the files must stay quiet before a reload (editors and `kubectl` touch several
/// files in a burst, and one reload per burst is enough), and how far apart the two reads are
/// that must agree before the files are used.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Rounds of "read, wait [`DEBOUNCE`], read again" before a reload whose files keep changing
/// gives up (10 s).
pub const SETTLE_ROUNDS: u32 = 20;

/// Why a build was not swapped in.
enum Failure {
    /// The files do not load; the old state stays.
    Invalid(Diagnostics),
    /// This file changed while the state was being built from it: read again.
    Changed(PathBuf),
}

/// A state built from the files, with what goes with it, before it is swapped in.
struct Loaded {
    config: Arc<Config>,
    cert: Option<rustls::sign::CertifiedKey>,
    built: crate::state::Built,
    summary: Summary,
}

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

    /// Loads everything again once the files have settled and, if it all validates, swaps it
    /// in. `events` (the watcher's) are drained while waiting: changes made meanwhile are seen
    /// by reading the files, not by reacting to each event. Blocks its thread while building
    /// (bcrypt-free but possibly large ACLs): run it where that holds up no request.
    pub async fn reload(
        &self,
        events: Option<&mut mpsc::UnboundedReceiver<notify::Result<notify::Event>>>,
    ) -> Result<Summary, Diagnostics> {
        self.reload_settled(events).await.0
    }

    /// [`Self::reload`], and whether it gave up because the files kept changing.
    async fn reload_settled(
        &self,
        mut events: Option<&mut mpsc::UnboundedReceiver<notify::Result<notify::Event>>>,
    ) -> (Result<Summary, Diagnostics>, bool) {
        let mut last_change = self.config_path.clone();
        for _ in 0..SETTLE_ROUNDS {
            let (_, targets) = self.targets();
            let first = targets.snapshot();
            wait_draining(DEBOUNCE, events.as_deref_mut()).await;
            let settled = targets.snapshot();
            if let Some(changed) = first.first_difference(&settled) {
                tracing::debug!(file = %changed.display(), "still changing; reading again");
                last_change = changed;
                continue;
            }
            match self.build_and_swap(&targets, &settled) {
                Ok(summary) => return (self.report(Ok(summary)), false),
                Err(Failure::Invalid(errors)) => return (self.report(Err(errors)), false),
                Err(Failure::Changed(changed)) => {
                    tracing::debug!(file = %changed.display(), "changed during the reload; reading again");
                    last_change = changed;
                }
            }
        }
        let waited = DEBOUNCE * SETTLE_ROUNDS;
        let result = self.report(Err(Diagnostics(vec![Diagnostic::new(
            &last_change,
            format!(
                "kept changing for {}s: not reloaded. Replace files atomically (write a new file, then rename it over the old one)",
                waited.as_secs()
            ),
        )])));
        (result, true)
    }

    /// Logs the outcome of a reload and tells the hook (metrics).
    fn report(&self, result: Result<Summary, Diagnostics>) -> Result<Summary, Diagnostics> {
        match &result {
            Ok(summary) => tracing::info!(
                users = summary.users,
                htpasswd_users = summary.htpasswd_users,
                rules = summary.rules,
                access_keys = summary.keys.unwrap_or(0),
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

    /// Builds a state from the files and swaps it in, provided they still read as `settled`
    /// afterwards (so the build saw the settled content, not a write that began meanwhile).
    fn build_and_swap(
        &self,
        targets: &Targets,
        settled: &snapshot::Snapshot,
    ) -> Result<Summary, Failure> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let built = self.build();
        if let Some(changed) = settled.first_difference(&targets.snapshot()) {
            return Err(Failure::Changed(changed));
        }
        let Loaded {
            config,
            cert,
            mut built,
            summary,
        } = built.map_err(Failure::Invalid)?;
        self.warn_about_restart_only_changes(&config);
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

    /// Everything loaded from the files, not yet in force.
    fn build(&self) -> Result<Loaded, Diagnostics> {
        let config = Arc::new(Config::load(&self.config_path)?);
        let cert = match (&config.tls, &self.certs) {
            (Some(tls), Some(_)) => Some(crate::tls::load(&tls.cert, &tls.key)?),
            _ => None,
        };
        let (built, summary) = State::build(config.clone())?;
        Ok(Loaded {
            config,
            cert,
            built,
            summary,
        })
    }

    fn warn_about_restart_only_changes(&self, new: &Config) {
        let old = &self.started_with;
        let changed = [
            ("listen", old.listen != new.listen),
            ("admin_listen", old.admin_listen != new.admin_listen),
            ("upstream/upstreams", old.upstreams != new.upstreams),
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
            ("shutdown_delay", old.shutdown_delay != new.shutdown_delay),
            ("limits", old.limits != new.limits),
            ("cache", old.cache != new.cache),
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
        files.extend(config.auth.ldap_file.iter().cloned());
        files.extend(config.auth.keys.iter().cloned());
        files.extend(
            config
                .auth
                .federation
                .iter()
                .filter_map(|f| f.ca_certificate.clone()),
        );
        if let Some(tls) = &config.tls {
            files.push(tls.cert.clone());
            files.push(tls.key.clone());
        }
        if let Some(token) = &config.auth.token {
            files.push(token.key.clone());
            files.extend(token.certificate.iter().cloned());
        }
        if let Some(oidc) = &config.auth.oidc {
            files.push(oidc.client_secret_file.clone());
            files.extend(oidc.ca_certificate.iter().cloned());
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
    /// What the watched files hold now.
    fn snapshot(&self) -> snapshot::Snapshot {
        snapshot::Snapshot::take(&self.files, &self.folders)
    }

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
        // Set when a reload gave up on files that kept changing: their final content must
        // still be loaded once they settle, even if no further event comes.
        let mut still_changing = false;
        loop {
            let trigger = if std::mem::take(&mut still_changing) {
                debounce(&mut rx, &targets).await;
                "files still changing"
            } else {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = hangup.recv() => "SIGHUP",
                    event = rx.recv() => {
                        let Some(event) = event else { return };
                        if !targets.matters(&event) {
                            continue;
                        }
                        debounce(&mut rx, &targets).await;
                        "file change"
                    }
                }
            };
            tracing::info!(trigger, "reloading configuration");
            // Pingora gives each background service a runtime of its own, so blocking here
            // holds up only the watcher, never a request.
            let (_, gave_up) = self.reload_settled(Some(&mut rx)).await;
            still_changing = gave_up;
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
                _ = hangup.recv() => { let _ = self.reload(None).await; }
            }
        }
    }
}

/// Waits until the burst of events is over: [`DEBOUNCE`] without an event that matters. Only
/// those extend the wait: a busy log file in the same folder must not postpone it forever.
async fn debounce(
    rx: &mut mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    targets: &Targets,
) {
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout_at(quiet_since + DEBOUNCE, rx.recv()).await {
            Ok(Some(e)) if targets.matters(&e) => quiet_since = tokio::time::Instant::now(),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
}

/// Waits `how_long`, consuming `events` meanwhile (the files are compared after the wait).
async fn wait_draining(
    how_long: Duration,
    events: Option<&mut mpsc::UnboundedReceiver<notify::Result<notify::Event>>>,
) {
    let deadline = tokio::time::Instant::now() + how_long;
    if let Some(events) = events {
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, events.recv()).await {}
    }
    tokio::time::sleep_until(deadline).await;
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
