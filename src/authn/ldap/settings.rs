//! `auth.ldap` as the LDAP backend reads it (parsed and checked by [`crate::config`], or read
//! from a docker_auth `ldap_auth:` section by [`crate::docker_auth`]).

use std::path::PathBuf;
use std::time::Duration;

/// `auth.ldap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ldap {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub start_tls: bool,
    /// A private CA for the LDAP server's certificate.
    pub ca_certificate: Option<PathBuf>,
    /// The service account that searches.
    pub bind_dn: String,
    /// File holding its password (trailing newline stripped).
    pub bind_password_file: PathBuf,
    /// Search base.
    pub base: String,
    /// Search filter with `{account}`.
    pub filter: String,
    /// The attribute whose value (read from the entry found, never the typed name) is the
    /// account name: the login name must equal it exactly, so each person has one name for
    /// the ACL, the labels, the lockout, the caches, tokens and the audit log.
    pub account_attribute: String,
    /// Label name → attribute.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Per-operation timeout.
    pub timeout: Duration,
    /// How long a successful login is remembered.
    pub cache: Duration,
}
