//! The path parser: any method and request target. Must never panic, anything it accepts
//! must name a repository the distribution-spec grammar allows, and the target rebuilt for the
//! registry must parse back to the same route and rebuild to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis::route::{parse_request, Route};

fuzz_target!(|data: &[u8]| {
    let (method, target) = match data.iter().position(|b| *b == b' ') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"GET"[..], data),
    };
    let Ok(method) = std::str::from_utf8(method) else {
        return;
    };
    if let Ok(parsed) = parse_request(method, target) {
        for drop_mount in [false, true] {
            let rebuilt = parsed.target(drop_mount);
            let again = parse_request(method, rebuilt.as_bytes()).expect("rebuilt target parses");
            assert_eq!(again.target(false), rebuilt);
            assert_eq!(again.route.repository(), parsed.route.repository());
            assert_eq!(again.route.action(), parsed.route.action());
            let mount = if drop_mount { None } else { parsed.route.mount() };
            assert_eq!(again.route.mount(), mount);
        }
        let route = parsed.route;
        if let Route::Repository { name, mount, .. } = &route {
            assert!(portcullis::route::is_valid_name(name));
            assert!(!name.contains("..") && !name.contains("//") && !name.contains('%'));
            if let Some(m) = mount {
                assert!(portcullis::route::is_valid_name(&m.from));
            }
        }
    }
});
