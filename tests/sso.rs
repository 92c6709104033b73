//! Single sign-on (`auth.oidc`) against a real OpenID provider — npm's certified
//! `oidc-provider` (`tests/oidc-provider/server.mjs`) over TLS with its own CA, on another site
//! (`localhost`) than portcullis (`127.0.0.1`): the code flow with PKCE, state and nonce,
//! claims from the ID token and the userinfo endpoint turned into the account and its labels,
//! the ACL granting by those labels, what a callback must carry, key rotation at the provider,
//! what ends an SSO session, and the whole sign-in in a real headless Chromium.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::idp::{self, Idp};
use common::*;

const ACL: &str = r#"- match: {account: admin}
  actions: ["*"]
  comment: admins do everything
- match: {labels: {groups: platform}, name: "platform/**"}
  actions: [pull, push]
  comment: the platform group builds the platform images
- match: {labels: {team: infra}, name: "infra/**"}
  actions: [pull]
  comment: the infra department reads its images
- match: {account: "/.+/", name: "${account}/**"}
  actions: ["*"]
  comment: everyone owns their namespace
"#;

/// The provider's people: login → claims.
fn accounts() -> serde_json::Value {
    serde_json::json!({
        "pat": {"preferred_username": "pat", "name": "Pat", "groups": ["platform", "qa"],
                "department": "infra"},
        "sam": {"preferred_username": "sam", "groups": ["sales"], "department": "sales"},
        "admin": {"preferred_username": "admin", "groups": ["platform"]},
        "Admin": {"preferred_username": "ADMIN", "groups": []},
        "slash": {"preferred_username": "pat/evil", "groups": ["platform"]},
    })
}

fn users_yaml(with_pat: bool) -> String {
    let mut s = format!("users:\n  admin:\n    password: \"{}\"\n", hash("admin-pw"));
    if with_pat {
        s.push_str(&format!("  pat:\n    password: \"{}\"\n", hash("pat-pw")));
    }
    s
}

fn oidc_section(idp: &Idp) -> String {
    format!(
        "  oidc:\n    issuer: {}\n    client_id: {}\n    client_secret_file: oidc-secret\n    scopes: [profile, groups, department]\n    labels: {{team: department}}\n    ca_certificate: {}\n",
        idp.issuer(),
        idp::CLIENT_ID,
        idp.ca().display()
    )
}

fn config(idp: &Idp) -> String {
    format!(
        "upstream: {{upstream}}\nacl: acl.yaml\nauth:\n  users: users.yaml\n  keys: keys.jsonl\n{}",
        oidc_section(idp)
    )
}

struct World {
    registry: Registry,
    idp: Idp,
    proxy: Proxy,
}

/// The registry with platform/app, infra/base, pat/tool, sam/notes and secret/db; the
/// provider; portcullis between them.
fn world() -> Option<World> {
    if !idp::available() {
        return None;
    }
    let registry = Registry::start();
    let d = tempfile::tempdir().unwrap();
    write_oci_image(d.path(), "v", b"an image layer for the sso tests");
    for to in [
        "platform/app",
        "infra/base",
        "pat/tool",
        "sam/notes",
        "secret/db",
    ] {
        let (ok, err) = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v", d.path().display()),
            &format!("docker://127.0.0.1:{}/{to}:1.0", registry.port),
        ]);
        assert!(ok, "seed {to}: {err}");
    }
    let mut idp = Idp::new();
    let proxy = Proxy::start(
        ProxySetup {
            config: &config(&idp),
            files: &[
                ("acl.yaml", ACL.to_string()),
                ("users.yaml", users_yaml(false)),
                ("oidc-secret", format!("{}\n", idp::CLIENT_SECRET)),
                ("keys.jsonl", String::new()),
            ],
            tls: true,
        },
        &registry.url(),
    );
    idp.start(accounts(), &proxy.url("/ui/sso/callback"));
    // The file watcher starts in the background after the listener answers: until it runs, a
    // key written by the UI would go unseen. Touch the ACL (again every 3 s: a write before
    // the watcher ran is not seen) until a reload shows it watches.
    let acl = proxy.dir.path().join("acl.yaml");
    let reloaded = || proxy.proc.output().contains("reloading configuration");
    for n in 0.. {
        assert!(n < 7, "no reload seen:\n{}", proxy.proc.output());
        std::fs::write(&acl, format!("{ACL}# touched {n}\n")).unwrap();
        let start = std::time::Instant::now();
        while !reloaded() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if reloaded() {
            break;
        }
    }
    Some(World {
        registry,
        idp,
        proxy,
    })
}

