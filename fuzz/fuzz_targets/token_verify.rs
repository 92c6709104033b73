//! The token verifier: arbitrary strings as Bearer tokens, and mutations of a valid token.
//! Nothing may panic, and nothing but the untouched valid token may verify.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::token::TokenService;

struct Fixture {
    service: TokenService,
    valid: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portcullis-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (key, cert) = portcullis::token::generate_dev_keypair(&dir).unwrap();
        let cfg = portcullis::config::Token {
            path: "/auth".into(),
            realm: None,
            issuer: "fuzz".into(),
            service: "registry".into(),
            key,
            certificate: Some(cert),
            expiration: std::time::Duration::from_secs(3600),
            refresh_expiration: std::time::Duration::from_secs(7200),
            previous_keys: vec![],
        };
        let service = TokenService::load(&cfg).unwrap();
        let valid = service.issue("bob", vec![]).unwrap();
        Fixture { service, valid }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(text) = std::str::from_utf8(data) {
        if text != f.valid {
            assert!(f.service.verify(text).is_err());
        }
    }
    // Flip bytes of the valid token where the input says.
    let mut token = f.valid.clone().into_bytes();
    for pair in data.chunks(2) {
        if let [pos, val] = pair {
            let i = *pos as usize % token.len();
            token[i] = *val;
        }
    }
    if let Ok(t) = String::from_utf8(token) {
        if t != f.valid {
            // A different string may still decode to the same bytes (base64url padding bits);
            // it must never verify as a token with other claims.
            if let Ok(claims) = f.service.verify(&t) {
                assert_eq!(claims.sub, "bob");
            }
        }
    }
});
