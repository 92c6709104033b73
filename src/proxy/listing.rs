//! `/v2/_catalog` answered by portcullis: the upstream list filtered to what the caller may
//! pull (the UI's repository list uses the same two functions).

use super::*;

impl Portcullis {
    /// The upstream's whole repository list (cached briefly): what the filtered catalog and
    /// the web UI list from, each through [`catalog::visible_to`].
    pub(crate) async fn upstream_repositories(
        &self,
    ) -> std::result::Result<Arc<Vec<String>>, catalog::CatalogError> {
        self.catalog.all(&self.upstreams).await
    }

    /// Answers `/v2/_catalog` with only what `subject` may pull.
    pub(super) async fn filtered_catalog(
        &self,
        session: &mut Session,
        state: &State,
        subject: Subject<'_>,
    ) -> Result<()> {
        self.catalog_page(session, catalog::visible_to(&state.acl, subject))
            .await
    }

    /// Answers `/v2/_catalog` for a caller granted `registry:catalog:*` when several
    /// registries (or a stripped prefix) stand behind portcullis: their merged list, whole.
    pub(super) async fn merged_catalog(&self, session: &mut Session) -> Result<()> {
        self.catalog_page(session, |_: &str| true).await
    }

    /// One page of the merged upstream list, of the names `visible` keeps, with `n`, `last`
    /// and `Link` applied to that list.
    async fn catalog_page(
        &self,
        session: &mut Session,
        visible: impl FnMut(&str) -> bool,
    ) -> Result<()> {
        let query = session.req_header().uri.query().map(str::to_owned);
        let paging = match catalog::Paging::from_query(query.as_deref()) {
            Ok(p) => p,
            Err(why) => {
                let e = OciError::new(400, "PAGINATION_NUMBER_INVALID", why);
                return respond(session, &e, &[]).await;
            }
        };
        let all = match self.upstream_repositories().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the registry catalog");
                return respond(session, &OciError::upstream(502), &[]).await;
            }
        };
        let page = catalog::page(&all, &paging, visible);
        let extra: Vec<(&'static str, String)> = catalog::link(&page, paging.n)
            .map(|l| ("Link", l))
            .into_iter()
            .collect();
        respond_json(session, 200, catalog::body(&page.repositories), &extra).await
    }
}
