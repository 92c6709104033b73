//! Prometheus metrics: one [`Metrics`] value owning its own registry (never the global one, so
//! tests can build several), with one method per thing that happened.
//!
//! Every label value comes from a closed enum here, never from the request, so an attacker
//! cannot grow the number of series. Counter handles are resolved once at construction and
//! kept in arrays indexed by those enums: the hot path does no label hashing or allocation.
//! Resolving every combination up front also means a scrape shows `0` for things that have
//! not happened yet rather than leaving the series out.
//!
//! | metric | labels |
//! |---|---|
//! | `portcullis_requests_total` | `action`, `decision` |
//! | `portcullis_request_duration_seconds` (histogram) | `action` |
//! | `portcullis_upstream_errors_total` | `kind` |
//! | `portcullis_auth_failures_total` | `reason` |
//! | `portcullis_config_reloads_total` | `result` |
//! | `portcullis_acl_rules` (gauge) | |
//! | `portcullis_tokens_issued_total` | |
//! | `portcullis_lockouts_total` | |
//! | `portcullis_bytes_total` | `direction` (`in` client→registry, `out` registry→client) |
//! | `portcullis_upstream_up` (gauge 0/1) | |
//! | `portcullis_registry_up` (gauge 0/1) | `upstream` |
//! | `portcullis_registry_errors_total` | `upstream`, `kind` |
//! | `portcullis_registry_tokens_fetched_total` | `upstream` |
//! | `portcullis_responses_total` | `class` (`1xx` … `5xx`, `none`) |
//! | `portcullis_client_connections` (gauge) | |
//! | `portcullis_build_info` (gauge 1) | `version` |
//! | `portcullis_config_last_reload_success_timestamp_seconds` (gauge) | |
//! | `portcullis_tls_certificate_expiry_timestamp_seconds` (gauge, only with TLS) | |
//! | `portcullis_cluster_up` (gauge 0/1, only with `cluster:`) | |
//! | `portcullis_cluster_errors_total` (only with `cluster:`) | |
//! | `portcullis_rate_limited_total` | `scope` (`account`, `address`) |
//! | `portcullis_cache_requests_total` | `result` (`hit`, `miss`, `coalesced`, `revalidated`) |
//! | `portcullis_cache_bytes` (gauge) | |
//! | `portcullis_cache_evictions_total` | |
//! | `portcullis_audit_lines_dropped_total` | |
//! | `process_*` (Linux) | |

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::authn::AuthnError;
use crate::outcome::Outcome;
use crate::route::Route;

/// The `Content-Type` of [`Metrics::encode`]'s output (text exposition format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request duration buckets, seconds: 100 µs (a cached refusal) to 60 s (a large blob).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Declares a closed label enum: variants, their label values, and `ALL` in index order.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in index order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// The `action` label of request metrics.
    Action {
        /// Reading a repository.
        Pull => "pull",
        /// Writing a repository.
        Push => "push",
        /// Deleting from a repository.
        Delete => "delete",
        /// `/v2/_catalog`.
        Catalog => "catalog",
        /// `/v2/`.
        Base => "base",
        /// The token endpoint.
        Token => "token",
        /// The web UI (`ui.path`).
        Ui => "ui",
        /// Nothing parsed (an invalid request).
        None => "none",
    }
}

impl Action {
    /// The action of a parsed route; `None` (no route: the request did not parse) is
    /// [`Action::None`].
    pub fn of_route(route: Option<&Route>) -> Action {
        match route {
            Some(Route::Base) => Action::Base,
            Some(Route::Catalog) => Action::Catalog,
            Some(Route::Repository { action, .. }) => match action {
                crate::route::Action::Pull => Action::Pull,
                crate::route::Action::Push => Action::Push,
                crate::route::Action::Delete => Action::Delete,
            },
            None => Action::None,
        }
    }
}

label_enum! {
    /// The `decision` label of `portcullis_requests_total` (the audit line's `decision`).
    Decision {
        /// Forwarded.
        Allowed => "allowed",
        /// Refused with a valid login (or anonymous refused).
        Denied => "denied",
        /// A valid Bearer token without the scope the request needs (the ACL would allow it:
        /// the client should fetch a new token, nobody was refused).
        InsufficientScope => "insufficient_scope",
        /// No or bad credentials.
        Unauthenticated => "unauthenticated",
        /// Refused before authentication: the request did not parse.
        Invalid => "invalid",
        /// The registry or an authentication backend failed.
        Error => "error",
    }
}

