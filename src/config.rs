//! `proxy.yaml`: the schema, its defaults, and validation that names file:line and the key.
//!
//! The file is read once at start (and again on reload). Everything here is plain data:
//! loading the files it points at (users, htpasswd, ACL) is the job of [`crate::state`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::diagnostic::{not_a_file, Diagnostic, Diagnostics};

// The settings of each part are defined beside the part that uses them, so the arrow points
// one way: the configuration knows every part, no part knows the configuration.
pub use crate::authn::federation::Settings as Federation;
pub use crate::authn::ldap::Ldap;
pub use crate::authn::lockout::Settings as Lockout;
pub use crate::authn::oidc::Oidc;
pub use crate::cache::Settings as Cache;
pub use crate::cluster::Settings as Cluster;
pub use crate::token::Token;
pub use crate::upstream::auth::Settings as UpstreamAuth;
pub use crate::upstream::select::Entry as UpstreamEntry;
pub use crate::upstream::tls::Settings as UpstreamTls;
pub use crate::upstream::Settings as Upstream;

/// The whole validated configuration, with every relative path resolved against the
/// folder of the file it came from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from, for messages.
    pub file: PathBuf,
    /// Client-side listening address.
    pub listen: SocketAddr,
    /// TLS for the client side; `None` serves plain HTTP (with a warning at start).
    pub tls: Option<Tls>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; never the client port.
    pub admin_listen: Option<SocketAddr>,
    /// The registries, in order: the first whose prefix a repository name starts with
    /// serves it (`upstream:` is one entry with an empty prefix).
    pub upstreams: Vec<UpstreamEntry>,
    /// Load balancers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Who may log in, and how they are asked to.
    pub auth: Auth,
    /// The ACL file or folder.
    pub acl: PathBuf,
    /// ACL tests (a file or a folder of `*.yaml`): checked at start, by `check` and before
    /// every reload takes effect.
    pub acl_tests: Option<PathBuf>,
    /// Worker threads for the proxy service.
    pub threads: usize,
    /// How long SIGTERM waits for requests in flight before stopping anyway.
    pub shutdown_timeout: Duration,
    /// How long after SIGTERM the listener stays open (not ready, draining) even with nothing
    /// in flight: the time a load balancer needs to see `/readyz` fail. Closing sooner loses
    /// a request it sends in between once its body is partly sent (it cannot replay that).
    pub shutdown_delay: Duration,
    /// Connection and request limits.
    pub limits: crate::limits::Limits,
    /// The web UI.
    pub ui: Ui,
    /// Redis shared by the replicas; `None`: every replica keeps its own state.
    pub cluster: Option<Cluster>,
    /// What portcullis may answer from memory (`cache:`); nothing by default.
    pub cache: Cache,
    /// Findings that do not stop a start (a docker_auth section nothing reads), printed by
    /// `check` and logged at start and reload with the loaders' warnings.
    pub warnings: Vec<Diagnostic>,
}

/// `ui:`: the web UI served on `listen` under `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ui {
    /// Served at all; when false, `path` is an ordinary (404) request target.
    pub enabled: bool,
    /// Where it is mounted: starts and ends with `/`, outside `/v2`.
    pub path: String,
    /// How long a login lasts.
    pub session_lifetime: Duration,
    /// The name in the page header and title.
    pub title: String,
    /// A file holding the key sessions are signed with (at least 32 bytes), so sessions
    /// survive a restart and are accepted by every replica; `None`: a random key per process.
    pub session_key_file: Option<PathBuf>,
}

impl Default for Ui {
    fn default() -> Self {
        Ui {
            enabled: true,
            path: "/ui/".into(),
            session_lifetime: Duration::from_secs(8 * 3600),
            title: "portcullis".into(),
            session_key_file: None,
        }
    }
}

/// TLS certificate chain and key files, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Which `WWW-Authenticate` scheme a 401 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Challenge {
    /// `Basic realm="…"`: every request carries the password.
    Basic,
    /// `Bearer realm=…,service=…`: the Docker token flow.
    Token,
}

/// Where static users come from.
#[derive(Debug, Clone)]
pub enum UsersSource {
    /// A docker_auth-style users file (bare map or a document with `users:`).
    File(PathBuf),
    /// Users written inside proxy.yaml itself.
    Inline(crate::authn::users::StaticUsers),
}

/// The `auth:` section.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The challenge scheme.
    pub challenge: Challenge,
    /// The Basic realm.
    pub realm: String,
    /// Static users, if any.
    pub users: Option<UsersSource>,
    /// bcrypt htpasswd files, tried in order after the static users.
    pub htpasswd: Vec<PathBuf>,
    /// The Docker token service, when configured.
    pub token: Option<Token>,
    /// LDAP, tried after static users and htpasswd.
    pub ldap: Option<Ldap>,
    /// The docker_auth `auth_config.yml` whose `ldap_auth:` `ldap` was read from, when
    /// `auth.ldap` names a file (watched for reloads like the other files).
    pub ldap_file: Option<PathBuf>,
    /// Failed-login limits.
    pub lockout: Lockout,
    /// Single sign-on for people in the web UI, when configured.
    pub oidc: Option<Oidc>,
    /// The access keys file (`auth.keys`), when keys are on.
    pub keys: Option<PathBuf>,
    /// Trusted issuers of CI job ID tokens (`auth.federation`).
    pub federation: Vec<Federation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    admin_listen: Option<String>,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    upstreams: Option<Vec<RawUpstreamEntry>>,
    #[serde(default)]
    upstream_timeouts: Option<RawUpstreamTimeouts>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    upstream_resolve_interval: Option<Duration>,
    #[serde(default)]
    upstream_tls: Option<RawUpstreamTls>,
    #[serde(default)]
    upstream_auth: Option<RawUpstreamAuth>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    auth: RawAuth,
    acl: PathBuf,
    #[serde(default)]
    acl_tests: Option<PathBuf>,
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    shutdown_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    shutdown_delay: Option<Duration>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    ui: Option<RawUi>,
    #[serde(default)]
    cluster: Option<RawCluster>,
    cache: Option<RawCache>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    redis: String,
    #[serde(default)]
    ca_certificate: Option<PathBuf>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    key_prefix: Option<String>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default)]
    manifests: Option<RawManifestCache>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifestCache {
    #[serde(default, deserialize_with = "de_size_opt")]
    max_memory: Option<u64>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    digest_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    tag_ttl: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUi {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    session_lifetime: Option<Duration>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    session_key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    max_connections: Option<usize>,
    #[serde(default)]
    max_connections_per_address: Option<usize>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    header_read_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    idle_timeout: Option<Duration>,
    #[serde(default)]
    max_uri_length: Option<usize>,
    #[serde(default)]
    max_headers: Option<usize>,
    #[serde(default)]
    max_header_bytes: Option<usize>,
    #[serde(default)]
    rate: Option<RawRate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    #[serde(default)]
    per_account: Option<TextOrNumber>,
    #[serde(default)]
    per_address: Option<TextOrNumber>,
    #[serde(default)]
    burst: Option<TextOrNumber>,
}

/// A scalar read as text (`burst: 2` and `burst: 2x` alike), checked by its own parser.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrNumber {
    Text(String),
    Number(u64),
}

