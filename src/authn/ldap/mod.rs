//! LDAP accounts: search as a service account, then bind as the user.
//!
//! A login for `account` with `password`:
//!
//! 1. The account name is checked before anything touches LDAP: at most
//!    [`MAX_ACCOUNT_LEN`] bytes, no control characters, no leading or trailing whitespace.
//!    A name that fails is not an LDAP account ([`Lookup::Unknown`]).
//! 2. An empty password is refused ([`AuthnError::BadPassword`]) before any network use: an
//!    LDAP bind with a DN and no password is an "unauthenticated bind", which many servers
//!    answer with success.
//! 3. A successful login remembered for `ldap.cache` is answered from memory (keyed hash of
//!    account and password, as in [`crate::authn::cache`]). Failures are never remembered.
//! 4. A pooled connection bound as `bind_dn` searches the subtree under `base` with `filter`,
//!    where `{account}` is replaced by the RFC 4515-escaped name ([`escape`]). No entry: the
//!    account is not known here ([`Lookup::Unknown`]). More than one entry: the directory is
//!    ambiguous and the login fails closed with [`AuthnError::Unavailable`] (never a guess
//!    between entries, never a fall-through).
//! 5. The entry's own value of `account_attribute` (default `uid`) is the account name
//!    ([`account`]). A login name that is not exactly that value (`MOZART` for `mozart`: the
//!    directory matched it ignoring case or width) is not an LDAP account
//!    ([`Lookup::Unknown`]), refused before any bind. An entry without exactly one value of
//!    the attribute fails closed ([`AuthnError::Unavailable`]).
//! 6. A **separate, unpooled** connection binds as the entry's DN with the password, then
//!    unbinds. Pooled connections therefore only ever carry the service account's identity:
//!    no rebind is needed and none can fail half-way. Result 49 (invalidCredentials) or 48
//!    is [`AuthnError::BadPassword`]; success gives the identity (the entry's name) with the
//!    labels read in the search ([`labels`]).
//!
//! Any other failure — server down, timeout, TLS refused, service account refused, an
//! unexpected result code — is [`AuthnError::Unavailable`] with a reason starting with
//! `ldap:`, logged with `tracing::warn!` (never with the password) and counted in
//! [`unavailable_total`]. It never becomes [`Lookup::Unknown`]: falling through to "unknown
//! account" while the directory is down would be wrong.
//!
//! Timeouts: the search phase (waiting for a pool slot, connecting and binding the service
//! account if needed, searching) and the user-bind phase (connecting, binding) each get
//! `ldap.timeout`, so a login fails after at most twice that.

mod settings;
pub use settings::Ldap;

pub mod account;
pub mod escape;
pub mod labels;
pub mod pool;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{ResultEntry, SearchEntry};

use super::cache::{LoginCache, Stamp};
use super::{Authenticator, AuthnError, Identity, Lookup};
use crate::diagnostic::{Diagnostic, Diagnostics};

pub use escape::{build_filter, escape_filter_value};
pub use pool::{Connector, Pool, POOL_SIZE};

/// Longest account name sent to LDAP, in bytes.
pub const MAX_ACCOUNT_LEN: usize = 256;

/// Logins remembered at most (successful ones only).
const CACHE_CAPACITY: usize = 16_384;

/// The backend's own cache lives and dies with this backend (one state): one stamp is enough.
const CACHE_STAMP: Stamp = (0, 0);

static UNAVAILABLE: AtomicU64 = AtomicU64::new(0);

/// How many logins and lookups LDAP could not answer since the process started (server down,
/// timeout, TLS refused, ambiguous entry…): the hook for
/// `portcullis_auth_failures_total{reason="ldap_unavailable"}`. Each of them is also an
/// [`AuthnError::Unavailable`] whose reason starts with `ldap:`.
pub fn unavailable_total() -> u64 {
    UNAVAILABLE.load(Ordering::Relaxed)
}

