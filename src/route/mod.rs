//! Request target → scope (repository + action), decided before anything else.
//!
//! The proxy authorizes a request by the repository it names, and the
//! upstream registry (CNCF distribution, `registry:2`) serves the request by
//! the repository *it* reads out of the same bytes. If the two readings can
//! ever differ, a caller allowed on `alice/app` can make the registry act on
//! `bob/secret`. So this module accepts only the one spelling of each
//! endpoint that the registry's router (gorilla/mux over Go's `net/url`)
//! reads exactly as we do, and refuses everything else *before* it is
//! forwarded: no decoding, no cleaning, no guessing.
//!
//! How the registry reads a request, and what we do about it:
//!
//! * Go decodes `%XX` in the path before mux matches (`%2F` becomes `/`), so
//!   a `%` anywhere in the path is refused.
//! * mux cleans the path (`//`, `.`, `..`) and redirects; with `StrictSlash`
//!   it also redirects on a trailing slash mismatch. Every one of those is
//!   refused, so what we authorize is the path the registry serves.
//! * The repository name may itself contain `manifests`, `blobs`, `tags`,
//!   `uploads` components; mux's anchored regexes split the path so that the
//!   endpoint is the *last* segments. We parse from the right for the same
//!   reason.
//! * The registry reads `mount`/`from` with Go's `r.FormValue`, which is
//!   `url.ParseQuery` and silently drops pairs it cannot parse; we parse the
//!   query the same way and refuse anything Go would silently drop or where
//!   Go would pick one of several values.
//!
//! HEAD: accepted wherever GET is (`/v2/`, `_catalog`, manifests, blobs,
//! tags/list, referrers, upload status), with the same scope as GET. Some
//! registry handlers (tags, catalog) answer HEAD with 405 themselves; that is
//! harmless because a HEAD never needs more than the GET would, so accepting
//! it cannot widen what a caller reaches.
//!
//! Not handled here: on a POST, PUT or PATCH, Go's `r.FormValue` also reads
//! `mount`/`from`/`digest`/`_state` out of a form-encoded *body*, which this
//! module never sees. The proxy never forwards the client's `Content-Type`
//! on those endpoints (see `proxy/forward.rs`), so no body is ever a form to
//! the registry.

use std::fmt;

mod grammar;
mod query;

pub use grammar::{is_valid_digest, is_valid_name, is_valid_tag, is_valid_upload_id};
pub use query::parse_query;
use query::*;

/// The registry's limit on the total length of a repository name
/// (`reference.NameTotalLengthMax`); longer names are refused here so the
/// proxy never authorizes a name the registry would reject anyway.
pub const NAME_MAX_LEN: usize = 255;

/// What a request does to a repository.
///
/// Exists because the ACL grants permissions per action, and the action must
/// come from the (method, endpoint) table here rather than from anything the
/// caller claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Reading manifests, blobs, tags, referrers.
    Pull,
    /// Writing manifests and blobs (including every step of an upload).
    Push,
    /// Deleting manifests or blobs.
    Delete,
}

impl Action {
    /// The action's name as used in token scopes and ACL files, so every
    /// module spells it the same way.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which endpoint, for metrics/logs.
///
/// Exists so logs and metrics can be labelled with a bounded set of values
/// instead of raw (attacker-chosen) paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest,
    /// `/v2/<name>/blobs/<digest>`.
    Blob,
    /// `POST /v2/<name>/blobs/uploads/`.
    UploadStart,
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload,
    /// `/v2/<name>/tags/list`.
    TagsList,
    /// `/v2/<name>/referrers/<digest>`.
    Referrers,
}

impl Endpoint {
    /// A fixed label for metrics and logs, so no label value ever comes from
    /// the request.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Manifest => "manifest",
            Endpoint::Blob => "blob",
            Endpoint::UploadStart => "upload_start",
            Endpoint::Upload => "upload",
            Endpoint::TagsList => "tags_list",
            Endpoint::Referrers => "referrers",
        }
    }

    /// The methods this endpoint accepts, as an `Allow` header value, so a
    /// 405 tells the client what would have worked.
    pub fn allow(self) -> &'static str {
        match self {
            Endpoint::Base | Endpoint::Catalog | Endpoint::TagsList | Endpoint::Referrers => {
                "GET, HEAD"
            }
            Endpoint::Manifest => "GET, HEAD, PUT, DELETE",
            Endpoint::Blob => "GET, HEAD, DELETE",
            Endpoint::UploadStart => "POST",
            Endpoint::Upload => "GET, HEAD, PATCH, PUT, DELETE",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cross-repository blob mount asked for on an upload start.
///
/// Exists because a mount reads a blob out of *another* repository
/// (`from`): the caller needs pull there too, and when it lacks it the proxy
/// leaves the mount out of the target it forwards ([`Parsed::target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The blob to mount (validated digest).
    pub digest: String,
    /// The repository it is mounted from (validated name).
    pub from: String,
}

/// A parsed request.
///
/// Exists so that authorization works on one typed value that was derived
/// exactly once from the request target, never on the raw path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/` — needs only a valid login.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// Everything about one repository.
    Repository {
        /// The repository the registry will act on.
        name: String,
        /// What the request does to it.
        action: Action,
        /// Which endpoint (for logs/metrics; the action already decides).
        endpoint: Endpoint,
        /// A cross-repository mount (only on [`Endpoint::UploadStart`], and
        /// only when both `mount` and `from` were given).
        mount: Option<Mount>,
    },
}

impl Route {
    /// The endpoint, so logs and metrics need not match on the variants.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Route::Base => Endpoint::Base,
            Route::Catalog => Endpoint::Catalog,
            Route::Repository { endpoint, .. } => *endpoint,
        }
    }

    /// The repository the request touches, if any, so the policy has one
    /// place to read it from.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Repository { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The action on [`Route::repository`], if any.
    pub fn action(&self) -> Option<Action> {
        match self {
            Route::Repository { action, .. } => Some(*action),
            _ => None,
        }
    }

    /// The requested mount, if any, so the policy can check pull on `from`.
    pub fn mount(&self) -> Option<&Mount> {
        match self {
            Route::Repository { mount, .. } => mount.as_ref(),
            _ => None,
        }
    }
}

/// Why a request was refused before it reached the upstream; maps to an HTTP
/// status and an OCI error code.
///
/// Exists so refusals are answered by the proxy with a registry-shaped error
/// body the client understands. Messages are static: they never echo the
/// (attacker-controlled, unbounded) request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Absolute-form, authority-form, `*` or empty target.
    #[error("request target must be a path (origin form)")]
    NotOriginForm,
    /// A path the registry would decode, clean or redirect; the text says
    /// which rule.
    #[error("non-canonical request path: {0}")]
    NonCanonicalPath(&'static str),
    /// A query Go would parse differently from us or silently drop parts of.
    #[error("unparseable query string: {0}")]
    BadQuery(&'static str),
    /// Repository name (in the path or in `from`) fails the grammar.
    #[error("invalid repository name")]
    InvalidName,
    /// A digest (in the path or in `mount`) fails the grammar.
    #[error("invalid digest")]
    InvalidDigest,
    /// An upload id that fails the grammar.
    #[error("invalid upload id")]
    InvalidUploadId,
    /// Not a registry API endpoint.
    #[error("not a registry API endpoint")]
    NotFound,
    /// A known endpoint with a method it does not serve.
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed {
        /// Value for the `Allow` response header.
        allow: &'static str,
    },
}

impl RouteError {
    /// The HTTP status to answer with, so the proxy need not know the rules.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound => 404,
            RouteError::MethodNotAllowed { .. } => 405,
            _ => 400,
        }
    }

    /// The OCI error code for the body, so clients show a meaningful error.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::InvalidName => "NAME_INVALID",
            RouteError::InvalidDigest => "DIGEST_INVALID",
            RouteError::InvalidUploadId => "BLOB_UPLOAD_INVALID",
            RouteError::NotOriginForm
            | RouteError::NonCanonicalPath(_)
            | RouteError::BadQuery(_)
            | RouteError::NotFound
            | RouteError::MethodNotAllowed { .. } => "UNSUPPORTED",
        }
    }

    /// The `Allow` header value for a 405, if this is one.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            RouteError::MethodNotAllowed { allow } => Some(allow),
            _ => None,
        }
    }
}