/// A browser-like client: a cookie jar, trusting portcullis' and the provider's test CAs,
/// following no redirects.
fn browser(w: &World) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30));
    for ca in [w.proxy.dir.path().join("ca.pem"), w.idp.ca()] {
        let pem = std::fs::read(ca).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn location(r: &reqwest::blocking::Response, base: &str) -> String {
    let l = r
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location in a {} answer", r.status()))
        .to_str()
        .unwrap()
        .to_owned();
    if l.starts_with('/') {
        format!("{base}{l}")
    } else {
        l
    }
}

/// Starts a sign-in at portcullis and goes through the provider's login form as `login`:
/// the callback address the provider sends the browser back to (not yet visited).
fn to_callback(client: &reqwest::blocking::Client, w: &World, login: &str) -> String {
    let r = client.get(w.proxy.url("/ui/sso/start")).send().unwrap();
    assert_eq!(r.status(), 303, "{}", w.proxy.proc.output());
    let flow = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("portcullis_sso="))
        .expect("a flow cookie");
    assert!(flow.contains("SameSite=Lax") && flow.contains("HttpOnly") && flow.contains("Secure"));
    let mut url = location(&r, &w.idp.issuer());
    assert!(
        url.starts_with(&format!("{}/auth?", w.idp.issuer())),
        "{url}"
    );
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
    ] {
        assert!(url.contains(part), "{part} missing in {url}");
    }
    let callback = w.proxy.url("/ui/sso/callback");
    for _ in 0..10 {
        if url.starts_with(&callback) {
            return url;
        }
        let r = client.get(&url).send().unwrap();
        if r.status().is_redirection() {
            url = location(&r, &w.idp.issuer());
            continue;
        }
        assert_eq!(r.status(), 200, "{url}: {}", w.idp.output());
        let html = r.text().unwrap();
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no login form in {html}"));
        let action = if action.starts_with('/') {
            format!("{}{action}", w.idp.issuer())
        } else {
            action.to_owned()
        };
        let r = client
            .post(action)
            .form(&[
                ("prompt", "login"),
                ("login", login),
                ("password", "anything"),
            ])
            .send()
            .unwrap();
        assert!(r.status().is_redirection(), "login form: {}", r.status());
        url = location(&r, &w.idp.issuer());
    }
    panic!("the provider never sent the browser back (last at {url})");
}

