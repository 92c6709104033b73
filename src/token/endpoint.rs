//! The token endpoint (`auth.token.path`): a request in, a complete response out, no I/O of
//! its own besides authentication, so the proxy only copies bytes and tests need no server.
//!
//! | request | answer |
//! |---|---|
//! | `GET ?service=&scope=…[&account=][&offline_token=true]` with Basic or no credentials | `{"token","access_token","expires_in","issued_at"[,"refresh_token"]}` |
//! | `POST` form `grant_type=password&username=&password=&service=&scope=&client_id=[&access_type=offline]` | `{"access_token","token","expires_in","issued_at"[,"scope"][,"refresh_token"]}` |
//! | `POST` form `grant_type=refresh_token&refresh_token=&service=&scope=&client_id=` | the same, without a new refresh token |
//!
//! Decisions made here, each on purpose:
//! - Every requested scope gets what the ACL grants of its actions; a scope granted nothing is
//!   left out of the token (as docker_auth does) — the registry then answers 401 on use.
//! - A `service` other than ours is a 400 (docker_auth does the same); a missing one is taken
//!   to mean ours, since the token's `aud` is ours either way.
//! - An `account` other than the Basic user is a 400; `account` without credentials too.
//! - Single-valued parameters given twice are a 400 (Go would take the first; we do not guess).
//! - Refresh tokens are issued only to real accounts, never to anonymous callers (GET with
//!   `offline_token=true`, POST with `access_type=offline`), and only when
//!   `refresh_expiration` is not zero. Each is bound to the credential the account logged in
//!   with (the `cred` claim, a keyed MAC of [`crate::authn::Authenticators::current`]'s stamp,
//!   read before the password check). A refresh re-checks that the account still exists
//!   with that same credential — a password change, a removal, a move to another backend
//!   ends the token — takes fresh labels and re-evaluates the ACL. A bad refresh token is a
//!   401.
//! - `client_id` is accepted and not checked (the spec calls it required, but it identifies
//!   nothing we could verify). On POST, the query is ignored.
//! - On POST, Basic credentials are never ignored: with the `password` grant they must name
//!   the same account and password as the form, with the `refresh_token` grant the token's
//!   account (400 `invalid_request` otherwise, before any password is checked: two
//!   authentication mechanisms that disagree); with a refresh token their password is checked
//!   too, and a wrong one is a 401 counted as a failed login. A Bearer token on POST is a
//!   400.
//! - Errors carry both shapes clients read: the OCI `{"errors":[{code,message,detail}]}` and
//!   OAuth2's `error`/`error_description`.
//! - Password checks (GET Basic, POST `password` grant) go through the failed-login limits
//!   given in the request: a locked account or address gets a 429 with `Retry-After` before
//!   any password is checked; only a wrong password or an unknown account counts.
//! - Nothing here logs or echoes a password or token.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::claims::{rfc3339, ResourceActions, ViaClaim};
use super::scope::{parse_scopes, Scope};
use super::{unix_now, TokenError, TokenService};
use crate::acl::{AccessRequest, Acl};
use crate::authn::lockout::{self, Lockout};
use crate::authn::{Authenticators, AuthnError, Credentials, Identity, Via};

/// Largest POST body accepted. The proxy must read at most this many bytes (plus one, to tell
/// "too long" apart) and hand them over; a longer body is answered 413 here.
pub const MAX_BODY: usize = 64 * 1024;

/// What the proxy hands over from one HTTP request to the token path.
pub struct EndpointRequest<'a> {
    /// `GET` or `POST` (others are answered 405).
    pub method: &'a str,
    /// The raw query string, without `?` (`""` when there is none).
    pub query: &'a str,
    /// The `Content-Type` header, for POST.
    pub content_type: Option<&'a str>,
    /// The request body (POST), at most [`MAX_BODY`] + 1 bytes.
    pub body: &'a [u8],
    /// The parsed `Authorization` header.
    pub credentials: Credentials,
    /// The client address the ACL's `ip` sees; `None` when unknown.
    pub client_ip: Option<IpAddr>,
    /// The address failed logins count against: the client, or the trusted proxy it came
    /// through when the client's address could not be read.
    pub lockout_key: Option<IpAddr>,
    /// Failed-login limits, checked before and counted after every password check here
    /// (the POST username is only known once the body is parsed, so the proxy cannot).
    pub lockout: Option<&'a Lockout>,
    /// Revocations a refresh token is checked against (`portcullis revoke`); `None`: none.
    /// With `cluster:`, a check that cannot reach Redis refuses the refresh (fail closed).
    pub revocations: Option<&'a crate::cluster::revocations::Revocations>,
}

// Hand-written: the body holds passwords and refresh tokens, and must never reach a log.
impl std::fmt::Debug for EndpointRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRequest")
            .field("method", &self.method)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .field("credentials", &self.credentials)
            .field("client_ip", &self.client_ip)
            .finish_non_exhaustive()
    }
}

/// How a request ended, for the audit line, metrics and failed-login counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A token was issued (possibly with empty `access`).
    Issued,
    /// A malformed request: 400, 405 or 413.
    Invalid,
    /// Credentials were wrong or missing: 401. Already counted in the request's lockout;
    /// `locked_now` says this failure started a lockout (for the metric and a warning).
    LoginFailed {
        /// Why.
        error: AuthnError,
        /// This failure reached the limit.
        locked_now: bool,
    },
    /// The account or client address is locked out: 429 with `Retry-After`, no password
    /// checked.
    LockedOut,
    /// A refresh token was invalid, expired, or its account is gone: 401.
    RefreshRejected,
    /// An authentication backend could not answer, or signing failed: 503/500.
    Error,
}

/// A complete answer: status, headers and body.
pub struct EndpointResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers to send; always `Content-Type: application/json` and `Cache-Control: no-store`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Bytes,
    /// How it ended.
    pub outcome: Outcome,
    /// The account the request was for, when known (Basic user, form username, refresh `sub`).
    pub account: Option<String>,
    /// The requested scopes as parsed (`type:name:actions`, space-separated, at most
    /// [`AUDIT_MAX`] bytes), for the audit line; empty when none were asked for or they did
    /// not parse (the raw request is never logged).
    pub requested: String,
    /// The granted scopes, the same way; empty when nothing was issued.
    pub granted: String,
    /// The `kid` of the key the token was signed with, when one was issued: after a key
    /// rotation, which key a client's token came from.
    pub key_id: Option<String>,
    /// The access key or CI issuer the caller logged in with, when it did
    /// ([`Identity::via`]), for the audit line.
    pub via: Option<Arc<Via>>,
}

