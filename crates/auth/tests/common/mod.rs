//! Helpers shared by the integration tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // test helpers may unwrap

/// Real PostgreSQL and MariaDB servers (shared with other crates' tests).
#[allow(unused_imports)] // used by the PostgreSQL and MySQL store tests only
pub use voxline_testdb as servers;
pub mod suite;

use voxline_auth::Decision;

/// A decision with its nonce blanked out, for byte-for-byte comparisons.
pub fn without_nonce(decision: &Decision) -> String {
    match decision {
        Decision::Accept(a) => format!("{a:?}"),
        Decision::Challenge(c) => {
            let values: Vec<String> = c
                .values
                .iter()
                .map(|v| v.replace(&c.nonce, "NONCE"))
                .collect();
            format!(
                "{} {:?} {} {:?}",
                c.kind.status_code(),
                c.reason,
                c.realm,
                values
            )
        }
    }
}
