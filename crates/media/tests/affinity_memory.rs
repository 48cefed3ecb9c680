//! Memory and time per remembered call in the Call-ID → relay map, measured
//! by the process's resident set (run alone, in release):
//! `cargo test --release -p voxline-media --test affinity_memory -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use voxline_media::CallAffinity;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "measurement; run alone with --ignored --nocapture"]
fn bytes_and_time_per_call() {
    let n: u32 = 500_000;
    // Call-IDs as SIP user agents make them: 41 characters.
    let ids: Vec<String> = (0..n)
        .map(|i| format!("{:032x}@10.0.0.1", u64::from(i) * 7919))
        .collect();
    let t0 = Instant::now();
    let ttl = Duration::from_secs(86_400);
    let before = rss_kib();
    let mut map = CallAffinity::new(2, 1_000_000);
    let start = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let expires = t0 + ttl + Duration::from_nanos(i as u64);
        map.bind(id, i % 2, expires, t0);
    }
    let took = start.elapsed();
    let bytes = (rss_kib() - before) * 1024 / u64::from(n);
    eprintln!(
        "{n} calls: {bytes} bytes/call (RSS), bind {:?}/call",
        took / n
    );
    assert_eq!(map.len(), n as usize);
    assert!(bytes < 512, "{bytes} bytes per call");
}