/// Longest scope list written to an audit line. A request may ask for
/// [`super::scope::MAX_SCOPES`] scopes of [`super::scope::MAX_SCOPE_LEN`] bytes (32 KiB); a
/// log line that long would be a way to flood the logs, and a real client asks for one to
/// three short scopes.
pub const AUDIT_MAX: usize = 1024;

/// What a request revealed on its way through, whether or not it succeeded.
#[derive(Default)]
struct Seen {
    /// The account the request was for, once known.
    account: Option<String>,
    /// The requested scopes, for the audit line ([`audit_list`]).
    requested: String,
    /// How the caller logged in, once known.
    via: Option<Arc<Via>>,
}

/// Joins `items` with spaces, whole items only, into at most [`AUDIT_MAX`] bytes; what does
/// not fit is replaced by ` …(+N)`, so a reader knows the list was cut and by how much.
pub fn audit_list(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    // Kept free until the last item, for the note of how many were left out.
    let reserve = format!(" …(+{total})").len();
    let mut out = String::new();
    for (i, item) in items.enumerate() {
        let limit = if i + 1 == total {
            AUDIT_MAX
        } else {
            AUDIT_MAX.saturating_sub(reserve)
        };
        if !out.is_empty() {
            out.push(' ');
        }
        if out.len() + item.len() > limit {
            out.push_str(&format!("…(+{})", total - i));
            return out;
        }
        out.push_str(&item);
    }
    out
}

// Hand-written: the body holds the tokens.
impl std::fmt::Debug for EndpointResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointResponse")
            .field("status", &self.status)
            .field("outcome", &self.outcome)
            .field("account", &self.account)
            .field("requested", &self.requested)
            .field("granted", &self.granted)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A refusal, before it becomes a response.
struct Failure {
    status: u16,
    code: &'static str,
    oauth: &'static str,
    message: &'static str,
    outcome: Outcome,
    retry_after: Option<u64>,
}

impl Failure {
    fn invalid(oauth: &'static str, message: &'static str) -> Failure {
        Failure {
            status: 400,
            code: "UNSUPPORTED",
            oauth,
            message,
            outcome: Outcome::Invalid,
            retry_after: None,
        }
    }

    fn login(e: AuthnError) -> Failure {
        match e {
            AuthnError::Unavailable(_) => Failure {
                status: 503,
                code: "UNAVAILABLE",
                oauth: "temporarily_unavailable",
                message: "authentication is unavailable, try again later",
                outcome: Outcome::Error,
                retry_after: Some(5),
            },
            error => Failure {
                status: 401,
                code: "UNAUTHORIZED",
                oauth: "invalid_grant",
                message: "authentication required",
                outcome: Outcome::LoginFailed {
                    error,
                    locked_now: false,
                },
                retry_after: None,
            },
        }
    }

    fn refresh() -> Failure {
        Failure {
            status: 401,
            code: "UNAUTHORIZED",
            oauth: "invalid_grant",
            message: "invalid or expired refresh token",
            outcome: Outcome::RefreshRejected,
            retry_after: None,
        }
    }

    fn internal() -> Failure {
        Failure {
            status: 500,
            code: "UNKNOWN",
            oauth: "server_error",
            message: "the token could not be signed",
            outcome: Outcome::Error,
            retry_after: None,
        }
    }
}

/// Answers one token request. `realm` is the Basic realm of the `WWW-Authenticate` header on
/// 401s. Never panics, whatever the input.
pub async fn handle(
    service: &TokenService,
    authn: &Authenticators,
    acl: &Acl,
    realm: &str,
    req: EndpointRequest<'_>,
) -> EndpointResponse {
    let mut seen = Seen::default();
    let result = match req.method {
        "GET" => get(service, authn, acl, &req, &mut seen).await,
        "POST" => post(service, authn, acl, &req, &mut seen).await,
        _ => Err(Failure {
            status: 405,
            code: "UNSUPPORTED",
            oauth: "invalid_request",
            message: "method not allowed",
            outcome: Outcome::Invalid,
            retry_after: None,
        }),
    };
    let Seen {
        account,
        requested,
        via,
    } = seen;
    match result {
        Ok((body, granted)) => EndpointResponse {
            status: 200,
            headers: common_headers(),
            body: Bytes::from(body.to_string()),
            outcome: Outcome::Issued,
            account,
            requested,
            granted,
            key_id: Some(service.kid().to_string()),
            via,
        },
        Err(f) => {
            let mut headers = common_headers();
            if f.status == 401 {
                headers.push(("WWW-Authenticate", basic_challenge(realm)));
            }
            if f.status == 405 {
                headers.push(("Allow", "GET, POST".to_string()));
            }
            if let Some(secs) = f.retry_after {
                headers.push(("Retry-After", secs.to_string()));
            }
            let body = serde_json::json!({
                "errors": [{"code": f.code, "message": f.message, "detail": null}],
                "error": f.oauth,
                "error_description": f.message,
            });
            EndpointResponse {
                status: f.status,
                headers,
                body: Bytes::from(body.to_string()),
                outcome: f.outcome,
                account,
                requested,
                granted: String::new(),
                key_id: None,
                via,
            }
        }
    }
}

fn common_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_string()),
        ("Cache-Control", "no-store".to_string()),
        ("Pragma", "no-cache".to_string()),
    ]
}

/// `Basic realm="…"` with quotes and backslashes escaped.
fn basic_challenge(realm: &str) -> String {
    format!("Basic realm=\"{}\"", super::quote_escape(realm))
}

