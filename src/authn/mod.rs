//! Who is asking: one [`Authenticator`] trait with a backend per source of accounts, and the
//! [`Authenticators`] chain that tries them in the order the design fixes
//! (static users, htpasswd, later LDAP) and remembers successful bcrypt checks.
//!
//! The first backend that *knows* an account decides: a wrong password never falls through
//! to the next backend, so an htpasswd file cannot be used to shadow a static admin.
//!
//! One identity per name: a successful login's account is exactly the name that was typed
//! (backends refuse other spellings; LDAP compares the typed name with the directory's own
//! value), so the failed-login counters keyed on the typed name before the password check
//! count the account that would log in. A backend whose source matches names loosely (LDAP)
//! is also refused any name that folds ([`fold`]) like an account of an earlier backend: a
//! static `bach` shadows LDAP's `Bach` and `ｂａｃｈ` as well as `bach`.

pub mod cache;
pub mod credentials;
pub mod federation;
pub mod fold;
pub mod htpasswd;
pub mod keys;
pub mod ldap;
pub mod lockout;
pub mod oidc;
pub mod password;
pub mod users;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use credentials::Credentials;

/// Labels of an account (`groups: [builders]`): the ACL matches on them.
pub type Labels = BTreeMap<String, Vec<String>>;

/// A stable in-process digest for [`Authenticator::fingerprint`].
pub(crate) fn digest<T: std::hash::Hash>(value: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// An authenticated caller. The anonymous account is `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The login name; `""` for anonymous.
    pub account: String,
    /// Labels from the user entry (or, later, LDAP attributes).
    pub labels: Labels,
    /// How the caller proved it when not with the account's own password (an access key, a
    /// CI job's ID token): what narrows its rights and what the audit line names. `None`
    /// for a password (or anonymous).
    pub via: Option<Arc<Via>>,
}

/// A credential that stands for an account without being its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An access key (`auth.keys`): the account's rights narrowed to the key's scopes.
    Key {
        /// The key's public id.
        id: String,
        /// Its scopes (empty: the account's full rights).
        scopes: keys::Scopes,
        /// When the key was made (Unix seconds): a revocation shared through the cluster
        /// voids every use of a key made before it.
        created: u64,
    },
    /// A CI job's ID token from a trusted issuer (`auth.federation`).
    Federation {
        /// The token's issuer.
        issuer: String,
        /// The job token's `exp` (Unix seconds): nothing issued from it outlives it.
        expires: u64,
    },
}

impl Identity {
    /// The anonymous caller, who has no labels.
    pub fn anonymous() -> Self {
        Identity {
            account: String::new(),
            labels: Labels::new(),
            via: None,
        }
    }

    /// Of the actions the ACL `granted` on `kind:name`, those this caller's credential also
    /// allows: an access key's scopes narrow the ACL's answer, never widen it. Every place
    /// that asks the ACL for a caller goes through this ([`crate::policy`], the token
    /// endpoint, `explain`).
    pub fn narrow(&self, kind: &str, name: &str, granted: Vec<String>) -> Vec<String> {
        match self.via.as_deref() {
            Some(Via::Key { scopes, .. }) => scopes.narrow(kind, name, granted),
            _ => granted,
        }
    }

    /// The access key's id and creation time (Unix seconds), if the caller used one: what a
    /// shared revocation is checked against.
    pub fn key_use(&self) -> Option<(&str, u64)> {
        match self.via.as_deref() {
            Some(Via::Key { id, created, .. }) => Some((id, *created)),
            _ => None,
        }
    }

    /// The access key's id, if the caller used one (for the audit line).
    pub fn key_id(&self) -> Option<&str> {
        match self.via.as_deref() {
            Some(Via::Key { id, .. }) => Some(id),
            _ => None,
        }
    }

    /// The federation issuer, if the caller is a CI job (for the audit line).
    pub fn issuer(&self) -> Option<&str> {
        match self.via.as_deref() {
            Some(Via::Federation { issuer, .. }) => Some(issuer),
            _ => None,
        }
    }

    /// Anonymous callers get a 401 (so clients ask for a login) where others get a 403.
    pub fn is_anonymous(&self) -> bool {
        self.account.is_empty()
    }
}

/// Why a login failed. Callers turn all of these into the same 401 so that the answer does not
/// say whether the account exists; the distinction is for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// No backend knows the account.
    #[error("unknown account")]
    UnknownAccount,
    /// The account exists and the password is wrong.
    #[error("wrong password")]
    BadPassword,
    /// No credentials, and anonymous access is not configured.
    #[error("no credentials")]
    Missing,
    /// A backend could not answer (a panicked worker; later, LDAP down). Fails closed.
    #[error("authentication backend unavailable: {0}")]
    Unavailable(String),
    /// A password shaped like an access key that is in no keys file (or keys are off).
    #[error("unknown access key")]
    UnknownKey,
    /// The access key with this id has expired.
    #[error("access key {0} has expired")]
    KeyExpired(String),
    /// The access key with this id was revoked through the cluster.
    #[error("access key {0} was revoked")]
    KeyRevoked(String),
    /// The access key with this id belongs to an account no backend knows any more (and it
    /// is not a robot key).
    #[error("access key {0}: its account no longer exists")]
    KeyAccountGone(String),
    /// A CI job's ID token was refused; the reason is for the audit line. `forged` when it
    /// is no genuine token of a trusted issuer (counted as a failed attempt of the address).
    #[error("CI token refused: {reason}")]
    BadCiToken {
        /// Why (`expired`, `wrong audience`, `claim \`ref\` missing`, …).
        reason: String,
        /// Not a genuine token of a trusted issuer.
        forged: bool,
    },
}

