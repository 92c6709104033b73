//! The web UI: server-rendered pages under `ui.path` (default `/ui/`) on the client listener,
//! compiled into the binary — one small same-origin script for copy buttons (the pages work
//! without it), no external resources.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | mount check, dispatch, request parsing, security headers, writing answers |
//! | [`session`] | signed, expiring session cookies; the key; logged-out sessions |
//! | [`csrf`] | CSRF tokens (session-bound, and the login form's double-submit cookie) |
//! | [`pages`] | the maud templates |
//! | [`registry`] | tags, manifests and configs read from the upstream |
//! | [`assets`] | the embedded stylesheet and copy-button script |
//! | `lists` | the repository list and a repository's tags |
//! | `images` | a tag's own page, and deleting a manifest |
//! | `login` | the login form and `POST login` |
//! | `sso` | single sign-on: `sso/start`, `sso/callback`, and what keeps such a session valid |
//! | `explain_page` | the explain page for UI admins |
//! | `keys_page` | the CLI access keys page: a personal access key for `docker login` |
//! | [`gateway`] | what the UI needs from the proxy it is mounted in (a trait the proxy implements) |
//!
//! Access is never decided here: logins go through the proxy's one login path (lockout
//! included), listings through [`crate::catalog::visible_to`], and repository, tag and delete
//! pages ask [`crate::policy::authorize`] about the very `/v2` request they are about to make
//! upstream, so the UI never shows or does what the registry API would refuse. A repository
//! the account may not pull is answered exactly like one that does not exist.

pub mod assets;
pub mod csrf;
mod explain_page;
pub mod gateway;
mod images;
mod keys_page;
mod lists;
mod login;
pub mod pages;
pub mod registry;
pub mod session;
mod sso;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;

use crate::acl::{AccessRequest, RuleOrigin};
use crate::authn::{AuthnError, Credentials, Identity};
use crate::client::ClientAddr;
use crate::config;
use crate::explain::{self, Asker, Scope};
use crate::outcome::Outcome;
use crate::policy::Subject;
use crate::state::State;
use gateway::Gateway;

use explain_page::{explain_page, is_admin};
use pages::Chrome;
use session::{Claims, Key};

use crate::cluster::revocations::{self, Revocations};

/// The Content-Security-Policy of every UI answer: nothing but our own stylesheet, our own
/// copy-button script (no inline script, no `eval`, no requests of its own: `connect-src`
/// stays `'none'`) and images, forms only to ourselves, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Repositories per page of the list.
pub const REPOSITORIES_PER_PAGE: usize = 50;
/// Tags per page of a repository (each costs upstream reads the first time).
pub const TAGS_PER_PAGE: usize = 25;
/// Up to this many tags, a repository page reads them all to show the newest first (what was
/// read is remembered by digest, so a second visit costs one request per tag); beyond it,
/// tags are listed by name.
pub const NEWEST_FIRST_MAX: usize = 250;
/// The largest form body read.
const MAX_FORM: usize = 16 * 1024;
/// Up to this many matching repositories, the list can be sorted by their newest image
/// (each is read; summaries are reused for a few seconds); beyond it, only by name.
pub const RECENT_SORT_MAX: usize = 100;
/// The longest search text honoured.
const MAX_QUERY: usize = 200;
/// Scopes one explain request may ask about.
const MAX_SCOPES: usize = 20;
/// How long the login form's CSRF cookie lives.
const LOGIN_COOKIE_AGE: u64 = 3600;

/// True when `req` is for the UI: it is enabled and the path is under `ui.path` (or is
/// `ui.path` without its trailing `/`). Absolute-form HTTP/1 targets never are.
pub fn is_mounted(ui: &config::Ui, req: &RequestHeader, http2: bool) -> bool {
    if !ui.enabled {
        return false;
    }
    if !http2 && (req.uri.scheme().is_some() || req.uri.authority().is_some()) {
        return false;
    }
    let path = req.uri.path();
    path.starts_with(&ui.path) || path == ui.path.trim_end_matches('/')
}

