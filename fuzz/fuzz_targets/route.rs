//! The path parser: any method and request target. Must never panic, and anything it accepts
//! must name a repository the distribution-spec grammar allows.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis::route::{parse_bytes, Route};

fuzz_target!(|data: &[u8]| {
    let (method, target) = match data.iter().position(|b| *b == b' ') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"GET"[..], data),
    };
    let Ok(method) = std::str::from_utf8(method) else {
        return;
    };
    if let Ok(route) = parse_bytes(method, target) {
        if let Route::Repository { name, mount, .. } = &route {
            assert!(portcullis::route::is_valid_name(name));
            assert!(!name.contains("..") && !name.contains("//") && !name.contains('%'));
            if let Some(m) = mount {
                assert!(portcullis::route::is_valid_name(&m.from));
            }
        }
    }
});
