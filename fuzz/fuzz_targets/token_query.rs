//! The token endpoint's query/form parsing: Go-compatible query decoding, then scopes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = portcullis::route::parse_query(text) {
        let scopes = pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str());
        let _ = portcullis::token::scope::parse_scopes(scopes);
    }
    for part in text.split(' ') {
        let _ = portcullis::token::scope::parse_scope(part);
    }
});
