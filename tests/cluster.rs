//! Cluster mode against Debian's real `redis-server`: three portcullis replicas sharing one
//! Redis behind Debian's HAProxy (round-robin), and the cluster's parts on their own.

mod common;

use std::time::{Duration, Instant};

use common::haproxy::{Backend, Haproxy, Options};
use common::redis::Redis;
use common::*;

const ALICE_PW: &str = "alice-S3cret";
const BOB_PW: &str = "bob-S3cret";

/// 48 bytes every replica signs UI sessions with.
const SESSION_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

fn users(alice_pw: &str) -> String {
    format!(
        "alice:\n  password: \"{}\"\nbob:\n  password: \"{}\"\n",
        hash(alice_pw),
        hash(BOB_PW)
    )
}

/// Three replicas of one configuration (with `cluster:` pointing at `redis`, and `extra`
/// appended) behind HAProxy.
struct Fleet {
    registry: Registry,
    replicas: Vec<Proxy>,
    admin: Vec<u16>,
    haproxy: Haproxy,
    _token_dir: tempfile::TempDir,
}

impl Fleet {
    fn start(redis: &Redis, extra: &str) -> Fleet {
        let registry = Registry::start();
        // One token key for the fleet, as a Kubernetes Secret would give each replica.
        let token_dir = tempfile::tempdir().unwrap();
        let (key, _) = portcullis::token::generate_dev_keypair(token_dir.path()).unwrap();
        let mut replicas = Vec::new();
        let mut admin = Vec::new();
        // One users file for the fleet: a credential is bound to the stored hash.
        let users = users(ALICE_PW);
        for _ in 0..3 {
            let admin_port = free_port();
            let config = format!(
                "admin_listen: 127.0.0.1:{admin_port}\nupstream: {{upstream}}\nauth:\n  users: users.yaml\n  token:\n    key: {}\n  lockout: {{failures: 6, window: 1m}}\nacl: acl.yaml\nui:\n  session_key_file: session.key\ncluster:\n  redis: {}\n{extra}",
                key.display(),
                redis.url()
            );
            let files = vec![
                ("users.yaml", users.clone()),
                (
                    "acl.yaml",
                    "- match: {account: \"/.+/\"}\n  actions: [\"*\"]\n".to_string(),
                ),
                ("session.key", SESSION_KEY.to_string()),
            ];
            replicas.push(Proxy::start(
                ProxySetup {
                    config: &config,
                    files: &files,
                    tls: false,
                },
                &registry.url(),
            ));
            admin.push(admin_port);
        }
        for &port in &admin {
            wait_until(
                "the replica to reach Redis",
                Duration::from_secs(20),
                || metric(port, "portcullis_cluster_up") == 1.0,
            );
        }
        let backends: Vec<Backend> = replicas
            .iter()
            .zip(&admin)
            .map(|(p, a)| Backend {
                addr: format!("127.0.0.1:{}", p.port).parse().unwrap(),
                check_port: Some(*a),
            })
            .collect();
        let haproxy = Haproxy::start(&backends, &Options::default());
        Fleet {
            registry,
            replicas,
            admin,
            haproxy,
            _token_dir: token_dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.haproxy.url(), path)
    }

    fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// A series summed over the replicas.
    fn total(&self, series: &str) -> f64 {
        self.admin.iter().map(|&p| metric(p, series)).sum()
    }
}

fn v2(client: &reqwest::blocking::Client, url: &str, account: &str, pw: &str) -> u16 {
    client
        .get(url)
        .basic_auth(account, Some(pw))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Wrong passwords spread round-robin over three replicas lock the account at the configured
/// total (6), not 3 × 6; the lock holds on every replica, and another account is unaffected.
#[test]
fn wrong_passwords_across_replicas_lock_at_the_fleet_total() {
    let redis = Redis::start();
    let fleet = Fleet::start(&redis, "");
    let c = fleet.client();
    let url = fleet.url("/v2/");
    let mut statuses = Vec::new();
    for _ in 0..9 {
        statuses.push(v2(&c, &url, "alice", "wrong"));
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 401, 429, 429, 429],
        "the 7th attempt is refused: the replicas share one count"
    );
    // Locked on every replica, even with the right password (the lock is not lifted by it).
    for p in &fleet.replicas {
        assert_eq!(v2(&c, &p.url("/v2/"), "alice", ALICE_PW), 429);
    }
    assert_eq!(v2(&c, &url, "bob", BOB_PW), 200, "another account logs in");
    assert_eq!(fleet.total("portcullis_cluster_errors_total"), 0.0);
    assert!(
        !redis.keys("portcullis:lockout:pair:*alice").is_empty(),
        "the counters live in Redis under the prefix: {:?}",
        redis.keys("*")
    );
}