/// True for a name that may be sent to LDAP.
pub fn is_valid_account(account: &str) -> bool {
    !account.is_empty()
        && account.len() <= MAX_ACCOUNT_LEN
        && !account.chars().any(char::is_control)
        && account.trim() == account
}

/// The service account's password from the contents of its file: trailing line ends (`\n`,
/// `\r\n`) are removed, nothing else.
pub fn trim_password(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r'])
}

/// Reads the service account's password file. An empty password is an error: binding with it
/// would be an unauthenticated bind.
pub fn read_password_file(path: &Path) -> Result<String, Diagnostic> {
    let at = |msg: String| Diagnostic::new(path, msg).key("auth.ldap.bind_password_file");
    let bytes = std::fs::read(path).map_err(|e| at(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| at("is not UTF-8".into()))?;
    let password = trim_password(&text);
    if password.is_empty() {
        return Err(at("is empty".into()));
    }
    Ok(password.to_owned())
}

/// The search's outcome.
enum Found {
    None,
    One(SearchEntry),
    Many,
}

/// Attributes that record when an entry's password last changed, in the directories that keep
/// one: `pwdChangedTime` (OpenLDAP's ppolicy overlay, 389 DS), `pwdLastSet` (Active
/// Directory), `shadowLastChange` (posix `shadowAccount`). With the entry's DN they are the
/// credential stamp of an LDAP account ([`Authenticator::current`]): a refresh token or UI
/// session ends when the entry is moved, renamed or removed, or when one of these changes.
/// A directory that keeps none of them cannot say that a password changed.
pub const PASSWORD_CHANGE_ATTRIBUTES: &[&str] =
    &["pwdChangedTime", "pwdLastSet", "shadowLastChange"];

/// The credential stamp of an entry: its DN and its password-change attributes.
fn credential_stamp(entry: &SearchEntry) -> Vec<u8> {
    let mut stamp = entry.dn.as_bytes().to_vec();
    for attribute in PASSWORD_CHANGE_ATTRIBUTES {
        let values = entry
            .attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
            .map(|(_, values)| values.as_slice())
            .unwrap_or_default();
        stamp.push(0);
        stamp.extend_from_slice(attribute.as_bytes());
        for value in values {
            stamp.push(1);
            stamp.extend_from_slice(value.as_bytes());
        }
    }
    stamp
}

/// The LDAP backend.
pub struct LdapAuthenticator {
    name: String,
    connector: Arc<Connector>,
    pool: Pool,
    base: String,
    filter: String,
    account_attribute: String,
    labels: BTreeMap<String, String>,
    /// The attributes the search asks for: the account attribute and those the labels need.
    attributes: Vec<String>,
    timeout: Duration,
    cache: LoginCache,
    cache_ttl: Duration,
}

impl LdapAuthenticator {
    /// Builds the backend from `auth.ldap`, reading the password file and the CA certificate.
    /// Nothing connects yet: a directory that is down at start does not stop the proxy.
    pub fn load(config: &Ldap) -> Result<LdapAuthenticator, Diagnostics> {
        let password = read_password_file(&config.bind_password_file)?;
        Self::new(config, password)
    }

    /// Builds the backend from `auth.ldap` with the service account's password already read.
    pub fn new(config: &Ldap, bind_password: String) -> Result<Self, Diagnostics> {
        let mut errors = Vec::new();
        let file = &config.bind_password_file;
        let uses_tls = config.start_tls || config.url.starts_with("ldaps://");
        let tls = if uses_tls {
            match pool::tls_config(config.ca_certificate.as_deref()) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    let at = config.ca_certificate.as_deref().unwrap_or(file);
                    errors.push(Diagnostic::new(at, e).key("auth.ldap.ca_certificate"));
                    None
                }
            }
        } else {
            if let Some(ca) = &config.ca_certificate {
                errors.push(
                    Diagnostic::new(
                        ca,
                        "is set but the connection is not encrypted: use ldaps:// or `start_tls: true`",
                    )
                    .key("auth.ldap.ca_certificate"),
                );
            }
            None
        };
        let probe = build_filter(&config.filter, "probe");
        if !config.filter.contains("{account}") || ldap3::parse_filter(&probe).is_err() {
            errors.push(
                Diagnostic::new(
                    file,
                    format!(
                        "filter {:?} is not a valid LDAP filter with {{account}}",
                        config.filter
                    ),
                )
                .key("auth.ldap.filter"),
            );
        }
        if !account::is_attribute_name(&config.account_attribute)
            || !account::filter_compares(&config.filter, &config.account_attribute)
        {
            errors.push(
                Diagnostic::new(
                    file,
                    format!(
                        "account_attribute {:?} is not an attribute the filter {:?} compares with {{account}}",
                        config.account_attribute, config.filter
                    ),
                )
                .key("auth.ldap.account_attribute"),
            );
        }
        if bind_password.is_empty() {
            errors.push(Diagnostic::new(file, "is empty").key("auth.ldap.bind_password_file"));
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        if !uses_tls {
            tracing::warn!(
                url = %config.url,
                "auth.ldap: passwords are sent to LDAP unencrypted; use ldaps:// or start_tls"
            );
        }
        let connector = Arc::new(Connector::new(
            &config.url,
            config.start_tls,
            tls,
            config.timeout,
        ));
        let pool = Pool::new(
            connector.clone(),
            config.bind_dn.clone(),
            bind_password,
            config.timeout,
        );
        let mut attributes: Vec<String> = vec![config.account_attribute.clone()];
        for attribute in config.labels.values() {
            if !attributes.iter().any(|a| a.eq_ignore_ascii_case(attribute)) {
                attributes.push(attribute.clone());
            }
        }
        // Asked for on every search so that [`Authenticator::current`] can stamp the
        // credential; absent attributes cost nothing.
        for attribute in PASSWORD_CHANGE_ATTRIBUTES {
            if !attributes.iter().any(|a| a.eq_ignore_ascii_case(attribute)) {
                attributes.push((*attribute).to_owned());
            }
        }
        Ok(LdapAuthenticator {
            name: format!("ldap:{}", config.url),
            connector,
            pool,
            base: config.base.clone(),
            filter: config.filter.clone(),
            account_attribute: config.account_attribute.clone(),
            labels: config.labels.clone(),
            attributes,
            timeout: config.timeout,
            cache: LoginCache::new(CACHE_CAPACITY, config.cache),
            cache_ttl: config.cache,
        })
    }

    /// Idle pooled connections (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    fn unavailable(&self, account: &str, reason: String) -> Lookup {
        UNAVAILABLE.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            backend = %self.name,
            account = ?account,
            reason = %reason,
            "LDAP unavailable: login refused (fails closed)"
        );
        Lookup::Decided(Err(AuthnError::Unavailable(format!("ldap: {reason}"))))
    }

    /// Searches for the one entry of `account`.
    async fn find(&self, account: &str) -> Result<Found, String> {
        let filter = build_filter(&self.filter, account);
        let ldap3::SearchResult(entries, result) = self
            .pool
            .search(&self.base, &filter, &self.attributes)
            .await?;
        let entries: Vec<ResultEntry> = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .collect();
        match result.rc {
            0 => {}
            // sizeLimitExceeded: more than the two entries asked for.
            4 => return Ok(Found::Many),
            32 => {
                return Err(format!(
                    "search base {:?} does not exist (rc=32)",
                    self.base
                ))
            }
            rc => return Err(format!("search failed: rc={rc} {}", result.text)),
        }
        if entries.len() > 1 {
            return Ok(Found::Many);
        }
        let Some(entry) = entries.into_iter().next() else {
            return Ok(Found::None);
        };
        // ldap3 panics on an entry it cannot parse; a bad server answer must not take down a
        // worker.
        let entry = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SearchEntry::construct(entry)
        }))
        .map_err(|_| "the server sent an entry that cannot be parsed".to_string())?;
        if entry.dn.is_empty() {
            return Err("the search returned an entry with an empty DN".into());
        }
        Ok(Found::One(entry))
    }

    /// Binds as `dn` with `password` on a fresh connection: `Ok(true)` when accepted,
    /// `Ok(false)` for a wrong password.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<bool, String> {
        debug_assert!(!password.is_empty(), "checked before any bind");
        let attempt = async {
            let mut ldap = self.connector.connect().await?;
            let result = ldap
                .simple_bind(dn, password)
                .await
                .map_err(|e| format!("user bind failed: {e}"));
            // Close politely without making the caller wait for it.
            let timeout = self.timeout;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, ldap.unbind()).await;
            });
            let result = result?;
            match result.rc {
                0 => Ok(true),
                // invalidCredentials; inappropriateAuthentication.
                49 | 48 => Ok(false),
                rc => Err(format!("user bind for {dn:?}: rc={rc} {}", result.text)),
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| format!("timed out after {:?} binding as the user", self.timeout))?
    }

    /// The search for `typed`, down to the identity its entry stands for — or what to
    /// answer instead: not known here (no entry, or an entry whose name is spelled otherwise),
    /// or unavailable (ambiguous, no single name, server trouble).
    async fn resolve(&self, typed: &str) -> Result<(Identity, SearchEntry), Lookup> {
        let entry = match self.find(typed).await {
            Err(reason) => return Err(self.unavailable(typed, reason)),
            Ok(Found::None) => return Err(Lookup::Unknown),
            Ok(Found::Many) => {
                return Err(self.unavailable(typed, "ambiguous: more than one entry matches".into()))
            }
            Ok(Found::One(entry)) => entry,
        };
        let name = account::account_name(&entry.attrs, &entry.bin_attrs, &self.account_attribute)
            .map_err(|reason| self.unavailable(typed, format!("{reason} ({})", entry.dn)))?;
        if name != typed {
            // The directory matched another spelling (case, width, ignorable characters).
            // Refused before any bind: other spellings are no password oracle, and each
            // account has one name.
            tracing::debug!(
                backend = %self.name,
                typed = ?typed,
                directory = ?name,
                "LDAP login name differs from the directory's spelling: refused"
            );
            return Err(Lookup::Unknown);
        }
        let identity = Identity {
            account: name,
            labels: labels::labels_from(&entry.attrs, &self.labels),
            via: None,
        };
        Ok((identity, entry))
    }
}