// Reasons for `NonCanonicalPath` / `BadQuery`. Constants so tests can
// compare exactly and messages stay static.
const R_BYTE: &str = "byte outside visible ASCII";
const R_PERCENT: &str = "percent-encoding in path";
const R_BACKSLASH: &str = "backslash in path";
const R_FRAGMENT: &str = "'#' in path";
const R_EMPTY_SEGMENT: &str = "empty path segment";
const R_DOT_SEGMENT: &str = "'.' or '..' path segment";
const R_TRAILING_SLASH: &str = "trailing slash";
const R_MISSING_SLASH: &str = "upload start needs its trailing slash";
const Q_BYTE: &str = "byte outside visible ASCII";
const Q_FRAGMENT: &str = "'#' in query";
const Q_SEMICOLON: &str = "';' in query";
const Q_ESCAPE: &str = "invalid percent-escape";
const Q_UTF8: &str = "not UTF-8 after decoding";
const Q_DUP_MOUNT: &str = "'mount' given more than once";
const Q_DUP_FROM: &str = "'from' given more than once";
const Q_DUP_PARAM: &str = "a parameter given more than once";

/// Parses a request. `target` is the raw request target as received (path
/// plus optional `?query`), `method` the uppercase method.
///
/// Exists so the proxy authorizes exactly what the registry will serve: any
/// target whose meaning could differ between us and the registry is an
/// error, and an error must be answered by the proxy, never forwarded. The
/// proxy must forward the very bytes it passed here.
pub fn parse(method: &str, target: &str) -> Result<Route, RouteError> {
    parse_bytes(method, target.as_bytes())
}

/// [`parse`] on raw bytes, because the request target on the wire need not
/// be UTF-8 (Pingora hands out the raw path as bytes); non-ASCII is refused
/// either way.
pub fn parse_bytes(method: &str, target: &[u8]) -> Result<Route, RouteError> {
    parse_request(method, target).map(|p| p.route)
}

/// A parsed request: the [`Route`] that is authorized, and what is needed to
/// rebuild the request target the registry gets ([`Parsed::target`]).
///
/// Exists so the proxy forwards what it parsed, not what it received: the
/// registry is sent a target re-serialised from the authorized parts, with
/// only the query parameters that endpoint reads, so no spelling of the
/// client's can reach the registry's parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// What the request does, as authorized.
    pub route: Route,
    /// The final path segment (reference, digest, upload id); empty where the
    /// endpoint has none.
    last: String,
    /// The query parameters the registry reads on this endpoint, decoded, in
    /// a fixed order. `mount`/`from` are not here: they come from the route.
    params: Vec<(&'static str, String)>,
    /// A manifest reference that is neither a tag nor a digest. The
    /// registry's router matches no route for it and answers 404, as the OCI
    /// conformance suite requires; portcullis answers that itself, after
    /// authorization, without forwarding.
    pub unknown_reference: bool,
}

impl Parsed {
    /// The manifest reference (tag or digest) as forwarded, for manifest requests: what the
    /// manifest cache files answers under.
    pub fn reference(&self) -> Option<&str> {
        (self.route.endpoint() == Endpoint::Manifest && !self.unknown_reference)
            .then_some(self.last.as_str())
    }

    /// The origin-form target to send upstream, rebuilt from the parsed parts.
    /// `drop_mount`: the caller may not pull the mount's source, so the upload
    /// starts without it (as registry:2 itself does when a mount fails).
    pub fn target(&self, drop_mount: bool) -> String {
        self.target_renamed(drop_mount, &|name| name.to_owned())
    }

    /// [`Parsed::target`] with every repository name (the path's and a mount's `from`) as
    /// `rename` gives it: the name an upstream that serves a prefix with `strip_prefix` knows
    /// the repository by.
    pub fn target_renamed(&self, drop_mount: bool, rename: &dyn Fn(&str) -> String) -> String {
        let mut out = String::with_capacity(64);
        let from;
        match &self.route {
            Route::Base => out.push_str("/v2/"),
            Route::Catalog => out.push_str("/v2/_catalog"),
            Route::Repository { name, endpoint, .. } => {
                out.push_str("/v2/");
                out.push_str(&rename(name));
                let (keyword, last) = match endpoint {
                    Endpoint::Manifest => ("/manifests/", self.last.as_str()),
                    Endpoint::Blob => ("/blobs/", self.last.as_str()),
                    Endpoint::UploadStart => ("/blobs/uploads/", ""),
                    Endpoint::Upload => ("/blobs/uploads/", self.last.as_str()),
                    Endpoint::TagsList => ("/tags/list", ""),
                    Endpoint::Referrers => ("/referrers/", self.last.as_str()),
                    // Not repository endpoints; never built with a name.
                    Endpoint::Base | Endpoint::Catalog => ("", ""),
                };
                out.push_str(keyword);
                out.push_str(last);
            }
        }
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(self.params.len() + 2);
        if let (Some(m), false) = (self.route.mount(), drop_mount) {
            from = rename(&m.from);
            pairs.push(("mount", &m.digest));
            pairs.push(("from", &from));
        }
        pairs.extend(self.params.iter().map(|(k, v)| (*k, v.as_str())));
        for (i, (k, v)) in pairs.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(k);
            out.push('=');
            out.extend(percent_encoding::utf8_percent_encode(v, QUERY_VALUE));
        }
        out
    }
}

