//! What the documentation promises about the example and the clients, checked against the
//! files themselves (the example ACL's behaviour is checked by `portcullis test` on
//! `acl/tests/` and by `tests/cli.rs`; here, that the prose says the same).

use std::path::Path;

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_readme_says_what_the_example_acl_does_for_test() {
    let readme = read("README.md");
    let seed = read("acl/tests/10-seed.yaml");
    // The ACL tests promise that `test` only pulls, even in its own namespace ...
    assert!(seed.contains("name: test only pulls, even in its own namespace"));
    // ... so the README may not promise every logged-in user their namespace.
    let prose = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        !prose.contains("and every logged-in user owns"),
        "the README promises test its namespace"
    );
    assert!(
        prose.contains("`test`/`123` may only pull (everywhere, even in `test/…`"),
        "the README does not say test only pulls in test/"
    );
    assert!(prose.contains("every other logged-in user owns `<account>/*`"));
    let namespaces = read("acl/30-namespaces.yaml");
    assert!(namespaces.contains("comment: every other logged-in user owns"));
}

#[test]
fn the_clients_page_has_a_login_line_for_every_client_and_is_linked() {
    let page = read("docs/clients.md");
    for line in [
        "docker login registry.example.org",
        "podman login registry.example.org",
        "skopeo login registry.example.org",
        "crane auth login registry.example.org",
        "oras login registry.example.org",
        "helm registry login registry.example.org",
    ] {
        assert!(page.contains(line), "docs/clients.md lacks `{line}`");
    }
    // The known quirk, and the backend that works.
    assert!(page.contains("challenge: token"));
    assert!(page.contains("auth_backend=\"basic\""));
    assert!(read("README.md").contains("(docs/clients.md)"));
}
