//! The explain page, for accounts the ACL grants `registry:ui:*`: the engine of `portcullis
//! explain`, asked through a form.

use super::*;

/// True when the ACL grants `*` on `registry:ui` to `identity`: the explain page.
pub(super) fn is_admin(state: &State, identity: &Identity, ip: Option<IpAddr>) -> bool {
    state
        .acl
        .decide(&AccessRequest {
            account: &identity.account,
            labels: &identity.labels,
            ip,
            service: state.service(),
            kind: "registry",
            name: "ui",
            actions: &["*"],
        })
        .actions
        .iter()
        .any(|a| a == "*")
}

/// The explain page; with a posted `request`, its answers. The account's own labels come
/// from whichever backend knows it (as a login would give them), plus the typed ones.
pub(super) async fn explain_page(
    state: &State,
    chrome: &Chrome<'_>,
    visitor: &Visitor,
    ip: Option<IpAddr>,
    request: Option<&Request>,
) -> Answer {
    let Some(request) = request else {
        let form = pages::ExplainForm {
            account: visitor.identity.account.clone(),
            labels: String::new(),
            ip: ip.map(|i| i.to_string()).unwrap_or_default(),
            scopes: format!(
                "repository:{}/app:pull,push\nregistry:catalog:*",
                visitor.identity.account
            ),
        };
        return Answer::html(
            200,
            pages::explain(chrome, &form, None, &[], None),
            Outcome::Allowed,
        );
    };
    let form = pages::ExplainForm {
        account: request.field("account").unwrap_or("").trim().to_owned(),
        labels: request.field("labels").unwrap_or("").to_owned(),
        ip: request.field("ip").unwrap_or("").trim().to_owned(),
        scopes: request.field("scopes").unwrap_or("").to_owned(),
    };
    let refuse = |problem: String| {
        Answer::html(
            400,
            pages::explain(chrome, &form, None, &[], Some(&problem)),
            Outcome::Invalid,
        )
    };
    let asked_ip = if form.ip.is_empty() {
        None
    } else {
        match form.ip.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => return refuse(format!("{:?} is not an IP address.", form.ip)),
        }
    };
    let extra: Vec<String> = form
        .labels
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let scopes: Vec<&str> = form
        .scopes
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if scopes.is_empty() {
        return refuse("enter at least one scope.".into());
    }
    if scopes.len() > MAX_SCOPES || extra.len() > MAX_SCOPES {
        return refuse(format!(
            "at most {MAX_SCOPES} scopes and {MAX_SCOPES} labels."
        ));
    }
    let mut labels = match state.authn.lookup_cached(&form.account).await {
        Ok(identity) => identity.labels,
        Err(_) => explain::static_labels(&state.config, &form.account),
    };
    if let Err(e) = explain::add_labels(&mut labels, &extra) {
        return refuse(format!("{e}."));
    }
    let mut parsed = Vec::new();
    for text in &scopes {
        match Scope::parse_strict(text) {
            Ok(s) => parsed.push(s),
            Err(e) => return refuse(format!("{e}.")),
        }
    }
    let asker = Asker {
        account: &form.account,
        labels: &labels,
        ip: asked_ip,
        service: state.service(),
    };
    let rows: Vec<pages::ExplainRow> = parsed
        .iter()
        .map(|scope| {
            let e = explain::explain(&state.acl, asker, scope);
            pages::ExplainRow {
                scope: e.scope,
                granted: e.granted,
                rule: e
                    .rule
                    .as_ref()
                    .map(|r| format!("{}:{}", r.file.display(), r.line)),
                comment: e.rule.and_then(|r| r.comment).map(|c| c.to_string()),
            }
        })
        .collect();
    let labels_text = if labels.is_empty() {
        "none".to_owned()
    } else {
        labels
            .iter()
            .map(|(k, vs)| format!("{k}={}", vs.join(",")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Answer::html(
        200,
        pages::explain(chrome, &form, Some(&labels_text), &rows, None),
        Outcome::Allowed,
    )
}
