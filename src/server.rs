//! Builds the Pingora server from a [`Config`]: the proxy service on `listen` (TLS with
//! HTTP/2 via ALPN, or plain HTTP), worker threads, and shutdown timing.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::{self, Readiness};
use crate::authn::lockout::Lockout;
use crate::cache::ManifestCache;
use crate::config::Config;
use crate::limits::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::proxy::{Portcullis, Shared};
use crate::reload::Reloader;
use crate::shutdown::{Drain, SignalWatch};
use crate::state::State;
use crate::tls::CertResolver;
use crate::upstream::Upstreams;

/// Everything `serve` starts, ready to run.
pub struct Prepared {
    /// The Pingora server with the proxy service added.
    pub server: Server,
    /// The state requests are decided under; the reloader swaps it.
    pub state: Arc<ArcSwap<State>>,
    /// The TLS certificate in use, when TLS is on.
    pub certs: Option<Arc<CertResolver>>,
    /// Requests in flight, for graceful shutdown.
    pub drain: Arc<Drain>,
    /// How long SIGTERM waits for them.
    pub shutdown_timeout: std::time::Duration,
    /// How long SIGTERM keeps the listener open at the least, for load balancers to notice.
    pub shutdown_delay: std::time::Duration,
    /// The Prometheus series.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` answers.
    pub readiness: Arc<Readiness>,
    /// The manifest cache, when configured: what the cluster bus feeds
    /// ([`ManifestCache::receive`]).
    pub cache: Option<Arc<ManifestCache>>,
}

impl Prepared {
    /// Runs until a signal stops the server; SIGTERM drains requests in flight first.
    pub fn run(self) {
        let readiness = self.readiness.clone();
        let watch = SignalWatch::new(self.drain.clone(), self.shutdown_timeout)
            .with_delay(self.shutdown_delay)
            .on_drain(Box::new(move || readiness.set_shutting_down()));
        self.server.run(RunArgs {
            shutdown_signal: Box::new(watch),
        });
    }
}

/// Re-resolves the registries' names in the background (`upstream_resolve_interval`).
struct KeepResolving(Upstreams);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for KeepResolving {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        self.0.keep_resolving(shutdown).await;
    }
}

/// Sets the certificate expiry gauge from the certificate served now. One that cannot be read
/// is logged (rustls serves certificates without parsing them, so it may still work) and
/// leaves the gauge as it was.
fn record_certificate_expiry(certs: &CertResolver, metrics: &Metrics) {
    match certs.not_after() {
        Ok(not_after) => metrics.set_tls_certificate_expiry(not_after),
        Err(e) => tracing::warn!(error = %e, "cannot read the TLS certificate's expiry date"),
    }
}

/// Builds the server for `config` (read from `config_path`) with the already loaded `state`,
/// including the background reloader.
pub fn prepare(config_path: &Path, config: Arc<Config>, state: State) -> anyhow::Result<Prepared> {
    let upstreams = Upstreams::load(&config.upstreams).map_err(|e| anyhow!("{e}"))?;
    prepare_with(config_path, config, state, upstreams)
}

