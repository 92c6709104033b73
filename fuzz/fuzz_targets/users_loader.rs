//! The users-file loader (docker_auth `users:` schema).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = portcullis::authn::users::StaticUsers::parse(text, std::path::Path::new("users.yaml"));
});
