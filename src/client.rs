//! Who the client is on the network: the TCP peer, or — only when the peer is a trusted proxy —
//! the address that proxy says it forwarded for, found by walking `X-Forwarded-For` from the
//! right.
//!
//! Every hop appends the address it received the request from, so the list reads
//! `client-written…, first-hop-seen, …, last-hop-seen` and only its right end is written by
//! hops we trust. The walk therefore starts at the right, skips addresses that are trusted
//! proxies, and stops at the first untrusted address: that is the client. Entries to its left
//! were written by the client itself (or by hops it controls) and are never read, not even
//! parsed: `X-Forwarded-For: garbage, 203.0.113.9` from a trusted load balancer is client
//! `203.0.113.9`, whatever `garbage` is.
//!
//! If the walk meets an entry that does not parse *before* it finds an untrusted address, a
//! proxy we trust wrote something we cannot read, and the client is **unknown**: `ip:` rules do
//! not match it, and per-address counting (lockout) falls back to the peer — the proxy — so
//! failures still count somewhere instead of nowhere.
//!
//! Only `X-Forwarded-For` is read. `Forwarded` (RFC 7239) and `X-Real-IP` from clients are
//! removed before forwarding and never believed (docs/configuration.md, `trusted_proxies`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The client's address as portcullis believes it.
///
/// Exists because two uses need two answers: authorization (`ip:` rules) must see *no*
/// address when the forwarded chain cannot be read, while failed-login counting must still
/// charge the attempt to someone (the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address; `None` when it could not be established.
    ip: Option<IpAddr>,
    /// Whom to charge per-address limits to: the client, or the peer when the client is
    /// unknown.
    key: Option<IpAddr>,
}

impl ClientAddr {
    /// A client whose address is known (the direct peer, or found through trusted proxies).
    pub fn known(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        ClientAddr {
            ip: Some(ip),
            key: Some(ip),
        }
    }

    /// A client behind trusted proxies whose forwarded chain could not be read.
    pub fn unknown(peer: IpAddr) -> Self {
        ClientAddr {
            ip: None,
            key: Some(canonical(peer)),
        }
    }

    /// No address at all (not a TCP connection); nothing matches or is counted by address.
    pub fn none() -> Self {
        ClientAddr {
            ip: None,
            key: None,
        }
    }

    /// The address `ip:` rules and the audit line use; `None` when unknown.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The address per-address limits (lockout, rate limits) count against.
    pub fn key(&self) -> Option<IpAddr> {
        self.key
    }

    /// True when the peer is a trusted proxy whose forwarded chain could not be read.
    pub fn is_unknown(&self) -> bool {
        self.ip.is_none() && self.key.is_some()
    }
}

impl fmt::Display for ClientAddr {
    /// The audit line's `client`: the address, or `unknown via <peer>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.key) {
            (Some(ip), _) => write!(f, "{ip}"),
            (None, Some(peer)) => write!(f, "unknown via {peer}"),
            (None, None) => Ok(()),
        }
    }
}

/// The trusted proxies (`trusted_proxies`) and the walk over what they forward.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trust the load balancers in `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies { nets }
    }

    /// Whether `ip` is one of ours.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request from `peer` carrying these `X-Forwarded-For` values (every
    /// header in order, as one list: RFC 9110 §5.3). Only the entries right of (and
    /// including) the first untrusted hop are parsed.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> ClientAddr {
        if !self.contains(peer) {
            return ClientAddr::known(peer);
        }
        let mut leftmost = None;
        for value in forwarded_for.rev() {
            for entry in value.rsplit(|&b| b == b',') {
                let entry = entry.trim_ascii();
                if entry.is_empty() {
                    // Says nothing about anyone (`a,,b`, a trailing comma).
                    continue;
                }
                let Some(ip) = parse_hop(entry) else {
                    return ClientAddr::unknown(peer);
                };
                if !self.contains(ip) {
                    return ClientAddr::known(ip);
                }
                leftmost = Some(ip);
            }
        }
        // Every hop is one of ours (a health check from inside, or no header at all): the
        // request started at the left-most of them, or at the peer itself.
        ClientAddr::known(leftmost.unwrap_or(peer))
    }
}

