//! The Pingora `ProxyHttp` phases. Each phase has one job; none of them decides access —
//! that is [`crate::policy`]'s — they parse, ask, and carry out.
//!
//! | phase | job |
//! |---|---|
//! | `request_filter` | parse the target, authenticate, ask policy, answer refusals |
//! | `upstream_peer` | the registry, with timeouts |
//! | `upstream_request_filter` | strip credentials and spoofable headers, set `X-Forwarded-*` |
//! | `request_body_filter` | work around a Pingora HTTP/2 → HTTP/1 chunking bug |
//! | `fail_to_proxy` | an OCI error when the registry is down or slow |
//! | `logging` | the audit line |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::acl::RuleOrigin;
use crate::authn::lockout::{self, Lockout};
use crate::authn::{credentials, AuthnError, Credentials, Identity};
use crate::catalog::{self, Catalog};
use crate::config::{Challenge, Config, Upstream};
use crate::errors::{OciError, API_VERSION, API_VERSION_HEADER};
use crate::limits::Limits;
use crate::metrics::{self as m, AuthFailure, Metrics};
use crate::policy::{self, Decision, Subject};
use crate::route::{self, Route, RouteError};
use crate::shutdown::{Drain, InFlight};
use crate::state::State;
use crate::token::{self, Claims, TokenService};
use crate::ui::{self, Ui};

/// Headers a client could use to make the registry (or something between us and it) see a
/// different request than the one we authorized. Removed before forwarding; the
/// `X-Forwarded-*` ones are then set by us.
const SPOOFABLE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// What the proxy shares with the rest of the process and keeps across reloads.
pub struct Shared {
    /// Requests in flight, for graceful shutdown.
    pub drain: Arc<Drain>,
    /// The Prometheus series.
    pub metrics: Arc<Metrics>,
    /// Failed-login counters (a reload must not reset them).
    pub lockout: Arc<Lockout>,
    /// The web UI (its session key lives as long as the process).
    pub ui: Arc<Ui>,
}

/// The proxy: the current [`State`] and where the registry is.
pub struct Portcullis {
    state: Arc<ArcSwap<State>>,
    upstream: Upstream,
    upstream_addr: SocketAddr,
    tls: bool,
    trusted_proxies: Vec<IpNet>,
    catalog: Catalog,
    drain: Arc<Drain>,
    metrics: Arc<Metrics>,
    lockout: Arc<Lockout>,
    limits: Limits,
    listen: String,
    ui: Arc<Ui>,
}

impl Portcullis {
    /// A proxy deciding under `state` (swapped atomically on reload) and forwarding to
    /// `upstream_addr`, with the listener settings of `config` (those need a restart).
    pub fn new(
        state: Arc<ArcSwap<State>>,
        config: &Config,
        upstream_addr: SocketAddr,
        shared: Shared,
    ) -> Self {
        Portcullis {
            state,
            upstream: config.upstream.clone(),
            upstream_addr,
            tls: config.tls.is_some(),
            trusted_proxies: config.trusted_proxies.clone(),
            catalog: Catalog::new(),
            drain: shared.drain,
            metrics: shared.metrics,
            lockout: shared.lockout,
            limits: config.limits,
            listen: config.listen.to_string(),
            ui: shared.ui,
        }
    }

    /// Who is asking on `/v2`: a Bearer token's subject (with its claims) or a login.
    async fn identify(
        &self,
        state: &State,
        creds: &Credentials,
        ip: Option<IpAddr>,
    ) -> std::result::Result<(Identity, Option<Arc<Claims>>), Refusal> {
        let Credentials::Bearer(token) = creds else {
            return self.login(state, creds, ip).await.map(|i| (i, None));
        };
        let bad_token = || {
            self.metrics.auth_failure(AuthFailure::BadToken);
            Refusal {
                error: OciError::unauthorized(),
                headers: vec![],
                outcome: Outcome::Unauthenticated,
            }
        };
        let Some(service) = &state.token else {
            return Err(bad_token());
        };
        let claims = match service.verify(token) {
            Ok(claims) => claims,
            Err(e) => {
                tracing::debug!(error = %e, "Bearer token refused");
                return Err(bad_token());
            }
        };
        // The account must still exist; its labels are the current ones, so the ACL is
        // evaluated as it stands now, not as it stood when the token was issued.
        match state.authn.lookup_cached(&claims.sub).await {
            Ok(identity) => Ok((identity, Some(claims))),
            Err(AuthnError::Unavailable(why)) => Err(self.refusal(AuthnError::Unavailable(why))),
            Err(_) => Err(bad_token()),
        }
    }

