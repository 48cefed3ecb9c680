//! Resident memory per entry of the nonce-count table (Linux, `--ignored`).
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

use voxline_auth::{NcVerdict, NonceCountTable, NonceInfo};

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
#[ignore = "memory measurement; run explicitly with --ignored"]
fn bytes_per_tracked_nonce() {
    const N: usize = 1_000_000;
    let Some(before) = resident_bytes() else {
        eprintln!("SKIPPED: no /proc/self/statm");
        return;
    };
    let table = NonceCountTable::new(N);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..N as u64 {
        // xorshift: ids spread over the shards like random nonces do.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let verdict = table.check_and_record(
            NonceInfo {
                id: x,
                issued_ms: i,
            },
            1,
            0,
        );
        assert_eq!(verdict, NcVerdict::Accepted);
    }
    let after = resident_bytes().unwrap();
    let per_entry = (after - before) as f64 / table.len() as f64;
    println!(
        "{} nonces tracked, {per_entry:.1} resident bytes each",
        table.len()
    );
    assert!(table.len() > N * 9 / 10);
    assert!(per_entry < 100.0, "{per_entry}");
}