/// Decoded parameters, with the one-value rule.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(text: &str) -> Result<Params, Failure> {
        crate::route::parse_query(text)
            .map(Params)
            .map_err(|_| Failure::invalid("invalid_request", "malformed parameters"))
    }

    /// The value of a parameter that may appear at most once.
    fn one(&self, key: &str) -> Result<Option<&str>, Failure> {
        let mut found = None;
        for (k, v) in &self.0 {
            if k == key && found.replace(v.as_str()).is_some() {
                return Err(Failure::invalid(
                    "invalid_request",
                    "a parameter is given more than once",
                ));
            }
        }
        Ok(found)
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The service check and the scopes, shared by every flow.
    fn service_and_scopes(&self, service: &TokenService) -> Result<Vec<Scope>, Failure> {
        match self.one("service")? {
            Some(s) if s != service.service() => {
                return Err(Failure::invalid("invalid_request", "unknown service"))
            }
            _ => {}
        }
        parse_scopes(self.all("scope"))
            .map_err(|_| Failure::invalid("invalid_scope", "malformed scope"))
    }
}

type Answer = Result<(serde_json::Value, String), Failure>;

async fn get(
    service: &TokenService,
    authn: &Authenticators,
    acl: &Acl,
    req: &EndpointRequest<'_>,
    seen: &mut Seen,
) -> Answer {
    let params = Params::parse(req.query)?;
    let scopes = params.service_and_scopes(service)?;
    seen.requested = audit_list(scopes.iter().map(Scope::to_string));
    let asked_account = params.one("account")?;
    let offline = params
        .one("offline_token")?
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    params.one("client_id")?;
    let (identity, stamp) = match &req.credentials {
        Credentials::Basic {
            account: user,
            password,
        } => {
            seen.account = Some(user.clone());
            if asked_account.is_some_and(|a| a != user) {
                return Err(Failure::invalid(
                    "invalid_request",
                    "account does not match the credentials",
                ));
            }
            let stamp = stamp_before_login(service, authn, user, offline).await;
            let identity = login(authn, req, user, password).await?;
            (identity, stamp)
        }
        Credentials::None => {
            if asked_account.is_some_and(|a| !a.is_empty()) {
                return Err(Failure::invalid(
                    "invalid_request",
                    "account does not match the credentials",
                ));
            }
            let identity = authn
                .authenticate(&Credentials::None)
                .await
                .map_err(Failure::login)?;
            (identity, None)
        }
        Credentials::Bearer(_) => return Err(Failure::login(AuthnError::Missing)),
    };
    seen.account = Some(identity.account.clone());
    seen.via = identity.via.clone();
    let refresh = refresh_stamp(&identity, stamp)?;
    respond(
        service,
        acl,
        req.client_ip,
        &identity,
        &scopes,
        refresh.as_deref(),
        false,
    )
}

/// The credential stamp a refresh token will be bound to, read *before* the password check:
/// if the password changes while the login runs, the token is bound to the old credential and
/// ends at once, never the reverse. `None` when no refresh token will be issued.
async fn stamp_before_login(
    service: &TokenService,
    authn: &Authenticators,
    account: &str,
    offline: bool,
) -> Option<Result<Vec<u8>, AuthnError>> {
    if !offline || account.is_empty() || service.refresh_expiration_secs() == 0 {
        return None;
    }
    Some(authn.current(account).await.map(|(_, stamp)| stamp))
}

/// After a successful login: the stamp to bind a refresh token to, if one is to be issued.
/// A stamp that could not be read (the account vanished, or the backend failed, between the
/// two looks) means no refresh token can be bound: 503, try again.
fn refresh_stamp(
    identity: &Identity,
    stamp: Option<Result<Vec<u8>, AuthnError>>,
) -> Result<Option<Vec<u8>>, Failure> {
    match stamp {
        // An access key or a CI token is itself what a client logs in with again: no
        // refresh token, which would outlive a revoked key.
        _ if identity.is_anonymous() || identity.via.is_some() => Ok(None),
        None => Ok(None),
        Some(Ok(stamp)) => Ok(Some(stamp)),
        Some(Err(AuthnError::Unavailable(m))) => Err(Failure::login(AuthnError::Unavailable(m))),
        Some(Err(_)) => Err(Failure::login(AuthnError::Unavailable(
            "the account changed during the login".into(),
        ))),
    }
}

/// Basic credentials sent with a POST: they must agree with the body, never be ignored.
/// `Ok(None)` without them; a Bearer token here is a 400 (nothing it could mean).
fn post_basic<'r>(req: &'r EndpointRequest<'_>) -> Result<Option<(&'r str, &'r str)>, Failure> {
    match &req.credentials {
        Credentials::None => Ok(None),
        Credentials::Basic { account, password } => Ok(Some((account, password))),
        Credentials::Bearer(_) => Err(Failure::invalid(
            "invalid_request",
            "only Basic credentials may accompany a token request",
        )),
    }
}

/// The Basic account and the body's account differ: OAuth2's `invalid_request` (two
/// authentication mechanisms that disagree).
fn disagreeing_credentials() -> Failure {
    Failure::invalid(
        "invalid_request",
        "the Authorization header and the form disagree",
    )
}

