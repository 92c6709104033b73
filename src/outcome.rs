//! How a request ended, as the audit line's `decision` and the request metric's label say it.
//!
//! A type of its own, below both [`crate::proxy`] (which decides it) and [`crate::metrics`] and
//! [`crate::ui`] (which count and report it), so that none of them depends on another for it.

/// The `decision` label of the audit line and the request metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded.
    Allowed,
    /// A valid login without the right (403), or anonymous refused (401).
    Denied,
    /// A valid Bearer token without the scope this request needs, although the ACL grants it:
    /// 401 `insufficient_scope`, and the client fetches a new token. Not a refusal by the ACL,
    /// so it is not counted as one.
    InsufficientScope,
    /// No or bad credentials (401).
    Unauthenticated,
    /// A request portcullis refused to parse (400/404/405).
    Invalid,
    /// Something failed: the registry, or an authentication backend.
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }
}
