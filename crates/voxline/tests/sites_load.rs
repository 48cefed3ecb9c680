//! Measurements for bench/sites/RESULTS.md (ignored in the test command;
//! run in release):
//!
//! ```text
//! cargo test --release -p voxline --test sites_load -- --ignored --nocapture
//! ```
//!
//! Two sites as in the other `sites_*` tests. 10,000 users register at A
//! through A's edge (the project's load generator, digest auth): the
//! replication lag and queue at A are sampled every 100 ms, and the time
//! B needs to hold every binding after the last 200 OK is measured. Then a
//! partition: while the link is cut both sites take 10,000 REGISTERs for the
//! same users (new contacts); after the heal the time until both listings
//! are equal is measured. Last, a full resync of everything from A to B.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Site, completed, loadgen, two_sites, wait_until};
use voxline_loadgen::engine::Shape;
use voxline_loadgen::uac::Scenario;

fn users() -> u32 {
    std::env::var("VOXLINE_SITES_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn register_all(site: &Site, n: u32) -> (Duration, u64) {
    let t = Instant::now();
    let report = loadgen(Scenario::RegisterAuth, site.edge_addr(), |c| {
        c.users = n;
        c.count = Some(u64::from(n));
        c.duration = Duration::from_secs(300);
        c.shape = Shape::Concurrency(100);
        c.expires = 3600;
    });
    (t.elapsed(), completed(&report))
}

fn aors(site: &Site) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&site.reg.admin_get("/api/v1/stats")).unwrap();
    v["location"]["aors"].as_u64().unwrap_or(0)
}

#[test]
#[ignore = "measurement; run in release with --ignored (see the file's documentation)"]
fn replication_lag_partition_convergence_and_resync_with_ten_thousand_users() {
    let n = users();
    let names: Vec<String> = (0..n).map(|i| format!("u{i:08}@localhost")).collect();
    let (a, b) = two_sites(&names);
    assert!(wait_until(Duration::from_secs(10), || {
        a.replication_status()["peers"][0]["state"] == "up"
            && b.replication_status()["peers"][0]["state"] == "up"
    }));

    // 1. Registrations at A; lag and queue sampled at A.
    let done = AtomicBool::new(false);
    let (took, ok, max_lag, max_queue) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let (mut lag, mut queue) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let st = a.replication_status();
                lag = lag.max(st["peers"][0]["lag_ms"].as_u64().unwrap_or(0));
                queue = queue.max(st["peers"][0]["queue"].as_u64().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            (lag, queue)
        });
        let (took, ok) = register_all(&a, n);
        done.store(true, Ordering::Relaxed);
        let (lag, queue) = sampler.join().unwrap();
        (took, ok, lag, queue)
    });
    let after_load = Instant::now();
    assert_eq!(ok, u64::from(n), "all registrations succeed");
    assert!(wait_until(Duration::from_secs(60), || aors(&b) == u64::from(n)));
    let catch_up = after_load.elapsed();
    eprintln!(
        "RESULT register: {n} users at A in {took:.2?} ({:.0}/s); replication lag at A: max {max_lag} ms, max queue {max_queue}; B held all {n} {catch_up:.2?} after the last 200 OK",
        f64::from(n) / took.as_secs_f64()
    );
    assert!(a.listing() == b.listing());

    // 2. Partition: both sites register every user again (new contacts).
    a.admin_post(
        "/api/v1/replication/block",
        r#"{"peer":"b","blocked":true}"#,
    );
    let (ta, oka) = register_all(&a, n);
    let (tb, okb) = register_all(&b, n);
    assert_eq!((oka, okb), (u64::from(n), u64::from(n)));
    let st = a.replication_status();
    let entries = st["journal"]["entries"].as_u64().unwrap();
    let bytes = st["journal"]["bytes"].as_u64().unwrap();
    eprintln!(
        "RESULT partition: {n} REGISTERs at each site while cut ({ta:.2?} at A, {tb:.2?} at B); A's journal {entries} entries, {bytes} bytes ({} bytes/entry payload)",
        bytes / entries.max(1)
    );
    let healed = Instant::now();
    a.admin_post(
        "/api/v1/replication/block",
        r#"{"peer":"b","blocked":false}"#,
    );
    assert!(
        wait_until(Duration::from_secs(120), || a.listing() == b.listing()),
        "no convergence"
    );
    let converged = healed.elapsed();
    let list = a.listing();
    assert_eq!(list.len() as u32, n);
    assert!(
        list.iter().all(|(_, bs)| bs.len() == 3),
        "every user has its three phones at both sites"
    );
    eprintln!(
        "RESULT heal: both sites equal ({} bindings) {converged:.2?} after the heal (includes listing both sites through the admin API, polled every 50 ms)",
        3 * n
    );

    // 3. A full resync of everything from A to B (idempotent at B).
    let before = a.replication_status()["peers"][0]["resyncs_done"]
        .as_u64()
        .unwrap();
    let t = Instant::now();
    a.admin_post("/api/v1/replication/resync", r#"{"peer":"b"}"#);
    assert!(wait_until(Duration::from_secs(120), || {
        a.replication_status()["peers"][0]["resyncs_done"]
            .as_u64()
            .unwrap()
            > before
    }));
    let st = a.replication_status();
    eprintln!(
        "RESULT resync: {} bindings sent A -> B in {} ms by the link ({:.2?} as seen by the test)",
        3 * n,
        st["peers"][0]["last_resync_ms"],
        t.elapsed()
    );
    assert!(a.listing() == b.listing());
}
