//! The UI's pages, as maud templates compiled into the binary. Every value is escaped by
//! maud; no inline script or style (the Content-Security-Policy allows neither): the one
//! script is a file under `static/`, and every page works without it.

use maud::{html, Markup, DOCTYPE};

use super::assets::{self, ICON};
use super::registry::{ImageDetails, Platform, Summary, TagDetails, TagInfo};
use crate::catalog::Found;

/// What every page's frame needs.
pub struct Chrome<'a> {
    /// `ui.title`.
    pub title: &'a str,
    /// `ui.path`, ending in `/`.
    pub base: &'a str,
    /// The logged-in account, if any.
    pub account: Option<&'a str>,
    /// The session's CSRF token (for the logout form).
    pub csrf: Option<&'a str>,
    /// Show the explain page in the menu.
    pub admin: bool,
    /// Show the CLI access keys page in the menu (`auth.keys` is on).
    pub keys: bool,
}

fn url_part(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Bytes in binary units with one decimal (`12.3 MiB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `2024-05-01T10:00:00.123456Z` → `2024-05-01 10:00:00 UTC`; anything else as it is.
pub fn human_time(text: &str) -> String {
    let t = text.trim();
    if t.len() >= 19 && t.as_bytes()[10] == b'T' {
        let (date, rest) = (&t[..10], &t[11..19]);
        let zone = &t[19..];
        let zone = zone.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        let zone = if zone == "Z" || zone.is_empty() {
            "UTC"
        } else {
            zone
        };
        return format!("{date} {rest} {zone}");
    }
    t.to_owned()
}

fn frame(chrome: &Chrome<'_>, heading: &str, body: Markup) -> Markup {
    let base = chrome.base;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (heading) " · " (chrome.title) }
                link rel="stylesheet" href={ (base) "static/" (assets::stylesheet()) };
                link rel="icon" type="image/svg+xml" href={ (base) "static/" (ICON) };
                script src={ (base) "static/" (assets::script()) } defer {}
            }
            body {
                header.top {
                    a.brand href=(base) { (chrome.title) }
                    @if let Some(account) = chrome.account {
                        nav aria-label="Main" {
                            a href=(base) { "Repositories" }
                            @if chrome.keys {
                                a href={ (base) "keys" } { "CLI access keys" }
                            }
                            @if chrome.admin {
                                a href={ (base) "explain" } { "Explain" }
                            }
                        }
                        div.who {
                            span { "Signed in as " strong { (account) } }
                            form method="post" action={ (base) "logout" } {
                                input type="hidden" name="csrf" value=(chrome.csrf.unwrap_or(""));
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
                // The version only for those logged in: to anyone else it would say which
                // release (and so which known bugs) runs here.
                @if chrome.account.is_some() {
                    footer { "portcullis " (env!("CARGO_PKG_VERSION")) }
                } @else {
                    footer { "portcullis" }
                }
            }
        }
    }
}

/// The login form; `problem` explains why the last attempt failed. With the account already
/// filled in (after a wrong password), the password field has the focus.
pub fn login(
    chrome: &Chrome<'_>,
    csrf: &str,
    account: &str,
    problem: Option<&str>,
    sso: Option<&str>,
) -> Markup {
    let base = chrome.base;
    let retry = !account.is_empty();
    frame(
        chrome,
        "Log in",
        html! {
            div.login.card {
                h1 { "Log in" }
                @if let Some(p) = problem {
                    p.notice role="alert" { strong { "Not logged in:" } (p) }
                }
                form method="post" action={ (base) "login" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="account" { "Account" }
                    input #account type="text" name="account" value=(account)
                        autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus[!retry];
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required autofocus[retry];
                    button type="submit" { "Log in" }
                }
                p.hint { "The same account and password as for docker login." }
                @if let Some(provider) = sso {
                    p.or { "or" }
                    a.button.sso href={ (base) "sso/start" } { "Sign in with " (provider) }
                    p.hint { "People of the identity provider sign in here; for docker login they create a CLI access key once signed in." }
                }
            }
        },
    )
}

/// The answer to a successful single sign-on: the session cookie is set here, and the page
/// moves on to the UI by itself — a same-site navigation, so the `SameSite=Strict` cookie goes
/// with it (a redirect would still count as part of the provider's cross-site navigation).
pub fn signed_in(chrome: &Chrome<'_>, account: &str) -> Markup {
    let base = chrome.base;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content={ "0;url=" (base) };
                title { "Signed in — " (chrome.title) }
                link rel="stylesheet" href={ (base) "static/" (assets::stylesheet()) };
                link rel="icon" type="image/svg+xml" href={ (base) "static/" (ICON) };
            }
            body {
                main {
                    div.login.card {
                        h1 { "Signed in" }
                        p { "Signed in as " strong { (account) } "." }
                        p { a href=(base) { "Continue" } }
                    }
                }
            }
        }
    }
}

/// What the CLI access keys page shows: the new key once, the form, the person's keys.
pub struct KeysPage<'a> {
    /// The signed-in account.
    pub account: &'a str,
    /// `host[:port]` clients reach the registry by, for the login line.
    pub host: &'a str,
    /// A key just made: (id, secret, expires as text). Shown once, never again.
    pub created: Option<(&'a str, &'a str, &'a str)>,
    /// Why the last form was refused.
    pub problem: Option<&'a str>,
    /// The person's keys: (id, description, scopes, created, expires).
    pub keys: Vec<(String, String, String, String, String)>,
    /// Days a new key lasts unless changed.
    pub default_days: u64,
    /// The most days the form accepts.
    pub max_days: u64,
}

/// The CLI access keys page: `docker login` cannot open a browser, so a signed-in person makes
/// a personal key here and pastes it as the password.
pub fn keys(chrome: &Chrome<'_>, page: &KeysPage<'_>) -> Markup {
    let base = chrome.base;
    let csrf = chrome.csrf.unwrap_or("");
    frame(
        chrome,
        "CLI access keys",
        html! {
            h1 { "CLI access keys" }
            @if let Some((id, secret, expires)) = page.created {
                section.card.created {
                    p.notice.ok role="status" { strong { "Key " code { (id) } " created." }
                        "Copy it now: it is shown only this once. It expires " (expires) "." }
                    p { "Log in with it (the username is yours; any would do):" }
                    div.cmds {
                        code.cmd #login-line data-copy {
                            "echo '" (secret) "' | docker login " (page.host) " -u " (page.account) " --password-stdin"
                        }
                        p { "The key alone:" }
                        code.cmd #secret data-copy { (secret) }
                    }
                }
            }
            @if let Some(p) = page.problem {
                p.notice role="alert" { strong { "Not created:" } (p) }
            }
            section.card {
                h2 { "New key" }
                p.hint { "A key logs in as you, with at most your rights: what the ACL grants you (narrowed further to the scopes below, if any) — never more." }
                form method="post" action={ (base) "keys" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="description" { "What it is for" }
                    input #description type="text" name="description" maxlength="200" placeholder="laptop, build machine…";
                    label for="days" { "Expires after (days)" }
                    input #days type="number" name="days" min="1" max=(page.max_days) value=(page.default_days) required;
                    label for="scopes" { "Scopes (optional, one per line)" }
                    textarea #scopes name="scopes" placeholder="repository:team/*:pull,push" {}
                    button type="submit" { "Create key" }
                }
            }
            @if !page.keys.is_empty() {
                section.card {
                    h2 { "Your keys" }
                    ul.keys {
                        @for (id, description, scopes, created, expires) in &page.keys {
                            li {
                                code { (id) } " " (description)
                                span.meta { " · " (scopes) " · created " (created) " · expires " (expires) }
                                form.inline method="post" action={ (base) "keys/revoke" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="id" value=(id);
                                    button.link type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// A single sign-on that did not work, and the way back.
pub fn sso_failed(chrome: &Chrome<'_>, problem: &str) -> Markup {
    let base = chrome.base;
    frame(
        chrome,
        "Sign-in failed",
        html! {
            div.login.card {
                h1 { "Sign-in failed" }
                p.notice role="alert" { strong { "Not signed in:" } (problem) }
                p { a href={ (base) "login" } { "Back to the sign-in page" } }
            }
        },
    )
}

fn page_link(base_href: &str, q: &str, extra: &str, page: usize) -> String {
    let mut s = format!("{base_href}?page={page}{extra}");
    if !q.is_empty() {
        s.push_str("&q=");
        s.push_str(&url_part(q));
    }
    s
}

fn pager(href: &str, q: &str, extra: &str, page: usize, pages: usize) -> Markup {
    html! {
        @if pages > 1 {
            nav.pages aria-label="Pages" {
                @if page > 1 {
                    a href=(page_link(href, q, extra, page - 1)) rel="prev" { "← Previous" }
                } @else {
                    span.disabled aria-hidden="true" { "← Previous" }
                }
                span { "Page " (page) " of " (pages) }
                @if page < pages {
                    a href=(page_link(href, q, extra, page + 1)) rel="next" { "Next →" }
                } @else {
                    span.disabled aria-hidden="true" { "Next →" }
                }
            }
        }
    }
}

/// How the repository list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoSort {
    /// By name.
    Name,
    /// Newest image first.
    Recent,
}

/// What the repository list shows.
pub struct RepositoriesView<'a> {
    /// The search text.
    pub q: &'a str,
    /// The names of this page, and the counts.
    pub found: &'a Found,
    /// Each name's tag count and newest image, in the same order.
    pub summaries: &'a [Summary],
    /// The order shown.
    pub sort: RepoSort,
    /// Sorting by age was asked for but there are too many repositories.
    pub sort_refused: bool,
}

fn summary_line(s: &Summary) -> Markup {
    html! {
        @if s.error { "unreadable" }
        @else {
            (s.tags) " " (if s.tags == 1 { "tag" } else { "tags" })
            @if let Some(t) = &s.newest { " · newest image " (human_time(t)) }
            @else if s.too_many { " · too many to date" }
        }
    }
}

/// The repositories the account may pull, filtered by `q`, with tag counts and the newest
/// image of each, by name or newest first.
pub fn repositories(chrome: &Chrome<'_>, view: &RepositoriesView<'_>) -> Markup {
    let base = chrome.base;
    let (q, found) = (view.q, view.found);
    let sort_href = |sort: &str| {
        let mut s = format!("{base}?sort={sort}");
        if !q.is_empty() {
            s.push_str("&q=");
            s.push_str(&url_part(q));
        }
        s
    };
    let extra = match view.sort {
        RepoSort::Name => "",
        RepoSort::Recent => "&sort=recent",
    };
    frame(
        chrome,
        "Repositories",
        html! {
            h1 { "Repositories" }
            form.search method="get" action=(base) role="search" {
                label.sr-only for="q" { "Search repositories" }
                input #q type="search" name="q" value=(q) placeholder="Search repositories";
                @if view.sort == RepoSort::Recent { input type="hidden" name="sort" value="recent"; }
                button type="submit" { "Search" }
            }
            nav.sort aria-label="Sort" {
                "Sort: "
                @if view.sort == RepoSort::Name { strong aria-current="true" { "by name" } }
                @else { a href=(sort_href("name")) { "by name" } }
                " · "
                @if view.sort == RepoSort::Recent { strong aria-current="true" { "newest image first" } }
                @else { a href=(sort_href("recent")) { "newest image first" } }
            }
            @if view.sort_refused {
                p.notice role="status" { strong { "Sorted by name:" } "too many repositories to sort by age; search to narrow the list." }
            }
            p.count {
                @if found.total == 0 {
                    @if q.is_empty() { "No repositories you may pull." }
                    @else { "No repository you may pull matches “" (q) "”." }
                } @else {
                    (found.total) " " (if found.total == 1 { "repository" } else { "repositories" })
                    @if !q.is_empty() { " matching “" (q) "”" }
                    @if found.pages > 1 { ", showing " (found.first + 1) "–" (found.first + found.names.len()) }
                }
            }
            @if !found.names.is_empty() {
                ul.repos {
                    @for (i, name) in found.names.iter().enumerate() {
                        li {
                            a href={ (base) "repo/" (name) } { (name) }
                            @if let Some(s) = view.summaries.get(i) {
                                span.meta { (summary_line(s)) }
                            }
                        }
                    }
                }
            }
            (pager(base, q, extra, found.page, found.pages))
        },
    )
}

/// How the tags of a repository page are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    /// Newest image first (by the config's `created`), then by name.
    Newest,
    /// By name: too many tags to read them all for their age.
    Name,
}

/// What the repository page shows.
pub struct RepositoryView<'a> {
    /// The repository.
    pub name: &'a str,
    /// The registry host for the pull commands.
    pub host: &'a str,
    /// The tags of this page, read.
    pub tags: &'a [TagInfo],
    /// All tags.
    pub total: usize,
    /// This page (1-based) and the number of pages.
    pub page: usize,
    /// Pages.
    pub pages: usize,
    /// The index of this page's first tag.
    pub first: usize,
    /// How the tags are ordered.
    pub order: TagOrder,
    /// The ACL grants `delete` on this repository: offer it.
    pub may_delete: bool,
    /// What was just deleted (after a delete's redirect).
    pub deleted: Option<&'a str>,
}

fn platform_line(p: &Platform) -> Markup {
    html! {
        (p.name.as_deref().unwrap_or("unknown platform"))
        @if let Some(size) = p.size { " — " (human_size(size)) }
    }
}

fn short_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn tag_href(base: &str, name: &str, tag: &str) -> String {
    format!("{base}repo/{name}/-/tag/{tag}")
}

fn delete_href(base: &str, name: &str, tag: &str) -> String {
    format!("{base}repo/{name}/-/delete?tag={tag}")
}

/// The pull commands: by tag, and pinned to the digest (what the tag points at now).
fn pull_lines(host: &str, name: &str, tag: &str, digest: Option<&str>) -> Markup {
    let reference = format!("{host}/{name}:{tag}");
    html! {
        div.cmds {
            p { "Pull with Docker:" }
            code.cmd data-copy { "docker pull " (reference) }
            @if let Some(d) = digest {
                p { "Pull exactly this image, pinned to its digest:" }
                code.cmd data-copy { "docker pull " (host) "/" (name) "@" (d) }
            }
            p { "Copy with skopeo:" }
            code.cmd data-copy { "skopeo copy docker://" (reference) " oci:" (short_name(name)) ":" (tag) }
        }
    }
}

fn tag_card(base: &str, view: &RepositoryView<'_>, t: &TagInfo) -> Markup {
    html! {
        section.card id={ "tag-" (t.tag) } {
            div.tag-title {
                h2 { span.sr-only { "Tag " } a href=(tag_href(base, view.name, &t.tag)) { code { (t.tag) } } }
                @if t.is_index { span.badge { "multi-platform" } }
            }
            @if let Some(e) = &t.error {
                p.notice role="status" { strong { "Unreadable:" } (e) }
            }
            dl.facts {
                dt { "Digest" }
                dd.digest.mono { (t.digest.as_deref().unwrap_or("—")) }
                dt { "Media type" }
                dd.mono { (t.media_type.as_deref().unwrap_or("—")) }
                @if !t.is_index {
                    dt { "Size" }
                    dd {
                        @if let Some(size) = t.size {
                            (human_size(size)) " " span.hint { "(" (size) " bytes, config + layers)" }
                        } @else { "—" }
                    }
                }
                dt { "Created" }
                dd { (t.created.as_deref().map(human_time).unwrap_or_else(|| "—".into())) }
                dt { @if t.is_index { "Platforms" } @else { "Platform" } }
                dd {
                    @if t.platforms.is_empty() { "—" }
                    @else if t.is_index {
                        ul.platforms {
                            @for p in &t.platforms { li { (platform_line(p)) } }
                            @if t.platforms_omitted > 0 { li { "… and " (t.platforms_omitted) " more" } }
                        }
                    } @else {
                        (t.platforms[0].name.as_deref().unwrap_or("unknown"))
                    }
                }
            }
            (pull_lines(view.host, view.name, &t.tag, t.digest.as_deref()))
            div.actions {
                a href=(tag_href(base, view.name, &t.tag)) { "Layers, labels and history" }
                @if view.may_delete && t.digest.is_some() {
                    a.danger href=(delete_href(base, view.name, &t.tag)) { "Delete…" }
                }
            }
        }
    }
}

/// A repository's tags with their details.
pub fn repository(chrome: &Chrome<'_>, view: &RepositoryView<'_>) -> Markup {
    let href = format!("{}repo/{}", chrome.base, view.name);
    frame(
        chrome,
        view.name,
        html! {
            p { a href=(chrome.base) { "← Repositories" } }
            h1 { (view.name) }
            @if let Some(d) = view.deleted {
                p.notice.ok role="status" { strong { "Deleted:" } span.mono { (d) } " and every tag that pointed at it." }
            }
            p.count {
                @if view.total == 0 { "No tags." }
                @else {
                    (view.total) " " (if view.total == 1 { "tag" } else { "tags" })
                    @if view.pages > 1 { ", showing " (view.first + 1) "–" (view.first + view.tags.len()) }
                    @match view.order {
                        TagOrder::Newest => ", newest first",
                        TagOrder::Name => ", by name (too many to sort by age)",
                    }
                }
            }
            @for t in view.tags { (tag_card(chrome.base, view, t)) }
            (pager(&href, "", "", view.page, view.pages))
        },
    )
}

/// What a tag's own page shows.
pub struct TagView<'a> {
    /// The repository.
    pub name: &'a str,
    /// The registry host for the pull commands.
    pub host: &'a str,
    /// The tag.
    pub tag: &'a str,
    /// What it points at, read whole.
    pub details: &'a TagDetails,
    /// The ACL grants `delete` on this repository: offer it.
    pub may_delete: bool,
}

fn pairs_table(caption: &str, pairs: &std::collections::BTreeMap<String, String>) -> Markup {
    html! {
        h3 { (caption) }
        @if pairs.is_empty() { p.hint { "None." } }
        @else {
            table.stack.pairs {
                thead { tr { th { "Key" } th { "Value" } } }
                tbody {
                    @for (k, v) in pairs {
                        tr { td.mono data-label="Key" { (k) } td data-label="Value" { (v) } }
                    }
                }
            }
        }
    }
}

fn image_section(view: &TagView<'_>, image: &ImageDetails) -> Markup {
    let index = view.details.is_index;
    html! {
        section.card.image {
            h2 {
                @if index { (image.platform.as_deref().unwrap_or("unknown platform")) }
                @else { "Image" @if let Some(p) = &image.platform { " · " (p) } }
            }
            @if let Some(e) = &image.error {
                p.notice role="status" { strong { "Partly unreadable:" } (e) }
            }
            dl.facts {
                @if index {
                    dt { "Digest" }
                    dd.digest.mono { (image.digest) }
                    dt { "Media type" }
                    dd.mono { (image.media_type) }
                }
                dt { "Created" }
                dd { (image.created.as_deref().map(human_time).unwrap_or_else(|| "—".into())) }
                dt { "Total size" }
                dd.total { (human_size(image.total)) " " span.hint { "(" (image.total) " bytes, config + " (image.layers.len()) " " (if image.layers.len() == 1 { "layer" } else { "layers" }) ")" } }
            }
            @if index {
                div.cmds {
                    p { "Pull this platform only:" }
                    code.cmd data-copy { "docker pull " (view.host) "/" (view.name) "@" (image.digest) }
                }
            }
            h3 { "Layers" }
            table.stack.layers {
                thead { tr { th { "#" } th { "Digest" } th { "Media type" } th.num { "Size" } } }
                tbody {
                    @for (i, l) in image.layers.iter().enumerate() {
                        tr {
                            td data-label="#" { (i + 1) }
                            td.mono data-label="Digest" { (l.digest) }
                            td.mono data-label="Media type" { (l.media_type) }
                            td.num data-label="Size" { (human_size(l.size)) }
                        }
                    }
                    @if let Some(c) = &image.config {
                        tr {
                            td data-label="#" { "config" }
                            td.mono data-label="Digest" { (c.digest) }
                            td.mono data-label="Media type" { (c.media_type) }
                            td.num data-label="Size" { (human_size(c.size)) }
                        }
                    }
                }
            }
            (pairs_table("Labels", &image.labels))
            (pairs_table("Annotations", &image.annotations))
            h3 { "History" }
            @if image.history.is_empty() { p.hint { "None recorded." } }
            @else {
                table.stack.history {
                    thead { tr { th { "Created" } th { "Step" } th { "Layer" } } }
                    tbody {
                        @for step in &image.history {
                            tr {
                                td data-label="Created" { (step.created.as_deref().map(human_time).unwrap_or_default()) }
                                td.cmdline data-label="Step" {
                                    (step.created_by.as_deref().unwrap_or(""))
                                    @if let Some(c) = step.comment.as_deref().filter(|c| !c.is_empty()) {
                                        " " span.hint { "(" (c) ")" }
                                    }
                                }
                                td data-label="Layer" { @if step.empty_layer { "none" } @else { "yes" } }
                            }
                        }
                        @if image.history_omitted > 0 {
                            tr { td colspan="3" { "… and " (image.history_omitted) " more steps" } }
                        }
                    }
                }
            }
        }
    }
}

/// A tag's own page: what it points at, each image's layers, labels, annotations and history.
pub fn tag(chrome: &Chrome<'_>, view: &TagView<'_>) -> Markup {
    let base = chrome.base;
    let d = view.details;
    let total: u64 = d
        .images
        .iter()
        .fold(0u64, |acc, i| acc.saturating_add(i.total));
    let created = d.images.iter().filter_map(|i| i.created.clone()).max();
    let heading = format!("{}:{}", view.name, view.tag);
    frame(
        chrome,
        &heading,
        html! {
            p { a href={ (base) "repo/" (view.name) } { "← " (view.name) } }
            h1 { (view.name) ":" (view.tag) }
            section.card {
                dl.facts {
                    dt { "Digest" }
                    dd.digest.mono { (d.digest) }
                    dt { "Media type" }
                    dd.mono { (d.media_type) }
                    dt { "Created" }
                    dd { (created.as_deref().map(human_time).unwrap_or_else(|| "—".into())) }
                    dt { "Total size" }
                    dd.total {
                        (human_size(total)) " " span.hint {
                            "(" (total) " bytes"
                            @if d.is_index { ", all " (d.images.len()) " platforms" } @else { ", config + layers" }
                            ")"
                        }
                    }
                }
                (pull_lines(view.host, view.name, view.tag, Some(&d.digest)))
                @if d.is_index && !d.annotations.is_empty() {
                    (pairs_table("Index annotations", &d.annotations))
                }
                @if view.may_delete {
                    div.actions {
                        a.danger href=(delete_href(base, view.name, view.tag)) { "Delete…" }
                    }
                }
            }
            @for image in &d.images { (image_section(view, image)) }
            @if d.platforms_omitted > 0 {
                p.hint { "… and " (d.platforms_omitted) " more platforms, not shown." }
            }
        },
    )
}

/// What the delete confirmation shows.
pub struct DeleteView<'a> {
    /// The repository.
    pub name: &'a str,
    /// The tag the visitor came from.
    pub tag: &'a str,
    /// The manifest that would be deleted.
    pub digest: &'a str,
    /// Every tag that points at it (all of them go with it).
    pub tags: &'a [String],
    /// False when the repository has too many tags to check them all.
    pub tags_complete: bool,
}

/// The confirmation before a delete: what goes, and a form that posts it.
pub fn confirm_delete(chrome: &Chrome<'_>, view: &DeleteView<'_>) -> Markup {
    let base = chrome.base;
    frame(
        chrome,
        "Delete",
        html! {
            p { a href={ (base) "repo/" (view.name) } { "← " (view.name) } }
            h1 { "Delete " (view.name) ":" (view.tag) "?" }
            section.card {
                p { "This deletes the manifest" }
                p.digest.mono { (view.digest) }
                p {
                    "from " strong { (view.name) } " in the registry. The registry deletes by digest, so "
                    strong { "every tag that points at it goes too" } ":"
                }
                ul.doomed {
                    @for t in view.tags { li { code { (t) } } }
                }
                @if !view.tags_complete {
                    p.notice role="status" { strong { "Possibly more:" } "the repository has too many tags to check them all; others may point at it as well." }
                }
                p { "Pulls by this digest fail from now on. This cannot be undone here." }
                form method="post" action={ (base) "repo/" (view.name) "/-/delete" } {
                    input type="hidden" name="csrf" value=(chrome.csrf.unwrap_or(""));
                    input type="hidden" name="digest" value=(view.digest);
                    input type="hidden" name="tag" value=(view.tag);
                    div.actions {
                        button.danger type="submit" { "Delete" }
                        a href=(tag_href(base, view.name, view.tag)) { "Cancel" }
                    }
                }
            }
        },
    )
}

/// The explain form's fields, as typed.
#[derive(Debug, Clone, Default)]
pub struct ExplainForm {
    /// Account.
    pub account: String,
    /// `key=value` lines.
    pub labels: String,
    /// Client address.
    pub ip: String,
    /// One scope per line.
    pub scopes: String,
}

/// One answered scope.
pub struct ExplainRow {
    /// The scope.
    pub scope: String,
    /// Granted actions, empty for none.
    pub granted: Vec<String>,
    /// `file:line` of the deciding rule.
    pub rule: Option<String>,
    /// Its comment.
    pub comment: Option<String>,
}

/// The explain page: the form, and the answers when it was posted.
pub fn explain(
    chrome: &Chrome<'_>,
    form: &ExplainForm,
    labels_used: Option<&str>,
    rows: &[ExplainRow],
    problem: Option<&str>,
) -> Markup {
    let base = chrome.base;
    frame(
        chrome,
        "Explain",
        html! {
            h1 { "Explain a decision" }
            p.lead { "Which actions the ACL grants, and which rule decides — the same engine as " code { "portcullis explain" } "." }
            @if let Some(p) = problem {
                p.notice role="alert" { strong { "Cannot explain:" } (p) }
            }
            @if !rows.is_empty() {
                section.card aria-labelledby="answers" {
                    h2 #answers { "Answers for " code { (form.account) } }
                    @if let Some(l) = labels_used { p.hint { "Labels: " (l) } }
                    table.stack {
                        thead { tr { th { "Scope" } th { "Granted" } th { "Deciding rule" } } }
                        tbody {
                            @for r in rows {
                                tr {
                                    td.mono data-label="Scope" { (r.scope) }
                                    td data-label="Granted" {
                                        @if r.granted.is_empty() { span.granted-none { "nothing (denied)" } }
                                        @else { (r.granted.join(", ")) }
                                    }
                                    td data-label="Deciding rule" {
                                        @if let Some(rule) = &r.rule {
                                            code { (rule) }
                                            @if let Some(c) = &r.comment { " — " (c) }
                                        } @else { "no rule matched (denied by default)" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.card method="post" action={ (base) "explain" } {
                input type="hidden" name="csrf" value=(chrome.csrf.unwrap_or(""));
                label for="account" { "Account " span.hint { "(empty for anonymous)" } }
                input #account type="text" name="account" value=(form.account) autocapitalize="none" spellcheck="false";
                label for="labels" { "Extra labels " span.hint { "(key=value, one per line; added to the account's own)" } }
                textarea #labels name="labels" spellcheck="false" { (form.labels) }
                label for="ip" { "Client address " span.hint { "(optional)" } }
                input #ip type="text" name="ip" value=(form.ip) spellcheck="false";
                label for="scopes" { "Scopes " span.hint { "(type:name:actions, one per line)" } }
                textarea #scopes name="scopes" spellcheck="false" required { (form.scopes) }
                p { button type="submit" { "Explain" } }
            }
        },
    )
}

/// An error page: the heading and a sentence.
pub fn problem(chrome: &Chrome<'_>, heading: &str, message: &str) -> Markup {
    frame(
        chrome,
        heading,
        html! {
            h1 { (heading) }
            p { (message) }
            p { a href=(chrome.base) { "← Repositories" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(
            human_time("2024-05-01T10:00:00.123456789Z"),
            "2024-05-01 10:00:00 UTC"
        );
        assert_eq!(
            human_time("2024-05-01T10:00:00+02:00"),
            "2024-05-01 10:00:00 +02:00"
        );
        assert_eq!(human_time("yesterday"), "yesterday");
    }

    #[test]
    fn after_a_wrong_password_the_password_field_has_the_focus() {
        let chrome = Chrome {
            title: "t",
            base: "/ui/",
            account: None,
            csrf: None,
            admin: false,
            keys: false,
        };
        let fresh = login(&chrome, "tok", "", None, None).into_string();
        let retry = login(&chrome, "tok", "alice", Some("wrong"), None).into_string();
        let focused = |page: &str| {
            let at = page.find(" autofocus").expect("one field has the focus");
            let start = page[..at].rfind("<input").unwrap();
            page[start..at].contains("id=\"password\"")
        };
        assert!(!focused(&fresh) && focused(&retry));
        assert_eq!(retry.matches("autofocus").count(), 1);
    }

    #[test]
    fn values_are_escaped() {
        let chrome = Chrome {
            title: "<t>",
            base: "/ui/",
            account: Some("<script>"),
            csrf: Some("x\"y"),
            admin: false,
            keys: true,
        };
        let page = login(&chrome, "tok", "\"><img>", Some("<b>"), Some("<i>idp")).into_string();
        assert!(
            !page.contains("<script>")
                && !page.contains("<img>")
                && !page.contains("<b>")
                && !page.contains("<i>")
        );
        assert!(page.contains("&lt;script&gt;"));
        let anonymous = Chrome {
            account: None,
            csrf: None,
            ..chrome
        };
        let page = login(&anonymous, "tok", "", None, None).into_string();
        assert!(!page.contains("style="), "no inline style");
        assert_eq!(page.matches("<script").count(), 1, "one script");
        assert!(
            page.contains("<script src=\"/ui/static/portcullis-"),
            "the script is a file"
        );
        assert!(
            !page.contains(env!("CARGO_PKG_VERSION")),
            "no version for anonymous visitors"
        );
    }
}
