//! The admin listener (`admin_listen`): `/metrics`, `/healthz`, `/readyz`, never on the client
//! port.
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | the [`Metrics`] in the Prometheus text format |
//! | `GET /healthz` | `200 ok` while the process serves |
//! | `GET /readyz` | `200 ready` when the configuration is loaded and the registry answered the latest probe of `GET /v2/` with a status below 500; else `503` and why |
//! | other paths | 404; methods other than GET and HEAD: 405 |
//!
//! `/readyz` never waits for the registry: [`ReadinessProbe`], a background service, probes
//! it every [`PROBE_INTERVAL`] with a [`PROBE_TIMEOUT`] and stores the result in
//! [`Readiness`], which the admin app only reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService, GenBackgroundService};
use pingora::services::listening::Service;

use crate::metrics::{self, Metrics};
use crate::upstream::{Upstream, Upstreams};

/// How often the registry is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long one probe (connect, request, status line) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Whether portcullis is ready for traffic, as last seen. Shared by the admin app (reads), the
/// probe (writes the upstream half) and start-up/reload (writes the configuration half).
#[derive(Debug)]
pub struct Readiness {
    config_loaded: AtomicBool,
    upstream_up: AtomicBool,
    shutting_down: AtomicBool,
    /// Why the upstream is not up (short, for the 503 body).
    upstream_problem: Mutex<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Not ready: no configuration loaded, registry not probed yet.
    pub fn new() -> Self {
        Readiness {
            config_loaded: AtomicBool::new(false),
            upstream_up: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            upstream_problem: Mutex::new("registry not probed yet".to_string()),
        }
    }

    /// Records that a valid configuration is in force.
    pub fn set_config_loaded(&self, loaded: bool) {
        self.config_loaded.store(loaded, Ordering::Release);
    }

    /// Records a probe result: `Ok` when the registry answered, else the short reason.
    pub fn set_upstream(&self, result: Result<(), String>) {
        let up = result.is_ok();
        if let Err(problem) = result {
            *self
                .upstream_problem
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = problem;
        }
        self.upstream_up.store(up, Ordering::Release);
    }

    /// Whether the latest probe found the registry answering.
    pub fn upstream_up(&self) -> bool {
        self.upstream_up.load(Ordering::Acquire)
    }

    /// Marks the process as stopping: not ready any more, so load balancers drain it.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else why not.
    pub fn status(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".to_string());
        }
        if !self.config_loaded.load(Ordering::Acquire) {
            return Err("configuration not loaded".to_string());
        }
        if !self.upstream_up() {
            let problem = self
                .upstream_problem
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(problem);
        }
        Ok(())
    }
}

/// The admin HTTP app.
pub struct AdminApp {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

impl AdminApp {
    /// An app serving `metrics` and `readiness`.
    pub fn new(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Self {
        AdminApp { metrics, readiness }
    }

    /// The answer to `method path` (the path without the query). Pure apart from reading the
    /// shared state; the body is the GET body even for HEAD (Pingora drops it and keeps
    /// `Content-Length`).
    pub fn respond(&self, method: &Method, path: &str) -> Response<Vec<u8>> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
                .unwrap_or_else(|| fallback(StatusCode::METHOD_NOT_ALLOWED));
            response.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            return response;
        }
        let built = match path {
            "/metrics" => build(StatusCode::OK, metrics::CONTENT_TYPE, self.metrics.encode()),
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.readiness.status() {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {why}\n"),
                ),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        };
        built.unwrap_or_else(|| fallback(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

fn build(status: StatusCode, content_type: &str, body: String) -> Option<Response<Vec<u8>>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .ok()
}

fn text(status: StatusCode, body: &str) -> Option<Response<Vec<u8>>> {
    build(status, "text/plain; charset=utf-8", body.to_string())
}

fn fallback(status: StatusCode) -> Response<Vec<u8>> {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, 0.into());
    response
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_string());
        // Admin requests carry no body; a client that sends one gets no keep-alive.
        if method != Method::GET && method != Method::HEAD {
            session.set_keepalive(None);
        }
        self.respond(&method, &path)
    }
}