/// What a backend says about an account's current state: its identity and a stamp of its
/// credential (see [`Authenticator::current`]).
#[derive(Debug)]
pub enum Current {
    /// This backend does not know the account: ask the next one.
    Unknown,
    /// This backend knows the account: its identity and credential stamp, or why not.
    Decided(Result<(Identity, Vec<u8>), AuthnError>),
}

/// What a backend says about an account.
#[derive(Debug)]
pub enum Lookup {
    /// This backend does not know the account: ask the next one.
    Unknown,
    /// This backend knows the account and has decided.
    Decided(Result<Identity, AuthnError>),
}

/// A source of accounts. Implementations must be cheap to call concurrently; slow work
/// (bcrypt, network) must not block the async runtime.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Checks `password` for `account`, or says the account is not known here.
    async fn authenticate(&self, account: &str, password: &str) -> Lookup;

    /// The identity of `account` without checking a password, or [`Lookup::Unknown`]. A refresh
    /// token uses it to re-check that its account still exists (and to get fresh labels).
    async fn lookup(&self, account: &str) -> Lookup;

    /// A short name for logs (`users`, `htpasswd:/etc/registry.htpasswd`).
    fn name(&self) -> &str;

    /// The identity of `account` (as [`Self::lookup`]) and a *stamp* of its current credential:
    /// bytes that change whenever what the password is checked against changes (the stored
    /// hash; an LDAP entry's DN and password-change time). Long-lived grants — refresh tokens,
    /// UI sessions — carry a keyed MAC of the stamp they were issued under and end when it
    /// differs, so a password change or an edit of the account ends them. The stamp never
    /// leaves the process unkeyed. The default (no stamp) binds grants to the account's
    /// existence only; every backend here overrides it.
    async fn current(&self, account: &str) -> Current {
        match self.lookup(account).await {
            Lookup::Unknown => Current::Unknown,
            Lookup::Decided(result) => Current::Decided(result.map(|id| (id, Vec::new()))),
        }
    }

    /// A digest of what this backend holds for `account` (password hash, labels), for backends
    /// that read files: on reload, cached logins survive only for accounts whose fingerprint
    /// did not change. `None` (the default) means "unknown here, or not fixed by a file".
    fn fingerprint(&self, _account: &str) -> Option<u64> {
        None
    }

    /// The account names this backend holds, for backends that read them from a file: each
    /// shadows every spelling of itself in a later backend that [matches loosely]
    /// (Self::matches_loosely). Default: none.
    fn account_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// True when this backend's source finds an account under spellings other than the exact
    /// one (an LDAP directory ignores case and width), so its logins must not be allowed to
    /// stand in for an earlier backend's account of the same name. Default: exact names.
    fn matches_loosely(&self) -> bool {
        false
    }

    /// `None` (the default): the chain may remember this backend's successful logins for its
    /// own TTL (1 h). `Some(ttl)`: the backend remembers them itself for `ttl` (LDAP:
    /// `ldap.cache`; `0s` for never) and the chain does not remember them at all, so a
    /// disabled directory account stops working after `ttl`, not after the chain's hour.
    fn cache_ttl(&self) -> Option<Duration> {
        None
    }
}

/// The backends in order, plus the login cache. Built anew on every (re)load, so a changed
/// users file never serves a stale cached login.
pub struct Authenticators {
    backends: Vec<Arc<dyn Authenticator>>,
    anonymous_allowed: bool,
    /// [`fold::fold`] of every name an exact backend holds → that backend's position.
    shadows: HashMap<String, usize>,
    cache: Arc<cache::LoginCache>,
    lookups: std::sync::Mutex<LookupMap>,
    /// Access keys (`auth.keys`), when configured.
    keys: Option<Arc<keys::KeyStore>>,
    /// Trusted issuers of CI job tokens (`auth.federation`), when configured.
    federation: Option<Arc<federation::Federation>>,
}

/// What kind of secret a password is, decided by its shape before anything is checked: each
/// kind has its own path and its own failure counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// A password of the account named with it.
    Password,
    /// An access key (`pcl_…`), whatever the account name typed with it.
    AccessKey,
    /// A CI job's ID token (a JWT) while `auth.federation` is on, whatever the username.
    CiToken,
}

/// Remembered [`Authenticators::current`] answers: identity, credential stamp, when.
type LookupMap = std::collections::HashMap<String, (Identity, Vec<u8>, std::time::Instant)>;

/// How long [`Authenticators::lookup_cached`] trusts an answer: Bearer requests re-check that
/// their account exists (and read its labels) at most this often, so an LDAP directory is not
/// searched on every request, and a removed account loses access within this time.
pub const LOOKUP_TTL: Duration = Duration::from_secs(30);
const LOOKUP_CAPACITY: usize = 10_000;

impl Authenticators {
    /// A chain of `backends`; `anonymous_allowed` when the users file has the `""` account.
    pub fn new(backends: Vec<Arc<dyn Authenticator>>, anonymous_allowed: bool) -> Self {
        let mut shadows = HashMap::new();
        let any_loose = backends.iter().any(|b| b.matches_loosely());
        for (position, backend) in backends.iter().enumerate() {
            if !any_loose || backend.matches_loosely() {
                continue;
            }
            for name in backend.account_names() {
                if !name.is_empty() {
                    shadows.entry(fold::fold(&name)).or_insert(position);
                }
            }
        }
        Authenticators {
            backends,
            anonymous_allowed,
            shadows,
            cache: Arc::new(cache::LoginCache::new(65_536, Duration::from_secs(3600))),
            lookups: Default::default(),
            keys: None,
            federation: None,
        }
    }

