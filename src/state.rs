//! Everything loaded from files — users, htpasswd, ACL — built and validated as one unit, so a
//! request always sees a consistent set and a bad file never half-applies.

use std::sync::Arc;

use crate::acl::{Acl, Labels};
use crate::acl_tests::{self, Suite};
use crate::authn::federation::Federation;
use crate::authn::htpasswd::Htpasswd;
use crate::authn::keys::KeyStore;
use crate::authn::users::StaticUsers;
use crate::authn::{Authenticator, Authenticators};
use crate::config::{Config, UsersSource};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::token::TokenService;

/// The loaded set a request is decided under.
pub struct State {
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// Who may log in.
    pub authn: Authenticators,
    /// What they may do.
    pub acl: Acl,
    /// The token service, when `auth.token` is configured (its key reloads with the rest).
    pub token: Option<Arc<TokenService>>,
    /// The single sign-on provider, when `auth.oidc` is configured (its client secret reloads
    /// with the rest; what it discovered is fetched again after a reload).
    pub oidc: Option<Arc<crate::authn::oidc::Provider>>,
    /// The static users, whose labels ACL tests use when a case states none.
    static_users: Option<Arc<StaticUsers>>,
}

impl State {
    /// Decides every case of `suite` under this state's ACL, exactly as requests are decided.
    /// A case without `labels` uses the account's labels from the static users (LDAP and
    /// htpasswd accounts have none here: state them in the case).
    pub fn test<'a>(&self, suite: &'a Suite) -> acl_tests::Report<'a> {
        let labels_of = |account: &str| -> Labels {
            self.static_users
                .as_ref()
                .and_then(|u| u.get(account))
                .map(|u| u.labels.clone())
                .unwrap_or_default()
        };
        acl_tests::run(suite, &self.acl, &labels_of, self.service())
    }

    /// The service name ACL rules see: the token service's, or docker_auth's default.
    pub fn service(&self) -> &str {
        self.token
            .as_ref()
            .map(|t| t.service())
            .unwrap_or(crate::policy::DEFAULT_SERVICE)
    }
}

/// A freshly built state and the warnings its loaders raised.
pub struct Built {
    /// The state.
    pub state: State,
    /// Non-fatal findings (e.g. a regex docker_auth would read differently).
    pub warnings: Vec<Diagnostic>,
}

/// Counts for the start-up and `check` summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Static users.
    pub users: usize,
    /// htpasswd accounts, all files together.
    pub htpasswd_users: usize,
    /// ACL rules.
    pub rules: usize,
    /// ACL test cases, all of which passed.
    pub acl_tests: usize,
    /// Access keys in `auth.keys` (`None` when keys are off).
    pub keys: Option<usize>,
}

impl State {
    /// Loads every file `config` points at and runs the ACL tests (`acl_tests`) against the
    /// result: a set that breaks a stated case is refused like one that does not parse, so a
    /// start, `check` or a reload never puts it in force. All errors from all files (and every
    /// failing case) are returned together.
    pub fn build(config: Arc<Config>) -> Result<(Built, Summary), Diagnostics> {
        let (built, mut summary) = State::build_untested(config)?;
        let Some(path) = &built.state.config.acl_tests else {
            return Ok((built, summary));
        };
        let suite = Suite::load(path)?;
        let report = built.state.test(&suite);
        let failures: Vec<Diagnostic> = report
            .results
            .iter()
            .filter_map(|r| r.diagnostic())
            .collect();
        if !failures.is_empty() {
            return Err(Diagnostics(failures));
        }
        summary.acl_tests = suite.len();
        Ok((built, summary))
    }