    /// `WWW-Authenticate` for a 401: Bearer with the scope to ask for when the token service
    /// is the challenge (or the presented token lacked a scope), Basic otherwise.
    fn challenge(
        &self,
        session: &Session,
        state: &State,
        route: Option<&Route>,
        insufficient: bool,
    ) -> (&'static str, String) {
        let value = match &state.token {
            Some(token) if insufficient || state.config.auth.challenge == Challenge::Token => {
                let realm = match token.realm() {
                    Some(r) => r.to_owned(),
                    None => self.realm_from_request(session, token.path()),
                };
                let scope = route.and_then(policy::challenge_scope);
                token.challenge(&realm, scope.as_deref(), insufficient)
            }
            _ => basic_challenge(&state.config.auth.realm),
        };
        ("WWW-Authenticate", value)
    }

    /// `https://<host>/auth` from the request: the scheme we serve (or `X-Forwarded-Proto`
    /// from a trusted proxy) and the `Host` (or `X-Forwarded-Host` from a trusted proxy). A
    /// host with characters no host name has falls back to the listen address, so a forged
    /// `Host` cannot inject into the challenge.
    fn realm_from_request(&self, session: &Session, path: &str) -> String {
        let (scheme, host) = self.public_origin(session);
        format!("{scheme}://{host}{path}")
    }