impl From<Outcome> for Decision {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Allowed => Decision::Allowed,
            Outcome::Denied => Decision::Denied,
            Outcome::InsufficientScope => Decision::InsufficientScope,
            Outcome::Unauthenticated => Decision::Unauthenticated,
            Outcome::Invalid => Decision::Invalid,
            Outcome::Error => Decision::Error,
        }
    }
}

label_enum! {
    /// The `kind` label of `portcullis_upstream_errors_total`.
    UpstreamErrorKind {
        /// The TCP connect failed (refused, no route, …).
        Connect => "connect",
        /// Connecting, reading or writing took too long.
        Timeout => "timeout",
        /// The registry closed or reset an established connection.
        Reset => "reset",
        /// Anything else (a malformed answer, …).
        Other => "other",
    }
}

impl UpstreamErrorKind {
    /// Classifies a Pingora error met while talking to the registry.
    pub fn of(error: &pingora::Error) -> Self {
        use pingora::ErrorType as E;
        match error.etype() {
            E::ConnectTimedout | E::ReadTimedout | E::WriteTimedout | E::TLSHandshakeTimedout => {
                UpstreamErrorKind::Timeout
            }
            E::ConnectRefused
            | E::ConnectNoRoute
            | E::ConnectError
            | E::TLSHandshakeFailure
            | E::HandshakeError
            | E::InvalidCert
            | E::BindError
            | E::SocketError
            | E::ConnectProxyFailure => UpstreamErrorKind::Connect,
            E::ConnectionClosed | E::ReadError | E::WriteError => UpstreamErrorKind::Reset,
            _ => UpstreamErrorKind::Other,
        }
    }
}

label_enum! {
    /// The `reason` label of `portcullis_auth_failures_total`.
    AuthFailure {
        /// A known account with a wrong password.
        BadPassword => "bad_password",
        /// No backend knows the account.
        UnknownAccount => "unknown_account",
        /// An `Authorization` header that does not parse.
        Malformed => "malformed",
        /// LDAP (or another backend) could not answer.
        LdapUnavailable => "ldap_unavailable",
        /// Refused because of a lockout, before the password was checked.
        LockedOut => "locked_out",
        /// A bearer token that is invalid, expired or for another service.
        BadToken => "bad_token",
        /// An access key that is unknown, expired, or whose account is gone.
        BadKey => "bad_key",
        /// A CI job's ID token that was refused (`auth.federation`).
        BadCiToken => "bad_ci_token",
    }
}

impl AuthFailure {
    /// The failure reason of a login error; `None` for "no credentials" (a challenge, not a
    /// failure).
    pub fn of(error: &AuthnError) -> Option<Self> {
        match error {
            AuthnError::BadPassword => Some(AuthFailure::BadPassword),
            AuthnError::UnknownAccount => Some(AuthFailure::UnknownAccount),
            AuthnError::Unavailable(_) => Some(AuthFailure::LdapUnavailable),
            AuthnError::UnknownKey
            | AuthnError::KeyExpired(_)
            | AuthnError::KeyRevoked(_)
            | AuthnError::KeyAccountGone(_) => Some(AuthFailure::BadKey),
            AuthnError::BadCiToken { .. } => Some(AuthFailure::BadCiToken),
            AuthnError::Missing => None,
        }
    }
}

label_enum! {
    /// The `direction` label of `portcullis_bytes_total`.
    Direction {
        /// Client → registry (request bodies: pushes).
        In => "in",
        /// Registry → client (response bodies: pulls).
        Out => "out",
    }
}

label_enum! {
    /// The `class` label of `portcullis_responses_total`: the first digit of the status sent.
    StatusClass {
        /// 100–199 (only a final status is counted, so in practice `101` refused upstream).
        Informational => "1xx",
        /// 200–299.
        Success => "2xx",
        /// 300–399.
        Redirection => "3xx",
        /// 400–499.
        ClientError => "4xx",
        /// 500–599.
        ServerError => "5xx",
        /// No response was sent (the client went away first) or the status was out of range.
        None => "none",
    }
}

impl StatusClass {
    /// The class of an HTTP status; `0` (nothing sent) and anything outside 100–599 is
    /// [`StatusClass::None`].
    pub fn of(status: u16) -> Self {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::None,
        }
    }
}