impl TextOrNumber {
    fn text(&self) -> String {
        match self {
            TextOrNumber::Text(t) => t.clone(),
            TextOrNumber::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamTimeouts {
    #[serde(default, deserialize_with = "de_duration_opt")]
    connect: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    read: Option<Duration>,
}

/// One entry of `upstreams:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamEntry {
    prefix: String,
    url: String,
    #[serde(default)]
    strip_prefix: bool,
    #[serde(default)]
    tls: Option<RawUpstreamTls>,
    #[serde(default)]
    auth: Option<RawUpstreamAuth>,
    #[serde(default)]
    timeouts: Option<RawUpstreamTimeouts>,
}

/// Where an upstream entry's keys are, for messages.
struct EntryKeys {
    url: String,
    tls: String,
    auth: String,
}

/// One registry's settings from its entry, every problem reported at its key.
fn upstream_entry(
    raw: &RawUpstreamEntry,
    keys: &EntryKeys,
    default_timeouts: Option<&RawUpstreamTimeouts>,
    resolve_interval: Duration,
    resolve: &dyn Fn(&Path) -> PathBuf,
    err: &mut dyn FnMut(&str, String),
) -> Option<UpstreamEntry> {
    let tls = raw.tls.as_ref().map(|t| UpstreamTls {
        ca_certificate: t.ca_certificate.as_deref().map(resolve),
        client_certificate: t.client_certificate.as_deref().map(resolve),
        client_key: t.client_key.as_deref().map(resolve),
        server_name: t.server_name.clone(),
    });
    if let Some(t) = &tls {
        for (key, file) in [
            ("ca_certificate", &t.ca_certificate),
            ("client_certificate", &t.client_certificate),
            ("client_key", &t.client_key),
        ] {
            if let Some(why) = file.as_deref().and_then(not_a_file) {
                err(&format!("{}.{key}", keys.tls), why);
            }
        }
    }
    let account = |a: &RawAccount| crate::upstream::auth::Account {
        username: a.username.clone(),
        password_file: resolve(&a.password_file),
    };
    let auth = match raw.auth.as_ref().map(|a| (&a.basic, &a.token)) {
        None => None,
        Some((Some(basic), None)) => Some(UpstreamAuth::Basic(account(basic))),
        Some((None, Some(token))) => Some(UpstreamAuth::Token(account(token))),
        Some(_) => {
            err(
                &keys.auth,
                "holds exactly one of `basic: {username, password_file}` (the registry's htpasswd) or `token: {username, password_file}` (its token server)".into(),
            );
            None
        }
    };
    if let Some(UpstreamAuth::Basic(account) | UpstreamAuth::Token(account)) = &auth {
        let form = if matches!(auth, Some(UpstreamAuth::Basic(_))) {
            "basic"
        } else {
            "token"
        };
        if account.username.is_empty() || account.username.contains(':') {
            err(
                &format!("{}.{form}.username", keys.auth),
                "must be a non-empty name without `:`".into(),
            );
        }
        if let Some(why) = not_a_file(&account.password_file) {
            err(&format!("{}.{form}.password_file", keys.auth), why);
        }
    }
    let (https, address, host) = match crate::upstream::parse_url(&raw.url) {
        Ok(parsed) => parsed,
        Err(m) => {
            err(&keys.url, m);
            return None;
        }
    };
    if !https && tls.is_some() {
        err(
            &keys.tls,
            "needs an https:// upstream: the registry is reached over plain HTTP".into(),
        );
    }
    if https {
        // The name the registry's certificate is checked against.
        let server_key = format!("{}.server_name", keys.tls);
        let (key, name) = match tls.as_ref().and_then(|t| t.server_name.as_ref()) {
            Some(name) => (server_key.as_str(), name.as_str()),
            None => (keys.url.as_str(), host.as_str()),
        };
        if rustls::pki_types::ServerName::try_from(name).is_err() {
            err(
                key,
                format!("{name:?} is neither a DNS name nor an IP address: the registry's certificate could not be checked against it"),
            );
        }
    }
    let t = raw.timeouts.as_ref();
    let d = default_timeouts;
    Some(UpstreamEntry {
        prefix: raw.prefix.clone(),
        strip_prefix: raw.strip_prefix,
        settings: Upstream {
            address,
            host,
            tls: https.then(|| tls.unwrap_or_default()),
            auth,
            connect_timeout: t
                .and_then(|t| t.connect)
                .or(d.and_then(|d| d.connect))
                .unwrap_or(Duration::from_secs(5)),
            read_timeout: t
                .and_then(|t| t.read)
                .or(d.and_then(|d| d.read))
                .unwrap_or(Duration::from_secs(300)),
            resolve_interval,
        },
    })
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawUpstreamTls {
    #[serde(default)]
    ca_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    server_name: Option<String>,
}

/// `upstream_auth:` holds exactly one of its forms.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawUpstreamAuth {
    #[serde(default)]
    basic: Option<RawAccount>,
    #[serde(default)]
    token: Option<RawAccount>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    username: String,
    password_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default = "default_challenge")]
    challenge: Challenge,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    users: Option<RawUsers>,
    #[serde(default, deserialize_with = "de_one_or_many")]
    htpasswd: Vec<PathBuf>,
    #[serde(default)]
    token: Option<RawToken>,
    #[serde(default)]
    ldap: Option<RawLdapSource>,
    #[serde(default)]
    lockout: Option<RawLockout>,
    #[serde(default)]
    oidc: Option<RawOidc>,
    #[serde(default)]
    keys: Option<PathBuf>,
    #[serde(default)]
    federation: Vec<RawFederation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    issuer: String,
    audience: String,
    account: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    ca_certificate: Option<PathBuf>,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            challenge: default_challenge(),
            realm: default_realm(),
            users: None,
            htpasswd: Vec::new(),
            token: None,
            ldap: None,
            lockout: None,
            oidc: None,
            keys: None,
            federation: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    #[serde(default = "default_token_path")]
    path: String,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default = "default_issuer")]
    issuer: String,
    #[serde(default = "default_service")]
    service: String,
    key: PathBuf,
    #[serde(default)]
    certificate: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_one_or_many")]
    previous_keys: Vec<PathBuf>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    expiration: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    refresh_expiration: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdap {
    url: String,
    #[serde(default)]
    start_tls: bool,
    #[serde(default)]
    ca_certificate: Option<PathBuf>,
    bind_dn: String,
    bind_password_file: PathBuf,
    base: String,
    filter: String,
    #[serde(default = "default_account_attribute")]
    account_attribute: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    cache: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    client_secret_file: PathBuf,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default = "default_account_claim")]
    account_claim: String,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    ca_certificate: Option<PathBuf>,
    #[serde(default)]
    redirect_url: Option<String>,
}

fn default_account_claim() -> String {
    "preferred_username".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLockout {
    #[serde(default)]
    failures: Option<u32>,
    #[serde(default, deserialize_with = "de_duration_opt")]
    window: Option<Duration>,
    #[serde(default)]
    exempt: Vec<String>,
}

fn default_account_attribute() -> String {
    "uid".into()
}

fn default_token_path() -> String {
    "/auth".into()
}
fn default_issuer() -> String {
    "portcullis".into()
}
fn default_service() -> String {
    "Docker registry".into()
}

/// `auth.ldap`: the section, or the path of a docker_auth `auth_config.yml` whose
/// `ldap_auth:` is read (see [`crate::docker_auth`]). By hand, as [`RawUsers`], so errors
/// inside the section keep their line.
enum RawLdapSource {
    File(PathBuf),
    Inline(Box<RawLdap>),
}

impl<'de> Deserialize<'de> for RawLdapSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawLdapSource;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an LDAP section or the path of a docker_auth auth_config.yml")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawLdapSource, E> {
                Ok(RawLdapSource::File(PathBuf::from(v)))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawLdapSource, A::Error> {
                RawLdap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|l| RawLdapSource::Inline(Box::new(l)))
            }
        }
        d.deserialize_any(V)
    }
}

/// `auth.users`: a path, or the users themselves. Written by hand rather than
/// `#[serde(untagged)]` so that an error inside inline users keeps its line and message.
enum RawUsers {
    File(PathBuf),
    Inline(crate::authn::users::RawUsers),
}

impl<'de> Deserialize<'de> for RawUsers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawUsers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a users file path or a map of users")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawUsers, E> {
                Ok(RawUsers::File(PathBuf::from(v)))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawUsers, A::Error> {
                crate::authn::users::RawUsers::deserialize(de::value::MapAccessDeserializer::new(
                    map,
                ))
                .map(RawUsers::Inline)
            }
        }
        d.deserialize_any(V)
    }
}

fn default_listen() -> String {
    "0.0.0.0:5000".into()
}
fn default_challenge() -> Challenge {
    Challenge::Basic
}
fn default_realm() -> String {
    "Registry Realm".into()
}

/// Parses `300ms`, `5s`, `1m`, `2h` (an integer and a unit; no unit is an error, because a
/// bare `5` is ambiguous and a wrong guess is a security setting gone wrong).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} needs a unit (ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} must start with a whole number"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("duration {text:?}: unit must be ms, s, m or h")),
    };
    Ok(d)
}

/// Parsed inside the visitor, so serde_yaml_ng locates a bad duration at the value itself
/// with its key path (`auth.token.expiration`), not at the enclosing mapping.
fn de_duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration such as 300ms, 5s, 1m or 2h")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            parse_duration(&v.to_string()).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            parse_duration(&v.to_string()).map_err(E::custom)
        }
    }
    d.deserialize_str(V).map(Some)
}

