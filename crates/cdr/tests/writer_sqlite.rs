//! The writer against a real SQLite file: batches, overflow of a small
//! queue, shutdown flush, records after shutdown, and a spool filled while
//! the database was unreachable replayed by the next writer.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use voxline_cdr::{CdrStore, CdrWriter, RecordId, StoreOptions, TimeRange, WriterOptions};

fn options(url: String, spool: &Path) -> WriterOptions {
    WriterOptions {
        db_url: url,
        store: StoreOptions {
            timeout: Duration::from_millis(300),
            max_connections: 2,
        },
        spool_path: spool.to_owned(),
        batch_size: 50,
        queue_size: 100,
        retry_interval: Duration::from_millis(50),
        retry_max_interval: Duration::from_millis(400),
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("voxline.db").display())
}

async fn stored_ids(url: &str) -> Vec<RecordId> {
    let store = CdrStore::open(url).await.unwrap();
    let ids = store
        .query(TimeRange::all())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    store.close().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_the_database_and_record_never_waits() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let spool = dir.path().join("cdr-spool.jsonl");
    let writer = CdrWriter::start(options(url.clone(), &spool)).unwrap();
    common::wait_for(&writer, "database up", |s| s.database_up).await;

    // 5000 records into a queue of 100: record() returns at once, the
    // excess waits in memory, nothing is lost.
    let all = common::records(1, 5000, common::DAY);
    let started = Instant::now();
    for r in &all {
        writer.record(r.clone());
    }
    let spent = started.elapsed();
    assert!(spent < Duration::from_secs(2), "record() took {spent:?}");
    writer.shutdown().await;
    let stats = writer.stats();
    assert!(stats.stopped);
    assert_eq!(stats.written, 5000, "{stats:?}");
    assert_eq!(stats.spooled, 0);
    assert!(stats.overflowed > 0, "{stats:?}");

    let ids = stored_ids(&url).await;
    assert_eq!(ids.len(), 5000);
    let expected: HashSet<RecordId> = all.iter().map(|r| r.id).collect();
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
    assert!(!spool.exists() || std::fs::metadata(&spool).unwrap().len() == 0);
}

#[tokio::test]
async fn unreachable_database_spools_and_the_next_writer_replays() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool/cdr-spool.jsonl");

    // The database refuses connections: every record goes to the spool.
    let down = CdrWriter::start(options(common::refused_postgres_url(), &spool)).unwrap();
    let first = common::records(1, 120, common::DAY);
    for r in &first {
        down.record(r.clone());
    }
    let stats = common::wait_for(&down, "120 spooled", |s| s.spooled == 120).await;
    assert!(!stats.database_up);
    assert_eq!(stats.backlog, 120);
    assert_eq!(stats.written, 0);
    // Queued at shutdown: flushed to the spool too.
    let second = common::records(2, 30, common::DAY);
    for r in &second {
        down.record(r.clone());
    }
    down.shutdown().await;
    // After shutdown, straight to the spool.
    let late = common::records(3, 5, common::DAY);
    for r in &late {
        down.record(r.clone());
    }
    let stats = down.stats();
    assert_eq!((stats.spooled, stats.backlog), (155, 155), "{stats:?}");
    let lines = std::fs::read_to_string(&spool).unwrap().lines().count();
    assert_eq!(lines, 155);

    // A writer with a working database replays the spool, then truncates it.
    let url = sqlite_url(dir.path());
    let up = CdrWriter::start(options(url.clone(), &spool)).unwrap();
    assert_eq!(up.stats().backlog, 155);
    let stats = common::wait_for(&up, "replay", |s| s.backlog == 0 && s.replayed == 155).await;
    assert_eq!(stats.written, 155);
    up.shutdown().await;
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0);
    let ids = stored_ids(&url).await;
    let expected: HashSet<RecordId> = [first, second, late]
        .concat()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 155);
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
}

#[tokio::test]
async fn replay_is_idempotent_and_damage_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let spool = dir.path().join("cdr-spool.jsonl");
    // A spool whose first records are already stored (a crash between
    // insert and truncate), with a damaged line and a cut last line.
    let records = common::records(1, 40, common::DAY);
    let store = CdrStore::open(&url).await.unwrap();
    store.insert(&records[..25]).await.unwrap();
    store.close().await;
    let mut text = String::new();
    for (i, r) in records.iter().enumerate() {
        text.push_str(&serde_json::to_string(r).unwrap());
        text.push('\n');
        if i == 10 {
            text.push_str("{\"id\": \"half a record\n");
        }
    }
    text.push_str("{\"id\":\"cut");
    std::fs::write(&spool, text).unwrap();

    let writer = CdrWriter::start(options(url.clone(), &spool)).unwrap();
    let stats = common::wait_for(&writer, "replay", |s| s.backlog == 0 && s.invalid == 2).await;
    assert_eq!(stats.replayed, 40);
    writer.shutdown().await;
    let ids = stored_ids(&url).await;
    assert_eq!(ids.len(), 40);
    let bad = std::fs::read_to_string(dir.path().join("cdr-spool.jsonl.bad")).unwrap();
    assert_eq!(bad.lines().count(), 2, "{bad}");
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0);
}

#[tokio::test]
async fn dropping_every_handle_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let spool = dir.path().join("cdr-spool.jsonl");
    let writer = CdrWriter::start(options(url.clone(), &spool)).unwrap();
    let mut watch = writer.watch();
    let clone = writer.clone();
    for r in common::records(1, 70, common::DAY) {
        clone.record(r);
    }
    drop(clone);
    drop(writer);
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|s| s.stopped))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_ids(&url).await.len(), 70);
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("cdr-spool.jsonl");
    let result = CdrWriter::start(options(sqlite_url(dir.path()), &spool));
    assert!(matches!(result, Err(voxline_cdr::CdrError::NoRuntime)));
}

#[tokio::test]
async fn unresponsive_database_times_out_into_the_spool() {
    // Accepts connections (the kernel does) but never answers a byte.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("cdr-spool.jsonl");
    let url = format!("postgres://voxline:pw@127.0.0.1:{port}/voxline");
    let started = Instant::now();
    let writer = CdrWriter::start(options(url, &spool)).unwrap();
    for r in common::records(1, 10, common::DAY) {
        writer.record(r);
    }
    let stats = common::wait_for(&writer, "10 spooled", |s| s.spooled == 10).await;
    assert!(!stats.database_up);
    // The 300 ms operation timeout, not a hang.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    writer.shutdown().await;
    assert_eq!(std::fs::read_to_string(&spool).unwrap().lines().count(), 10);
    drop(silent);
}
