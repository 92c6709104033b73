//! Keyless CI (`auth.federation`): a CI job logs in with the ID token its platform gives it
//! (GitHub Actions, GitLab CI), verified against the issuer's published keys, and becomes
//! an account built from the token's claims.

/// The trusted issuers.
#[derive(Debug, Default)]
pub struct Federation {
    issuers: Vec<String>,
}

impl Federation {
    /// Whether tokens of `issuer` are accepted.
    pub fn trusts(&self, issuer: &str) -> bool {
        self.issuers.iter().any(|i| i == issuer)
    }
}
