//! The ACL loader and matcher: any YAML text; when it loads, deciding must not panic either.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis::acl::{AccessRequest, Acl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(loaded) = Acl::parse(text, std::path::Path::new("fuzz.yaml")) {
        let labels = [(
            "groups".to_string(),
            vec!["a*".to_string(), "b".to_string()],
        )]
        .into_iter()
        .collect();
        for (account, name) in [
            ("bob", "bob/app"),
            ("", "public/x"),
            ("a*", "a*/b"),
            ("x", "catalog"),
        ] {
            let _ = loaded.acl.decide(&AccessRequest {
                account,
                labels: &labels,
                ip: Some("10.0.0.1".parse().unwrap()),
                service: "registry",
                kind: "repository",
                name,
                actions: &["pull", "push", "*"],
            });
        }
    }
});