/// What the audit line and metrics learn from a UI request.
#[derive(Debug)]
pub struct Served {
    /// The account (logged in, or trying to).
    pub account: Option<String>,
    /// The decision label.
    pub outcome: Outcome,
    /// The ACL rule that decided a repository page.
    pub rule: Option<RuleOrigin>,
}

/// The UI's process-wide parts: the session key, logged-out sessions, the registry reader.
pub struct Ui {
    key: Key,
    revocations: Arc<Revocations>,
    reader: Arc<registry::Reader>,
}

/// A complete answer, before it is written.
struct Answer {
    status: u16,
    content_type: &'static str,
    cache: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    served: Served,
}

impl Answer {
    fn html(status: u16, markup: maud::Markup, outcome: Outcome) -> Answer {
        Answer {
            status,
            content_type: "text/html; charset=utf-8",
            cache: "no-store",
            headers: vec![],
            body: Bytes::from(markup.into_string()),
            served: Served {
                account: None,
                outcome,
                rule: None,
            },
        }
    }

    fn redirect(to: String, outcome: Outcome) -> Answer {
        Answer {
            status: 303,
            content_type: "text/plain; charset=utf-8",
            cache: "no-store",
            headers: vec![("Location", to)],
            body: Bytes::new(),
            served: Served {
                account: None,
                outcome,
                rule: None,
            },
        }
    }

    fn with(mut self, name: &'static str, value: String) -> Answer {
        self.headers.push((name, value));
        self
    }

    /// Starts the session `value` (a password login or a single sign-on): its cookie set, the
    /// login form's CSRF cookie cleared.
    fn start_session(self, value: &str, ui: &config::Ui, tls: bool) -> Answer {
        self.with(
            "Set-Cookie",
            session::set_cookie(
                session::COOKIE,
                value,
                &ui.path,
                ui.session_lifetime.as_secs(),
                tls,
            ),
        )
        .with(
            "Set-Cookie",
            session::set_cookie(csrf::LOGIN_COOKIE, "", &ui.path, 0, tls),
        )
    }

    fn account(mut self, account: Option<&str>) -> Answer {
        self.served.account = account.map(str::to_owned);
        self
    }
}

/// A logged-in visitor.
struct Visitor {
    claims: Claims,
    identity: Identity,
    csrf: String,
    admin: bool,
}

/// What one request carries, parsed.
struct Request {
    method: Method,
    /// The path after `ui.path`.
    rest: String,
    query: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
    form: Vec<(String, String)>,
}

impl Request {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn page(&self) -> usize {
        self.query("page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1)
    }
}

fn cookies_of(req: &RequestHeader) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for value in req.headers.get_all("cookie") {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                out.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
    }
    out
}

