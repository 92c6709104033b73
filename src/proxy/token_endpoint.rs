//! The token endpoint on the client listener: read the small form body, hand everything to
//! [`crate::token::handle`], write its answer, count it.

use super::*;

impl Portcullis {
    /// The token endpoint: reads the (small) form body, hands everything to
    /// [`crate::token::handle`], and writes its answer. Nothing goes upstream.
    pub(super) async fn token_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        state: &State,
        token: &TokenService,
    ) -> Result<()> {
        let req = session.req_header();
        let method = req.method.as_str().to_owned();
        let query = req.uri.query().unwrap_or("").to_owned();
        let content_type = req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let declared = req
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let creds = authorization(req);
        if declared.is_some_and(|n| n > token::MAX_BODY) {
            ctx.outcome = Outcome::Invalid;
            session.set_keepalive(None);
            let e = OciError::new(413, "SIZE_INVALID", "token request body too large");
            return respond(session, &e, &[]).await;
        }
        let mut body = Vec::new();
        if method == "POST" {
            while let Some(chunk) = session.read_request_body().await? {
                body.extend_from_slice(&chunk);
                if body.len() > token::MAX_BODY {
                    break;
                }
            }
        }
        let credentials = match creds {
            Ok(c) => c,
            Err(_) => {
                self.metrics.auth_failure(AuthFailure::Malformed);
                ctx.outcome = Outcome::Unauthenticated;
                let challenge = (
                    "WWW-Authenticate",
                    basic_challenge(&state.config.auth.realm),
                );
                return respond(session, &OciError::unauthorized(), &[challenge]).await;
            }
        };
        let answer = token::handle(
            token,
            &state.authn,
            &state.acl,
            &state.config.auth.realm,
            token::EndpointRequest {
                method: &method,
                query: &query,
                content_type: content_type.as_deref(),
                body: &body,
                credentials,
                client_ip: ctx.client.ip(),
                lockout_key: ctx.client.key(),
                lockout: Some(&self.lockout),
                revocations: Some(&self.revocations),
            },
        )
        .await;
        ctx.account = answer.account.clone();
        match answer.via.as_deref() {
            Some(crate::authn::Via::Key { id, .. }) => ctx.access_key = id.clone(),
            Some(crate::authn::Via::Federation { issuer, .. }) => ctx.issuer = issuer.clone(),
            None => {}
        }
        ctx.token = TokenAudit {
            requested: answer.requested.clone(),
            granted: answer.granted.clone(),
            key_id: answer.key_id.clone().unwrap_or_default(),
        };
        ctx.outcome = match &answer.outcome {
            token::Outcome::Issued => {
                self.metrics.token_issued();
                Outcome::Allowed
            }
            token::Outcome::Invalid => Outcome::Invalid,
            token::Outcome::LoginFailed { error, locked_now } => {
                ctx.reason = error.to_string();
                if let Some(reason) = AuthFailure::of(error) {
                    self.metrics.auth_failure(reason);
                }
                if *locked_now {
                    self.metrics.lockout();
                    tracing::warn!(account = ?answer.account, client = %ctx.client, "too many failed logins: locked out");
                }
                Outcome::Unauthenticated
            }
            token::Outcome::LockedOut => {
                self.metrics.auth_failure(AuthFailure::LockedOut);
                Outcome::Unauthenticated
            }
            token::Outcome::RefreshRejected => {
                self.metrics.auth_failure(AuthFailure::BadToken);
                Outcome::Unauthenticated
            }
            token::Outcome::Error => Outcome::Error,
        };
        let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 2))?;
        for (name, value) in &answer.headers {
            resp.insert_header(*name, value.as_str())?;
        }
        resp.insert_header("Content-Length", answer.body.len().to_string())?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(answer.body), true).await?;
        Ok(())
    }
}
