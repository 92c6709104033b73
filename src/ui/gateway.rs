//! What the web UI needs from the proxy it is mounted in: the login path (with the lockout
//! around it), the registry, and how clients reach us. A trait here, implemented by
//! [`crate::proxy::Portcullis`], so the UI depends on nothing in the proxy and the arrow
//! between the two points one way (the proxy mounts the UI).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::proxy::Session;

use crate::authn::{Credentials, Identity};
use crate::catalog::CatalogError;
use crate::client::ClientAddr;
use crate::errors::Refusal;
use crate::state::State;
use crate::upstream::Upstreams;

/// The proxy as the UI sees it.
#[async_trait]
pub trait Gateway: Send + Sync {
    /// Checks credentials exactly as `/v2` does, failed-login limits included.
    async fn login(
        &self,
        state: &State,
        creds: &Credentials,
        client: ClientAddr,
    ) -> Result<Identity, Refusal>;

    /// The registries (their connections, `Host`s and service-account credentials), which
    /// route each repository to the one that serves it.
    fn upstreams(&self) -> Upstreams;

    /// The registry's whole catalog (shared and paged by the proxy's catalog cache).
    async fn upstream_repositories(&self) -> Result<Arc<Vec<String>>, CatalogError>;

    /// The scheme and host clients reach us by (for the pull lines the UI shows).
    fn public_origin(&self, session: &Session) -> (String, String);

    /// True when the client listener speaks TLS (cookies get `Secure`).
    fn tls(&self) -> bool;

    /// A manifest of `repository` is being deleted (`done`: false before the registry is
    /// asked, true after it answered or failed), so cached answers for it are forgotten, as
    /// for a `DELETE` through `/v2`.
    fn manifests_changed(&self, repository: &str, done: bool);
}
