//! Property tests of the digest parameter parsers (`Authorization` and
//! `WWW-Authenticate` values): any input is answered without a panic, and
//! credentials written with any parameter values, in any order, with any
//! spacing and name case, read back as written. The fuzz target
//! `fuzz/fuzz_targets/parse_digest.rs` runs the first property unbounded;
//! its corpus (`fuzz/corpus/parse_digest/`) is replayed here.

#![allow(clippy::unwrap_used)] // tests may unwrap

use proptest::prelude::*;
use voxline_auth::{DigestChallenge, DigestCredentials};

/// `text` as a quoted-string, `"` and `\` escaped.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Mixed case, as clients may send names.
fn recase(name: &str, mask: u32) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 32) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn the_fuzz_corpus_is_answered_without_a_panic() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/parse_digest");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(value) = std::str::from_utf8(&data) {
            let _ = DigestCredentials::parse(value);
            let _ = DigestChallenge::parse(value);
        }
        n += 1;
    }
    assert!(n > 50, "only {n} corpus files in {}", dir.display());
}

proptest! {
    #[test]
    fn any_input_is_answered_without_a_panic(value in ".{0,300}") {
        let _ = DigestCredentials::parse(&value);
        let _ = DigestChallenge::parse(&value);
        let digest = format!("Digest {value}");
        let _ = DigestCredentials::parse(&digest);
        let _ = DigestChallenge::parse(&digest);
    }

    #[test]
    fn written_credentials_read_back(
        values in proptest::collection::vec("[ -~äé]{0,40}", 5),
        nc in "[0-9a-f]{8}",
        order in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle(),
        mask in any::<u32>(),
        space in prop_oneof![Just(""), Just(" "), Just("  "), Just(" \t")],
    ) {
        let names = ["username", "realm", "nonce", "uri", "response"];
        let mut params: Vec<String> = names
            .iter()
            .zip(&values)
            .map(|(n, v)| format!("{}={}", recase(n, mask), quoted(v)))
            .collect();
        params.push(format!("{}={nc}", recase("nc", mask)));
        params.push(format!("{}=auth", recase("qop", mask)));
        let shuffled: Vec<&String> = order.iter().map(|&i| &params[i]).collect();
        let text = format!(
            "Digest {}",
            shuffled
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(&format!("{space},{space}"))
        );
        let c = DigestCredentials::parse(&text).unwrap();
        let got = [&c.username, &c.realm, &c.nonce, &c.uri, &c.response];
        for (g, v) in got.iter().zip(&values) {
            prop_assert_eq!(g.as_ref(), v.as_str());
        }
        prop_assert_eq!(c.nc.as_deref(), Some(nc.as_str()));
        prop_assert_eq!(c.qop.as_deref(), Some("auth"));
        prop_assert_eq!(c.algorithm, None);
        // Given twice, in any case, a parameter is refused.
        let twice = format!("{text}, {}=\"x\"", recase(names[mask as usize % 5], !mask));
        prop_assert!(DigestCredentials::parse(&twice).is_err());
    }
}
