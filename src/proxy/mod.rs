//! The Pingora `ProxyHttp` phases. Each phase has one job; none of them decides access —
//! that is [`crate::policy`]'s — they parse, ask, and carry out.
//!
//! | phase | job |
//! |---|---|
//! | `request_filter` | parse the target, authenticate, ask policy, answer refusals, then answer from the manifest cache when it can |
//! | `upstream_peer` | the registry, with timeouts |
//! | `upstream_request_filter` | strip credentials and spoofable headers, set `X-Forwarded-*` |
//! | `upstream_response_filter` | refuse a `101`; the manifest cache sees the answer head |
//! | `request_body_filter` | work around a Pingora HTTP/2 → HTTP/1 chunking bug |
//! | `response_body_filter` | the manifest cache captures a leading request's answer |
//! | `fail_to_proxy` | an OCI error when the registry is down or slow |
//! | `logging` | the audit line |
//!
//! The helpers the phases call live beside this file, one job each: [`login`] (who is
//! asking), [`challenge`] (the 401's `WWW-Authenticate`), [`token_endpoint`], [`listing`]
//! (the filtered catalog), [`forward`] (client address, spoofable headers), [`cached`] (the
//! manifest cache's part) and [`answer`] (answers written by portcullis itself).

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::acl::RuleOrigin;
use crate::authn::lockout::{self, Lockout};
use crate::authn::{credentials, AuthnError, Credentials, Identity};
use crate::catalog::{self, Catalog};
use crate::client::{ClientAddr, TrustedProxies};
use crate::config::{Challenge, Config};
use crate::errors::{OciError, API_VERSION, API_VERSION_HEADER};
use crate::limits::Limits;
use crate::metrics::{self as m, AuthFailure, Metrics};
use crate::policy::{self, Decision, Subject};
use crate::route::{self, Endpoint, Parsed, Route, RouteError};
use crate::shutdown::{Drain, InFlight};
use crate::state::State;
use crate::token::claims::ViaClaim;
use crate::token::{self, Claims, TokenService};
use crate::ui::{self, Ui};
use crate::upstream::{Selected, Upstream, Upstreams};

pub use crate::outcome::Outcome;

/// The web UI's view of the proxy: the same login path, registry and public origin.
#[async_trait]
impl ui::gateway::Gateway for Portcullis {
    async fn login(
        &self,
        state: &State,
        creds: &Credentials,
        client: ClientAddr,
    ) -> std::result::Result<Identity, crate::errors::Refusal> {
        Portcullis::login(self, state, creds, client).await
    }

    fn upstreams(&self) -> Upstreams {
        self.upstreams.clone()
    }

    async fn upstream_repositories(
        &self,
    ) -> std::result::Result<Arc<Vec<String>>, catalog::CatalogError> {
        Portcullis::upstream_repositories(self).await
    }

    fn public_origin(&self, session: &Session) -> (String, String) {
        Portcullis::public_origin(self, session)
    }

    fn tls(&self) -> bool {
        Portcullis::tls(self)
    }

    fn manifests_changed(&self, repository: &str, done: bool) {
        if let Some(cache) = &self.cache {
            if done {
                cache.written(repository);
            } else {
                cache.writing(repository);
            }
        }
    }
}

mod answer;
mod cached;
mod challenge;
mod forward;
mod listing;
mod login;
mod token_endpoint;

pub(crate) use answer::{respond, respond_cached, respond_json};
pub(crate) use challenge::basic_challenge;
use forward::manifest_media_type;
use login::authorization;

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
    /// Revoked refresh tokens and sessions (shared by the replicas with `cluster:`).
    pub revocations: Arc<crate::cluster::revocations::Revocations>,
    /// Request rate limits (`limits.rate`), when on.
    pub rate: Option<Arc<crate::cluster::rate::RateLimiter>>,
    /// The manifest cache, when `cache.manifests` is configured (kept across reloads).
    pub cache: Option<Arc<crate::cache::ManifestCache>>,
}

/// The proxy: the current [`State`] and where the registry is.
pub struct Portcullis {
    state: Arc<ArcSwap<State>>,
    upstreams: Upstreams,
    tls: bool,
    trusted_proxies: TrustedProxies,
    /// Whether the last request from a trusted proxy had an unreadable client address, so
    /// that state changes are logged once rather than per request.
    unknown_client: std::sync::atomic::AtomicBool,
    catalog: Catalog,
    drain: Arc<Drain>,
    metrics: Arc<Metrics>,
    lockout: Arc<Lockout>,
    revocations: Arc<crate::cluster::revocations::Revocations>,
    rate: Option<Arc<crate::cluster::rate::RateLimiter>>,
    limits: Limits,
    listen: String,
    ui: Arc<Ui>,
    cache: Option<Arc<crate::cache::ManifestCache>>,
    /// Connections for the manifest cache's own registry requests (revalidations, and fills
    /// for `HEAD`).
    fetcher: pingora::connectors::http::Connector,
}

