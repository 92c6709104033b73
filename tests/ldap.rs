//! LDAP authentication against a real slapd (tests/common/slapd.rs): through the library
//! directly, then end-to-end through the built proxy in front of the real registry.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::slapd::Slapd;
use common::*;
use portcullis::authn::ldap::{LdapAuthenticator, POOL_SIZE};
use portcullis::authn::{Authenticator, Authenticators, AuthnError, Identity, Lookup};

fn backend(config: &portcullis::config::Ldap) -> LdapAuthenticator {
    LdapAuthenticator::load(config).unwrap()
}

fn ok(l: Lookup) -> Identity {
    match l {
        Lookup::Decided(Ok(id)) => id,
        other => panic!("expected a login, got {other:?}"),
    }
}

fn unavailable(l: Lookup) -> String {
    match l {
        Lookup::Decided(Err(AuthnError::Unavailable(reason))) => reason,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn is_bad_password(l: &Lookup) -> bool {
    matches!(l, Lookup::Decided(Err(AuthnError::BadPassword)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_labels_and_refusals() {
    let slapd = Slapd::start(false);
    let ldap = backend(&slapd.config());

    let mozart = ok(ldap.authenticate("mozart", "mozartpw").await);
    assert_eq!(mozart.account, "mozart");
    assert_eq!(mozart.labels["groups"], vec!["builders", "composers"]);
    assert_eq!(mozart.labels["dept"], vec!["vienna"]);
    // A group whose RDN has an escaped comma (slapd sends `cn=strings\2C winds,...`).
    let bach = ok(ldap.authenticate("bach", "bachpw").await);
    assert_eq!(bach.labels["groups"], vec!["composers", "strings, winds"]);
    assert!(!bach.labels.contains_key("dept"));

    assert!(is_bad_password(&ldap.authenticate("mozart", "wrong").await));
    assert!(is_bad_password(
        &ldap.authenticate("mozart", "bachpw").await
    ));
    assert!(is_bad_password(&ldap.authenticate("mozart", "").await));
    assert!(is_bad_password(
        &ldap.authenticate("bach", "mozartpw").await
    ));
    assert!(matches!(
        ldap.authenticate("salieri", "x").await,
        Lookup::Unknown
    ));
    // Outside the search base: not known here, whatever the password.
    assert!(matches!(
        ldap.authenticate("kant", "kantpw").await,
        Lookup::Unknown
    ));
    assert!(matches!(
        ldap.authenticate("schopenhauer", "schopenhauerpw").await,
        Lookup::Unknown
    ));
    assert!(matches!(
        ldap.authenticate("serviceaccount", "servicepw").await,
        Lookup::Unknown
    ));
    // Two entries with the same uid under the base: fails closed, never a guess.
    let reason = unavailable(ldap.authenticate("twin", "twinpw").await);
    assert!(reason.contains("ambiguous"), "{reason}");
    unavailable(ldap.lookup("twin").await);

    // Filter injection never logs anyone in, with any of the real passwords.
    for evil in [
        "*",
        "mozart)(uid=*",
        "*)(|(uid=*",
        "mozart*",
        "m*",
        "*)(uid=mozart",
        "mozart)(|(objectClass=*)",
        "mozart\\",
        "mozart\0",
        "(uid=mozart)",
    ] {
        for pw in ["mozartpw", "bachpw", "x"] {
            let l = ldap.authenticate(evil, pw).await;
            assert!(matches!(l, Lookup::Unknown), "{evil:?}/{pw}: {l:?}");
        }
        assert!(
            matches!(ldap.lookup(evil).await, Lookup::Unknown),
            "{evil:?}"
        );
    }

    // lookup: search only, with labels.
    let id = ok(ldap.lookup("mozart").await);
    assert_eq!(id.labels["groups"], vec!["builders", "composers"]);
    assert!(matches!(ldap.lookup("kant").await, Lookup::Unknown));
    assert!(matches!(ldap.lookup("salieri").await, Lookup::Unknown));

    // The pool reuses its connections and stays bounded.
    assert!(ldap.idle_connections() >= 1 && ldap.idle_connections() <= POOL_SIZE);

    // Through the chain: LDAP's answers keep their meaning.
    let chain = Authenticators::new(vec![Arc::new(backend(&slapd.config()))], false);
    assert_eq!(
        chain.login("mozart", "mozartpw").await.unwrap().account,
        "mozart"
    );
    assert_eq!(
        chain.login("mozart", "no").await,
        Err(AuthnError::BadPassword)
    );
    assert_eq!(
        chain.login("kant", "kantpw").await,
        Err(AuthnError::UnknownAccount)
    );
    assert_eq!(
        chain.login("*", "mozartpw").await,
        Err(AuthnError::UnknownAccount)
    );
    assert_eq!(chain.lookup("bach").await.unwrap().account, "bach");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_share_a_bounded_pool() {
    let slapd = Slapd::start(false);
    let mut config = slapd.config();
    config.cache = Duration::ZERO;
    let ldap = Arc::new(backend(&config));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let ldap = ldap.clone();
        tasks.push(tokio::spawn(async move {
            let (a, p) = if i % 2 == 0 {
                ("mozart", "mozartpw")
            } else {
                ("bach", "bachpw")
            };
            ok(ldap.authenticate(a, p).await).account
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(ldap.idle_connections() >= 1 && ldap.idle_connections() <= POOL_SIZE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_and_starttls_verify_the_certificate() {
    let slapd = Slapd::start(true);
    let wrong = tempfile::tempdir().unwrap();
    make_certs(wrong.path());
    let wrong_ca = wrong.path().join("ca.pem");

    // ldaps:// with the private CA.
    let mut c = slapd.config();
    c.url = slapd.ldaps_url();
    c.ca_certificate = Some(slapd.ca());
    let id = ok(backend(&c).authenticate("mozart", "mozartpw").await);
    assert_eq!(id.labels["groups"], vec!["builders", "composers"]);
    assert!(is_bad_password(
        &backend(&c).authenticate("mozart", "nope").await
    ));

    // ldap:// + StartTLS with the private CA.
    let mut s = slapd.config();
    s.start_tls = true;
    s.ca_certificate = Some(slapd.ca());
    ok(backend(&s).authenticate("bach", "bachpw").await);
    assert!(matches!(
        backend(&s).authenticate("kant", "kantpw").await,
        Lookup::Unknown
    ));

    // Another CA: refused, both ways, and the reason says why.
    for mut config in [c.clone(), s.clone()] {
        config.ca_certificate = Some(wrong_ca.clone());
        let reason = unavailable(backend(&config).authenticate("mozart", "mozartpw").await);
        assert!(
            reason.to_lowercase().contains("certificate") || reason.contains("UnknownIssuer"),
            "{reason}"
        );
        unavailable(backend(&config).lookup("mozart").await);
    }
    // No CA configured: the system trust store does not know the private CA.
    let mut system = c.clone();
    system.ca_certificate = None;
    if let Ok(l) = LdapAuthenticator::load(&system) {
        unavailable(l.authenticate("mozart", "mozartpw").await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_closed_then_recovers() {
    let mut slapd = Slapd::start(false);
    let mut config = slapd.config();
    config.timeout = Duration::from_secs(1);
    let ldap = backend(&config); // cache: 60 s
    let mut short = config.clone();
    short.cache = Duration::from_millis(500);
    let short = backend(&short);
    let mut none = config.clone();
    none.cache = Duration::ZERO;
    let none = backend(&none);

    ok(ldap.authenticate("mozart", "mozartpw").await);
    ok(short.authenticate("mozart", "mozartpw").await);
    ok(none.authenticate("mozart", "mozartpw").await);
    assert!(ldap.idle_connections() >= 1);

    slapd.stop();

    // Remembered logins keep working for `cache`.
    let id = ok(ldap.authenticate("mozart", "mozartpw").await);
    assert_eq!(id.labels["groups"], vec!["builders", "composers"]);
    ok(short.authenticate("mozart", "mozartpw").await);
    // Everything else fails closed, quickly, with a reason — never Unknown, never a hang.
    for (account, password) in [("mozart", "wrong"), ("bach", "bachpw"), ("salieri", "x")] {
        let start = Instant::now();
        let reason = unavailable(ldap.authenticate(account, password).await);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert!(reason.starts_with("ldap: "), "{reason}");
        assert!(!reason.contains(password), "{reason}");
    }
    unavailable(ldap.lookup("mozart").await);
    // cache: 0s remembers nothing.
    unavailable(none.authenticate("mozart", "mozartpw").await);
    // A cache entry expires after `cache`.
    tokio::time::sleep(Duration::from_millis(600)).await;
    unavailable(short.authenticate("mozart", "mozartpw").await);
    // Through the chain the outage is an error, not "unknown account".
    let chain = Authenticators::new(vec![Arc::new(backend(&config))], false);
    assert!(matches!(
        chain.login("bach", "bachpw").await,
        Err(AuthnError::Unavailable(_))
    ));

    // Back on the same port: the next login works (the pool does not keep dead connections).
    slapd.restart();
    ok(ldap.authenticate("bach", "bachpw").await);
    ok(none.authenticate("mozart", "mozartpw").await);
    assert!(is_bad_password(&ldap.authenticate("mozart", "wrong").await));
    ok(ldap.lookup("mozart").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_connections_are_pooled() {
    // The server goes away and comes back between two logins: the pooled connections are
    // dead, and the first login after the restart must not fail because of them.
    let mut slapd = Slapd::start(false);
    let mut config = slapd.config();
    config.cache = Duration::ZERO;
    let ldap = backend(&config);
    ok(ldap.authenticate("mozart", "mozartpw").await);
    assert!(ldap.idle_connections() >= 1);
    slapd.stop();
    slapd.restart();
    ok(ldap.authenticate("mozart", "mozartpw").await);
    ok(ldap.lookup("bach").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_times_out() {
    let slapd = Slapd::start(false);
    let mut config = slapd.config();
    config.timeout = Duration::from_millis(500);
    config.cache = Duration::ZERO;
    let ldap = backend(&config);
    ok(ldap.authenticate("mozart", "mozartpw").await);

    slapd.pause();
    let start = Instant::now();
    let reason = unavailable(ldap.authenticate("mozart", "mozartpw").await);
    let took = start.elapsed();
    slapd.resume();
    assert!(reason.contains("timed out"), "{reason}");
    // The search phase and the bind phase each get the timeout.
    assert!(took < Duration::from_millis(1500), "{took:?}");

    // Once the server answers again, so do we.
    ok(ldap.authenticate("mozart", "mozartpw").await);
    ok(ldap.authenticate("bach", "bachpw").await);
}

// ---------------------------------------------------------------------------------------------
// End to end: proxy + registry + slapd.

const ACL: &str = r#"
- match: {account: admin}
  actions: ["*"]
- match: {labels: {groups: builders}, name: "builds/*"}
  actions: [pull, push]
- match: {labels: {groups: composers}, name: "scores/*"}
  actions: [pull]
"#;

fn post_upload(proxy: &Proxy, repo: &str, creds: Option<(&str, &str)>) -> u16 {
    let mut req = proxy
        .client()
        .post(proxy.url(&format!("/v2/{repo}/blobs/uploads/")));
    if let Some((user, pw)) = creds {
        req = req.basic_auth(user, Some(pw));
    }
    req.send().unwrap().status().as_u16()
}

#[test]
fn through_the_proxy() {
    let registry = Registry::start();
    let mut slapd = Slapd::start(false);
    let config = format!(
        "upstream: {{upstream}}\nauth:\n  challenge: basic\n  users: users.yaml\n{}  lockout: {{failures: 0}}\nacl: acl.yaml\n",
        slapd.yaml("ldap.pw", "0s")
    );
    let files = vec![
        (
            "users.yaml",
            format!("admin:\n  password: \"{}\"\n", hash("badmin")),
        ),
        ("ldap.pw", "servicepw\r\n".to_string()),
        ("acl.yaml", ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );

    // mozart is in builders: push to builds/* is allowed.
    assert_eq!(
        post_upload(&proxy, "builds/app", Some(("mozart", "mozartpw"))),
        202
    );
    // bach is not: authenticated, but denied.
    assert_eq!(
        post_upload(&proxy, "builds/app", Some(("bach", "bachpw"))),
        403
    );
    assert_eq!(
        post_upload(&proxy, "builds/app", Some(("mozart", "wrong"))),
        401
    );
    // kant is outside the search base.
    assert_eq!(
        post_upload(&proxy, "builds/app", Some(("kant", "kantpw"))),
        401
    );
    assert_eq!(
        post_upload(&proxy, "builds/app", Some(("*", "mozartpw"))),
        401
    );

    // A real push with skopeo as mozart, and a pull back.
    let work = tempfile::tempdir().unwrap();
    let layer = pseudo_random(64 * 1024, 3);
    let digest = write_oci_image(work.path(), "v1", &layer);
    let src = format!("oci:{}:v1", work.path().display());
    let dst = format!("docker://{}/builds/app:v1", proxy.host());
    let (pushed, err) = copy(&proxy, &src, &dst, Some("mozart:mozartpw"));
    assert!(pushed, "{err}\n{}", proxy.proc.output());
    let (pushed, _) = copy(
        &proxy,
        &src,
        &format!("docker://{}/builds/other:v1", proxy.host()),
        Some("bach:bachpw"),
    );
    assert!(!pushed, "bach must not push to builds/");
    let back = tempfile::tempdir().unwrap();
    let (pulled, err) = copy(
        &proxy,
        &dst,
        &format!("oci:{}:v1", back.path().join("img").display()),
        Some("mozart:mozartpw"),
    );
    assert!(pulled, "{err}");
    assert!(back
        .path()
        .join("img/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .is_file());

    // LDAP down: a fresh LDAP login fails closed, a static user still works, the proxy stays up.
    slapd.stop();
    let start = Instant::now();
    let status = post_upload(&proxy, "builds/app", Some(("mozart", "mozartpw")));
    assert_eq!(
        status, 503,
        "a directory outage is answered 503: fail closed, not \"wrong password\""
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        post_upload(&proxy, "builds/app", Some(("admin", "badmin"))),
        202
    );
    wait_until("the outage log line", Duration::from_secs(5), || {
        proxy.proc.output().contains("LDAP unavailable")
    });
    let log = proxy.proc.output();
    for line in log.lines().filter(|l| l.contains("LDAP unavailable")) {
        eprintln!("proxy log: {line}");
    }
    assert!(
        !log.contains("mozartpw"),
        "a password reached the log:\n{log}"
    );

    // LDAP back: logins work again without restarting the proxy.
    slapd.restart();
    assert_eq!(
        post_upload(&proxy, "builds/app", Some(("mozart", "mozartpw"))),
        202
    );
    assert_eq!(
        post_upload(&proxy, "builds/app", Some(("bach", "bachpw"))),
        403
    );
}

/// Spellings slapd finds the entry of `mozart` under (uid is caseIgnoreMatch, compared after
/// case folding and compatibility normalisation), but which are not its name. (slapd does not
/// drop a soft hyphen; the chain's shadowing key does, see src/authn/fold.rs.)
const MOZART_SPELLINGS: &[&str] = &["MOZART", "Mozart", "mOZART", "ｍｏｚａｒｔ", "Ｍｏｚａｒｔ"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_is_the_directorys_spelling_of_the_name() {
    let slapd = Slapd::start(false);
    let ldap = backend(&slapd.config());
    for spelling in MOZART_SPELLINGS {
        // The directory does find the entry under this spelling: the service account's own
        // search says so, so the refusal below is portcullis's, not the directory's.
        let out = std::process::Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &slapd.url(),
                "-D",
                common::slapd::BIND_DN,
                "-w",
            ])
            .arg(common::slapd::BIND_PASSWORD)
            .args([
                "-b",
                common::slapd::BASE,
                &format!("(uid={spelling})"),
                "uid",
            ])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("uid: mozart"),
            "slapd does not match {spelling:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // ...and the login is refused with the right password, and without a bind (the
        // answer is the same as for an unknown account).
        assert!(
            matches!(
                ldap.authenticate(spelling, "mozartpw").await,
                Lookup::Unknown
            ),
            "{spelling:?}"
        );
        assert!(
            matches!(ldap.lookup(spelling).await, Lookup::Unknown),
            "{spelling:?}"
        );
    }
    assert_eq!(
        ok(ldap.authenticate("mozart", "mozartpw").await).account,
        "mozart"
    );
    // The directory's spelling is the name, capital and all.
    let haydn = ok(ldap.authenticate("Haydn", "haydnpw").await);
    assert_eq!(haydn.account, "Haydn");
    assert!(matches!(
        ldap.authenticate("haydn", "haydnpw").await,
        Lookup::Unknown
    ));
    assert_eq!(ok(ldap.lookup("Haydn").await).account, "Haydn");
    // One person, two values of uid: fails closed, under either name.
    for name in ["vivaldi", "antonio"] {
        let reason = unavailable(ldap.authenticate(name, "vivaldipw").await);
        assert!(reason.contains("several values of uid"), "{reason}");
        unavailable(ldap.lookup(name).await);
    }
    // Names with surrounding spaces or control characters never reach the directory.
    assert!(matches!(
        ldap.authenticate(" mozart", "mozartpw").await,
        Lookup::Unknown
    ));
    assert!(matches!(
        ldap.authenticate("mozart\n", "mozartpw").await,
        Lookup::Unknown
    ));

    // Another attribute as the name: the filter must compare it.
    let mut by_cn = slapd.config();
    by_cn.filter = "(&(objectClass=inetOrgPerson)(cn={account}))".into();
    by_cn.account_attribute = "cn".into();
    let by_cn = backend(&by_cn);
    let id = ok(by_cn.authenticate("Johann Sebastian Bach", "bachpw").await);
    assert_eq!(id.account, "Johann Sebastian Bach");
    assert!(matches!(
        by_cn.authenticate("johann sebastian bach", "bachpw").await,
        Lookup::Unknown
    ));
    let mut mismatched = slapd.config();
    mismatched.account_attribute = "cn".into();
    let e = LdapAuthenticator::load(&mismatched).err().unwrap();
    assert_eq!(e.0[0].key.as_deref(), Some("auth.ldap.account_attribute"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_spellings_cannot_dodge_the_lockout() {
    // The lockout counts the typed name before the password is checked. Every spelling other
    // than the directory's is refused whatever the password, so `mozart`, locked from the
    // attacker's address, cannot be reached from there as `mOZART`, and guessing through other
    // spellings learns nothing.
    use portcullis::authn::lockout::{guarded_login, Lockout, Refused};
    let slapd = Slapd::start(false);
    let chain = Authenticators::new(vec![Arc::new(backend(&slapd.config()))], false);
    let lockout = Lockout::new(portcullis::config::Lockout {
        failures: 3,
        window: Duration::from_secs(300),
        ..Default::default()
    });
    let attacker = Some("192.0.2.1".parse().unwrap());
    for _ in 0..3 {
        assert!(
            guarded_login(Some(&lockout), &chain, "mozart", "guess", attacker)
                .await
                .is_err()
        );
    }
    assert!(matches!(
        guarded_login(Some(&lockout), &chain, "mozart", "mozartpw", attacker).await,
        Err(Refused::Locked { .. })
    ));
    for spelling in MOZART_SPELLINGS {
        match guarded_login(Some(&lockout), &chain, spelling, "mozartpw", attacker).await {
            Err(Refused::Failed { error, .. }) => {
                assert_eq!(error, AuthnError::UnknownAccount, "{spelling:?}")
            }
            Err(Refused::Locked { .. }) => {}
            Ok(id) => panic!(
                "{spelling:?} logged in as {:?} past the lockout",
                id.account
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_accounts_shadow_every_spelling_of_their_name() {
    let slapd = Slapd::start(false);
    let users = portcullis::authn::users::StaticUsers::parse(
        &format!(
            "bach:\n  password: \"{}\"\nhaydn:\n  password: \"{}\"\n",
            hash("static-bach"),
            hash("static-haydn")
        ),
        std::path::Path::new("users.yaml"),
    )
    .unwrap();
    let chain = Authenticators::new(
        vec![Arc::new(users), Arc::new(backend(&slapd.config()))],
        false,
    );
    // `bach` is the static user's: LDAP's password does not work, the static one does.
    assert_eq!(
        chain.login("bach", "bachpw").await,
        Err(AuthnError::BadPassword)
    );
    assert_eq!(
        chain.login("bach", "static-bach").await.unwrap().account,
        "bach"
    );
    // Other spellings reach LDAP, which does not accept them as names.
    for spelling in ["Bach", "BACH", "ｂａｃｈ"] {
        assert!(
            chain.login(spelling, "bachpw").await.is_err(),
            "{spelling:?}"
        );
        assert!(chain.lookup(spelling).await.is_err(), "{spelling:?}");
    }
    // The directory's `Haydn` is a spelling of the static `haydn`: shadowed, although it is
    // the directory's exact name.
    assert_eq!(
        chain.login("Haydn", "haydnpw").await,
        Err(AuthnError::BadPassword)
    );
    assert_eq!(chain.lookup("Haydn").await, Err(AuthnError::UnknownAccount));
    // Without the static haydn, `Haydn` logs in through LDAP.
    let ldap_only = Authenticators::new(vec![Arc::new(backend(&slapd.config()))], false);
    assert_eq!(
        ldap_only.login("Haydn", "haydnpw").await.unwrap().account,
        "Haydn"
    );
}

/// One rule on an account name, one on a label LDAP gives (mozart is in `builders`), and
/// pull for everyone else.
const SPELLING_ACL: &str = r#"
- match: {account: mozart, name: "shared/*"}
  actions: []
- match: {labels: {groups: builders}, name: "labelled/*"}
  actions: []
- match: {account: "/.+/"}
  actions: [pull]
"#;

#[test]
fn spellings_through_the_proxy() {
    let registry = Registry::start();
    let slapd = Slapd::start(false);
    let config = format!(
        "upstream: {{upstream}}\nauth:\n  challenge: basic\n  users: users.yaml\n{}  lockout: {{failures: 0}}\nacl: acl.yaml\n",
        slapd.yaml("ldap.pw", "1m")
    );
    let files = vec![
        (
            "users.yaml",
            format!(
                "bach:\n  password: \"{}\"\nhaydn:\n  password: \"{}\"\n",
                hash("static-bach"),
                hash("static-haydn")
            ),
        ),
        ("ldap.pw", "servicepw\n".to_string()),
        ("acl.yaml", SPELLING_ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let c = proxy.client();
    let status = |user: &str, pw: &str, repo: &str| {
        c.get(proxy.url(&format!("/v2/{repo}/tags/list")))
            .basic_auth(user, Some(pw))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // Allowed requests reach the registry, which does not know the repository: 404.
    assert_eq!(status("mozart", "mozartpw", "shared/s"), 403);
    assert_eq!(status("mozart", "mozartpw", "labelled/s"), 403);
    assert_eq!(status("mozart", "mozartpw", "other/s"), 404);
    for spelling in MOZART_SPELLINGS {
        for repo in ["shared/s", "labelled/s", "other/s"] {
            assert_eq!(
                status(spelling, "mozartpw", repo),
                401,
                "{spelling:?} {repo}"
            );
        }
    }
    // Static shadowing, through the proxy.
    assert_eq!(status("bach", "static-bach", "shared/s"), 404);
    assert_eq!(status("bach", "bachpw", "shared/s"), 401);
    assert_eq!(status("Bach", "bachpw", "shared/s"), 401);
    assert_eq!(status("Haydn", "haydnpw", "shared/s"), 401);

    // The audit log names the directory's spelling for every allowed or denied request, and
    // no other spelling of mozart ever got past the login.
    wait_until("audit lines", Duration::from_secs(5), || {
        proxy.proc.output().matches("\"target\":\"audit\"").count() >= 22
    });
    let log = proxy.proc.output();
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect();
    let field = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .or_else(|| v["fields"].get(k))
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut mozart_decided = 0;
    for line in &audit {
        let account = field(line, "account");
        let decision = field(line, "decision");
        if account.eq_ignore_ascii_case("mozart") && decision != "unauthenticated" {
            assert_eq!(account, "mozart", "{line}");
            mozart_decided += 1;
        }
        if MOZART_SPELLINGS.contains(&account.as_str()) {
            assert_eq!(decision, "unauthenticated", "{line}");
        }
    }
    assert_eq!(mozart_decided, 3, "{audit:#?}");
}

#[test]
fn ldap_accounts_in_token_mode() {
    let registry = Registry::start();
    let slapd = Slapd::start(false);
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = portcullis::token::generate_dev_keypair(keys.path()).unwrap();
    let config = format!(
        "upstream: {{upstream}}\nauth:\n  challenge: token\n  token:\n    service: reg\n    key: token.key\n    certificate: token.crt\n{}acl: acl.yaml\n",
        slapd.yaml("ldap.pw", "1m")
    );
    let files = vec![
        ("ldap.pw", "servicepw\n".to_string()),
        ("acl.yaml", ACL.to_string()),
        ("token.key", std::fs::read_to_string(key).unwrap()),
        ("token.crt", std::fs::read_to_string(cert).unwrap()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let c = proxy.client();
    let token_for = |user: &str, pw: &str, scope: &str| {
        c.get(proxy.url("/auth"))
            .query(&[("service", "reg"), ("scope", scope)])
            .basic_auth(user, Some(pw))
            .send()
            .unwrap()
    };
    // mozart's groups (from memberOf) grant push on builds/* and pull on scores/*.
    let r = token_for("mozart", "mozartpw", "repository:builds/app:pull,push");
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(proxy.url("/v2/builds/app/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    // bach is a composer, not a builder: the push scope is left out of his token.
    let r = token_for(
        "bach",
        "bachpw",
        "repository:builds/app:pull,push repository:scores/x:pull",
    );
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(proxy.url("/v2/builds/app/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    // The ACL refuses bach a push (403) before the token is even consulted.
    assert_eq!(r.status(), 403, "bach may not push builds/*");
    let r = c
        .get(proxy.url("/v2/scores/x/tags/list"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "bach may pull scores/* (the registry has no such repository)"
    );
    // Wrong password and an account outside the base: 401 at the token endpoint.
    assert_eq!(
        token_for("mozart", "nope", "repository:builds/app:pull").status(),
        401
    );
    assert_eq!(
        token_for("kant", "kantpw", "repository:builds/app:pull").status(),
        401
    );
}

/// Runs an LDAP client command, which must succeed.
fn run(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ldap_refresh_tokens_end_with_a_password_change_or_a_new_dn() {
    let registry = Registry::start();
    let mut slapd = Slapd::start(false);
    // With the ppolicy overlay slapd records pwdChangedTime, which is how a password change
    // can be told apart from nothing (the directory never shows the password itself).
    slapd.stop();
    let conf = slapd.dir.path().join("slapd.conf");
    let text = std::fs::read_to_string(&conf).unwrap().replace(
        "moduleload memberof.la",
        "moduleload memberof.la\nmoduleload ppolicy.la",
    );
    std::fs::write(&conf, format!("{text}\noverlay ppolicy\n")).unwrap();
    slapd.restart();
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = portcullis::token::generate_dev_keypair(keys.path()).unwrap();
    let config = format!(
        "upstream: {{upstream}}\nauth:\n  challenge: token\n  token:\n    service: reg\n    key: token.key\n    certificate: token.crt\n{}acl: acl.yaml\n",
        slapd.yaml("ldap.pw", "1m")
    );
    let files = vec![
        ("ldap.pw", "servicepw\n".to_string()),
        ("acl.yaml", ACL.to_string()),
        ("token.key", std::fs::read_to_string(key).unwrap()),
        ("token.crt", std::fs::read_to_string(cert).unwrap()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: &config,
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let c = proxy.client();
    let refresh_token = |user: &str, pw: &str| {
        let r = c
            .post(proxy.url("/auth"))
            .form(&[
                ("grant_type", "password"),
                ("username", user),
                ("password", pw),
                ("access_type", "offline"),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{user}");
        r.json::<serde_json::Value>().unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let refresh = |token: &str| {
        c.post(proxy.url("/auth"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("scope", "repository:scores/x:pull"),
            ])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let mozart = refresh_token("mozart", "mozartpw");
    let bach = refresh_token("bach", "bachpw");
    assert_eq!(refresh(&mozart), 200);
    assert_eq!(refresh(&bach), 200);

    // mozart changes his own password: his refresh token ends; bach's lives on.
    run(std::process::Command::new("ldappasswd").args([
        "-x",
        "-H",
        &slapd.url(),
        "-D",
        "uid=mozart,ou=musicians,dc=example,dc=com",
        "-w",
        "mozartpw",
        "-s",
        "mozart-new-pw",
    ]));
    assert_eq!(refresh(&mozart), 401);
    assert_eq!(refresh(&bach), 200);
    let mozart = refresh_token("mozart", "mozart-new-pw");
    assert_eq!(refresh(&mozart), 200);

    // bach's entry gets another DN (same uid, same password): his refresh token ends too.
    run(slapd.as_admin("ldapmodrdn").args([
        "uid=bach,ou=musicians,dc=example,dc=com",
        "cn=Johann Sebastian Bach",
    ]));
    assert_eq!(refresh(&bach), 401);
    assert_eq!(refresh(&mozart), 200);
    let bach = refresh_token("bach", "bachpw");
    assert_eq!(refresh(&bach), 200);
}

/// docker_auth's `(uid=${account})`, read through proxy.yaml as an operator writes it, logs in
/// against the real directory (before, it searched for `uid=$mozart` and every login failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_auths_account_placeholder_logs_in() {
    let slapd = Slapd::start(false);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acl.yaml"), "[]\n").unwrap();
    std::fs::copy(slapd.password_file(), dir.path().join("ldap.pw")).unwrap();
    let yaml = format!(
        "upstream: http://127.0.0.1:5001\nacl: acl.yaml\nauth:\n{}",
        slapd
            .yaml("ldap.pw", "0s")
            .replace("(uid={account})", "(uid=${account})")
    );
    assert!(yaml.contains("${account}"), "{yaml}");
    let path = dir.path().join("proxy.yaml");
    let config = portcullis::config::Config::parse(&yaml, &path).unwrap();
    let ldap = backend(config.auth.ldap.as_ref().unwrap());
    assert_eq!(
        ok(ldap.authenticate("mozart", "mozartpw").await).account,
        "mozart"
    );
    assert!(is_bad_password(&ldap.authenticate("mozart", "x").await));
    // Any other placeholder is refused where it is written.
    let bad = yaml.replace("${account}", "${acount}");
    let e = portcullis::config::Config::parse(&bad, &path).unwrap_err();
    assert_eq!(e.0[0].key.as_deref(), Some("auth.ldap.filter"), "{e}");
    assert_eq!(e.0[0].line, Some(9), "{e}");
    assert!(
        e.0[0].message.contains("unknown placeholder \"${acount}\""),
        "{e}"
    );
}

/// An operator's docker_auth `auth_config.yml`, as it is, named by `auth.ldap` (and by
/// `auth.users` and `acl`): its `ldap_auth:` configures LDAP against the real directory, and
/// `check` names every section nothing reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_auth_ldap_auth_section_configures_ldap() {
    use common::slapd::{BASE, BIND_DN};
    let slapd = Slapd::start(false);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(slapd.password_file(), dir.path().join("ldap.pw")).unwrap();
    let addr = slapd.url().trim_start_matches("ldap://").to_string();
    let auth_config = format!(
        "server:\n  addr: \":5001\"\ntoken:\n  issuer: \"Acme auth server\"\n  expiration: 900\nusers:\n  \"\": {{}}\nldap_auth:\n  addr: {addr}\n  tls: none\n  bind_dn: \"{BIND_DN}\"\n  bind_password_file: ldap.pw\n  base: \"{BASE}\"\n  filter: \"(&(objectClass=inetOrgPerson)(uid=${{account}}))\"\n  labels:\n    groups:\n      attribute: memberOf\n      parse_cn: true\nmongo_auth:\n  dial_info: {{addrs: [\"localhost\"]}}\next_auth:\n  command: /usr/local/bin/auth\nacl:\n  - match: {{labels: {{groups: builders}}}}\n    actions: [\"*\"]\n"
    );
    std::fs::write(dir.path().join("auth_config.yml"), auth_config).unwrap();
    std::fs::write(
        dir.path().join("proxy.yaml"),
        "upstream: http://127.0.0.1:5001\nauth:\n  users: auth_config.yml\n  ldap: auth_config.yml\nacl: auth_config.yml\n",
    )
    .unwrap();
    let config = portcullis::config::Config::load(&dir.path().join("proxy.yaml")).unwrap();
    let ldap_config = config.auth.ldap.clone().unwrap();
    assert_eq!(ldap_config.url, slapd.url());
    assert_eq!(ldap_config.account_attribute, "uid");
    let ldap = backend(&ldap_config);
    let mozart = ok(ldap.authenticate("mozart", "mozartpw").await);
    assert_eq!(mozart.account, "mozart");
    assert_eq!(mozart.labels["groups"], vec!["builders", "composers"]);
    assert!(is_bad_password(
        &ldap.authenticate("mozart", "bachpw").await
    ));
    // The whole chain as `serve` builds it: LDAP accounts get the file's ACL.
    let (built, _) = portcullis::state::State::build(std::sync::Arc::new(config)).unwrap();
    let id = built.state.authn.login("mozart", "mozartpw").await.unwrap();
    assert_eq!(id.labels["groups"], vec!["builders", "composers"]);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(dir.path().join("proxy.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (section, line) in [
        ("server", 1),
        ("token", 3),
        ("mongo_auth", 19),
        ("ext_auth", 21),
    ] {
        let wanted = format!(
            "auth_config.yml:{line}:1: {section}: docker_auth section `{section}` is ignored"
        );
        assert!(stdout.contains(&wanted), "missing {wanted:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("is ignored").count(), 4, "{stdout}");

    // insecure_tls_skip_verify is refused where it is written.
    let text = std::fs::read_to_string(dir.path().join("auth_config.yml")).unwrap();
    std::fs::write(
        dir.path().join("auth_config.yml"),
        text.replace(
            "  tls: none\n",
            "  tls: always\n  insecure_tls_skip_verify: true\n",
        ),
    )
    .unwrap();
    let e = portcullis::config::Config::load(&dir.path().join("proxy.yaml")).unwrap_err();
    assert_eq!(
        e.0[0].key.as_deref(),
        Some("ldap_auth.insecure_tls_skip_verify"),
        "{e}"
    );
    assert_eq!(e.0[0].line, Some(11), "{e}");
    assert!(e.0[0].file.ends_with("auth_config.yml"), "{e}");
}
