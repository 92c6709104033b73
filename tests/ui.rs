//! The web UI against the real registry: security headers (the one same-origin script
//! included), cookies, CSRF, lockout, the ACL-filtered list (tag counts, newest image, sorting)
//! and repository pages (newest first, pinned pulls), tag pages (layers, labels, annotations,
//! history), deleting through the API's policy, the explain page, turning the UI off, sessions
//! ending with the account — and the whole flow in a real headless Chromium
//! (`tests/ui-e2e/flow.mjs`, playwright-core), copy buttons and the page without JavaScript
//! included.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ui::*;
use common::*;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const ACL: &str = r#"- match: {account: admin}
  actions: ["*"]
  comment: admins do everything
- match: {account: "/.+/", name: "${account}/**"}
  actions: ["*"]
  comment: everyone owns their namespace
- match: {account: alice, name: "team/**"}
  actions: [pull]
  comment: alice reads the team's images
"#;

fn users_yaml(with_bob: bool) -> String {
    let mut s = format!(
        "users:\n  admin:\n    password: \"{}\"\n  alice:\n    password: \"{}\"\n",
        hash("admin-pw"),
        hash("alice-pw")
    );
    if with_bob {
        s.push_str(&format!("  bob:\n    password: \"{}\"\n", hash("bob-pw")));
    }
    s
}

/// An OCI layout at `dir` whose `tag` is one image per platform: a plain image manifest for
/// one platform, an image index for several. Every config has a `created` time, a label, and
/// a history; every image manifest an annotation.
fn write_layout(dir: &Path, tag: &str, platforms: &[(&str, &str)], layer_len: usize, seed: u64) {
    write_layout_at(dir, tag, platforms, layer_len, seed, "2024-05-01T10:00:00Z")
}

fn write_layout_at(
    dir: &Path,
    tag: &str,
    platforms: &[(&str, &str)],
    layer_len: usize,
    seed: u64,
    created: &str,
) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let mut manifests = Vec::new();
    for (i, (os, arch)) in platforms.iter().enumerate() {
        let layer = pseudo_random(layer_len, seed + i as u64);
        let layer_digest = put(&layer);
        let config = serde_json::json!({
            "created": created, "architecture": arch, "os": os,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "config": {"Labels": {"org.example.built-by": format!("<seed {seed}>")}},
            "history": [
                {"created": created, "created_by": "/bin/sh -c #(nop) ADD file:rootfs in / "},
                {"created": created, "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true}
            ]
        })
        .to_string();
        let config_digest = put(config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer.len()}],
            "annotations": {"org.opencontainers.image.source": "https://example.org/src"}
        })
        .to_string();
        let digest = put(manifest.as_bytes());
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": manifest.len(),
            "platform": {"os": os, "architecture": arch}
        }));
    }
    let top = if manifests.len() == 1 {
        let mut m = manifests.pop().unwrap();
        m.as_object_mut().unwrap().remove("platform");
        m
    } else {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests
        })
        .to_string();
        let digest = put(index.as_bytes());
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json",
                           "digest": digest, "size": index.len()})
    };
    let mut top = top;
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]}).to_string();
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Pushes straight to the registry (not through portcullis).
fn push(registry: &Registry, layout: &Path, tag: &str, to: &str) {
    let (ok, err) = skopeo(&[
        "copy",
        "--all",
        "--retry-times",
        "0",
        "--dest-tls-verify=false",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://127.0.0.1:{}/{to}", registry.port),
    ]);
    assert!(ok, "push {to}: {err}");
}

/// alice/app:1.0 and :2.0 (one image), alice/app:3.0 (a newer one), bob/tool:1.0,
/// team/web:latest (two platforms), secret/db:1.0.
fn seed(registry: &Registry) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let single = d.path().join("single");
    write_layout(&single, "v", &[("linux", "amd64")], 3000, 1);
    let newer = d.path().join("newer");
    write_layout_at(
        &newer,
        "v",
        &[("linux", "amd64")],
        1500,
        3,
        "2025-06-01T08:00:00.5Z",
    );
    let multi = d.path().join("multi");
    write_layout(
        &multi,
        "v",
        &[("linux", "amd64"), ("linux", "arm64")],
        2000,
        7,
    );
    push(registry, &single, "v", "alice/app:1.0");
    push(registry, &single, "v", "alice/app:2.0");
    push(registry, &newer, "v", "alice/app:3.0");
    push(registry, &single, "v", "bob/tool:1.0");
    push(registry, &multi, "v", "team/web:latest");
    push(registry, &single, "v", "secret/db:1.0");
    d
}

fn setup(registry: &Registry, tls: bool, extra_config: &str) -> Proxy {
    let config = format!(
        "upstream: {{upstream}}\nacl: acl.yaml\nauth:\n  users: users.yaml\n  lockout: {{failures: 3, window: 1m}}\n{extra_config}"
    );
    Proxy::start(
        ProxySetup {
            config: &config,
            files: &[
                ("acl.yaml", ACL.to_string()),
                ("users.yaml", users_yaml(true)),
            ],
            tls,
        },
        &registry.url(),
    )
}

