//! Reads arbitrary bytes as the value of an `Authorization` and of a
//! `WWW-Authenticate` header (the property test crates/auth/tests/
//! digest_params.rs runs the same calls on generated input in CI).
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxline_auth::{DigestChallenge, DigestCredentials};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = std::str::from_utf8(data) {
        let _ = DigestCredentials::parse(value);
        let _ = DigestChallenge::parse(value);
    }
});
