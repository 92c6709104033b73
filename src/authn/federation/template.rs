//! Mapping a verified job token's claims to an account and labels: `github:{repository}`
//! with `{claim}` placeholders, and `labels: {label: claim}`.
//!
//! Every claim named must be present: a token without it is refused (with the claim in the
//! reason), never mapped to an account with a hole in its name or to fewer labels than the
//! ACL expects.

use serde_json::{Map, Value};

use crate::acl::Labels;

/// A parsed account template: literal text and claim names, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Claim(String),
}

/// True for a claim name a template may use.
fn valid_claim_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Template {
    /// Parses `github:{repository}`. A `{` must open a claim name and be closed; `}` alone is
    /// an error; the template must name at least one claim (a fixed account would let every
    /// job of the issuer be one account, which is never what is meant).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Lit(rest.to_owned()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("{text:?}: `}}` without `{{`"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Lit(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let end = after
                        .find('}')
                        .ok_or_else(|| format!("{text:?}: `{{` without `}}`"))?;
                    let name = &after[..end];
                    if !valid_claim_name(name) {
                        return Err(format!(
                            "{text:?}: {name:?} is not a claim name (letters, digits, _ - .)"
                        ));
                    }
                    parts.push(Part::Claim(name.to_owned()));
                    rest = &after[end + 1..];
                }
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Claim(_))) {
            return Err(format!(
                "{text:?} names no claim: write e.g. \"github:{{repository}}\""
            ));
        }
        Ok(Template(parts))
    }

    /// The account for `claims`, or why not (a claim missing or unusable).
    pub fn render(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Claim(name) => out.push_str(&scalar(claims, name)?),
            }
        }
        Ok(out)
    }
}

/// A claim as one string: strings, numbers and booleans; never empty, never with control
/// characters (they would reach ACL matching and the audit line).
fn scalar(claims: &Map<String, Value>, name: &str) -> Result<String, String> {
    let text = match claims.get(name) {
        None | Some(Value::Null) => return Err(format!("claim `{name}` missing")),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => return Err(format!("claim `{name}` is not a string")),
    };
    if text.is_empty() {
        return Err(format!("claim `{name}` is empty"));
    }
    if text.len() > 1024 || text.chars().any(char::is_control) {
        return Err(format!(
            "claim `{name}` is too long or has control characters"
        ));
    }
    Ok(text)
}

/// The labels for `claims`: each label gets its claim's value (an array of strings gives
/// several values). Any claim missing refuses the token.
pub fn labels(
    map: &std::collections::BTreeMap<String, String>,
    claims: &Map<String, Value>,
) -> Result<Labels, String> {
    let mut out = Labels::new();
    for (label, claim) in map {
        let values = match claims.get(claim) {
            Some(Value::Array(items)) => {
                let mut values = Vec::new();
                for item in items {
                    let mut one = Map::new();
                    one.insert(claim.clone(), item.clone());
                    values.push(scalar(&one, claim)?);
                }
                values
            }
            _ => vec![scalar(claims, claim)?],
        };
        out.insert(label.clone(), values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn renders_accounts_and_refuses_missing_claims() {
        let t = Template::parse("github:{repository}@{ref}").unwrap();
        let c = claims(r#"{"repository":"org/app","ref":"refs/heads/main","n":5}"#);
        assert_eq!(t.render(&c).unwrap(), "github:org/app@refs/heads/main");
        let e = t
            .render(&claims(r#"{"repository":"org/app"}"#))
            .unwrap_err();
        assert_eq!(e, "claim `ref` missing");
        for bad in [
            r#"{"repository":"","ref":"x"}"#,
            r#"{"repository":["a"],"ref":"x"}"#,
            r#"{"repository":{"a":1},"ref":"x"}"#,
            r#"{"repository":null,"ref":"x"}"#,
            r#"{"repository":"a\nb","ref":"x"}"#,
        ] {
            assert!(t.render(&claims(bad)).is_err(), "{bad}");
        }
        assert_eq!(Template::parse("p:{n}").unwrap().render(&c).unwrap(), "p:5");
    }

    #[test]
    fn templates_must_be_well_formed() {
        for bad in [
            "github", "", "{", "}", "a{b", "a}b{c}", "{}", "{a b}", "{é}", "x{a{b}}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Template::parse("{sub}").is_ok());
    }

    #[test]
    fn labels_take_strings_and_arrays() {
        let map = [("repo", "repository"), ("groups", "groups")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let l = labels(
            &map,
            &claims(r#"{"repository":"org/app","groups":["a","b"]}"#),
        )
        .unwrap();
        assert_eq!(l["repo"], vec!["org/app"]);
        assert_eq!(l["groups"], vec!["a", "b"]);
        assert_eq!(
            labels(&map, &claims(r#"{"repository":"org/app"}"#)).unwrap_err(),
            "claim `groups` missing"
        );
    }
}