    /// Adds the trusted CI issuers of `auth.federation`.
    pub fn with_federation(mut self, federation: Arc<federation::Federation>) -> Self {
        self.federation = Some(federation);
        self
    }

    /// The identity behind a Bearer token issued to a CI job of `issuer`: only while the
    /// issuer is still trusted (a reload that removes it ends its tokens), with the labels
    /// the job token mapped to, until the token's `exp` (capped at the job token's).
    pub fn federated_bearer(
        &self,
        issuer: &str,
        account: &str,
        labels: &Labels,
        expires: u64,
    ) -> Result<Identity, AuthnError> {
        if !self.federation.as_ref().is_some_and(|f| f.trusts(issuer)) {
            return Err(AuthnError::BadCiToken {
                reason: format!("issuer {issuer:?} is no longer trusted"),
                forged: false,
            });
        }
        Ok(Identity {
            account: account.to_owned(),
            labels: labels.clone(),
            via: Some(Arc::new(Via::Federation {
                issuer: issuer.to_owned(),
                expires,
            })),
        })
    }

    /// Adds the access keys of `auth.keys`.
    pub fn with_keys(mut self, keys: Arc<keys::KeyStore>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The access keys, when configured (for `explain --key` and Bearer tokens issued to a key).
    pub fn keys(&self) -> Option<&keys::KeyStore> {
        self.keys.as_deref()
    }

    /// What kind of secret `password` is. A password shaped like an access key is an
    /// access key whenever keys are configured: it never reaches the password backends, so
    /// it neither counts towards nor is blocked by the account's password lockout.
    pub fn secret_kind(&self, password: &str) -> Secret {
        if self.keys.is_some() && keys::secret::looks_like_key(password) {
            Secret::AccessKey
        } else if self.federation.is_some() && federation::Federation::looks_like_jwt(password) {
            Secret::CiToken
        } else {
            Secret::Password
        }
    }

    /// Logs in with an access key: the username typed with it does not matter (the key
    /// names its account). The account's labels come from the backend that holds it; a
    /// robot key's account may be in no backend (then it has no labels); any other key
    /// stops working when its account is gone. Never cached: a revoked or expired key
    /// fails on the next request after the keys file is reloaded.
    pub async fn key_login(&self, secret: &str) -> Result<Identity, AuthnError> {
        let Some(store) = &self.keys else {
            return Err(AuthnError::UnknownKey);
        };
        let (record, scopes) = match store.find(secret, std::time::SystemTime::now()) {
            keys::Found::Unknown => return Err(AuthnError::UnknownKey),
            keys::Found::Expired(record) => return Err(AuthnError::KeyExpired(record.id.clone())),
            keys::Found::Key(record, scopes) => (record, scopes),
        };
        self.key_identity(record, scopes).await
    }

    /// Logs in with a CI job's ID token (`auth.federation`): verified against its issuer's
    /// keys and mapped to an account and labels. The account must not be one a backend
    /// holds: a token whose claims happen to spell `admin` does not become the admin.
    pub async fn ci_login(&self, token: &str) -> Result<Identity, AuthnError> {
        let Some(federation) = &self.federation else {
            return Err(AuthnError::BadCiToken {
                reason: "federation is off".into(),
                forged: true,
            });
        };
        let verified = match federation.verify(token).await {
            Ok(v) => v,
            Err(federation::Refused::Bad { reason, forged }) => {
                return Err(AuthnError::BadCiToken { reason, forged })
            }
            Err(federation::Refused::Unavailable(why)) => {
                return Err(AuthnError::Unavailable(format!("CI issuer: {why}")))
            }
        };
        match self.lookup_cached(&verified.account).await {
            Err(AuthnError::UnknownAccount) => {}
            Err(e) => return Err(e),
            Ok(_) => {
                return Err(AuthnError::BadCiToken {
                    reason: format!(
                        "account {:?} belongs to a backend; a CI token cannot stand for it",
                        verified.account
                    ),
                    forged: false,
                })
            }
        }
        if self.robot_holds(&verified.account) {
            return Err(AuthnError::BadCiToken {
                reason: format!(
                    "account {:?} is a robot key's; a CI token cannot stand for it",
                    verified.account
                ),
                forged: false,
            });
        }
        Ok(Identity {
            account: verified.account,
            labels: verified.labels,
            via: Some(Arc::new(Via::Federation {
                issuer: verified.issuer,
                expires: verified.expires,
            })),
        })
    }

    /// The identity behind a Bearer token issued to the key `id` for `account`: the key
    /// must still be in the keys file, unexpired, for the same account. So revoking or
    /// expiring a key ends the tokens issued to it on their next use.
    pub async fn key_by_id(&self, id: &str, account: &str) -> Result<Identity, AuthnError> {
        let Some((record, scopes)) = self.keys.as_ref().and_then(|k| k.get(id)) else {
            return Err(AuthnError::UnknownKey);
        };
        if record.account != account {
            return Err(AuthnError::UnknownKey);
        }
        if record.is_expired(std::time::SystemTime::now()) {
            return Err(AuthnError::KeyExpired(record.id.clone()));
        }
        self.key_identity(record, scopes).await
    }

    /// The identity a live key stands for (see [`Self::key_login`]).
    pub async fn key_identity(
        &self,
        record: &keys::Record,
        scopes: &keys::Scopes,
    ) -> Result<Identity, AuthnError> {
        let labels = match self.lookup_cached(&record.account).await {
            // A single sign-on person's key: a backend holding the name is someone else.
            Ok(_) if record.sso_labels.is_some() => {
                return Err(AuthnError::KeyAccountGone(record.id.clone()))
            }
            Ok(identity) => identity.labels,
            Err(AuthnError::UnknownAccount) if record.sso_labels.is_some() => {
                record.sso_labels.clone().unwrap_or_default()
            }
            Err(AuthnError::UnknownAccount) if record.robot => Labels::new(),
            Err(AuthnError::UnknownAccount) => {
                return Err(AuthnError::KeyAccountGone(record.id.clone()))
            }
            Err(e) => return Err(e),
        };
        Ok(Identity {
            account: record.account.clone(),
            labels,
            via: Some(Arc::new(Via::Key {
                id: record.id.clone(),
                scopes: scopes.clone(),
                created: record
                    .created
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            })),
        })
    }

    /// [`Self::lookup`], remembered for [`LOOKUP_TTL`]. Failures are not remembered.
    pub async fn lookup_cached(&self, account: &str) -> Result<Identity, AuthnError> {
        self.current_cached(account)
            .await
            .map(|(identity, _)| identity)
    }

    /// [`Self::current`], remembered for [`LOOKUP_TTL`] (a users-file change builds a new
    /// chain, so it is seen on the next request; an LDAP change within this time). Failures
    /// are not remembered.
    pub async fn current_cached(&self, account: &str) -> Result<(Identity, Vec<u8>), AuthnError> {
        if let Ok(lookups) = self.lookups.lock() {
            if let Some((identity, stamp, at)) = lookups.get(account) {
                if at.elapsed() < LOOKUP_TTL {
                    return Ok((identity.clone(), stamp.clone()));
                }
            }
        }
        let (identity, stamp) = self.current(account).await?;
        if let Ok(mut lookups) = self.lookups.lock() {
            if lookups.len() >= LOOKUP_CAPACITY {
                lookups.clear();
            }
            lookups.insert(
                account.to_owned(),
                (identity.clone(), stamp.clone(), std::time::Instant::now()),
            );
        }
        Ok((identity, stamp))
    }

    /// The current identity of `account` and the stamp of its credential: the deciding
    /// backend's name and [`Authenticator::current`]'s stamp, so moving an account to another
    /// backend changes it too. What refresh tokens and UI sessions are bound to.
    pub async fn current(&self, account: &str) -> Result<(Identity, Vec<u8>), AuthnError> {
        if account.is_empty() {
            return if self.anonymous_allowed {
                Ok((Identity::anonymous(), b"anonymous".to_vec()))
            } else {
                Err(AuthnError::UnknownAccount)
            };
        }
        for backend in &self.backends {
            match backend.current(account).await {
                Current::Unknown => continue,
                Current::Decided(result) => {
                    let (identity, stamp) = result?;
                    let mut full = backend.name().as_bytes().to_vec();
                    full.push(0);
                    full.extend_from_slice(&stamp);
                    return Ok((identity, full));
                }
            }
        }
        Err(AuthnError::UnknownAccount)
    }

    /// Takes over `old`'s remembered logins after a reload, so an unchanged user does not pay
    /// bcrypt again. Each entry is answered only under the [stamp](cache::Stamp) it was made
    /// under, so a changed or removed account cannot log in with the old password, not even
    /// through a login that started under `old` and lands in the shared cache after this
    /// call. Entries that can no longer be answered are dropped here to free memory.
    pub fn adopt_cache(&mut self, old: &Authenticators) {
        old.cache
            .retain(|identity, stamp| self.fingerprint(&identity.account) == Some(stamp));
        self.cache = old.cache.clone();
        // And the CI issuers' fetched keys, for issuers configured as before (rebuilt only
        // here, before the new state is shared).
        if let (Some(new), Some(old)) = (self.federation.as_mut(), old.federation.as_ref()) {
            if let Some(new) = Arc::get_mut(new) {
                new.adopt_keys(old);
            }
        }
    }

    /// (backend position, its fingerprint) of the first backend that fixes `account`.
    fn fingerprint(&self, account: &str) -> Option<(usize, u64)> {
        self.backends
            .iter()
            .enumerate()
            .find_map(|(i, b)| b.fingerprint(account).map(|f| (i, f)))
    }

    /// Authenticates a request's credentials. Bearer tokens are not handled here.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<Identity, AuthnError> {
        match credentials {
            Credentials::None => {
                if self.anonymous_allowed {
                    Ok(Identity::anonymous())
                } else {
                    Err(AuthnError::Missing)
                }
            }
            Credentials::Basic { account, password } => self.login(account, password).await,
            Credentials::Bearer(_) => Err(AuthnError::Missing),
        }
    }

