//! The admin listener and the registry readiness probe, in-process: a fake registry on a real
//! `TcpListener` that is opened, closed and reopened, and the admin app served by a real
//! Pingora server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use portcullis::admin::{admin_service, readiness_service, Readiness, ReadinessProbe};
use portcullis::metrics::Metrics;
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
        addr,
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
    let probe = ReadinessProbe::new(addr, readiness.clone(), Arc::new(Metrics::new()))
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
        registry_addr,
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