/// Parses a request into its [`Route`] and what is needed to rebuild it.
///
/// Exists so the proxy authorizes exactly what the registry will serve: any
/// target whose meaning could differ between us and the registry is an
/// error, answered by the proxy and never forwarded; anything that is
/// forwarded is rebuilt by [`Parsed::target`].
pub fn parse_request(method: &str, target: &[u8]) -> Result<Parsed, RouteError> {
    // Only origin form ("/path?query"). Absolute form (`http://host/v2/..`)
    // makes the authority part of the target: a proxy and an upstream that
    // disagree on which part is the path disagree on the repository. `*` and
    // authority form have no path at all.
    if target.first() != Some(&b'/') {
        return Err(RouteError::NotOriginForm);
    }
    // Go (and every HTTP parser) splits at the first '?'.
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    check_path_bytes(path)?;
    if let Some(q) = query {
        check_query_bytes(q)?;
    }
    // Both halves are visible ASCII now, so these cannot fail; map anyway
    // rather than unwrap.
    let path = std::str::from_utf8(path).map_err(|_| RouteError::NonCanonicalPath(R_BYTE))?;
    let query = match query {
        Some(q) => Some(std::str::from_utf8(q).map_err(|_| RouteError::BadQuery(Q_BYTE))?),
        None => None,
    };
    check_segments(path)?;

    let shape = classify(path)?;
    let mut unknown_reference = false;
    let (endpoint, name, last) = match shape {
        Shape::Base => (Endpoint::Base, None, ""),
        Shape::Catalog => (Endpoint::Catalog, None, ""),
        Shape::Repo {
            endpoint,
            name,
            last,
        } => {
            unknown_reference = validate_repo_parts(endpoint, name, last)?;
            (endpoint, Some(name), last)
        }
    };

    // Validate the query on every endpoint: whatever handler the registry
    // runs reads it with Go's parser, so it must parse the same for us.
    let pairs = match query {
        Some(q) => parse_query(q)?,
        None => Vec::new(),
    };

    let action = method_action(endpoint, method)?;
    let params = kept_pairs(&pairs, kept_params(endpoint, method))?;

    let (Some(name), Some(action)) = (name, action) else {
        let route = match endpoint {
            Endpoint::Catalog => Route::Catalog,
            _ => Route::Base,
        };
        return Ok(Parsed {
            route,
            last: String::new(),
            params,
            unknown_reference: false,
        });
    };

    let mount = if endpoint == Endpoint::UploadStart {
        mount_of(&pairs)?
    } else {
        // The registry reads `mount`/`from` only in StartBlobUpload, which
        // mux reaches only through POST on an upload path; POST on an upload
        // id is refused above (405), so they mean nothing elsewhere.
        None
    };

    Ok(Parsed {
        route: Route::Repository {
            name: name.to_owned(),
            action,
            endpoint,
            mount,
        },
        last: last.to_owned(),
        params,
        unknown_reference,
    })
}

/// Byte-level rules for the path, checked before any structure is read.
fn check_path_bytes(path: &[u8]) -> Result<(), RouteError> {
    for &b in path {
        match b {
            // Go decodes `%XX` before routing: `%2F` would become a `/` the
            // registry splits on and we did not, `%2e%2e` a `..` it cleans,
            // and `%252F` is one decode away from either.
            b'%' => return Err(RouteError::NonCanonicalPath(R_PERCENT)),
            // Some stacks treat `\` as `/`; the registry does not. Either
            // way it is in no grammar, and letting it through invites a
            // split-brain between intermediaries.
            b'\\' => return Err(RouteError::NonCanonicalPath(R_BACKSLASH)),
            // Go's request-URI parser keeps `#` in the path while others
            // (the `http` crate) cut the "fragment" off: the two would see
            // different paths. Behind Pingora this never fires (the `http`
            // crate has already dropped the fragment, and the target we
            // forward is rebuilt from what we parsed, so it carries none);
            // it keeps the parser safe for callers that hand it raw bytes.
            b'#' => return Err(RouteError::NonCanonicalPath(R_FRAGMENT)),
            // Control bytes, space, DEL and non-ASCII: Go refuses control
            // bytes, other parsers differ on the rest (obs-text, UTF-8
            // normalisation); none is in any grammar here.
            0x21..=0x7e => {}
            _ => return Err(RouteError::NonCanonicalPath(R_BYTE)),
        }
    }
    Ok(())
}

/// Byte-level rules for the raw query.
fn check_query_bytes(query: &[u8]) -> Result<(), RouteError> {
    for &b in query {
        match b {
            // Same as in the path: an intermediary that drops the
            // "fragment" would forward a different query than Go parses.
            b'#' => return Err(RouteError::BadQuery(Q_FRAGMENT)),
            // Go refuses control bytes; raw non-ASCII is parsed by some
            // stacks and re-encoded by others. Legitimate clients
            // percent-encode.
            0x21..=0x7e => {}
            _ => return Err(RouteError::BadQuery(Q_BYTE)),
        }
    }
    Ok(())
}

/// Segment rules: no empty segments, no dot segments.
fn check_segments(path: &str) -> Result<(), RouteError> {
    // mux cleans `//` to `/` (and redirects), which would move components
    // between the name and the endpoint. A leading `//` could also be read
    // as a scheme-relative authority by some intermediary. The allowed
    // trailing slashes (`/v2/`, `/blobs/uploads/`) are single, not `//`.
    if path.contains("//") {
        return Err(RouteError::NonCanonicalPath(R_EMPTY_SEGMENT));
    }
    // mux resolves `.` and `..` (and redirects): `/v2/a/../b/...` is `b` to
    // the registry but would be `a/../b` to a naive reader. Refuse rather
    // than clean: cleaning is exactly where implementations disagree.
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(RouteError::NonCanonicalPath(R_DOT_SEGMENT));
    }
    Ok(())
}

/// The shape of a `/v2` path, read from the right.
enum Shape<'a> {
    Base,
    Catalog,
    Repo {
        endpoint: Endpoint,
        name: &'a str,
        /// The final segment (reference, digest, upload id; "list" for
        /// tags; empty for upload start).
        last: &'a str,
    },
}

/// Splits a path (already byte- and segment-checked) into endpoint and
/// parts, from the right, the way the registry's anchored route regexes do.
fn classify(path: &str) -> Result<Shape<'_>, RouteError> {
    // `/v2` without slash: the registry redirects it to `/v2/`; it is the
    // same check, needing only a login.
    if path == "/v2" {
        return Ok(Shape::Base);
    }
    // Not ours (`/`, `/auth`, `/v20/`, `/V2/`): the proxy dispatches its own
    // paths before calling us; whatever is left is not a registry endpoint.
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(RouteError::NotFound);
    };
    if rest.is_empty() {
        return Ok(Shape::Base);
    }
    if rest == "_catalog" {
        return Ok(Shape::Catalog);
    }
    if let Some(prefix) = rest.strip_suffix('/') {
        // The one endpoint with a trailing slash. Anything else ending in
        // `/` (`_catalog/`, `tags/list/`, `manifests/`) is redirected by mux
        // (StrictSlash) or unroutable; refusing keeps one spelling per
        // endpoint.
        if let Some(name) = prefix.strip_suffix("/blobs/uploads") {
            return repo(Endpoint::UploadStart, name, "");
        }
        if prefix == "blobs/uploads" {
            // `/v2/blobs/uploads/`: no name in front.
            return Err(RouteError::NotFound);
        }
        return Err(RouteError::NonCanonicalPath(R_TRAILING_SLASH));
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return repo(Endpoint::TagsList, name, "list");
    }
    // Every other endpoint is `<name>/<keyword>/<last>`; `last` never
    // contains `/`, so the keyword is always the second segment from the
    // right and the name everything before it.
    let Some((before, last)) = rest.rsplit_once('/') else {
        // `/v2/<one segment>`: no endpoint.
        return Err(RouteError::NotFound);
    };
    let (name, keyword) = match before.rsplit_once('/') {
        Some((name, keyword)) => (name, keyword),
        // `/v2/manifests/x`: keyword with no name in front.
        None => return Err(RouteError::NotFound),
    };
    match keyword {
        "manifests" => repo(Endpoint::Manifest, name, last),
        "referrers" => repo(Endpoint::Referrers, name, last),
        "blobs" if last == "uploads" => {
            // `/v2/x/blobs/uploads`: mux redirects to the upload start;
            // refuse rather than read `uploads` as a digest.
            Err(RouteError::NonCanonicalPath(R_MISSING_SLASH))
        }
        "blobs" => repo(Endpoint::Blob, name, last),
        "uploads" => match name.rsplit_once('/') {
            Some((name, "blobs")) => repo(Endpoint::Upload, name, last),
            _ => Err(RouteError::NotFound),
        },
        _ => Err(RouteError::NotFound),
    }
}