    /// The scheme and host clients reach us by, as [`Self::realm_from_request`] reads them
    /// (the web UI's pull commands use the host).
    pub(crate) fn public_origin(&self, session: &Session) -> (String, String) {
        let req = session.req_header();
        let trusted = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .is_some_and(|a| self.trusted(a.ip()));
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
        };
        let mut scheme = if self.tls { "https" } else { "http" }.to_owned();
        let mut host = header("host").or_else(|| req.uri.authority().map(|a| a.to_string()));
        if trusted {
            if let Some(p) = header("x-forwarded-proto").filter(|p| p == "http" || p == "https") {
                scheme = p;
            }
            if let Some(h) = header("x-forwarded-host") {
                host = Some(h);
            }
        }
        let valid = |h: &String| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        };
        let host = host.filter(valid).unwrap_or_else(|| self.listen.clone());
        (scheme, host)
    }

    /// The token endpoint: reads the (small) form body, hands everything to
    /// [`crate::token::handle`], and writes its answer. Nothing goes upstream.
    async fn token_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        state: &State,
        token: &TokenService,
    ) -> Result<()> {
        let req = session.req_header();
        let method = req.method.as_str().to_owned();
        let query = req.uri.query().unwrap_or("").to_owned();
        let content_type = req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let declared = req
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let creds = authorization(req);
        if declared.is_some_and(|n| n > token::MAX_BODY) {
            ctx.outcome = Outcome::Invalid;
            session.set_keepalive(None);
            let e = OciError::new(413, "SIZE_INVALID", "token request body too large");
            return respond(session, &e, &[]).await;
        }
        let mut body = Vec::new();
        if method == "POST" {
            while let Some(chunk) = session.read_request_body().await? {
                body.extend_from_slice(&chunk);
                if body.len() > token::MAX_BODY {
                    break;
                }
            }
        }
        let credentials = match creds {
            Ok(c) => c,
            Err(_) => {
                self.metrics.auth_failure(AuthFailure::Malformed);
                ctx.outcome = Outcome::Unauthenticated;
                let challenge = (
                    "WWW-Authenticate",
                    basic_challenge(&state.config.auth.realm),
                );
                return respond(session, &OciError::unauthorized(), &[challenge]).await;
            }
        };
        let answer = token::handle(
            token,
            &state.authn,
            &state.acl,
            &state.config.auth.realm,
            token::EndpointRequest {
                method: &method,
                query: &query,
                content_type: content_type.as_deref(),
                body: &body,
                credentials,
                client_ip: ctx.client_ip,
                lockout: Some(&self.lockout),
            },
        )
        .await;
        ctx.account = answer.account.clone();
        ctx.outcome = match &answer.outcome {
            token::Outcome::Issued => {
                self.metrics.token_issued();
                Outcome::Allowed
            }
            token::Outcome::Invalid => Outcome::Invalid,
            token::Outcome::LoginFailed { error, locked_now } => {
                if let Some(reason) = AuthFailure::of(error) {
                    self.metrics.auth_failure(reason);
                }
                if *locked_now {
                    self.metrics.lockout();
                    tracing::warn!(account = ?answer.account, client = ?ctx.client_ip, "too many failed logins: locked out");
                }
                Outcome::Unauthenticated
            }
            token::Outcome::LockedOut => {
                self.metrics.auth_failure(AuthFailure::LockedOut);
                Outcome::Unauthenticated
            }
            token::Outcome::RefreshRejected => {
                self.metrics.auth_failure(AuthFailure::BadToken);
                Outcome::Unauthenticated
            }
            token::Outcome::Error => Outcome::Error,
        };
        let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 2))?;
        for (name, value) in &answer.headers {
            resp.insert_header(*name, value.as_str())?;
        }
        resp.insert_header("Content-Length", answer.body.len().to_string())?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(answer.body), true).await?;
        Ok(())
    }

    /// Checks credentials, with the failed-login limits around it. The one login path for
    /// `/v2` Basic credentials and the web UI's login form (the token endpoint applies the
    /// same lockout itself).
    pub(crate) async fn login(
        &self,
        state: &State,
        creds: &Credentials,
        ip: Option<IpAddr>,
    ) -> std::result::Result<Identity, Refusal> {
        let Credentials::Basic { account, password } = creds else {
            return state
                .authn
                .authenticate(creds)
                .await
                .map_err(|e| self.refusal(e));
        };
        let now = Instant::now();
        if let Err(remaining) = self.lockout.check(account, ip, now) {
            self.metrics.auth_failure(AuthFailure::LockedOut);
            return Err(Refusal {
                error: OciError::new(
                    429,
                    "TOOMANYREQUESTS",
                    "too many failed logins; try again later",
                ),
                headers: vec![(
                    "Retry-After",
                    lockout::retry_after_secs(remaining).to_string(),
                )],
                outcome: Outcome::Unauthenticated,
            });
        }
        match state.authn.login(account, password).await {
            Ok(identity) => Ok(identity),
            Err(e) => {
                if matches!(e, AuthnError::BadPassword | AuthnError::UnknownAccount)
                    && self.lockout.record_failure(account, ip, now)
                {
                    self.metrics.lockout();
                    tracing::warn!(account = %account, client = ?ip, "too many failed logins: locked out");
                }
                Err(self.refusal(e))
            }
        }
    }

    /// The answer to a failed login: 401, or 503 when a backend (LDAP) could not answer —
    /// failing closed, but telling the user it is not their password.
    fn refusal(&self, e: AuthnError) -> Refusal {
        if let Some(reason) = AuthFailure::of(&e) {
            self.metrics.auth_failure(reason);
        }
        match e {
            AuthnError::Unavailable(why) => {
                tracing::warn!(reason = %why, "login refused: authentication backend unavailable");
                Refusal {
                    error: OciError::new(
                        503,
                        "UNAVAILABLE",
                        "the login service is unavailable; try again later",
                    ),
                    headers: vec![("Retry-After", "5".into())],
                    outcome: Outcome::Error,
                }
            }
            _ => Refusal {
                error: OciError::unauthorized(),
                headers: vec![],
                outcome: Outcome::Unauthenticated,
            },
        }
    }

    /// The registry, with the configured timeouts.
    pub(crate) fn peer(&self) -> HttpPeer {
        let mut peer = HttpPeer::new(self.upstream_addr, false, String::new());
        peer.options.connection_timeout = Some(self.upstream.connect_timeout);
        peer.options.read_timeout = Some(self.upstream.read_timeout);
        peer.options.write_timeout = Some(self.upstream.read_timeout);
        peer
    }

    /// The `Host` the registry is asked with.
    pub(crate) fn upstream_host(&self) -> &str {
        &self.upstream.address
    }

    /// True when the client listener speaks TLS.
    pub(crate) fn tls(&self) -> bool {
        self.tls
    }

    /// The upstream's whole repository list (cached briefly): what the filtered catalog and
    /// the web UI list from, each through [`catalog::visible_to`].
    pub(crate) async fn upstream_repositories(
        &self,
    ) -> std::result::Result<Arc<Vec<String>>, catalog::CatalogError> {
        self.catalog.all(&self.peer(), &self.upstream.address).await
    }

    /// Answers `/v2/_catalog` with only what `subject` may pull.
    async fn filtered_catalog(
        &self,
        session: &mut Session,
        state: &State,
        subject: Subject<'_>,
    ) -> Result<()> {
        let query = session.req_header().uri.query().map(str::to_owned);
        let paging = match catalog::Paging::from_query(query.as_deref()) {
            Ok(p) => p,
            Err(why) => {
                let e = OciError::new(400, "PAGINATION_NUMBER_INVALID", why);
                return respond(session, &e, &[]).await;
            }
        };
        let all = match self.upstream_repositories().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the registry catalog");
                return respond(session, &OciError::upstream(502), &[]).await;
            }
        };
        let page = catalog::page(&all, &paging, catalog::visible_to(&state.acl, subject));
        let extra: Vec<(&'static str, String)> = catalog::link(&page, paging.n)
            .map(|l| ("Link", l))
            .into_iter()
            .collect();
        respond_json(session, 200, catalog::body(&page.repositories), &extra).await
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the TCP peer, or — only when the peer is a trusted proxy — the
    /// right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
    fn client_ip(&self, session: &Session) -> Option<IpAddr> {
        let peer = canonical(session.client_addr()?.as_inet()?.ip());
        if !self.trusted(peer) {
            return Some(peer);
        }
        let xff = session.req_header().headers.get_all("x-forwarded-for");
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in xff {
            let Ok(text) = value.to_str() else {
                return Some(peer);
            };
            for part in text.split(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => hops.push(canonical(ip)),
                    Err(_) => return Some(peer),
                }
            }
        }
        Some(
            hops.into_iter()
                .rev()
                .find(|ip| !self.trusted(*ip))
                .unwrap_or(peer),
        )
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 clients; compare them as such.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A refused login, ready to be answered.
pub(crate) struct Refusal {
    pub(crate) error: OciError,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) outcome: Outcome,
}

