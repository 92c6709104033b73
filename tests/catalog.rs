//! The per-user catalog over 1 200 real repositories: every page walked with `n` and `Link`,
//! the union compared with what each user may pull; `registry:catalog:*` holders see the
//! registry's own answer unchanged.

mod common;

use std::collections::BTreeSet;

use common::*;

const ACL: &str = r#"
- match: {account: admin}
  actions: ["*"]
- match: {account: "/.+/", name: "${account}/**"}
  actions: ["*"]
- match: {account: "/alice|bob/", name: "shared/**"}
  actions: [pull]
- match: {account: carol, name: "/shared/app0*[13579]/"}
  actions: [pull]
- match: {type: registry, name: catalog, account: auditor}
  actions: ["*"]
"#;

fn walk(
    client: &reqwest::blocking::Client,
    proxy: &Proxy,
    user: &str,
    n: Option<usize>,
) -> (Vec<String>, usize) {
    let mut path = match n {
        Some(n) => format!("/v2/_catalog?n={n}"),
        None => "/v2/_catalog".to_string(),
    };
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let r = client
            .get(proxy.url(&path))
            .basic_auth(user, Some("pw"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let link = r
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let body: serde_json::Value = r.json().unwrap();
        let names: Vec<String> = serde_json::from_value(body["repositories"].clone()).unwrap();
        if let Some(n) = n {
            assert!(names.len() <= n);
        }
        pages += 1;
        all.extend(names);
        match link {
            Some(l) => {
                assert!(l.ends_with("; rel=\"next\""), "{l}");
                path = l[1..l.find('>').unwrap()].to_string();
            }
            None => break,
        }
        assert!(pages < 10_000, "paging does not end");
    }
    (all, pages)
}

#[test]
fn each_user_sees_exactly_what_they_may_pull_across_every_page() {
    let registry = Registry::start();
    // 1 200 repositories, created the way the registry stores them.
    let repos = registry
        .dir
        .path()
        .join("data/docker/registry/v2/repositories");
    let mut expected_all = BTreeSet::new();
    for ns in ["alice", "bob", "shared", "secret"] {
        for i in 0..300 {
            let name = format!("{ns}/app{i:04}");
            // The registry lists a repository once it has a `_layers` folder.
            std::fs::create_dir_all(repos.join(&name).join("_layers")).unwrap();
            expected_all.insert(name);
        }
    }
    let users: String = ["admin", "alice", "bob", "carol", "auditor", "dave"]
        .iter()
        .map(|u| format!("{u}:\n  password: \"{}\"\n", hash("pw")))
        .collect();
    let files = vec![("users.yaml", users), ("acl.yaml", ACL.to_string())];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let c = proxy.client();
    let expect = |f: &dyn Fn(&str) -> bool| -> Vec<String> {
        expected_all.iter().filter(|n| f(n)).cloned().collect()
    };
    // `/shared/app0*[13579]/` is anchored: zeros, then exactly one odd digit.
    let carol_sees =
        |n: &str| n.starts_with("shared/app000") && n.ends_with(['1', '3', '5', '7', '9']);
    for n in [None, Some(1), Some(7), Some(100), Some(1000)] {
        let (alice, pages) = walk(&c, &proxy, "alice", n);
        assert_eq!(
            alice,
            expect(&|x| x.starts_with("alice/") || x.starts_with("shared/")),
            "n={n:?}"
        );
        if let Some(n) = n {
            assert_eq!(pages, 600usize.div_ceil(n), "n={n}");
        }
        let (bob, _) = walk(&c, &proxy, "bob", n);
        assert_eq!(
            bob,
            expect(&|x| x.starts_with("bob/") || x.starts_with("shared/")),
            "n={n:?}"
        );
        let (carol, _) = walk(&c, &proxy, "carol", n);
        assert_eq!(carol, expect(&carol_sees), "n={n:?}");
        let (dave, pages) = walk(&c, &proxy, "dave", n);
        assert!(dave.is_empty());
        assert_eq!(pages, 1);
    }
    // Holders of registry:catalog:* get the registry's own answer, pagination included.
    let direct = reqwest::blocking::Client::new();
    for user in ["admin", "auditor"] {
        for query in ["", "?n=50", "?n=50&last=bob%2Fapp0100", "?n=5000"] {
            let via = c
                .get(proxy.url(&format!("/v2/_catalog{query}")))
                .basic_auth(user, Some("pw"))
                .send()
                .unwrap();
            let up = direct
                .get(format!("{}/v2/_catalog{query}", registry.url()))
                .send()
                .unwrap();
            assert_eq!(via.status(), up.status());
            assert_eq!(
                via.headers()
                    .get("link")
                    .map(|v| v.to_str().unwrap().to_string()),
                up.headers()
                    .get("link")
                    .map(|v| v.to_str().unwrap().to_string())
            );
            assert_eq!(via.text().unwrap(), up.text().unwrap(), "{user} {query}");
        }
    }
    // A bad n is refused.
    let r = c
        .get(proxy.url("/v2/_catalog?n=abc"))
        .basic_auth("alice", Some("pw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn tags_list_keeps_the_registry_paging() {
    let registry = Registry::start();
    let direct = reqwest::blocking::Client::new();
    // One image under five tags, pushed straight to the registry.
    for tag in ["t1", "t2", "t3", "t4", "t5"] {
        registry.push_manifest("alice/app", tag, &[], serde_json::json!({}));
    }
    let files = vec![
        (
            "users.yaml",
            format!("alice:\n  password: \"{}\"\n", hash("pw")),
        ),
        ("acl.yaml", ACL.to_string()),
    ];
    let proxy = Proxy::start(
        ProxySetup {
            config: "upstream: {upstream}\nauth:\n  users: users.yaml\nacl: acl.yaml\n",
            files: &files,
            tls: false,
        },
        &registry.url(),
    );
    let c = proxy.client();
    for query in ["", "?n=2", "?n=2&last=t2", "?n=10&last=t4", "?last=t5"] {
        let via = c
            .get(proxy.url(&format!("/v2/alice/app/tags/list{query}")))
            .basic_auth("alice", Some("pw"))
            .send()
            .unwrap();
        let up = direct
            .get(format!("{}/v2/alice/app/tags/list{query}", registry.url()))
            .send()
            .unwrap();
        assert_eq!(via.status(), up.status(), "{query}");
        let link = |r: &reqwest::blocking::Response| {
            r.headers()
                .get("link")
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(link(&via), link(&up), "{query}");
        assert_eq!(via.text().unwrap(), up.text().unwrap(), "{query}");
    }
}
