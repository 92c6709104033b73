//! Who is asking: Basic credentials through the login path (with the failed-login limits
//! around it), or a Bearer token's subject looked up again.

use super::*;

pub use crate::errors::Refusal;

/// `Basic realm="…"` with the realm's quotes and backslashes escaped.
/// The request's credentials. Two `Authorization` headers are refused: which one would a
/// backend read?
pub(super) fn authorization(
    req: &RequestHeader,
) -> std::result::Result<Credentials, credentials::CredentialsError> {
    let values: Vec<_> = req.headers.get_all("authorization").iter().collect();
    match values.as_slice() {
        [] => credentials::parse(None),
        [one] => credentials::parse(Some(one.as_bytes())),
        _ => Err(credentials::CredentialsError::UnsupportedScheme),
    }
}

impl Portcullis {
    /// Who is asking on `/v2`: a Bearer token's subject (with its claims) or a login.
    pub(super) async fn identify(
        &self,
        state: &State,
        creds: &Credentials,
        client: ClientAddr,
    ) -> std::result::Result<(Identity, Option<Arc<Claims>>), Refusal> {
        let Credentials::Bearer(token) = creds else {
            return self.login(state, creds, client).await.map(|i| (i, None));
        };
        let bad_token = |reason: String| {
            self.metrics.auth_failure(AuthFailure::BadToken);
            Refusal {
                error: OciError::unauthorized(),
                headers: vec![],
                outcome: Outcome::Unauthenticated,
                reason,
            }
        };
        let Some(service) = &state.token else {
            return Err(bad_token("Bearer token without a token service".into()));
        };
        let claims = match service.verify(token) {
            Ok(claims) => claims,
            Err(e) => {
                tracing::debug!(error = %e, "Bearer token refused");
                return Err(bad_token(format!("Bearer token refused: {e}")));
            }
        };
        // The account must still exist; its labels are the current ones, so the ACL is
        // evaluated as it stands now, not as it stood when the token was issued. A token
        // issued to an access key needs the key to be live still; one issued to a CI job
        // needs its issuer to be trusted still, and carries the job's labels.
        let found = match &claims.via {
            None => state.authn.lookup_cached(&claims.sub).await,
            Some(ViaClaim::Key { id }) => state.authn.key_by_id(id, &claims.sub).await,
            Some(ViaClaim::Ci { iss, labels }) => {
                state
                    .authn
                    .federated_bearer(iss, &claims.sub, labels, claims.exp)
            }
        };
        match found {
            Ok(identity) => Ok((identity, Some(claims))),
            Err(AuthnError::Unavailable(why)) => Err(self.refusal(AuthnError::Unavailable(why))),
            Err(e) => Err(bad_token(format!("Bearer token for {:?}: {e}", claims.sub))),
        }
    }

    /// Checks credentials, with the failed-login limits around it. The one login path for
    /// `/v2` Basic credentials and the web UI's login form (the token endpoint applies the
    /// same lockout itself).
    pub(crate) async fn login(
        &self,
        state: &State,
        creds: &Credentials,
        client: ClientAddr,
    ) -> std::result::Result<Identity, Refusal> {
        let Credentials::Basic { account, password } = creds else {
            return state
                .authn
                .authenticate(creds)
                .await
                .map_err(|e| self.refusal(e));
        };
        let key = client.key();
        match lockout::guarded_login(Some(&self.lockout), &state.authn, account, password, key)
            .await
        {
            Ok(identity) => Ok(identity),
            Err(lockout::Refused::Locked { remaining }) => {
                self.metrics.auth_failure(AuthFailure::LockedOut);
                Err(Refusal {
                    error: OciError::new(
                        429,
                        "TOOMANYREQUESTS",
                        "too many failed logins; try again later",
                    ),
                    headers: vec![(
                        "Retry-After",
                        lockout::retry_after_secs(remaining).to_string(),
                    )],
                    outcome: Outcome::Unauthenticated,
                    reason: "locked out after too many failed logins".into(),
                })
            }
            Err(lockout::Refused::Failed { error, locked_now }) => {
                if locked_now {
                    self.metrics.lockout();
                    tracing::warn!(account = %account, client = %client, "too many failed logins: locked out");
                }
                Err(self.refusal(error))
            }
        }
    }

    /// The answer to a failed login: 401, or 503 when a backend (LDAP) could not answer —
    /// failing closed, but telling the user it is not their password.
    fn refusal(&self, e: AuthnError) -> Refusal {
        if let Some(reason) = AuthFailure::of(&e) {
            self.metrics.auth_failure(reason);
        }
        let reason = e.to_string();
        match e {
            AuthnError::Unavailable(why) => {
                tracing::warn!(reason = %why, "login refused: authentication backend unavailable");
                Refusal {
                    error: OciError::new(
                        503,
                        "UNAVAILABLE",
                        "the login service is unavailable; try again later",
                    ),
                    headers: vec![("Retry-After", "5".into())],
                    outcome: Outcome::Error,
                    reason,
                }
            }
            _ => Refusal {
                error: OciError::unauthorized(),
                headers: vec![],
                outcome: Outcome::Unauthenticated,
                reason,
            },
        }
    }
}