label_enum! {
    /// The `result` label of `portcullis_cache_requests_total`.
    CacheResult {
        /// Answered from memory.
        Hit => "hit",
        /// Asked of the registry (the answer may then fill the cache).
        Miss => "miss",
        /// Waited for another request's registry answer and shared it.
        Coalesced => "coalesced",
        /// A stored answer by tag, served after the registry confirmed (`304` to
        /// `If-None-Match`) that the tag still names the same manifest.
        Revalidated => "revalidated",
    }
}

const ACTIONS: usize = 8;
const DECISIONS: usize = 6;
const CLASSES: usize = 6;

/// The name of the certificate expiry gauge, registered with the first certificate (a
/// plain-HTTP listener has none, and a `0` would read as "expired in 1970" to an alert).
const TLS_EXPIRY: &str = "portcullis_tls_certificate_expiry_timestamp_seconds";

/// All portcullis metrics and the registry they are registered in.
pub struct Metrics {
    registry: Registry,
    requests: [[IntCounter; DECISIONS]; ACTIONS],
    durations: [Histogram; ACTIONS],
    upstream_errors: [IntCounter; 4],
    auth_failures: [IntCounter; AuthFailure::ALL.len()],
    reloads: [IntCounter; 2],
    acl_rules: IntGauge,
    tokens_issued: IntCounter,
    lockouts: IntCounter,
    bytes: [IntCounter; 2],
    upstream_up: IntGauge,
    registry_up: prometheus::IntGaugeVec,
    registry_errors: IntCounterVec,
    registry_tokens: IntCounterVec,
    responses: [IntCounter; CLASSES],
    connections: IntGauge,
    last_reload: Gauge,
    tls_expiry: OnceLock<IntGauge>,
    cluster: OnceLock<(IntGauge, IntCounter)>,
    rate_limited: [IntCounter; 2],
    cache_requests: [IntCounter; 4],
    cache_bytes: IntGauge,
    cache_evictions: IntCounter,
    audit_dropped: IntCounter,
}

label_enum! {
    /// The `scope` label of `portcullis_rate_limited_total`: which limit refused.
    RateScope {
        /// `limits.rate.per_account`.
        Account => "account",
        /// `limits.rate.per_address`.
        Address => "address",
    }
}

/// One open client connection, counted in `portcullis_client_connections` until dropped.
#[derive(Debug)]
#[must_use = "the connection is uncounted when this is dropped"]
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Resolves one counter per label value: `label(i)` is the value at index `i`.
fn resolve<const N: usize>(
    vec: &IntCounterVec,
    label: impl Fn(usize) -> &'static str,
) -> [IntCounter; N] {
    std::array::from_fn(|i| vec.with_label_values(&[label(i)]))
}

impl Metrics {
    /// A fresh registry with every metric registered and every label combination at 0.
    pub fn new() -> Self {
        Self::try_new().expect("metric definitions are valid and registered once")
    }

