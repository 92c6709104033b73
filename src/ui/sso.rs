//! Single sign-on in the UI: `GET sso/start` sends the browser to the provider, `GET
//! sso/callback` takes it back and makes the ordinary UI session.
//!
//! What ties the two together is the flow cookie [`FLOW_COOKIE`]: `state`, `nonce` and the
//! PKCE verifier, signed with the session key and valid for [`FLOW_AGE`] seconds. Nothing is
//! kept on the server, so with a shared `ui.session_key_file` any replica finishes a flow any
//! other began. The callback is accepted only with that cookie and the same `state` (a
//! callback address forged for someone else's browser — login CSRF — has neither), and the
//! cookie is deleted by the callback's answer whatever happens.
//!
//! The flow cookie is `SameSite=Lax` (the provider's redirect back is a cross-site
//! navigation); the session cookie stays `Strict`, so the callback answers with a page that
//! moves on to the UI by itself (a same-site navigation, which carries it) instead of a
//! redirect that would still count as cross-site.
//!
//! The start is a plain link (a `GET`), not a form: `form-action 'self'` would stop a form's
//! redirect to the provider, and starting a sign-in on someone's behalf gains nothing — the
//! provider signs in whoever is at the browser.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;

use super::*;
use crate::authn::oidc::{OidcError, Provider};

/// The cookie that carries one sign-in from start to callback.
pub const FLOW_COOKIE: &str = "portcullis_sso";
/// How long a sign-in may take at the provider, in seconds.
pub const FLOW_AGE: u64 = 600;

/// What the flow cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Flow {
    #[serde(rename = "s")]
    state: String,
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "v")]
    verifier: String,
    #[serde(rename = "i")]
    issued: u64,
}

fn seal(key: &Key, flow: &Flow) -> String {
    let payload = B64.encode(serde_json::to_vec(flow).expect("flow serializes"));
    let sig = key.mac_text("sso-flow", payload.as_bytes());
    format!("{payload}.{sig}")
}

fn open(key: &Key, value: &str, now: SystemTime) -> Option<Flow> {
    if value.len() > 1024 {
        return None;
    }
    let (payload, sig) = value.split_once('.')?;
    let sig = B64.decode(sig).ok()?;
    if !csrf::bytes_equal(&key.mac("sso-flow", payload.as_bytes()), &sig) {
        return None;
    }
    let flow: Flow = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    let now = session::unix(now);
    (now >= flow.issued && now < flow.issued.saturating_add(FLOW_AGE)).then_some(flow)
}

/// The callback address: `auth.oidc.redirect_url`, or ours as clients reach us.
fn redirect_url(
    proxy: &dyn Gateway,
    session: &Session,
    state: &State,
    provider: &Provider,
) -> String {
    if let Some(url) = &provider.settings().redirect_url {
        return url.clone();
    }
    let (scheme, host) = proxy.public_origin(session);
    format!("{scheme}://{host}{}sso/callback", state.config.ui.path)
}

/// How the provider is named on the sign-in button: the issuer's host (and path, when it
/// has one), which is what people recognise.
pub(super) fn provider_name(issuer: &str) -> String {
    let rest = issuer.strip_prefix("https://").unwrap_or(issuer);
    rest.trim_end_matches('/').to_owned()
}

impl Ui {
    /// `GET sso/start`: a fresh flow cookie, and off to the provider.
    pub(super) async fn sso_start(
        &self,
        proxy: &dyn Gateway,
        session: &Session,
        state: &State,
        request: &Request,
        now: SystemTime,
    ) -> Answer {
        let Some(provider) = &state.oidc else {
            return not_found(&anonymous(state));
        };
        let redirect = redirect_url(proxy, session, state, provider);
        match provider.begin(&redirect).await {
            Ok(started) => {
                let flow = Flow {
                    state: started.state,
                    nonce: started.nonce,
                    verifier: started.verifier,
                    issued: session::unix(now),
                };
                Answer::redirect(started.url, Outcome::Allowed).with(
                    "Set-Cookie",
                    session::set_cookie_same_site(
                        FLOW_COOKIE,
                        &seal(&self.key, &flow),
                        &state.config.ui.path,
                        FLOW_AGE,
                        proxy.tls(),
                        "Lax",
                    ),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "single sign-on could not start");
                self.login_form(
                    state,
                    request,
                    proxy.tls(),
                    "",
                    Some("the identity provider is unavailable. Try again later."),
                    503,
                    Outcome::Error,
                )
            }
        }
    }

