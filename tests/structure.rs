//! The module layering stays one-way: the parts below the proxy never reach up into it, the web
//! UI asks the proxy only through its `Gateway` trait, and no part imports the configuration
//! module that assembles them (their settings live beside them). A cycle reintroduced by a
//! later change fails here, with the file and line that made it.

use std::path::Path;

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of code (not comments) under `src/` that mention one of `needles`, in files whose
/// path relative to `src/` does not start with one of `allowed`.
fn offenders(needles: &[&str], allowed: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if needles.iter().any(|needle| code.contains(needle)) {
                found.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn nothing_below_the_proxy_reaches_up_into_it_or_the_ui() {
    // The UI may not name the proxy either: it asks through `ui::gateway::Gateway`.
    let mut found = offenders(
        &["crate::proxy", "crate::server", "super::proxy"],
        &["proxy/", "server.rs", "lib.rs", "main.rs"],
    );
    found.extend(offenders(
        &["crate::ui"],
        &["ui/", "proxy/", "server.rs", "lib.rs", "main.rs"],
    ));
    assert!(found.is_empty(), "upward imports:\n{}", found.join("\n"));
}

#[test]
fn no_part_imports_the_configuration_that_assembles_it() {
    let found = offenders(
        &["crate::config"],
        &[
            "config.rs",
            "state.rs",
            "server.rs",
            "reload/",
            "proxy/",
            "ui/",
            "explain.rs",
            "main.rs",
            "lib.rs",
        ],
    );
    assert!(
        found.is_empty(),
        "lower parts importing config:\n{}",
        found.join("\n")
    );
}
