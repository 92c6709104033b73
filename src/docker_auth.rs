//! docker_auth's `auth_config.yml` read as it is: its `ldap_auth:` section turned into
//! `auth.ldap` (when `auth.ldap` names the file), and a warning for every section of such a
//! file that nothing reads (`mongo_auth`, `ext_auth`, …), so a migration never drops a
//! backend silently.
//!
//! The `ldap_auth` schema is docker_auth's `LDAPAuthConfig`: `addr` (`host:port`), `tls`
//! (`none`, `always`, `starttls`; unset: `always` on port 636, else `none`), the older
//! `method` (`plain`, `simple_tls`, `starttls`), `insecure_tls_skip_verify` (refused: the
//! certificate is always verified), `ca_certificate`, `bind_dn`, `bind_password_file`, `base`,
//! `filter` (with `${account}`), `labels` (`{NAME: {attribute: A, parse_cn: B}}`) and
//! `initial_bind_as_user` (refused). Relative paths are relative to the file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::authn::ldap::Ldap;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::yaml::{self, Node, NodeKind};

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    ldap_auth: Option<RawLdapAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdapAuth {
    addr: String,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    insecure_tls_skip_verify: bool,
    #[serde(default)]
    ca_certificate: Option<PathBuf>,
    #[serde(default)]
    bind_dn: String,
    #[serde(default)]
    bind_password_file: Option<PathBuf>,
    base: String,
    filter: String,
    #[serde(default)]
    labels: BTreeMap<String, RawLabel>,
    #[serde(default)]
    initial_bind_as_user: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    attribute: String,
    #[serde(default)]
    #[allow(dead_code)]
    // DN values always give their first RDN's value (docker_auth's parse_cn).
    parse_cn: bool,
    #[serde(default)]
    lower_case: bool,
}

