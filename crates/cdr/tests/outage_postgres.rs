//! A PostgreSQL outage while calls end: nothing is lost, the spool grows
//! while the server is down, and once it is back the spool is replayed so
//! that every record is stored exactly once. Real PostgreSQL started by the
//! test; skipped with a message when it is not installed.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::servers::PgCluster;
use voxline_cdr::{CdrStore, CdrWriter, RecordId, StoreOptions, TimeRange, WriterOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_nothing_and_stores_each_record_once() {
    let Some(mut cluster) = PgCluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("cdr-spool.jsonl");
    let writer = CdrWriter::start(WriterOptions {
        db_url: cluster.url(),
        store: StoreOptions {
            timeout: Duration::from_millis(500),
            max_connections: 2,
        },
        spool_path: spool.clone(),
        batch_size: 20,
        queue_size: 200,
        retry_interval: Duration::from_millis(100),
        retry_max_interval: Duration::from_millis(800),
    })
    .unwrap();
    common::wait_for(&writer, "database up", |s| s.database_up).await;
    let mut expected: HashSet<RecordId> = HashSet::new();

    // Before: straight into the database.
    let before = common::records(1, 200, common::DAY);
    expected.extend(before.iter().map(|r| r.id));
    for r in before {
        writer.record(r);
    }
    common::wait_for(&writer, "200 written", |s| s.written == 200).await;

    // Down: calls keep ending; their records go to the spool.
    cluster.stop();
    let during = common::records(2, 300, common::DAY + 10_000);
    expected.extend(during.iter().map(|r| r.id));
    for (i, r) in during.into_iter().enumerate() {
        writer.record(r);
        if i == 150 {
            // Half of them once the writer has noticed.
            common::wait_for(&writer, "database down", |s| !s.database_up).await;
        }
    }
    let stats = common::wait_for(&writer, "300 spooled", |s| s.spooled == 300).await;
    assert_eq!(stats.written, 200, "{stats:?}");
    assert_eq!(stats.backlog, 300);
    assert!(!stats.database_up);
    let spooled_lines = std::fs::read_to_string(&spool).unwrap().lines().count();
    assert_eq!(spooled_lines, 300);

    // Back: the spool is replayed and truncated; new records keep flowing.
    cluster.restart();
    let after = common::records(3, 100, common::DAY + 20_000);
    expected.extend(after.iter().map(|r| r.id));
    let stats = common::wait_for(&writer, "replay", |s| s.database_up && s.backlog == 0).await;
    assert_eq!(stats.replayed, 300, "{stats:?}");
    for r in after {
        writer.record(r);
    }
    writer.shutdown().await;
    let stats = writer.stats();
    assert_eq!(stats.written, 600, "{stats:?}");
    assert_eq!(stats.spooled, 300);
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0);

    // Every record exactly once.
    let store = CdrStore::open(&cluster.url()).await.unwrap();
    let stored = store.query(TimeRange::all()).await.unwrap();
    assert_eq!(stored.len(), 600);
    let ids: HashSet<RecordId> = stored.iter().map(|r| r.id).collect();
    assert_eq!(ids, expected);
    assert_eq!(store.count(TimeRange::all()).await.unwrap(), 600);
}
