//! `WWW-Authenticate` on a 401: Basic, or Bearer with the token realm, service and scope.

use super::*;

impl Portcullis {
    /// `WWW-Authenticate` for a 401: Bearer with the scope to ask for when the token service
    /// is the challenge (or the presented token lacked a scope), Basic otherwise.
    pub(super) fn challenge(
        &self,
        session: &Session,
        state: &State,
        route: Option<&Route>,
        insufficient: bool,
    ) -> (&'static str, String) {
        let value = match &state.token {
            Some(token) if insufficient || state.config.auth.challenge == Challenge::Token => {
                let realm = match token.realm() {
                    Some(r) => r.to_owned(),
                    None => self.realm_from_request(session, token.path()),
                };
                let scope = route.and_then(policy::challenge_scope);
                token.challenge(&realm, scope.as_deref(), insufficient)
            }
            _ => basic_challenge(&state.config.auth.realm),
        };
        ("WWW-Authenticate", value)
    }

    /// `https://<host>/auth` from the request: the scheme we serve (or `X-Forwarded-Proto`
    /// from a trusted proxy) and the `Host` (or `X-Forwarded-Host` from a trusted proxy). A
    /// host with characters no host name has falls back to the listen address, so a forged
    /// `Host` cannot inject into the challenge.
    fn realm_from_request(&self, session: &Session, path: &str) -> String {
        let (scheme, host) = self.public_origin(session);
        format!("{scheme}://{host}{path}")
    }

    /// The scheme and host clients reach us by, as [`Self::realm_from_request`] reads them
    /// (the web UI's pull commands use the host).
    pub(crate) fn public_origin(&self, session: &Session) -> (String, String) {
        let req = session.req_header();
        let trusted = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .is_some_and(|a| self.trusted_proxies.contains(a.ip()));
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
        };
        let mut scheme = if self.tls { "https" } else { "http" }.to_owned();
        let mut host = header("host").or_else(|| req.uri.authority().map(|a| a.to_string()));
        if trusted {
            if let Some(p) = header("x-forwarded-proto").filter(|p| p == "http" || p == "https") {
                scheme = p;
            }
            if let Some(h) = header("x-forwarded-host") {
                host = Some(h);
            }
        }
        let valid = |h: &String| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        };
        let host = host.filter(valid).unwrap_or_else(|| self.listen.clone());
        (scheme, host)
    }
}

pub(crate) fn basic_challenge(realm: &str) -> String {
    let escaped = realm.replace('\\', "\\\\").replace('"', "\\\"");
    format!("Basic realm=\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_escapes_realm() {
        assert_eq!(
            basic_challenge("Registry Realm"),
            "Basic realm=\"Registry Realm\""
        );
        assert_eq!(basic_challenge("a\"b\\c"), "Basic realm=\"a\\\"b\\\\c\"");
    }
}
