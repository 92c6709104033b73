//! One compiled ACL rule: its match conditions, its actions, where it came from.
//!
//! Matching state lives per rule (compiled patterns, parsed network), so a future index
//! over many rules can look inside a rule (`Rule::account`, [`super::Pattern::literal`])
//! without re-parsing anything.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{AccessRequest, Pattern, RuleOrigin};

/// The actions a rule grants: a small bit set of `pull`, `push`, `delete`, or everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleActions {
    bits: u8,
}

impl RuleActions {
    const PULL: u8 = 1;
    const PUSH: u8 = 2;
    const DELETE: u8 = 4;
    const ALL: u8 = 8;

    /// The actions a rule may list; anything else is a load error.
    pub const VALID: [&'static str; 4] = ["pull", "push", "delete", "*"];

    /// Adds an action as written in a rule; `false` if it is not one of [`Self::VALID`].
    pub fn add(&mut self, action: &str) -> bool {
        let bit = match action {
            "pull" => Self::PULL,
            "push" => Self::PUSH,
            "delete" => Self::DELETE,
            "*" => Self::ALL,
            _ => return false,
        };
        self.bits |= bit;
        true
    }

    /// True for `actions: []`: the rule denies and stops the search.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// True for `actions: ["*"]`: the rule grants whatever was asked.
    pub fn is_all(&self) -> bool {
        self.bits & Self::ALL != 0
    }

    /// Whether a requested action is granted. `*` in the rule grants any request
    /// (including a requested `*`, as for `registry:catalog:*`); a rule listing
    /// `pull, push, delete` still does not grant a requested `*`.
    pub fn grants(&self, requested: &str) -> bool {
        if self.is_all() {
            return true;
        }
        let bit = match requested {
            "pull" => Self::PULL,
            "push" => Self::PUSH,
            "delete" => Self::DELETE,
            _ => return false,
        };
        self.bits & bit != 0
    }
}

/// A rule's `match`, compiled; `None` (or no labels) means "any".
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// `account`: the account name, "" for anonymous.
    pub account: Option<Pattern>,
    /// `type`: the scope type (`repository`, `registry`).
    pub kind: Option<Pattern>,
    /// `name`: the scope name (`team/app`, `catalog`).
    pub name: Option<Pattern>,
    /// `ip`: the client's network; a request with no address never matches.
    pub ip: Option<IpNet>,
    /// `service`: the token service.
    pub service: Option<Pattern>,
    /// `labels`: every key must be present with at least one matching value.
    pub labels: Vec<(String, Pattern)>,
}

impl Conditions {
    /// Whether every condition holds for `req`; cheap checks first.
    pub fn matches(&self, req: &AccessRequest<'_>) -> bool {
        if let Some(net) = &self.ip {
            match req.ip {
                Some(ip) if net.contains(&canonical_ip(ip)) => {}
                _ => return false,
            }
        }
        let check =
            |p: &Option<Pattern>, value: &str| p.as_ref().is_none_or(|p| p.matches(value, req));
        check(&self.kind, req.kind)
            && check(&self.account, req.account)
            && check(&self.name, req.name)
            && check(&self.service, req.service)
            && self.labels.iter().all(|(key, pattern)| {
                req.labels
                    .get(key)
                    .is_some_and(|values| values.iter().any(|v| pattern.matches(v, req)))
            })
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack listener reports
/// for IPv4 clients) as the IPv4 address, so IPv4 rules apply to it.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses a rule's `ip` value: an address (a /32 or /128) or a CIDR. An IPv4-mapped
/// IPv6 network of prefix ≥ 96 becomes the IPv4 network, to match [`canonical_ip`].
///
/// A CIDR with host bits set (`127.0.0.1/3`) is refused rather than rounded down to its
/// network (`96.0.0.0/3`): it is a typo or a truncated `/32`, and rounding would silently
/// match a far larger range than the author meant.
pub fn parse_ip_condition(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = if text.contains('/') {
        let net = text
            .parse::<IpNet>()
            .map_err(|_| format!("invalid CIDR {text:?}"))?;
        if net.addr() != net.network() {
            return Err(format!(
                "CIDR {text:?} has host bits set: write the network ({}) or the single address ({})",
                net.trunc(),
                net.addr()
            ));
        }
        net
    } else {
        let ip = text
            .parse::<IpAddr>()
            .map_err(|_| format!("invalid IP address {text:?}"))?;
        IpNet::from(ip)
    };
    Ok(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        net => net.trunc(),
    })
}

/// One rule of the ACL, compiled, with its origin for audit logs and `explain`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What the request must look like.
    pub conditions: Conditions,
    /// What the rule grants when it decides.
    pub actions: RuleActions,
    /// Where it was written.
    pub origin: RuleOrigin,
}

impl Rule {
    /// Whether this rule's `match` holds for `req` (then it decides).
    pub fn matches(&self, req: &AccessRequest<'_>) -> bool {
        self.conditions.matches(req)
    }

    /// The requested actions this rule grants, in requested order, without duplicates.
    pub fn grant(&self, requested: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(requested.len());
        for (i, a) in requested.iter().enumerate() {
            if self.actions.grants(a) && !requested[..i].contains(a) {
                out.push((*a).to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        let mut a = RuleActions::default();
        assert!(a.is_empty());
        assert!(a.add("pull"));
        assert!(!a.add("pul"));
        assert!(a.grants("pull"));
        assert!(!a.grants("push"));
        assert!(!a.grants("*"));
        let mut all = RuleActions::default();
        all.add("*");
        assert!(all.grants("*"));
        assert!(all.grants("push"));
        let mut three = RuleActions::default();
        for x in ["pull", "push", "delete"] {
            three.add(x);
        }
        assert!(!three.grants("*"));
    }

    #[test]
    fn ip_conditions() {
        assert_eq!(
            parse_ip_condition("10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(
            parse_ip_condition("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        // Host bits set: refused, not rounded to a far larger network.
        for bad in ["10.1.2.3/8", "127.0.0.1/3", "::1/64", "::ffff:10.0.0.1/104"] {
            let e = parse_ip_condition(bad).unwrap_err();
            assert!(e.contains("host bits"), "{bad}: {e}");
        }
        assert!(parse_ip_condition("127.0.0.1/3")
            .unwrap_err()
            .contains("96.0.0.0/3"));
        assert!(parse_ip_condition("127.0.0.1/32").is_ok());
        assert!(parse_ip_condition("0.0.0.0/0").is_ok());
        assert_eq!(parse_ip_condition("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_ip_condition("::ffff:10.0.0.0/104")
                .unwrap()
                .to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_ip_condition("10.0.0.0/33").is_err());
        assert!(parse_ip_condition("nope").is_err());
        assert!(parse_ip_condition("").is_err());
        assert_eq!(
            canonical_ip("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