    /// [`State::build`] without running the ACL tests: for `portcullis test`, which reports
    /// every case itself instead of refusing the set.
    pub fn build_untested(config: Arc<Config>) -> Result<(Built, Summary), Diagnostics> {
        let mut errors = Vec::new();
        let mut backends: Vec<Arc<dyn Authenticator>> = Vec::new();
        let mut summary = Summary {
            users: 0,
            htpasswd_users: 0,
            rules: 0,
            acl_tests: 0,
            keys: None,
        };
        let mut anonymous = false;
        // The TLS pair is loaded exactly as `serve` loads it (a key that does not match the
        // certificate, an empty or garbage certificate), so `check` — the systemd unit's
        // `ExecStartPre` — fails where the start would.
        if let Some(tls) = &config.tls {
            if let Err(d) = crate::tls::load(&tls.cert, &tls.key) {
                errors.push(d);
            }
        }
        // The upstream's CA, client certificate and password file, read as `serve` reads
        // them (it does not connect: `check` adds a handshake of its own).
        for entry in &config.upstreams {
            if let Err(e) = crate::upstream::Upstream::load_files(&entry.settings) {
                errors.extend(e.0);
            }
        }
        let users = match &config.auth.users {
            None => None,
            Some(UsersSource::Inline(u)) => Some(u.clone()),
            Some(UsersSource::File(p)) => match StaticUsers::load(p) {
                Ok(u) => Some(u),
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            },
        };
        let mut warnings = config.warnings.clone();
        if let (Some(u), Some(UsersSource::File(p))) = (&users, &config.auth.users) {
            if u.is_empty() {
                warnings.push(Diagnostic::new(
                    p,
                    "no users in the users file: no static account can log in",
                ));
            }
        }
        let users = users.map(Arc::new);
        if let Some(users) = &users {
            summary.users = users.len();
            anonymous = users.contains("");
            backends.push(users.clone());
        }
        for path in &config.auth.htpasswd {
            match Htpasswd::load(path) {
                Ok(h) => {
                    if h.is_empty() {
                        warnings.push(Diagnostic::new(
                            path,
                            "no accounts in the htpasswd file: none of its accounts can log in",
                        ));
                    }
                    summary.htpasswd_users += h.len();
                    backends.push(Arc::new(h));
                }
                Err(e) => errors.extend(e.0),
            }
        }
        if let Some(ldap) = &config.auth.ldap {
            // Reads the bind password file (errors keyed `auth.ldap.bind_password_file`) and
            // the CA; does not connect.
            match crate::authn::ldap::LdapAuthenticator::load(ldap) {
                Ok(l) => backends.push(Arc::new(l)),
                Err(e) => errors.extend(e.0),
            }
        }
        // A keys file with a bad line is refused like any other file (file:line), so a reload
        // keeps the keys in force and `check` fails.
        let keys = match &config.auth.keys {
            None => None,
            Some(path) => match KeyStore::load(path) {
                Ok(k) => {
                    summary.keys = Some(k.len());
                    Some(Arc::new(k))
                }
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            },
        };
        let federation = if config.auth.federation.is_empty() {
            None
        } else {
            match Federation::load(&config.auth.federation, &config.file) {
                Ok(f) => Some(Arc::new(f)),
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            }
        };
        let token = match &config.auth.token {
            None => None,
            Some(t) => match TokenService::load(t) {
                Ok(service) => Some(Arc::new(service)),
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            },
        };
        // Reads the client secret and the CA bundle; does not contact the provider.
        let oidc = match &config.auth.oidc {
            None => None,
            Some(o) => match crate::authn::oidc::Provider::load(o) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            },
        };
        let acl = match Acl::load(&config.acl) {
            Ok(loaded) => {
                warnings.extend(loaded.warnings);
                Some(loaded.acl)
            }
            Err(e) => {
                errors.extend(e.0);
                None
            }
        };
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let acl = acl.expect("no errors means the ACL loaded");
        summary.rules = acl.len();
        let mut authn = Authenticators::new(backends, anonymous);
        if let Some(keys) = keys {
            authn = authn.with_keys(keys);
        }
        if let Some(federation) = federation {
            authn = authn.with_federation(federation);
        }
        Ok((
            Built {
                state: State {
                    config,
                    authn,
                    acl,
                    token,
                    oidc,
                    static_users: users,
                },
                warnings,
            },
            summary,
        ))
    }
}
