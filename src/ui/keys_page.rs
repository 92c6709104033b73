//! The CLI access keys page (`keys`): `docker login` cannot open a browser, so a signed-in
//! person — above all one signed in through single sign-on, who has no password here — makes a
//! personal access key (`auth.keys`) and pastes it as the password.
//!
//! A key made here is the visitor's own and never more than their rights: its account is the
//! visitor's, and what it may do is always the ACL's answer for that account narrowed to the
//! key's optional scopes. A single sign-on person is in no backend, so their key records the
//! labels the provider gave them ([`keys::create_sso`]); a password account's key reads its
//! labels from the backend at every use ([`keys::create`]). Keys expire after
//! [`DEFAULT_DAYS`] unless the form says otherwise, never later than [`MAX_DAYS`]. The secret
//! is shown in the answer to the form and nowhere else; the page lists the visitor's keys
//! (never a secret) and revokes them. Every form carries the session's CSRF token.

use std::time::Duration;

use super::*;
use crate::authn::keys;

/// Days a key made here lasts unless the form says otherwise.
pub const DEFAULT_DAYS: u64 = 90;
/// The most days the form accepts.
pub const MAX_DAYS: u64 = 365;
/// Longest description accepted, in characters.
const MAX_DESCRIPTION: usize = 200;

/// What the form asks for, checked.
struct NewKey {
    description: String,
    days: u64,
    scopes: Vec<String>,
}

fn read_form(request: &Request) -> Result<NewKey, String> {
    let description = request.field("description").unwrap_or("").trim().to_owned();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(format!(
            "the description is longer than {MAX_DESCRIPTION} characters."
        ));
    }
    let days = match request.field("days").map(str::trim) {
        None | Some("") => DEFAULT_DAYS,
        Some(d) => match d.parse::<u64>() {
            Ok(n) if (1..=MAX_DAYS).contains(&n) => n,
            _ => return Err(format!("the expiry must be 1 to {MAX_DAYS} days.")),
        },
    };
    let scopes = request
        .field("scopes")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(NewKey {
        description,
        days,
        scopes,
    })
}

/// RFC 3339 date and time, for the page.
fn when(t: SystemTime) -> String {
    keys::file::format_time(t)
}

/// `GET keys`, `POST keys` (create) and `POST keys/revoke`; the caller checked the CSRF
/// token of posts. `action` is `None` for the page itself.
pub(super) async fn keys_page(
    proxy: &dyn Gateway,
    session: &Session,
    state: &State,
    chrome: &Chrome<'_>,
    visitor: &Visitor,
    action: Option<(&str, &Request)>,
    now: SystemTime,
) -> Answer {
    let Some(path) = state.config.auth.keys.clone() else {
        return not_found(chrome);
    };
    let account = visitor.identity.account.clone();
    let (_, host) = proxy.public_origin(session);
    let mut created: Option<(String, String, String)> = None;
    let mut problem: Option<String> = None;
    let mut status = 200;
    match action {
        None => {}
        Some(("create", request)) => match read_form(request) {
            Err(why) => {
                problem = Some(why);
                status = 400;
            }
            Ok(new) => {
                let expires = now + Duration::from_secs(new.days * 86_400);
                let sso_labels = visitor
                    .claims
                    .sso
                    .as_ref()
                    .map(|_| visitor.identity.labels.clone());
                let (p, a) = (path.clone(), account.clone());
                let made = tokio::task::spawn_blocking(move || match sso_labels {
                    Some(labels) => keys::create_sso(
                        &p,
                        &a,
                        &new.scopes,
                        Some(expires),
                        &new.description,
                        labels,
                    ),
                    None => keys::create(&p, &a, &new.scopes, Some(expires), &new.description),
                })
                .await;
                match made {
                    Ok(Ok((record, secret))) => {
                        tracing::info!(account = %account, key = %record.id, sso = record.sso_labels.is_some(), "ui key create");
                        created = Some((record.id, secret, when(expires)));
                    }
                    Ok(Err(keys::KeysError::BadInput(why))) => {
                        problem = Some(why);
                        status = 400;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "ui key create: the keys file cannot be written");
                        problem = Some("the keys file cannot be written; ask the operator.".into());
                        status = 500;
                    }
                    Err(_) => {
                        problem = Some("the key could not be made; try again.".into());
                        status = 500;
                    }
                }
            }
        },
        Some((_, request)) => {
            // Revoke: only a key of this account.
            let id = request.field("id").unwrap_or("").to_owned();
            let (p, a) = (path.clone(), account.clone());
            let done = tokio::task::spawn_blocking(move || {
                let owned = keys::list(&p)?
                    .into_iter()
                    .any(|r| r.id == id && r.account == a);
                if !owned {
                    return Err(keys::KeysError::NotFound(id));
                }
                keys::revoke(&p, &id)
            })
            .await;
            return match done {
                Ok(Ok(record)) => {
                    tracing::info!(account = %account, key = %record.id, "ui key revoke");
                    Answer::redirect(format!("{}keys", chrome.base), Outcome::Allowed)
                }
                Ok(Err(keys::KeysError::NotFound(_))) => not_found(chrome),
                _ => Answer::html(
                    500,
                    pages::problem(
                        chrome,
                        "Not revoked",
                        "The keys file cannot be written; ask the operator.",
                    ),
                    Outcome::Error,
                ),
            };
        }
    }
    let p = path.clone();
    let listed = tokio::task::spawn_blocking(move || keys::list(&p))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mine = listed
        .into_iter()
        .filter(|r| r.account == account)
        .map(|r| {
            let scopes = if r.scopes.is_empty() {
                "all your rights".to_owned()
            } else {
                r.scopes.join(" ")
            };
            let expires = r.expires.map(when).unwrap_or_else(|| "never".into());
            (r.id, r.description, scopes, when(r.created), expires)
        })
        .collect();
    let page = pages::KeysPage {
        account: &account,
        host: &host,
        created: created
            .as_ref()
            .map(|(id, secret, expires)| (id.as_str(), secret.as_str(), expires.as_str())),
        problem: problem.as_deref(),
        keys: mine,
        default_days: DEFAULT_DAYS,
        max_days: MAX_DAYS,
    };
    let outcome = match status {
        200 => Outcome::Allowed,
        400 => Outcome::Invalid,
        _ => Outcome::Error,
    };
    Answer::html(status, pages::keys(chrome, &page), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> Request {
        Request {
            method: Method::POST,
            rest: "keys".into(),
            query: vec![],
            cookies: vec![],
            form: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_form_defaults_to_90_days_and_bounds_what_it_takes() {
        let k = read_form(&form(&[])).unwrap();
        assert_eq!((k.days, k.description.as_str()), (DEFAULT_DAYS, ""));
        assert!(k.scopes.is_empty());
        let k = read_form(&form(&[
            ("days", "7"),
            ("description", " laptop "),
            (
                "scopes",
                "repository:team/*:pull\r\n\r\n  registry:catalog:*  \n",
            ),
        ]))
        .unwrap();
        assert_eq!(k.days, 7);
        assert_eq!(k.description, "laptop");
        assert_eq!(k.scopes, ["repository:team/*:pull", "registry:catalog:*"]);
        for days in ["0", "366", "-1", "x", "1e3"] {
            assert!(read_form(&form(&[("days", days)])).is_err(), "{days}");
        }
        assert!(read_form(&form(&[("description", &"d".repeat(201))])).is_err());
    }
}