    /// The identity for `account` if the login cache proves `password` right (a recent
    /// successful login with exactly this password), without asking any backend. The lockout
    /// uses it to let a proven password skip the account-wide delay.
    pub fn cached_login(&self, account: &str, password: &str) -> Option<Identity> {
        if account.is_empty() || self.secret_kind(password) != Secret::Password {
            return None;
        }
        // The same test as `login`'s: remembered under the account's current state.
        let stamp = self.fingerprint(account)?;
        self.cache.get(&self.cache.key(account, password), stamp)
    }

    /// Checks an account and password against the backends, using the cache first. An
    /// access key goes to [`Self::key_login`] instead, whatever the account.
    pub async fn login(&self, account: &str, password: &str) -> Result<Identity, AuthnError> {
        match self.secret_kind(password) {
            Secret::AccessKey => return self.key_login(password).await,
            Secret::CiToken => return self.ci_login(password).await,
            Secret::Password => {}
        }
        if account.is_empty() {
            // docker_auth lets the anonymous account log in with any password.
            return if self.anonymous_allowed {
                Ok(Identity::anonymous())
            } else {
                Err(AuthnError::UnknownAccount)
            };
        }
        // What this state holds for the account: a remembered login counts only if it was
        // made under the same (a login finishing under an older state carries the old one).
        let stamp = self.fingerprint(account);
        let key = self.cache.key(account, password);
        if let Some(identity) = stamp.and_then(|stamp| self.cache.get(&key, stamp)) {
            return Ok(identity);
        }
        for (position, backend) in self.backends.iter().enumerate() {
            match backend.authenticate(account, password).await {
                Lookup::Unknown => continue,
                Lookup::Decided(Ok(identity)) => {
                    let identity =
                        self.vet(position, account, identity, AuthnError::BadPassword)?;
                    if let Some(stamp) = stamp.filter(|s| s.0 == position) {
                        if backend.cache_ttl().is_none() {
                            self.cache.insert(key, identity.clone(), stamp);
                        }
                    }
                    return Ok(identity);
                }
                Lookup::Decided(Err(e)) => return Err(e),
            }
        }
        // Spend the same time as a real check so response timing does not reveal which
        // account names exist.
        password::burn_equivalent_time(password).await;
        Err(AuthnError::UnknownAccount)
    }