#[async_trait]
impl Authenticator for LdapAuthenticator {
    async fn authenticate(&self, account: &str, password: &str) -> Lookup {
        if !is_valid_account(account) {
            return Lookup::Unknown;
        }
        if password.is_empty() {
            return Lookup::Decided(Err(AuthnError::BadPassword));
        }
        let key = self.cache.key(account, password);
        if !self.cache_ttl.is_zero() {
            if let Some(identity) = self.cache.get(&key, CACHE_STAMP) {
                return Lookup::Decided(Ok(identity));
            }
        }
        let (identity, entry) = match self.resolve(account).await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        match self.bind_as(&entry.dn, password).await {
            Err(reason) => self.unavailable(account, reason),
            Ok(false) => Lookup::Decided(Err(AuthnError::BadPassword)),
            Ok(true) => {
                if !self.cache_ttl.is_zero() {
                    self.cache.insert(key, identity.clone(), CACHE_STAMP);
                }
                Lookup::Decided(Ok(identity))
            }
        }
    }

    async fn lookup(&self, account: &str) -> Lookup {
        if !is_valid_account(account) {
            return Lookup::Unknown;
        }
        match self.resolve(account).await {
            Ok((identity, _)) => Lookup::Decided(Ok(identity)),
            Err(answer) => answer,
        }
    }

