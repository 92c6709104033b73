//! What goes upstream and what we believe about the client: the client address (through
//! trusted proxies only), headers a client could use to mislead the registry, form bodies.

use super::*;

/// Headers a client could use to make the registry (or something between us and it) see a
/// different request than the one we authorized. Removed before forwarding; the
/// `X-Forwarded-*` ones are then set by us.
pub(super) const SPOOFABLE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

impl Portcullis {
    pub(super) fn trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the TCP peer, or — only when the peer is a trusted proxy — the
    /// right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub(super) fn client_ip(&self, session: &Session) -> Option<IpAddr> {
        let peer = canonical(session.client_addr()?.as_inet()?.ip());
        if !self.trusted(peer) {
            return Some(peer);
        }
        let xff = session.req_header().headers.get_all("x-forwarded-for");
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in xff {
            let Ok(text) = value.to_str() else {
                return Some(peer);
            };
            for part in text.split(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => hops.push(canonical(ip)),
                    Err(_) => return Some(peer),
                }
            }
        }
        Some(
            hops.into_iter()
                .rev()
                .find(|ip| !self.trusted(*ip))
                .unwrap_or(peer),
        )
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 clients; compare them as such.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Go's `r.FormValue` (which registry:2 uses for `mount`, `from` and `digest`) also reads a
/// form-encoded *body* and prefers it to the query, so `mount`/`from` could be smuggled past
/// the query we checked. Registry clients never send forms, so such requests are refused.
pub(super) fn is_form(req: &RequestHeader) -> bool {
    req.headers.get_all("content-type").iter().any(|v| {
        let v = v.as_bytes();
        let starts = |p: &[u8]| v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p);
        starts(b"application/x-www-form-urlencoded") || starts(b"multipart/form-data")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_ipv4() {
        assert_eq!(
            canonical("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn form_bodies_are_detected() {
        let mut req = RequestHeader::build("POST", b"/v2/a/blobs/uploads/", None).unwrap();
        assert!(!is_form(&req));
        req.insert_header(
            "Content-Type",
            "Application/X-WWW-Form-Urlencoded; charset=x",
        )
        .unwrap();
        assert!(is_form(&req));
        req.insert_header("Content-Type", "multipart/form-data; boundary=x")
            .unwrap();
        assert!(is_form(&req));
        req.insert_header("Content-Type", "application/octet-stream")
            .unwrap();
        assert!(!is_form(&req));
    }
}