    /// The current identity of `account` (no password check): for refresh tokens, which must
    /// stop working when the account is removed. The anonymous account exists only while `""`
    /// is configured.
    pub async fn lookup(&self, account: &str) -> Result<Identity, AuthnError> {
        if account.is_empty() {
            return if self.anonymous_allowed {
                Ok(Identity::anonymous())
            } else {
                Err(AuthnError::UnknownAccount)
            };
        }
        for (position, backend) in self.backends.iter().enumerate() {
            match backend.lookup(account).await {
                Lookup::Unknown => continue,
                Lookup::Decided(Ok(identity)) => {
                    return self.vet(position, account, identity, AuthnError::UnknownAccount)
                }
                Lookup::Decided(Err(e)) => return Err(e),
            }
        }
        Err(AuthnError::UnknownAccount)
    }

    /// Holds a backend's answer to what the chain promises: the identity is the account that
    /// was asked for (so every per-account counter and rule keyed on the typed name sees the
    /// account that logs in), and no earlier backend holds a spelling of it that a loosely
    /// matching backend would confuse with it (then `shadowed` is the answer).
    fn vet(
        &self,
        position: usize,
        asked: &str,
        identity: Identity,
        shadowed: AuthnError,
    ) -> Result<Identity, AuthnError> {
        let backend = &self.backends[position];
        if identity.account != asked {
            tracing::error!(
                backend = backend.name(),
                asked = ?asked,
                answered = ?identity.account,
                "a backend answered for another account name: refused"
            );
            return Err(AuthnError::Unavailable(format!(
                "{} answered for another account name",
                backend.name()
            )));
        }
        if backend.matches_loosely() {
            if let Some(&earlier) = self.shadows.get(&fold::fold(asked)) {
                if earlier < position {
                    tracing::warn!(
                        backend = backend.name(),
                        account = ?asked,
                        shadowed_by = self.backends[earlier].name(),
                        "login refused: an earlier backend holds an account of this name"
                    );
                    return Err(shadowed);
                }
            }
        }
        Ok(identity)
    }

    /// Whether a robot key's account folds like `name`: such an account exists only as keys,
    /// and neither a single sign-on person nor a CI job may come to stand for it.
    pub fn robot_holds(&self, name: &str) -> bool {
        let folded = fold::fold(name);
        self.keys
            .as_ref()
            .is_some_and(|k| k.robot_accounts().any(|n| fold::fold(n) == folded))
    }

    /// True when a backend holds `name` or, among the backends that list their accounts (the
    /// files) and the robot keys, any spelling that [folds](fold::fold) like it. Single sign-on
    /// refuses such names: a person at the identity provider must not become, or pass for, a
    /// password account or a robot.
    pub async fn holds_any_spelling(&self, name: &str) -> Result<bool, AuthnError> {
        let folded = fold::fold(name);
        if self
            .backends
            .iter()
            .any(|b| b.account_names().iter().any(|n| fold::fold(n) == folded))
        {
            return Ok(true);
        }
        // A robot key's account is held too: an SSO person named like it would get its rights.
        if self.robot_holds(name) {
            return Ok(true);
        }
        match self.lookup(name).await {
            Ok(_) => Ok(true),
            Err(AuthnError::Unavailable(why)) => Err(AuthnError::Unavailable(why)),
            Err(_) => Ok(false),
        }
    }

    /// Number of backends, for the start-up summary.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// True when no backend is configured (only anonymous access, if any, works).
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use users::StaticUsers;

    fn hash(p: &str) -> String {
        bcrypt::hash(p, 4).unwrap()
    }

