//! Replays every file of the fuzz corpus (`fuzz/corpus/parse_message/`)
//! through the same code path as the fuzz target, so CI covers it without
//! cargo-fuzz.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn replay_fuzz_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/parse_message");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| voxline_sip::exercise(&data));
            assert!(result.is_ok(), "corpus file {} panics", path.display());
            n += 1;
        }
    }
    assert!(n >= 49, "corpus has only {n} files");
}
