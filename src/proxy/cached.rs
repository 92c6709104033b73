//! The manifest cache's part in the phases ([`crate::cache`]): after authorization, answer a
//! manifest `GET`/`HEAD` from memory or lead the fill; capture the leader's answer as it
//! streams; forget a repository's answers around a manifest write through us.

use super::*;
use crate::cache::{Coalesced, Fill, Lookup};

/// What the cache did for one request.
#[derive(Default)]
pub(super) struct CacheCtx {
    /// This request leads a fill: its answer is captured.
    fill: Option<Box<Fill>>,
    /// A manifest write is being forwarded: forget the repository's answers again once the
    /// registry answered (or failed).
    write: bool,
    /// The audit line's `cache`: `hit`, `coalesced`, `miss`, or `""` (not asked).
    pub(super) result: &'static str,
}

impl Portcullis {
    /// Answers an **authorized** request from the cache when it can (`Ok(true)`: answered).
    /// Only manifest requests are looked at; a manifest write only forgets.
    pub(super) async fn serve_cached(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(cache) = &self.cache else {
            return Ok(false);
        };
        let Some(parsed) = &ctx.parsed else {
            return Ok(false);
        };
        let (Some(repository), Some(reference)) = (parsed.route.repository(), parsed.reference())
        else {
            return Ok(false);
        };
        let req = session.req_header();
        let get = match req.method {
            http::Method::GET => true,
            http::Method::HEAD => false,
            http::Method::PUT | http::Method::DELETE => {
                cache.writing(repository);
                ctx.cache.write = true;
                return Ok(false);
            }
            _ => return Ok(false),
        };
        let Some(key) = cache.key(repository, reference, &req.headers) else {
            return Ok(false);
        };
        match cache.lookup(key, get).await {
            Lookup::Hit(entry, Coalesced(coalesced)) => {
                ctx.cache.result = if coalesced { "coalesced" } else { "hit" };
                respond_cached(session, &entry).await?;
                Ok(true)
            }
            Lookup::Lead(fill) => {
                ctx.cache.result = "miss";
                ctx.cache.fill = Some(fill);
                Ok(false)
            }
            Lookup::Pass => {
                ctx.cache.result = "miss";
                Ok(false)
            }
        }
    }

    /// The registry's answer head, before the client sees it.
    pub(super) fn cache_response(&self, resp: &ResponseHeader, ctx: &mut RequestCtx) {
        if let Some(fill) = ctx.cache.fill.as_mut() {
            fill.response(resp);
        }
        self.cache_written(ctx);
    }

    /// A chunk of the registry's answer body.
    pub(super) fn cache_body(&self, body: Option<&Bytes>, end: bool, ctx: &mut RequestCtx) {
        if let Some(fill) = ctx.cache.fill.as_mut() {
            fill.body(body, end);
        }
    }

    /// A manifest write is over (answered, failed or abandoned): forget its repository's
    /// answers again and tell the other replicas. Once per request.
    pub(super) fn cache_written(&self, ctx: &mut RequestCtx) {
        if !std::mem::take(&mut ctx.cache.write) {
            return;
        }
        if let (Some(cache), Some(repository)) =
            (&self.cache, ctx.route().and_then(Route::repository))
        {
            cache.written(repository);
        }
    }
}