/// A client with a cookie jar that trusts the test CA and never follows redirects.
fn assert_security_headers(r: &reqwest::blocking::Response, what: &str) {
    let h = r.headers();
    assert_eq!(
        h.get("content-security-policy")
            .map(|v| v.to_str().unwrap()),
        Some(CSP),
        "{what}"
    );
    assert!(CSP.contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
}

fn set_cookies(r: &reqwest::blocking::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_answer_has_the_security_headers_and_cookies_their_attributes() {
    let registry = Registry::start();
    let _images = seed(&registry);
    let proxy = setup(&registry, true, "");
    let client = browser(&proxy);

    // Anonymous: the redirect to the login page, the form, the stylesheet, a 404.
    let r = client.get(proxy.url("/ui/")).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    assert_security_headers(&r, "redirect");
    let r = client.get(proxy.url("/ui")).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_security_headers(&r, "/ui");
    let r = client.get(proxy.url("/ui/login")).send().unwrap();
    assert_security_headers(&r, "login");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    for attr in [
        "portcullis_login=",
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/ui/",
    ] {
        assert!(cookies[0].contains(attr), "{attr} missing: {cookies:?}");
    }
    let html = r.text().unwrap();
    assert!(!html.contains("style="), "no inline styles");
    // Anonymous visitors are not told the version (not even through the asset names).
    assert!(
        !html.contains(env!("CARGO_PKG_VERSION")),
        "the version shows to anonymous visitors: {html}"
    );
    // One script, a same-origin file the CSP allows; nothing inline.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    let js_href = {
        let at = html.find("<script src=\"").unwrap() + 13;
        html[at..at + html[at..].find('"').unwrap()].to_string()
    };
    assert!(
        js_href.starts_with("/ui/static/") && js_href.ends_with(".js"),
        "{js_href}"
    );
    assert!(html.contains(&format!("<script src=\"{js_href}\" defer></script>")));
    let r = client.get(proxy.url(&js_href)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_security_headers(&r, "script");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(r.text().unwrap().contains("navigator.clipboard"));
    let css_href = {
        let at = html.find("rel=\"stylesheet\" href=\"").unwrap() + 23;
        html[at..at + html[at..].find('"').unwrap()].to_string()
    };
    assert!(css_href.starts_with("/ui/static/"), "{css_href}");
    let r = client.get(proxy.url(&css_href)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_security_headers(&r, "stylesheet");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let r = client
        .get(proxy.url("/ui/static/other.css"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "unknown paths need a login first");

    // Logging in sets the session cookie.
    let token = login_page(&client, &proxy);
    let r = client
        .post(proxy.url("/ui/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("account", "alice"),
            ("password", "alice-pw"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_security_headers(&r, "login answer");
    let cookies = set_cookies(&r);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("portcullis_session="))
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/ui/",
        "Max-Age=28800",
    ] {
        assert!(session.contains(attr), "{attr} missing: {session}");
    }
    for path in [
        "/ui/",
        "/ui/repo/alice/app",
        "/ui/repo/secret/db",
        "/ui/nothing",
        "/ui/explain",
    ] {
        let r = client.get(proxy.url(path)).send().unwrap();
        assert_security_headers(&r, path);
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    let r = client.post(proxy.url("/ui/logout")).send().unwrap();
    assert_eq!(r.status(), 403);
    assert_security_headers(&r, "refused logout");

    // Without TLS the cookies are not `Secure` (the browser would never send them back).
    let plain = setup(&registry, false, "");
    let r = browser(&plain).get(plain.url("/ui/login")).send().unwrap();
    let cookies = set_cookies(&r);
    assert!(
        cookies[0].contains("HttpOnly") && !cookies[0].contains("Secure"),
        "{cookies:?}"
    );
}

#[test]
fn forms_without_a_valid_csrf_token_are_refused() {
    let registry = Registry::start();
    let proxy = setup(&registry, false, "");

    // Login: no token, a wrong token, a token without its cookie.
    let client = browser(&proxy);
    let token = login_page(&client, &proxy);
    let creds = [("account", "alice"), ("password", "alice-pw")];
    let r = client
        .post(proxy.url("/ui/login"))
        .form(&creds)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(proxy.url("/ui/login"))
        .form(&[("csrf", "x".repeat(43).as_str()), creds[0], creds[1]])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let stranger = browser(&proxy);
    let r = stranger
        .post(proxy.url("/ui/login"))
        .form(&[("csrf", token.as_str()), creds[0], creds[1]])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "a token is worthless without its cookie");
    assert!(set_cookies(&r)
        .iter()
        .all(|c| !c.starts_with("portcullis_session=")));
    // A refused login form is not a failed login: the right password still works after.
    let r = client
        .post(proxy.url("/ui/login"))
        .form(&[("csrf", token.as_str()), creds[0], creds[1]])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);

    // Logout: refused without the session's token, and the session lives on.
    let (_, page) = get(&client, &proxy, "/ui/");
    let session_token = csrf_of(&page);
    let r = client
        .post(proxy.url("/ui/logout"))
        .form(&[("csrf", "")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(proxy.url("/ui/logout"))
        .form(&[("csrf", token.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "the login token is not a session token");
    assert_eq!(get(&client, &proxy, "/ui/").0, 200);
    // Another session's token does not work either.
    let other = logged_in(&proxy, "alice", "alice-pw");
    let r = other
        .post(proxy.url("/ui/logout"))
        .form(&[("csrf", session_token.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(proxy.url("/ui/logout"))
        .form(&[("csrf", session_token.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");

    // Explain (an admin's form).
    let admin = logged_in(&proxy, "admin", "admin-pw");
    let scopes = [("account", "alice"), ("scopes", "repository:team/web:pull")];
    let r = admin
        .post(proxy.url("/ui/explain"))
        .form(&scopes)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, page) = get(&admin, &proxy, "/ui/explain");
    let token = csrf_of(&page);
    let r = admin
        .post(proxy.url("/ui/explain"))
        .form(&[("csrf", token.as_str()), scopes[0], scopes[1]])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn wrong_passwords_are_refused_and_count_toward_the_lockout() {
    let registry = Registry::start();
    let proxy = setup(&registry, false, "");
    let client = browser(&proxy);
    for i in 0..3 {
        let r = login(&client, &proxy, "alice", "wrong");
        assert_eq!(r.status(), 401, "attempt {i}");
        assert!(set_cookies(&r)
            .iter()
            .all(|c| !c.starts_with("portcullis_session=")));
        let page = r.text().unwrap();
        assert!(page.contains("wrong account or password"));
        // The account stays filled in and the password field has the focus.
        assert!(
            page.contains("name=\"password\" autocomplete=\"current-password\" required autofocus"),
            "{page}"
        );
        assert!(
            !page.contains("spellcheck=\"false\" required autofocus"),
            "{page}"
        );
        assert_eq!(page.matches("autofocus").count(), 1);
    }
    // Locked: even the right password is refused now, in the UI and on /v2 alike.
    let r = login(&client, &proxy, "alice", "alice-pw");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().unwrap().contains("too many failed logins"));
    let r = proxy
        .client()
        .get(proxy.url("/v2/"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 429, "the UI and the registry share one lockout");
    // An empty password is not a guess.
    let r = login(&client, &proxy, "admin", "");
    assert_eq!(r.status(), 401);
    let log = proxy.proc.output();
    assert!(
        log.contains("\"action\":\"ui\""),
        "UI requests are audited: {log}"
    );
}

#[test]
fn lists_and_repository_pages_show_only_what_the_account_may_pull() {
    let registry = Registry::start();
    let _images = seed(&registry);
    // 1 000 more (empty) repositories for alice, to page through.
    let repos = registry
        .dir
        .path()
        .join("data/docker/registry/v2/repositories");
    for i in 0..1000 {
        std::fs::create_dir_all(repos.join(format!("alice/many{i:03}/_layers"))).unwrap();
    }
    let proxy = setup(&registry, false, "");

    let alice = logged_in(&proxy, "alice", "alice-pw");
    let (status, page) = get(&alice, &proxy, "/ui/");
    assert_eq!(status, 200);
    let first = listed(&page);
    assert_eq!(first.len(), 50, "{first:?}");
    assert_eq!(first[0], "alice/app");
    assert!(page.contains("1002 repositories"), "{page}");
    assert!(page.contains("Page 1 of 21"), "{page}");
    let mut all = Vec::new();
    for n in 1..=21 {
        let started = std::time::Instant::now();
        let (status, page) = get(&alice, &proxy, &format!("/ui/?page={n}"));
        let took = started.elapsed();
        assert_eq!(status, 200);
        assert!(took < Duration::from_millis(500), "page {n} took {took:?}");
        all.extend(listed(&page));
    }
    assert_eq!(all.len(), 1002);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, all, "pages are in order, without repeats");
    assert!(all.contains(&"team/web".to_string()));
    assert!(!all
        .iter()
        .any(|n| n.starts_with("bob/") || n.starts_with("secret/")));
    // Too many to sort by age: said so, and by name.
    let (status, page) = get(&alice, &proxy, "/ui/?sort=recent&page=2");
    assert_eq!(status, 200);
    assert!(
        page.contains("too many repositories to sort by age"),
        "{page}"
    );
    assert_eq!(listed(&page)[0], "alice/many049", "{page}");
    assert!(
        page.contains("<span class=\"meta\">0 tags</span>"),
        "{page}"
    );
    let (_, last) = get(&alice, &proxy, "/ui/?page=999");
    assert!(
        last.contains("Page 21 of 21"),
        "past the end is the last page"
    );
    // Search is a substring of what may be pulled.
    let (_, page) = get(&alice, &proxy, "/ui/?q=web");
    assert_eq!(listed(&page), vec!["team/web"]);
    let (_, page) = get(&alice, &proxy, "/ui/?q=db");
    assert!(listed(&page).is_empty());
    assert!(page.contains("No repository you may pull matches"));

    let bob = logged_in(&proxy, "bob", "bob-pw");
    let (_, page) = get(&bob, &proxy, "/ui/");
    assert_eq!(listed(&page), vec!["bob/tool"]);

    // A repository page: tags with digest, media type, size, creation time, platform.
    let (status, page) = get(&alice, &proxy, "/ui/repo/alice/app");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<code>1.0</code>") && page.contains("<code>2.0</code>"),
        "{page}"
    );
    assert!(page.contains("sha256:"), "{page}");
    assert!(
        page.contains("application/vnd.oci.image.manifest.v1+json"),
        "{page}"
    );
    assert!(page.contains("2024-05-01 10:00:00 UTC"), "{page}");
    assert!(page.contains("linux/amd64"), "{page}");
    assert!(page.contains("bytes, config + layers"), "{page}");
    let host = proxy.host();
    assert!(
        page.contains(&format!("docker pull {host}/alice/app:1.0")),
        "{page}"
    );
    assert!(
        page.contains(&format!("skopeo copy docker://{host}/alice/app:2.0")),
        "{page}"
    );
    // An index lists each platform with its size.
    let (status, page) = get(&alice, &proxy, "/ui/repo/team/web");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("application/vnd.oci.image.index.v1+json"),
        "{page}"
    );
    assert!(page.contains("multi-platform"), "{page}");
    assert!(
        page.contains("linux/amd64 — ") && page.contains("linux/arm64 — "),
        "{page}"
    );

    // Editing the URL: another account's repository is exactly a missing one.
    let (s1, forbidden) = get(&alice, &proxy, "/ui/repo/secret/db");
    let (s2, missing) = get(&alice, &proxy, "/ui/repo/nothing/here");
    let (s3, own_missing) = get(&alice, &proxy, "/ui/repo/alice/nothere");
    let (s4, invalid) = get(&alice, &proxy, "/ui/repo/..%2Fsecret/db");
    assert_eq!((s1, s2, s3, s4), (404, 404, 404, 404));
    assert_eq!(forbidden, missing);
    assert_eq!(forbidden, own_missing);
    assert_eq!(forbidden, invalid);
    assert!(!forbidden.contains("secret/db"));
    let (s, page) = get(&bob, &proxy, "/ui/repo/alice/app");
    assert_eq!(s, 404);
    assert!(!page.contains("<code>1.0</code>"), "{page}");
    // The registry API agrees with the page.
    let api = proxy
        .client()
        .get(proxy.url("/v2/secret/db/tags/list"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap();
    assert_eq!(api.status(), 403);

    // Not logged in: nothing but the login page.
    let anon = browser(&proxy);
    for path in ["/ui/", "/ui/repo/alice/app", "/ui/explain"] {
        let r = anon.get(proxy.url(path)).send().unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/ui/login", "{path}");
    }
}

/// The tag names of a repository page, in the order shown.
fn tags_shown(html: &str) -> Vec<String> {
    html.split("<span class=\"sr-only\">Tag </span>")
        .skip(1)
        .map(|s| {
            let at = s.find("<code>").unwrap() + 6;
            s[at..at + s[at..].find('<').unwrap()].to_string()
        })
        .collect()
}

/// What the registry itself (not portcullis) says `name:reference` is: its status.
fn upstream_status(registry: &Registry, name: &str, reference: &str) -> u16 {
    reqwest::blocking::Client::new()
        .head(format!(
            "{}/v2/{name}/manifests/{reference}",
            registry.url()
        ))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn tag_pages_show_layers_labels_history_and_the_pinned_pull() {
    let registry = Registry::start();
    let _images = seed(&registry);
    let proxy = setup(&registry, false, "");
    let alice = logged_in(&proxy, "alice", "alice-pw");
    let host = proxy.host();

    // The list: tag count and newest image per repository; by name or newest first.
    let (_, page) = get(&alice, &proxy, "/ui/");
    assert!(
        page.contains("3 tags · newest image 2025-06-01 08:00:00 UTC"),
        "{page}"
    );
    assert!(
        page.contains("1 tag · newest image 2024-05-01 10:00:00 UTC"),
        "{page}"
    );
    let newer = tempfile::tempdir().unwrap();
    write_layout_at(
        newer.path(),
        "v",
        &[("linux", "amd64")],
        1000,
        11,
        "2025-06-01T08:00:00.5Z",
    );
    push(&registry, newer.path(), "v", "secret/db:2.0");
    let admin = logged_in(&proxy, "admin", "admin-pw");
    let (_, by_name) = get(&admin, &proxy, "/ui/");
    assert_eq!(
        listed(&by_name),
        vec!["alice/app", "bob/tool", "secret/db", "team/web"]
    );
    let (_, recent) = get(&admin, &proxy, "/ui/?sort=recent");
    assert_eq!(
        listed(&recent),
        vec!["alice/app", "secret/db", "bob/tool", "team/web"],
        "newest image first, ties by name: {recent}"
    );
    assert!(recent.contains("<strong aria-current=\"true\">newest image first</strong>"));
    let (_, searched) = get(&admin, &proxy, "/ui/?sort=recent&q=t");
    assert_eq!(listed(&searched), vec!["secret/db", "bob/tool", "team/web"]);
    assert!(
        searched.contains("name=\"sort\" value=\"recent\""),
        "the search keeps the order"
    );

    // Newest first: 3.0 (2025) before 1.0 and 2.0 (2024, by name).
    let (status, page) = get(&alice, &proxy, "/ui/repo/alice/app");
    assert_eq!(status, 200, "{page}");
    assert_eq!(tags_shown(&page), vec!["3.0", "1.0", "2.0"], "{page}");
    assert!(page.contains("3 tags, newest first"), "{page}");
    // Beside the tag's pull line, the one pinned to its digest.
    let digest = |page: &str, tag: &str| -> String {
        let card = &page[page.find(&format!("id=\"tag-{tag}\"")).unwrap()..];
        let at = card.find("sha256:").unwrap();
        card[at..at + 71].to_string()
    };
    let d1 = digest(&page, "1.0");
    assert!(page.contains(&format!("docker pull {host}/alice/app:1.0")));
    assert!(
        page.contains(&format!("docker pull {host}/alice/app@{d1}")),
        "{page}"
    );
    assert!(
        page.contains("href=\"/ui/repo/alice/app/-/tag/1.0\""),
        "{page}"
    );

    // The tag's own page: layers with sizes, labels, annotations, history, total size.
    let (status, page) = get(&alice, &proxy, "/ui/repo/alice/app/-/tag/1.0");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<h1>alice/app:1.0</h1>"), "{page}");
    assert!(page.contains(&d1), "{page}");
    assert!(
        page.contains(&format!("docker pull {host}/alice/app@{d1}")),
        "{page}"
    );
    assert!(
        page.contains("application/vnd.oci.image.layer.v1.tar"),
        "{page}"
    );
    // The layer (skopeo compresses it on the way) with its size, and the config's.
    let sizes: Vec<&str> = page
        .split("<td class=\"num\" data-label=\"Size\">")
        .skip(1)
        .map(|s| &s[..s.find('<').unwrap()])
        .collect();
    assert_eq!(sizes.len(), 2, "{page}");
    assert!(
        sizes[0].ends_with(" KiB") && sizes[1].ends_with(" B"),
        "{sizes:?}"
    );
    assert!(page.contains("config + 1 layer)"), "{page}");
    assert!(page.contains("org.example.built-by"), "{page}");
    assert!(
        page.contains("&lt;seed 1&gt;"),
        "labels are escaped: {page}"
    );
    assert!(page.contains("org.opencontainers.image.source"), "{page}");
    assert!(page.contains("https://example.org/src"), "{page}");
    assert!(page.contains("ADD file:rootfs in /"), "{page}");
    assert!(page.contains("CMD [&quot;sh&quot;]"), "{page}");
    assert!(page.contains("2024-05-01 10:00:00 UTC"), "{page}");
    // alice may pull team/web but not delete: no delete link anywhere.
    let (status, page) = get(&alice, &proxy, "/ui/repo/team/web/-/tag/latest");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("linux/amd64") && page.contains("linux/arm64"),
        "{page}"
    );
    assert!(page.contains("Pull this platform only"), "{page}");
    assert!(page.contains("all 2 platforms"), "{page}");
    assert!(!page.contains("Delete"), "{page}");
    let (_, page) = get(&alice, &proxy, "/ui/repo/team/web");
    assert!(!page.contains("Delete"), "{page}");

    // What the account may not pull is exactly a missing tag; a bad tag, too.
    let (s1, hidden) = get(&alice, &proxy, "/ui/repo/secret/db/-/tag/1.0");
    let (s2, missing) = get(&alice, &proxy, "/ui/repo/alice/app/-/tag/9.9");
    let (s3, bad) = get(&alice, &proxy, "/ui/repo/alice/app/-/tag/..");
    let (s4, other) = get(&alice, &proxy, "/ui/repo/alice/app/-/nothing");
    assert_eq!((s1, s2, s3, s4), (404, 404, 404, 404));
    assert_eq!(hidden, missing);
    assert_eq!(hidden, bad);
    assert_eq!(hidden, other);
    let r = alice
        .post(proxy.url("/ui/repo/alice/app/-/tag/1.0"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[test]
fn deleting_from_the_ui_needs_the_delete_grant_a_confirmation_and_the_csrf_token() {
    let registry = Registry::start();
    let _images = seed(&registry);
    // With the manifest cache on (tags kept for an hour): a UI delete forgets them too.
    let proxy = setup(&registry, false, "cache:\n  manifests: {tag_ttl: 1h}\n");
    let alice = logged_in(&proxy, "alice", "alice-pw");
    let api_status = |reference: &str| {
        proxy
            .client()
            .get(proxy.url(&format!("/v2/alice/app/manifests/{reference}")))
            .basic_auth("alice", Some("alice-pw"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
            .send()
            .unwrap()
            .status()
    };

    // The confirmation names the digest and every tag that goes with it.
    let (_, page) = get(&alice, &proxy, "/ui/repo/alice/app");
    assert!(
        page.contains("href=\"/ui/repo/alice/app/-/delete?tag=2.0\""),
        "{page}"
    );
    let (status, confirm) = get(&alice, &proxy, "/ui/repo/alice/app/-/delete?tag=2.0");
    assert_eq!(status, 200, "{confirm}");
    let at = confirm.find("name=\"digest\" value=\"").unwrap() + 21;
    let digest = confirm[at..at + 71].to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let doomed = &confirm[confirm.find("<ul class=\"doomed\">").unwrap()..];
    let doomed = &doomed[..doomed.find("</ul>").unwrap()];
    assert_eq!(doomed.matches("<li>").count(), 2, "{doomed}");
    assert!(doomed.contains("<code>1.0</code>") && doomed.contains("<code>2.0</code>"));
    assert_eq!(upstream_status(&registry, "alice/app", "1.0"), 200);
    let token = csrf_of(&confirm);

    // Without the session's token: refused, nothing deleted.
    for form in [
        vec![("digest", digest.as_str())],
        vec![("csrf", "nope"), ("digest", digest.as_str())],
    ] {
        let r = alice
            .post(proxy.url("/ui/repo/alice/app/-/delete"))
            .form(&form)
            .send()
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    // Another account's session token does not work either.
    let admin = logged_in(&proxy, "admin", "admin-pw");
    let (_, admin_page) = get(&admin, &proxy, "/ui/");
    let r = alice
        .post(proxy.url("/ui/repo/alice/app/-/delete"))
        .form(&[("csrf", csrf_of(&admin_page).as_str()), ("digest", &digest)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(upstream_status(&registry, "alice/app", &digest), 200);

    // Pull but no delete (team/web), and no pull at all (secret/db): refused, with a valid
    // token and a real digest, and the registry still has them.
    let (_, web) = get(&alice, &proxy, "/ui/repo/team/web");
    let web_digest = {
        let at = web.find("sha256:").unwrap();
        web[at..at + 71].to_string()
    };
    let (s, _) = get(&alice, &proxy, "/ui/repo/team/web/-/delete?tag=latest");
    assert_eq!(s, 403);
    let r = alice
        .post(proxy.url("/ui/repo/team/web/-/delete"))
        .form(&[("csrf", token.as_str()), ("digest", &web_digest)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(upstream_status(&registry, "team/web", &web_digest), 200);
    let (s, _) = get(&alice, &proxy, "/ui/repo/secret/db/-/delete?tag=1.0");
    assert_eq!(s, 404);
    let r = alice
        .post(proxy.url("/ui/repo/secret/db/-/delete"))
        .form(&[("csrf", token.as_str()), ("digest", &web_digest)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(upstream_status(&registry, "secret/db", "1.0"), 200);
    // A malformed digest is refused before anything is sent.
    let r = alice
        .post(proxy.url("/ui/repo/alice/app/-/delete"))
        .form(&[("csrf", token.as_str()), ("digest", "1.0")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // The registry API decides the same way.
    let api = proxy
        .client()
        .delete(proxy.url(&format!("/v2/team/web/manifests/{web_digest}")))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap();
    assert_eq!(api.status(), 403);

    // Cached through /v2 before the delete.
    for reference in [digest.as_str(), "1.0", digest.as_str(), "1.0"] {
        assert_eq!(api_status(reference), 200);
    }

    // With the token: deleted in the registry, both tags gone, 3.0 stays.
    let r = alice
        .post(proxy.url("/ui/repo/alice/app/-/delete"))
        .form(&[
            ("csrf", token.as_str()),
            ("digest", &digest),
            ("tag", "2.0"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to, format!("/ui/repo/alice/app?deleted={digest}"));
    assert_eq!(upstream_status(&registry, "alice/app", &digest), 404);
    assert_eq!(upstream_status(&registry, "alice/app", "1.0"), 404);
    assert_eq!(upstream_status(&registry, "alice/app", "2.0"), 404);
    assert_eq!(upstream_status(&registry, "alice/app", "3.0"), 200);
    // And through /v2 at once, not from the cache.
    assert_eq!(api_status(&digest), 404);
    assert_eq!(api_status("1.0"), 404);
    let (_, page) = get(&alice, &proxy, &to);
    assert!(page.contains("Deleted:"), "{page}");
    assert_eq!(tags_shown(&page), vec!["3.0"], "{page}");
    let (_, list) = get(&alice, &proxy, "/ui/");
    assert!(
        list.contains("1 tag · newest image 2025-06-01 08:00:00 UTC"),
        "the list forgets what it knew of the repository: {list}"
    );

    // Audited: the attempts refused and the one carried out, with what was to go.
    let log = proxy.proc.output();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("ui delete")).collect();
    assert!(
        lines.iter().any(|l| l.contains("\"decision\":\"allowed\"")
            && l.contains("\"account\":\"alice\"")
            && l.contains("\"client\":\"127.0.0.1\"")
            && l.contains("\"repository\":\"alice/app\"")
            && l.contains(&digest)
            && l.contains("\"status\":303")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"decision\":\"denied\"")
            && l.contains("\"repository\":\"team/web\"")
            && l.contains(&web_digest)),
        "{lines:#?}"
    );
}

#[test]
fn the_explain_page_is_only_for_ui_admins_and_names_the_deciding_rule() {
    let registry = Registry::start();
    let proxy = setup(&registry, false, "");
    let alice = logged_in(&proxy, "alice", "alice-pw");
    let (status, page) = get(&alice, &proxy, "/ui/explain");
    assert_eq!(status, 404);
    assert!(!page.contains("href=\"/ui/explain\""), "no menu entry");
    let (_, list) = get(&alice, &proxy, "/ui/");
    let token = csrf_of(&list);
    let r = alice
        .post(proxy.url("/ui/explain"))
        .form(&[
            ("csrf", token.as_str()),
            ("account", "admin"),
            ("scopes", "registry:catalog:*"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "posting does not help a non-admin");

    let admin = logged_in(&proxy, "admin", "admin-pw");
    let (status, page) = get(&admin, &proxy, "/ui/explain");
    assert_eq!(status, 200);
    let token = csrf_of(&page);
    let r = admin
        .post(proxy.url("/ui/explain"))
        .form(&[
            ("csrf", token.as_str()),
            ("account", "alice"),
            ("labels", "groups=qa"),
            ("ip", "10.1.2.3"),
            ("scopes", "repository:team/web:pull,push\nrepository:secret/db:pull\nrepository:alice/x:delete"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().unwrap();
    let acl = proxy.dir.path().join("acl.yaml");
    let acl = acl.display();
    assert!(page.contains("repository:team/web:pull,push"), "{page}");
    assert!(page.contains(&format!("{acl}:7")), "{page}");
    assert!(
        page.contains("alice reads the team&#39;s images")
            || page.contains("alice reads the team's images"),
        "{page}"
    );
    assert!(
        page.contains("no rule matched (denied by default)"),
        "{page}"
    );
    assert!(page.contains(&format!("{acl}:4")), "{page}");
    assert!(page.contains("groups=qa"), "{page}");
    // The same answers as the command line.
    let cli = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["explain", "-c"])
        .arg(proxy.dir.path().join("proxy.yaml"))
        .args(["--account", "alice", "repository:team/web:pull,push"])
        .output()
        .unwrap();
    let cli = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.contains(&format!("granted pull; decided by {acl}:7")),
        "{cli}"
    );
    // A bad scope is a message, not a crash.
    let r = admin
        .post(proxy.url("/ui/explain"))
        .form(&[
            ("csrf", token.as_str()),
            ("account", "alice"),
            ("scopes", "nonsense"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("must be type:name:actions"));
    // A typo is refused, not answered "denied".
    for (scope, wanted) in [
        ("repository:team/web:delet", "unknown action"),
        ("repositry:team/web:pull", "unknown scope type"),
        ("repository:Team/Web:pull", "is not a repository name"),
    ] {
        let r = admin
            .post(proxy.url("/ui/explain"))
            .form(&[
                ("csrf", token.as_str()),
                ("account", "alice"),
                ("scopes", scope),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{scope}");
        let page = r.text().unwrap();
        assert!(page.contains(wanted), "{scope}: {page}");
        assert!(!page.contains("no rule matched"), "{scope}: {page}");
    }
}

#[test]
fn the_ui_can_be_turned_off_or_moved() {
    let registry = Registry::start();
    let off = setup(&registry, false, "ui: {enabled: false}\n");
    for path in ["/ui/", "/ui/login", "/ui"] {
        let r = off.client().get(off.url(path)).send().unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.headers().get("content-security-policy").is_none());
    }
    let moved = setup(
        &registry,
        false,
        "ui: {path: /console/, title: Example registry, session_lifetime: 1h}\n",
    );
    assert_eq!(
        moved
            .client()
            .get(moved.url("/ui/login"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let client = browser(&moved);
    let r = client.get(moved.url("/console/login")).send().unwrap();
    assert_eq!(r.status(), 200);
    let cookies = set_cookies(&r);
    assert!(cookies[0].contains("Path=/console/"), "{cookies:?}");
    let page = r.text().unwrap();
    assert!(page.contains("Example registry"), "{page}");
    let token = csrf_of(&page);
    let r = client
        .post(moved.url("/console/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("account", "bob"),
            ("password", "bob-pw"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(set_cookies(&r).iter().any(|c| c.contains("Max-Age=3600")));
    assert_eq!(r.headers()["location"], "/console/");
}

#[test]
fn sessions_end_with_logout_and_with_the_account() {
    let registry = Registry::start();
    let proxy = setup(&registry, false, "");

    // Logout ends the session even for a copy of its cookie.
    let client = browser(&proxy);
    let r = login(&client, &proxy, "alice", "alice-pw");
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("portcullis_session="))
        .unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let copy = proxy.client();
    let with_copy = || {
        copy.get(proxy.url("/ui/"))
            .header("Cookie", &cookie)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(with_copy(), 200);
    let (_, page) = get(&client, &proxy, "/ui/");
    client
        .post(proxy.url("/ui/logout"))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .unwrap();
    assert_eq!(get(&client, &proxy, "/ui/").0, 303);
    assert_eq!(with_copy(), 303);

    // A tampered cookie is no session (and is cleared).
    let r = copy
        .get(proxy.url("/ui/"))
        .header("Cookie", format!("{cookie}x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(set_cookies(&r)
        .iter()
        .any(|c| c.starts_with("portcullis_session=;") && c.contains("Max-Age=0")));

    // Removing the account from users.yaml (a reload) ends its sessions.
    let bob = logged_in(&proxy, "bob", "bob-pw");
    assert_eq!(get(&bob, &proxy, "/ui/").0, 200);
    std::fs::write(proxy.dir.path().join("users.yaml"), users_yaml(false)).unwrap();
    wait_until("bob's session to end", Duration::from_secs(20), || {
        get(&bob, &proxy, "/ui/").0 == 303
    });
    let r = login(&browser(&proxy), &proxy, "bob", "bob-pw");
    assert_eq!(r.status(), 401);
    // Others are unaffected.
    let alice = logged_in(&proxy, "alice", "alice-pw");
    assert_eq!(get(&alice, &proxy, "/ui/").0, 200);
}

#[test]
fn sessions_end_when_their_accounts_password_changes() {
    let registry = Registry::start();
    let proxy = setup(&registry, false, "");
    let alice = logged_in(&proxy, "alice", "alice-pw");
    let bob = logged_in(&proxy, "bob", "bob-pw");
    assert_eq!(get(&alice, &proxy, "/ui/").0, 200);
    assert_eq!(get(&bob, &proxy, "/ui/").0, 200);
    // alice's password changes in users.yaml; every other stored hash stays byte for byte.
    let path = proxy.dir.path().join("users.yaml");
    let mut file: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["users"]["alice"]["password"] = hash("alice-new-pw").into();
    std::fs::write(&path, serde_yaml_ng::to_string(&file).unwrap()).unwrap();
    // alice's session ends on her next request after the reload (and its cookie is cleared).
    wait_until("alice's session to end", Duration::from_secs(20), || {
        get(&alice, &proxy, "/ui/").0 == 303
    });
    // bob's, whose entry did not change, lives on.
    assert_eq!(get(&bob, &proxy, "/ui/").0, 200);
    // alice logs in with the new password, and that session works.
    let alice = logged_in(&proxy, "alice", "alice-new-pw");
    assert_eq!(get(&alice, &proxy, "/ui/").0, 200);
}

/// Whether a deployment tool is present; otherwise skip with a message, or fail when
/// `PORTCULLIS_REQUIRE_DEPLOY_TOOLS` is set (scripts/test.sh sets it).
fn tool_present(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    let message = format!(
        "SKIPPED: {what} is missing (scripts/test.sh installs it; PORTCULLIS_REQUIRE_DEPLOY_TOOLS=1 makes this a failure)"
    );
    if std::env::var_os("PORTCULLIS_REQUIRE_DEPLOY_TOOLS").is_some() {
        panic!("{message}");
    }
    eprintln!("{message}");
    false
}

#[test]
fn end_to_end_in_a_headless_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/ui-e2e");
    let node_ok = Command::new("node").arg("--version").output().is_ok();
    if !tool_present("`node`", node_ok)
        || !tool_present("/usr/bin/chromium", Path::new("/usr/bin/chromium").exists())
        || !tool_present(
            "tests/ui-e2e/node_modules/playwright-core (npm ci in tests/ui-e2e)",
            e2e.join("node_modules/playwright-core").is_dir(),
        )
    {
        return;
    }
    let registry = Registry::start();
    let _images = seed(&registry);
    let proxy = setup(&registry, true, "");
    let out: PathBuf = root.join("target/ui-screenshots");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let spec = serde_json::json!({
        "users": [
            {"account": "alice", "password": "alice-pw",
             "repositories": ["alice/app", "team/web"],
             "open": "alice/app", "tags": ["3.0", "1.0", "2.0"], "search": "web", "phone": true,
             "newest": "alice/app",
             "delete": true},
            {"account": "bob", "password": "bob-pw",
             "repositories": ["bob/tool"],
             "open": "bob/tool", "tags": ["1.0"], "phone": false, "newest": "bob/tool"},
            {"account": "admin", "password": "admin-pw",
             "repositories": ["alice/app", "bob/tool", "secret/db", "team/web"],
             "open": "team/web", "tags": ["latest"], "explain": true, "phone": true,
             "newest": "alice/app"}
        ]
    });
    let run = Command::new("node")
        .arg(e2e.join("flow.mjs"))
        .arg(proxy.url("/ui/"))
        .arg(&out)
        .env("PORTCULLIS_E2E_SPEC", spec.to_string())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        run.status.success(),
        "flow.mjs failed:\n{stdout}\n{stderr}\n--- portcullis\n{}",
        proxy.proc.output()
    );
    assert!(stdout.contains("e2e: all flows passed"), "{stdout}");
    println!("screenshots in {}", out.display());
    for name in [
        "alice-desktop-1-login.png",
        "alice-desktop-1b-wrong-password.png",
        "alice-desktop-3c-tag.png",
        "alice-phone-3c-tag.png",
        "alice-phone-6-confirm-delete.png",
        "alice-phone-7-deleted.png",
        "bob-nojs-3-repository.png",
        "alice-desktop-2-repositories.png",
        "alice-desktop-3-repository.png",
        "alice-phone-2-repositories.png",
        "alice-phone-3-repository.png",
        "bob-desktop-2-repositories.png",
        "admin-desktop-4-explain.png",
    ] {
        let p = out.join(name);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{} missing or empty", p.display());
    }
}