/// The token endpoint's answer to a form POST on `url`: (status, JSON).
fn token_post(
    c: &reqwest::blocking::Client,
    url: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let r = c.post(format!("{url}/auth")).form(form).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// A refresh token for alice, from the replica at `url`.
fn refresh_token(c: &reqwest::blocking::Client, url: &str, pw: &str) -> String {
    let (status, json) = token_post(
        c,
        url,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", pw),
            ("service", "Docker registry"),
            ("client_id", "test"),
            ("access_type", "offline"),
        ],
    );
    assert_eq!(status, 200, "{json}");
    json["refresh_token"].as_str().unwrap().to_string()
}

/// Whether the refresh token is accepted by the replica at `url`.
fn refresh(c: &reqwest::blocking::Client, url: &str, token: &str) -> u16 {
    let status = token_post(
        c,
        url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("service", "Docker registry"),
            ("client_id", "test"),
            ("scope", "repository:alice/app:pull"),
        ],
    );
    if status.0 != 200 {
        eprintln!("refresh on {url}: {} {}", status.0, status.1);
    }
    status.0
}

/// Logs alice in to the web UI of the replica at `url`: the session cookie (`name=value`).
fn ui_session(url: &str, pw: &str) -> String {
    let c = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let page = c
        .get(format!("{url}/ui/login"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let csrf = &page[at..at + page[at..].find('"').unwrap()];
    let r = c
        .post(format!("{url}/ui/login"))
        .form(&[("csrf", csrf), ("account", "alice"), ("password", pw)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "UI login");
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("portcullis_session="))
        .expect("a session cookie")
}

/// The UI's answer to the session `cookie` on the replica at `url`: 200 while the session
/// holds, 303 to the login form once it ended.
fn ui_status(url: &str, cookie: &str) -> u16 {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{url}/ui/"))
        .header("Cookie", cookie)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Logs the session `cookie` out on the replica at `url` (the form's CSRF token read from a
/// page of that session).
fn ui_logout(url: &str, cookie: &str) {
    let c = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = c
        .get(format!("{url}/ui/"))
        .header("Cookie", cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let csrf = &page[at..at + page[at..].find('"').unwrap()];
    let r = c
        .post(format!("{url}/ui/logout"))
        .header("Cookie", cookie)
        .form(&[("csrf", csrf)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "logout");
}

/// A UI logout on one replica ends the session on the others.
#[test]
fn a_ui_logout_ends_the_session_on_every_replica() {
    let redis = Redis::start();
    let fleet = Fleet::start(&redis, "");
    let [r0, r1, r2] = [0, 1, 2].map(|i| fleet.replicas[i].base());
    let cookie = ui_session(&r0, ALICE_PW);
    let other = ui_session(&r0, ALICE_PW);
    for r in [&r0, &r1, &r2] {
        assert_eq!(ui_status(r, &cookie), 200);
    }
    ui_logout(&r1, &cookie);
    for r in [&r0, &r1, &r2] {
        assert_eq!(ui_status(r, &cookie), 303, "logged out, on {r}");
        assert_eq!(
            ui_status(r, &other),
            200,
            "another session of the account holds"
        );
    }
    assert_eq!(redis.keys("portcullis:revoked:session:*").len(), 1);
}

/// `portcullis revoke` ends a refresh token and a UI session on replicas that never saw the
/// login; so does a password change (credential stamps, per replica); a login after either
/// works again.
#[test]
fn revoke_and_password_change_end_refresh_tokens_and_sessions_fleet_wide() {
    let redis = Redis::start();
    let fleet = Fleet::start(&redis, "");
    let c = fleet.client();
    let [r0, r1, r2] = [0, 1, 2].map(|i| fleet.replicas[i].base());
    let token = refresh_token(&c, &r0, ALICE_PW);
    let cookie = ui_session(&r0, ALICE_PW);
    assert_eq!(refresh(&c, &r1, &token), 200, "valid on another replica");
    assert_eq!(
        ui_status(&r1, &cookie),
        200,
        "the session holds on another replica"
    );

    let (code, out, err) = portcullis(
        &["revoke", "--account", "alice", "-c", "proxy.yaml"],
        fleet.replicas[1].dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked"), "{out}");
    assert!(!redis.keys("portcullis:revoked:account:alice").is_empty());
    for r in [&r1, &r2] {
        assert_eq!(refresh(&c, r, &token), 401, "refresh after revoke on {r}");
        assert_eq!(ui_status(r, &cookie), 303, "session after revoke on {r}");
    }
    // Only credentials issued before the revocation end: wait for the next second, log in.
    let revoked_at = std::time::SystemTime::now();
    wait_until("the next second", Duration::from_secs(2), || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            > revoked_at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
    });
    let token = refresh_token(&c, &r0, ALICE_PW);
    let cookie = ui_session(&r0, ALICE_PW);
    assert_eq!(refresh(&c, &r2, &token), 200, "a new login works again");
    assert_eq!(ui_status(&r2, &cookie), 200);

    // A password change, written to every replica's users file (as a ConfigMap update is).
    let changed = users("alice-New-pw");
    for (p, &admin) in fleet.replicas.iter().zip(&fleet.admin) {
        let before = reloads(admin, "success");
        std::fs::write(p.dir.path().join("users.yaml"), &changed).unwrap();
        wait_for_reload(admin, "success", before, Duration::from_secs(20));
    }
    for r in [&r1, &r2] {
        assert_eq!(
            refresh(&c, r, &token),
            401,
            "refresh after the password change"
        );
        assert_eq!(
            ui_status(r, &cookie),
            303,
            "session after the password change"
        );
    }

    // Without `cluster:` the command explains what it can do instead.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\n",
            ),
            ("acl.yaml", "[]\n"),
        ],
    );
    let (code, _, err) = portcullis(&["revoke", "--account", "alice"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("needs `cluster:`") && err.contains("password"),
        "{err}"
    );
    // With `cluster:` but no Redis there: an error, not a silent success.
    let dead = free_port();
    let config = format!(
        "upstream: http://127.0.0.1:5001\nacl: acl.yaml\ncluster:\n  redis: redis://127.0.0.1:{dead}/0\n"
    );
    write(dir.path(), &[("proxy.yaml", &config)]);
    let (code, _, err) = portcullis(&["revoke", "--account", "alice"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach redis://127.0.0.1"), "{err}");
}

/// `limits.rate` through HAProxy: one account's burst over three replicas is held to the
/// fleet-wide rate (±20%), answered 429 TOOMANYREQUESTS with Retry-After, while another
/// account is unaffected.
#[test]
fn a_burst_through_haproxy_is_limited_at_the_fleet_rate() {
    let redis = Redis::start();
    let fleet = Fleet::start(
        &redis,
        "limits:\n  rate:\n    per_account: 10/s\n    burst: 1x\n",
    );
    let url = fleet.url("/v2/");
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    let (allowed, limited) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let c = fleet.client();
                    let (mut ok, mut refused) = (0u32, 0u32);
                    while started.elapsed() < run_for {
                        let r = c
                            .get(&url)
                            .basic_auth("alice", Some(ALICE_PW))
                            .send()
                            .unwrap();
                        match r.status().as_u16() {
                            200 => ok += 1,
                            429 => {
                                assert!(r.headers().contains_key("retry-after"));
                                assert!(r.text().unwrap().contains("TOOMANYREQUESTS"));
                                refused += 1;
                            }
                            other => panic!("unexpected {other}"),
                        }
                    }
                    (ok, refused)
                })
            })
            .collect();
        // Meanwhile another account is served.
        let c = fleet.client();
        for _ in 0..5 {
            assert_eq!(
                v2(&c, &url, "bob", BOB_PW),
                200,
                "bob is not limited by alice"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    let elapsed = started.elapsed().as_secs_f64();
    // A bucket of 10, refilled at 10/s.
    let expected = 10.0 + 10.0 * elapsed;
    eprintln!(
        "rate limit: {allowed} allowed, {limited} refused in {elapsed:.2}s; expected {expected:.0}"
    );
    assert!(limited > allowed, "the burst really exceeded the rate");
    assert!(
        (allowed as f64) >= expected * 0.8 && (allowed as f64) <= expected * 1.2,
        "{allowed} allowed, expected {expected:.0} ±20% (per replica would be 3×)"
    );
    assert!(fleet.total("portcullis_rate_limited_total{scope=\"account\"}") >= limited as f64);
}

/// Redis killed mid-run: pushes and pulls go on, `portcullis_cluster_up` drops to 0 (and
/// /readyz stays 200), a refresh is refused; after redis-server restarts, the replicas
/// reconnect by themselves and share state again.
#[test]
fn a_redis_outage_degrades_and_recovers_without_restarting_portcullis() {
    let mut redis = Redis::start();
    let fleet = Fleet::start(&redis, "");
    let c = fleet.client();
    let token = refresh_token(&c, &fleet.url(""), ALICE_PW);
    let cookie = ui_session(&fleet.replicas[0].base(), ALICE_PW);
    let push_pull = |n: u8| {
        let data = vec![n; 4096];
        let digest = format!("sha256:{}", sha256_hex(&data));
        let r = c
            .post(fleet.url("/v2/alice/app/blobs/uploads/"))
            .basic_auth("alice", Some(ALICE_PW))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "upload start");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            fleet.url(&loc)
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = c
            .put(format!("{loc}{sep}digest={digest}"))
            .basic_auth("alice", Some(ALICE_PW))
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "blob push");
        let r = c
            .get(fleet.url(&format!("/v2/alice/app/blobs/{digest}")))
            .basic_auth("alice", Some(ALICE_PW))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "blob pull");
        assert_eq!(r.bytes().unwrap().to_vec(), data);
    };
    push_pull(1);

    redis.kill();
    for &admin in &fleet.admin {
        wait_until("portcullis_cluster_up 0", Duration::from_secs(10), || {
            metric(admin, "portcullis_cluster_up") == 0.0
        });
    }
    for n in 2..8 {
        push_pull(n);
    }
    for (p, &admin) in fleet.replicas.iter().zip(&fleet.admin) {
        let r = reqwest::blocking::get(format!("http://127.0.0.1:{admin}/readyz")).unwrap();
        assert_eq!(r.status(), 200, "/readyz stays ready");
        assert_eq!(refresh(&c, &p.base(), &token), 401, "refresh fails closed");
        assert_eq!(ui_status(&p.base(), &cookie), 303, "sessions fail closed");
    }
    // Failed logins still lock, counted by each replica on its own.
    let one = fleet.replicas[0].url("/v2/");
    let statuses: Vec<u16> = (0..7).map(|_| v2(&c, &one, "carol", "wrong")).collect();
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 401, 429],
        "per-replica fallback"
    );
    assert!(fleet.total("portcullis_cluster_errors_total") > 0.0);
    let warnings = fleet.replicas[0]
        .proc
        .output()
        .matches("cluster: Redis unreachable")
        .count();
    assert_eq!(warnings, 1, "one warning per change, not per request");

    redis.restart();
    for &admin in &fleet.admin {
        wait_until("portcullis_cluster_up 1", Duration::from_secs(10), || {
            metric(admin, "portcullis_cluster_up") == 1.0
        });
    }
    push_pull(9);
    assert_eq!(
        refresh(&c, &fleet.url(""), &token),
        200,
        "refresh works again"
    );
    let r2 = fleet.replicas[2].base();
    assert_eq!(ui_status(&r2, &cookie), 200, "the session holds again");
    // Shared again: wrong passwords over the fleet lock at the total.
    let statuses: Vec<u16> = (0..8)
        .map(|_| v2(&c, &fleet.url("/v2/"), "bob", "wrong"))
        .collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429, 429]);
    drop(fleet.registry);
}