fn repo<'a>(endpoint: Endpoint, name: &'a str, last: &'a str) -> Result<Shape<'a>, RouteError> {
    // An empty name (`/v2/blobs/uploads/`, `/v2/tags/list`) matches no
    // registry route at all.
    if name.is_empty() {
        return Err(RouteError::NotFound);
    }
    Ok(Shape::Repo {
        endpoint,
        name,
        last,
    })
}

/// Grammar checks on the name and the final segment. `Ok(true)`: a manifest
/// reference in neither the tag nor the digest grammar, which the registry
/// routes nowhere (404) — answered after authorization, never forwarded.
fn validate_repo_parts(endpoint: Endpoint, name: &str, last: &str) -> Result<bool, RouteError> {
    // The name is what authorization keys on: only the strict grammar, so no
    // two spellings denote one repository and none needs normalising.
    if !is_valid_name(name) {
        return Err(RouteError::InvalidName);
    }
    let refused = match endpoint {
        Endpoint::Manifest => return Ok(!is_valid_tag(last) && !is_valid_digest(last)),
        Endpoint::Blob | Endpoint::Referrers => {
            (!is_valid_digest(last)).then_some(RouteError::InvalidDigest)
        }
        Endpoint::Upload => (!is_valid_upload_id(last)).then_some(RouteError::InvalidUploadId),
        _ => None,
    };
    refused.map_or(Ok(false), Err)
}

