//! Resident memory per binding of the memory backend at 1,000,000 bindings
//! (one per AOR, realistic strings, no Path). Run in release:
//! `cargo test --release -p voxline-location --test memory_footprint -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

use voxline_location::*;

/// Resident set size in bytes, from /proc/self/statm (pages × 4 KiB).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
#[ignore = "measurement: 1M bindings, run in release"]
fn bytes_per_binding_at_one_million() {
    let n: u32 = std::env::var("VOXLINE_LOCATION_BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let now = Timestamp::now();
    let store = MemoryStore::open(MemoryOptions::default(), now).unwrap();
    let source = Source {
        transport: Transport::Udp,
        remote: "192.0.2.10:5060".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
    };
    let before = rss();
    let started = std::time::Instant::now();
    for i in 0..n {
        let update = Update {
            call_id: format!("{i:08x}-9c4e-4f6a-8d2b-5e7f3a1c0b9d"),
            cseq: 1,
            source,
            path: vec![],
            user_agent: None,
            nat: false,
            contacts: Contacts::List(vec![ContactUpdate::new(
                format!("sip:u{i:08}@192.0.2.10:5060;transport=udp"),
                3600,
            )]),
        };
        store
            .apply(&format!("u{i:08}@example.com"), &update, now)
            .unwrap();
    }
    let elapsed = started.elapsed();
    let after = rss();
    let counts = store.count();
    assert_eq!(counts.bindings, u64::from(n));
    let per = (after - before) as f64 / f64::from(n);
    println!(
        "bindings={n} rss_before={before} rss_after={after} bytes_per_binding={per:.1} insert_rate={:.0}/s",
        f64::from(n) / elapsed.as_secs_f64()
    );
    // Lookups still work at that size.
    assert_eq!(store.lookup("u00000042@example.com", now).unwrap().len(), 1);
    assert!(
        per <= 300.0,
        "{per:.1} bytes per binding exceeds the 300-byte target"
    );
}

#[test]
#[ignore = "measurement: 1M bindings persisted, run in release"]
fn recovery_time_at_one_million() {
    let n: u32 = std::env::var("VOXLINE_LOCATION_BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let options = MemoryOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..MemoryOptions::default()
    };
    let source = Source {
        transport: Transport::Udp,
        remote: "192.0.2.10:5060".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
    };
    {
        let store = MemoryStore::open(options.clone(), now).unwrap();
        for i in 0..n {
            let update = Update {
                call_id: format!("{i:08x}-9c4e-4f6a-8d2b-5e7f3a1c0b9d"),
                cseq: 1,
                source,
                path: vec![],
                user_agent: None,
                nat: false,
                contacts: Contacts::List(vec![ContactUpdate::new(
                    format!("sip:u{i:08}@192.0.2.10:5060;transport=udp"),
                    3600,
                )]),
            };
            store
                .apply(&format!("u{i:08}@example.com"), &update, now)
                .unwrap();
        }
    }
    let started = std::time::Instant::now();
    let store = MemoryStore::open(options, now).unwrap();
    let took = started.elapsed();
    assert_eq!(store.count().bindings, u64::from(n));
    println!(
        "recovered {n} bindings from the log in {took:?} (incl. writing the compacted snapshot); stats {:?}",
        store.recovery_stats()
    );
}