/// A byte size (`64MiB`), located at the value like [`de_duration_opt`].
fn de_size_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size such as 512KiB, 64MiB or 1GiB")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            crate::cache::settings::parse_size(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            crate::cache::settings::parse_size(&v.to_string()).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            crate::cache::settings::parse_size(&v.to_string()).map_err(E::custom)
        }
    }
    d.deserialize_str(V).map(Some)
}

fn de_one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

/// Half the CPUs (at least one): portcullis usually shares its host with the registry, whose
/// own CPU use is the limit for small requests. Measured on 2 cores with the registry beside
/// it, one proxy thread served 8–25% more manifest GETs than two (fewer cross-thread wake-ups)
/// and pulled blobs as fast; a dedicated proxy host should set `threads` to its CPU count.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(1))
        .unwrap_or(1)
}

/// Finds the configuration file: the `-c` flag, then `$PORTCULLIS_CONFIG`, then `./proxy.yaml`
/// (clap fills the first two; this is the last fallback, kept here so every command agrees).
pub fn default_path() -> PathBuf {
    PathBuf::from("proxy.yaml")
}

impl Config {
    /// Reads and validates `path`. Every problem found is returned, each with file:line and key.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::new(path, format!("cannot read configuration: {e}")))?;
        Self::parse(&text, path)
    }

    /// Only `auth.keys` of the file at `path`, resolved like every path: what `portcullis key`
    /// needs, which must work before the keys file exists (when a full load would refuse
    /// the missing file). The file must still parse as a configuration.
    pub fn keys_path(path: &Path) -> Result<Option<PathBuf>, Diagnostics> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::new(path, format!("cannot read: {e}")))?;
        let raw: RawConfig = serde_yaml_ng::from_str(&text)
            .map_err(|e| crate::yaml::serde_diagnostic(path, &text, &e))?;
        let base = path.parent().unwrap_or(Path::new(""));
        Ok(raw
            .auth
            .keys
            .map(|p| if p.is_absolute() { p } else { base.join(p) }))
    }

    /// Validates the text of a configuration file that lives at `path` (used for relative paths
    /// and messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, Diagnostics> {
        // The marked tree locates every value error at the value itself; a duplicate key is
        // reported at its second occurrence (serde only knows the mapping it is in).
        let tree = crate::yaml::parse_marked(text).ok().flatten();
        if let Some(root) = &tree {
            let duplicates: Vec<Diagnostic> = crate::yaml::duplicate_keys(root)
                .into_iter()
                .map(|(key, node)| {
                    Diagnostic::new(path, "written twice in the same mapping: keep one")
                        .at(node.line, node.column)
                        .key(key)
                })
                .collect();
            if !duplicates.is_empty() {
                return Err(Diagnostics(duplicates));
            }
        }
        let raw: RawConfig = serde_yaml_ng::from_str(text)
            .map_err(|e| crate::yaml::serde_diagnostic(path, text, &e))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let resolve = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let mut user_errors = Vec::new();
        let line_of = |key: &str| crate::diagnostic::find_key_line(text, key);
        // The value under a dotted key, when written.
        let value_at = |key: &str| {
            let keys: Vec<&str> = key.split('.').collect();
            tree.as_ref()
                .and_then(|root| crate::yaml::at_path(root, &keys))
                .map(|n| (n.line, n.column))
        };
        let mut errors = Vec::new();
        let mut err = |key: &str, msg: String| {
            let mut d = Diagnostic::new(path, msg).key(key);
            if let Some((line, column)) = value_at(key) {
                d = d.at(line, column);
            } else if let Some(line) = line_of(key.rsplit('.').next().unwrap_or(key)) {
                d = d.at_line(line);
            }
            errors.push(d);
        };

        let listen = match raw.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                err("listen", format!("{:?} is not an address:port", raw.listen));
                None
            }
        };
        let admin_listen = match raw.admin_listen.as_deref().map(str::parse::<SocketAddr>) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                err("admin_listen", "not an address:port".into());
                None
            }
        };
        if admin_listen.is_some() && admin_listen == listen {
            err(
                "admin_listen",
                "must differ from `listen`: metrics are never served on the client port".into(),
            );
        }
        // `upstream:` (with `upstream_tls`/`upstream_auth`) is the one-entry form of
        // `upstreams:`; exactly one of the two is written.
        let resolve_interval = raw
            .upstream_resolve_interval
            .unwrap_or(Duration::from_secs(30));
        if resolve_interval.is_zero() {
            err("upstream_resolve_interval", "must be more than 0".into());
        }
        let mut upstreams = Vec::new();
        match (&raw.upstream, &raw.upstreams) {
            (Some(url), None) => {
                let one = RawUpstreamEntry {
                    prefix: String::new(),
                    url: url.clone(),
                    strip_prefix: false,
                    tls: raw.upstream_tls.clone(),
                    auth: raw.upstream_auth.clone(),
                    timeouts: None,
                };
                let keys = EntryKeys {
                    url: "upstream".into(),
                    tls: "upstream_tls".into(),
                    auth: "upstream_auth".into(),
                };
                if let Some(e) = upstream_entry(
                    &one,
                    &keys,
                    raw.upstream_timeouts.as_ref(),
                    resolve_interval,
                    &resolve,
                    &mut err,
                ) {
                    upstreams.push(e);
                }
            }
            (None, Some(list)) => {
                for (key, given) in [
                    ("upstream_tls", raw.upstream_tls.is_some()),
                    ("upstream_auth", raw.upstream_auth.is_some()),
                ] {
                    if given {
                        err(key, "goes with `upstream:`; with `upstreams:` write `tls:`/`auth:` in each entry".into());
                    }
                }
                if list.is_empty() {
                    err("upstreams", "lists no registry".into());
                }
                for (i, entry) in list.iter().enumerate() {
                    let keys = EntryKeys {
                        url: format!("upstreams.{i}.url"),
                        tls: format!("upstreams.{i}.tls"),
                        auth: format!("upstreams.{i}.auth"),
                    };
                    if !crate::upstream::select::valid_prefix(&entry.prefix) {
                        err(
                            &format!("upstreams.{i}.prefix"),
                            format!("{:?} must be empty (every name) or repository name components ending in `/` (`hub/`, `team/app/`)", entry.prefix),
                        );
                    }
                    if entry.strip_prefix && entry.prefix.is_empty() {
                        err(
                            &format!("upstreams.{i}.strip_prefix"),
                            "there is no prefix to strip".into(),
                        );
                    }
                    if let Some(e) = upstream_entry(
                        entry,
                        &keys,
                        raw.upstream_timeouts.as_ref(),
                        resolve_interval,
                        &resolve,
                        &mut err,
                    ) {
                        upstreams.push(e);
                    }
                }
                if upstreams.len() == list.len() {
                    for (later, earlier) in crate::upstream::select::shadowed(&upstreams) {
                        err(
                            &format!("upstreams.{later}.prefix"),
                            format!(
                                "{:?} is unreachable: entry {earlier} (prefix {:?}) comes first and serves every name it would",
                                upstreams[later].prefix, upstreams[earlier].prefix
                            ),
                        );
                    }
                }
            }
            (Some(_), Some(_)) => err(
                "upstreams",
                "write either `upstream:` (one registry) or `upstreams:` (several), not both"
                    .into(),
            ),
            (None, None) => err(
                "upstream",
                "missing: name the registry with `upstream:` (or several with `upstreams:`)".into(),
            ),
        }
        let mut trusted_proxies = Vec::new();
        for p in &raw.trusted_proxies {
            match parse_net(p) {
                Some(n) => trusted_proxies.push(n),
                None => err(
                    "trusted_proxies",
                    format!(
                        "{p:?} is not an address or CIDR (a CIDR's host bits must be zero: 10.0.0.0/8, not 10.0.0.1/8)"
                    ),
                ),
            }
        }
        let tls = raw.tls.map(|t| Tls {
            cert: resolve(&t.cert),
            key: resolve(&t.key),
        });
        if let Some(t) = &tls {
            if let Some(why) = not_a_file(&t.cert) {
                err("tls.cert", why);
            }
            if let Some(why) = not_a_file(&t.key) {
                err("tls.key", why);
            }
        }
        let users = match raw.auth.users {
            None => None,
            Some(RawUsers::File(p)) => {
                let p = resolve(&p);
                if let Some(why) = not_a_file(&p) {
                    err("auth.users", why);
                }
                Some(UsersSource::File(p))
            }
            Some(RawUsers::Inline(u)) => {
                let locate = |keys: &[&str]| {
                    let mut full = vec!["auth", "users"];
                    full.extend_from_slice(keys);
                    tree.as_ref()
                        .and_then(|root| crate::yaml::at_path(root, &full))
                        .map(|n| (n.line, n.column))
                };
                match u.validate(path, locate) {
                    Ok(u) => Some(UsersSource::Inline(u)),
                    Err(e) => {
                        // Inline, the users live under `auth.users`.
                        user_errors =
                            e.0.into_iter()
                                .map(|mut d| {
                                    d.key = d.key.map(|k| format!("auth.{k}"));
                                    d
                                })
                                .collect();
                        None
                    }
                }
            }
        };
        let htpasswd: Vec<PathBuf> = raw.auth.htpasswd.iter().map(|p| resolve(p)).collect();
        for p in &htpasswd {
            if let Some(why) = not_a_file(p) {
                err("auth.htpasswd", why);
            }
        }
        let keys = raw.auth.keys.as_deref().map(resolve);
        if let Some(p) = &keys {
            if let Some(why) = not_a_file(p) {
                err(
                    "auth.keys",
                    format!("{why} (create it with `portcullis key create` or as an empty file)"),
                );
            }
        }
        let mut federation = Vec::new();
        for (i, f) in raw.auth.federation.iter().enumerate() {
            let key = |k: &str| format!("auth.federation.{i}.{k}");
            if let Err(why) = check_issuer(&f.issuer) {
                err(&key("issuer"), why);
            }
            if raw.auth.federation[..i]
                .iter()
                .any(|g| g.issuer == f.issuer)
            {
                err(&key("issuer"), format!("{:?} is listed twice", f.issuer));
            }
            if f.audience.trim().is_empty() {
                err(&key("audience"), "must not be empty".into());
            }
            if let Err(why) = crate::authn::federation::template::Template::parse(&f.account) {
                err(&key("account"), why);
            }
            for (label, claim) in &f.labels {
                if label.is_empty() || claim.is_empty() {
                    err(
                        &key("labels"),
                        "label and claim names must not be empty".into(),
                    );
                }
            }
            let ca = f.ca_certificate.as_deref().map(resolve);
            if let Some(p) = &ca {
                if let Some(why) = not_a_file(p) {
                    err(&key("ca_certificate"), why);
                }
            }
            federation.push(Federation {
                issuer: f.issuer.clone(),
                audience: f.audience.clone(),
                account: f.account.clone(),
                labels: f.labels.clone(),
                ca_certificate: ca,
            });
        }
        let token = raw.auth.token.map(|t| Token {
            path: t.path,
            realm: t.realm,
            issuer: t.issuer,
            service: t.service,
            key: resolve(&t.key),
            certificate: t.certificate.as_deref().map(resolve),
            previous_keys: t.previous_keys.iter().map(|p| resolve(p)).collect(),
            expiration: t.expiration.unwrap_or(Duration::from_secs(300)),
            refresh_expiration: t
                .refresh_expiration
                .unwrap_or(Duration::from_secs(30 * 86_400)),
        });
        if let Some(t) = &token {
            if !t.path.starts_with('/')
                || t.path.starts_with("/v2")
                || t.path.contains(['?', '#', '%'])
            {
                err(
                    "auth.token.path",
                    format!("{:?} must be an absolute path outside /v2", t.path),
                );
            }
            if let Some(why) = not_a_file(&t.key) {
                err("auth.token.key", why);
            }
            if let Some(c) = &t.certificate {
                if let Some(why) = not_a_file(c) {
                    err("auth.token.certificate", why);
                }
            }
            if t.expiration.is_zero() {
                err("auth.token.expiration", "must be more than 0".into());
            }
        }
        if raw.auth.challenge == Challenge::Token && token.is_none() {
            err(
                "auth.challenge",
                "`token` needs the token service: configure `auth.token`".into(),
            );
        }
        let mut ldap_file = None;
        let inline_ldap = match raw.auth.ldap {
            None => None,
            Some(RawLdapSource::Inline(l)) => Some(*l),
            Some(RawLdapSource::File(p)) => {
                let p = resolve(&p);
                ldap_file = Some(p);
                None
            }
        };
        let ldap = inline_ldap.map(|l| Ldap {
            url: l.url,
            start_tls: l.start_tls,
            ca_certificate: l.ca_certificate.as_deref().map(resolve),
            bind_dn: l.bind_dn,
            bind_password_file: resolve(&l.bind_password_file),
            base: l.base,
            // docker_auth's `${account}` as `{account}`; anything else is refused below.
            filter: crate::authn::ldap::escape::normalize_filter(&l.filter).unwrap_or(l.filter),
            account_attribute: l.account_attribute,
            labels: l.labels,
            timeout: l.timeout.unwrap_or(Duration::from_secs(5)),
            cache: l.cache.unwrap_or(Duration::from_secs(60)),
        });
        if let Some(l) = &ldap {
            if !(l.url.starts_with("ldap://") || l.url.starts_with("ldaps://")) {
                err(
                    "auth.ldap.url",
                    format!("{:?} must start with ldap:// or ldaps://", l.url),
                );
            }
            if l.start_tls && l.url.starts_with("ldaps://") {
                err(
                    "auth.ldap.start_tls",
                    "StartTLS is for ldap:// URLs; ldaps:// is TLS already".into(),
                );
            }
            if let Err(why) = crate::authn::ldap::escape::normalize_filter(&l.filter) {
                err("auth.ldap.filter", why);
            } else if !crate::authn::ldap::account::is_attribute_name(&l.account_attribute) {
                err(
                    "auth.ldap.account_attribute",
                    format!(
                        "{:?} is not an LDAP attribute name (like `uid` or `sAMAccountName`)",
                        l.account_attribute
                    ),
                );
            } else if !crate::authn::ldap::account::filter_compares(&l.filter, &l.account_attribute)
            {
                err(
                    "auth.ldap.filter",
                    format!(
                        "{:?} does not compare `{}` (auth.ldap.account_attribute) with {{account}}: write `({}={{account}})` in it, or set account_attribute to the attribute the filter searches. The login name must equal that attribute's value, so no login could succeed",
                        l.filter, l.account_attribute, l.account_attribute
                    ),
                );
            }
            if let Some(why) = not_a_file(&l.bind_password_file) {
                err("auth.ldap.bind_password_file", why);
            }
            if let Some(c) = &l.ca_certificate {
                if let Some(why) = not_a_file(c) {
                    err("auth.ldap.ca_certificate", why);
                }
            }
        }
        // From a docker_auth file: checked there, errors located in that file.
        let ldap = match &ldap_file {
            None => ldap,
            Some(p) => match not_a_file(p) {
                Some(why) => {
                    err("auth.ldap", why);
                    None
                }
                None => match crate::docker_auth::ldap_from_file(p) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        user_errors.extend(e.0);
                        None
                    }
                },
            },
        };
        let lockout = match raw.auth.lockout {
            None => Lockout::default(),
            Some(l) => {
                let mut exempt = Vec::new();
                for entry in &l.exempt {
                    // As ACL `ip:` values: a CIDR with host bits set is refused, not widened.
                    match crate::acl::rule::parse_ip_condition(entry) {
                        Ok(net) => exempt.push(net),
                        Err(why) => {
                            // The line of the entry itself, not only of `exempt:`.
                            let mut d = Diagnostic::new(path, why).key("auth.lockout.exempt");
                            let from = line_of("exempt").unwrap_or(1);
                            if let Some(line) = text
                                .lines()
                                .skip(from - 1)
                                .position(|l| l.contains(entry.trim()))
                                .map(|i| i + from)
                                .or(line_of("exempt"))
                            {
                                d = d.at_line(line);
                            }
                            user_errors.push(d);
                        }
                    }
                }
                Lockout {
                    failures: l.failures.unwrap_or(10),
                    window: l.window.unwrap_or(Duration::from_secs(300)),
                    exempt,
                }
            }
        };
        let acl = resolve(&raw.acl);
        if !acl.exists() {
            err("acl", format!("{} does not exist", acl.display()));
        }
        let acl_tests = raw.acl_tests.as_deref().map(resolve);
        if let Some(tests) = &acl_tests {
            if !tests.exists() {
                err("acl_tests", format!("{} does not exist", tests.display()));
            }
        }
        let d = crate::limits::Limits::default();
        let limits = match &raw.limits {
            None => d,
            Some(l) => crate::limits::Limits {
                max_connections: l.max_connections.unwrap_or(d.max_connections),
                max_connections_per_address: l
                    .max_connections_per_address
                    .unwrap_or(d.max_connections_per_address),
                header_read_timeout: l.header_read_timeout.unwrap_or(d.header_read_timeout),
                idle_timeout: l.idle_timeout.unwrap_or(d.idle_timeout),
                max_uri_length: l.max_uri_length.unwrap_or(d.max_uri_length),
                max_headers: l.max_headers.unwrap_or(d.max_headers),
                max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
                rate: None,
            },
        };
        let mut limits = limits;
        if let Some(r) = raw.limits.as_ref().and_then(|l| l.rate.as_ref()) {
            use crate::cluster::rate::{parse_burst, Rate, Settings, DEFAULT_BURST};
            let mut rate = |key: &str, v: &Option<TextOrNumber>| match v {
                None => None,
                Some(v) => match Rate::parse(&v.text()) {
                    Ok(r) => Some(r),
                    Err(why) => {
                        err(key, why);
                        None
                    }
                },
            };
            let per_account = rate("limits.rate.per_account", &r.per_account);
            let per_address = rate("limits.rate.per_address", &r.per_address);
            let burst = match &r.burst {
                None => DEFAULT_BURST,
                Some(b) => parse_burst(&b.text()).unwrap_or_else(|why| {
                    err("limits.rate.burst", why);
                    DEFAULT_BURST
                }),
            };
            if r.per_account.is_none() && r.per_address.is_none() {
                err(
                    "limits.rate",
                    "set per_account or per_address (such as 100/s), or remove limits.rate".into(),
                );
            }
            if per_account.is_some() || per_address.is_some() {
                limits.rate = Some(Settings {
                    per_account,
                    per_address,
                    burst,
                });
            }
        }
        // Each at its own key and line.
        for (key, zero) in [
            ("limits.max_connections", limits.max_connections == 0),
            (
                "limits.max_connections_per_address",
                limits.max_connections_per_address == 0,
            ),
            ("limits.max_uri_length", limits.max_uri_length == 0),
            ("limits.max_headers", limits.max_headers == 0),
            ("limits.max_header_bytes", limits.max_header_bytes == 0),
            (
                "limits.header_read_timeout",
                limits.header_read_timeout.is_zero(),
            ),
            ("limits.idle_timeout", limits.idle_timeout.is_zero()),
        ] {
            if zero {
                err(key, "must be more than 0".into());
            }
        }
        if limits.max_uri_length > crate::limits::MAX_TARGET {
            err(
                "limits.max_uri_length",
                format!(
                    "must be at most {}: no longer request target can be parsed",
                    crate::limits::MAX_TARGET
                ),
            );
        }
        if raw.threads == Some(0) {
            err("threads", "must be at least 1".into());
        }
        let ui_default = Ui::default();
        let ui = match raw.ui {
            None => ui_default,
            Some(u) => Ui {
                enabled: u.enabled.unwrap_or(ui_default.enabled),
                path: u.path.unwrap_or(ui_default.path),
                session_lifetime: u.session_lifetime.unwrap_or(ui_default.session_lifetime),
                title: u.title.unwrap_or(ui_default.title),
                session_key_file: u.session_key_file.as_deref().map(resolve),
            },
        };
        if !ui.path.starts_with('/')
            || !ui.path.ends_with('/')
            || ui.path == "/"
            || ui.path.starts_with("/v2/")
            || ui.path.contains("//")
            || !ui
                .path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
        {
            err(
                "ui.path",
                format!(
                    "{:?} must be an absolute path ending in `/`, outside /v2, of letters, digits and -_.",
                    ui.path
                ),
            );
        }
        if let Some(t) = &token {
            if t.path.starts_with(&ui.path) || format!("{}/", t.path) == ui.path {
                err(
                    "ui.path",
                    format!("{:?} overlaps the token endpoint {:?}", ui.path, t.path),
                );
            }
        }
        if ui.session_lifetime.is_zero() {
            err("ui.session_lifetime", "must be more than 0".into());
        }
        if ui.title.trim().is_empty() || ui.title.chars().count() > 100 {
            err("ui.title", "must be 1 to 100 characters".into());
        }
        if let Some(k) = &ui.session_key_file {
            if let Some(why) = not_a_file(k) {
                err("ui.session_key_file", why);
            }
        }
        let cluster = raw.cluster.map(|c| Cluster {
            redis: c.redis,
            ca_certificate: c.ca_certificate.as_deref().map(resolve),
            password_file: c.password_file.as_deref().map(resolve),
            key_prefix: c
                .key_prefix
                .unwrap_or_else(|| crate::cluster::DEFAULT_PREFIX.into()),
            timeout: c.timeout.unwrap_or(crate::cluster::DEFAULT_TIMEOUT),
        });
        if let Some(c) = &cluster {
            if let Err(why) = Cluster::check_url(&c.redis) {
                err("cluster.redis", why);
            }
            if let Some(ca) = &c.ca_certificate {
                if !c.tls() {
                    err(
                        "cluster.ca_certificate",
                        "is for rediss:// URLs: with redis:// nothing is encrypted".into(),
                    );
                } else if let Some(why) = not_a_file(ca) {
                    err("cluster.ca_certificate", why);
                }
            }
            if let Some(p) = &c.password_file {
                if let Some(why) = not_a_file(p) {
                    err("cluster.password_file", why);
                }
            }
            if c.key_prefix.is_empty()
                || c.key_prefix.len() > 64
                || c.key_prefix
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch.is_control())
            {
                err(
                    "cluster.key_prefix",
                    format!(
                        "{:?} must be 1 to 64 characters without spaces (like `portcullis:`)",
                        c.key_prefix
                    ),
                );
            }
            if c.timeout.is_zero() {
                err("cluster.timeout", "must be more than 0".into());
            }
        }
        let oidc = raw.auth.oidc.map(|o| Oidc {
            issuer: o.issuer,
            client_id: o.client_id,
            client_secret_file: resolve(&o.client_secret_file),
            scopes: o.scopes.unwrap_or_else(crate::authn::oidc::default_scopes),
            account_claim: o.account_claim,
            groups_claim: o.groups_claim,
            labels: o.labels,
            ca_certificate: o.ca_certificate.as_deref().map(resolve),
            redirect_url: o.redirect_url,
        });
        if let Some(o) = &oidc {
            for (key, why) in oidc_problems(o, &ui) {
                err(key, why);
            }
        }
        let cache = Cache {
            manifests: raw.cache.and_then(|c| c.manifests).map(|m| {
                let d = crate::cache::Manifests::default();
                crate::cache::Manifests {
                    max_memory: m.max_memory.unwrap_or(d.max_memory),
                    digest_ttl: m.digest_ttl.unwrap_or(d.digest_ttl),
                    tag_ttl: m.tag_ttl.unwrap_or(d.tag_ttl),
                }
            }),
        };
        if let Some(m) = &cache.manifests {
            if m.max_memory < 1 << 20 {
                err(
                    "cache.manifests.max_memory",
                    "must be at least 1MiB (leave out cache.manifests to cache nothing)".into(),
                );
            }
            if m.max_memory > 1 << 40 {
                err(
                    "cache.manifests.max_memory",
                    "must be at most 1024GiB".into(),
                );
            }
            if m.digest_ttl.is_zero() {
                err(
                    "cache.manifests.digest_ttl",
                    "must be more than 0 (leave out cache.manifests to cache nothing)".into(),
                );
            }
            for (key, ttl) in [
                ("cache.manifests.digest_ttl", m.digest_ttl),
                ("cache.manifests.tag_ttl", m.tag_ttl),
            ] {
                if ttl > Duration::from_secs(30 * 86_400) {
                    err(key, "must be at most 720h".into());
                }
            }
        }
        errors.extend(user_errors);
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        // Every docker_auth file named here, and which of its sections is read.
        let mut read = Vec::new();
        if let Some(UsersSource::File(p)) = &users {
            read.push((p.clone(), "users"));
        }
        if acl.is_file() {
            read.push((acl.clone(), "acl"));
        }
        if let Some(p) = &ldap_file {
            read.push((p.clone(), "ldap_auth"));
        }
        let warnings = crate::docker_auth::ignored_sections(&read);
        Ok(Config {
            file: path.to_path_buf(),
            listen: listen.expect("checked above"),
            tls,
            admin_listen,
            upstreams,
            trusted_proxies,
            auth: Auth {
                challenge: raw.auth.challenge,
                realm: raw.auth.realm,
                users,
                htpasswd,
                token,
                ldap,
                ldap_file,
                lockout,
                oidc,
                keys,
                federation,
            },
            acl,
            acl_tests,
            threads: raw.threads.unwrap_or_else(default_threads),
            shutdown_timeout: raw.shutdown_timeout.unwrap_or(Duration::from_secs(30)),
            shutdown_delay: raw.shutdown_delay.unwrap_or(Duration::ZERO),
            limits,
            ui,
            cluster,
            cache,
            warnings,
        })
    }
}