/// [`prepare`] with the registries already loaded (their addresses resolved, or given by a
/// lookup of the caller's: in-process tests of re-resolution and failover).
pub fn prepare_with(
    config_path: &Path,
    config: Arc<Config>,
    state: State,
    upstreams: Upstreams,
) -> anyhow::Result<Prepared> {
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(10),
        // Pingora's defaults put these in /tmp, shared by every instance on the machine.
        pid_file: std::env::temp_dir()
            .join(format!("portcullis-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir()
            .join(format!("portcullis-upgrade-{}.sock", std::process::id()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::new());
    let dropped = metrics.clone();
    crate::audit::on_drop(Box::new(move || dropped.audit_line_dropped()));
    metrics.set_acl_rules(state.acl.len());
    metrics.config_loaded();
    let readiness = Arc::new(Readiness::new());
    readiness.set_config_loaded(true);
    let state = Arc::new(ArcSwap::from_pointee(state));
    let drain = Drain::new();
    // `cluster:` is read at start only (like `listen`): the connection outlives reloads.
    let cluster = match &config.cluster {
        Some(settings) => {
            metrics.enable_cluster();
            let observer: Arc<dyn crate::cluster::Observer> = metrics.clone();
            Some(
                crate::cluster::Cluster::connect(settings, Some(observer))
                    .map_err(|e| anyhow!("cluster: {e}"))?,
            )
        }
        None => None,
    };
    // Outside the reloadable state: a reload must not wipe the failed-login counters.
    let lockout = Arc::new(match &cluster {
        Some(cluster) if config.auth.lockout.failures > 0 => Lockout::with_counters(
            config.auth.lockout.clone(),
            Box::new(crate::cluster::counters::SharedCounters::new(
                cluster.clone(),
                crate::authn::lockout::DEFAULT_CAPACITY,
            )),
        ),
        _ => Lockout::new(config.auth.lockout.clone()),
    });
    let revocations = Arc::new(crate::cluster::revocations::Revocations::new(
        cluster.clone(),
    ));
    // Outside the reloadable state too: a reload keeps what is cached (writes, not reloads,
    // make cached answers stale). The cluster bus, when there is one, replaces `Local`.
    let cache = config.cache.manifests.map(|settings| {
        Arc::new(ManifestCache::new(
            settings,
            metrics.clone(),
            Arc::new(crate::cache::Local),
        ))
    });
    let proxy = Portcullis::new(
        state.clone(),
        &config,
        upstreams.clone(),
        Shared {
            drain: drain.clone(),
            metrics: metrics.clone(),
            lockout,
            ui: Arc::new(
                crate::ui::Ui::new(&config.ui, revocations.clone())
                    .map_err(|e| anyhow!("ui: {e}"))?,
            ),
            revocations,
            rate: config.limits.rate.map(|settings| {
                Arc::new(crate::cluster::rate::RateLimiter::new(
                    settings,
                    cluster.clone(),
                ))
            }),
            cache: cache.clone(),
        },
    );
    let mut app = pingora::proxy::http_proxy(&server.configuration, proxy);
    // An HTTP/2 connection with no open stream is closed after `idle_timeout`, as an idle
    // HTTP/1 keep-alive connection is; otherwise idle h2 connections could hold every slot of
    // `max_connections`.
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(config.limits.idle_timeout);
    app.server_options = Some(options);
    let mut service = Service::new(
        "portcullis".to_string(),
        ConnectionLimiter::new(
            app,
            &config.limits,
            crate::client::TrustedProxies::new(config.trusted_proxies.clone()),
        )
        .with_metrics(metrics.clone()),
    );
    let listen = config.listen.to_string();
    let certs = match &config.tls {
        Some(tls) => {
            let key = crate::tls::load(&tls.cert, &tls.key).map_err(|d| anyhow!("{d}"))?;
            let resolver = Arc::new(CertResolver::new(key));
            let mut settings =
                TlsSettings::intermediate("", "").map_err(|e| anyhow!("TLS settings: {e}"))?;
            settings.set_cert_resolver(resolver.clone());
            settings.enable_h2();
            service.add_tls_with_settings(&listen, None, settings);
            Some(resolver)
        }
        None => {
            tracing::warn!(
                listen = %listen,
                "NO TLS: serving plain HTTP; passwords and tokens cross the network in clear text. Set `tls:` in the configuration for any real use."
            );
            service.add_tcp(&listen);
            None
        }
    };
    server.add_service(service);
    if let Some(certs) = &certs {
        record_certificate_expiry(certs, &metrics);
    }
    if let Some(admin) = config.admin_listen {
        server.add_service(admin::admin_service(
            admin,
            metrics.clone(),
            readiness.clone(),
        ));
        server.add_service(admin::readiness_service(
            upstreams.clone(),
            readiness.clone(),
            metrics.clone(),
        ));
    }
    let reload_metrics = metrics.clone();
    let reload_certs = certs.clone();
    let reloader = Reloader::new(
        config_path.to_path_buf(),
        config.clone(),
        state.clone(),
        certs.clone(),
    )
    .with_hook(Box::new(move |result| {
        reload_metrics.reload(result.is_ok());
        if let Ok(summary) = result {
            reload_metrics.set_acl_rules(summary.rules);
            reload_metrics.config_loaded();
            if let Some(certs) = &reload_certs {
                record_certificate_expiry(certs, &reload_metrics);
            }
        }
    }));
    server.add_service(background_service("reload", reloader));
    server.add_service(background_service(
        "resolve",
        KeepResolving(upstreams.clone()),
    ));
    Ok(Prepared {
        server,
        state,
        certs,
        drain,
        shutdown_timeout: config.shutdown_timeout,
        shutdown_delay: config.shutdown_delay,
        metrics,
        readiness,
        cache,
    })
}