    fn chain(users_yaml: &str, htpasswd_text: &str) -> Authenticators {
        let users = StaticUsers::parse(users_yaml, std::path::Path::new("u.yaml")).unwrap();
        let anonymous = users.contains("");
        let ht =
            htpasswd::Htpasswd::parse(htpasswd_text, std::path::Path::new("t.htpasswd")).unwrap();
        Authenticators::new(vec![Arc::new(users), Arc::new(ht)], anonymous)
    }

    #[tokio::test]
    async fn first_backend_that_knows_the_account_decides() {
        let yaml = format!("alice:\n  password: \"{}\"\n", hash("right"));
        let ht = format!("alice:{}\nbob:{}\n", hash("other"), hash("bobpw"));
        let a = chain(&yaml, &ht);
        assert_eq!(a.login("alice", "right").await.unwrap().account, "alice");
        // htpasswd's password for alice must not work: static users know alice.
        assert_eq!(
            a.login("alice", "other").await,
            Err(AuthnError::BadPassword)
        );
        assert_eq!(a.login("bob", "bobpw").await.unwrap().account, "bob");
        assert_eq!(a.login("bob", "nope").await, Err(AuthnError::BadPassword));
        assert_eq!(a.login("carol", "x").await, Err(AuthnError::UnknownAccount));
    }

    #[tokio::test]
    async fn reload_keeps_cached_logins_only_for_unchanged_accounts() {
        let (ha, hb) = (hash("a-pw"), hash("b-pw"));
        let old = chain(
            &format!("alice:\n  password: \"{ha}\"\nbob:\n  password: \"{hb}\"\n"),
            "",
        );
        old.login("alice", "a-pw").await.unwrap();
        old.login("bob", "b-pw").await.unwrap();
        assert_eq!(old.cache.len(), 2);
        // bob's password changes; alice's entry is untouched.
        let mut new = chain(
            &format!(
                "alice:\n  password: \"{ha}\"\nbob:\n  password: \"{}\"\n",
                hash("new")
            ),
            "",
        );
        new.adopt_cache(&old);
        assert_eq!(new.cache.len(), 1);
        let stamp = new.fingerprint("alice").unwrap();
        assert!(new
            .cache
            .get(&new.cache.key("alice", "a-pw"), stamp)
            .is_some());
        assert_eq!(new.login("bob", "b-pw").await, Err(AuthnError::BadPassword));
        // Labels changing also drops the entry.
        let mut newer = chain(
            &format!("alice:\n  password: \"{ha}\"\n  labels: {{g: [x]}}\n"),
            "",
        );
        newer.adopt_cache(&new);
        assert_eq!(newer.cache.len(), 0);
    }

    #[tokio::test]
    async fn a_login_finishing_under_the_old_state_does_not_serve_the_new_one() {
        let hc = hash("old-pw");
        let old = chain(
            &format!("carol:\n  password: \"{hc}\"\ndave:\n  password: \"{hc}\"\n"),
            "",
        );
        // The new state: carol removed, dave labelled. It takes over the cache first...
        let mut new = chain(
            &format!("dave:\n  password: \"{hc}\"\n  labels: {{status: [blocked]}}\n"),
            "",
        );
        new.adopt_cache(&old);
        // ...then logins that started under the old state finish and remember themselves in
        // the shared cache.
        assert_eq!(old.login("carol", "old-pw").await.unwrap().account, "carol");
        assert!(old.login("dave", "old-pw").await.unwrap().labels.is_empty());
        assert_eq!(new.cache.len(), 2);
        // The new state does not take them.
        assert_eq!(
            new.login("carol", "old-pw").await,
            Err(AuthnError::UnknownAccount)
        );
        let dave = new.login("dave", "old-pw").await.unwrap();
        assert_eq!(dave.labels["status"], vec!["blocked"]);
        // And the old state's entries keep serving the old state only.
        assert!(old.login("dave", "old-pw").await.unwrap().labels.is_empty());
    }

    /// A backend that finds accounts case-insensitively, as a directory does.
    struct Loose;

    #[async_trait]
    impl Authenticator for Loose {
        async fn authenticate(&self, account: &str, password: &str) -> Lookup {
            if password == "loose-pw" {
                Lookup::Decided(Ok(Identity {
                    account: account.to_owned(),
                    labels: Labels::new(),
                    via: None,
                }))
            } else {
                Lookup::Decided(Err(AuthnError::BadPassword))
            }
        }
        async fn lookup(&self, account: &str) -> Lookup {
            self.authenticate(account, "loose-pw").await
        }
        fn name(&self) -> &str {
            "loose"
        }
        fn matches_loosely(&self) -> bool {
            true
        }
    }

    /// A backend that answers for another name than the one asked.
    struct Renaming;

    #[async_trait]
    impl Authenticator for Renaming {
        async fn authenticate(&self, account: &str, _: &str) -> Lookup {
            Lookup::Decided(Ok(Identity {
                account: account.to_lowercase(),
                labels: Labels::new(),
                via: None,
            }))
        }
        async fn lookup(&self, account: &str) -> Lookup {
            self.authenticate(account, "").await
        }
        fn name(&self) -> &str {
            "renaming"
        }
    }

