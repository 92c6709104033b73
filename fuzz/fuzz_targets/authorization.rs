//! The `Authorization` header parser.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = portcullis::authn::credentials::parse(Some(data));
});