impl Portcullis {
    /// A proxy deciding under `state` (swapped atomically on reload) and forwarding to
    /// `upstreams`, with the listener settings of `config` (those need a restart).
    pub fn new(
        state: Arc<ArcSwap<State>>,
        config: &Config,
        upstreams: Upstreams,
        shared: Shared,
    ) -> Self {
        Portcullis {
            state,
            upstreams,
            tls: config.tls.is_some(),
            trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            unknown_client: Default::default(),
            catalog: Catalog::new(),
            drain: shared.drain,
            metrics: shared.metrics,
            lockout: shared.lockout,
            revocations: shared.revocations,
            rate: shared.rate,
            limits: config.limits,
            listen: config.listen.to_string(),
            ui: shared.ui,
            cache: shared.cache,
            fetcher: pingora::connectors::http::Connector::new(None),
        }
    }

    /// The registry serving the request's repository, and the name it knows it by.
    fn selected(&self, ctx: &RequestCtx) -> Option<Selected<'_>> {
        self.upstreams.select(ctx.route()?.repository()?)
    }

    /// The registry a request goes to: its repository's, or for `/v2/` and the catalog the
    /// catch-all one.
    fn upstream_of(&self, ctx: &RequestCtx) -> &Arc<Upstream> {
        match self.selected(ctx) {
            Some(s) => s.upstream,
            None => self.upstreams.base(),
        }
    }

    /// The scopes the registry must grant for the request, in its names.
    fn upstream_scopes(&self, ctx: &RequestCtx) -> Vec<String> {
        let Some(route) = ctx.route() else {
            return Vec::new();
        };
        match self.selected(ctx) {
            Some(chosen) => crate::upstream::auth::scopes(
                route,
                !ctx.drop_mount,
                &self.upstreams.renamer(chosen.index),
            ),
            None => crate::upstream::auth::scopes(route, !ctx.drop_mount, &|n| n.to_owned()),
        }
    }

    /// True when the client listener speaks TLS.
    pub(crate) fn tls(&self) -> bool {
        self.tls
    }
}

impl Portcullis {
    /// Answers a request over `limits.rate`: 429 `TOOMANYREQUESTS` with `Retry-After`, as
    /// Docker Hub does, so clients back off.
    async fn rate_limited(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        limited: crate::cluster::rate::Limited,
    ) -> Result<bool> {
        use crate::cluster::rate::Limited;
        let scope = match limited {
            Limited::Account(_) => m::RateScope::Account,
            Limited::Address(_) => m::RateScope::Address,
        };
        self.metrics.rate_limited(scope);
        ctx.outcome = Outcome::Denied;
        let e = OciError::new(
            429,
            "TOOMANYREQUESTS",
            "too many requests; slow down and retry after the time in Retry-After",
        );
        let retry = lockout::retry_after_secs(limited.wait()).to_string();
        respond(session, &e, &[("Retry-After", retry)]).await?;
        Ok(true)
    }
}

/// What one request learned on its way through, for the later phases and the audit line.
pub struct RequestCtx {
    _in_flight: InFlight,
    started: Instant,
    state: Option<Arc<State>>,
    parsed: Option<Parsed>,
    account: Option<String>,
    client: ClientAddr,
    /// The validated `Content-Type` of a manifest `PUT`, as forwarded.
    media_type: Option<String>,
    outcome: Outcome,
    rule: Option<RuleOrigin>,
    drop_mount: bool,
    /// The request was sent again after the registry refused a cached token.
    upstream_retried: bool,
    /// Other addresses of the registry tried after a failed connect.
    connect_retries: usize,
    refused_early: bool,
    token_endpoint: bool,
    /// What a token request asked for and was given (token endpoint only).
    token: TokenAudit,
    ui: bool,
    /// The access key the caller used, if any (its id).
    access_key: String,
    /// The CI issuer whose job token the caller used, if any.
    issuer: String,
    /// Why a login was refused (`access key k… has expired`), for the audit line.
    reason: String,
    /// What the manifest cache did.
    cache: cached::CacheCtx,
}

/// The token endpoint's part of the audit line: scopes in their parsed, bounded form
/// ([`token::EndpointResponse`]), never the raw request, a password or a token.
#[derive(Debug, Default)]
struct TokenAudit {
    requested: String,
    granted: String,
    key_id: String,
}