    #[tokio::test]
    async fn exact_accounts_shadow_every_spelling_in_a_loose_backend() {
        let users = StaticUsers::parse(
            &format!("bach:\n  password: \"{}\"\n", hash("static-pw")),
            std::path::Path::new("u.yaml"),
        )
        .unwrap();
        let ht = htpasswd::Htpasswd::parse(
            &format!("Telemann:{}\n", hash("ht-pw")),
            std::path::Path::new("t"),
        )
        .unwrap();
        let a = Authenticators::new(vec![Arc::new(users), Arc::new(ht), Arc::new(Loose)], false);
        assert_eq!(a.login("bach", "static-pw").await.unwrap().account, "bach");
        assert_eq!(
            a.login("bach", "loose-pw").await,
            Err(AuthnError::BadPassword)
        );
        for spelling in [
            "Bach",
            "BACH",
            "ｂａｃｈ",
            "ba\u{AD}ch",
            "telemann",
            "ＴＥＬＥＭＡＮＮ",
        ] {
            assert_eq!(
                a.login(spelling, "loose-pw").await,
                Err(AuthnError::BadPassword),
                "{spelling:?}"
            );
            assert_eq!(
                a.lookup(spelling).await,
                Err(AuthnError::UnknownAccount),
                "{spelling:?}"
            );
        }
        // Names no exact backend holds are the loose backend's.
        assert_eq!(
            a.login("Mozart", "loose-pw").await.unwrap().account,
            "Mozart"
        );
        assert_eq!(a.lookup("Mozart").await.unwrap().account, "Mozart");
    }

