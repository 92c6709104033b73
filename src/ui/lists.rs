//! The two lists: the repositories the account may pull (with tag counts and newest image,
//! by name or newest first), and a repository's tags (newest first, each with its pull lines).
//! Both read only what [`catalog::visible_to`] and [`Page::may_pull`] allowed.

use std::sync::Arc;

use super::images::Page;
use super::pages::{self, Chrome};
use super::registry;
use super::{
    not_found, upstream_failed, Answer, Request, MAX_QUERY, NEWEST_FIRST_MAX, RECENT_SORT_MAX,
    REPOSITORIES_PER_PAGE, TAGS_PER_PAGE,
};
use crate::catalog;
use crate::outcome::Outcome;
use crate::policy::Subject;
use crate::state::State;
use crate::ui::gateway::Gateway;

/// A repository's tags, if the account may pull it; the same 404 otherwise. Newest
/// first when there are at most [`NEWEST_FIRST_MAX`] tags.
pub(super) async fn repository(page: &Page<'_>) -> Answer {
    let (chrome, name) = (page.chrome, page.name);
    let rule = match page.may_pull() {
        Ok(rule) => rule,
        Err(answer) => return *answer,
    };
    let to = page.proxy.upstreams();
    let tags = match page.reader.tags(&to, name).await {
        Ok(tags) => tags,
        Err(registry::ReadError::NotFound) => {
            let mut answer = not_found(chrome);
            answer.served.rule = rule;
            return answer;
        }
        Err(e) => {
            tracing::warn!(error = %e, repository = name, "UI: cannot list tags");
            return upstream_failed(chrome);
        }
    };
    let total = tags.len();
    let pages_count = total.div_ceil(TAGS_PER_PAGE).max(1);
    let page_no = page.request.page().min(pages_count);
    let first = (page_no - 1) * TAGS_PER_PAGE;
    let (infos, order) = if total <= NEWEST_FIRST_MAX {
        let mut all = registry::tags_info(page.reader, &to, name, &tags).await;
        // Newest first; tags without a time last; ties by name.
        all.sort_by(|a, b| {
            let key = |t: &registry::TagInfo| t.created.as_deref().map(registry::time_key);
            key(b).cmp(&key(a)).then_with(|| a.tag.cmp(&b.tag))
        });
        let shown = all.into_iter().skip(first).take(TAGS_PER_PAGE).collect();
        (shown, pages::TagOrder::Newest)
    } else {
        let shown: Vec<String> = tags.into_iter().skip(first).take(TAGS_PER_PAGE).collect();
        let infos = registry::tags_info(page.reader, &to, name, &shown).await;
        (infos, pages::TagOrder::Name)
    };
    let (_, public_host) = page.proxy.public_origin(page.session);
    let deleted = page
        .request
        .query("deleted")
        .filter(|d| crate::route::is_valid_digest(d));
    let view = pages::RepositoryView {
        name,
        host: &public_host,
        tags: &infos,
        total,
        page: page_no,
        pages: pages_count,
        first,
        order,
        may_delete: page.may_delete(),
        deleted,
    };
    let mut answer = Answer::html(200, pages::repository(chrome, &view), Outcome::Allowed);
    answer.served.rule = rule;
    answer
}

/// The repository list: the shared listing code, searched, sorted and paged, each repository
/// with its tag count and newest image.
pub(super) async fn repositories(
    proxy: &dyn Gateway,
    state: &State,
    chrome: &Chrome<'_>,
    request: &Request,
    subject: Subject<'_>,
    reader: &Arc<registry::Reader>,
) -> Answer {
    let all = match proxy.upstream_repositories().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "UI: cannot fetch the registry catalog");
            return upstream_failed(chrome);
        }
    };
    let q: String = request
        .query("q")
        .unwrap_or("")
        .trim()
        .chars()
        .take(MAX_QUERY)
        .collect();
    let visible = catalog::visible_to(&state.acl, subject);
    let to = proxy.upstreams();
    let mut sort = match request.query("sort") {
        Some("recent") => pages::RepoSort::Recent,
        _ => pages::RepoSort::Name,
    };
    if sort == pages::RepoSort::Recent {
        // Every match must be read to sort by age: only for a bounded number of them.
        let matching = catalog::search(&all, &q, 1, usize::MAX, &visible);
        if matching.total <= RECENT_SORT_MAX {
            let summaries = registry::summaries(reader, &to, &matching.names).await;
            let mut rows: Vec<(String, registry::Summary)> =
                matching.names.into_iter().zip(summaries).collect();
            rows.sort_by(|(an, a), (bn, b)| {
                let key = |s: &registry::Summary| s.newest.as_deref().map(registry::time_key);
                key(b).cmp(&key(a)).then_with(|| an.cmp(bn))
            });
            let total = rows.len();
            let pages_count = total.div_ceil(REPOSITORIES_PER_PAGE).max(1);
            let page = request.page().min(pages_count);
            let first = (page - 1) * REPOSITORIES_PER_PAGE;
            let rows: Vec<_> = rows
                .into_iter()
                .skip(first)
                .take(REPOSITORIES_PER_PAGE)
                .collect();
            let (names, summaries): (Vec<String>, Vec<registry::Summary>) =
                rows.into_iter().unzip();
            let found = catalog::Found {
                names,
                total,
                page,
                pages: pages_count,
                first,
            };
            let view = pages::RepositoriesView {
                q: &q,
                found: &found,
                summaries: &summaries,
                sort,
                sort_refused: false,
            };
            return Answer::html(200, pages::repositories(chrome, &view), Outcome::Allowed);
        }
        sort = pages::RepoSort::Name;
    }
    let refused = request.query("sort") == Some("recent");
    let found = catalog::search(&all, &q, request.page(), REPOSITORIES_PER_PAGE, &visible);
    let summaries = registry::summaries(reader, &to, &found.names).await;
    let view = pages::RepositoriesView {
        q: &q,
        found: &found,
        summaries: &summaries,
        sort,
        sort_refused: refused,
    };
    Answer::html(200, pages::repositories(chrome, &view), Outcome::Allowed)
}
