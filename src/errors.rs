//! The answers portcullis writes itself: an HTTP status and the distribution-spec JSON body
//! `{"errors":[{"code","message","detail"}]}`, so clients show a meaningful message instead of
//! a parse error.

use bytes::Bytes;

/// The header every registry answer carries; clients check it to know they talk to a registry.
pub const API_VERSION_HEADER: &str = "Docker-Distribution-API-Version";
/// Its value.
pub const API_VERSION: &str = "registry/2.0";

/// One error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    /// HTTP status.
    pub status: u16,
    /// Distribution-spec error code (`UNAUTHORIZED`, `DENIED`, `NAME_INVALID`, …).
    pub code: &'static str,
    /// Human-readable message; never contains request input.
    pub message: String,
}

impl OciError {
    /// An error with this status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        OciError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: no, bad or insufficient credentials. Same text whether or not the account or the
    /// repository exists.
    pub fn unauthorized() -> Self {
        Self::new(401, "UNAUTHORIZED", "authentication required")
    }

    /// 403: a valid login without the permission.
    pub fn denied() -> Self {
        Self::new(403, "DENIED", "requested access to the resource is denied")
    }

    /// 502/503/504 when the registry behind us fails.
    pub fn upstream(status: u16) -> Self {
        let message = match status {
            504 => "the registry did not answer in time",
            503 => "the registry is unavailable",
            _ => "the registry could not be reached",
        };
        Self::new(status, "UNAVAILABLE", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": null }]
        });
        Bytes::from(body.to_string())
    }
}

impl From<&crate::route::RouteError> for OciError {
    fn from(e: &crate::route::RouteError) -> Self {
        OciError::new(e.status(), e.code(), e.to_string())
    }
}

/// A refused login, ready to be answered: the error, extra headers (`Retry-After`), and how
/// the audit line records it. Here, below the proxy and the web UI, because both answer it.
#[derive(Debug)]
pub struct Refusal {
    /// Status and OCI body.
    pub error: OciError,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
    /// The audit decision.
    pub outcome: crate::outcome::Outcome,
    /// Why, for the audit line (`access key kQ3x… has expired`); empty when the status
    /// says it all.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_distribution_spec_json() {
        let v: serde_json::Value = serde_json::from_slice(&OciError::denied().body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "DENIED");
        assert_eq!(
            v["errors"][0]["message"],
            "requested access to the resource is denied"
        );
        assert!(v["errors"][0]["detail"].is_null());
        assert_eq!(OciError::unauthorized().status, 401);
        assert_eq!(OciError::upstream(504).status, 504);
    }
}
