//! A tag's own page, and deleting a manifest from the UI.
//!
//! Both decide with [`policy::authorize`] on the very `/v2` request the registry API would get
//! (`GET …/manifests/<tag>`, `DELETE …/manifests/<digest>`), so the UI grants nothing the API
//! would refuse. A repository the account may not pull is answered exactly like a missing
//! one; one it may pull but not delete in gets 403 for the delete pages.
//!
//! Deleting is two steps: a confirmation page (what goes: the digest and every tag pointing
//! at it, as far as they can be listed), then a CSRF-protected `POST` carrying the digest the
//! visitor saw. The digest is deleted, not the tag re-resolved, so a tag moved in between
//! cannot make the post delete something the visitor never confirmed. Every delete attempt
//! is written to the audit log.

use std::sync::Arc;

use pingora::proxy::Session;

use super::pages::{self, Chrome};
use super::registry::{self, ReadError, Reader};
use super::{forbidden_delete, not_found, upstream_failed, Answer, Request, NEWEST_FIRST_MAX};
use crate::acl::RuleOrigin;
use crate::outcome::Outcome;
use crate::policy::{self, Decision, Subject};
use crate::state::State;
use crate::ui::gateway::Gateway;

/// What every repository-scoped page needs.
pub(super) struct Page<'a> {
    /// The proxy (upstream peer, public origin).
    pub(super) proxy: &'a dyn Gateway,
    /// The client's session (for the public host name).
    pub(super) session: &'a Session,
    /// The configuration and ACL in force.
    pub(super) state: &'a State,
    /// The page frame.
    pub(super) chrome: &'a Chrome<'a>,
    /// The parsed request.
    pub(super) request: &'a Request,
    /// Who asks.
    pub(super) subject: Subject<'a>,
    /// The repository named in the path (not yet validated).
    pub(super) name: &'a str,
    /// The registry reader.
    pub(super) reader: &'a Arc<Reader>,
}

impl Page<'_> {
    /// The policy's decision on `method target`, as the registry API would decide it;
    /// `None` when the target does not parse (an invalid name or reference).
    fn decide(&self, method: &str, target: &str) -> Option<Decision> {
        let route = crate::route::parse(method, target).ok()?;
        Some(policy::authorize(&self.state.acl, self.subject, &route))
    }

    /// `Ok(rule)` when the account may pull the repository (list its tags); otherwise the
    /// not-found answer, the same as for a repository that does not exist.
    pub(super) fn may_pull(&self) -> Result<Option<RuleOrigin>, Box<Answer>> {
        if !crate::route::is_valid_name(self.name) {
            return Err(Box::new(not_found(self.chrome)));
        }
        match self.decide("GET", &format!("/v2/{}/tags/list", self.name)) {
            Some(d @ Decision::Allow { .. }) => Ok(d.rule().cloned()),
            Some(d) => {
                let mut answer = not_found(self.chrome);
                answer.served.outcome = Outcome::Denied;
                answer.served.rule = d.rule().cloned();
                Err(Box::new(answer))
            }
            None => Err(Box::new(not_found(self.chrome))),
        }
    }

    /// The decision on deleting a manifest of this repository (any digest: the ACL decides
    /// by repository and action, not by reference).
    fn delete_decision(&self, digest: &str) -> Option<Decision> {
        self.decide("DELETE", &format!("/v2/{}/manifests/{digest}", self.name))
    }

    /// True when the ACL grants `delete` here: the pages offer it.
    pub(super) fn may_delete(&self) -> bool {
        let any = format!("sha256:{}", "0".repeat(64));
        matches!(self.delete_decision(&any), Some(Decision::Allow { .. }))
    }

    fn host(&self) -> String {
        self.proxy.public_origin(self.session).1
    }
}

/// `repo/<name>/-/tag/<tag>`: everything about one tag.
pub(super) async fn tag_page(page: &Page<'_>, tag: &str) -> Answer {
    let chrome = page.chrome;
    let rule = match page.may_pull() {
        Ok(rule) => rule,
        Err(answer) => return *answer,
    };
    if !crate::route::is_valid_tag(tag) {
        return not_found(chrome);
    }
    // The request made upstream, decided as the API would.
    match page.decide("GET", &format!("/v2/{}/manifests/{tag}", page.name)) {
        Some(Decision::Allow { .. }) => {}
        _ => return not_found(chrome),
    }
    let to = page.proxy.upstreams();
    let details = match page.reader.details(&to, page.name, tag).await {
        Ok(d) => d,
        Err(ReadError::NotFound) => return not_found(chrome),
        Err(e) => {
            tracing::warn!(error = %e, repository = page.name, tag, "UI: cannot read a tag");
            return upstream_failed(chrome);
        }
    };
    let host = page.host();
    let view = pages::TagView {
        name: page.name,
        host: &host,
        tag,
        details: &details,
        may_delete: page.may_delete(),
    };
    let mut answer = Answer::html(200, pages::tag(chrome, &view), Outcome::Allowed);
    answer.served.rule = rule;
    answer
}