/// The (endpoint, method) table. `Ok(None)` for endpoints with no
/// repository.
fn method_action(endpoint: Endpoint, method: &str) -> Result<Option<Action>, RouteError> {
    use Action::*;
    // A known shape with a method the table does not list is refused with
    // 405 rather than forwarded: the registry dispatches some shapes to
    // handlers that do more than the table implies (POST on an upload id
    // runs StartBlobUpload, with mount; `/v2/` answers any method), so the
    // action would be guessed.
    let action = match (endpoint, method) {
        (Endpoint::Base | Endpoint::Catalog, "GET" | "HEAD") => None,
        (Endpoint::Manifest, "GET" | "HEAD") => Some(Pull),
        (Endpoint::Manifest, "PUT") => Some(Push),
        (Endpoint::Manifest, "DELETE") => Some(Delete),
        (Endpoint::Blob, "GET" | "HEAD") => Some(Pull),
        (Endpoint::Blob, "DELETE") => Some(Delete),
        (Endpoint::UploadStart, "POST") => Some(Push),
        (Endpoint::Upload, "GET" | "HEAD" | "PATCH" | "PUT" | "DELETE") => Some(Push),
        (Endpoint::TagsList | Endpoint::Referrers, "GET" | "HEAD") => Some(Pull),
        _ => {
            return Err(RouteError::MethodNotAllowed {
                allow: endpoint.allow(),
            })
        }
    };
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn d512() -> String {
        format!("sha512:{}", "0123456789abcdef".repeat(8))
    }

    fn r(name: &str, action: Action, endpoint: Endpoint) -> Route {
        Route::Repository {
            name: name.to_owned(),
            action,
            endpoint,
            mount: None,
        }
    }

    fn rm(name: &str, digest: &str, from: &str) -> Route {
        Route::Repository {
            name: name.to_owned(),
            action: Action::Push,
            endpoint: Endpoint::UploadStart,
            mount: Some(Mount {
                digest: digest.to_owned(),
                from: from.to_owned(),
            }),
        }
    }

    #[test]
    fn table() {
        use Action::*;
        use Endpoint::*;
        let d512 = d512();
        let cases: Vec<(&str, String, Route)> = vec![
            ("GET", "/v2/".into(), Route::Base),
            ("HEAD", "/v2/".into(), Route::Base),
            ("GET", "/v2".into(), Route::Base),
            ("HEAD", "/v2".into(), Route::Base),
            ("GET", "/v2/?x=1".into(), Route::Base),
            ("GET", "/v2?".into(), Route::Base),
            ("GET", "/v2/_catalog".into(), Route::Catalog),
            ("HEAD", "/v2/_catalog".into(), Route::Catalog),
            ("GET", "/v2/_catalog?n=10&last=a".into(), Route::Catalog),
            // manifests
            ("GET", "/v2/a/manifests/latest".into(), r("a", Pull, Manifest)),
            ("HEAD", "/v2/a/manifests/latest".into(), r("a", Pull, Manifest)),
            ("PUT", "/v2/a/manifests/v1.0".into(), r("a", Push, Manifest)),
            ("DELETE", format!("/v2/a/manifests/{D256}"), r("a", Delete, Manifest)),
            ("GET", format!("/v2/a/manifests/{d512}"), r("a", Pull, Manifest)),
            ("GET", "/v2/a/manifests/_".into(), r("a", Pull, Manifest)),
            ("GET", "/v2/org/team/app/manifests/1.2.3-rc_1".into(), r("org/team/app", Pull, Manifest)),
            ("GET", "/v2/a/manifests/b/manifests/latest".into(), r("a/manifests/b", Pull, Manifest)),
            ("GET", "/v2/manifests/manifests/manifests".into(), r("manifests", Pull, Manifest)),
            ("GET", "/v2/a.b_c__d--e/manifests/x".into(), r("a.b_c__d--e", Pull, Manifest)),
            ("GET", "/v2/a/manifests/sha384+x.y_z-w:AbC=_-".into(), r("a", Pull, Manifest)),
            // blobs
            ("GET", format!("/v2/a/blobs/{D256}"), r("a", Pull, Blob)),
            ("HEAD", format!("/v2/a/blobs/{D256}"), r("a", Pull, Blob)),
            ("DELETE", format!("/v2/a/blobs/{D256}"), r("a", Delete, Blob)),
            ("GET", format!("/v2/a/blobs/b/blobs/{D256}"), r("a/blobs/b", Pull, Blob)),
            ("GET", format!("/v2/a/blobs/uploads/blobs/{D256}"), r("a/blobs/uploads", Pull, Blob)),
            // upload start
            ("POST", "/v2/x/blobs/uploads/".into(), r("x", Push, UploadStart)),
            ("POST", "/v2/x/manifests/blobs/uploads/".into(), r("x/manifests", Push, UploadStart)),
            ("POST", "/v2/x/blobs/uploads/blobs/uploads/".into(), r("x/blobs/uploads", Push, UploadStart)),
            ("POST", format!("/v2/x/blobs/uploads/?digest={D256}"), r("x", Push, UploadStart)),
            ("POST", format!("/v2/x/blobs/uploads/?mount={D256}&from=y/z"), rm("x", D256, "y/z")),
            ("POST", format!("/v2/x/blobs/uploads/?from=y&mount={D256}&n=1"), rm("x", D256, "y")),
            // percent-encoded keys and values decode the Go way
            ("POST", "/v2/x/blobs/uploads/?%6Dount=sha256%3A0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef&fr%6Fm=y%2Fz".into(), rm("x", D256, "y/z")),
            // only one of the two: no mount
            ("POST", format!("/v2/x/blobs/uploads/?mount={D256}"), r("x", Push, UploadStart)),
            ("POST", "/v2/x/blobs/uploads/?from=y".into(), r("x", Push, UploadStart)),
            // uploads
            ("GET", "/v2/x/blobs/uploads/abc-DEF_1.2=".into(), r("x", Push, Upload)),
            ("HEAD", "/v2/x/blobs/uploads/abc".into(), r("x", Push, Upload)),
            ("PATCH", "/v2/x/blobs/uploads/abc".into(), r("x", Push, Upload)),
            ("PUT", format!("/v2/x/blobs/uploads/abc?digest={D256}"), r("x", Push, Upload)),
            ("DELETE", "/v2/x/blobs/uploads/abc".into(), r("x", Push, Upload)),
            ("PATCH", "/v2/x/uploads/blobs/uploads/abc?_state=a%2Bb%3D%3D".into(), r("x/uploads", Push, Upload)),
            // tags
            ("GET", "/v2/a/tags/list".into(), r("a", Pull, TagsList)),
            ("HEAD", "/v2/a/tags/list".into(), r("a", Pull, TagsList)),
            ("GET", "/v2/a/tags/list?n=5&last=x".into(), r("a", Pull, TagsList)),
            ("GET", "/v2/a/manifests/tags/list".into(), r("a/manifests", Pull, TagsList)),
            ("GET", "/v2/tags/tags/list".into(), r("tags", Pull, TagsList)),
            ("GET", "/v2/a/tags/list/tags/list".into(), r("a/tags/list", Pull, TagsList)),
            // referrers
            ("GET", format!("/v2/a/referrers/{D256}"), r("a", Pull, Referrers)),
            ("HEAD", format!("/v2/a/referrers/{D256}?artifactType=x%2Fy"), r("a", Pull, Referrers)),
        ];
        for (method, target, want) in cases {
            assert_eq!(parse(method, &target), Ok(want), "{method} {target}");
        }
    }

    #[test]
    fn route_accessors() {
        let route = parse("POST", &format!("/v2/x/blobs/uploads/?mount={D256}&from=y")).unwrap();
        assert_eq!(route.endpoint(), Endpoint::UploadStart);
        assert_eq!(route.repository(), Some("x"));
        assert_eq!(route.action(), Some(Action::Push));
        assert_eq!(route.mount().map(|m| m.from.as_str()), Some("y"));
        assert_eq!(Route::Base.endpoint(), Endpoint::Base);
        assert_eq!(Route::Catalog.repository(), None);
        assert_eq!(Route::Catalog.action(), None);
        assert_eq!(Action::Delete.as_str(), "delete");
        assert_eq!(Action::Pull.to_string(), "pull");
    }

    #[test]
    fn rebuilt_targets() {
        let d = D256.replace(':', "%3A");
        let cases: Vec<(&str, String, bool, String)> = vec![
            ("GET", "/v2".into(), false, "/v2/".into()),
            ("GET", "/v2/?x=1".into(), false, "/v2/".into()),
            (
                "GET",
                "/v2/_catalog?n=10&last=a&x=y".into(),
                false,
                "/v2/_catalog?n=10&last=a".into(),
            ),
            (
                "GET",
                "/v2/_catalog?last=a%2Fb&n=1".into(),
                false,
                "/v2/_catalog?n=1&last=a/b".into(),
            ),
            (
                "GET",
                "/v2/a/b/tags/list?n=5".into(),
                false,
                "/v2/a/b/tags/list?n=5".into(),
            ),
            (
                "GET",
                "/v2/a/manifests/latest?mount=x&from=y".into(),
                false,
                "/v2/a/manifests/latest".into(),
            ),
            (
                "GET",
                format!("/v2/a/blobs/{D256}?digest={D256}"),
                false,
                format!("/v2/a/blobs/{D256}"),
            ),
            (
                "GET",
                format!("/v2/a/referrers/{D256}?artifactType=x%2By"),
                false,
                format!("/v2/a/referrers/{D256}?artifactType=x%2By"),
            ),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?from=b&mount={D256}&c=d"),
                false,
                format!("/v2/a/blobs/uploads/?mount={d}&from=b"),
            ),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?from=b&mount={D256}"),
                true,
                "/v2/a/blobs/uploads/".into(),
            ),
            // Only one of the two: the registry would not mount; nothing is forwarded.
            (
                "POST",
                "/v2/a/blobs/uploads/?from=b".into(),
                false,
                "/v2/a/blobs/uploads/".into(),
            ),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?digest={D256}"),
                false,
                format!("/v2/a/blobs/uploads/?digest={d}"),
            ),
            (
                "PATCH",
                "/v2/a/blobs/uploads/u1?_state=ab%2Bc%3D%3D&digest=x".into(),
                false,
                "/v2/a/blobs/uploads/u1?_state=ab%2Bc%3D%3D".into(),
            ),
            (
                "PUT",
                format!("/v2/a/blobs/uploads/u1?digest={D256}&_state=a+b"),
                false,
                format!("/v2/a/blobs/uploads/u1?_state=a%20b&digest={d}"),
            ),
            (
                "DELETE",
                "/v2/a/blobs/uploads/u1?_state=s&mount=m".into(),
                false,
                "/v2/a/blobs/uploads/u1?_state=s".into(),
            ),
        ];
        for (method, target, drop, want) in cases {
            let parsed = parse_request(method, target.as_bytes()).unwrap();
            assert_eq!(parsed.target(drop), want, "{method} {target}");
        }
        // A kept parameter given twice is a guess we refuse to make.
        for (method, target) in [
            ("PATCH", "/v2/a/blobs/uploads/u?_state=a&_state=b"),
            ("GET", "/v2/_catalog?n=1&n=2"),
            ("GET", "/v2/a/tags/list?last=a&%6Cast=b"),
        ] {
            assert_eq!(
                parse_request(method, target.as_bytes()),
                Err(RouteError::BadQuery(Q_DUP_PARAM)),
                "{target}"
            );
        }
        assert_eq!(
            parse_request("PUT", b"/v2/a/blobs/uploads/u?digest=sha256:abc"),
            Err(RouteError::InvalidDigest)
        );
    }

    #[test]
    fn unknown_references_are_routed_for_authorization() {
        use Action::*;
        let long_tag = "t".repeat(129);
        for (method, reference, action) in [
            ("GET", ".INVALID_MANIFEST_NAME", Pull),
            ("HEAD", ".INVALID_MANIFEST_NAME", Pull),
            ("PUT", "-x", Push),
            ("DELETE", "x!", Delete),
            ("GET", long_tag.as_str(), Pull),
            ("GET", "sha256:abc", Pull),
        ] {
            let target = format!("/v2/a/b/manifests/{reference}");
            let parsed = parse_request(method, target.as_bytes()).unwrap();
            assert!(parsed.unknown_reference, "{target}");
            assert_eq!(parsed.route, r("a/b", action, Endpoint::Manifest));
        }
        let parsed = parse_request("GET", b"/v2/a/manifests/latest").unwrap();
        assert!(!parsed.unknown_reference);
        let parsed = parse_request("GET", format!("/v2/a/manifests/{D256}").as_bytes()).unwrap();
        assert!(!parsed.unknown_reference);
    }

    #[test]
    fn hostile() {
        use RouteError::*;
        let p = NonCanonicalPath;
        let q = BadQuery;
        let long_name = "a".repeat(256);
        let ok_tag = "t".repeat(128);
        let upper_hex = format!("sha256:{}", "ABCDEF0123456789".repeat(4));
        let short_512 = format!("sha512:{}", "0123456789abcdef".repeat(4));
        let cases: Vec<(&str, String, RouteError)> = vec![
            // percent-encodings
            ("GET", "/v2/a%2Fb/manifests/x".into(), p(R_PERCENT)),
            ("GET", "/v2/%2e%2e/a/manifests/x".into(), p(R_PERCENT)),
            ("GET", "/v2/a%252Fb/manifests/x".into(), p(R_PERCENT)),
            ("GET", "/v2%2Fa/manifests/x".into(), p(R_PERCENT)),
            ("GET", "/%76%32/a/manifests/x".into(), p(R_PERCENT)),
            ("GET", "/v2/a/manifests/x%".into(), p(R_PERCENT)),
            // empty segments
            ("GET", "/v2/a//b/manifests/x".into(), p(R_EMPTY_SEGMENT)),
            ("GET", "/v2//a/manifests/x".into(), p(R_EMPTY_SEGMENT)),
            ("GET", "//v2/a/manifests/x".into(), p(R_EMPTY_SEGMENT)),
            ("GET", "/v2//".into(), p(R_EMPTY_SEGMENT)),
            ("POST", "/v2/a/blobs/uploads//".into(), p(R_EMPTY_SEGMENT)),
            // dot segments
            ("GET", "/v2/a/../b/manifests/x".into(), p(R_DOT_SEGMENT)),
            ("GET", "/v2/./a/manifests/x".into(), p(R_DOT_SEGMENT)),
            ("GET", "/v2/a/manifests/x/.".into(), p(R_DOT_SEGMENT)),
            ("GET", "/v2/a/manifests/x/..".into(), p(R_DOT_SEGMENT)),
            ("GET", "/v2/a/tags/list/.".into(), p(R_DOT_SEGMENT)),
            ("PATCH", "/v2/a/blobs/uploads/..".into(), p(R_DOT_SEGMENT)),
            ("PATCH", "/v2/a/blobs/uploads/.".into(), p(R_DOT_SEGMENT)),
            (
                "GET",
                "/v2/a/manifests/sha256:../..".into(),
                p(R_DOT_SEGMENT),
            ),
            ("GET", "/v2/..".into(), p(R_DOT_SEGMENT)),
            // bytes
            ("GET", "/v2/a\\b/manifests/x".into(), p(R_BACKSLASH)),
            ("GET", "/v2\\a/manifests/x".into(), p(R_BACKSLASH)),
            ("GET", "/v2/a\0/manifests/x".into(), p(R_BYTE)),
            ("GET", "/v2/a b/manifests/x".into(), p(R_BYTE)),
            ("GET", "/v2/a\tb/manifests/x".into(), p(R_BYTE)),
            ("GET", "/v2/a/manifests/x\r\n".into(), p(R_BYTE)),
            ("GET", "/v2/\u{e4}/manifests/x".into(), p(R_BYTE)),
            ("GET", "/v2/a/manifests/\u{7f}".into(), p(R_BYTE)),
            ("GET", "/v2/a/manifests/x#frag".into(), p(R_FRAGMENT)),
            ("GET", "/v2/a#/../b/manifests/x".into(), p(R_FRAGMENT)),
            // trailing slashes
            ("GET", "/v2/_catalog/".into(), p(R_TRAILING_SLASH)),
            ("GET", "/v2/a/tags/list/".into(), p(R_TRAILING_SLASH)),
            ("GET", "/v2/a/manifests/".into(), p(R_TRAILING_SLASH)),
            ("GET", "/v2/a/manifests/x/".into(), p(R_TRAILING_SLASH)),
            ("GET", "/v2/a/blobs/".into(), p(R_TRAILING_SLASH)),
            ("GET", "/v2/a/".into(), p(R_TRAILING_SLASH)),
            ("POST", "/v2/a/blobs/uploads".into(), p(R_MISSING_SLASH)),
            // names
            ("GET", "/v2/A/manifests/x".into(), InvalidName),
            ("GET", "/v2/a/B/manifests/x".into(), InvalidName),
            ("GET", format!("/v2/{long_name}/manifests/x"), InvalidName),
            ("GET", "/v2/-a/manifests/x".into(), InvalidName),
            ("GET", "/v2/.a/manifests/x".into(), InvalidName),
            ("GET", "/v2/_a/manifests/x".into(), InvalidName),
            ("GET", "/v2/a-/manifests/x".into(), InvalidName),
            ("GET", "/v2/a./manifests/x".into(), InvalidName),
            ("GET", "/v2/a___b/manifests/x".into(), InvalidName),
            ("GET", "/v2/a._b/manifests/x".into(), InvalidName),
            ("GET", "/v2/a:5000/b/manifests/x".into(), InvalidName),
            ("GET", "/v2/_catalog/tags/list".into(), InvalidName),
            ("GET", "/v2/a;b/tags/list".into(), InvalidName),
            // not origin form
            ("GET", "http://evil/v2/a/manifests/x".into(), NotOriginForm),
            ("GET", "HTTP://evil/v2/".into(), NotOriginForm),
            ("CONNECT", "evil:443".into(), NotOriginForm),
            ("OPTIONS", "*".into(), NotOriginForm),
            ("GET", "".into(), NotOriginForm),
            ("GET", "v2/".into(), NotOriginForm),
            ("GET", "?/v2/".into(), NotOriginForm),
            // queries
            ("GET", "/v2/a/manifests/x?a=1;b=2".into(), q(Q_SEMICOLON)),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?mount={D256};from=b"),
                q(Q_SEMICOLON),
            ),
            ("GET", "/v2/a/manifests/x?a=%zz".into(), q(Q_ESCAPE)),
            ("GET", "/v2/a/manifests/x?a=%4".into(), q(Q_ESCAPE)),
            ("GET", "/v2/a/manifests/x?%=1".into(), q(Q_ESCAPE)),
            ("GET", "/v2/a/manifests/x?a=%ff".into(), q(Q_UTF8)),
            ("GET", "/v2/a/manifests/x?a=b c".into(), q(Q_BYTE)),
            ("GET", "/v2/a/manifests/x?a=\u{e4}".into(), q(Q_BYTE)),
            ("GET", "/v2/a/manifests/x?a=b#c".into(), q(Q_FRAGMENT)),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?from=b&from=c&mount={D256}"),
                q(Q_DUP_FROM),
            ),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?from=b&fr%6fm=c&mount={D256}"),
                q(Q_DUP_FROM),
            ),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?mount={D256}&from=b&mount={D256}"),
                q(Q_DUP_MOUNT),
            ),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?mount={D256}&from=B"),
                InvalidName,
            ),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?mount={D256}&from="),
                InvalidName,
            ),
            (
                "POST",
                format!("/v2/a/blobs/uploads/?mount={D256}&from=b/../c"),
                InvalidName,
            ),
            (
                "POST",
                "/v2/a/blobs/uploads/?from=b%2F..%2Fc".into(),
                InvalidName,
            ),
            (
                "POST",
                "/v2/a/blobs/uploads/?mount=sha256:abc&from=b".into(),
                InvalidDigest,
            ),
            (
                "POST",
                "/v2/a/blobs/uploads/?mount=&from=b".into(),
                InvalidDigest,
            ),
            // digests, tags, ids
            ("GET", "/v2/a/blobs/sha256:abc".into(), InvalidDigest),
            ("GET", "/v2/a/blobs/sha256:".into(), InvalidDigest),
            ("GET", format!("/v2/a/blobs/{upper_hex}"), InvalidDigest),
            (
                "GET",
                format!("/v2/a/blobs/{}", D256.replace("sha256", "SHA256")),
                InvalidDigest,
            ),
            ("GET", format!("/v2/a/blobs/{D256}0"), InvalidDigest),
            ("GET", format!("/v2/a/blobs/{short_512}"), InvalidDigest),
            ("GET", "/v2/a/blobs/sha256:..".into(), InvalidDigest),
            ("GET", "/v2/a/blobs/latest".into(), InvalidDigest),
            ("GET", "/v2/a/blobs/:abc".into(), InvalidDigest),
            ("GET", "/v2/a/blobs/sha256::abc".into(), InvalidDigest),
            ("GET", "/v2/a/referrers/latest".into(), InvalidDigest),
            ("PATCH", "/v2/a/blobs/uploads/abc$".into(), InvalidUploadId),
            ("PATCH", "/v2/a/blobs/uploads/a:b".into(), InvalidUploadId),
            // unknown shapes
            ("GET", "/".into(), NotFound),
            ("GET", "/auth".into(), NotFound),
            ("GET", "/v20/".into(), NotFound),
            ("GET", "/V2/".into(), NotFound),
            ("GET", "/v2/a".into(), NotFound),
            ("GET", "/v2/a/foo/x".into(), NotFound),
            ("GET", "/v2/a/tags/list/x".into(), NotFound),
            ("GET", "/v2/a/tags".into(), NotFound),
            ("GET", "/v2/manifests/x".into(), NotFound),
            ("GET", "/v2/tags/list".into(), NotFound),
            ("POST", "/v2/blobs/uploads/".into(), NotFound),
            ("GET", "/v2/a/uploads/x".into(), NotFound),
            ("GET", "/v2/a/_catalog".into(), NotFound),
            ("GET", "/v2/_catalog/x".into(), NotFound),
            // methods
            (
                "POST",
                "/v2/a/manifests/x".into(),
                MethodNotAllowed {
                    allow: "GET, HEAD, PUT, DELETE",
                },
            ),
            (
                "PATCH",
                format!("/v2/a/blobs/{D256}"),
                MethodNotAllowed {
                    allow: "GET, HEAD, DELETE",
                },
            ),
            (
                "PUT",
                format!("/v2/a/blobs/{D256}"),
                MethodNotAllowed {
                    allow: "GET, HEAD, DELETE",
                },
            ),
            (
                "POST",
                "/v2/a/blobs/uploads/abc".into(),
                MethodNotAllowed {
                    allow: "GET, HEAD, PATCH, PUT, DELETE",
                },
            ),
            (
                "GET",
                "/v2/a/blobs/uploads/".into(),
                MethodNotAllowed { allow: "POST" },
            ),
            (
                "PUT",
                "/v2/a/blobs/uploads/".into(),
                MethodNotAllowed { allow: "POST" },
            ),
            (
                "DELETE",
                "/v2/a/tags/list".into(),
                MethodNotAllowed { allow: "GET, HEAD" },
            ),
            (
                "PUT",
                "/v2/_catalog".into(),
                MethodNotAllowed { allow: "GET, HEAD" },
            ),
            (
                "DELETE",
                "/v2/".into(),
                MethodNotAllowed { allow: "GET, HEAD" },
            ),
            (
                "POST",
                "/v2".into(),
                MethodNotAllowed { allow: "GET, HEAD" },
            ),
            (
                "get",
                "/v2/a/manifests/x".into(),
                MethodNotAllowed {
                    allow: "GET, HEAD, PUT, DELETE",
                },
            ),
            (
                "",
                "/v2/a/manifests/x".into(),
                MethodNotAllowed {
                    allow: "GET, HEAD, PUT, DELETE",
                },
            ),
            (
                "OPTIONS",
                format!("/v2/a/referrers/{D256}"),
                MethodNotAllowed { allow: "GET, HEAD" },
            ),
        ];
        assert!(cases.len() >= 40);
        for (method, target, want) in cases {
            assert_eq!(parse(method, &target), Err(want), "{method} {target:?}");
        }
        // The limits themselves are fine.
        let name255 = format!("{}/{}", "a".repeat(127), "b".repeat(127));
        assert_eq!(name255.len(), 255);
        assert!(parse("GET", &format!("/v2/{name255}/manifests/{ok_tag}")).is_ok());
    }

    #[test]
    fn raw_bytes() {
        assert_eq!(
            parse_bytes("GET", b"/v2/a\xff/manifests/x"),
            Err(RouteError::NonCanonicalPath(R_BYTE))
        );
        assert_eq!(
            parse_bytes("GET", b"/v2/a/manifests/x?q=\xc3"),
            Err(RouteError::BadQuery(Q_BYTE))
        );
        assert_eq!(
            parse_bytes("GET", b"/v2/a/manifests/x"),
            parse("GET", "/v2/a/manifests/x")
        );
    }

    #[test]
    fn error_mapping() {
        use RouteError::*;
        assert_eq!(
            (NotOriginForm.status(), NotOriginForm.code()),
            (400, "UNSUPPORTED")
        );
        assert_eq!(NonCanonicalPath(R_PERCENT).status(), 400);
        assert_eq!(BadQuery(Q_ESCAPE).code(), "UNSUPPORTED");
        assert_eq!(
            (InvalidName.status(), InvalidName.code()),
            (400, "NAME_INVALID")
        );
        assert_eq!(InvalidDigest.code(), "DIGEST_INVALID");
        assert_eq!(InvalidUploadId.code(), "BLOB_UPLOAD_INVALID");
        assert_eq!((NotFound.status(), NotFound.code()), (404, "UNSUPPORTED"));
        let e = MethodNotAllowed { allow: "POST" };
        assert_eq!(
            (e.status(), e.code(), e.allow()),
            (405, "UNSUPPORTED", Some("POST"))
        );
        assert_eq!(NotFound.allow(), None);
        // Messages are static: nothing of the request shows up.
        let e = parse("GET", "/v2/EVILNAME/manifests/x").unwrap_err();
        assert!(!e.to_string().contains("EVILNAME"));
    }

    #[test]
    fn query_parsing() {
        let s = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(parse_query(""), Ok(vec![]));
        assert_eq!(parse_query("a=1&b=2"), Ok(s(&[("a", "1"), ("b", "2")])));
        assert_eq!(parse_query("a=x+y"), Ok(s(&[("a", "x y")])));
        assert_eq!(parse_query("a=x%20y"), Ok(s(&[("a", "x y")])));
        assert_eq!(parse_query("a=x%2By"), Ok(s(&[("a", "x+y")])));
        assert_eq!(parse_query("a+b=c"), Ok(s(&[("a b", "c")])));
        assert_eq!(parse_query("a&&b"), Ok(s(&[("a", ""), ("b", "")])));
        assert_eq!(parse_query("&a&"), Ok(s(&[("a", "")])));
        assert_eq!(parse_query("a"), Ok(s(&[("a", "")])));
        assert_eq!(parse_query("a="), Ok(s(&[("a", "")])));
        assert_eq!(parse_query("=v"), Ok(s(&[("", "v")])));
        assert_eq!(parse_query("a=b=c"), Ok(s(&[("a", "b=c")])));
        assert_eq!(parse_query("a=1&a=2"), Ok(s(&[("a", "1"), ("a", "2")])));
        assert_eq!(parse_query("a=%C3%A4"), Ok(s(&[("a", "\u{e4}")])));
        assert_eq!(parse_query("a=%c3%a4"), Ok(s(&[("a", "\u{e4}")])));
        assert_eq!(
            parse_query("a=1;b=2"),
            Err(RouteError::BadQuery(Q_SEMICOLON))
        );
        assert_eq!(parse_query(";"), Err(RouteError::BadQuery(Q_SEMICOLON)));
        assert_eq!(parse_query("a=%zz"), Err(RouteError::BadQuery(Q_ESCAPE)));
        assert_eq!(parse_query("a=%"), Err(RouteError::BadQuery(Q_ESCAPE)));
        assert_eq!(parse_query("a=%a"), Err(RouteError::BadQuery(Q_ESCAPE)));
        assert_eq!(parse_query("%g0=1"), Err(RouteError::BadQuery(Q_ESCAPE)));
        assert_eq!(
            parse_query("ok=1&a=%zz"),
            Err(RouteError::BadQuery(Q_ESCAPE))
        );
        assert_eq!(parse_query("a=%ff"), Err(RouteError::BadQuery(Q_UTF8)));
        assert_eq!(parse_query("a=%c3"), Err(RouteError::BadQuery(Q_UTF8)));
    }

    #[test]
    fn validators() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("a0/b-c/d__e/f.g/h---i"));
        for bad in [
            "", "/", "a/", "/a", "a//b", "a__-b", "a-.b", "a-", "A", "a b",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert!(is_valid_tag("_"));
        assert!(!is_valid_tag(""));
        assert!(is_valid_digest(D256));
        assert!(is_valid_digest(&d512()));
        assert!(is_valid_digest(
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
        ));
        assert!(!is_valid_digest("sha256+:abc"));
        assert!(!is_valid_digest("a..b:abc"));
        assert!(is_valid_upload_id("..."));
        assert!(!is_valid_upload_id(".."));
        assert!(!is_valid_upload_id(""));
    }

    const NAME_GRAMMAR: &str =
        r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*";
    const COMPONENT_GRAMMAR: &str = r"[a-z0-9]{1,4}((\.|_|__|-{1,3})[a-z0-9]{1,4}){0,3}";
    const TAG_GRAMMAR: &str = r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}";

    fn name_strategy() -> impl Strategy<Value = String> {
        let component = prop_oneof![
            3 => COMPONENT_GRAMMAR,
            1 => prop::sample::select(vec![
                "manifests", "blobs", "tags", "list", "uploads", "referrers", "v2"
            ])
            .prop_map(str::to_owned),
        ];
        prop::collection::vec(component, 1..8)
            .prop_map(|c| c.join("/"))
            .prop_filter("length limit", |n| n.len() <= NAME_MAX_LEN)
    }

    proptest! {
        #[test]
        fn never_panics(method in "[A-Za-z]{0,8}|\\PC*", target in "\\PC*") {
            let _ = parse(&method, &target);
            let _ = parse_query(&target);
        }

        #[test]
        fn never_panics_near_v2(
            method in prop::sample::select(vec!["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]),
            rest in "[a-z0-9./_:%?&=;#+\\-]{0,60}",
        ) {
            let _ = parse(method, &format!("/v2/{rest}"));
        }

        #[test]
        fn never_panics_on_bytes(target in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_bytes("GET", &target);
        }

        #[test]
        fn manifest_round_trip(name in name_strategy(), tag in TAG_GRAMMAR) {
            let route = parse("GET", &format!("/v2/{name}/manifests/{tag}"));
            prop_assert_eq!(route, Ok(r(&name, Action::Pull, Endpoint::Manifest)));
            let route = parse("POST", &format!("/v2/{name}/blobs/uploads/?from={name}&mount={D256}"));
            prop_assert_eq!(route, Ok(rm(&name, D256, &name)));
            let route = parse("GET", &format!("/v2/{name}/tags/list"));
            prop_assert_eq!(route, Ok(r(&name, Action::Pull, Endpoint::TagsList)));
        }

        #[test]
        fn name_scanner_matches_regex(s in "[a-z0-9._/-]{0,20}|[a-z0-9_]{0,6}(__?_?[a-z0-9]{0,3}){0,3}") {
            let re = regex::Regex::new(&format!("^(?:{NAME_GRAMMAR})$")).unwrap();
            prop_assert_eq!(is_valid_name(&s), re.is_match(&s) && s.len() <= NAME_MAX_LEN, "{:?}", s);
        }

        #[test]
        fn name_scanner_matches_regex_long(s in "[a-z/]{240,270}") {
            let re = regex::Regex::new(&format!("^(?:{NAME_GRAMMAR})$")).unwrap();
            prop_assert_eq!(is_valid_name(&s), re.is_match(&s) && s.len() <= NAME_MAX_LEN, "{:?}", s);
        }

        #[test]
        fn digest_scanner_matches_regex(s in "[a-z0-9+._:=A-Z-]{0,24}|sha256:[0-9a-fA-F]{62,66}") {
            let re = regex::Regex::new(r"^[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$").unwrap();
            let strict = regex::Regex::new(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$").unwrap();
            let special = s.starts_with("sha256:") || s.starts_with("sha512:");
            let want = re.is_match(&s) && (!special || strict.is_match(&s));
            prop_assert_eq!(is_valid_digest(&s), want, "{:?}", s);
        }

        #[test]
        fn tag_scanner_matches_regex(s in "[a-zA-Z0-9_.:-]{0,130}") {
            let re = regex::Regex::new(&format!("^(?:{TAG_GRAMMAR})$")).unwrap();
            prop_assert_eq!(is_valid_tag(&s), re.is_match(&s), "{:?}", s);
        }

        /// Whatever is accepted rebuilds to a target that parses to the same route and
        /// rebuilds to itself: the registry is sent one canonical spelling.
        #[test]
        fn rebuilt_targets_are_canonical(
            method in prop::sample::select(vec!["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]),
            rest in "[a-z0-9./_:%?&=;+\\-]{0,60}",
            drop in any::<bool>(),
        ) {
            if let Ok(parsed) = parse_request(method, format!("/v2/{rest}").as_bytes()) {
                let target = parsed.target(drop);
                let again = parse_request(method, target.as_bytes()).expect("rebuilt target parses");
                prop_assert_eq!(again.target(false), target.clone());
                prop_assert_eq!(again.route.repository(), parsed.route.repository());
                prop_assert_eq!(again.route.action(), parsed.route.action());
                let mount = if drop { None } else { parsed.route.mount() };
                prop_assert_eq!(again.route.mount(), mount);
            }
        }

        #[test]
        fn rebuilt_upload_targets_round_trip(
            name in name_strategy(),
            from in name_strategy(),
            state in "[A-Za-z0-9+/=_ %&;-]{0,40}",
        ) {
            let start = format!("/v2/{name}/blobs/uploads/?from={from}&mount={D256}&x=1");
            let parsed = parse_request("POST", start.as_bytes()).unwrap();
            prop_assert_eq!(parsed.target(false), format!("/v2/{name}/blobs/uploads/?mount={}&from={from}", D256.replace(':', "%3A")));
            prop_assert_eq!(parsed.target(true), format!("/v2/{name}/blobs/uploads/"));
            let encoded: String = percent_encoding::utf8_percent_encode(&state, QUERY_VALUE).collect();
            let chunk = format!("/v2/{name}/blobs/uploads/u-1?_state={encoded}&mount={D256}&from={from}");
            let parsed = parse_request("PATCH", chunk.as_bytes()).unwrap();
            prop_assert_eq!(parsed.params.clone(), vec![("_state", state.clone())]);
            prop_assert_eq!(parsed.route.mount(), None);
            let again = parse_request("PATCH", parsed.target(false).as_bytes()).unwrap();
            prop_assert_eq!(again.params, vec![("_state", state)]);
        }
    }
}