/// A whole sign-in as `login`: the callback's answer.
fn sign_in(client: &reqwest::blocking::Client, w: &World, login: &str) -> (u16, String) {
    let url = to_callback(client, w, login);
    let r = client.get(url).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn get(client: &reqwest::blocking::Client, w: &World, path: &str) -> (u16, String) {
    let r = client.get(w.proxy.url(path)).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn listed(html: &str) -> Vec<String> {
    let mut names: Vec<String> = html
        .split("<a href=\"/ui/repo/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.trim_end_matches('/').to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[test]
fn people_sign_in_and_see_what_their_groups_grant() {
    let Some(w) = world() else { return };
    // The sign-in page offers the provider beside the password form.
    let (status, page) = get(&browser(&w), &w, "/ui/login");
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("Sign in with localhost:{}", w.idp.port)),
        "{page}"
    );
    assert!(page.contains("name=\"password\""));

    let pat = browser(&w);
    let r = pat.get(to_callback(&pat, &w, "pat")).send().unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(cookies
        .iter()
        .any(|c| c.starts_with("portcullis_session=") && c.contains("SameSite=Strict")));
    assert!(cookies
        .iter()
        .any(|c| c.starts_with("portcullis_sso=;") && c.contains("Max-Age=0")));
    let page = r.text().unwrap();
    assert!(page.contains("http-equiv=\"refresh\""), "{page}");
    // The list: the platform group's images, the infra department's (a `labels` claim), and
    // pat's own namespace; nothing else.
    let (status, list) = get(&pat, &w, "/ui/");
    assert_eq!(status, 200);
    assert!(list.contains("<strong>pat</strong>"), "{list}");
    assert_eq!(listed(&list), ["infra/base", "pat/tool", "platform/app"]);
    assert_eq!(get(&pat, &w, "/ui/repo/platform/app").0, 200);
    assert_eq!(get(&pat, &w, "/ui/repo/secret/db").0, 404);
    assert_eq!(get(&pat, &w, "/ui/repo/sam/notes").0, 404);
    // sam is in sales: only sam's own namespace.
    let sam = browser(&w);
    assert_eq!(sign_in(&sam, &w, "sam").0, 200);
    assert_eq!(listed(&get(&sam, &w, "/ui/").1), ["sam/notes"]);
    assert!(w.proxy.proc.output().contains("single sign-on"));

    // Names that belong to a password account (in any spelling), or that would reach into
    // another namespace, are refused.
    for (login, why) in [
        ("admin", "belongs to a password account"),
        ("Admin", "belongs to a password account"),
        ("slash", "not usable as an account name"),
    ] {
        let c = browser(&w);
        let (status, page) = sign_in(&c, &w, login);
        assert_eq!(status, 403, "{login}: {page}");
        assert!(page.contains(why), "{login}: {page}");
        assert_eq!(get(&c, &w, "/ui/").0, 303, "{login} got a session");
    }

    // Logout ends the SSO session like any other.
    let (_, list) = get(&pat, &w, "/ui/");
    let r = pat
        .post(w.proxy.url("/ui/logout"))
        .form(&[("csrf", csrf_of(&list))])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(get(&pat, &w, "/ui/").0, 303);
}

#[test]
fn a_callback_needs_this_browsers_flow_its_state_and_its_issuer() {
    let Some(w) = world() else { return };
    // Another browser (no flow cookie: login CSRF) cannot use someone's callback.
    let victim = browser(&w);
    let url = to_callback(&victim, &w, "pat");
    let attacker = browser(&w);
    let r = attacker.get(&url).send().unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("not started in this browser"));
    assert_eq!(get(&attacker, &w, "/ui/").0, 303);
    // The browser that started it can; the same callback again cannot (the flow is spent).
    assert_eq!(victim.get(&url).send().unwrap().status(), 200);
    assert_eq!(get(&victim, &w, "/ui/").0, 200);
    let again = browser(&w);
    let first = to_callback(&again, &w, "sam");
    assert_eq!(again.get(&first).send().unwrap().status(), 200);
    assert_eq!(again.get(&first).send().unwrap().status(), 400);

    // Another state: refused, no session.
    let c = browser(&w);
    let url = to_callback(&c, &w, "pat");
    let forged = url.replace("state=", "state=x");
    let r = c.get(&forged).send().unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(get(&c, &w, "/ui/").0, 303);

    // An answer naming another issuer (RFC 9207 mix-up defence): refused.
    let c = browser(&w);
    let url = to_callback(&c, &w, "pat");
    assert!(url.contains("iss="), "{url}");
    let other = url.replace(
        "iss=https%3A%2F%2Flocalhost",
        "iss=https%3A%2F%2Fevil.example",
    );
    assert_ne!(other, url);
    assert_eq!(c.get(&other).send().unwrap().status(), 403);

    // A code the provider did not issue (or issued to another flow): refused by the provider.
    let c = browser(&w);
    let url = to_callback(&c, &w, "pat");
    let code = url
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let bad = url.replace(code, "not-a-code");
    let r = c.get(&bad).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(get(&c, &w, "/ui/").0, 303);

    // The provider's own refusal is shown, after the state check.
    let c = browser(&w);
    let url = to_callback(&c, &w, "pat");
    let state = url
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let r = c
        .get(w.proxy.url(&format!(
            "/ui/sso/callback?error=access_denied&error_description=nope&state={state}"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("nope"));
}

#[test]
fn a_rotated_signing_key_is_fetched_when_a_token_names_it() {
    let Some(mut w) = world() else { return };
    let pat = browser(&w);
    assert_eq!(sign_in(&pat, &w, "pat").0, 200);
    let before = w.idp.kid();
    // The provider restarts with a new key: portcullis has the old JWKS cached (for an hour),
    // and must fetch the new one when a token names the new kid.
    w.idp.restart();
    assert_ne!(w.idp.kid(), before);
    let sam = browser(&w);
    let (status, page) = sign_in(&sam, &w, "sam");
    assert_eq!(status, 200, "{page}\n{}", w.proxy.proc.output());
    // Sessions do not depend on the provider's keys.
    assert_eq!(get(&pat, &w, "/ui/").0, 200);
}

#[test]
fn sso_sessions_end_when_a_password_account_takes_the_name_or_sso_is_removed() {
    let Some(w) = world() else { return };
    let pat = browser(&w);
    assert_eq!(sign_in(&pat, &w, "pat").0, 200);
    let sam = browser(&w);
    assert_eq!(sign_in(&sam, &w, "sam").0, 200);
    assert_eq!(get(&pat, &w, "/ui/").0, 200);
    // A password account named pat appears (a reload): pat's SSO session ends, and pat can
    // no longer sign in through the provider.
    std::fs::write(w.proxy.dir.path().join("users.yaml"), users_yaml(true)).unwrap();
    wait_until("pat's SSO session to end", Duration::from_secs(20), || {
        get(&pat, &w, "/ui/").0 == 303
    });
    assert_eq!(sign_in(&browser(&w), &w, "pat").0, 403);
    assert_eq!(get(&sam, &w, "/ui/").0, 200);
    // auth.oidc removed: every SSO session ends, and the sign-in is gone.
    let plain = "upstream: {upstream}\nacl: acl.yaml\nauth:\n  users: users.yaml\n"
        .replace("{upstream}", &w.registry.url());
    let path = w.proxy.dir.path().join("proxy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let head: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(
        &path,
        format!("{head}tls:\n  cert: server.pem\n  key: server.key\n{plain}"),
    )
    .unwrap();
    wait_until("sam's SSO session to end", Duration::from_secs(20), || {
        get(&sam, &w, "/ui/").0 == 303
    });
    let (_, page) = get(&browser(&w), &w, "/ui/login");
    assert!(!page.contains("Sign in with"), "{page}");
    assert_eq!(get(&browser(&w), &w, "/ui/sso/start").0, 404);
}

#[test]
fn sign_in_in_a_headless_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/ui-e2e");
    let chromium = Path::new("/usr/bin/chromium").exists();
    let playwright = e2e.join("node_modules/playwright-core").is_dir();
    if !chromium || !playwright {
        let message = "SKIPPED: chromium or tests/ui-e2e/node_modules is missing";
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_DEPLOY_TOOLS").is_none(),
            "{message}"
        );
        eprintln!("{message}");
        return;
    }
    let Some(w) = world() else { return };
    let out = root.join("target/ui-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let spec = serde_json::json!({
        "login": "pat",
        "provider": format!("localhost:{}", w.idp.port),
        "repositories": ["infra/base", "pat/tool", "platform/app"],
    });
    let run = Command::new("node")
        .arg(e2e.join("sso.mjs"))
        .arg(w.proxy.url("/ui/"))
        .arg(&out)
        .env("PORTCULLIS_E2E_SPEC", spec.to_string())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stdout.contains("sso e2e: passed"),
        "sso.mjs failed:\n{stdout}\n{stderr}\n--- portcullis\n{}\n--- provider\n{}",
        w.proxy.proc.output(),
        w.idp.output()
    );
    // The key made in the browser pushes with skopeo where pat's group may, and nowhere else.
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("the key")
        .to_owned();
    pushes_with_the_key(&w, &key);
}