/// `GET repo/<name>/-/delete?tag=<tag>`: what deleting the tag's manifest would take away.
pub(super) async fn confirm_delete(page: &Page<'_>) -> Answer {
    let chrome = page.chrome;
    if let Err(answer) = page.may_pull() {
        return *answer;
    }
    let Some(tag) = page
        .request
        .query("tag")
        .filter(|t| crate::route::is_valid_tag(t))
    else {
        return not_found(chrome);
    };
    if !page.may_delete() {
        return forbidden_delete(chrome);
    }
    let to = page.proxy.upstreams();
    let info = page.reader.tag(&to, page.name, tag).await;
    let Some(digest) = info.digest else {
        return match info.error.as_deref() {
            Some("not found") | None => not_found(chrome),
            Some(e) => {
                tracing::warn!(
                    error = e,
                    repository = page.name,
                    tag,
                    "UI: cannot read a tag"
                );
                upstream_failed(chrome)
            }
        };
    };
    // Every tag pointing at the digest goes with it: list them (bounded).
    let (sharing, complete) = match page.reader.tags(&to, page.name).await {
        Ok(all) if all.len() <= NEWEST_FIRST_MAX => {
            let infos = registry::tags_info(page.reader, &to, page.name, &all).await;
            let sharing: Vec<String> = infos
                .into_iter()
                .filter(|i| i.digest.as_deref() == Some(digest.as_str()))
                .map(|i| i.tag)
                .collect();
            (sharing, true)
        }
        _ => (vec![tag.to_owned()], false),
    };
    let view = pages::DeleteView {
        name: page.name,
        tag,
        digest: &digest,
        tags: &sharing,
        tags_complete: complete,
    };
    Answer::html(200, pages::confirm_delete(chrome, &view), Outcome::Allowed)
}

/// `POST repo/<name>/-/delete` (CSRF already checked): deletes the posted digest, if the
/// policy grants `delete`, and goes back to the repository.
pub(super) async fn delete(page: &Page<'_>) -> Answer {
    let chrome = page.chrome;
    let account = page.subject.identity.account.as_str();
    let digest = page.request.field("digest").unwrap_or("");
    if let Err(answer) = page.may_pull() {
        audit(page, digest, &answer.served.outcome, answer.status);
        return *answer;
    }
    if !crate::route::is_valid_digest(digest) {
        let answer = super::bad_form(chrome, "The form names no valid digest.");
        audit(page, digest, &answer.served.outcome, answer.status);
        return answer;
    }
    let decision = page.delete_decision(digest);
    let rule = decision.as_ref().and_then(|d| d.rule().cloned());
    if !matches!(decision, Some(Decision::Allow { .. })) {
        let mut answer = forbidden_delete(chrome);
        answer.served.rule = rule;
        audit(page, digest, &answer.served.outcome, answer.status);
        return answer;
    }
    let to = page.proxy.upstreams();
    page.proxy.manifests_changed(page.name, false);
    let result = page.reader.delete_manifest(&to, page.name, digest).await;
    page.proxy.manifests_changed(page.name, true);
    let mut answer = match result {
        Ok(()) => Answer::redirect(
            format!("{}repo/{}?deleted={digest}", chrome.base, page.name),
            Outcome::Allowed,
        ),
        Err(ReadError::NotFound) => not_found(chrome),
        Err(e) => {
            tracing::warn!(error = %e, account, repository = page.name, digest, "UI: delete failed");
            upstream_failed(chrome)
        }
    };
    answer.served.rule = rule;
    audit(page, digest, &answer.served.outcome, answer.status);
    answer
}

/// One audit line per delete attempt, naming what was to be deleted (the request's own audit
/// line has only the UI path).
fn audit(page: &Page<'_>, digest: &str, outcome: &Outcome, status: u16) {
    tracing::info!(
        target: "audit",
        client = page.subject.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        account = page.subject.identity.account.as_str(),
        repository = page.name,
        action = "delete",
        digest = digest.chars().take(80).collect::<String>(),
        tag = page.request.field("tag").unwrap_or("").chars().take(130).collect::<String>(),
        decision = outcome.as_str(),
        status,
        via = "ui",
        "ui delete"
    );
}
