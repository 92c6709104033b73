//! RFC 4515 escaping of a login name before it goes into the search filter, so that `*`, `(`,
//! `)`, `\` and NUL in an account name can never widen or restructure the search.
//!
//! Only those five octets are escaped (as `\2a`, `\28`, `\29`, `\5c`, `\00`): they are the
//! ones RFC 4515 section 3 forbids unescaped in an assertion value. Every other character,
//! including non-ASCII, is kept as its UTF-8 bytes, which RFC 4515 allows (`UTFMB` in
//! `valueencoding`) and servers match as written. Control characters never get here: the
//! backend refuses such account names before touching LDAP.

/// `value` with the RFC 4515 specials escaped as `\XX` (lower-case hex).
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// The configured filter with every `{account}` (or docker_auth's `${account}`) replaced by
/// the escaped `account`.
pub fn build_filter(template: &str, account: &str) -> String {
    let value = escape_filter_value(account);
    template
        .replace("${account}", &value)
        .replace("{account}", &value)
}

/// The filter template with docker_auth's `${account}` written as `{account}`, or why it
/// cannot be used: it has no account placeholder, or another `${…}`/`{…}` placeholder (or a
/// stray brace) that would be sent to the directory literally — `(uid=${acount})` searches
/// for the text `${acount}`, so every login would fail with nothing logged. `$` elsewhere is
/// an ordinary filter character and is kept.
pub fn normalize_filter(template: &str) -> Result<String, String> {
    let normal = template.replace("${account}", "{account}");
    let rest = normal.replace("{account}", "");
    if let Some(i) = rest.find("${") {
        let end = rest[i..].find('}').map_or(rest.len(), |e| i + e + 1);
        return Err(format!(
            "{template:?}: unknown placeholder {:?}; the only one is {{account}} (or ${{account}})",
            &rest[i..end]
        ));
    }
    if let Some(i) = rest.find(['{', '}']) {
        let end = rest[i..]
            .find('}')
            .map_or(rest.len(), |e| i + e + 1)
            .max(i + 1);
        return Err(format!(
            "{template:?}: unknown placeholder {:?}; the only one is {{account}} (or ${{account}})",
            &rest[i..end]
        ));
    }
    if !normal.contains("{account}") {
        return Err(format!(
            "{template:?} must contain {{account}} (or docker_auth's ${{account}})"
        ));
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_rfc4515_specials() {
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value("("), "\\28");
        assert_eq!(escape_filter_value(")"), "\\29");
        assert_eq!(escape_filter_value("\\"), "\\5c");
        assert_eq!(escape_filter_value("\0"), "\\00");
        assert_eq!(
            escape_filter_value("mozart)(uid=*"),
            "mozart\\29\\28uid=\\2a"
        );
        assert_eq!(
            escape_filter_value("*)(|(uid=*"),
            "\\2a\\29\\28|\\28uid=\\2a"
        );
        // Escaping is not applied twice: a literal backslash-hex stays literal.
        assert_eq!(escape_filter_value("\\2a"), "\\5c2a");
    }

    #[test]
    fn plain_and_non_ascii_names_are_kept() {
        assert_eq!(escape_filter_value("mozart"), "mozart");
        assert_eq!(escape_filter_value("j.s-bach_1@x"), "j.s-bach_1@x");
        assert_eq!(escape_filter_value("schrödinger"), "schrödinger");
        assert_eq!(escape_filter_value("ドイツ"), "ドイツ");
    }

    #[test]
    fn agrees_with_ldap3_on_what_matters() {
        // ldap3 has its own escaper for the same five octets; they must agree.
        for s in ["*", "a(b)c", "x\\y", "n\0ul"] {
            let ours = escape_filter_value(s);
            assert!(!ours.contains(['*', '(', ')', '\0']), "{ours}");
            assert_eq!(ours, ldap3::ldap_escape(s).to_lowercase());
        }
    }

    #[test]
    fn docker_auth_placeholder_is_accepted_and_others_refused() {
        assert_eq!(
            normalize_filter("(uid=${account})").unwrap(),
            "(uid={account})"
        );
        assert_eq!(
            normalize_filter("(&(cn=a$b)(uid={account}))").unwrap(),
            "(&(cn=a$b)(uid={account}))"
        );
        assert_eq!(build_filter("(uid=${account})", "mozart"), "(uid=mozart)");
        for (bad, wanted) in [
            ("(uid=mozart)", "must contain"),
            ("(uid=${acount})", "\"${acount}\""),
            ("(uid={account})(mail=${mail})", "\"${mail}\""),
            ("(uid={user})", "\"{user}\""),
            ("(uid={account})(x=})", "\"}\""),
            ("(uid={account})(x={)", "\"{)\""),
        ] {
            let e = normalize_filter(bad).unwrap_err();
            assert!(e.contains(wanted), "{bad}: {e}");
        }
    }

    #[test]
    fn filters_are_built_and_parse() {
        let t = "(&(objectClass=inetOrgPerson)(uid={account}))";
        assert_eq!(
            build_filter(t, "mozart"),
            "(&(objectClass=inetOrgPerson)(uid=mozart))"
        );
        // Every placeholder is replaced.
        assert_eq!(
            build_filter("(|(uid={account})(mail={account}))", "a*"),
            "(|(uid=a\\2a)(mail=a\\2a))"
        );
        // Injection attempts stay one equality assertion: the parsed filter of the escaped
        // value is the same shape as that of a plain name.
        for evil in ["*", "mozart)(uid=*", "*)(|(uid=*", "x\0", "\\", "ü(*)"] {
            let f = build_filter(t, evil);
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
            assert_eq!(f.matches('(').count(), 3, "{f}");
            assert_eq!(f.matches(')').count(), 3, "{f}");
            assert!(!f.contains('*'), "{f}");
        }
    }
}