    #[tokio::test]
    async fn an_identity_for_another_name_is_refused() {
        let a = Authenticators::new(vec![Arc::new(Renaming)], false);
        assert_eq!(a.login("abc", "x").await.unwrap().account, "abc");
        assert!(matches!(
            a.login("ABC", "x").await,
            Err(AuthnError::Unavailable(_))
        ));
        assert!(matches!(
            a.lookup("ABC").await,
            Err(AuthnError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn lookup_finds_accounts_without_a_password() {
        let yaml = format!(
            "alice:\n  password: \"{}\"\n  labels: {{team: [a]}}\n",
            hash("pw")
        );
        let a = chain(&yaml, &format!("bob:{}\n", hash("x")));
        assert_eq!(a.lookup("alice").await.unwrap().labels["team"], vec!["a"]);
        assert_eq!(a.lookup("bob").await.unwrap().account, "bob");
        assert_eq!(a.lookup("carol").await, Err(AuthnError::UnknownAccount));
        assert_eq!(a.lookup("").await, Err(AuthnError::UnknownAccount));
    }

    #[tokio::test]
    async fn the_credential_stamp_follows_the_stored_hash_not_the_labels() {
        let (ha, hb) = (hash("a-pw"), hash("b-pw"));
        let before = chain(
            &format!("alice:\n  password: \"{ha}\"\nbob:\n  password: \"{hb}\"\n"),
            &format!("carol:{}\n", hash("c-pw")),
        );
        let (id, alice) = before.current("alice").await.unwrap();
        assert_eq!(id.account, "alice");
        let (_, bob) = before.current("bob").await.unwrap();
        let (_, carol) = before.current("carol").await.unwrap();
        assert_ne!(alice, bob);
        assert_ne!(bob, carol);
        // Same password, new hash (as `hash-password` makes): a new stamp. Labels and other
        // accounts do not matter.
        let after = chain(
            &format!(
                "alice:\n  password: \"{}\"\nbob:\n  password: \"{hb}\"\n  labels: {{g: [x]}}\n",
                hash("a-pw")
            ),
            "",
        );
        assert_ne!(after.current("alice").await.unwrap().1, alice);
        assert_eq!(after.current("bob").await.unwrap().1, bob);
        assert_eq!(
            after.current("carol").await,
            Err(AuthnError::UnknownAccount)
        );
        // The same hash moved to another backend is another credential.
        let moved = chain("{}", &format!("bob:{hb}\n"));
        assert_ne!(moved.current("bob").await.unwrap().1, bob);
        // Cached answers carry the stamp too.
        assert_eq!(before.current_cached("bob").await.unwrap().1, bob);
        assert_eq!(before.current_cached("bob").await.unwrap().1, bob);
    }

    #[tokio::test]
    async fn anonymous_only_when_configured() {
        let a = chain("{}", "");
        assert_eq!(
            a.authenticate(&Credentials::None).await,
            Err(AuthnError::Missing)
        );
        assert_eq!(
            a.login("", "anything").await,
            Err(AuthnError::UnknownAccount)
        );
        let a = chain("\"\": {}\n", "");
        assert!(a
            .authenticate(&Credentials::None)
            .await
            .unwrap()
            .is_anonymous());
        assert!(a.login("", "anything").await.unwrap().is_anonymous());
    }

    #[tokio::test]
    async fn labels_come_with_the_identity_and_survive_the_cache() {
        let yaml = format!(
            "users:\n  ci:\n    password: \"{}\"\n    labels: {{groups: [builders, qa]}}\nacl: []\n",
            hash("pw")
        );
        let a = chain(&yaml, "");
        for _ in 0..2 {
            let id = a.login("ci", "pw").await.unwrap();
            assert_eq!(id.labels["groups"], vec!["builders", "qa"]);
        }
    }

    #[tokio::test]
    async fn a_key_for_an_account_in_no_backend_carries_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let sso: Labels = [("groups".to_string(), vec!["platform".to_string()])].into();
        let (_, jane) = keys::create_sso(&path, "jane", &[], None, "", sso.clone()).unwrap();
        let (_, alice) = keys::create_sso(&path, "alice", &[], None, "", sso.clone()).unwrap();
        let yaml = format!(
            "alice:\n  password: \"{}\"\n  labels: {{team: [a]}}\n",
            hash("pw")
        );
        let a = chain(&yaml, "").with_keys(Arc::new(keys::KeyStore::load(&path).unwrap()));
        // jane (single sign-on) is in no backend: her key carries her labels.
        assert_eq!(a.login("", &jane).await.unwrap().labels, sso);
        // A backend holds alice: a single sign-on key of that name is someone else's.
        assert!(a.login("", &alice).await.is_err());
    }

    #[tokio::test]
    async fn a_robot_keys_account_is_held_in_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        keys::create_robot(&path, "deployer", &[], None, "").unwrap();
        let yaml = format!("alice:\n  password: \"{}\"\n", hash("pw"));
        let a = chain(&yaml, "").with_keys(Arc::new(keys::KeyStore::load(&path).unwrap()));
        assert_eq!(a.holds_any_spelling("deployer").await, Ok(true));
        assert_eq!(a.holds_any_spelling("Deployer").await, Ok(true));
        assert_eq!(a.holds_any_spelling("someone").await, Ok(false));
        // The check CI tokens go through too.
        assert!(a.robot_holds("ｄｅｐｌｏｙｅｒ"));
        assert!(!a.robot_holds("alice"));
    }

    /// A chain with alice (static, labelled) and access keys for alice and a robot.
    fn chain_with_keys() -> (Authenticators, String, String, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let (_, alice_key) =
            keys::create(&path, "alice", &["repository:a/*:pull".into()], None, "").unwrap();
        let (_, robot_key) = keys::create_robot(&path, "robot", &[], None, "").unwrap();
        let (_, orphan_key) = keys::create(&path, "gone", &[], None, "").unwrap();

        let yaml = format!(
            "alice:\n  password: \"{}\"\n  labels: {{team: [a]}}\n",
            hash("pw")
        );
        let store = keys::KeyStore::load(&path).unwrap();
        let a = chain(&yaml, "").with_keys(Arc::new(store));
        (a, alice_key, robot_key, orphan_key, dir)
    }

    #[tokio::test]
    async fn a_single_sign_on_key_carries_its_labels_until_a_backend_takes_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let labels: Labels = [("groups".to_string(), vec!["platform".to_string()])].into();
        let (record, secret) =
            keys::create_sso(&path, "pat", &[], None, "laptop", labels.clone()).unwrap();
        assert_eq!(keys::list(&path).unwrap(), vec![record]);
        let store = Arc::new(keys::KeyStore::load(&path).unwrap());
        // pat is in no backend: the recorded labels are the key's.
        let a = chain("{}", "").with_keys(store.clone());
        let id = a.login("pat", &secret).await.unwrap();
        assert_eq!((id.account.as_str(), &id.labels), ("pat", &labels));
        // A password account named pat is someone else: the key stops working.
        let yaml = format!("pat:\n  password: \"{}\"\n", hash("pw"));
        let b = chain(&yaml, "").with_keys(store);
        assert!(matches!(
            b.login("pat", &secret).await,
            Err(AuthnError::KeyAccountGone(_))
        ));
        // Labels with hidden characters are not written.
        let bad: Labels = [("g".to_string(), vec!["a\u{202E}b".to_string()])].into();
        assert!(keys::create_sso(&path, "pat", &[], None, "", bad).is_err());
        assert_eq!(keys::list(&path).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_key_logs_in_as_its_account_whatever_the_username() {
        let (a, alice_key, robot_key, orphan_key, _dir) = chain_with_keys();
        for user in ["alice", "bob", "", "oidc"] {
            let id = a.login(user, &alice_key).await.unwrap();
            assert_eq!(id.account, "alice");
            assert_eq!(id.labels["team"], vec!["a"], "labels come from the backend");
            assert!(id.key_id().is_some());
            // Narrowed to the key's scope.
            assert_eq!(
                id.narrow("repository", "a/x", vec!["pull".into(), "push".into()]),
                vec!["pull"]
            );
            assert!(id
                .narrow("repository", "b/x", vec!["pull".into()])
                .is_empty());
        }
        let robot = a.login("x", &robot_key).await.unwrap();
        assert_eq!(robot.account, "robot");
        assert!(robot.labels.is_empty());
        // A personal key whose account is gone does not work.
        assert!(matches!(
            a.login("gone", &orphan_key).await,
            Err(AuthnError::KeyAccountGone(_))
        ));
        // A key-shaped password that is no key is refused, never tried as alice's password.
        let fake = keys::secret::generate();
        assert_eq!(a.login("alice", &fake).await, Err(AuthnError::UnknownKey));
        // The password still works, with no narrowing.
        let pw = a.login("alice", "pw").await.unwrap();
        assert!(pw.via.is_none());
        // Key logins are never remembered in the login cache.
        assert!(a.cached_login("alice", &alice_key).is_none());
    }

    #[tokio::test]
    async fn without_keys_configured_a_key_shaped_password_is_a_password() {
        let yaml = format!("alice:\n  password: \"{}\"\n", hash("pw"));
        let a = chain(&yaml, "");
        assert_eq!(a.secret_kind(&keys::secret::generate()), Secret::Password);
        assert_eq!(
            a.login("alice", &keys::secret::generate()).await,
            Err(AuthnError::BadPassword)
        );
    }

    #[tokio::test]
    async fn cache_does_not_accept_a_different_password() {
        let yaml = format!("alice:\n  password: \"{}\"\n", hash("right"));
        let a = chain(&yaml, "");
        a.login("alice", "right").await.unwrap();
        assert_eq!(
            a.login("alice", "wrong").await,
            Err(AuthnError::BadPassword)
        );
        assert_eq!(
            a.login("alice", "right ").await,
            Err(AuthnError::BadPassword)
        );
    }
}