/// The admin listening service on `addr`, one thread. Add it with `server.add_service(…)`.
pub fn admin_service(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Service<AdminApp> {
    let mut service = Service::new("admin".to_string(), AdminApp::new(metrics, readiness));
    service.add_tcp(&addr.to_string());
    service.threads = Some(1);
    service
}

/// Probes the registry's `GET /v2/` in the background and keeps [`Readiness`] and the
/// `portcullis_upstream_up` gauge current.
pub struct ReadinessProbe {
    upstreams: Upstreams,
    connector: Connector,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    interval: Duration,
    timeout: Duration,
}

impl ReadinessProbe {
    /// A probe of `upstream` every [`PROBE_INTERVAL`] with a [`PROBE_TIMEOUT`].
    pub fn new(upstreams: Upstreams, readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Self {
        ReadinessProbe {
            upstreams,
            connector: Connector::new(None),
            readiness,
            metrics,
            interval: PROBE_INTERVAL,
            timeout: PROBE_TIMEOUT,
        }
    }

    /// Changes the probe period and per-probe timeout.
    pub fn with_timing(mut self, interval: Duration, timeout: Duration) -> Self {
        self.interval = interval;
        self.timeout = timeout;
        self
    }

    /// Probes once and records the result.
    pub async fn probe_once(&self) -> bool {
        // Every registry, each within the timeout; ready only when all answer (a request for
        // any prefix may come).
        let mut problems = Vec::new();
        for upstream in self.upstreams.all() {
            // Every address the name resolves to: the registry is up when one answers
            // (requests skip the others, which are marked failed here too).
            let mut failures = Vec::new();
            let addresses = upstream.addresses().all();
            for addr in addresses.iter() {
                let probed = probe(upstream, *addr, &self.connector);
                let result = match tokio::time::timeout(self.timeout, probed).await {
                    Ok(result) => result,
                    Err(_) => Err(format!(
                        "registry {} ({addr}) did not answer GET /v2/ within {} ms",
                        upstream.url(),
                        self.timeout.as_millis()
                    )),
                };
                match result {
                    Ok(()) => upstream.addresses().mark_ok(*addr),
                    Err(problem) => {
                        upstream.addresses().mark_failed(*addr);
                        failures.push(problem);
                    }
                }
            }
            let up = failures.len() < addresses.len();
            self.metrics.set_registry_up(&upstream.url(), up);
            self.metrics
                .set_registry_tokens(&upstream.url(), upstream.tokens_fetched());
            if !up {
                problems.extend(failures);
            }
        }
        let result = if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        };
        if let Err(problem) = &result {
            if self.readiness.upstream_up() {
                tracing::warn!(problem = %problem, "registry not ready");
            }
        } else if !self.readiness.upstream_up() {
            tracing::info!("registry ready");
        }
        let up = result.is_ok();
        self.readiness.set_upstream(result);
        self.metrics.set_upstream_up(up);
        up
    }

    /// Probes until `shutdown` turns true (or its sender goes away), then marks the process
    /// not ready.
    pub async fn run(&self, mut shutdown: ShutdownWatch) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.probe_once().await;
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        self.readiness.set_shutting_down();
    }
}

#[async_trait]
impl BackgroundService for ReadinessProbe {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.run(shutdown).await;
    }
}

/// The background service running a [`ReadinessProbe`]. Add it with `server.add_service(…)`.
pub fn readiness_service(
    upstream: Upstreams,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
) -> GenBackgroundService<ReadinessProbe> {
    background_service(
        "readiness",
        ReadinessProbe::new(upstream, readiness, metrics),
    )
}