/// `pat:<key>` (any username would do) pushes to platform/app, reads infra/base, and is
/// refused a push to infra/base and anything at secret/db.
fn pushes_with_the_key(w: &World, key: &str) {
    let creds = format!("pat:{key}");
    let v2 = w.proxy.client();
    let start = std::time::Instant::now();
    while !v2
        .get(w.proxy.url("/v2/"))
        .basic_auth("pat", Some(key))
        .send()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the new key was not loaded:\n{}",
            w.proxy.proc.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = tempfile::tempdir().unwrap();
    write_oci_image(d.path(), "v", b"pushed by pat with a CLI access key");
    let src = format!("oci:{}:v", d.path().display());
    let dst = |name: &str| format!("docker://{}/{name}", w.proxy.host());
    let (ok, err) = copy(&w.proxy, &src, &dst("platform/app:2.0"), Some(&creds));
    assert!(ok, "push to platform/app: {err}\n{}", w.proxy.proc.output());
    let (ok, _) = copy(&w.proxy, &src, &dst("infra/base:2.0"), Some(&creds));
    assert!(!ok, "pat's key pushed to infra/base (pull only)");
    let (ok, _) = copy(&w.proxy, &src, &dst("secret/db:2.0"), Some(&creds));
    assert!(!ok, "pat's key pushed to secret/db");
    let out = tempfile::tempdir().unwrap();
    let pulled = format!("oci:{}:x", out.path().display());
    let (ok, err) = copy(&w.proxy, &dst("infra/base:1.0"), &pulled, Some(&creds));
    assert!(ok, "pull from infra/base: {err}");
    // The audit line names the key.
    assert!(w.proxy.proc.output().contains("\"access_key\""));
}

