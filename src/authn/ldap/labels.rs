//! Labels from LDAP attributes: `labels: {groups: memberOf}` turns every value of `memberOf`
//! into a value of the `groups` label. A value that is a DN gives the value of its first RDN
//! (`cn=builders,ou=groups,dc=example,dc=com` → `builders`), with RFC 4514 escapes undone
//! (`cn=a\,b,ou=groups` → `a,b`); any other value is used as it is.

use std::collections::{BTreeMap, HashMap};

use crate::authn::Labels;

/// The value of the first attribute of the first RDN of `dn`, unescaped; `None` when `dn` does
/// not start with `type=value` (then it is not a DN and the caller uses it as it is).
///
/// Handles `\` followed by a special character, `\` followed by two hex digits (UTF-8 bytes),
/// and the end of the RDN at an unescaped `,`, `+` (multi-valued RDN: the first value wins)
/// or `;`. Unescaped trailing spaces are dropped (they are not significant in a DN). A BER
/// value (`cn=#04...`) is returned as written.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (attr_type, rest) = dn.split_once('=')?;
    let attr_type = attr_type.trim();
    if !is_attribute_type(attr_type) {
        return None;
    }
    let rest = rest.trim_start_matches(' ');
    if rest.starts_with('#') {
        let end = rest.find([',', '+', ';']).unwrap_or(rest.len());
        return Some(rest[..end].trim_end().to_owned());
    }
    let bytes = rest.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Length of `out` up to the last escaped byte: escaped spaces are kept by the trim.
    let mut keep = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let next = *bytes.get(i + 1)?;
                if next.is_ascii_hexdigit() {
                    let hi = hex(next)?;
                    let lo = hex(*bytes.get(i + 2)?)?;
                    out.push(hi << 4 | lo);
                    i += 3;
                } else if b" \"#+,;<=>\\".contains(&next) {
                    out.push(next);
                    i += 2;
                } else {
                    return None;
                }
                keep = out.len();
            }
            b',' | b'+' | b';' => break,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    while out.len() > keep && out.last() == Some(&b' ') {
        out.pop();
    }
    let value = String::from_utf8(out).ok()?;
    (!value.is_empty()).then_some(value)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// A descriptor (`cn`, `memberOf`, `x-foo`) or a numeric OID (`2.5.4.3`).
fn is_attribute_type(t: &str) -> bool {
    let mut chars = t.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => chars.all(|c| c.is_ascii_alphanumeric() || c == '-'),
        Some(c) if c.is_ascii_digit() => t
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    }
}

/// The label value for one attribute value.
pub fn label_value(value: &str) -> String {
    first_rdn_value(value).unwrap_or_else(|| value.to_owned())
}

/// Labels from an entry's attributes (`attrs`, as the server named them) for the configured
/// `mapping` (label → attribute). Attribute names match case-insensitively, as in LDAP.
/// Values keep the server's order, without duplicates and without empty ones; a label whose
/// attribute is absent is left out.
pub fn labels_from(
    attrs: &HashMap<String, Vec<String>>,
    mapping: &BTreeMap<String, String>,
) -> Labels {
    let mut labels = Labels::new();
    for (label, attribute) in mapping {
        let mut values: Vec<String> = Vec::new();
        for (name, raw) in attrs {
            if !name.eq_ignore_ascii_case(attribute) {
                continue;
            }
            for v in raw {
                let v = label_value(v);
                if !v.is_empty() && !values.contains(&v) {
                    values.push(v);
                }
            }
        }
        if !values.is_empty() {
            labels.insert(label.clone(), values);
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_rdn_of_a_dn() {
        let f = |s| first_rdn_value(s);
        assert_eq!(
            f("cn=builders,ou=groups,dc=example,dc=com").as_deref(),
            Some("builders")
        );
        assert_eq!(
            f("CN=Domain Users,CN=Users,DC=corp").as_deref(),
            Some("Domain Users")
        );
        assert_eq!(f("cn=builders").as_deref(), Some("builders"));
        assert_eq!(f("2.5.4.3=x,dc=a").as_deref(), Some("x"));
        // Multi-valued RDN: the first value.
        assert_eq!(f("cn=a+sn=b,dc=x").as_deref(), Some("a"));
        // Spaces around `=` and before `,` are not part of the value.
        assert_eq!(f("cn = a b ,dc=x").as_deref(), Some("a b"));
    }

    #[test]
    fn escapes_in_the_value() {
        let f = |s| first_rdn_value(s);
        assert_eq!(f("cn=a\\,b,ou=groups,dc=x").as_deref(), Some("a,b"));
        assert_eq!(
            f("cn=a\\+b\\;c\\\\d\\\"e\\<f\\>g\\=h,dc=x").as_deref(),
            Some("a+b;c\\d\"e<f>g=h")
        );
        assert_eq!(f("cn=\\#hash,dc=x").as_deref(), Some("#hash"));
        // Hex pairs are UTF-8 bytes.
        assert_eq!(f("cn=Lu\\C4\\8Di\\C4\\87,dc=x").as_deref(), Some("Lučić"));
        assert_eq!(f("cn=a\\2cb,dc=x").as_deref(), Some("a,b"));
        // An escaped trailing space stays.
        assert_eq!(f("cn=a\\ ,dc=x").as_deref(), Some("a "));
        // UTF-8 written directly.
        assert_eq!(f("cn=Ärzte,dc=x").as_deref(), Some("Ärzte"));
    }

    #[test]
    fn values_that_are_not_dns() {
        for s in [
            "builders",
            "",
            "=x",
            "a b=c",
            "http://x/?a=b",
            "cn=a\\",
            "cn=a\\zz,dc=x",
            "cn=\\ff",
        ] {
            assert_eq!(first_rdn_value(s), None, "{s:?}");
        }
        assert_eq!(label_value("builders"), "builders");
        assert_eq!(label_value("cn=a\\zz"), "cn=a\\zz");
        assert_eq!(label_value("cn=builders,dc=x"), "builders");
        // A BER value is kept as written.
        assert_eq!(label_value("cn=#0403616263,dc=x"), "#0403616263");
    }

    #[test]
    fn labels_from_attributes() {
        let attrs: HashMap<String, Vec<String>> = [
            (
                "memberOf".to_string(),
                vec![
                    "cn=builders,ou=groups,dc=example,dc=com".to_string(),
                    "cn=composers,ou=groups,dc=example,dc=com".to_string(),
                    "cn=builders,ou=other,dc=example,dc=com".to_string(),
                ],
            ),
            ("departmentNumber".to_string(), vec!["42".to_string()]),
        ]
        .into();
        let mapping: BTreeMap<String, String> = [
            ("groups".to_string(), "memberof".to_string()),
            ("dept".to_string(), "departmentNumber".to_string()),
            ("missing".to_string(), "nothing".to_string()),
        ]
        .into();
        let labels = labels_from(&attrs, &mapping);
        assert_eq!(labels["groups"], vec!["builders", "composers"]);
        assert_eq!(labels["dept"], vec!["42"]);
        assert!(!labels.contains_key("missing"));
    }
}
