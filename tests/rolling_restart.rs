//! Replicas behind HAProxy: the HAProxy helper itself, and a rolling restart under load.

mod common;

use std::time::Duration;

use common::haproxy::{Backend, Haproxy, Options};
use common::redis::Redis;
use common::*;

/// The helper's contract: requests are spread round-robin, a backend whose health check fails
/// leaves the rotation, and a backend can be moved to another address.
#[test]
fn haproxy_spreads_requests_and_follows_health_checks() {
    let a = Recorder::start();
    let b = Recorder::start();
    let c = Recorder::start();
    let backend = |r: &Recorder| Backend {
        addr: format!("127.0.0.1:{}", r.port).parse().unwrap(),
        check_port: None,
    };
    let h = Haproxy::start(&[backend(&a), backend(&b)], &Options::default());
    let client = reqwest::blocking::Client::new();
    let hits = |r: &Recorder| {
        r.seen()
            .iter()
            .filter(|s| s.starts_with("GET /v2/x"))
            .count()
    };
    for _ in 0..6 {
        let r = client.get(format!("{}/v2/x", h.url())).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!((hits(&a), hits(&b)), (3, 3), "round-robin");

    // Server 1 moves to `c` (health checks too): its traffic follows.
    h.set_backend(
        1,
        &Backend {
            check_port: Some(c.port),
            ..backend(&c)
        },
    );
    h.wait_up(1);
    // A new client connection per request: HAProxy may send the later requests of a kept-alive
    // session over an idle connection it still holds to the old address, but never the first
    // request of a session (`http-reuse safe`).
    let fresh = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..4 {
        let r = fresh.get(format!("{}/v2/x", h.url())).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(hits(&b), 3, "nothing more for the old address");
    assert_eq!(hits(&a) + hits(&c), 7);
    assert!(hits(&c) >= 1, "the new address gets traffic");

    // A backend that is not listening fails its check and is taken out.
    let gone = Backend {
        addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        check_port: None,
    };
    h.set_backend(1, &gone);
    h.wait_down(1);
    for _ in 0..4 {
        let r = client.get(format!("{}/v2/x", h.url())).send().unwrap();
        assert_eq!(r.status(), 200, "served by the healthy backend");
    }
}

const REPLICAS: usize = 3;
/// Clients pushing and pulling at the same time.
const WORKERS: usize = 4;
/// Distinct images pushed (and pulled back) at the least.
const MIN_IMAGES: usize = 20;
/// Size of each image's layer.
const LAYER: usize = 3 * 1024 * 1024;

/// HAProxy's health-check interval. Not shorter on purpose: for up to this long after SIGTERM
/// HAProxy still sends new requests to the draining replica, and those (upload chunks among
/// them) are what a broken drain would lose.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longer than HAProxy needs to see a draining replica's `/readyz` fail (one check).
const SHUTDOWN_DELAY: &str = "2s";
/// Times each replica is restarted (ROLLING_RESTART_ROUNDS overrides it).
const ROUNDS: usize = 2;

/// A replica's `cluster:` section: the fleet shares its state through the test's own
/// `redis-server`, as a real fleet would while it is restarted.
fn cluster_section(redis: &Redis) -> String {
    format!("cluster:\n  redis: {}\n", redis.url())
}

/// The same proxy.yaml for every replica, but for its own ports: token mode with one key
/// pair, so a token one replica issued is honoured by the others.
fn replica_config(admin_port: u16, redis: &Redis) -> String {
    format!(
        "admin_listen: 127.0.0.1:{admin_port}\nupstream: {{upstream}}\nshutdown_timeout: 60s\nshutdown_delay: {SHUTDOWN_DELAY}\n\
         auth:\n  challenge: token\n  users: users.yaml\n  token:\n    issuer: fleet\n    service: fleet\n    key: token.key\n    certificate: token.crt\n    expiration: 5m\n\
         acl: acl.yaml\n{}",
        cluster_section(redis)
    )
}

struct Replica {
    proxy: Proxy,
    admin: u16,
}

impl Replica {
    fn backend(&self) -> Backend {
        Backend {
            addr: format!("127.0.0.1:{}", self.proxy.port).parse().unwrap(),
            check_port: Some(self.admin),
        }
    }

    /// Waits until the replica's own readiness endpoint says it takes traffic.
    fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        wait_until("replica ready", Duration::from_secs(30), || {
            reqwest::blocking::get(&url)
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        });
    }
}

/// One image on disk: its OCI layout and its blobs by file name.
struct Image {
    layout: tempfile::TempDir,
    repo: String,
}

/// The blobs of an OCI layout: file name (hex digest) → bytes.
fn blobs(layout: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// skopeo through HAProxy, plain HTTP, as bob; Err(stderr) when it failed.
fn skopeo_copy(src: &str, dst: &str) -> Result<(), String> {
    let side = if dst.starts_with("docker://") {
        "dest"
    } else {
        "src"
    };
    let (ok, err) = skopeo(&[
        "copy",
        "--retry-times",
        "0",
        "--preserve-digests",
        &format!("--{side}-tls-verify=false"),
        &format!("--{side}-creds=bob:bobpw"),
        src,
        dst,
    ]);
    if ok {
        Ok(())
    } else {
        Err(err)
    }
}

/// Pulls `image` and compares every blob with what was pushed.
fn pull_and_compare(lb: &str, image: &Image) -> Result<(), String> {
    let out = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("docker://{lb}/{}:v1", image.repo),
        &format!("oci:{}:v1", out.path().display()),
    )?;
    let pulled = blobs(out.path());
    let pushed = blobs(image.layout.path());
    if pulled != pushed {
        return Err(format!(
            "{}: pulled blobs {:?} differ from pushed {:?}",
            image.repo,
            pulled.keys().collect::<Vec<_>>(),
            pushed.keys().collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// Seeds that differ from run to run.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

#[derive(Default)]
struct Tally {
    pushes: usize,
    pulls: usize,
    failures: Vec<String>,
}

/// Three replicas behind HAProxy, each stopped with SIGTERM and started again in turn while
/// skopeo pushes and pulls run without pause: no client operation fails and every image pulled
/// is the image pushed, byte for byte.
#[test]
fn rolling_restart_under_load_loses_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let registry = Registry::start();
    let redis = Redis::start();
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = portcullis::token::generate_dev_keypair(keys.path()).unwrap();
    let files = vec![
        (
            "users.yaml",
            format!("bob:\n  password: \"{}\"\n", hash("bobpw")),
        ),
        (
            "acl.yaml",
            "- match: {account: bob}\n  actions: [\"*\"]\n".to_string(),
        ),
        ("token.key", std::fs::read_to_string(key).unwrap()),
        ("token.crt", std::fs::read_to_string(cert).unwrap()),
    ];
    let mut replicas: Vec<Option<Replica>> = (0..REPLICAS)
        .map(|_| {
            let admin = free_port();
            let proxy = Proxy::start(
                ProxySetup {
                    config: &replica_config(admin, &redis),
                    files: &files,
                    tls: false,
                },
                &registry.url(),
            );
            let r = Replica { proxy, admin };
            r.wait_ready();
            Some(r)
        })
        .collect();
    let backends: Vec<Backend> = replicas
        .iter()
        .map(|r| r.as_ref().unwrap().backend())
        .collect();
    let lb = Haproxy::start(
        &backends,
        &Options {
            check_interval: CHECK_INTERVAL,
            ..Options::default()
        },
    );
    let host = lb.host();

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let next_image = Arc::new(AtomicUsize::new(0));
    let pushed: Arc<Mutex<Vec<Arc<Image>>>> = Arc::default();
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let seed = random_seed();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (stop, next_image, pushed, tally, host) = (
                stop.clone(),
                next_image.clone(),
                pushed.clone(),
                tally.clone(),
                host.clone(),
            );
            std::thread::spawn(move || {
                // Until told to stop and enough images went through: push a fresh image, pull
                // it back, and pull one pushed earlier (by any worker).
                while !(stop.load(Ordering::Acquire)
                    && next_image.load(Ordering::Acquire) >= MIN_IMAGES)
                {
                    let n = next_image.fetch_add(1, Ordering::AcqRel);
                    let layout = tempfile::tempdir().unwrap();
                    let layer = pseudo_random(LAYER, seed ^ (n as u64).wrapping_mul(0x9e37_79b9));
                    write_oci_image(layout.path(), "v1", &layer);
                    let image = Arc::new(Image {
                        layout,
                        repo: format!("bob/img{n}"),
                    });
                    let push = skopeo_copy(
                        &format!("oci:{}:v1", image.layout.path().display()),
                        &format!("docker://{host}/{}:v1", image.repo),
                    );
                    {
                        let mut t = tally.lock().unwrap();
                        t.pushes += 1;
                        if let Err(e) = push {
                            t.failures.push(format!("push {}: {e}", image.repo));
                            continue;
                        }
                    }
                    pushed.lock().unwrap().push(image.clone());
                    let again = pull_and_compare(&host, &image);
                    let earlier = {
                        let all = pushed.lock().unwrap();
                        all[(n * 7 + w) % all.len()].clone()
                    };
                    let before = pull_and_compare(&host, &earlier);
                    let mut t = tally.lock().unwrap();
                    t.pulls += 2;
                    for r in [again, before] {
                        if let Err(e) = r {
                            t.failures.push(format!("pull: {e}"));
                        }
                    }
                }
            })
        })
        .collect();

    // The load is running once a first image went through; then restart each replica in turn.
    let ops = |t: &Arc<Mutex<Tally>>| {
        let t = t.lock().unwrap();
        t.pushes + t.pulls
    };
    wait_until("a first image pushed", Duration::from_secs(120), || {
        !pushed.lock().unwrap().is_empty()
    });
    let rounds: usize = std::env::var("ROLLING_RESTART_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    for n in (0..rounds).flat_map(|_| 0..REPLICAS) {
        let slot = &mut replicas[n];
        let mut replica = slot.take().unwrap();
        let before = ops(&tally);
        // Stop it in the middle of something.
        wait_until("a request on the replica", Duration::from_secs(60), || {
            lb.current_sessions(n) > 0
        });
        let code = replica.proxy.terminate(Duration::from_secs(90));
        assert_eq!(code, Some(0), "{}", replica.proxy.proc.output());
        lb.wait_down(n);
        let proxy = replica.proxy.restart();
        let replica = Replica {
            proxy,
            admin: replica.admin,
        };
        replica.wait_ready();
        lb.wait_up(n);
        *slot = Some(replica);
        // Under load all along: operations went on across this restart.
        wait_until("load after a restart", Duration::from_secs(120), || {
            ops(&tally) > before + 2
        });
    }
    stop.store(true, Ordering::Release);
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = started.elapsed();
    let t = tally.lock().unwrap();
    println!(
        "rolling restart of {REPLICAS} replicas under load: {} operations ({} pushes, {} pulls) of {} images, {} failures, in {:.1?}",
        t.pushes + t.pulls,
        t.pushes,
        t.pulls,
        pushed.lock().unwrap().len(),
        t.failures.len(),
        elapsed
    );
    assert!(
        t.failures.is_empty(),
        "{} client operations failed:\n{}\nHAProxy, unusual requests:\n{}\nlogs:\n{}",
        t.failures.len(),
        t.failures.join("\n"),
        lb.unusual_requests().join("\n"),
        replicas
            .iter()
            .flatten()
            .map(|r| r.proxy.proc.output())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    assert!(pushed.lock().unwrap().len() >= MIN_IMAGES);
    // Every restarted replica found the fleet's Redis again by itself.
    for r in replicas.iter().flatten() {
        assert_eq!(metric(r.admin, "portcullis_cluster_up"), 1.0);
    }
}