    async fn current(&self, account: &str) -> super::Current {
        if !is_valid_account(account) {
            return super::Current::Unknown;
        }
        match self.resolve(account).await {
            Ok((identity, entry)) => {
                super::Current::Decided(Ok((identity, credential_stamp(&entry))))
            }
            Err(Lookup::Decided(Err(e))) => super::Current::Decided(Err(e)),
            Err(_) => super::Current::Unknown,
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn matches_loosely(&self) -> bool {
        true
    }

    fn cache_ttl(&self) -> Option<Duration> {
        Some(self.cache_ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn config(url: &str) -> Ldap {
        Ldap {
            url: url.into(),
            start_tls: false,
            ca_certificate: None,
            bind_dn: "uid=serviceaccount,ou=it,dc=example,dc=com".into(),
            bind_password_file: "/nonexistent/pw".into(),
            base: "ou=musicians,dc=example,dc=com".into(),
            filter: "(&(objectClass=inetOrgPerson)(uid={account}))".into(),
            account_attribute: "uid".into(),
            labels: [("groups".to_string(), "memberOf".to_string())].into(),
            timeout: Duration::from_secs(5),
            cache: Duration::from_secs(60),
        }
    }

    #[test]
    fn password_file_trimming() {
        assert_eq!(trim_password("secret\n"), "secret");
        assert_eq!(trim_password("secret\r\n"), "secret");
        assert_eq!(trim_password("secret\n\n"), "secret");
        assert_eq!(trim_password("secret"), "secret");
        // Only line ends go: spaces and inner newlines are part of the password.
        assert_eq!(trim_password(" se cret \n"), " se cret ");
        assert_eq!(trim_password("a\nb\n"), "a\nb");

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\r\n").unwrap();
        assert_eq!(read_password_file(&p).unwrap(), "s3cret");
        std::fs::write(&p, "\n").unwrap();
        let e = read_password_file(&p).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.ldap.bind_password_file"));
        let e = read_password_file(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.ldap.bind_password_file"));
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn account_names() {
        assert!(is_valid_account("mozart"));
        assert!(is_valid_account("j.s.bach@example.com"));
        assert!(is_valid_account("schrödinger"));
        // Specials are escaped, not refused.
        assert!(is_valid_account("mozart)(uid=*"));
        for bad in [
            "", "a\0b", "a\nb", "tab\t", "\u{7f}", " mozart", "mozart ", "\u{85}x",
        ] {
            assert!(!is_valid_account(bad), "{bad:?}");
        }
        assert!(is_valid_account(&"a".repeat(MAX_ACCOUNT_LEN)));
        assert!(!is_valid_account(&"a".repeat(MAX_ACCOUNT_LEN + 1)));
    }

    /// A listener that completes TCP handshakes (the kernel does that from the backlog) but
    /// never reads or answers: a server that hangs.
    fn black_hole() -> (std::net::TcpListener, String) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("ldap://{}", l.local_addr().unwrap());
        (l, url)
    }

    #[tokio::test]
    async fn refusals_happen_before_any_network_use() {
        let (listener, url) = black_hole();
        let mut c = config(&url);
        c.timeout = Duration::from_secs(30);
        let ldap = LdapAuthenticator::new(&c, "pw".into()).unwrap();
        let start = Instant::now();
        assert!(matches!(
            ldap.authenticate("mozart", "").await,
            Lookup::Decided(Err(AuthnError::BadPassword))
        ));
        for bad in ["", "a\0b", "x\n", &"a".repeat(1000)] {
            assert!(matches!(
                ldap.authenticate(bad, "pw").await,
                Lookup::Unknown
            ));
            assert!(matches!(ldap.lookup(bad).await, Lookup::Unknown));
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        // Nobody connected.
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        assert_eq!(ldap.idle_connections(), 0);
    }

    #[tokio::test]
    async fn a_hanging_server_fails_closed_within_the_timeout() {
        let (_listener, url) = black_hole();
        let mut c = config(&url);
        c.timeout = Duration::from_millis(300);
        let ldap = LdapAuthenticator::new(&c, "pw".into()).unwrap();
        let before = unavailable_total();
        let start = Instant::now();
        match ldap.authenticate("mozart", "the-password").await {
            Lookup::Decided(Err(AuthnError::Unavailable(reason))) => {
                assert!(reason.starts_with("ldap: "), "{reason}");
                assert!(reason.contains("timed out"), "{reason}");
                assert!(!reason.contains("the-password"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(
            ldap.lookup("mozart").await,
            Lookup::Decided(Err(AuthnError::Unavailable(_)))
        ));
        assert!(unavailable_total() >= before + 2);
        assert_eq!(ldap.idle_connections(), 0);
    }

    #[tokio::test]
    async fn a_closed_port_fails_closed() {
        let (listener, url) = black_hole();
        drop(listener);
        let ldap = LdapAuthenticator::new(&config(&url), "pw".into()).unwrap();
        match ldap.authenticate("mozart", "pw").await {
            Lookup::Decided(Err(AuthnError::Unavailable(reason))) => {
                assert!(reason.contains("cannot connect"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn construction_checks() {
        let mut c = config("ldap://127.0.0.1:389");
        c.filter = "(uid={account}".into();
        let e = LdapAuthenticator::new(&c, "pw".into()).err().unwrap();
        assert_eq!(e.0[0].key.as_deref(), Some("auth.ldap.filter"), "{e}");

        let mut c = config("ldap://127.0.0.1:389");
        c.ca_certificate = Some("/nonexistent/ca.pem".into());
        let e = LdapAuthenticator::new(&c, "pw".into()).err().unwrap();
        assert_eq!(
            e.0[0].key.as_deref(),
            Some("auth.ldap.ca_certificate"),
            "{e}"
        );

        let mut c = config("ldaps://127.0.0.1:636");
        c.ca_certificate = Some("/nonexistent/ca.pem".into());
        let e = LdapAuthenticator::new(&c, "pw".into()).err().unwrap();
        assert_eq!(
            e.0[0].key.as_deref(),
            Some("auth.ldap.ca_certificate"),
            "{e}"
        );
        assert!(e.0[0].message.contains("cannot read"), "{e}");

        let c = config("ldap://127.0.0.1:389");
        let e = LdapAuthenticator::new(&c, String::new()).err().unwrap();
        assert_eq!(
            e.0[0].key.as_deref(),
            Some("auth.ldap.bind_password_file"),
            "{e}"
        );

        let ldap = LdapAuthenticator::new(&c, "pw".into()).unwrap();
        assert_eq!(ldap.name(), "ldap:ldap://127.0.0.1:389");
        assert_eq!(ldap.cache_ttl(), Some(Duration::from_secs(60)));
        assert_eq!(
            ldap.attributes,
            vec![
                "uid",
                "memberOf",
                "pwdChangedTime",
                "pwdLastSet",
                "shadowLastChange"
            ]
        );
    }

    #[test]
    fn the_credential_stamp_is_the_dn_and_the_password_change_time() {
        let entry = |dn: &str, attrs: &[(&str, &str)]| SearchEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
            bin_attrs: Default::default(),
        };
        let base = credential_stamp(&entry("uid=a,ou=x", &[("memberOf", "cn=g")]));
        // Labels do not matter; the DN and any password-change attribute do.
        assert_eq!(base, credential_stamp(&entry("uid=a,ou=x", &[])));
        assert_ne!(base, credential_stamp(&entry("uid=a,ou=y", &[])));
        let changed = credential_stamp(&entry(
            "uid=a,ou=x",
            &[("pwdChangedTime", "20261201000000Z")],
        ));
        assert_ne!(base, changed);
        assert_ne!(
            changed,
            credential_stamp(&entry(
                "uid=a,ou=x",
                &[("PWDCHANGEDTIME", "20261201000001Z")]
            ))
        );
        assert_ne!(
            base,
            credential_stamp(&entry("uid=a,ou=x", &[("pwdLastSet", "1")]))
        );
        assert_ne!(
            base,
            credential_stamp(&entry("uid=a,ou=x", &[("shadowLastChange", "2")]))
        );
    }
}