/// `auth.ldap` from the `ldap_auth:` section of the docker_auth file at `path`; every error
/// is located in that file and keyed `ldap_auth.…`.
pub fn ldap_from_file(path: &Path) -> Result<Ldap, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::new(path, format!("cannot read docker_auth configuration: {e}"))
    })?;
    let doc: Document =
        serde_yaml_ng::from_str(&text).map_err(|e| yaml::serde_diagnostic(path, &text, &e))?;
    let Some(raw) = doc.ldap_auth else {
        return Err(Diagnostic::new(
            path,
            "has no `ldap_auth:` section (auth.ldap names a docker_auth auth_config.yml)",
        )
        .into());
    };
    let tree = yaml::parse_marked(&text).ok().flatten();
    let mut errors = Vec::new();
    let mut err = |key: &str, message: String| {
        let mut d = Diagnostic::new(path, message).key(format!("ldap_auth.{key}"));
        if let Some(n) = tree
            .as_ref()
            .and_then(|t| yaml::at_path(t, &["ldap_auth", key]))
        {
            d = d.at(n.line, n.column);
        }
        errors.push(d);
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let has_port = raw
        .addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port || raw.addr.contains('/') {
        err("addr", format!("{:?} must be host:port", raw.addr));
    }
    let tls = match (raw.tls.as_deref(), raw.method.as_deref()) {
        (Some(_), Some(_)) => {
            err("method", "set `tls` or the older `method`, not both".into());
            "none"
        }
        (Some(t @ ("none" | "always" | "starttls")), None) => t,
        (Some(other), None) => {
            err("tls", format!("{other:?} must be none, always or starttls"));
            "none"
        }
        (None, Some("plain")) => "none",
        (None, Some("simple_tls")) => "always",
        (None, Some("starttls")) => "starttls",
        (None, Some(other)) => {
            err(
                "method",
                format!("{other:?} must be plain, simple_tls or starttls"),
            );
            "none"
        }
        // docker_auth's default.
        (None, None) if raw.addr.ends_with(":636") => "always",
        (None, None) => "none",
    };
    if raw.insecure_tls_skip_verify {
        err(
            "insecure_tls_skip_verify",
            "refused: portcullis always verifies the directory's certificate; name its CA in `ca_certificate` instead".into(),
        );
    }
    if raw.initial_bind_as_user {
        err(
            "initial_bind_as_user",
            "not supported: portcullis searches with bind_dn, then binds as the user".into(),
        );
    }
    if raw.bind_dn.is_empty() {
        err(
            "bind_dn",
            "required: portcullis searches as a service account (anonymous search is not supported)".into(),
        );
    }
    let bind_password_file = match &raw.bind_password_file {
        Some(p) => {
            let p = resolve(p);
            if let Some(why) = crate::diagnostic::not_a_file(&p) {
                err("bind_password_file", why);
            }
            p
        }
        None => {
            err("bind_password_file", "required with bind_dn".into());
            PathBuf::new()
        }
    };
    let ca_certificate = raw.ca_certificate.as_deref().map(resolve);
    if let Some(c) = &ca_certificate {
        if let Some(why) = crate::diagnostic::not_a_file(c) {
            err("ca_certificate", why);
        }
    }
    let (filter, filter_ok) = match crate::authn::ldap::escape::normalize_filter(&raw.filter) {
        Ok(f) => (f, true),
        Err(why) => {
            err("filter", why);
            (raw.filter.clone(), false)
        }
    };
    // docker_auth has no account attribute: the one the filter compares with the name.
    let account_attribute = compared_attribute(&filter);
    if filter_ok && account_attribute.is_none() {
        err(
            "filter",
            format!("{:?} must compare one attribute with the name, as in (uid=${{account}}): that attribute's value is the account name", raw.filter),
        );
    }
    let mut labels = BTreeMap::new();
    for (name, label) in raw.labels {
        if label.lower_case {
            err(
                "labels",
                format!("label {name:?}: lower_case is not supported (values are used as the directory spells them)"),
            );
        }
        labels.insert(name, label.attribute);
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    let scheme = if tls == "always" { "ldaps" } else { "ldap" };
    Ok(Ldap {
        url: format!("{scheme}://{}", raw.addr),
        start_tls: tls == "starttls",
        ca_certificate,
        bind_dn: raw.bind_dn,
        bind_password_file,
        base: raw.base,
        filter,
        account_attribute: account_attribute.unwrap_or_else(|| "uid".into()),
        labels,
        timeout: Duration::from_secs(5),
        cache: Duration::from_secs(60),
    })
}

/// The attribute a filter compares with `{account}`: `uid` in `(&(uid={account})(…))`.
fn compared_attribute(filter: &str) -> Option<String> {
    let end = filter.find("={account})")?;
    let start = filter[..end].rfind('(')? + 1;
    let attr = filter[start..end].trim();
    crate::authn::ldap::account::is_attribute_name(attr).then(|| attr.to_string())
}

/// What each docker_auth section is, for the warning that it is ignored.
fn hint(section: &str) -> &'static str {
    match section {
        "server" => "set `listen` and `tls` in proxy.yaml",
        "token" => "set `auth.token` in proxy.yaml",
        "users" => "name this file in `auth.users` to read it",
        "acl" => "name this file in `acl` to read it",
        "ldap_auth" => "name this file in `auth.ldap` to read it",
        _ => "this backend is not supported: its accounts or rules do not apply",
    }
}