/// What one request learned on its way through, for the later phases and the audit line.
pub struct RequestCtx {
    _in_flight: InFlight,
    started: Instant,
    state: Option<Arc<State>>,
    route: Option<Route>,
    account: Option<String>,
    client_ip: Option<IpAddr>,
    outcome: Outcome,
    rule: Option<RuleOrigin>,
    drop_mount: bool,
    refused_early: bool,
    token_endpoint: bool,
    ui: bool,
}

/// The `decision` label of the audit line and the request metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded.
    Allowed,
    /// A valid login without the right (403), or anonymous refused (401).
    Denied,
    /// No or bad credentials (401).
    Unauthenticated,
    /// A request portcullis refused to parse (400/404/405).
    Invalid,
    /// Something failed: the registry, or an authentication backend.
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }
}

/// Writes a complete error answer with the registry's headers and OCI body.
async fn respond(
    session: &mut Session,
    error: &OciError,
    extra: &[(&'static str, String)],
) -> Result<()> {
    respond_json(session, error.status, error.body(), extra).await
}

/// Writes a complete JSON answer with the registry's version header.
async fn respond_json(
    session: &mut Session,
    status: u16,
    body: Bytes,
    extra: &[(&'static str, String)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    resp.insert_header("Content-Type", "application/json; charset=utf-8")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header(API_VERSION_HEADER, API_VERSION)?;
    for (name, value) in extra {
        resp.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_body(if head_only { None } else { Some(body) }, true)
        .await?;
    Ok(())
}

/// `Basic realm="…"` with the realm's quotes and backslashes escaped.
/// The request's credentials. Two `Authorization` headers are refused: which one would a
/// backend read?
fn authorization(
    req: &RequestHeader,
) -> std::result::Result<Credentials, credentials::CredentialsError> {
    let values: Vec<_> = req.headers.get_all("authorization").iter().collect();
    match values.as_slice() {
        [] => credentials::parse(None),
        [one] => credentials::parse(Some(one.as_bytes())),
        _ => Err(credentials::CredentialsError::UnsupportedScheme),
    }
}

fn basic_challenge(realm: &str) -> String {
    let escaped = realm.replace('\\', "\\\\").replace('"', "\\\"");
    format!("Basic realm=\"{escaped}\"")
}

/// Go's `r.FormValue` (which registry:2 uses for `mount`, `from` and `digest`) also reads a
/// form-encoded *body* and prefers it to the query, so `mount`/`from` could be smuggled past
/// the query we checked. Registry clients never send forms, so such requests are refused.
fn is_form(req: &RequestHeader) -> bool {
    req.headers.get_all("content-type").iter().any(|v| {
        let v = v.as_bytes();
        let starts = |p: &[u8]| v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p);
        starts(b"application/x-www-form-urlencoded") || starts(b"multipart/form-data")
    })
}

#[async_trait]
impl ProxyHttp for Portcullis {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            _in_flight: self.drain.enter(),
            started: Instant::now(),
            state: None,
            route: None,
            account: None,
            client_ip: None,
            outcome: Outcome::Error,
            rule: None,
            drop_mount: false,
            refused_early: false,
            token_endpoint: false,
            ui: false,
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        session.set_keepalive(Some(self.limits.idle_timeout.as_secs().max(1)));
        if let Err(exceeded) = self.limits.check(session.req_header()) {
            ctx.outcome = Outcome::Invalid;
            ctx.refused_early = true;
            let e = OciError::new(exceeded.status(), "UNSUPPORTED", exceeded.message());
            session.set_keepalive(None);
            respond(session, &e, &[]).await?;
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if ctx.refused_early {
            return Ok(true);
        }
        let state = self.state.load_full();
        ctx.state = Some(state.clone());
        ctx.client_ip = self.client_ip(session);
        if self.drain.is_draining() {
            ctx.outcome = Outcome::Error;
            session.set_keepalive(None);
            let e = OciError::new(503, "UNAVAILABLE", "shutting down");
            respond(
                session,
                &e,
                &[("Connection", "close".into()), ("Retry-After", "1".into())],
            )
            .await?;
            return Ok(true);
        }

        if let Some(token) = state.token.clone() {
            let req = session.req_header();
            // HTTP/2 requests always carry an authority; HTTP/1 ones only in absolute form.
            let origin_form = session.is_http2() || req.uri.authority().is_none();
            if req.uri.path() == token.path() && origin_form {
                ctx.token_endpoint = true;
                self.token_endpoint(session, ctx, &state, &token).await?;
                return Ok(true);
            }
        }
        if ui::is_mounted(&state.config.ui, session.req_header(), session.is_http2()) {
            ctx.ui = true;
            let served = self.ui.serve(self, session, &state, ctx.client_ip).await?;
            ctx.account = served.account;
            ctx.outcome = served.outcome;
            ctx.rule = served.rule;
            return Ok(true);
        }
        let req = session.req_header();
        // An absolute-form target (`GET http://other/v2/... HTTP/1.1`) names a host and a path
        // that the registry might read differently from us; HTTP/2 always carries an
        // authority, so only HTTP/1 is checked.
        let parsed = if !session.is_http2()
            && (req.uri.scheme().is_some() || req.uri.authority().is_some())
        {
            Err(RouteError::NotOriginForm)
        } else {
            let target = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
            route::parse(req.method.as_str(), target)
        };
        let route = match parsed {
            Ok(r) => r,
            Err(e) => {
                ctx.outcome = Outcome::Invalid;
                let extra: Vec<(&'static str, String)> = match &e {
                    RouteError::MethodNotAllowed { allow } => vec![("Allow", allow.to_string())],
                    _ => vec![],
                };
                respond(session, &OciError::from(&e), &extra).await?;
                return Ok(true);
            }
        };
        // Known from here on, so refusals below are logged and counted by action.
        ctx.route = Some(route.clone());
        if is_form(req) {
            ctx.outcome = Outcome::Invalid;
            let e = OciError::new(
                400,
                "UNSUPPORTED",
                "form-encoded request bodies are not accepted",
            );
            respond(session, &e, &[]).await?;
            return Ok(true);
        }
        let creds = match authorization(req) {
            Ok(c) => c,
            Err(_) => {
                self.metrics.auth_failure(AuthFailure::Malformed);
                ctx.outcome = Outcome::Unauthenticated;
                let challenge = self.challenge(session, &state, Some(&route), false);
                respond(session, &OciError::unauthorized(), &[challenge]).await?;
                return Ok(true);
            }
        };
        if let Credentials::Basic { account, .. } = &creds {
            ctx.account = Some(account.clone());
        }
        let (identity, claims) = match self.identify(&state, &creds, ctx.client_ip).await {
            Ok(found) => found,
            Err(refusal) => {
                ctx.outcome = refusal.outcome;
                let mut extra = refusal.headers;
                if refusal.error.status == 401 {
                    extra.push(self.challenge(session, &state, Some(&route), false));
                }
                respond(session, &refusal.error, &extra).await?;
                return Ok(true);
            }
        };
        ctx.account = Some(identity.account.clone());
        let subject = Subject {
            identity: &identity,
            ip: ctx.client_ip,
            service: state.service(),
        };
        let decision = match &claims {
            Some(claims) => policy::authorize_bearer(&state.acl, subject, &route, claims),
            None => policy::authorize(&state.acl, subject, &route),
        };
        ctx.rule = decision.rule().cloned();
        match decision {
            Decision::Allow { drop_mount, .. } => {
                ctx.outcome = Outcome::Allowed;
                ctx.drop_mount = drop_mount;
                Ok(false)
            }
            Decision::FilteredCatalog => {
                ctx.outcome = Outcome::Allowed;
                self.filtered_catalog(session, &state, subject).await?;
                Ok(true)
            }
            Decision::InsufficientScope { .. } => {
                ctx.outcome = Outcome::Denied;
                let challenge = self.challenge(session, &state, Some(&route), true);
                respond(session, &OciError::unauthorized(), &[challenge]).await?;
                Ok(true)
            }
            Decision::Deny { .. } => {
                ctx.outcome = Outcome::Denied;
                if identity.is_anonymous() {
                    let challenge = self.challenge(session, &state, Some(&route), false);
                    respond(session, &OciError::unauthorized(), &[challenge]).await?;
                } else {
                    respond(session, &OciError::denied(), &[]).await?;
                }
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Always send an origin-form target built from what was authorized.
        let pq = session
            .req_header()
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let (path, query) = match pq.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (pq.clone(), None),
        };
        let path = if matches!(ctx.route, Some(Route::Base)) {
            "/v2/".to_owned()
        } else {
            path
        };
        let query = match (query, ctx.drop_mount) {
            (Some(q), true) => route::strip_mount(&q),
            (q, _) => q,
        };
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let uri: http::Uri = target.parse().map_err(|_| {
            Error::explain(ErrorType::InternalError, "rebuilt target does not parse")
        })?;
        upstream.set_uri(uri);

        let host = session
            .req_header()
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| session.req_header().uri.authority().map(|a| a.to_string()));
        for name in SPOOFABLE_HEADERS {
            upstream.remove_header(*name);
        }
        if let Some(ip) = ctx.client_ip {
            upstream.insert_header("X-Forwarded-For", ip.to_string())?;
            upstream.insert_header("X-Real-IP", ip.to_string())?;
        }
        upstream.insert_header("X-Forwarded-Proto", if self.tls { "https" } else { "http" })?;
        if let Some(host) = host {
            if upstream.headers.get("host").is_none() {
                upstream.insert_header("Host", host.as_str())?;
            }
            upstream.insert_header("X-Forwarded-Host", host)?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // cloudflare/pingora#935: an HTTP/2 upload that ends with an empty DATA frame makes
        // Pingora write the chunked terminator twice to the HTTP/1.1 registry, which then reads
        // the second one as the start of the next request on the pooled connection.
        if end_of_stream && body.as_ref().is_some_and(|b| b.is_empty()) {
            *body = None;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        ctx.outcome = Outcome::Error;
        if e.esource() == &ErrorSource::Upstream {
            self.metrics.upstream_error(m::UpstreamErrorKind::of(e));
        }
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                if e.esource() == &ErrorSource::Upstream {
                    504
                } else {
                    0
                }
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 && session.response_written().is_none() {
            let error = match code {
                502..=504 => OciError::upstream(code),
                400 => OciError::new(400, "UNSUPPORTED", "malformed request"),
                _ => OciError::new(code, "UNKNOWN", "internal error"),
            };
            if let Err(write_err) = respond(session, &error, &[]).await {
                tracing::debug!(error = %write_err, "could not send the error answer");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        self.metrics.observe_request(
            if ctx.token_endpoint {
                m::Action::Token
            } else if ctx.ui {
                m::Action::Ui
            } else {
                m::Action::of_route(ctx.route.as_ref())
            },
            ctx.outcome.into(),
            ctx.started.elapsed(),
        );
        if ctx.outcome == Outcome::Allowed {
            self.metrics
                .bytes(m::Direction::In, session.body_bytes_read() as u64);
            self.metrics
                .bytes(m::Direction::Out, session.body_bytes_sent() as u64);
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        let route = ctx.route.as_ref();
        tracing::info!(
            target: "audit",
            client = ctx.client_ip.map(|i| i.to_string()).unwrap_or_default(),
            account = ctx.account.as_deref().unwrap_or(""),
            method = req.method.as_str(),
            path = req.uri.path(),
            repository = route.and_then(Route::repository).unwrap_or(""),
            action = route.and_then(Route::action).map(|a| a.as_str()).unwrap_or(match route {
                Some(Route::Catalog) => "catalog",
                Some(Route::Base) => "base",
                _ if ctx.ui => "ui",
                _ => "",
            }),
            decision = ctx.outcome.as_str(),
            rule = ctx.rule.as_ref().map(|r| r.to_string()).unwrap_or_default(),
            status,
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            error = error.map(|e| e.etype().as_str()).unwrap_or(""),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_escapes_realm() {
        assert_eq!(
            basic_challenge("Registry Realm"),
            "Basic realm=\"Registry Realm\""
        );
        assert_eq!(basic_challenge("a\"b\\c"), "Basic realm=\"a\\\"b\\\\c\"");
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        assert_eq!(
            canonical("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn form_bodies_are_detected() {
        let mut req = RequestHeader::build("POST", b"/v2/a/blobs/uploads/", None).unwrap();
        assert!(!is_form(&req));
        req.insert_header(
            "Content-Type",
            "Application/X-WWW-Form-Urlencoded; charset=x",
        )
        .unwrap();
        assert!(is_form(&req));
        req.insert_header("Content-Type", "multipart/form-data; boundary=x")
            .unwrap();
        assert!(is_form(&req));
        req.insert_header("Content-Type", "application/octet-stream")
            .unwrap();
        assert!(!is_form(&req));
    }
}
