//! The one place that decides: an authenticated identity + a parsed route + the ACL → allow or
//! deny, with the rule that decided. The proxy only carries out what this returns.

use std::net::IpAddr;

use crate::acl::{AccessRequest, Acl, RuleOrigin};
use crate::authn::Identity;
use crate::route::{Action, Route};

/// The service name ACL rules see in basic mode (docker_auth's default token service name).
pub const DEFAULT_SERVICE: &str = "Docker registry";

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow {
        /// The rule that granted it (`None` for `/v2/`, which needs only a login).
        rule: Option<RuleOrigin>,
        /// The caller asked for a cross-repository mount from a repository it may not pull:
        /// drop `mount`/`from` and forward a plain upload start, as registry:2 itself does.
        drop_mount: bool,
    },
    /// Answer with the catalog filtered to what this caller may pull (it lacks
    /// `registry:catalog:*`, which would show the upstream's list unchanged).
    FilteredCatalog,
    /// A valid Bearer token that does not carry the scope: 401 with
    /// `error="insufficient_scope"` and the scope to ask for, as registry:2 answers, so the
    /// client fetches a new token.
    InsufficientScope {
        /// The rule the ACL decided with (the ACL allows it; the token lacks it).
        rule: Option<RuleOrigin>,
    },
    /// Refuse it: 403 for an account, 401 for the anonymous caller.
    Deny {
        /// The rule that refused it; `None` when no rule matched.
        rule: Option<RuleOrigin>,
    },
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. } | Decision::FilteredCatalog)
    }

    /// The deciding rule, for the audit log.
    pub fn rule(&self) -> Option<&RuleOrigin> {
        match self {
            Decision::Allow { rule, .. }
            | Decision::Deny { rule }
            | Decision::InsufficientScope { rule } => rule.as_ref(),
            Decision::FilteredCatalog => None,
        }
    }

    /// Moves the deciding rule out (for the audit line), leaving `None`: the proxy keeps the
    /// rule for the rest of the request without copying it.
    pub fn take_rule(&mut self) -> Option<RuleOrigin> {
        match self {
            Decision::Allow { rule, .. }
            | Decision::Deny { rule }
            | Decision::InsufficientScope { rule } => rule.take(),
            Decision::FilteredCatalog => None,
        }
    }
}

/// Who is asking, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The authenticated caller (possibly anonymous).
    pub identity: &'a Identity,
    /// The client address the ACL's `ip` matches.
    pub ip: Option<IpAddr>,
    /// The service name the ACL's `service` matches.
    pub service: &'a str,
}

/// Decides `route` for `subject` under `acl`.
pub fn authorize(acl: &Acl, subject: Subject<'_>, route: &Route) -> Decision {
    match route {
        Route::Base => {
            if subject.identity.is_anonymous() {
                Decision::Deny { rule: None }
            } else {
                Decision::Allow {
                    rule: None,
                    drop_mount: false,
                }
            }
        }
        Route::Catalog => {
            let grant = decide(acl, subject, "registry", "catalog", &["*"]);
            if grant.actions.iter().any(|a| a == "*") {
                Decision::Allow {
                    rule: grant.rule,
                    drop_mount: false,
                }
            } else if subject.identity.is_anonymous() {
                Decision::Deny { rule: grant.rule }
            } else {
                Decision::FilteredCatalog
            }
        }
        Route::Repository {
            name,
            action,
            mount,
            ..
        } => {
            let grant = decide(acl, subject, "repository", name, &[action.as_str()]);
            if !grant.actions.iter().any(|a| a == action.as_str()) {
                return Decision::Deny { rule: grant.rule };
            }
            let drop_mount = match mount {
                None => false,
                Some(m) => !may(acl, subject, &m.from, Action::Pull),
            };
            Decision::Allow {
                rule: grant.rule,
                drop_mount,
            }
        }
    }
}

/// Decides `route` for a caller who presented a valid Bearer token: the ACL as it is *now*
/// must allow it (a reload takes effect even for tokens already issued) *and* the token must
/// carry the scope. `/v2/` and the filtered catalog need only the token.
pub fn authorize_bearer(
    acl: &Acl,
    subject: Subject<'_>,
    route: &Route,
    claims: &crate::token::Claims,
) -> Decision {
    let decision = authorize(acl, subject, route);
    let Decision::Allow { rule, drop_mount } = decision else {
        return decision;
    };
    match route {
        Route::Base => Decision::Allow { rule, drop_mount },
        Route::Catalog => {
            if claims.allows("registry", "catalog", "*") {
                Decision::Allow { rule, drop_mount }
            } else {
                // Without the scope in the token, the caller still gets its filtered view.
                Decision::FilteredCatalog
            }
        }
        Route::Repository {
            name,
            action,
            mount,
            ..
        } => {
            if !claims.allows("repository", name, action.as_str()) {
                return Decision::InsufficientScope { rule };
            }
            let drop_mount = drop_mount
                || mount
                    .as_ref()
                    .is_some_and(|m| !claims.allows("repository", &m.from, "pull"));
            Decision::Allow { rule, drop_mount }
        }
    }
}

