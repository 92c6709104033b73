//! `auth.lockout` as the failed-login limits read it (parsed and checked by [`crate::config`]).

use std::time::Duration;

use ipnet::IpNet;

/// `auth.lockout`: failed logins per (account, address), per address and per account within a
/// window (the model: [`crate::authn::lockout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Failures of one account from one address that lock that pair; 0 turns lockout off.
    pub failures: u32,
    /// The window failures are counted in, and how long a lockout lasts.
    pub window: Duration,
    /// Client networks never locked out (monitoring, the office behind NAT).
    pub exempt: Vec<IpNet>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            failures: 10,
            window: Duration::from_secs(300),
            exempt: Vec::new(),
        }
    }
}