/// What is wrong with `auth.oidc`, each at its key. The files must exist here; their contents
/// are read by [`crate::authn::oidc::Provider::load`] when the state is built.
fn oidc_problems(o: &Oidc, ui: &Ui) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match reqwest::Url::parse(&o.issuer) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
                out.push((
                    "auth.oidc.issuer",
                    format!("{:?} must have no query, fragment or user", o.issuer),
                ));
            }
        }
        _ => out.push((
            "auth.oidc.issuer",
            format!(
                "{:?} must be an https:// address (the provider's tokens are trusted for what its TLS certificate proves)",
                o.issuer
            ),
        )),
    }
    if o.client_id.trim().is_empty() {
        out.push(("auth.oidc.client_id", "must not be empty".into()));
    }
    if let Some(why) = not_a_file(&o.client_secret_file) {
        out.push(("auth.oidc.client_secret_file", why));
    }
    if let Some(c) = &o.ca_certificate {
        if let Some(why) = not_a_file(c) {
            out.push(("auth.oidc.ca_certificate", why));
        }
    }
    if o.scopes
        .iter()
        .any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        out.push((
            "auth.oidc.scopes",
            "each scope must be one word (no spaces)".into(),
        ));
    }
    for (key, claim) in [
        ("auth.oidc.account_claim", &o.account_claim),
        ("auth.oidc.groups_claim", &o.groups_claim),
    ] {
        if claim.trim().is_empty() {
            out.push((key, "must name a claim".into()));
        }
    }
    for (label, claim) in &o.labels {
        if label == crate::authn::oidc::claims::GROUPS_LABEL {
            out.push((
                "auth.oidc.labels",
                "`groups` is filled from groups_claim: set that instead".into(),
            ));
        } else if label.trim().is_empty() || claim.trim().is_empty() {
            out.push((
                "auth.oidc.labels",
                "labels and claims must not be empty".into(),
            ));
        }
    }
    if let Some(r) = &o.redirect_url {
        let callback = format!("{}sso/callback", ui.path);
        let ok = reqwest::Url::parse(r).is_ok_and(|u| {
            matches!(u.scheme(), "https" | "http")
                && u.host().is_some()
                && u.path() == callback
                && u.query().is_none()
                && u.fragment().is_none()
        });
        if !ok {
            out.push((
                "auth.oidc.redirect_url",
                format!("{r:?} must be http(s)://<host>{callback}, the UI's callback"),
            ));
        }
    }
    if !ui.enabled {
        out.push((
            "auth.oidc",
            "people sign in through the web UI: it must be enabled (ui.enabled)".into(),
        ));
    }
    out
}

