//! Driving the web UI as a browser does: a cookie-keeping client, the login form with its
//! CSRF field, and reading the repository names a list page links to.

use std::time::Duration;

use super::Proxy;

/// A cookie-keeping client that trusts the test CA and never follows redirects.
pub fn browser(proxy: &Proxy) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60));
    if proxy.tls {
        let ca = std::fs::read(proxy.dir.path().join("ca.pem")).unwrap();
        b = b
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .tls_built_in_root_certs(false);
    }
    b.build().unwrap()
}

/// The value of the hidden `csrf` field in a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

pub fn login_page(client: &reqwest::blocking::Client, proxy: &Proxy) -> String {
    let r = client.get(proxy.url("/ui/login")).send().unwrap();
    assert_eq!(r.status(), 200);
    csrf_of(&r.text().unwrap())
}

pub fn login(
    client: &reqwest::blocking::Client,
    proxy: &Proxy,
    account: &str,
    password: &str,
) -> reqwest::blocking::Response {
    let token = login_page(client, proxy);
    client
        .post(proxy.url("/ui/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("account", account),
            ("password", password),
        ])
        .send()
        .unwrap()
}

pub fn logged_in(proxy: &Proxy, account: &str, password: &str) -> reqwest::blocking::Client {
    let client = browser(proxy);
    let r = login(&client, proxy, account, password);
    assert_eq!(r.status(), 303, "login as {account}");
    assert_eq!(r.headers()["location"], "/ui/");
    client
}

pub fn get(client: &reqwest::blocking::Client, proxy: &Proxy, path: &str) -> (u16, String) {
    let r = client.get(proxy.url(path)).send().unwrap();
    let status = r.status().as_u16();
    (status, r.text().unwrap())
}

/// The repository names linked from a list page.
pub fn listed(html: &str) -> Vec<String> {
    html.split("href=\"/ui/repo/")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect()
}