    /// `GET sso/callback`: checks the flow, finishes it at the provider, refuses names that
    /// belong to password accounts, and makes the session.
    pub(super) async fn sso_callback(
        &self,
        proxy: &dyn Gateway,
        session: &Session,
        state: &State,
        request: &Request,
        now: SystemTime,
    ) -> Answer {
        let tls = proxy.tls();
        let ui = &state.config.ui;
        let clear_flow = session::set_cookie_same_site(FLOW_COOKIE, "", &ui.path, 0, tls, "Lax");
        let chrome = anonymous(state);
        let Some(provider) = &state.oidc else {
            return not_found(&chrome);
        };
        let fail = |status: u16, outcome: Outcome, message: &str| {
            Answer::html(status, pages::sso_failed(&chrome, message), outcome)
                .with("Set-Cookie", clear_flow.clone())
        };
        let flow = request
            .cookie(FLOW_COOKIE)
            .and_then(|value| open(&self.key, value, now));
        let Some(flow) = flow else {
            return fail(
                400,
                Outcome::Invalid,
                "this sign-in was not started in this browser, or took longer than 10 minutes.",
            );
        };
        if !csrf::matches(&flow.state, request.query("state")) {
            tracing::warn!("single sign-on callback with a state that is not this browser's");
            return fail(
                403,
                Outcome::Denied,
                "the answer does not belong to the sign-in this browser started.",
            );
        }
        // RFC 9207: a provider that names itself in the answer must name the configured one
        // (an answer from another provider the browser was sent to — a mix-up — is refused).
        if request
            .query("iss")
            .is_some_and(|iss| iss != provider.settings().issuer)
        {
            tracing::warn!("single sign-on callback from another issuer");
            return fail(
                403,
                Outcome::Denied,
                "the answer comes from another identity provider.",
            );
        }
        if let Some(error) = request.query("error") {
            let detail = request.query("error_description").unwrap_or(error);
            return fail(
                401,
                Outcome::Unauthenticated,
                &format!("the identity provider said: {detail}"),
            );
        }
        let Some(code) = request.query("code").filter(|c| !c.is_empty()) else {
            return fail(400, Outcome::Invalid, "the identity provider sent no code.");
        };
        let redirect = redirect_url(proxy, session, state, provider);
        let signed_in = match provider
            .finish(&redirect, code, &flow.nonce, &flow.verifier)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "single sign-on refused");
                return match e {
                    OidcError::Provider(_) => fail(
                        503,
                        Outcome::Error,
                        "the identity provider is unavailable. Try again later.",
                    ),
                    OidcError::Claims(c) => fail(403, Outcome::Denied, &c.to_string()),
                    _ => fail(
                        401,
                        Outcome::Unauthenticated,
                        "the identity provider's answer could not be verified.",
                    ),
                };
            }
        };
        let identity = signed_in.identity;
        match state.authn.holds_any_spelling(&identity.account).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(account = %identity.account, "single sign-on refused: a password account has this name");
                return fail(
                    403,
                    Outcome::Denied,
                    &format!(
                        "the account name {:?} belongs to a password account here; it cannot sign in through the identity provider.",
                        identity.account
                    ),
                )
                .account(Some(&identity.account));
            }
            Err(_) => {
                return fail(
                    503,
                    Outcome::Error,
                    "the login service is unavailable. Try again later.",
                )
            }
        }
        let sso = session::Sso {
            subject: signed_in.subject.clone(),
            labels: identity.labels.clone(),
        };
        let stamp = provider.stamp(&signed_in.subject);
        let Some((value, _)) = session::issue_sso(
            &self.key,
            &identity.account,
            &stamp,
            sso,
            ui.session_lifetime,
            now,
        ) else {
            return fail(
                403,
                Outcome::Denied,
                "the identity provider sent more labels (groups) than a session can carry.",
            )
            .account(Some(&identity.account));
        };
        tracing::info!(account = %identity.account, subject = %signed_in.subject, "single sign-on");
        Answer::html(
            200,
            pages::signed_in(&chrome, &identity.account),
            Outcome::Allowed,
        )
        .with("Set-Cookie", clear_flow)
        .start_session(&value, ui, tls)
        .account(Some(&identity.account))
    }

    /// The identity of a single sign-on session, if it still holds: the provider is still the
    /// one it signed in through (same issuer and client: the binding), and no password
    /// backend has come to hold its account name. `Err` when that cannot be told.
    pub(super) async fn sso_identity(
        &self,
        state: &State,
        claims: &Claims,
        sso: &session::Sso,
    ) -> Result<Option<Identity>, String> {
        let Some(provider) = &state.oidc else {
            return Ok(None);
        };
        if !session::is_bound(&self.key, claims, &provider.stamp(&sso.subject)) {
            return Ok(None);
        }
        match state.authn.lookup_cached(&claims.account).await {
            Ok(_) => Ok(None),
            Err(AuthnError::Unavailable(why)) => Err(why),
            Err(_) => Ok(Some(Identity {
                account: claims.account.clone(),
                labels: sso.labels.clone(),
                via: None,
            })),
        }
    }
}

/// The page chrome for nobody logged in.
fn anonymous(state: &State) -> Chrome<'_> {
    Chrome {
        title: &state.config.ui.title,
        base: &state.config.ui.path,
        account: None,
        csrf: None,
        admin: false,
        keys: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flow_cookies_are_signed_and_short_lived() {
        let key = Key::random();
        let now = SystemTime::now();
        let flow = Flow {
            state: "st".into(),
            nonce: "no".into(),
            verifier: "ve".into(),
            issued: session::unix(now),
        };
        let value = seal(&key, &flow);
        assert_eq!(open(&key, &value, now), Some(flow.clone()));
        assert_eq!(open(&Key::random(), &value, now), None);
        assert_eq!(
            open(&key, &value, now + Duration::from_secs(FLOW_AGE)),
            None
        );
        // A session signature is no flow signature, and the payload cannot be changed.
        let (payload, _) = value.split_once('.').unwrap();
        let other = key.mac_text("session", payload.as_bytes());
        assert_eq!(open(&key, &format!("{payload}.{other}"), now), None);
        let forged = B64.encode(
            String::from_utf8(B64.decode(payload).unwrap())
                .unwrap()
                .replace("\"st\"", "\"xx\""),
        );
        let sig = value.split_once('.').unwrap().1;
        assert_eq!(open(&key, &format!("{forged}.{sig}"), now), None);
    }

    #[test]
    fn the_button_names_the_issuer() {
        assert_eq!(provider_name("https://idp.example.com/"), "idp.example.com");
        assert_eq!(
            provider_name("https://login.example.com/realms/staff"),
            "login.example.com/realms/staff"
        );
    }
}