/// The scope a client should ask a token for to make this request, as registry:2 words it in
/// its challenge (a push asks for `pull,push`, which is what clients request anyway).
pub fn challenge_scope(route: &Route) -> Option<String> {
    match route {
        Route::Base => None,
        Route::Catalog => Some("registry:catalog:*".to_owned()),
        Route::Repository { name, action, .. } => Some(format!(
            "repository:{name}:{}",
            match action {
                Action::Pull => "pull",
                Action::Push => "pull,push",
                Action::Delete => "delete",
            }
        )),
    }
}

/// True when `subject` may pull `name`: what the filtered catalog shows.
pub fn may_pull(acl: &Acl, subject: Subject<'_>, name: &str) -> bool {
    may(acl, subject, name, Action::Pull)
}

fn may(acl: &Acl, subject: Subject<'_>, name: &str, action: Action) -> bool {
    decide(acl, subject, "repository", name, &[action.as_str()])
        .actions
        .iter()
        .any(|a| a == action.as_str())
}

/// The ACL's answer for `subject`, narrowed by its credential ([`Identity::narrow`]: an
/// access key's scopes). The rule stays the ACL's, so the audit line still names it.
fn decide(
    acl: &Acl,
    subject: Subject<'_>,
    kind: &str,
    name: &str,
    actions: &[&str],
) -> crate::acl::Grant {
    let mut grant = acl.decide(&request(subject, kind, name, actions));
    grant.actions = subject.identity.narrow(kind, name, grant.actions);
    grant
}