/// A warning for every top-level section of each docker_auth document in `read` that no
/// key reads. `read` lists (file, section read from it); a file counts as a docker_auth
/// document when it has one of the sections read from it (a bare users map or rule list
/// is not one).
pub fn ignored_sections(read: &[(PathBuf, &str)]) -> Vec<Diagnostic> {
    let mut files: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for (file, section) in read {
        files.entry(file.as_path()).or_default().push(section);
    }
    let mut warnings = Vec::new();
    for (file, sections) in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(Some(Node {
            kind: NodeKind::Map(entries),
            ..
        })) = yaml::parse_marked(&text)
        else {
            continue;
        };
        let names: Vec<&str> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
        if !sections.iter().any(|s| names.contains(s)) {
            continue;
        }
        for (k, _) in &entries {
            let Some(name) = k.as_str() else { continue };
            if sections.contains(&name) {
                continue;
            }
            warnings.push(
                Diagnostic::new(
                    file,
                    format!("docker_auth section `{name}` is ignored: {}", hint(name)),
                )
                .at(k.line, k.column)
                .key(name),
            );
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, files: &[&str]) -> (tempfile::TempDir, Result<Ldap, Diagnostics>) {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(d.path().join(f), "x\n").unwrap();
        }
        let p = d.path().join("auth_config.yml");
        std::fs::write(&p, text).unwrap();
        let r = ldap_from_file(&p);
        (d, r)
    }

    const LDAP: &str = "ldap_auth:\n  addr: ldap.example.com:636\n  bind_dn: cn=s\n  bind_password_file: pw\n  base: dc=x\n  filter: (&(uid=${account})(objectClass=person))\n";

    #[test]
    fn reads_ldap_auth() {
        let (d, l) = load(
            &format!("{LDAP}  labels:\n    groups: {{attribute: memberOf, parse_cn: true}}\n"),
            &["pw"],
        );
        let l = l.unwrap();
        assert_eq!(l.url, "ldaps://ldap.example.com:636");
        assert!(!l.start_tls);
        assert_eq!(l.filter, "(&(uid={account})(objectClass=person))");
        assert_eq!(l.account_attribute, "uid");
        assert_eq!(l.bind_password_file, d.path().join("pw"));
        assert_eq!(l.labels["groups"], "memberOf");
        let (_, l) = load(
            &LDAP
                .replace(":636", ":389")
                .replace("(uid=", "(sAMAccountName="),
            &["pw"],
        );
        let l = l.unwrap();
        assert_eq!(l.url, "ldap://ldap.example.com:389");
        assert_eq!(l.account_attribute, "sAMAccountName");
        let (_, l) = load(
            &format!("{LDAP}  tls: starttls\n").replace(":636", ":389"),
            &["pw"],
        );
        let l = l.unwrap();
        assert!(l.start_tls && l.url.starts_with("ldap://"));
    }

    #[test]
    fn refusals_are_located_in_the_file() {
        for (extra, key, line) in [
            (
                "  insecure_tls_skip_verify: true\n",
                "ldap_auth.insecure_tls_skip_verify",
                7,
            ),
            ("  tls: sometimes\n", "ldap_auth.tls", 7),
            (
                "  initial_bind_as_user: true\n",
                "ldap_auth.initial_bind_as_user",
                7,
            ),
            (
                "  labels: {g: {attribute: memberOf, lower_case: true}}\n",
                "ldap_auth.labels",
                7,
            ),
            ("  group_filter: x\n", "ldap_auth", 7),
        ] {
            let (_, e) = load(&format!("{LDAP}{extra}"), &["pw"]);
            let e = e.unwrap_err();
            assert_eq!(e.0[0].key.as_deref(), Some(key), "{extra}: {e}");
            assert_eq!(e.0[0].line, Some(line), "{extra}: {e}");
        }
        let (_, e) = load(LDAP, &[]);
        let e = e.unwrap_err();
        assert_eq!(
            e.0[0].key.as_deref(),
            Some("ldap_auth.bind_password_file"),
            "{e}"
        );
        assert_eq!(e.0[0].line, Some(4), "{e}");
        let (_, e) = load(&LDAP.replace("${account}", "${acount}"), &["pw"]);
        assert_eq!(e.unwrap_err().0[0].line, Some(6));
        let (_, e) = load("users: {}\n", &[]);
        assert!(e.unwrap_err().to_string().contains("no `ldap_auth:`"));
    }

    #[test]
    fn every_unread_section_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth_config.yml");
        std::fs::write(
            &p,
            "server: {addr: \":5001\"}\ntoken: {issuer: x}\nusers: {}\nmongo_auth: {}\next_auth: {}\nacl: []\n",
        )
        .unwrap();
        let w = ignored_sections(&[(p.clone(), "users"), (p.clone(), "acl")]);
        let named: Vec<_> = w.iter().map(|d| (d.key.clone().unwrap(), d.line)).collect();
        assert_eq!(
            named,
            [
                ("server", 1),
                ("token", 2),
                ("mongo_auth", 4),
                ("ext_auth", 5)
            ]
            .map(|(k, l)| (k.to_string(), Some(l)))
        );
        // A bare users map is not a docker_auth document.
        std::fs::write(&p, "alice: {password: x}\nserver: {}\n").unwrap();
        assert!(ignored_sections(&[(p, "users")]).is_empty());
    }
}
