//! The account name of an LDAP entry: the directory's own value of
//! `auth.ldap.account_attribute` (default `uid`), never the name as typed.
//!
//! A directory matches `uid` with `caseIgnoreMatch` after RFC 4518 preparation, so `MOZART`,
//! `Mozart`, fullwidth `ｍｏｚａｒｔ` or `mo\u{AD}zart` all find the entry of `mozart`. Had the
//! typed name become the identity, each spelling would be another account to the ACL, the
//! lockout, the caches, tokens and the audit log. The login name must therefore **equal the
//! entry's value exactly**; any other spelling is refused before the password is tried.
//!
//! Why refuse rather than accept the spelling and carry on as the entry's value: that needs
//! the lockout (checked before the password, on the typed name) and the shadowing of static
//! accounts to reproduce the directory's matching rule exactly — RFC 4518 mapping, NFKC,
//! case folding and space handling for `uid`, other rules for other attributes, Active
//! Directory's own collation — and every difference would again be a second name for one
//! person. With exact equality, a successful login's typed name *is* the canonical one, the
//! other spellings never reach a bind (they are no password oracle), and the only cost is
//! that people type their name as the directory spells it.

use std::collections::HashMap;

/// True for an attribute descriptor (`uid`, `sAMAccountName`, `x-id`) or a numeric OID.
pub fn is_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => chars.all(|c| c.is_ascii_alphanumeric() || c == '-'),
        Some(c) if c.is_ascii_digit() => name
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    }
}

/// True when `filter` compares `attribute` with the login name: it contains
/// `(attribute={account})` (attribute name in any case). Otherwise the entry found would be
/// found by another attribute, whose value the login name need not equal: every login fails.
pub fn filter_compares(filter: &str, attribute: &str) -> bool {
    let wanted = format!("({}={{account}})", attribute.to_ascii_lowercase());
    filter
        .replace("${account}", "{account}")
        .to_ascii_lowercase()
        .replace(' ', "")
        .contains(&wanted)
}

/// The one value of `attribute` in an entry (`attrs`/`bin_attrs` as the server sent them;
/// names compare case-insensitively, as in LDAP). No value, a value that is not UTF-8, or
/// more than one value (one person, several names) is an error: the login fails closed.
pub fn account_name(
    attrs: &HashMap<String, Vec<String>>,
    bin_attrs: &HashMap<String, Vec<Vec<u8>>>,
    attribute: &str,
) -> Result<String, String> {
    if bin_attrs.keys().any(|k| k.eq_ignore_ascii_case(attribute)) {
        return Err(format!("the entry's {attribute} is not UTF-8"));
    }
    let mut values = attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(attribute))
        .flat_map(|(_, v)| v.iter());
    match (values.next(), values.next()) {
        (Some(one), None) if !one.is_empty() => Ok(one.clone()),
        (None, _) | (Some(_), None) => Err(format!(
            "the entry has no {attribute} (auth.ldap.account_attribute)"
        )),
        (Some(_), Some(_)) => Err(format!(
            "the entry has several values of {attribute} (auth.ldap.account_attribute): one person would have several names"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn attribute_names() {
        for ok in ["uid", "sAMAccountName", "x-id", "0.9.2342.19200300.100.1.1"] {
            assert!(is_attribute_name(ok), "{ok}");
        }
        for bad in ["", "u id", "uid)", "1.", "-uid", "uid=x", "ü"] {
            assert!(!is_attribute_name(bad), "{bad}");
        }
    }

    #[test]
    fn filters_that_compare_the_attribute() {
        assert!(filter_compares(
            "(&(objectClass=inetOrgPerson)(uid={account}))",
            "uid"
        ));
        assert!(filter_compares("(UID={account})", "uid"));
        assert!(filter_compares("(uid=${account})", "uid"));
        assert!(filter_compares(
            "(&(objectCategory=person)(sAMAccountName={account}))",
            "samaccountname"
        ));
        assert!(!filter_compares("(mail={account})", "uid"));
        assert!(!filter_compares("(xuid={account})", "uid"));
        assert!(!filter_compares("(uid={account}*)", "uid"));
    }

    #[test]
    fn the_one_value_of_the_attribute() {
        let none = HashMap::new();
        let a = attrs(&[("uid", &["mozart"]), ("cn", &["W. A. Mozart"])]);
        assert_eq!(account_name(&a, &none, "uid").unwrap(), "mozart");
        assert_eq!(account_name(&a, &none, "UID").unwrap(), "mozart");
        let e = account_name(&a, &none, "mail").unwrap_err();
        assert!(e.contains("no mail"), "{e}");
        let two = attrs(&[("uid", &["mozart", "wolfgang"])]);
        assert!(account_name(&two, &none, "uid")
            .unwrap_err()
            .contains("several"));
        let empty = attrs(&[("uid", &[""])]);
        assert!(account_name(&empty, &none, "uid").is_err());
        let bin: HashMap<String, Vec<Vec<u8>>> = [("uid".to_string(), vec![vec![0xff]])].into();
        assert!(account_name(&HashMap::new(), &bin, "uid")
            .unwrap_err()
            .contains("UTF-8"));
    }
}