fn is_form_body(req: &RequestHeader) -> bool {
    req.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|v| v.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

impl Ui {
    /// The UI for `config`: its session key from `session_key_file`, or a random one.
    pub fn new(config: &config::Ui, revocations: Arc<Revocations>) -> Result<Ui, String> {
        let key = match &config.session_key_file {
            Some(path) => Key::from_file(path)?,
            None => Key::random(),
        };
        Ok(Ui {
            key,
            revocations,
            reader: Arc::new(registry::Reader::new()),
        })
    }

    /// Answers a request [`is_mounted`] accepted, and writes the answer.
    pub async fn serve(
        &self,
        proxy: &dyn Gateway,
        session: &mut Session,
        state: &State,
        client: ClientAddr,
    ) -> pingora::Result<Served> {
        let answer = self.answer(proxy, session, state, client).await?;
        write(session, &answer).await?;
        Ok(answer.served)
    }

    async fn answer(
        &self,
        proxy: &dyn Gateway,
        session: &mut Session,
        state: &State,
        client: ClientAddr,
    ) -> pingora::Result<Answer> {
        let ip = client.ip();
        let ui = &state.config.ui;
        let base = ui.path.as_str();
        let anonymous = Chrome {
            title: &ui.title,
            base,
            account: None,
            csrf: None,
            admin: false,
            keys: false,
        };
        let req = session.req_header();
        let path = req.uri.path().to_owned();
        let Some(rest) = path.strip_prefix(base) else {
            // `/ui` without the slash.
            return Ok(Answer::redirect(base.to_owned(), Outcome::Allowed));
        };
        let method = req.method.clone();
        let asset = match rest.strip_prefix("static/") {
            Some(f) if f == assets::stylesheet() => Some(("text/css; charset=utf-8", assets::CSS)),
            Some(f) if f == assets::script() => {
                Some(("text/javascript; charset=utf-8", assets::SCRIPT))
            }
            Some(assets::ICON) => Some(("image/svg+xml", assets::ICON_SVG)),
            _ => None,
        };
        if let Some((content_type, text)) = asset {
            return Ok(match method {
                Method::GET | Method::HEAD => Answer {
                    status: 200,
                    content_type,
                    cache: "public, max-age=3600",
                    headers: vec![],
                    body: Bytes::from_static(text.as_bytes()),
                    served: Served {
                        account: None,
                        outcome: Outcome::Allowed,
                        rule: None,
                    },
                },
                _ => not_allowed(&anonymous, "GET"),
            });
        }
        let query = match req.uri.query() {
            None => vec![],
            Some(q) => match crate::route::parse_query(q) {
                Ok(pairs) => pairs,
                Err(_) => {
                    let page = pages::problem(
                        &anonymous,
                        "Bad request",
                        "The address has a malformed query.",
                    );
                    return Ok(Answer::html(400, page, Outcome::Invalid));
                }
            },
        };
        let mut request = Request {
            method,
            rest: rest.to_owned(),
            query,
            cookies: cookies_of(req),
            form: vec![],
        };
        if request.method == Method::POST {
            let declared = req
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            let form_type = is_form_body(req);
            if declared.is_some_and(|n| n > MAX_FORM) {
                session.set_keepalive(None);
                let page = pages::problem(&anonymous, "Too large", "The form is too large.");
                return Ok(Answer::html(413, page, Outcome::Invalid));
            }
            let mut body = Vec::new();
            while let Some(chunk) = session.read_request_body().await? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_FORM {
                    session.set_keepalive(None);
                    let page = pages::problem(&anonymous, "Too large", "The form is too large.");
                    return Ok(Answer::html(413, page, Outcome::Invalid));
                }
            }
            if form_type {
                let text = String::from_utf8_lossy(&body);
                request.form = crate::route::parse_query(&text).unwrap_or_default();
            }
        }

        let now = SystemTime::now();
        let mut clear_session = false;
        let visitor = match request.cookie(session::COOKIE) {
            None => None,
            Some(value) => match self.visitor(state, value, ip, now).await {
                Ok(v) => {
                    clear_session = v.is_none();
                    v
                }
                Err(why) => {
                    tracing::warn!(reason = %why, "UI session check: authentication backend unavailable");
                    let page = pages::problem(
                        &anonymous,
                        "Unavailable",
                        "The login service is unavailable; try again later.",
                    );
                    return Ok(
                        Answer::html(503, page, Outcome::Error).with("Retry-After", "5".into())
                    );
                }
            },
        };
        let mut answer = self
            .route(
                proxy,
                session,
                state,
                client,
                &request,
                visitor.as_ref(),
                now,
            )
            .await;
        if clear_session && !answer.headers.iter().any(|(n, _)| *n == "Set-Cookie") {
            answer.headers.push((
                "Set-Cookie",
                session::set_cookie(session::COOKIE, "", base, 0, proxy.tls()),
            ));
        }
        if answer.served.account.is_none() {
            answer.served.account = visitor.map(|v| v.identity.account);
        }
        Ok(answer)
    }

    /// The visitor a session cookie names: `Ok(None)` for a bad, expired or logged-out
    /// session or an account that no longer exists; `Err` when that cannot be told.
    async fn visitor(
        &self,
        state: &State,
        value: &str,
        ip: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<Option<Visitor>, String> {
        let ui = &state.config.ui;
        let Some(claims) = session::verify(&self.key, value, ui.session_lifetime, now) else {
            return Ok(None);
        };
        if claims.account.is_empty() {
            return Ok(None);
        }
        // Logged out (on any replica), or the account revoked. Unknowable counts as revoked:
        // the visitor logs in again.
        let (nonce, account) = (
            revocations::session(&claims.nonce),
            revocations::account(&claims.account),
        );
        let checked = self
            .revocations
            .revoked(&[(&nonce, claims.issued), (&account, claims.issued)])
            .await;
        if !matches!(checked, Ok(false)) {
            return Ok(None);
        }
        if let Some(sso) = &claims.sso {
            let Some(identity) = self.sso_identity(state, &claims, sso).await? else {
                return Ok(None);
            };
            let admin = is_admin(state, &identity, ip);
            return Ok(Some(Visitor {
                csrf: csrf::session_token(&self.key, &claims),
                claims,
                identity,
                admin,
            }));
        }
        // The account must still exist, with its current labels, as for Bearer tokens, and
        // with the credential it logged in with.
        let identity = match state.authn.current_cached(&claims.account).await {
            Ok((identity, stamp)) if session::is_bound(&self.key, &claims, &stamp) => identity,
            Ok(_) => return Ok(None),
            Err(AuthnError::Unavailable(why)) => return Err(why),
            Err(_) => return Ok(None),
        };
        let admin = is_admin(state, &identity, ip);
        Ok(Some(Visitor {
            csrf: csrf::session_token(&self.key, &claims),
            claims,
            identity,
            admin,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn route(
        &self,
        proxy: &dyn Gateway,
        session: &Session,
        state: &State,
        client: ClientAddr,
        request: &Request,
        visitor: Option<&Visitor>,
        now: SystemTime,
    ) -> Answer {
        let ip = client.ip();
        let ui = &state.config.ui;
        let base = ui.path.as_str();
        let chrome = Chrome {
            title: &ui.title,
            base,
            account: visitor.map(|v| v.identity.account.as_str()),
            csrf: visitor.map(|v| v.csrf.as_str()),
            admin: visitor.is_some_and(|v| v.admin),
            keys: visitor.is_some() && state.config.auth.keys.is_some(),
        };
        let get = matches!(request.method, Method::GET | Method::HEAD);
        let post = request.method == Method::POST;
        match request.rest.as_str() {
            "login" if get => match visitor {
                Some(_) => Answer::redirect(base.to_owned(), Outcome::Allowed),
                None => {
                    self.login_form(state, request, proxy.tls(), "", None, 200, Outcome::Allowed)
                }
            },
            "login" if post => self.login(proxy, state, request, client, now).await,
            "login" => not_allowed(&chrome, "GET, POST"),
            "sso/start" if get => self.sso_start(proxy, session, state, request, now).await,
            "sso/callback" if get => self.sso_callback(proxy, session, state, request, now).await,
            "sso/start" | "sso/callback" => not_allowed(&chrome, "GET"),
            "logout" if post => match visitor {
                None => Answer::redirect(format!("{base}login"), Outcome::Unauthenticated),
                Some(v) => {
                    if !csrf::matches(&v.csrf, request.field(csrf::FIELD)) {
                        return forbidden(&chrome);
                    }
                    let keep =
                        Duration::from_secs(v.claims.expires.saturating_sub(v.claims.issued));
                    let subject = revocations::session(&v.claims.nonce);
                    if let Err(e) = self.revocations.revoke(&subject, now, keep).await {
                        tracing::warn!(error = %e, account = %v.claims.account, "UI logout not shared with the other replicas");
                    }
                    Answer::redirect(format!("{base}login"), Outcome::Allowed).with(
                        "Set-Cookie",
                        session::set_cookie(session::COOKIE, "", base, 0, proxy.tls()),
                    )
                }
            },
            "logout" => not_allowed(&chrome, "POST"),
            _ => {
                let Some(visitor) = visitor else {
                    return Answer::redirect(format!("{base}login"), Outcome::Unauthenticated);
                };
                let subject = Subject {
                    identity: &visitor.identity,
                    ip,
                    service: state.service(),
                };
                let rest = request.rest.as_str();
                if rest.is_empty() {
                    if !get {
                        return not_allowed(&chrome, "GET");
                    }
                    return lists::repositories(
                        proxy,
                        state,
                        &chrome,
                        request,
                        subject,
                        &self.reader,
                    )
                    .await;
                }
                if rest == "keys" || rest == "keys/revoke" {
                    if rest == "keys" && get {
                        return keys_page::keys_page(
                            proxy, session, state, &chrome, visitor, None, now,
                        )
                        .await;
                    }
                    if !post {
                        let allow = if rest == "keys" { "GET, POST" } else { "POST" };
                        return not_allowed(&chrome, allow);
                    }
                    if !csrf::matches(&visitor.csrf, request.field(csrf::FIELD)) {
                        return forbidden(&chrome);
                    }
                    let action = if rest == "keys" { "create" } else { "revoke" };
                    return keys_page::keys_page(
                        proxy,
                        session,
                        state,
                        &chrome,
                        visitor,
                        Some((action, request)),
                        now,
                    )
                    .await;
                }
                if rest == "explain" {
                    if !visitor.admin {
                        return not_found(&chrome);
                    }
                    if get {
                        return explain_page(state, &chrome, visitor, ip, None).await;
                    }
                    if !post {
                        return not_allowed(&chrome, "GET, POST");
                    }
                    if !csrf::matches(&visitor.csrf, request.field(csrf::FIELD)) {
                        return forbidden(&chrome);
                    }
                    return explain_page(state, &chrome, visitor, ip, Some(request)).await;
                }
                if let Some(path) = rest.strip_prefix("repo/") {
                    // `<name>/-/<what>`: no name component is `-`, so this cannot be a name.
                    let (name, what) = match path.split_once("/-/") {
                        Some((name, what)) => (name, Some(what)),
                        None => (path.trim_end_matches('/'), None),
                    };
                    let page = images::Page {
                        proxy,
                        session,
                        state,
                        chrome: &chrome,
                        request,
                        subject,
                        name,
                        reader: &self.reader,
                    };
                    return match what {
                        None if get => lists::repository(&page).await,
                        None => not_allowed(&chrome, "GET"),
                        Some(what) => match what.strip_prefix("tag/") {
                            Some(tag) if get => images::tag_page(&page, tag).await,
                            Some(_) => not_allowed(&chrome, "GET"),
                            None if what == "delete" && get => images::confirm_delete(&page).await,
                            None if what == "delete" && post => {
                                if !csrf::matches(&visitor.csrf, request.field(csrf::FIELD)) {
                                    return forbidden(&chrome);
                                }
                                images::delete(&page).await
                            }
                            None if what == "delete" => not_allowed(&chrome, "GET, POST"),
                            None => not_found(&chrome),
                        },
                    };
                }
                not_found(&chrome)
            }
        }
    }
}

fn not_found(chrome: &Chrome<'_>) -> Answer {
    Answer::html(
        404,
        pages::problem(
            chrome,
            "Not found",
            "There is nothing here, or you may not see it.",
        ),
        Outcome::Invalid,
    )
}

fn forbidden(chrome: &Chrome<'_>) -> Answer {
    Answer::html(
        403,
        pages::problem(
            chrome,
            "Forbidden",
            "The form was not sent by this page or has expired. Go back, reload the page and try again.",
        ),
        Outcome::Denied,
    )
}

/// The account may see the repository but the ACL does not grant it `delete` there.
fn forbidden_delete(chrome: &Chrome<'_>) -> Answer {
    Answer::html(
        403,
        pages::problem(
            chrome,
            "Forbidden",
            "You may not delete in this repository.",
        ),
        Outcome::Denied,
    )
}

/// A form that does not say what it should.
fn bad_form(chrome: &Chrome<'_>, message: &str) -> Answer {
    Answer::html(
        400,
        pages::problem(chrome, "Bad request", message),
        Outcome::Invalid,
    )
}

fn not_allowed(chrome: &Chrome<'_>, allow: &'static str) -> Answer {
    Answer::html(
        405,
        pages::problem(
            chrome,
            "Method not allowed",
            "This address does not take that method.",
        ),
        Outcome::Invalid,
    )
    .with("Allow", allow.into())
}

fn upstream_failed(chrome: &Chrome<'_>) -> Answer {
    Answer::html(
        502,
        pages::problem(
            chrome,
            "Registry unavailable",
            "The registry could not be reached; try again later.",
        ),
        Outcome::Error,
    )
}

/// Writes `answer` with the security headers every UI answer carries.
async fn write(session: &mut Session, answer: &Answer) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(answer.status, Some(10 + answer.headers.len()))?;
    resp.insert_header("Content-Type", answer.content_type)?;
    resp.insert_header("Content-Length", answer.body.len().to_string())?;
    resp.insert_header("Cache-Control", answer.cache)?;
    resp.insert_header("Content-Security-Policy", CSP)?;
    resp.insert_header("X-Content-Type-Options", "nosniff")?;
    resp.insert_header("Referrer-Policy", "no-referrer")?;
    resp.insert_header("X-Frame-Options", "DENY")?;
    resp.insert_header("Cross-Origin-Opener-Policy", "same-origin")?;
    for (name, value) in &answer.headers {
        resp.append_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    let head_only = session.req_header().method == Method::HEAD;
    let body = if head_only || answer.body.is_empty() {
        None
    } else {
        Some(answer.body.clone())
    };
    session.write_response_body(body, true).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> RequestHeader {
        RequestHeader::build("GET", target.as_bytes(), None).unwrap()
    }

    #[test]
    fn mounted_under_the_path_only_when_enabled() {
        let mut ui = config::Ui::default();
        assert!(is_mounted(&ui, &req("/ui/"), false));
        assert!(is_mounted(&ui, &req("/ui"), false));
        assert!(is_mounted(&ui, &req("/ui/repo/a/b?page=2"), false));
        assert!(!is_mounted(&ui, &req("/uix"), false));
        assert!(!is_mounted(&ui, &req("/v2/ui/"), false));
        let mut absolute = req("/ui/");
        absolute.set_uri("http://other/ui/".parse().unwrap());
        assert!(!is_mounted(&ui, &absolute, false));
        assert!(
            is_mounted(&ui, &absolute, true),
            "HTTP/2 always has an authority"
        );
        ui.enabled = false;
        assert!(!is_mounted(&ui, &req("/ui/"), false));
    }

    #[test]
    fn a_key_file_makes_sessions_portable() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k");
        std::fs::write(&path, "x".repeat(48)).unwrap();
        let config = config::Ui {
            session_key_file: Some(path),
            ..config::Ui::default()
        };
        let none = || Arc::new(Revocations::new(None));
        let (a, b) = (
            Ui::new(&config, none()).unwrap(),
            Ui::new(&config, none()).unwrap(),
        );
        let now = SystemTime::now();
        let life = config.session_lifetime;
        let (value, _) = session::issue(&a.key, "alice", b"stamp", life, now);
        assert!(session::verify(&b.key, &value, life, now).is_some());
        let random = Ui::new(&config::Ui::default(), none()).unwrap();
        assert!(session::verify(&random.key, &value, life, now).is_none());
    }

    #[test]
    fn cookies_are_read_from_every_header() {
        let mut r = req("/ui/");
        r.append_header("Cookie", "a=1; b=2").unwrap();
        r.append_header("Cookie", "c=3").unwrap();
        assert_eq!(
            cookies_of(&r),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string()),
                ("c".to_string(), "3".to_string())
            ]
        );
    }
}
