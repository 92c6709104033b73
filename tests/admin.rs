//! The admin listener and the registry readiness probe, in-process: a fake registry on a real
//! `TcpListener` that is opened, closed and reopened, and the admin app served by a real
//! Pingora server. Then the metrics of a real portcullis in front of the real registry, after
//! traffic and a certificate reload, checked by Prometheus's own `promtool`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use portcullis::admin::{admin_service, readiness_service, Readiness, ReadinessProbe};
use portcullis::metrics::Metrics;
use portcullis::upstream::{Upstream, Upstreams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A fake registry on `listener` answering every request with `status_line` (or, for `None`,
/// accepting and never answering).
fn fake_registry(listener: TcpListener, status_line: Option<&'static str>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                match status_line {
                    Some(line) => {
                        let answer = format!("{line}\r\nContent-Length: 0\r\n\r\n");
                        let _ = stream.write_all(answer.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    })
}

/// Stops a fake registry and closes its listening socket.
async fn stop(server: JoinHandle<()>) {
    server.abort();
    let _ = server.await;
}

/// Waits (polling) until `readiness` shows `up`; returns how long that took.
async fn wait_for(readiness: &Readiness, up: bool, limit: Duration) -> Duration {
    let start = Instant::now();
    while readiness.upstream_up() != up {
        assert!(
            start.elapsed() < limit,
            "upstream_up did not become {up} within {limit:?} ({:?})",
            readiness.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn gauge_line(metrics: &Metrics) -> String {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("portcullis_upstream_up "))
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_registry() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = fake_registry(listener, Some("HTTP/1.1 401 Unauthorized"));

    let readiness = Arc::new(Readiness::new());
    readiness.set_config_loaded(true);
    let metrics = Arc::new(Metrics::new());
    let probe = Arc::new(ReadinessProbe::new(
        Upstreams::single(Arc::new(Upstream::plain(addr))),
        readiness.clone(),
        metrics.clone(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn({
        let probe = probe.clone();
        async move { probe.run(stop_rx).await }
    });

    // A 401 counts as answering.
    wait_for(&readiness, true, Duration::from_secs(3)).await;
    assert_eq!(readiness.status(), Ok(()));
    assert_eq!(gauge_line(&metrics), "portcullis_upstream_up 1");

    // Registry gone: not ready within about two probe periods.
    stop(registry).await;
    let took = wait_for(&readiness, false, Duration::from_secs(3)).await;
    assert!(took <= Duration::from_millis(2500), "took {took:?}");
    let why = readiness.status().unwrap_err();
    assert!(why.contains("unreachable"), "{why}");
    assert_eq!(gauge_line(&metrics), "portcullis_upstream_up 0");

    // Back on the same address: ready again.
    let listener = TcpListener::bind(addr).await.unwrap();
    let registry = fake_registry(listener, Some("HTTP/1.1 200 OK"));
    wait_for(&readiness, true, Duration::from_secs(3)).await;
    stop(registry).await;

    // A registry answering 5xx is not ready.
    let listener = TcpListener::bind(addr).await.unwrap();
    let registry = fake_registry(listener, Some("HTTP/1.1 503 Service Unavailable"));
    wait_for(&readiness, false, Duration::from_secs(3)).await;
    let why = readiness.status().unwrap_err();
    assert!(why.contains("503"), "{why}");
    stop(registry).await;

    // Shutdown stops the probe and makes the process not ready.
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(3), running)
        .await
        .expect("probe stops on shutdown")
        .unwrap();
    assert_eq!(readiness.status(), Err("shutting down".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_registry_times_out_instead_of_hanging() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = fake_registry(listener, None);
    let readiness = Arc::new(Readiness::new());
    readiness.set_upstream(Ok(()));
    let probe = ReadinessProbe::new(
        Upstreams::single(Arc::new(Upstream::plain(addr))),
        readiness.clone(),
        Arc::new(Metrics::new()),
    )
    .with_timing(Duration::from_millis(100), Duration::from_millis(300));
    let start = Instant::now();
    assert!(!probe.probe_once().await);
    assert!(start.elapsed() < Duration::from_secs(1));
    readiness.set_config_loaded(true);
    let why = readiness.status().unwrap_err();
    assert!(why.contains("did not answer"), "{why}");
    stop(registry).await;
}

/// Shuts the in-process server down when the watch turns true.
struct Trigger(tokio::sync::watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for Trigger {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::FastShutdown
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn the_admin_service_answers_over_http() {
    // A fake registry on its own runtime, answering like registry:2 without credentials.
    let registry_rt = tokio::runtime::Runtime::new().unwrap();
    let registry_addr = registry_rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        fake_registry(listener, Some("HTTP/1.1 401 Unauthorized"));
        addr
    });

    let admin_addr = free_addr();
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new());
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: std::env::temp_dir()
            .join(format!("portcullis-admin-test-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir()
            .join(format!("portcullis-admin-test-{}.sock", std::process::id()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    server.add_service(admin_service(
        admin_addr,
        metrics.clone(),
        readiness.clone(),
    ));
    server.add_service(readiness_service(
        Upstreams::single(Arc::new(Upstream::plain(registry_addr))),
        readiness.clone(),
        metrics.clone(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = std::thread::spawn(move || {
        server.run(RunArgs {
            shutdown_signal: Box::new(Trigger(stop_rx)),
        })
    });

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{admin_addr}{path}");
    let start = Instant::now();
    let health = loop {
        match client.get(url("/healthz")).send() {
            Ok(r) => break r,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(10), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().unwrap(), "ok\n");

    // The registry answers, but no configuration is loaded yet.
    let not_ready = client.get(url("/readyz")).send().unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.text().unwrap().starts_with("not ready: "));
    readiness.set_config_loaded(true);
    let start = Instant::now();
    loop {
        let r = client.get(url("/readyz")).send().unwrap();
        if r.status() == 200 {
            assert_eq!(r.text().unwrap(), "ready\n");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", r.text());
        std::thread::sleep(Duration::from_millis(50));
    }

    metrics.token_issued();
    let scrape = client.get(url("/metrics")).send().unwrap();
    assert_eq!(scrape.status(), 200);
    assert_eq!(
        scrape.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = scrape.text().unwrap();
    assert!(
        text.contains("\nportcullis_tokens_issued_total 1\n"),
        "{text}"
    );
    assert!(text.contains("\nportcullis_upstream_up 1\n"), "{text}");

    let head = client.head(url("/metrics")).send().unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("content-length"));
    assert_eq!(head.bytes().unwrap().len(), 0);

    assert_eq!(client.get(url("/nope")).send().unwrap().status(), 404);
    let post = client.post(url("/metrics")).body("x").send().unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    // The connection is still usable after a refused method.
    assert_eq!(client.get(url("/healthz")).send().unwrap().status(), 200);

    stop_tx.send(true).unwrap();
    let start = Instant::now();
    while !running.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running.join().unwrap();
}

/// The proxy's /metrics text.
fn scrape(admin_port: u16) -> String {
    reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

/// The value of `series` (name and labels, exactly) in a scrape.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A TLS proxy with an admin listener, in front of a real registry.
fn tls_proxy(registry: &common::Registry, admin_port: u16) -> common::Proxy {
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", common::hash("bob-S3cret")),
        ),
        (
            "acl.yaml",
            "- match: {account: bob, name: \"bob/*\"}\n  actions: [pull, push]\n".to_string(),
        ),
    ];
    let config = format!(
        "upstream: {{upstream}}\nadmin_listen: 127.0.0.1:{admin_port}\nauth:\n  users: users.yaml\nacl: acl.yaml\n"
    );
    common::Proxy::start(
        common::ProxySetup {
            config: &config,
            files: &files,
            tls: true,
        },
        &registry.url(),
    )
}

/// `promtool check metrics` on `text`: `None` when promtool is not installed (Debian's
/// `prometheus` package; a failure instead under `PORTCULLIS_REQUIRE_DEPLOY_TOOLS`).
fn promtool_check(text: &str) -> Option<std::process::Output> {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let message = "SKIPPED: `promtool` is not installed (Debian's `prometheus` package; \
                 scripts/test.sh installs it; PORTCULLIS_REQUIRE_DEPLOY_TOOLS=1 makes this a failure)";
            if std::env::var_os("PORTCULLIS_REQUIRE_DEPLOY_TOOLS").is_some() {
                panic!("{message}");
            }
            eprintln!("{message}");
            return None;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn the_proxy_s_metrics_after_traffic_are_complete_and_pass_promtool() {
    let registry = common::Registry::start();
    let admin_port = common::free_port();
    let proxy = tls_proxy(&registry, admin_port);
    let before = scrape(admin_port);

    assert_eq!(
        value(
            &before,
            &format!(
                "portcullis_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    // Loaded at start: a moment ago.
    let loaded = value(
        &before,
        "portcullis_config_last_reload_success_timestamp_seconds",
    );
    assert!((unix_now() - loaded).abs() < 120.0, "loaded at {loaded}");
    // The test certificate (rcgen's default validity) ends on 4096-01-01.
    assert_eq!(
        value(
            &before,
            "portcullis_tls_certificate_expiry_timestamp_seconds"
        ),
        67_090_118_400.0
    );

    // Known traffic on one keep-alive connection.
    let client = proxy.client();
    let status = |path: &str, auth: bool| {
        let mut r = client.get(proxy.url(path));
        if auth {
            r = r.basic_auth("bob", Some("bob-S3cret"));
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(status("/v2/", true), 200);
    assert_eq!(status("/v2/", false), 401);
    assert_eq!(status("/v2/bob/app/tags/list", true), 404);
    assert_eq!(status("/v2/other/app/tags/list", true), 403);
    assert_eq!(status("/v2/Bad/app/tags/list", true), 400);
    // Its connection stays open (the one that waited for the proxy to start is closing).
    common::wait_until("one open connection", Duration::from_secs(5), || {
        value(&scrape(admin_port), "portcullis_client_connections") == 1.0
    });
    let after = scrape(admin_port);
    let class = |text: &str, class: &str| {
        value(
            text,
            &format!("portcullis_responses_total{{class=\"{class}\"}}"),
        )
    };
    for (c, n) in [("2xx", 1.0), ("4xx", 4.0), ("5xx", 0.0), ("3xx", 0.0)] {
        assert_eq!(class(&after, c) - class(&before, c), n, "{c}");
    }
    drop(client);
    common::wait_until("no open connection", Duration::from_secs(5), || {
        value(&scrape(admin_port), "portcullis_client_connections") == 0.0
    });

    // Prometheus's own linter finds nothing to say about the exposition.
    if let Some(out) = promtool_check(&after) {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && said.trim().is_empty(), "{said}");
    }
}

#[test]
fn the_certificate_expiry_and_reload_time_follow_a_reload() {
    let registry = common::Registry::start();
    let admin_port = common::free_port();
    let proxy = tls_proxy(&registry, admin_port);
    let first = scrape(admin_port);
    let loaded = value(
        &first,
        "portcullis_config_last_reload_success_timestamp_seconds",
    );
    let expiry = "portcullis_tls_certificate_expiry_timestamp_seconds";
    assert_eq!(value(&first, expiry), 67_090_118_400.0);

    // A new certificate (and key) valid until 2031-05-17, each replaced atomically.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 5, 17);
    let cert = params.self_signed(&key).unwrap();
    let successes = common::reloads(admin_port, "success");
    for (name, text) in [
        ("server.key", key.serialize_pem()),
        ("server.pem", cert.pem()),
    ] {
        let tmp = proxy.dir.path().join(format!("{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, proxy.dir.path().join(name)).unwrap();
    }
    common::wait_for_reload(admin_port, "success", successes, Duration::from_secs(15));
    let reloaded = scrape(admin_port);
    // date -u -d 2031-05-17 +%s
    assert_eq!(value(&reloaded, expiry), 1_936_742_400.0);
    assert!(
        value(
            &reloaded,
            "portcullis_config_last_reload_success_timestamp_seconds"
        ) > loaded
    );
    // A refused reload changes neither.
    let failures = common::reloads(admin_port, "failure");
    std::fs::write(proxy.dir.path().join("acl.yaml"), "- match: [\n").unwrap();
    common::wait_for_reload(admin_port, "failure", failures, Duration::from_secs(15));
    let refused = scrape(admin_port);
    assert_eq!(value(&refused, expiry), 1_936_742_400.0);
    assert_eq!(
        value(
            &refused,
            "portcullis_config_last_reload_success_timestamp_seconds"
        ),
        value(
            &reloaded,
            "portcullis_config_last_reload_success_timestamp_seconds"
        )
    );
}