async fn post(
    service: &TokenService,
    authn: &Authenticators,
    acl: &Acl,
    req: &EndpointRequest<'_>,
    seen: &mut Seen,
) -> Answer {
    if !is_urlencoded_form(req.content_type) {
        return Err(Failure::invalid(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if req.body.len() > MAX_BODY {
        return Err(Failure {
            status: 413,
            code: "SIZE_INVALID",
            oauth: "invalid_request",
            message: "request body too large",
            outcome: Outcome::Invalid,
            retry_after: None,
        });
    }
    let body = std::str::from_utf8(req.body)
        .map_err(|_| Failure::invalid("invalid_request", "malformed parameters"))?;
    let params = Params::parse(body)?;
    let basic = post_basic(req)?;
    let grant_type = params.one("grant_type")?;
    params.one("client_id")?;
    let scopes = params.service_and_scopes(service)?;
    seen.requested = audit_list(scopes.iter().map(Scope::to_string));
    match grant_type {
        Some("password") => {
            let user = params
                .one("username")?
                .ok_or_else(|| Failure::invalid("invalid_request", "username is required"))?;
            let password = params.one("password")?.unwrap_or("");
            let offline = params.one("access_type")? == Some("offline");
            seen.account = Some(user.to_string());
            // Basic credentials as well: the same account and the same password, or refused
            // before any password is checked.
            if let Some((basic_user, basic_password)) = basic {
                if basic_user != user || basic_password != password {
                    return Err(disagreeing_credentials());
                }
            }
            let stamp = stamp_before_login(service, authn, user, offline).await;
            let identity = login(authn, req, user, password).await?;
            seen.account = Some(identity.account.clone());
            seen.via = identity.via.clone();
            let refresh = refresh_stamp(&identity, stamp)?;
            respond(
                service,
                acl,
                req.client_ip,
                &identity,
                &scopes,
                refresh.as_deref(),
                true,
            )
        }
        Some("refresh_token") => {
            let token = params
                .one("refresh_token")?
                .ok_or_else(|| Failure::invalid("invalid_request", "refresh_token is required"))?;
            let claims = service
                .verify_refresh(token)
                .map_err(|_: TokenError| Failure::refresh())?;
            seen.account = Some(claims.sub.clone());
            // Basic credentials as well: for the token's account, and a right password (a
            // wrong one is a failed login like any other, counted toward the lockout).
            if let Some((basic_user, basic_password)) = basic {
                if basic_user != claims.sub {
                    return Err(disagreeing_credentials());
                }
                login(authn, req, basic_user, basic_password).await?;
            }
            // Not revoked (`portcullis revoke`); unknowable counts as revoked: the client
            // logs in again with its password.
            if let Some(revocations) = req.revocations {
                let subject = crate::cluster::revocations::account(&claims.sub);
                match revocations.revoked(&[(&subject, claims.iat)]).await {
                    Ok(false) => {}
                    Ok(true) => return Err(Failure::refresh()),
                    Err(e) => {
                        tracing::debug!(error = %e, "refresh refused: revocations unknowable");
                        return Err(Failure::refresh());
                    }
                }
            }
            // The account must still exist, with the credential the token was issued under.
            let identity = match authn.current(&claims.sub).await {
                Ok((identity, stamp)) if service.refresh_is_bound(token, &claims, &stamp) => {
                    identity
                }
                Ok(_) => return Err(Failure::refresh()),
                Err(AuthnError::Unavailable(m)) => {
                    return Err(Failure::login(AuthnError::Unavailable(m)))
                }
                Err(_) => return Err(Failure::refresh()),
            };
            respond(service, acl, req.client_ip, &identity, &scopes, None, true)
        }
        Some(_) => Err(Failure::invalid(
            "unsupported_grant_type",
            "grant_type must be password or refresh_token",
        )),
        None => Err(Failure::invalid(
            "invalid_request",
            "grant_type is required",
        )),
    }
}

/// A password check with the failed-login limits around it: the same
/// [`lockout::guarded_login`] the proxy uses on `/v2`, answered the OAuth2 way.
async fn login(
    authn: &Authenticators,
    req: &EndpointRequest<'_>,
    account: &str,
    password: &str,
) -> Result<Identity, Failure> {
    match lockout::guarded_login(req.lockout, authn, account, password, req.lockout_key).await {
        Ok(identity) => Ok(identity),
        Err(lockout::Refused::Locked { remaining }) => Err(Failure {
            status: 429,
            code: "TOOMANYREQUESTS",
            oauth: "temporarily_unavailable",
            message: "too many failed logins; try again later",
            outcome: Outcome::LockedOut,
            retry_after: Some(lockout::retry_after_secs(remaining)),
        }),
        Err(lockout::Refused::Failed { error, locked_now }) => {
            let mut failure = Failure::login(error);
            if let Outcome::LoginFailed { locked_now: l, .. } = &mut failure.outcome {
                *l = locked_now;
            }
            Err(failure)
        }
    }
}

/// Whether the media type (before any `;`) is `application/x-www-form-urlencoded`.
fn is_urlencoded_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// What the ACL grants of each scope; scopes granted nothing are left out.
pub fn grant(
    service: &TokenService,
    acl: &Acl,
    identity: &Identity,
    ip: Option<IpAddr>,
    scopes: &[Scope],
) -> Vec<ResourceActions> {
    scopes
        .iter()
        .filter_map(|scope| {
            let actions: Vec<&str> = scope.actions.iter().map(String::as_str).collect();
            let granted = acl.decide(&AccessRequest {
                account: &identity.account,
                labels: &identity.labels,
                ip,
                service: service.service(),
                kind: &scope.kind,
                name: &scope.name,
                actions: &actions,
            });
            // An access key's scopes narrow what the ACL grants.
            let actions = identity.narrow(&scope.kind, &scope.name, granted.actions);
            (!actions.is_empty()).then(|| ResourceActions {
                kind: scope.kind.clone(),
                name: scope.name.clone(),
                actions,
            })
        })
        .collect()
}

fn respond(
    service: &TokenService,
    acl: &Acl,
    ip: Option<IpAddr>,
    identity: &Identity,
    scopes: &[Scope],
    refresh_stamp: Option<&[u8]>,
    oauth: bool,
) -> Answer {
    let access = grant(service, acl, identity, ip, scopes);
    let granted = access
        .iter()
        .map(|r| format!("{}:{}:{}", r.kind, r.name, r.actions.join(",")))
        .collect::<Vec<_>>();
    let now = unix_now();
    let (via, not_after) = match identity.via.as_deref() {
        None => (None, None),
        Some(Via::Key { id, .. }) => (Some(ViaClaim::Key { id: id.clone() }), None),
        Some(Via::Federation { issuer, expires }) => (
            Some(ViaClaim::Ci {
                iss: issuer.clone(),
                labels: identity.labels.clone(),
            }),
            Some(*expires),
        ),
    };
    let token = service
        .sign_access_via(&identity.account, access, now, via, not_after)
        .map_err(|_| Failure::internal())?;
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": service.expiration_secs(),
        "issued_at": rfc3339(now),
    });
    if oauth && !granted.is_empty() {
        body["scope"] = serde_json::Value::String(granted.join(" "));
    }
    let refresh_stamp =
        refresh_stamp.filter(|_| !identity.is_anonymous() && service.refresh_expiration_secs() > 0);
    if let Some(stamp) = refresh_stamp {
        let refresh = service
            .sign_refresh(&identity.account, stamp, now)
            .map_err(|_| Failure::internal())?;
        body["refresh_token"] = serde_json::Value::String(refresh);
    }
    Ok((body, audit_list(granted.into_iter())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine;

    use super::super::keys::generate_dev_keypair;
    use super::*;
    use crate::authn::users::StaticUsers;

    const ACL: &str = r#"
- match: {account: admin}
  actions: ["*"]
- match: {account: "/.+/", name: "${account}/*"}
  actions: ["*"]
- match: {labels: {groups: builders}, name: "builds/*"}
  actions: [pull, push]
- match: {account: "/.+/", name: "team/*"}
  actions: [pull]
- match: {account: "", name: "public/*"}
  actions: [pull]
"#;

    struct Env {
        _dir: tempfile::TempDir,
        service: TokenService,
        acl: Acl,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = generate_dev_keypair(dir.path()).unwrap();
        let cfg = crate::token::Token {
            path: "/auth".into(),
            realm: None,
            issuer: "portcullis-test".into(),
            service: "registry.test".into(),
            key,
            certificate: Some(cert),
            expiration: std::time::Duration::from_secs(300),
            refresh_expiration: std::time::Duration::from_secs(3600),
            previous_keys: vec![],
        };
        let service = TokenService::load(&cfg).unwrap();
        let acl = Acl::parse(ACL, std::path::Path::new("acl.yaml"))
            .unwrap()
            .acl;
        Env {
            _dir: dir,
            service,
            acl,
        }
    }

    fn users(yaml: &str) -> Authenticators {
        let users = StaticUsers::parse(yaml, std::path::Path::new("u.yaml")).unwrap();
        let anonymous = users.contains("");
        Authenticators::new(vec![Arc::new(users)], anonymous)
    }

    fn hash(p: &str) -> String {
        bcrypt::hash(p, 4).unwrap()
    }

    fn standard_users(anonymous: bool) -> Authenticators {
        let mut yaml = format!(
            "alice:\n  password: \"{}\"\nci:\n  password: \"{}\"\n  labels: {{groups: [builders]}}\n",
            hash("alice-pw"),
            hash("ci-pw")
        );
        if anonymous {
            yaml.push_str("\"\": {}\n");
        }
        users(&yaml)
    }

    /// The stored hash of `account` in a chain built by [`users`] (its credential stamp, less
    /// the backend name).
    async fn before_hash(authn: &Authenticators, account: &str) -> String {
        let (_, stamp) = authn.current(account).await.unwrap();
        String::from_utf8(stamp[b"users\0".len()..].to_vec()).unwrap()
    }

    fn basic(user: &str, password: &str) -> Credentials {
        Credentials::Basic {
            account: user.into(),
            password: password.into(),
        }
    }

    async fn call(
        env: &Env,
        authn: &Authenticators,
        method: &str,
        query: &str,
        credentials: Credentials,
        body: &str,
    ) -> (EndpointResponse, serde_json::Value) {
        let resp = handle(
            &env.service,
            authn,
            &env.acl,
            "Test Realm",
            EndpointRequest {
                method,
                query,
                content_type: (method == "POST").then_some("application/x-www-form-urlencoded"),
                body: body.as_bytes(),
                credentials,
                client_ip: Some("192.0.2.1".parse().unwrap()),
                lockout_key: Some("192.0.2.1".parse().unwrap()),
                lockout: None,
                revocations: None,
            },
        )
        .await;
        let json = serde_json::from_slice(&resp.body).unwrap();
        (resp, json)
    }

    fn header<'a>(resp: &'a EndpointResponse, name: &str) -> Option<&'a str> {
        resp.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn access_of(env: &Env, token: &serde_json::Value) -> Vec<ResourceActions> {
        env.service
            .verify(token.as_str().unwrap())
            .unwrap()
            .access
            .clone()
    }

    fn ra(kind: &str, name: &str, actions: &[&str]) -> ResourceActions {
        ResourceActions {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn get_grants_what_the_acl_allows_and_omits_the_rest() {
        let env = env();
        let authn = standard_users(false);
        let (resp, json) = call(
            &env,
            &authn,
            "GET",
            "service=registry.test&scope=repository:team/app:pull,push&scope=repository:alice/x:push+repository:other/y:pull&account=alice",
            basic("alice", "alice-pw"),
            "",
        )
        .await;
        assert_eq!(resp.status, 200, "{json}");
        assert_eq!(resp.outcome, Outcome::Issued);
        assert_eq!(header(&resp, "content-type"), Some("application/json"));
        assert_eq!(header(&resp, "cache-control"), Some("no-store"));
        assert_eq!(json["token"], json["access_token"]);
        assert_eq!(json["expires_in"], 300);
        assert!(json["issued_at"].as_str().unwrap().ends_with('Z'));
        assert!(json.get("refresh_token").is_none());
        assert!(json.get("scope").is_none());
        assert_eq!(
            access_of(&env, &json["token"]),
            vec![
                ra("repository", "team/app", &["pull"]),
                ra("repository", "alice/x", &["push"]),
            ]
        );
        assert_eq!(
            resp.granted,
            "repository:team/app:pull repository:alice/x:push"
        );
        assert_eq!(
            resp.requested,
            "repository:team/app:pull,push repository:alice/x:push repository:other/y:pull"
        );
        assert_eq!(resp.key_id.as_deref(), Some(env.service.kid()));
        let claims = env.service.verify(json["token"].as_str().unwrap()).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.aud, "registry.test");
        assert_eq!(claims.iss, "portcullis-test");
    }

    #[tokio::test]
    async fn login_without_scope_gives_an_empty_token() {
        let env = env();
        let authn = standard_users(false);
        let (resp, json) = call(
            &env,
            &authn,
            "GET",
            "service=registry.test&client_id=docker&offline_token=true",
            basic("alice", "alice-pw"),
            "",
        )
        .await;
        assert_eq!(resp.status, 200);
        assert!(access_of(&env, &json["token"]).is_empty());
        // docker login asks for a refresh token (identity token) this way.
        let refresh = json["refresh_token"].as_str().unwrap();
        assert_eq!(
            env.service.verify(refresh).unwrap_err(),
            TokenError::WrongUse
        );
    }

    #[tokio::test]
    async fn anonymous_only_when_configured() {
        let env = env();
        let q = "service=registry.test&scope=repository:public/x:pull,push&scope=repository:team/a:pull";
        let (resp, json) = call(&env, &standard_users(true), "GET", q, Credentials::None, "").await;
        assert_eq!(resp.status, 200);
        assert_eq!(
            access_of(&env, &json["token"]),
            vec![ra("repository", "public/x", &["pull"])]
        );
        assert_eq!(resp.account.as_deref(), Some(""));
        // No refresh token for anonymous.
        let (_, json) = call(
            &env,
            &standard_users(true),
            "GET",
            &format!("{q}&offline_token=true"),
            Credentials::None,
            "",
        )
        .await;
        assert!(json.get("refresh_token").is_none());
        let (resp, json) = call(
            &env,
            &standard_users(false),
            "GET",
            q,
            Credentials::None,
            "",
        )
        .await;
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.outcome,
            Outcome::LoginFailed {
                error: AuthnError::Missing,
                locked_now: false
            }
        );
        assert_eq!(json["errors"][0]["code"], "UNAUTHORIZED");
    }

    #[tokio::test]
    async fn bad_credentials_are_401_with_a_basic_challenge() {
        let env = env();
        let authn = standard_users(false);
        for creds in [
            basic("alice", "wrong"),
            basic("nobody", "x"),
            Credentials::Bearer("abc".into()),
        ] {
            let (resp, json) = call(&env, &authn, "GET", "service=registry.test", creds, "").await;
            assert_eq!(resp.status, 401);
            assert_eq!(
                header(&resp, "www-authenticate"),
                Some("Basic realm=\"Test Realm\"")
            );
            assert_eq!(json["errors"][0]["code"], "UNAUTHORIZED");
            assert!(!String::from_utf8_lossy(&resp.body).contains("wrong"));
        }
    }

    #[tokio::test]
    async fn the_audit_fields_say_what_was_asked_even_when_refused() {
        let env = env();
        let authn = standard_users(false);
        // A failed login still says what it asked for; nothing was granted or signed.
        let (resp, _) = call(
            &env,
            &authn,
            "GET",
            "service=registry.test&scope=repository:team/app:pull",
            basic("alice", "wrong"),
            "",
        )
        .await;
        assert_eq!(resp.status, 401);
        assert_eq!(resp.requested, "repository:team/app:pull");
        assert_eq!(resp.granted, "");
        assert_eq!(resp.key_id, None);
        // A scope that does not parse is not echoed.
        let (resp, _) = call(
            &env,
            &authn,
            "GET",
            "service=registry.test&scope=repository:a:b:pull%0Aforged",
            basic("alice", "alice-pw"),
            "",
        )
        .await;
        assert_eq!(resp.status, 400);
        assert_eq!(resp.requested, "");
        // The POST flow too, for the form's scopes.
        let (resp, _) = call(
            &env,
            &authn,
            "POST",
            "",
            Credentials::None,
            "grant_type=password&username=alice&password=alice-pw&service=registry.test&scope=repository:alice/x:pull,push&client_id=t",
        )
        .await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.requested, "repository:alice/x:pull,push");
        assert_eq!(resp.granted, "repository:alice/x:pull,push");
        // The most scopes a request may ask for, each as long as a name may be: the lists
        // stay bounded and say how many scopes were left out.
        let long = "a".repeat(200);
        let query: String = (0..crate::token::scope::MAX_SCOPES)
            .map(|i| format!("&scope=repository:alice/{long}{i}:pull"))
            .collect();
        let (resp, _) = call(
            &env,
            &authn,
            "GET",
            &format!("service=registry.test{query}"),
            basic("alice", "alice-pw"),
            "",
        )
        .await;
        assert_eq!(resp.status, 200);
        for list in [&resp.requested, &resp.granted] {
            assert!(list.len() <= AUDIT_MAX, "{}", list.len());
            assert!(list.starts_with("repository:alice/"), "{list}");
            assert!(list.ends_with(" …(+60)"), "{list}");
        }
    }

    #[test]
    fn audit_lists_keep_whole_items_within_the_bound() {
        let items = |n: usize, len: usize| (0..n).map(move |i| format!("{i:0>len$}"));
        assert_eq!(audit_list(items(0, 3)), "");
        assert_eq!(audit_list(items(3, 3)), "000 001 002");
        // Exactly at the bound: kept whole.
        let exact = audit_list(items(1, AUDIT_MAX));
        assert_eq!(exact.len(), AUDIT_MAX);
        // One byte over, alone: replaced by the note.
        assert_eq!(audit_list(items(1, AUDIT_MAX + 1)), "…(+1)");
        for (n, len) in [(64, 100), (64, 512), (1000, 4), (2, 1020), (3, 511)] {
            let list = audit_list(items(n, len));
            assert!(list.len() <= AUDIT_MAX, "{n}×{len}: {}", list.len());
            let (kept, note) = list.rsplit_once(' ').unwrap_or(("", &list));
            let kept: Vec<&str> = kept.split(' ').filter(|i| !i.is_empty()).collect();
            let left: usize = note
                .strip_prefix("…(+")
                .and_then(|n| n.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{n}×{len}: no note in …{note}"))
                .parse()
                .unwrap();
            assert_eq!(kept.len() + left, n, "{n}×{len}");
            assert!(kept.iter().all(|i| i.len() == len), "{n}×{len}");
        }
    }

    #[tokio::test]
    async fn malformed_requests_are_400() {
        let env = env();
        let authn = standard_users(true);
        for (query, creds) in [
            (
                "service=registry.test&account=bob",
                basic("alice", "alice-pw"),
            ),
            ("service=registry.test&account=bob", Credentials::None),
            ("service=other", basic("alice", "alice-pw")),
            (
                "service=registry.test&service=registry.test",
                Credentials::None,
            ),
            ("scope=repository:a", Credentials::None),
            ("scope=repository:a:b:pull", Credentials::None),
            ("scope=%zz", Credentials::None),
            ("scope=a;b", Credentials::None),
        ] {
            let (resp, json) = call(&env, &authn, "GET", query, creds, "").await;
            assert_eq!(resp.status, 400, "{query}: {json}");
            assert_eq!(resp.outcome, Outcome::Invalid);
            assert!(json["error"].is_string());
        }
        let (resp, _) = call(&env, &authn, "PUT", "", Credentials::None, "").await;
        assert_eq!(resp.status, 405);
        assert_eq!(header(&resp, "allow"), Some("GET, POST"));
    }

    #[tokio::test]
    async fn post_password_offline_then_refresh() {
        let env = env();
        let authn = standard_users(false);
        let (resp, json) = call(
            &env,
            &authn,
            "POST",
            "",
            Credentials::None,
            "grant_type=password&username=ci&password=ci-pw&service=registry.test&client_id=docker&access_type=offline&scope=repository%3Abuilds%2Fapp%3Apush%2Cpull%2Cdelete",
        )
        .await;
        assert_eq!(resp.status, 200, "{json}");
        assert_eq!(json["scope"], "repository:builds/app:push,pull");
        assert_eq!(
            access_of(&env, &json["access_token"]),
            vec![ra("repository", "builds/app", &["push", "pull"])]
        );
        let refresh = json["refresh_token"].as_str().unwrap().to_string();
        let (resp, json) = call(
            &env,
            &authn,
            "POST",
            "",
            Credentials::None,
            &format!("grant_type=refresh_token&refresh_token={refresh}&service=registry.test&client_id=docker&scope=repository:builds/other:pull"),
        )
        .await;
        assert_eq!(resp.status, 200, "{json}");
        assert_eq!(resp.account.as_deref(), Some("ci"));
        assert!(json.get("refresh_token").is_none());
        assert_eq!(
            access_of(&env, &json["access_token"]),
            vec![ra("repository", "builds/other", &["pull"])]
        );
        // An access token is not a refresh token.
        let access = json["access_token"].as_str().unwrap();
        let (resp, _) = call(
            &env,
            &authn,
            "POST",
            "",
            Credentials::None,
            &format!("grant_type=refresh_token&refresh_token={access}&service=registry.test"),
        )
        .await;
        assert_eq!(resp.status, 401);
        assert_eq!(resp.outcome, Outcome::RefreshRejected);
        // Wrong password on POST.
        let (resp, json) = call(
            &env,
            &authn,
            "POST",
            "",
            Credentials::None,
            "grant_type=password&username=ci&password=nope&service=registry.test",
        )
        .await;
        assert_eq!(resp.status, 401);
        assert_eq!(json["error"], "invalid_grant");
        assert_eq!(
            resp.outcome,
            Outcome::LoginFailed {
                error: AuthnError::BadPassword,
                locked_now: false
            }
        );
    }

    #[tokio::test]
    async fn refresh_follows_the_current_accounts() {
        let env = env();
        let before = standard_users(false);
        let (_, json) = call(
            &env,
            &before,
            "POST",
            "",
            Credentials::None,
            "grant_type=password&username=ci&password=ci-pw&access_type=offline",
        )
        .await;
        let refresh = json["refresh_token"].as_str().unwrap().to_string();
        let body = format!(
            "grant_type=refresh_token&refresh_token={refresh}&scope=repository:builds/app:push"
        );
        // ci lost the builders label (same stored hash): the ACL is evaluated again, with the
        // fresh labels.
        let ci_hash = before_hash(&before, "ci").await;
        let relabelled = users(&format!("ci:\n  password: \"{ci_hash}\"\n"));
        let (resp, json) = call(&env, &relabelled, "POST", "", Credentials::None, &body).await;
        assert_eq!(resp.status, 200);
        assert!(access_of(&env, &json["access_token"]).is_empty());
        assert!(json.get("scope").is_none());
        // ci's password changed (even re-hashed to the same password): the token ends.
        let rehashed = users(&format!("ci:\n  password: \"{}\"\n", hash("ci-pw")));
        let (resp, _) = call(&env, &rehashed, "POST", "", Credentials::None, &body).await;
        assert_eq!(resp.status, 401);
        assert_eq!(resp.outcome, Outcome::RefreshRejected);
        // ci was removed: the refresh token stops working.
        let removed = users(&format!("alice:\n  password: \"{}\"\n", hash("x")));
        let (resp, json) = call(&env, &removed, "POST", "", Credentials::None, &body).await;
        assert_eq!(resp.status, 401);
        assert_eq!(resp.outcome, Outcome::RefreshRejected);
        assert_eq!(json["errors"][0]["code"], "UNAUTHORIZED");
        // A tampered refresh token is refused.
        let mut parts: Vec<String> = refresh.split('.').map(String::from).collect();
        let mut payload: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&parts[1])
                .unwrap(),
        )
        .unwrap();
        payload["sub"] = "alice".into();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&payload).unwrap());
        let (resp, _) = call(
            &env,
            &removed,
            "POST",
            "",
            Credentials::None,
            &format!("grant_type=refresh_token&refresh_token={}", parts.join(".")),
        )
        .await;
        assert_eq!(resp.status, 401);
    }

    #[tokio::test]
    async fn failed_logins_lock_out_get_and_post() {
        let env = env();
        let authn = standard_users(false);
        let lockout = Lockout::new(crate::authn::lockout::Settings {
            failures: 2,
            window: std::time::Duration::from_secs(60),
            ..Default::default()
        });
        let run = |method: &'static str, creds: Credentials, body: &'static str| {
            let (env, authn, lockout) = (&env, &authn, &lockout);
            async move {
                handle(
                    &env.service,
                    authn,
                    &env.acl,
                    "r",
                    EndpointRequest {
                        method,
                        query: "service=registry.test",
                        content_type: Some("application/x-www-form-urlencoded"),
                        body: body.as_bytes(),
                        credentials: creds,
                        client_ip: Some("192.0.2.9".parse().unwrap()),
                        lockout_key: Some("192.0.2.9".parse().unwrap()),
                        lockout: Some(lockout),
                        revocations: None,
                    },
                )
                .await
            }
        };
        let r = run("GET", basic("alice", "bad1"), "").await;
        assert_eq!(
            r.outcome,
            Outcome::LoginFailed {
                error: AuthnError::BadPassword,
                locked_now: false
            }
        );
        let r = run(
            "POST",
            Credentials::None,
            "grant_type=password&username=alice&password=bad2",
        )
        .await;
        assert_eq!(
            r.outcome,
            Outcome::LoginFailed {
                error: AuthnError::BadPassword,
                locked_now: true
            }
        );
        // Locked: even the right password is not checked, on GET or POST.
        let r = run("GET", basic("alice", "alice-pw"), "").await;
        assert_eq!((r.status, r.outcome.clone()), (429, Outcome::LockedOut));
        assert!(r.headers.iter().any(|(n, _)| *n == "Retry-After"));
        let r = run(
            "POST",
            Credentials::None,
            "grant_type=password&username=alice&password=alice-pw",
        )
        .await;
        assert_eq!(r.status, 429);
    }

    #[tokio::test]
    async fn post_refusals() {
        let env = env();
        let authn = standard_users(false);
        for (body, status, error) in [
            (
                "grant_type=client_credentials",
                400,
                "unsupported_grant_type",
            ),
            ("username=ci&password=ci-pw", 400, "invalid_request"),
            ("grant_type=password&password=x", 400, "invalid_request"),
            ("grant_type=refresh_token", 400, "invalid_request"),
            (
                "grant_type=refresh_token&refresh_token=a.b.c",
                401,
                "invalid_grant",
            ),
            (
                "grant_type=password&grant_type=refresh_token",
                400,
                "invalid_request",
            ),
            (
                "grant_type=password&username=ci&password=ci-pw&service=x",
                400,
                "invalid_request",
            ),
            (
                "grant_type=password&username=ci&password=ci-pw&scope=bad",
                400,
                "invalid_scope",
            ),
        ] {
            let (resp, json) = call(&env, &authn, "POST", "", Credentials::None, body).await;
            assert_eq!(resp.status, status, "{body}: {json}");
            assert_eq!(json["error"], error, "{body}");
        }
        // Not a form, too large, not UTF-8.
        let big = "a".repeat(MAX_BODY + 1);
        for (ct, body, status) in [
            (Some("application/json"), "{}".as_bytes(), 400),
            (None, b"grant_type=password".as_slice(), 400),
            (
                Some("application/x-www-form-urlencoded"),
                big.as_bytes(),
                413,
            ),
            (
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                b"\xff\xfe".as_slice(),
                400,
            ),
        ] {
            let resp = handle(
                &env.service,
                &authn,
                &env.acl,
                "r",
                EndpointRequest {
                    method: "POST",
                    query: "",
                    content_type: ct,
                    body,
                    credentials: Credentials::None,
                    client_ip: None,
                    lockout_key: None,
                    lockout: None,
                    revocations: None,
                },
            )
            .await;
            assert_eq!(resp.status, status);
        }
    }

    #[tokio::test]
    async fn post_basic_credentials_must_agree_with_the_body() {
        let env = env();
        let authn = standard_users(false);
        let pw =
            "grant_type=password&username=alice&password=alice-pw&scope=repository:alice/x:pull";
        // The same account and password in both: fine.
        let (resp, json) = call(&env, &authn, "POST", "", basic("alice", "alice-pw"), pw).await;
        assert_eq!(resp.status, 200, "{json}");
        // Another account in the header, or another password: 400, nothing issued.
        for creds in [basic("ci", "ci-pw"), basic("alice", "wrong")] {
            let (resp, json) = call(&env, &authn, "POST", "", creds, pw).await;
            assert_eq!((resp.status, resp.outcome.clone()), (400, Outcome::Invalid));
            assert_eq!(json["error"], "invalid_request");
            assert!(json.get("access_token").is_none());
        }
        let (resp, _) = call(
            &env,
            &authn,
            "POST",
            "",
            Credentials::Bearer("t".into()),
            pw,
        )
        .await;
        assert_eq!(resp.status, 400);
        // A refresh token with Basic credentials: the token's account, the right password.
        let (_, json) = call(
            &env,
            &authn,
            "POST",
            "",
            Credentials::None,
            "grant_type=password&username=ci&password=ci-pw&access_type=offline",
        )
        .await;
        let refresh = json["refresh_token"].as_str().unwrap().to_string();
        let body = format!("grant_type=refresh_token&refresh_token={refresh}");
        let (resp, _) = call(&env, &authn, "POST", "", basic("ci", "ci-pw"), &body).await;
        assert_eq!(resp.status, 200);
        let (resp, _) = call(&env, &authn, "POST", "", basic("alice", "alice-pw"), &body).await;
        assert_eq!((resp.status, resp.outcome), (400, Outcome::Invalid));
        let (resp, json) = call(&env, &authn, "POST", "", basic("ci", "wrong"), &body).await;
        assert_eq!(resp.status, 401);
        assert_eq!(json["error"], "invalid_grant");
        assert_eq!(
            resp.outcome,
            Outcome::LoginFailed {
                error: AuthnError::BadPassword,
                locked_now: false
            }
        );
    }

    #[tokio::test]
    async fn refresh_tokens_without_a_binding_or_from_another_key_are_refused() {
        let env = env();
        let authn = standard_users(false);
        let (_, stamp) = authn.current("ci").await.unwrap();
        // Signed by our key but with no `cred` (as before bindings existed): refused.
        let mut claims = env
            .service
            .signer
            .refresh_claims("ci", &stamp, unix_now(), 600);
        claims.cred = None;
        let unbound = env.service.signer.sign(&claims).unwrap();
        // Bound to another stamp: refused. Bound to the right one: accepted.
        let other = env
            .service
            .sign_refresh("ci", b"users\0other", unix_now())
            .unwrap();
        let good = env.service.sign_refresh("ci", &stamp, unix_now()).unwrap();
        for (token, status) in [(unbound, 401), (other, 401), (good, 200)] {
            let (resp, _) = call(
                &env,
                &authn,
                "POST",
                "",
                Credentials::None,
                &format!("grant_type=refresh_token&refresh_token={token}"),
            )
            .await;
            assert_eq!(resp.status, status);
        }
        // The claim is a keyed MAC: neither the stamp nor an unkeyed digest of it.
        let cred = claims_of(&env.service.sign_refresh("ci", &stamp, 0).unwrap());
        let cred = cred["cred"].as_str().unwrap().to_string();
        assert_eq!(cred.len(), 43);
        let hash = before_hash(&authn, "ci").await;
        assert!(!cred.contains(&hash[7..20]));
        use sha2::Digest;
        let plain =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&stamp));
        assert_ne!(cred, plain);
    }

    fn claims_of(token: &str) -> serde_json::Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics(query in "\\PC{0,60}", body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let env = env();
            let authn = standard_users(true);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            for method in ["GET", "POST"] {
                let resp = rt.block_on(handle(&env.service, &authn, &env.acl, "r", EndpointRequest {
                    method,
                    query: &query,
                    content_type: Some("application/x-www-form-urlencoded"),
                    body: &body,
                    credentials: Credentials::None,
                    client_ip: None,
                    lockout_key: None,
                    lockout: None,
                    revocations: None,
                }));
                proptest::prop_assert!(matches!(resp.status, 200 | 400 | 401 | 413));
            }
        }
    }
}