/// One `X-Forwarded-For` entry: `192.0.2.1`, `2001:db8::1`, and the spellings some proxies
/// write, `192.0.2.1:5678`, `[2001:db8::1]` and `[2001:db8::1]:5678`. Nothing else.
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// IPv4-mapped IPv6 addresses are IPv4 clients; compare them as such.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn lb() -> TrustedProxies {
        TrustedProxies::new(vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ])
    }

    fn walk(headers: &[&str]) -> ClientAddr {
        lb().client(ip("127.0.0.1"), headers.iter().map(|h| h.as_bytes()))
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        let c = lb().client(ip("198.51.100.7"), [b"10.0.0.1".as_slice()].into_iter());
        assert_eq!(c, ClientAddr::known(ip("198.51.100.7")));
    }

    #[test]
    fn garbage_left_of_the_client_never_matters() {
        for h in [
            "garbage, 203.0.113.9",
            "127.0.0.1, 203.0.113.9",
            "not an address,,, ; \u{0}, 203.0.113.9",
            "[::1]:x, 203.0.113.9",
            "10.0.0.1, 203.0.113.9",
        ] {
            assert_eq!(walk(&[h]), ClientAddr::known(ip("203.0.113.9")), "{h}");
        }
        // Across header lines too: the client's own header comes first.
        assert_eq!(
            walk(&["garbage", "203.0.113.9"]),
            ClientAddr::known(ip("203.0.113.9"))
        );
    }

    #[test]
    fn garbage_right_of_the_client_makes_it_unknown() {
        for h in [
            "203.0.113.9, garbage",
            "203.0.113.9, garbage, 10.0.0.2",
            "203.0.113.9, 999.1.1.1",
            "203.0.113.9, unknown",
        ] {
            let c = walk(&[h]);
            assert!(c.is_unknown(), "{h}");
            assert_eq!(c.ip(), None);
            assert_eq!(c.key(), Some(ip("127.0.0.1")), "counted against the peer");
            assert_eq!(c.to_string(), "unknown via 127.0.0.1");
        }
    }

    #[test]
    fn trusted_hops_are_skipped() {
        assert_eq!(
            walk(&["198.51.100.1, 203.0.113.9, 10.1.2.3, 10.0.0.9"]),
            ClientAddr::known(ip("203.0.113.9"))
        );
        assert_eq!(
            walk(&["203.0.113.9", "10.1.2.3", "10.0.0.9"]),
            ClientAddr::known(ip("203.0.113.9"))
        );
    }

    #[test]
    fn all_hops_trusted() {
        assert_eq!(
            walk(&["10.9.9.9, 10.0.0.1"]),
            ClientAddr::known(ip("10.9.9.9"))
        );
        assert_eq!(walk(&[]), ClientAddr::known(ip("127.0.0.1")));
        assert_eq!(walk(&[""]), ClientAddr::known(ip("127.0.0.1")));
    }

    #[test]
    fn ipv6_spellings_and_ports() {
        for (h, want) in [
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("203.0.113.9:5678", "203.0.113.9"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            ("[::ffff:203.0.113.9]:1", "203.0.113.9"),
            (" 203.0.113.9 ", "203.0.113.9"),
        ] {
            assert_eq!(walk(&[h]), ClientAddr::known(ip(want)), "{h}");
        }
        // A mapped address of a trusted proxy is trusted.
        assert_eq!(
            walk(&["203.0.113.9, ::ffff:10.0.0.1"]),
            ClientAddr::known(ip("203.0.113.9"))
        );
        for bad in [
            "[2001:db8::1",
            "2001:db8::1]",
            "[203.0.113.9]",
            "2001:db8::1:443x",
        ] {
            assert!(walk(&[bad]).is_unknown(), "{bad}");
        }
    }

    #[test]
    fn empty_entries_are_no_hops() {
        assert_eq!(
            walk(&["203.0.113.9,, ,"]),
            ClientAddr::known(ip("203.0.113.9"))
        );
    }

    #[test]
    fn many_headers_are_one_list() {
        let headers: Vec<String> = (0..50).map(|i| format!("10.0.0.{i}")).collect();
        let mut all: Vec<&str> = vec!["203.0.113.9"];
        all.extend(headers.iter().map(String::as_str));
        assert_eq!(walk(&all), ClientAddr::known(ip("203.0.113.9")));
    }

    #[test]
    fn non_utf8_entries() {
        let c = lb().client(
            ip("127.0.0.1"),
            [b"\xff\xfe, 203.0.113.9".as_slice()].into_iter(),
        );
        assert_eq!(c, ClientAddr::known(ip("203.0.113.9")));
        let c = lb().client(
            ip("127.0.0.1"),
            [b"203.0.113.9, \xff".as_slice()].into_iter(),
        );
        assert!(c.is_unknown());
    }

    proptest! {
        /// Whatever a client writes into the header, a trusted proxy appending the real
        /// address makes that address the client.
        #[test]
        fn client_written_prefix_never_matters(
            prefix in prop::collection::vec(any::<u8>(), 0..80),
            real in any::<[u8; 4]>(),
        ) {
            let real = IpAddr::from(real);
            prop_assume!(!lb().contains(real));
            let mut header = prefix.clone();
            header.extend_from_slice(format!(", {real}").as_bytes());
            let c = lb().client(ip("127.0.0.1"), [header.as_slice()].into_iter());
            prop_assert_eq!(c, ClientAddr::known(real));
        }
    }
}