#[test]
fn a_signed_in_person_makes_a_cli_key_that_carries_their_groups() {
    let Some(w) = world() else { return };
    let pat = browser(&w);
    assert_eq!(sign_in(&pat, &w, "pat").0, 200);
    let (status, page) = get(&pat, &w, "/ui/keys");
    assert_eq!(status, 200);
    assert!(page.contains("value=\"90\""), "{page}");
    // Without the session's CSRF token: refused, nothing written.
    let r = pat
        .post(w.proxy.url("/ui/keys"))
        .form(&[("description", "x")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let keys_file = w.proxy.dir.path().join("keys.jsonl");
    assert_eq!(std::fs::read_to_string(&keys_file).unwrap(), "");
    // A bad scope or expiry: refused with a message, nothing written.
    for (field, value) in [("scopes", "repository:x:own"), ("days", "400")] {
        let r = pat
            .post(w.proxy.url("/ui/keys"))
            .form(&[("csrf", csrf_of(&page).as_str()), (field, value)])
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{field}={value}");
        assert!(r.text().unwrap().contains("Not created"));
    }
    assert_eq!(std::fs::read_to_string(&keys_file).unwrap(), "");
    let r = pat
        .post(w.proxy.url("/ui/keys"))
        .form(&[("csrf", csrf_of(&page).as_str()), ("description", "laptop")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let created = r.text().unwrap();
    let key = created
        .split("id=\"secret\"")
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .expect("the secret on the page")
        .to_owned();
    assert!(key.starts_with("pcl_") && key.len() == 47, "{key}");
    assert!(created.contains(&format!(
        "docker login {} -u pat --password-stdin",
        w.proxy.host()
    )));
    // The file records the key's labels (pat is in no backend), expiring in 90 days.
    let line = std::fs::read_to_string(&keys_file).unwrap();
    let record: serde_json::Value =
        serde_json::from_str(line.lines().rfind(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(record["account"], "pat");
    assert_eq!(
        record["sso_labels"]["groups"],
        serde_json::json!(["platform", "qa"])
    );
    assert_eq!(record["sso_labels"]["team"], serde_json::json!(["infra"]));
    assert!(!line.contains(&key[4..]), "the secret is in the file");
    // Shown once: the page lists the key but never again its secret.
    let (_, again) = get(&pat, &w, "/ui/keys");
    assert!(again.contains("laptop") && !again.contains(&key));
    pushes_with_the_key(&w, &key);

    // Another person cannot revoke pat's key; pat can, and then it no longer works.
    let id = record["id"].as_str().unwrap();
    let sam = browser(&w);
    assert_eq!(sign_in(&sam, &w, "sam").0, 200);
    let (_, sams) = get(&sam, &w, "/ui/keys");
    let r = sam
        .post(w.proxy.url("/ui/keys/revoke"))
        .form(&[("csrf", csrf_of(&sams).as_str()), ("id", id)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = pat
        .post(w.proxy.url("/ui/keys/revoke"))
        .form(&[("csrf", csrf_of(&again).as_str()), ("id", id)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let v2 = w.proxy.client();
    wait_until(
        "the revoked key to stop working",
        Duration::from_secs(20),
        || {
            v2.get(w.proxy.url("/v2/"))
                .basic_auth("pat", Some(&key))
                .send()
                .is_ok_and(|r| r.status() == 401)
        },
    );
}

#[test]
fn check_validates_auth_oidc_as_serve_does_and_explain_knows_sso_keys() {
    let d = tempfile::tempdir().unwrap();
    let base = "upstream: http://127.0.0.1:5001\nacl: acl.yaml\nauth:\n  keys: keys.jsonl\n  oidc:\n    issuer: https://idp.example.com\n    client_id: portcullis\n    client_secret_file: oidc-secret\n";
    write(
        d.path(),
        &[
            ("proxy.yaml", base),
            ("acl.yaml", ACL),
            ("oidc-secret", "\n"),
            ("keys.jsonl", ""),
        ],
    );
    // An empty client secret: refused by check, named by key and file.
    let (code, _, err) = portcullis(&["check", "-c", "proxy.yaml"], d.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("oidc-secret") && err.contains("auth.oidc.client_secret_file"),
        "{err}"
    );
    // A plain-HTTP issuer: refused at its line.
    write(
        d.path(),
        &[
            ("oidc-secret", "s3cret\n"),
            ("proxy.yaml", &base.replace("https://idp", "http://idp")),
        ],
    );
    let (code, _, err) = portcullis(&["check", "-c", "proxy.yaml"], d.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("proxy.yaml:6") && err.contains("auth.oidc.issuer"),
        "{err}"
    );
    write(d.path(), &[("proxy.yaml", base)]);
    let (code, out, err) = portcullis(&["check", "-c", "proxy.yaml"], d.path());
    assert_eq!(code, 0, "{out}{err}");

    // explain --key: a single sign-on key is judged with the labels it recorded.
    let labels = [("groups".to_string(), vec!["platform".to_string()])].into();
    let (record, _) = portcullis::authn::keys::create_sso(
        &d.path().join("keys.jsonl"),
        "pat",
        &[],
        None,
        "",
        labels,
    )
    .unwrap();
    let (code, out, err) = portcullis(
        &[
            "explain",
            "-c",
            "proxy.yaml",
            "--key",
            &record.id,
            "repository:platform/app:pull,push",
            "repository:secret/db:pull",
        ],
        d.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("single sign-on"), "{out}");
    assert!(
        out.contains("repository:platform/app:pull,push: granted pull,push; decided by acl.yaml:4"),
        "{out}"
    );
    assert!(
        out.contains("repository:secret/db:pull: granted nothing"),
        "{out}"
    );
}
