//! Frames, validates, reads every typed value and edits arbitrary bytes
//! (the same path as the corpus replay test in crates/sip/tests).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    voxline_sip::exercise(data);
});