    fn try_new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok::<_, prometheus::Error>(vec)
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };

        let requests_vec = counter_vec(
            "portcullis_requests_total",
            "Requests answered, by action and decision.",
            &["action", "decision"],
        )?;
        let requests = std::array::from_fn(|a| {
            std::array::from_fn(|d| {
                requests_vec
                    .with_label_values(&[Action::ALL[a].as_str(), Decision::ALL[d].as_str()])
            })
        });

        let durations_vec = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_request_duration_seconds",
                "Time from the request head to the end of the answer, by action.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["action"],
        )?;
        registry.register(Box::new(durations_vec.clone()))?;
        let durations =
            std::array::from_fn(|a| durations_vec.with_label_values(&[Action::ALL[a].as_str()]));

        let upstream_errors = resolve(
            &counter_vec(
                "portcullis_upstream_errors_total",
                "Failures talking to the registry, by kind.",
                &["kind"],
            )?,
            |i| UpstreamErrorKind::ALL[i].as_str(),
        );
        let auth_failures = resolve(
            &counter_vec(
                "portcullis_auth_failures_total",
                "Failed authentications, by reason.",
                &["reason"],
            )?,
            |i| AuthFailure::ALL[i].as_str(),
        );
        let reloads = resolve(
            &counter_vec(
                "portcullis_config_reloads_total",
                "Configuration reloads, by result.",
                &["result"],
            )?,
            |i| ["success", "failure"][i],
        );
        let acl_rules = gauge("portcullis_acl_rules", "ACL rules currently loaded.")?;
        let tokens_issued = counter("portcullis_tokens_issued_total", "Bearer tokens issued.")?;
        let lockouts = counter(
            "portcullis_lockouts_total",
            "Accounts or client addresses locked out after too many failed logins.",
        )?;
        let bytes = resolve(
            &counter_vec(
                "portcullis_bytes_total",
                "Body bytes proxied; in = client to registry, out = registry to client.",
                &["direction"],
            )?,
            |i| Direction::ALL[i].as_str(),
        );
        let rate_limited = resolve(
            &counter_vec(
                "portcullis_rate_limited_total",
                "Requests refused with 429 by limits.rate, by the limit that refused them.",
                &["scope"],
            )?,
            |i| RateScope::ALL[i].as_str(),
        );
        let upstream_up = gauge(
            "portcullis_upstream_up",
            "1 when the registry answered the last readiness probe, else 0.",
        )?;

        let registry_up = prometheus::IntGaugeVec::new(
            Opts::new(
                "portcullis_registry_up",
                "1 when one address at least of this registry answered the last readiness probe, else 0.",
            ),
            &["upstream"],
        )?;
        registry.register(Box::new(registry_up.clone()))?;
        let registry_errors = counter_vec(
            "portcullis_registry_errors_total",
            "Failures talking to this registry, by kind (portcullis_upstream_errors_total summed over registries).",
            &["upstream", "kind"],
        )?;
        let registry_tokens = counter_vec(
            "portcullis_registry_tokens_fetched_total",
            "Tokens portcullis fetched from this registry's own token server (upstream_auth token).",
            &["upstream"],
        )?;

        let responses = resolve(
            &counter_vec(
                "portcullis_responses_total",
                "Responses sent to clients, by status class (none: the client left first).",
                &["class"],
            )?,
            |i| StatusClass::ALL[i].as_str(),
        );
        let connections = gauge(
            "portcullis_client_connections",
            "Client connections open now (accepted within the connection limits).",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "portcullis_build_info",
                "Always 1; the version label says which portcullis is running.",
            ),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let last_reload = Gauge::new(
            "portcullis_config_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded (start or last successful reload), Unix time.",
        )?;
        registry.register(Box::new(last_reload.clone()))?;

        let cache_requests = resolve(
            &counter_vec(
                "portcullis_cache_requests_total",
                "Manifest requests the cache could answer, by result (hit, miss, coalesced, revalidated).",
                &["result"],
            )?,
            |i| CacheResult::ALL[i].as_str(),
        );
        let cache_bytes = gauge(
            "portcullis_cache_bytes",
            "Bytes of manifest answers held in the cache now (bounded by cache.manifests.max_memory).",
        )?;
        let cache_evictions = counter(
            "portcullis_cache_evictions_total",
            "Cached manifest answers evicted for space or because their time was up.",
        )?;
        let audit_dropped = counter(
            "portcullis_audit_lines_dropped_total",
            "Audit lines dropped because the log writer fell behind (its queue was full).",
        )?;

        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            registry,
            requests,
            durations,
            upstream_errors,
            auth_failures,
            reloads,
            acl_rules,
            tokens_issued,
            lockouts,
            bytes,
            upstream_up,
            registry_up,
            registry_errors,
            registry_tokens,
            responses,
            connections,
            last_reload,
            tls_expiry: OnceLock::new(),
            cluster: OnceLock::new(),
            rate_limited,
            cache_requests,
            cache_bytes,
            cache_evictions,
            audit_dropped,
        })
    }

    /// A manifest request the cache was asked about, and how it was answered.
    pub fn cache_request(&self, result: CacheResult) {
        self.cache_requests[result.index()].inc();
    }

    /// `delta` bytes of answers entered (positive) or left (negative) the cache.
    pub fn cache_bytes(&self, delta: i64) {
        self.cache_bytes.add(delta);
    }

    /// A cached answer was evicted (space or time).
    pub fn cache_eviction(&self) {
        self.cache_evictions.inc();
    }

    /// An audit line was dropped: the writer's queue was full.
    pub fn audit_line_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// One answered request: counts it and records how long it took.
    pub fn observe_request(&self, action: Action, decision: Decision, duration: Duration) {
        self.requests[action.index()][decision.index()].inc();
        self.durations[action.index()].observe(duration.as_secs_f64());
    }

    /// A failure talking to the registry `upstream` (its URL).
    pub fn upstream_error(&self, upstream: &str, kind: UpstreamErrorKind) {
        self.upstream_errors[kind.index()].inc();
        self.registry_errors
            .with_label_values(&[upstream, kind.as_str()])
            .inc();
    }

    /// The latest readiness probe of the registry `upstream` (its URL).
    pub fn set_registry_up(&self, upstream: &str, up: bool) {
        self.registry_up
            .with_label_values(&[upstream])
            .set(i64::from(up));
    }

    /// Sets the count of tokens fetched from `upstream`'s token server to `total`.
    pub fn set_registry_tokens(&self, upstream: &str, total: u64) {
        let counter = self.registry_tokens.with_label_values(&[upstream]);
        let seen = counter.get();
        if total > seen {
            counter.inc_by(total - seen);
        }
    }

    /// A failed authentication.
    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason.index()].inc();
    }

    /// A configuration reload, successful (`true`) or refused (`false`).
    pub fn reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
    }

    /// The number of ACL rules now loaded (at start and after each successful reload).
    pub fn set_acl_rules(&self, n: usize) {
        self.acl_rules.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A bearer token was issued.
    pub fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    /// An account or client address was just locked out.
    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    /// `n` body bytes went in `direction`.
    pub fn bytes(&self, direction: Direction, n: u64) {
        self.bytes[direction.index()].inc_by(n);
    }

    /// The result of the latest readiness probe of the registry.
    pub fn set_upstream_up(&self, up: bool) {
        self.upstream_up.set(i64::from(up));
    }

    /// A response with `status` (`0`: none was sent) went to a client.
    pub fn response(&self, status: u16) {
        self.responses[StatusClass::of(status).index()].inc();
    }

    /// A client connection was accepted; it counts as open until the guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    /// A configuration was loaded and is now in force (at start, and after each successful
    /// reload): sets the timestamp to now.
    pub fn config_loaded(&self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_reload.set(now.as_secs_f64());
    }

    /// The `notAfter` (Unix seconds) of the TLS certificate now served. The gauge appears
    /// with the first call: without TLS there is no series at all.
    pub fn set_tls_certificate_expiry(&self, not_after: i64) {
        let gauge = self.tls_expiry.get_or_init(|| {
            let gauge = IntGauge::new(
                TLS_EXPIRY,
                "notAfter of the TLS certificate served to clients now, Unix time.",
            )
            .expect("a valid metric name");
            if let Err(e) = self.registry.register(Box::new(gauge.clone())) {
                // Only possible if registered twice, which the OnceLock rules out.
                tracing::error!(error = %e, "registering {TLS_EXPIRY} failed");
            }
            gauge
        });
        gauge.set(not_after);
    }

    /// A request refused by a rate limit.
    pub fn rate_limited(&self, scope: RateScope) {
        self.rate_limited[scope.index()].inc();
    }

    /// `portcullis_cluster_up` and `portcullis_cluster_errors_total`, registered with the
    /// first call: without `cluster:` there are no such series.
    fn cluster_series(&self) -> &(IntGauge, IntCounter) {
        self.cluster.get_or_init(|| {
            let up = IntGauge::new(
                "portcullis_cluster_up",
                "1 while the cluster's Redis answers, 0 while this replica falls back to its own state.",
            )
            .expect("a valid metric name");
            let errors = IntCounter::new(
                "portcullis_cluster_errors_total",
                "Redis operations and probes that failed or timed out.",
            )
            .expect("a valid metric name");
            for c in [
                Box::new(up.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(errors.clone()),
            ] {
                if let Err(e) = self.registry.register(c) {
                    tracing::error!(error = %e, "registering the cluster metrics failed");
                }
            }
            (up, errors)
        })
    }

    /// Cluster mode is on: its series appear, `portcullis_cluster_up` at 0 until Redis answers.
    pub fn enable_cluster(&self) {
        self.cluster_series();
    }

    /// Everything, in the text exposition format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            // Only possible for malformed families, which this module never builds.
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The registry, to register further collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The cluster reports its health here.
impl crate::cluster::Observer for Metrics {
    fn up(&self, up: bool) {
        self.cluster_series().0.set(i64::from(up));
    }

    fn error(&self) {
        self.cluster_series().1.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[track_caller]
    fn assert_line(text: &str, line: &str) {
        assert!(has_line(text, line), "missing line {line:?} in:\n{text}");
    }

    #[test]
    fn label_enums_index_in_declaration_order() {
        for (i, a) in Action::ALL.iter().enumerate() {
            assert_eq!(a.index(), i);
        }
        assert_eq!(Action::ALL.len(), ACTIONS);
        assert_eq!(Decision::ALL.len(), DECISIONS);
        assert_eq!(UpstreamErrorKind::ALL.len(), 4);
        assert_eq!(AuthFailure::ALL.len(), 8);
        assert_eq!(Direction::ALL.len(), 2);
        assert_eq!(StatusClass::ALL.len(), CLASSES);
    }

    #[test]
    fn fresh_registry_shows_zeroes() {
        let m = Metrics::new();
        let text = m.encode();
        assert_line(
            &text,
            r#"portcullis_config_reloads_total{result="success"} 0"#,
        );
        assert_line(
            &text,
            r#"portcullis_config_reloads_total{result="failure"} 0"#,
        );
        assert_line(
            &text,
            r#"portcullis_requests_total{action="push",decision="denied"} 0"#,
        );
        assert_line(
            &text,
            r#"portcullis_auth_failures_total{reason="locked_out"} 0"#,
        );
        assert_line(&text, r#"portcullis_upstream_errors_total{kind="reset"} 0"#);
        assert_line(&text, r#"portcullis_bytes_total{direction="in"} 0"#);
        assert_line(&text, "portcullis_acl_rules 0");
        assert_line(&text, "portcullis_tokens_issued_total 0");
        assert_line(&text, "portcullis_lockouts_total 0");
        assert_line(&text, "portcullis_upstream_up 0");
        assert_line(
            &text,
            r#"portcullis_requests_total{action="pull",decision="insufficient_scope"} 0"#,
        );
        assert_line(&text, r#"portcullis_responses_total{class="2xx"} 0"#);
        assert_line(&text, r#"portcullis_responses_total{class="none"} 0"#);
        assert_line(&text, "portcullis_client_connections 0");
        assert_line(
            &text,
            &format!(
                r#"portcullis_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        );
        assert_line(
            &text,
            "portcullis_config_last_reload_success_timestamp_seconds 0",
        );
        // No certificate yet: no series, rather than a 0 that reads as long expired.
        assert!(!text.contains(TLS_EXPIRY), "{text}");
        assert_line(
            &text,
            "# TYPE portcullis_request_duration_seconds histogram",
        );
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn counts_what_happened() {
        let m = Metrics::new();
        m.observe_request(Action::Pull, Decision::Allowed, Duration::from_millis(3));
        m.observe_request(Action::Pull, Decision::Allowed, Duration::from_micros(50));
        m.observe_request(Action::Push, Decision::Denied, Duration::from_secs(90));
        m.upstream_error("http://r:5000", UpstreamErrorKind::Timeout);
        m.set_registry_up("http://r:5000", true);
        m.auth_failure(AuthFailure::BadPassword);
        m.auth_failure(AuthFailure::BadPassword);
        m.auth_failure(AuthFailure::LockedOut);
        m.reload(true);
        m.reload(false);
        m.reload(true);
        m.set_acl_rules(42);
        m.token_issued();
        m.lockout();
        m.bytes(Direction::In, 1000);
        m.bytes(Direction::Out, 7);
        m.bytes(Direction::Out, 8);
        m.set_upstream_up(true);
        m.observe_request(
            Action::Delete,
            Decision::InsufficientScope,
            Duration::from_millis(1),
        );
        for status in [200, 201, 204, 307, 401, 404, 502, 0, 101, 999] {
            m.response(status);
        }
        let first = m.connection_opened();
        let second = m.connection_opened();
        assert_line(&m.encode(), "portcullis_client_connections 2");
        drop(first);
        m.set_tls_certificate_expiry(1_900_000_000);
        m.set_tls_certificate_expiry(2_000_000_000);
        let text = m.encode();
        assert_line(&text, "portcullis_client_connections 1");
        drop(second);
        for line in [
            r#"portcullis_requests_total{action="delete",decision="insufficient_scope"} 1"#,
            r#"portcullis_requests_total{action="delete",decision="denied"} 0"#,
            r#"portcullis_responses_total{class="1xx"} 1"#,
            r#"portcullis_responses_total{class="2xx"} 3"#,
            r#"portcullis_responses_total{class="3xx"} 1"#,
            r#"portcullis_responses_total{class="4xx"} 2"#,
            r#"portcullis_responses_total{class="5xx"} 1"#,
            r#"portcullis_responses_total{class="none"} 2"#,
            "portcullis_tls_certificate_expiry_timestamp_seconds 2000000000",
        ] {
            assert_line(&text, line);
        }
        m.config_loaded();
        let loaded: f64 = m
            .encode()
            .lines()
            .find_map(|l| {
                l.strip_prefix("portcullis_config_last_reload_success_timestamp_seconds ")
            })
            .unwrap()
            .parse()
            .unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - loaded).abs() < 60.0, "{loaded} vs {now}");
        let text = m.encode();
        assert_line(&text, "portcullis_client_connections 0");
        for line in [
            r#"portcullis_requests_total{action="pull",decision="allowed"} 2"#,
            r#"portcullis_requests_total{action="push",decision="denied"} 1"#,
            r#"portcullis_requests_total{action="pull",decision="denied"} 0"#,
            r#"portcullis_request_duration_seconds_count{action="pull"} 2"#,
            r#"portcullis_request_duration_seconds_bucket{action="pull",le="0.0001"} 1"#,
            r#"portcullis_request_duration_seconds_bucket{action="pull",le="0.0025"} 1"#,
            r#"portcullis_request_duration_seconds_bucket{action="pull",le="0.005"} 2"#,
            r#"portcullis_request_duration_seconds_bucket{action="push",le="60"} 0"#,
            r#"portcullis_request_duration_seconds_bucket{action="push",le="+Inf"} 1"#,
            r#"portcullis_request_duration_seconds_sum{action="push"} 90"#,
            r#"portcullis_upstream_errors_total{kind="timeout"} 1"#,
            r#"portcullis_upstream_errors_total{kind="connect"} 0"#,
            r#"portcullis_registry_errors_total{kind="timeout",upstream="http://r:5000"} 1"#,
            r#"portcullis_registry_up{upstream="http://r:5000"} 1"#,
            r#"portcullis_auth_failures_total{reason="bad_password"} 2"#,
            r#"portcullis_auth_failures_total{reason="locked_out"} 1"#,
            r#"portcullis_config_reloads_total{result="success"} 2"#,
            r#"portcullis_config_reloads_total{result="failure"} 1"#,
            "portcullis_acl_rules 42",
            "portcullis_tokens_issued_total 1",
            "portcullis_lockouts_total 1",
            r#"portcullis_bytes_total{direction="in"} 1000"#,
            r#"portcullis_bytes_total{direction="out"} 15"#,
            "portcullis_upstream_up 1",
        ] {
            assert_line(&text, line);
        }
        m.set_upstream_up(false);
        m.set_acl_rules(3);
        let text = m.encode();
        assert_line(&text, "portcullis_upstream_up 0");
        assert_line(&text, "portcullis_acl_rules 3");
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.token_issued();
        assert_line(&a.encode(), "portcullis_tokens_issued_total 1");
        assert_line(&b.encode(), "portcullis_tokens_issued_total 0");
    }

    #[test]
    fn maps_from_other_modules() {
        assert_eq!(Action::of_route(None), Action::None);
        assert_eq!(Action::of_route(Some(&Route::Catalog)), Action::Catalog);
        assert_eq!(Action::of_route(Some(&Route::Base)), Action::Base);
        for outcome in [
            Outcome::Allowed,
            Outcome::Denied,
            Outcome::InsufficientScope,
            Outcome::Unauthenticated,
            Outcome::Invalid,
            Outcome::Error,
        ] {
            assert_eq!(Decision::from(outcome).as_str(), outcome.as_str());
        }
        assert_eq!(
            AuthFailure::of(&AuthnError::BadPassword),
            Some(AuthFailure::BadPassword)
        );
        assert_eq!(AuthFailure::of(&AuthnError::Missing), None);
        let refused = pingora::Error::new(pingora::ErrorType::ConnectRefused);
        assert_eq!(UpstreamErrorKind::of(&refused), UpstreamErrorKind::Connect);
        let slow = pingora::Error::new(pingora::ErrorType::ReadTimedout);
        assert_eq!(UpstreamErrorKind::of(&slow), UpstreamErrorKind::Timeout);
        let closed = pingora::Error::new(pingora::ErrorType::ConnectionClosed);
        assert_eq!(UpstreamErrorKind::of(&closed), UpstreamErrorKind::Reset);
    }
}