/// The bus against real Redis: a published message arrives; killing Redis says `Lost`,
/// restarting it `Restored`, and messages flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_delivers_and_reports_lost_and_restored() {
    async fn next(
        sub: &mut portcullis::cluster::bus::Subscription,
    ) -> Option<portcullis::cluster::bus::Event> {
        tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("an event within 10 s")
    }
    use portcullis::cluster::{bus::Event, Cluster, Settings};
    let mut redis = Redis::start();
    let settings = Settings {
        redis: redis.url(),
        ca_certificate: None,
        password_file: None,
        key_prefix: "test:".into(),
        timeout: Duration::from_millis(250),
    };
    let cluster = Cluster::connect(&settings, None).unwrap();
    cluster.ping().await.unwrap();
    let mut sub = cluster.subscribe("evict").await;
    assert_eq!(cluster.publish("evict", b"team/app").await, Ok(1));
    assert_eq!(
        next(&mut sub).await,
        Some(Event::Message("team/app".into()))
    );

    tokio::task::block_in_place(|| redis.kill());
    assert_eq!(next(&mut sub).await, Some(Event::Lost));
    tokio::task::block_in_place(|| redis.restart());
    assert_eq!(next(&mut sub).await, Some(Event::Restored));
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the cluster reconnects");
    }
    assert_eq!(cluster.publish("evict", b"again").await, Ok(1));
    assert_eq!(next(&mut sub).await, Some(Event::Message("again".into())));
}

