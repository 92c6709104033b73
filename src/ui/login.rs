//! `POST login`: CSRF, then the proxy's login path (lockout included), then a session bound to
//! the account's current credential; and the login form itself.

use super::*;

impl Ui {
    /// The login form with a CSRF token, setting the double-submit cookie when it is missing.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn login_form(
        &self,
        state: &State,
        request: &Request,
        tls: bool,
        account: &str,
        problem: Option<&str>,
        status: u16,
        outcome: Outcome,
    ) -> Answer {
        let ui = &state.config.ui;
        let chrome = Chrome {
            title: &ui.title,
            base: &ui.path,
            account: None,
            csrf: None,
            admin: false,
            keys: false,
        };
        let existing = request
            .cookie(csrf::LOGIN_COOKIE)
            .filter(|n| csrf::is_nonce(n))
            .map(str::to_owned);
        let nonce = existing.clone().unwrap_or_else(session::random_text);
        let token = csrf::login_token(&self.key, &nonce);
        let mut answer = Answer::html(
            status,
            pages::login(
                &chrome,
                &token,
                account,
                problem,
                state
                    .oidc
                    .as_ref()
                    .map(|p| sso::provider_name(&p.settings().issuer))
                    .as_deref(),
            ),
            outcome,
        );
        if existing.is_none() {
            answer.headers.push((
                "Set-Cookie",
                session::set_cookie(csrf::LOGIN_COOKIE, &nonce, &ui.path, LOGIN_COOKIE_AGE, tls),
            ));
        }
        answer
    }

    /// `POST login`: CSRF, then the proxy's login path (lockout included), then a session.
    pub(super) async fn login(
        &self,
        proxy: &dyn Gateway,
        state: &State,
        request: &Request,
        client: ClientAddr,
        now: SystemTime,
    ) -> Answer {
        let ui = &state.config.ui;
        let tls = proxy.tls();
        let account = request.field("account").unwrap_or("").trim().to_owned();
        let password = request.field("password").unwrap_or("").to_owned();
        let valid_csrf = request
            .cookie(csrf::LOGIN_COOKIE)
            .filter(|n| csrf::is_nonce(n))
            .is_some_and(|nonce| {
                csrf::matches(
                    &csrf::login_token(&self.key, nonce),
                    request.field(csrf::FIELD),
                )
            });
        if !valid_csrf {
            return self.login_form(
                state,
                request,
                tls,
                &account,
                Some("the form had expired. Please try again."),
                403,
                Outcome::Denied,
            );
        }
        if account.is_empty() || password.is_empty() {
            return self
                .login_form(
                    state,
                    request,
                    tls,
                    &account,
                    Some("enter an account and a password."),
                    401,
                    Outcome::Unauthenticated,
                )
                .account(None);
        }
        let creds = Credentials::Basic {
            account: account.clone(),
            password,
        };
        // Read before the password check: a password changed while the login runs leaves a
        // session bound to the old credential, which ends at once.
        let stamp = state.authn.current(&account).await.map(|(_, stamp)| stamp);
        match proxy.login(state, &creds, client).await {
            // An access key or a CI token is not a way into the web UI: a session is bound
            // to the account, and would carry the account's full rights past the key's
            // scopes (and past its revocation).
            Ok(identity) if identity.via.is_some() => self
                .login_form(
                    state,
                    request,
                    tls,
                    &account,
                    Some("access keys and CI tokens cannot sign in here; use the account's password."),
                    401,
                    Outcome::Unauthenticated,
                )
                .account(Some(&identity.account)),
            Ok(identity) => {
                let Ok(stamp) = stamp else {
                    return self.login_form(
                        state,
                        request,
                        tls,
                        &account,
                        Some("the login service is unavailable. Try again later."),
                        503,
                        Outcome::Error,
                    );
                };
                let (value, _) = session::issue(
                    &self.key,
                    &identity.account,
                    &stamp,
                    ui.session_lifetime,
                    now,
                );
                Answer::redirect(ui.path.clone(), Outcome::Allowed)
                    .start_session(&value, ui, tls)
                    .account(Some(&identity.account))
            }
            Err(refusal) => {
                let status = refusal.error.status;
                let problem = match status {
                    429 => "too many failed logins. Try again later.",
                    503 => "the login service is unavailable. Try again later.",
                    _ => "wrong account or password.",
                };
                let mut answer = self
                    .login_form(
                        state,
                        request,
                        tls,
                        &account,
                        Some(problem),
                        status,
                        refusal.outcome,
                    )
                    .account(Some(&account));
                answer.headers.extend(refusal.headers);
                answer
            }
        }
    }
}
