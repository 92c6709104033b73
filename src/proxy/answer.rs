//! The answers portcullis writes itself (not forwarded): the registry's headers, a JSON body.

use super::*;

/// Writes a complete error answer with the registry's headers and OCI body.
pub(crate) async fn respond(
    session: &mut Session,
    error: &OciError,
    extra: &[(&'static str, String)],
) -> Result<()> {
    respond_json(session, error.status, error.body(), extra).await
}

/// Writes a complete JSON answer with the registry's version header.
pub(crate) async fn respond_json(
    session: &mut Session,
    status: u16,
    body: Bytes,
    extra: &[(&'static str, String)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    resp.insert_header("Content-Type", "application/json; charset=utf-8")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header(API_VERSION_HEADER, API_VERSION)?;
    for (name, value) in extra {
        resp.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_body(if head_only { None } else { Some(body) }, true)
        .await?;
    Ok(())
}

/// Writes a cached registry answer: its stored status and headers, and its body unless the
/// request is a `HEAD`.
pub(crate) async fn respond_cached(
    session: &mut Session,
    entry: &crate::cache::Entry,
) -> Result<()> {
    session
        .write_response_header(Box::new(entry.header().clone()), false)
        .await?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_body(
            if head_only {
                None
            } else {
                Some(entry.body().clone())
            },
            true,
        )
        .await?;
    Ok(())
}