impl RequestCtx {
    /// The parsed route, once the target has been parsed.
    fn route(&self) -> Option<&Route> {
        self.parsed.as_ref().map(|p| &p.route)
    }
}

#[async_trait]
impl ProxyHttp for Portcullis {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            _in_flight: self.drain.enter(),
            started: Instant::now(),
            state: None,
            parsed: None,
            account: None,
            client: ClientAddr::none(),
            media_type: None,
            outcome: Outcome::Error,
            rule: None,
            drop_mount: false,
            upstream_retried: false,
            connect_retries: 0,
            refused_early: false,
            token_endpoint: false,
            token: TokenAudit::default(),
            ui: false,
            access_key: String::new(),
            issuer: String::new(),
            reason: String::new(),
            cache: Default::default(),
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
        ctx.client = self.client_addr(session);
        // Draining: no request after this one on the connection, so a load balancer opens
        // its next one elsewhere. A request with a body is served: once sent it cannot be
        // replayed (HAProxy keeps only what fits its buffer) and it is typically the next
        // chunk of an upload in progress. One without a body is turned away with 503, which
        // a load balancer replays on another replica (`retry-on 503`) and a client retries.
        if self.drain.is_draining() {
            session.set_keepalive(None);
        }
        if self.drain.is_draining() && session.is_body_empty() {
            ctx.outcome = Outcome::Error;
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
            let served = self.ui.serve(self, session, &state, ctx.client).await?;
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
            route::parse_request(req.method.as_str(), target.as_bytes())
        };
        let parsed = match parsed {
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
        let unknown_reference = parsed.unknown_reference;
        // Borrowed from the context for the rest of this phase (no copy per request).
        let route = &ctx.parsed.insert(parsed).route;
        if route.endpoint() == Endpoint::Manifest && req.method == http::Method::PUT {
            match manifest_media_type(req) {
                Ok(media_type) => ctx.media_type = media_type,
                Err(e) => {
                    ctx.outcome = Outcome::Invalid;
                    let e = OciError::new(400, "MANIFEST_INVALID", e.to_string());
                    respond(session, &e, &[]).await?;
                    return Ok(true);
                }
            }
        }
        if let Some(rate) = &self.rate {
            if let Err(limited) = rate.check_address(ctx.client.key()).await {
                return self.rate_limited(session, ctx, limited).await;
            }
        }
        let req = session.req_header();
        let creds = match authorization(req) {
            Ok(c) => c,
            Err(_) => {
                self.metrics.auth_failure(AuthFailure::Malformed);
                ctx.outcome = Outcome::Unauthenticated;
                let challenge = self.challenge(session, &state, Some(route), false);
                respond(session, &OciError::unauthorized(), &[challenge]).await?;
                return Ok(true);
            }
        };
        let (identity, claims) = match self.identify(&state, &creds, ctx.client).await {
            Ok(found) => found,
            Err(refusal) => {
                // The account as the caller named it, for the audit line.
                if let Credentials::Basic { account, .. } = &creds {
                    ctx.account = Some(account.clone());
                }
                ctx.outcome = refusal.outcome;
                ctx.reason = refusal.reason;
                let mut extra = refusal.headers;
                if refusal.error.status == 401 {
                    extra.push(self.challenge(session, &state, Some(route), false));
                }
                respond(session, &refusal.error, &extra).await?;
                return Ok(true);
            }
        };
        ctx.account = Some(identity.account.clone());
        if let Some(rate) = &self.rate {
            if let Err(limited) = rate.check_account(&identity.account).await {
                return self.rate_limited(session, ctx, limited).await;
            }
        }
        // The access key or CI issuer the caller logged in with, for the audit line.
        ctx.access_key = identity.key_id().unwrap_or_default().to_owned();
        ctx.issuer = identity.issuer().unwrap_or_default().to_owned();
        let subject = Subject {
            identity: &identity,
            ip: ctx.client.ip(),
            service: state.service(),
        };
        let mut decision = match &claims {
            Some(claims) => policy::authorize_bearer(&state.acl, subject, route, claims),
            None => policy::authorize(&state.acl, subject, route),
        };
        ctx.rule = decision.take_rule();
        let anonymous = identity.is_anonymous();
        match decision {
            Decision::Allow { .. } if unknown_reference => {
                // The registry routes a reference in neither grammar nowhere: 404, as the OCI
                // conformance suite expects. Answered here, after authorization, so it says
                // nothing to a caller who may not see the repository.
                ctx.outcome = Outcome::Allowed;
                let e = OciError::new(404, "MANIFEST_UNKNOWN", "manifest unknown");
                respond(session, &e, &[]).await?;
            }
            Decision::Allow { drop_mount, .. } => {
                ctx.outcome = Outcome::Allowed;
                ctx.drop_mount = drop_mount;
                if let Some(name) = route.repository() {
                    let Some(chosen) = self.upstreams.select(name) else {
                        // No entry of `upstreams:` serves this name: no registry has it.
                        let e = OciError::new(
                            404,
                            "NAME_UNKNOWN",
                            "repository name not known to registry",
                        );
                        respond(session, &e, &[]).await?;
                        return Ok(true);
                    };
                    // A mount from a repository another registry serves cannot work there:
                    // a plain upload starts instead, as registry:2 does for a source it
                    // cannot read.
                    if let Some(mount) = route.mount() {
                        if self.upstreams.select(&mount.from).map(|s| s.index) != Some(chosen.index)
                        {
                            ctx.drop_mount = true;
                        }
                    }
                } else if *route == Route::Catalog && self.upstreams.is_merged() {
                    // Several registries: the whole catalog is their merged list, answered
                    // here (nothing to filter: `registry:catalog:*` was granted).
                    self.merged_catalog(session).await?;
                    return Ok(true);
                }
                // Only now, authorized, may an answer come from the cache.
                return self.serve_cached(session, ctx).await;
            }
            Decision::FilteredCatalog => {
                ctx.outcome = Outcome::Allowed;
                self.filtered_catalog(session, &state, subject).await?;
            }
            Decision::InsufficientScope { .. } => {
                ctx.outcome = Outcome::InsufficientScope;
                let challenge = self.challenge(session, &state, Some(route), true);
                respond(session, &OciError::unauthorized(), &[challenge]).await?;
            }
            Decision::Deny { .. } => {
                ctx.outcome = Outcome::Denied;
                if anonymous {
                    let challenge = self.challenge(session, &state, Some(route), false);
                    respond(session, &OciError::unauthorized(), &[challenge]).await?;
                } else {
                    respond(session, &OciError::denied(), &[]).await?;
                }
            }
        }
        ctx.account = Some(identity.account);
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.upstream_of(ctx).peer()))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent: another address of the same registry may be tried. The failed one
        // is skipped for a while by every request (see `upstream::resolve`).
        if let Some(addr) = peer._address.as_inet() {
            let upstream = self.upstream_of(ctx);
            let others = upstream.addresses().mark_failed(*addr);
            tracing::warn!(
                upstream = %upstream.url(),
                address = %addr,
                error = %e,
                "cannot connect to this address of the registry"
            );
            if others && ctx.connect_retries < upstream.addresses().all().len() {
                ctx.connect_retries += 1;
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.rebuild_request(session, upstream, ctx)?;
        // A registry that keeps its own auth on gets the service account's credentials (a
        // token for exactly the scope authorized here), never the client's (removed above).
        let scopes = self.upstream_scopes(ctx);
        let registry = self.upstream_of(ctx);
        match registry.authorization(&scopes).await {
            Ok(Some(authorization)) => {
                upstream.insert_header("Authorization", authorization)?;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(upstream = %registry.url(), error = %e, "no credentials for the registry");
                return Err(Error::explain(
                    ErrorType::HTTPStatus(502),
                    "no credentials for the registry",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A request that was running when draining started ends its connection too.
        if self.drain.is_draining() {
            session.set_keepalive(None);
        }
        // We never forward `Upgrade`, so a registry that switches protocols anyway is
        // misbehaving: relaying the 101 would turn an authorized request into a raw tunnel.
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "the registry answered 101 Switching Protocols",
            ));
        }
        // The registry's own challenge is for portcullis, never for the client: it would name
        // the registry's realm (or token server) and ask the client for credentials portcullis
        // has already checked. A 401 after portcullis authorized the request means the
        // registry refused portcullis's own credentials (or, without `upstream_auth`, that
        // the registry keeps an auth portcullis was not told about): a server-side fault.
        upstream_response.remove_header("www-authenticate");
        let upstream = self.upstream_of(ctx);
        if upstream_response.status == http::StatusCode::UNAUTHORIZED {
            // A token the registry refused (revoked, its key rotated): forget it and try once
            // more with a fresh one. Only a request without a body can be sent again: a
            // streamed upload is gone once sent (its token was fetched for its exact scope
            // just before, so this is rare).
            let scopes = self.upstream_scopes(ctx);
            let method = &session.req_header().method;
            let bodiless = *method == http::Method::GET
                || *method == http::Method::HEAD
                || (*method == http::Method::DELETE
                    && session.req_header().headers.get("content-length").is_none()
                    && session
                        .req_header()
                        .headers
                        .get("transfer-encoding")
                        .is_none());
            if !ctx.upstream_retried && bodiless && upstream.forget_token(&scopes) {
                ctx.upstream_retried = true;
                tracing::info!(
                    upstream = %upstream.url(),
                    "the registry refused a cached token: fetching a new one and retrying once"
                );
                let mut e = Error::explain(
                    ErrorType::HTTPStatus(502),
                    "the registry refused portcullis's token",
                );
                e.set_retry(true);
                return Err(e);
            }
            tracing::error!(
                upstream = %upstream.url(),
                upstream_auth = upstream.has_auth(),
                "the registry answered 401 to an authorized request: check upstream_auth (its credentials, or set it if the registry keeps its own auth on)"
            );
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "the registry refused portcullis's credentials",
            ));
        }
        // A registry that knows names without their prefix answers with paths in its names:
        // put the prefix back so the client's next request comes through the same entry.
        if let Some(chosen) = self.selected(ctx).filter(|s| s.strips()) {
            for name in ["location", "link"] {
                let values: Vec<String> = upstream_response
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(|v| chosen.public_path(v))
                    .collect();
                if values.is_empty() {
                    continue;
                }
                upstream_response.remove_header(name);
                for v in values {
                    upstream_response.append_header(name, v)?;
                }
            }
        }
        self.cache_response(upstream_response, ctx);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        self.cache_body(body.as_ref(), end_of_stream, ctx);
        Ok(None)
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
        self.cache_written(ctx);
        if e.esource() == &ErrorSource::Upstream {
            self.metrics
                .upstream_error(&self.upstream_of(ctx).url(), m::UpstreamErrorKind::of(e));
            // The one place an operator learns why (a CA that does not sign the registry's
            // certificate, a refused connection, a timeout).
            tracing::warn!(
                upstream = %self.upstream_of(ctx).url(),
                error = %e,
                "the registry could not be reached or failed"
            );
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
        let elapsed = ctx.started.elapsed();
        self.cache_written(ctx);
        let action = if ctx.token_endpoint {
            m::Action::Token
        } else if ctx.ui {
            m::Action::Ui
        } else {
            m::Action::of_route(ctx.route())
        };
        self.metrics
            .observe_request(action, ctx.outcome.into(), elapsed);
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
        self.metrics.response(status);
        let req = session.req_header();
        let route = ctx.route();
        crate::audit::request(&crate::audit::Request {
            client: &ctx.client,
            account: ctx.account.as_deref().unwrap_or(""),
            method: req.method.as_str(),
            path: req.uri.path(),
            repository: route.and_then(Route::repository).unwrap_or(""),
            action: match (route, action) {
                (Some(route), _) => route
                    .action()
                    .map(|a| a.as_str())
                    .unwrap_or(action.as_str()),
                (None, m::Action::Token | m::Action::Ui) => action.as_str(),
                (None, _) => "",
            },
            decision: ctx.outcome.as_str(),
            rule: ctx.rule.as_ref().map(|r| r as &dyn std::fmt::Display),
            scopes_requested: ctx.token.requested.as_str(),
            scopes_granted: ctx.token.granted.as_str(),
            key_id: ctx.token.key_id.as_str(),
            cache: ctx.cache.result,
            access_key: ctx.access_key.as_str(),
            issuer: ctx.issuer.as_str(),
            reason: ctx.reason.as_str(),
            status,
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            duration_ms: duration_ms(elapsed),
            error: error.map(|e| e.etype().as_str()).unwrap_or(""),
        });
    }
}

/// Milliseconds with microsecond precision (at most three decimals: `1.054`, never
/// `1.0541319999999998`). A whole number of microseconds divided by 1000 is the double nearest
/// that decimal, which prints as exactly it.
fn duration_ms(elapsed: std::time::Duration) -> f64 {
    // 2^53 µs is 285 years: a request never lasts long enough for the cast to round.
    elapsed.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::duration_ms;

    #[test]
    fn durations_have_three_decimals_at_most() {
        assert_eq!(
            duration_ms(Duration::from_nanos(1_054_132)).to_string(),
            "1.054"
        );
        assert_eq!(duration_ms(Duration::from_nanos(999)).to_string(), "0");
        assert_eq!(duration_ms(Duration::from_micros(1)).to_string(), "0.001");
        assert_eq!(duration_ms(Duration::from_secs(90)).to_string(), "90000");
        // Every microsecond count up to a few seconds prints with at most three decimals.
        for us in (0..5_000_000u64).step_by(997) {
            let text = duration_ms(Duration::from_micros(us)).to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 3, "{us} µs printed as {text}");
        }
    }
}