/// One `GET /v2/` over a fresh connection (TLS and the service account's credentials as
/// configured): `Ok` for any HTTP status below 500, except a 401 from a registry that keeps
/// its own auth on, which means portcullis's credentials are refused and nothing would work.
async fn probe(
    upstream: &Arc<Upstream>,
    addr: SocketAddr,
    connector: &Connector,
) -> Result<(), String> {
    let name = format!("{} ({addr})", upstream.url());
    let target = upstream.target();
    // Never released to the pool: each probe is a new connection, as a client's first
    // request would be.
    let (mut session, _) = connector
        .get_http_session(&upstream.peer_at(addr))
        .await
        .map_err(|e| format!("registry {name} unreachable: {e}"))?;
    let io = |e: pingora::BError| format!("registry {name}: {e}");
    let mut req = RequestHeader::build("GET", b"/v2/", None).map_err(io)?;
    req.insert_header("Host", &target.host).map_err(io)?;
    req.insert_header("User-Agent", "portcullis-readiness")
        .map_err(io)?;
    req.insert_header("Connection", "close").map_err(io)?;
    let authorization = upstream
        .authorization(&[])
        .await
        .map_err(|e| format!("registry {name}: no credentials for it: {e}"))?;
    if let Some(authorization) = &authorization {
        req.insert_header("Authorization", authorization)
            .map_err(io)?;
    }
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(io)?;
    session.finish_request_body().await.map_err(io)?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("registry {name} sent no HTTP answer: {e}"))?;
    let status = session
        .response_header()
        .map(|h| h.status.as_u16())
        .ok_or_else(|| format!("registry {name} sent no HTTP answer"))?;
    match status {
        401 if upstream.has_auth() => Err(format!(
            "registry {name} refused portcullis's upstream_auth credentials (401 on GET /v2/)"
        )),
        s if s < 500 => Ok(()),
        s => Err(format!("registry {name} answered GET /v2/ with {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> (AdminApp, Arc<Metrics>, Arc<Readiness>) {
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::new());
        (
            AdminApp::new(metrics.clone(), readiness.clone()),
            metrics,
            readiness,
        )
    }

    fn parts(r: &Response<Vec<u8>>) -> (u16, String, String) {
        (
            r.status().as_u16(),
            r.headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            String::from_utf8(r.body().clone()).unwrap(),
        )
    }

    #[test]
    fn healthz_is_ok() {
        let (app, _, _) = app();
        let (status, ctype, body) = parts(&app.respond(&Method::GET, "/healthz"));
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        assert!(ctype.starts_with("text/plain"));
    }

    #[test]
    fn metrics_in_text_format() {
        let (app, metrics, _) = app();
        metrics.token_issued();
        let r = app.respond(&Method::GET, "/metrics");
        let (status, ctype, body) = parts(&r);
        assert_eq!(status, 200);
        assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            body.contains("\nportcullis_tokens_issued_total 1\n"),
            "{body}"
        );
        assert_eq!(
            r.headers()[http::header::CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
    }

    #[test]
    fn readyz_needs_config_and_upstream() {
        let (app, _, readiness) = app();
        let (status, _, body) = parts(&app.respond(&Method::GET, "/readyz"));
        assert_eq!(status, 503);
        assert_eq!(body, "not ready: configuration not loaded\n");

        readiness.set_config_loaded(true);
        let (status, _, body) = parts(&app.respond(&Method::GET, "/readyz"));
        assert_eq!(status, 503);
        assert_eq!(body, "not ready: registry not probed yet\n");

        readiness.set_upstream(Ok(()));
        let (status, _, body) = parts(&app.respond(&Method::GET, "/readyz"));
        assert_eq!((status, body.as_str()), (200, "ready\n"));

        readiness.set_upstream(Err(
            "registry 10.0.0.1:5000 answered GET /v2/ with 502".into()
        ));
        let (status, _, body) = parts(&app.respond(&Method::GET, "/readyz"));
        assert_eq!(status, 503);
        assert!(body.contains("502"), "{body}");

        readiness.set_upstream(Ok(()));
        readiness.set_shutting_down();
        let (status, _, body) = parts(&app.respond(&Method::HEAD, "/readyz"));
        assert_eq!((status, body.as_str()), (503, "not ready: shutting down\n"));
    }

    #[test]
    fn other_paths_and_methods() {
        let (app, _, _) = app();
        assert_eq!(app.respond(&Method::GET, "/").status(), 404);
        assert_eq!(app.respond(&Method::GET, "/metrics/").status(), 404);
        assert_eq!(app.respond(&Method::GET, "/v2/").status(), 404);
        assert_eq!(app.respond(&Method::HEAD, "/healthz").status(), 200);
        let r = app.respond(&Method::POST, "/metrics");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[http::header::ALLOW], "GET, HEAD");
        assert_eq!(app.respond(&Method::DELETE, "/healthz").status(), 405);
    }
}