/// `rediss://` with `ca_certificate` and `password_file` against redis-server's own TLS and
/// `requirepass`: connects with both; a wrong password or a CA that did not sign the server's
/// certificate never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_ca_and_a_password_file() {
    use portcullis::cluster::{Cluster, Settings};
    let redis = tokio::task::block_in_place(|| Redis::start_with(true, Some("s3cret-Redis")));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("right"), "s3cret-Redis\n").unwrap();
    std::fs::write(dir.path().join("wrong"), "guess\n").unwrap();
    let other_ca = tempfile::tempdir().unwrap();
    make_certs(other_ca.path());
    let settings = |ca: std::path::PathBuf, password: &str| Settings {
        redis: redis.url(),
        ca_certificate: Some(ca),
        password_file: Some(dir.path().join(password)),
        key_prefix: "test:".into(),
        timeout: Duration::from_secs(2),
    };
    let ca = redis.dir.path().join("ca.pem");
    let good = Cluster::connect(&settings(ca.clone(), "right"), None).unwrap();
    good.ping()
        .await
        .expect("TLS with the CA and the right password");
    let revocations = portcullis::cluster::revocations::Revocations::new(Some(good.clone()));
    revocations
        .revoke(
            "account:alice",
            std::time::SystemTime::now(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(!redis.keys("test:revoked:account:alice").is_empty());

    let wrong = Cluster::connect(&settings(ca, "wrong"), None).unwrap();
    assert!(wrong.ping().await.is_err(), "a wrong password is refused");
    let untrusted =
        Cluster::connect(&settings(other_ca.path().join("ca.pem"), "right"), None).unwrap();
    assert!(
        untrusted.ping().await.is_err(),
        "a certificate from another CA is refused"
    );
}

/// The Redis counters are atomic across replicas: 90 attempts at once, spread over three
/// replicas' lockouts on one Redis, get at most `failures` reservations (the password checks
/// the limit allows), however they interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_on_three_replicas_never_exceed_the_limit() {
    use portcullis::authn::lockout::{Lockout, Settings as LockoutSettings};
    use portcullis::cluster::{counters::SharedCounters, Cluster, Settings};
    let redis = tokio::task::block_in_place(Redis::start);
    let settings = Settings {
        redis: redis.url(),
        ca_certificate: None,
        password_file: None,
        key_prefix: "portcullis:".into(),
        timeout: Duration::from_secs(2),
    };
    let lockouts: Vec<Lockout> = (0..3)
        .map(|_| {
            let cluster = Cluster::connect(&settings, None).unwrap();
            Lockout::with_counters(
                LockoutSettings {
                    failures: 6,
                    window: Duration::from_secs(60),
                    exempt: vec![],
                },
                Box::new(SharedCounters::new(cluster, 1024)),
            )
        })
        .collect();
    // Every replica's handle is up before the burst (a reservation in Redis proves it), so
    // nothing falls back to in-process counting.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ip = Some("192.0.2.1".parse().unwrap());
    loop {
        let mut all_shared = true;
        for l in &lockouts {
            let r = l
                .reserve("warmup", ip, std::time::Instant::now())
                .await
                .unwrap();
            r.succeeded().await;
            all_shared &= !redis.keys("portcullis:lockout:pair:*warmup").is_empty();
        }
        if all_shared {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas reach Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = (0..90).map(|i| {
        let l = &lockouts[i % 3];
        l.reserve("alice", ip, std::time::Instant::now())
    });
    let results = futures_util::future::join_all(attempts).await;
    let granted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(granted, 6, "exactly the limit, fleet-wide");
}