/// An issuer of CI tokens must be an `https://` URL without query or fragment: its keys are
/// fetched from it, and over anything but TLS anyone on the path could hand out keys.
fn check_issuer(text: &str) -> Result<(), String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{text:?} must start with https://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    if uri.query().is_some() || text.contains('#') {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    Ok(())
}

/// An address or CIDR; a bare address is a /32 or /128. A CIDR with host bits set
/// (`127.0.0.1/3`) is refused: it is almost always a typo or a truncated file, and read as its
/// network it would trust or match far more than was meant (`96.0.0.0/3`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    match text.parse::<IpNet>() {
        Ok(net) => (net.trunc() == net).then_some(net),
        Err(_) => text.parse::<std::net::IpAddr>().ok().map(IpNet::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = d.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        d
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["5", "", "s", "1.5s", "-1s", "5d", "1 m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolves_paths() {
        let d = dir_with(&[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\n",
            ),
            ("acl.yaml", "[]\n"),
        ]);
        let c = Config::load(&d.path().join("proxy.yaml")).unwrap();
        assert_eq!(c.listen, "0.0.0.0:5000".parse().unwrap());
        assert_eq!(c.upstreams[0].settings.address, "127.0.0.1:5001");
        assert_eq!(c.acl, d.path().join("acl.yaml"));
        assert_eq!(c.auth.challenge, Challenge::Basic);
        assert_eq!(c.auth.realm, "Registry Realm");
        assert!(c.tls.is_none());
    }

    #[test]
    fn oidc_section() {
        let load = |oidc: &str, extra: &str| {
            let yaml = format!(
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\nauth:\n  oidc:\n{oidc}{extra}"
            );
            let d = dir_with(&[
                ("proxy.yaml", &yaml),
                ("acl.yaml", "[]\n"),
                ("secret", "s3cret\n"),
            ]);
            (Config::load(&d.path().join("proxy.yaml")), d)
        };
        let good = "    issuer: https://idp.example.com/realms/x\n    client_id: portcullis\n    client_secret_file: secret\n";
        let (c, d) = load(good, "");
        let o = c.unwrap().auth.oidc.unwrap();
        assert_eq!(o.account_claim, "preferred_username");
        assert_eq!(o.groups_claim, "groups");
        assert_eq!(o.scopes, vec!["profile"]);
        assert_eq!(o.client_secret_file, d.path().join("secret"));
        // Each mistake at its key and line.
        for (oidc, extra, key, line) in [
            (
                good.replace("https://", "http://"),
                "",
                "auth.oidc.issuer",
                5,
            ),
            (
                good.replace("secret\n", "missing\n"),
                "",
                "auth.oidc.client_secret_file",
                7,
            ),
            (
                format!("{good}    labels: {{groups: roles}}\n"),
                "",
                "auth.oidc.labels",
                8,
            ),
            (
                format!("{good}    redirect_url: https://r.example/elsewhere\n"),
                "",
                "auth.oidc.redirect_url",
                8,
            ),
            (
                format!("{good}    scopes: [\"a b\"]\n"),
                "",
                "auth.oidc.scopes",
                8,
            ),
            (good.to_string(), "ui:\n  enabled: false\n", "auth.oidc", 5),
        ] {
            let (e, _d) = load(&oidc, extra);
            let e = e.unwrap_err();
            assert_eq!(e.0[0].key.as_deref(), Some(key), "{e}");
            assert_eq!(e.0[0].line, Some(line), "{e}");
        }
        let (c, _d) = load(
            &format!("{good}    redirect_url: https://r.example/ui/sso/callback\n    unknown: 1\n"),
            "",
        );
        assert!(c.unwrap_err().to_string().contains("unknown"));
    }

    #[test]
    fn ldap_account_attribute() {
        let ldap = |extra: &str| {
            format!(
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\nauth:\n  ldap:\n    url: ldap://127.0.0.1:389\n    bind_dn: cn=s\n    bind_password_file: pw\n    base: dc=x\n{extra}"
            )
        };
        let load = |yaml: String| {
            let d = dir_with(&[("proxy.yaml", &yaml), ("acl.yaml", "[]\n"), ("pw", "x\n")]);
            Config::load(&d.path().join("proxy.yaml"))
        };
        let c = load(ldap("    filter: (uid={account})\n")).unwrap();
        assert_eq!(c.auth.ldap.unwrap().account_attribute, "uid");
        let c = load(ldap(
            "    filter: (sAMAccountName={account})\n    account_attribute: sAMAccountName\n",
        ))
        .unwrap();
        assert_eq!(c.auth.ldap.unwrap().account_attribute, "sAMAccountName");
        // The filter searches another attribute than the one that names the account.
        let e = load(ldap("    filter: (mail={account})\n")).unwrap_err();
        assert_eq!(e.0[0].key.as_deref(), Some("auth.ldap.filter"), "{e}");
        assert!(e.0[0].message.contains("account_attribute"), "{e}");
        assert_eq!(e.0[0].line, Some(9), "{e}");
        let e = load(ldap(
            "    filter: (uid={account})\n    account_attribute: \"u id\"\n",
        ))
        .unwrap_err();
        assert_eq!(
            e.0[0].key.as_deref(),
            Some("auth.ldap.account_attribute"),
            "{e}"
        );
        assert_eq!(e.0[0].line, Some(10), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let d = dir_with(&[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\nauth:\n  challange: basic\n",
            ),
            ("acl.yaml", "[]\n"),
        ]);
        let e = Config::load(&d.path().join("proxy.yaml")).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].line, Some(4), "{e}");
        assert!(e.0[0].message.contains("challange"), "{e}");
    }

    #[test]
    fn every_semantic_error_is_reported_with_key_and_line() {
        let d = dir_with(&[(
            "proxy.yaml",
            "listen: nowhere\nupstream: ftp://r:5000\nacl: missing/\nauth:\n  htpasswd: nope.htpasswd\ntrusted_proxies: [10.0.0.0/33]\n",
        )]);
        let e = Config::load(&d.path().join("proxy.yaml")).unwrap_err();
        let keys: Vec<_> =
            e.0.iter()
                .map(|d| (d.key.clone().unwrap(), d.line))
                .collect();
        assert!(keys.contains(&("listen".into(), Some(1))), "{e}");
        assert!(keys.contains(&("upstream".into(), Some(2))), "{e}");
        assert!(keys.contains(&("acl".into(), Some(3))), "{e}");
        assert!(keys.contains(&("auth.htpasswd".into(), Some(5))), "{e}");
        assert!(keys.contains(&("trusted_proxies".into(), Some(6))), "{e}");
    }

    #[test]
    fn max_uri_length_is_bounded_by_what_can_be_parsed() {
        let d = dir_with(&[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\nlimits:\n  max_uri_length: 65535\n",
            ),
            ("acl.yaml", "[]\n"),
        ]);
        let e = Config::load(&d.path().join("proxy.yaml")).unwrap_err();
        assert_eq!(e.0[0].key.as_deref(), Some("limits.max_uri_length"), "{e}");
        assert_eq!(e.0[0].line, Some(4), "{e}");
        assert!(e.0[0].message.contains("65534"), "{e}");
    }

    #[test]
    fn ui_defaults_and_validation() {
        let d = dir_with(&[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\n",
            ),
            ("acl.yaml", "[]\n"),
            ("ui.key", &"k".repeat(40)),
        ]);
        let c = Config::load(&d.path().join("proxy.yaml")).unwrap();
        assert_eq!(c.ui, Ui::default());
        assert!(c.ui.enabled);
        assert_eq!(c.ui.path, "/ui/");
        assert_eq!(c.ui.session_lifetime, Duration::from_secs(8 * 3600));
        let with = |ui: &str| {
            fs::write(
                d.path().join("proxy.yaml"),
                format!("upstream: http://127.0.0.1:5001\nacl: acl.yaml\nui:\n{ui}"),
            )
            .unwrap();
            Config::load(&d.path().join("proxy.yaml"))
        };
        let c = with("  enabled: false\n  path: /console/\n  session_lifetime: 30m\n  title: Acme\n  session_key_file: ui.key\n").unwrap();
        assert!(!c.ui.enabled);
        assert_eq!(c.ui.path, "/console/");
        assert_eq!(c.ui.session_lifetime, Duration::from_secs(1800));
        assert_eq!(c.ui.title, "Acme");
        assert_eq!(c.ui.session_key_file, Some(d.path().join("ui.key")));
        for (bad, key) in [
            ("  path: /ui\n", "ui.path"),
            ("  path: ui/\n", "ui.path"),
            ("  path: /\n", "ui.path"),
            ("  path: /v2/ui/\n", "ui.path"),
            ("  path: /a b/\n", "ui.path"),
            ("  session_lifetime: 0s\n", "ui.session_lifetime"),
            ("  title: \"\"\n", "ui.title"),
            ("  session_key_file: missing.key\n", "ui.session_key_file"),
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.0[0].key.as_deref(), Some(key), "{bad}: {e}");
        }
        assert!(with("  colour: red\n").is_err(), "unknown keys are errors");
    }

    #[test]
    fn cache_is_off_by_default_and_validated_at_its_keys() {
        let d = dir_with(&[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\n",
            ),
            ("acl.yaml", "[]\n"),
        ]);
        let c = Config::load(&d.path().join("proxy.yaml")).unwrap();
        assert_eq!(c.cache, Cache::default());
        assert!(c.cache.manifests.is_none());
        let with = |cache: &str| {
            fs::write(
                d.path().join("proxy.yaml"),
                format!("upstream: http://127.0.0.1:5001\nacl: acl.yaml\ncache:\n{cache}"),
            )
            .unwrap();
            Config::load(&d.path().join("proxy.yaml"))
        };
        let c = with("  manifests: {}\n").unwrap();
        assert_eq!(c.cache.manifests, Some(crate::cache::Manifests::default()));
        let c = with("  manifests: {max_memory: 16MiB, digest_ttl: 1h, tag_ttl: 5s}\n").unwrap();
        let m = c.cache.manifests.unwrap();
        assert_eq!(m.max_memory, 16 << 20);
        assert_eq!(m.digest_ttl, Duration::from_secs(3600));
        assert_eq!(m.tag_ttl, Duration::from_secs(5));
        for (bad, key, line) in [
            (
                "  manifests:\n    max_memory: 64MB\n",
                "cache.manifests.max_memory",
                5,
            ),
            (
                "  manifests:\n    max_memory: 512KiB\n",
                "cache.manifests.max_memory",
                5,
            ),
            (
                "  manifests:\n    digest_ttl: 0s\n",
                "cache.manifests.digest_ttl",
                5,
            ),
            (
                "  manifests:\n    tag_ttl: 800h\n",
                "cache.manifests.tag_ttl",
                5,
            ),
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.0[0].key.as_deref(), Some(key), "{bad}: {e}");
            assert_eq!(e.0[0].line, Some(line), "{bad}: {e}");
        }
        assert!(with("  blobs: {}\n").is_err(), "unknown keys are errors");
    }

    #[test]
    fn lockout_exempt_networks_are_exact_and_errors_name_their_line() {
        let d = dir_with(&[("acl.yaml", "[]\n")]);
        let with = |lockout: &str| {
            fs::write(
                d.path().join("proxy.yaml"),
                format!(
                    "upstream: http://127.0.0.1:5001\nacl: acl.yaml\nauth:\n  lockout:\n{lockout}"
                ),
            )
            .unwrap();
            Config::load(&d.path().join("proxy.yaml"))
        };
        let c = with("    failures: 5\n    exempt: [10.0.0.0/8, 192.0.2.7, \"2001:db8::/48\", \"::ffff:198.51.100.0/120\"]\n").unwrap();
        assert_eq!(c.auth.lockout.failures, 5);
        assert_eq!(
            c.auth.lockout.exempt,
            [
                "10.0.0.0/8",
                "192.0.2.7/32",
                "2001:db8::/48",
                "198.51.100.0/24"
            ]
            .map(|n| n.parse::<IpNet>().unwrap())
        );
        assert!(with("    failures: 5\n")
            .unwrap()
            .auth
            .lockout
            .exempt
            .is_empty());
        for (entry, wanted) in [
            ("127.0.0.1/3", "host bits set"),
            ("10.1.0.0/8", "10.0.0.0/8"),
            ("2001:db8::1/64", "host bits set"),
            ("10.0.0.0/33", "invalid CIDR"),
            ("office", "invalid IP address"),
        ] {
            let e = with(&format!(
                "    failures: 5\n    exempt:\n      - 192.0.2.0/24\n      - {entry}\n"
            ))
            .unwrap_err();
            assert_eq!(e.0.len(), 1, "{e}");
            assert_eq!(e.0[0].key.as_deref(), Some("auth.lockout.exempt"), "{e}");
            assert_eq!(e.0[0].line, Some(8), "{entry}: {e}");
            assert!(e.0[0].message.contains(wanted), "{entry}: {e}");
        }
    }

    #[test]
    fn upstream_tls_and_auth_are_read_and_checked() {
        let d = dir_with(&[
            ("acl.yaml", "[]"),
            ("ca.pem", "x"),
            ("pw", "secret\n"),
            (
                "proxy.yaml",
                "upstream: https://registry.internal:5000\nacl: acl.yaml\nupstream_tls:\n  ca_certificate: ca.pem\n  server_name: reg.example\nupstream_auth:\n  basic:\n    username: portcullis\n    password_file: pw\n",
            ),
        ]);
        let c = Config::load(&d.path().join("proxy.yaml")).unwrap();
        assert_eq!(c.upstreams[0].settings.address, "registry.internal:5000");
        assert_eq!(c.upstreams[0].settings.host, "registry.internal");
        let tls = c.upstreams[0].settings.tls.as_ref().unwrap();
        assert_eq!(
            tls.ca_certificate.as_deref(),
            Some(d.path().join("ca.pem").as_path())
        );
        assert_eq!(tls.server_name.as_deref(), Some("reg.example"));
        assert!(
            matches!(&c.upstreams[0].settings.auth, Some(UpstreamAuth::Basic(a)) if a.username == "portcullis")
        );

        // https without upstream_tls: TLS with the system's roots.
        fs::write(
            d.path().join("proxy.yaml"),
            "upstream: https://reg\nacl: acl.yaml\n",
        )
        .unwrap();
        let c = Config::load(&d.path().join("proxy.yaml")).unwrap();
        assert_eq!(c.upstreams[0].settings.address, "reg:443");
        assert_eq!(c.upstreams[0].settings.tls, Some(UpstreamTls::default()));

        // TLS settings for a plain-HTTP upstream, a missing CA, a missing password file and a
        // name with `:` are each refused at their key.
        fs::write(
            d.path().join("proxy.yaml"),
            "upstream: http://reg:5000\nacl: acl.yaml\nupstream_tls:\n  ca_certificate: nope.pem\nupstream_auth:\n  basic:\n    username: a:b\n    password_file: nope\n",
        )
        .unwrap();
        let e = Config::load(&d.path().join("proxy.yaml")).unwrap_err();
        let keys: Vec<_> = e.0.iter().filter_map(|d| d.key.clone()).collect();
        for key in [
            "upstream_tls",
            "upstream_tls.ca_certificate",
            "upstream_auth.basic.username",
            "upstream_auth.basic.password_file",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} not in {e}");
        }
        assert!(e.0.iter().all(|d| d.line.is_some()), "{e}");
    }

    #[test]
    fn upstreams_by_prefix_are_read_and_checked() {
        let d = dir_with(&[("acl.yaml", "[]"), ("pw", "x\n")]);
        let write = |text: &str| fs::write(d.path().join("proxy.yaml"), text).unwrap();
        write("acl: acl.yaml\nupstreams:\n  - {prefix: hub/, url: \"http://cache:5000\", strip_prefix: true}\n  - prefix: \"\"\n    url: https://registry.internal\n    auth: {basic: {username: svc, password_file: pw}}\n    timeouts: {read: 10s}\n");
        let c = Config::load(&d.path().join("proxy.yaml")).unwrap();
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(
            (c.upstreams[0].prefix.as_str(), c.upstreams[0].strip_prefix),
            ("hub/", true)
        );
        assert_eq!(c.upstreams[1].settings.address, "registry.internal:443");
        assert_eq!(
            c.upstreams[1].settings.read_timeout,
            Duration::from_secs(10)
        );
        assert!(c.upstreams[1].settings.auth.is_some());

        // An entry an earlier prefix covers is unreachable; each error at its own line.
        write("acl: acl.yaml\nupstreams:\n  - {prefix: \"\", url: \"http://a:1\"}\n  - {prefix: hub/, url: \"http://b:1\"}\n  - {prefix: Hub, url: \"http://c:1\"}\n");
        let e = Config::load(&d.path().join("proxy.yaml")).unwrap_err();
        let found: Vec<_> =
            e.0.iter()
                .map(|d| (d.key.clone().unwrap(), d.line))
                .collect();
        assert!(
            found.contains(&("upstreams.2.prefix".into(), Some(5))),
            "{e}"
        );
        write("acl: acl.yaml\nupstreams:\n  - {prefix: \"\", url: \"http://a:1\"}\n  - {prefix: hub/, url: \"http://b:1\"}\n");
        let e = Config::load(&d.path().join("proxy.yaml")).unwrap_err();
        assert_eq!(e.0[0].key.as_deref(), Some("upstreams.1.prefix"), "{e}");
        assert_eq!(e.0[0].line, Some(4), "{e}");
        assert!(e.0[0].message.contains("unreachable"), "{e}");

        // Both forms, or neither, are refused.
        write("acl: acl.yaml\nupstream: http://a:1\nupstreams: []\n");
        let e = Config::load(&d.path().join("proxy.yaml")).unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        write("acl: acl.yaml\n");
        let e = Config::load(&d.path().join("proxy.yaml")).unwrap_err();
        assert!(e.to_string().contains("upstream: missing"), "{e}");
    }

    #[test]
    fn inline_users_and_htpasswd_list() {
        let d = dir_with(&[
            (
                "proxy.yaml",
                "upstream: http://127.0.0.1:5001\nacl: acl.yaml\nauth:\n  htpasswd: [a.htpasswd]\n  users:\n    admin:\n      password: $2y$05$LzHNqrNFLRXUzvmtfyeSIOVbV3x5Q4p8FqB5qSl9v03G5yv0j4E1y\n",
            ),
            ("acl.yaml", "[]\n"),
            ("a.htpasswd", ""),
        ]);
        let c = Config::load(&d.path().join("proxy.yaml")).unwrap();
        assert_eq!(c.auth.htpasswd, vec![d.path().join("a.htpasswd")]);
        match c.auth.users {
            Some(UsersSource::Inline(u)) => assert!(u.contains("admin")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cluster_and_rate_settings_are_read_with_defaults_and_located_errors() {
        let d = dir_with(&[("acl.yaml", "[]\n"), ("redis.pw", "pw\n"), ("ca.pem", "x")]);
        let with = |tail: &str| {
            fs::write(
                d.path().join("proxy.yaml"),
                format!("upstream: http://127.0.0.1:5001\nacl: acl.yaml\n{tail}"),
            )
            .unwrap();
            Config::load(&d.path().join("proxy.yaml"))
        };
        let c = with("cluster:\n  redis: redis://127.0.0.1:6379/0\n").unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.key_prefix, "portcullis:");
        assert_eq!(cluster.timeout, Duration::from_millis(250));
        assert!(c.limits.rate.is_none(), "off by default");
        let c = with("cluster:\n  redis: rediss://cache:6380\n  ca_certificate: ca.pem\n  password_file: redis.pw\n  key_prefix: \"fleet-a:\"\n  timeout: 1s\nlimits:\n  rate:\n    per_account: 100/s\n    per_address: 600/m\n").unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.password_file, Some(d.path().join("redis.pw")));
        assert_eq!(cluster.key_prefix, "fleet-a:");
        let rate = c.limits.rate.unwrap();
        assert_eq!(rate.burst, 2);
        assert_eq!(rate.per_address.unwrap().period, Duration::from_secs(60));
        for (tail, key, line) in [
            ("cluster:\n  redis: http://x:6379\n", "cluster.redis", 4),
            (
                "cluster:\n  redis: \"redis://:pw@x:6379\"\n",
                "cluster.redis",
                4,
            ),
            (
                "cluster:\n  redis: redis://x\n  ca_certificate: ca.pem\n",
                "cluster.ca_certificate",
                5,
            ),
            (
                "cluster:\n  redis: redis://x\n  password_file: nope\n",
                "cluster.password_file",
                5,
            ),
            (
                "cluster:\n  redis: redis://x\n  timeout: 0s\n",
                "cluster.timeout",
                5,
            ),
            (
                "cluster:\n  redis: redis://x\n  key_prefix: \"\"\n",
                "cluster.key_prefix",
                5,
            ),
            (
                "limits:\n  rate:\n    per_account: 100/h\n",
                "limits.rate.per_account",
                5,
            ),
            (
                "limits:\n  rate:\n    per_address: 0/s\n",
                "limits.rate.per_address",
                5,
            ),
            (
                "limits:\n  rate:\n    per_account: 1/s\n    burst: 0x\n",
                "limits.rate.burst",
                6,
            ),
            ("limits:\n  rate:\n    burst: 2x\n", "limits.rate", 5),
        ] {
            let e = with(tail).unwrap_err();
            assert_eq!(e.0.len(), 1, "{tail}: {e}");
            assert_eq!(e.0[0].key.as_deref(), Some(key), "{tail}: {e}");
            assert_eq!(e.0[0].line, Some(line), "{tail}: {e}");
        }
        assert!(
            with("cluster:\n  redis: redis://x\n  pasword_file: a\n").is_err(),
            "unknown key"
        );
    }
}