fn request<'a>(
    subject: Subject<'a>,
    kind: &'a str,
    name: &'a str,
    actions: &'a [&'a str],
) -> AccessRequest<'a> {
    AccessRequest {
        account: &subject.identity.account,
        labels: &subject.identity.labels,
        ip: subject.ip,
        service: subject.service,
        kind,
        name,
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::parse;
    use std::path::Path;

    const ACL: &str = r#"
- match: {account: admin}
  actions: ["*"]
- match: {account: "/.+/", name: "${account}/*"}
  actions: ["*"]
- match: {account: "/.+/", name: "team/*"}
  actions: [pull]
- match: {account: "", name: "public/*"}
  actions: [pull]
"#;

    fn acl() -> Acl {
        Acl::parse(ACL, Path::new("acl.yaml")).unwrap().acl
    }

    fn id(a: &str) -> Identity {
        Identity {
            account: a.into(),
            labels: Default::default(),
            via: None,
        }
    }

    fn decide(account: &str, method: &str, target: &str) -> Decision {
        let identity = id(account);
        let subject = Subject {
            identity: &identity,
            ip: None,
            service: DEFAULT_SERVICE,
        };
        authorize(&acl(), subject, &parse(method, target).unwrap())
    }

    fn claims(access: &[(&str, &str, &[&str])]) -> crate::token::Claims {
        crate::token::Claims {
            iss: "i".into(),
            sub: "bob".into(),
            aud: "s".into(),
            exp: 0,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            access: access
                .iter()
                .map(|(k, n, a)| crate::token::ResourceActions {
                    kind: k.to_string(),
                    name: n.to_string(),
                    actions: a.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            token_use: None,
            cred: None,
            via: None,
        }
    }

    fn decide_bearer(
        account: &str,
        method: &str,
        target: &str,
        c: &crate::token::Claims,
    ) -> Decision {
        let identity = id(account);
        let subject = Subject {
            identity: &identity,
            ip: None,
            service: DEFAULT_SERVICE,
        };
        authorize_bearer(&acl(), subject, &parse(method, target).unwrap(), c)
    }

    #[test]
    fn bearer_needs_both_the_token_scope_and_the_acl() {
        let c = claims(&[
            ("repository", "bob/app", &["pull", "push"]),
            ("repository", "alice/app", &["pull"]),
        ]);
        assert!(decide_bearer("bob", "PUT", "/v2/bob/app/manifests/1", &c).is_allowed());
        // In the token but not (any more) in the ACL: denied.
        assert!(matches!(
            decide_bearer("bob", "GET", "/v2/alice/app/manifests/1", &c),
            Decision::Deny { .. }
        ));
        // In the ACL but not in the token: insufficient scope.
        assert!(matches!(
            decide_bearer("bob", "DELETE", "/v2/bob/app/manifests/1", &c),
            Decision::InsufficientScope { .. }
        ));
        assert!(matches!(
            decide_bearer("bob", "GET", "/v2/bob/other/manifests/1", &c),
            Decision::InsufficientScope { .. }
        ));
        assert!(decide_bearer("bob", "GET", "/v2/", &claims(&[])).is_allowed());
        assert_eq!(
            decide_bearer("bob", "GET", "/v2/_catalog", &claims(&[])),
            Decision::FilteredCatalog
        );
        assert!(matches!(
            decide_bearer(
                "admin",
                "GET",
                "/v2/_catalog",
                &claims(&[("registry", "catalog", &["*"])])
            ),
            Decision::Allow { .. }
        ));
        // A mount from a repository the token cannot pull is dropped.
        let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let t = format!("/v2/bob/app/blobs/uploads/?mount={digest}&from=team/base");
        assert!(matches!(
            decide_bearer("bob", "POST", &t, &c),
            Decision::Allow {
                drop_mount: true,
                ..
            }
        ));
    }

    #[test]
    fn challenge_scopes_follow_registry() {
        let s = |m, t| challenge_scope(&parse(m, t).unwrap());
        assert_eq!(
            s("GET", "/v2/a/b/manifests/1").as_deref(),
            Some("repository:a/b:pull")
        );
        assert_eq!(
            s("PATCH", "/v2/a/blobs/uploads/x").as_deref(),
            Some("repository:a:pull,push")
        );
        assert_eq!(
            s("DELETE", "/v2/a/manifests/1").as_deref(),
            Some("repository:a:delete")
        );
        assert_eq!(
            s("GET", "/v2/_catalog").as_deref(),
            Some("registry:catalog:*")
        );
        assert_eq!(s("GET", "/v2/"), None);
    }

    #[test]
    fn base_needs_a_login() {
        assert!(decide("bob", "GET", "/v2/").is_allowed());
        assert!(!decide("", "GET", "/v2/").is_allowed());
    }

    #[test]
    fn repository_actions_follow_the_acl() {
        assert!(decide("bob", "PUT", "/v2/bob/app/manifests/1").is_allowed());
        assert!(decide("bob", "GET", "/v2/team/app/manifests/1").is_allowed());
        assert!(!decide("bob", "PUT", "/v2/team/app/manifests/1").is_allowed());
        assert!(!decide("bob", "DELETE", "/v2/team/app/manifests/1").is_allowed());
        assert!(!decide("bob", "GET", "/v2/alice/app/manifests/1").is_allowed());
        assert!(decide("", "GET", "/v2/public/x/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000").is_allowed());
        assert!(!decide("", "GET", "/v2/team/x/manifests/1").is_allowed());
        let d = decide("bob", "GET", "/v2/alice/app/manifests/1");
        assert_eq!(d, Decision::Deny { rule: None });
        let d = decide("bob", "GET", "/v2/team/app/manifests/1");
        assert_eq!(d.rule().unwrap().line, 6);
    }

    #[test]
    fn catalog_is_whole_with_the_wildcard_scope_and_filtered_otherwise() {
        assert!(matches!(
            decide("admin", "GET", "/v2/_catalog"),
            Decision::Allow { .. }
        ));
        assert_eq!(
            decide("bob", "GET", "/v2/_catalog"),
            Decision::FilteredCatalog
        );
        assert!(matches!(
            decide("", "GET", "/v2/_catalog"),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn mount_from_an_unreadable_repository_becomes_a_plain_upload() {
        let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let from_team = format!("/v2/bob/app/blobs/uploads/?mount={digest}&from=team/base");
        assert_eq!(
            decide("bob", "POST", &from_team),
            Decision::Allow {
                rule: decide("bob", "POST", &from_team).rule().cloned(),
                drop_mount: false
            }
        );
        let from_alice = format!("/v2/bob/app/blobs/uploads/?mount={digest}&from=alice/secret");
        assert!(matches!(
            decide("bob", "POST", &from_alice),
            Decision::Allow {
                drop_mount: true,
                ..
            }
        ));
        // No push on the target: refused whatever the source.
        let to_team = format!("/v2/team/app/blobs/uploads/?mount={digest}&from=bob/app");
        assert!(!decide("bob", "POST", &to_team).is_allowed());
    }
}
