//! Throughput of the CDR path, end to end on real files and servers:
//! `record()` cost, writer into SQLite (and PostgreSQL when installed),
//! spooling with the database unreachable, and replaying the spool.
//!
//! `CARGO_TARGET_DIR=target/cdr cargo bench -p voxline-cdr --bench writer`
//! (`CDR_BENCH_RECORDS` sets the record count, default 20000).
#![allow(clippy::unwrap_used)] // a benchmark may unwrap

use std::path::Path;
use std::time::{Duration, Instant};

use voxline_cdr::{
    Callee, Caller, CdrRecord, CdrStore, CdrWriter, Hangup, HangupReason, MediaTotals, RelayUsage,
    Source, StoreOptions, TimeRange, Timestamp, TransportKind, WriterOptions, WriterStats,
};

fn record(n: u32) -> CdrRecord {
    let start = Timestamp::from_unix_ms(1_795_219_200_000 + i64::from(n));
    let source = Source {
        addr: "192.0.2.10:5060".parse().unwrap(),
        transport: TransportKind::Udp,
    };
    let mut r = CdrRecord::new(
        format!("{n:08x}-4f1c-9a2e@192.0.2.10"),
        "node-a",
        source,
        start,
        start.saturating_add(Duration::from_secs(95)),
    );
    r.caller = Caller {
        aor: format!("sip:+4930{n:07}@example.com"),
        display: Some("Alice Example".into()),
    };
    r.callee = Callee {
        aor: "sip:+4940123456@example.com".into(),
        request_uri: "sip:+4940123456@198.51.100.7:5060;transport=udp".into(),
    };
    r.answer = Some(start.saturating_add(Duration::from_secs(5)));
    r.status = 200;
    r.reason = "OK".into();
    r.hangup = Hangup::caller(HangupReason::Bye);
    r.relay = Some(RelayUsage {
        relay: "127.0.0.1:22222".into(),
        from_caller: MediaTotals {
            packets: 4500,
            bytes: 774_000,
            lost: 3,
        },
        from_callee: MediaTotals {
            packets: 4498,
            bytes: 773_656,
            lost: 0,
        },
    });
    r
}

fn options(url: String, spool: &Path, batch: usize) -> WriterOptions {
    WriterOptions {
        db_url: url,
        store: StoreOptions {
            timeout: Duration::from_secs(5),
            max_connections: 2,
        },
        spool_path: spool.to_owned(),
        batch_size: batch,
        queue_size: 10_000,
        retry_interval: Duration::from_millis(50),
        retry_max_interval: Duration::from_millis(200),
    }
}

async fn wait(writer: &CdrWriter, done: impl Fn(&WriterStats) -> bool) {
    let mut watch = writer.watch();
    tokio::time::timeout(Duration::from_secs(300), watch.wait_for(|s| done(s)))
        .await
        .unwrap()
        .unwrap();
}

fn rate(n: u32, d: Duration) -> String {
    format!(
        "{n} records in {:.3} s = {:.0} records/s",
        d.as_secs_f64(),
        f64::from(n) / d.as_secs_f64()
    )
}

/// Writes `n` records through a writer into `url`; the time until stored.
async fn through_writer(url: String, dir: &Path, n: u32, batch: usize) -> Duration {
    let spool = dir.join(format!("spool-{batch}.jsonl"));
    let writer = CdrWriter::start(options(url, &spool, batch)).unwrap();
    wait(&writer, |s| s.database_up).await;
    let records: Vec<CdrRecord> = (0..n).map(record).collect();
    let started = Instant::now();
    for r in records {
        writer.record(r);
    }
    writer.shutdown().await;
    let spent = started.elapsed();
    assert_eq!(writer.stats().written, u64::from(n));
    spent
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let n: u32 = std::env::var("CDR_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();

    // record(): the cost on the call-processing side (queue push only).
    {
        let spool = dir.path().join("spool-record.jsonl");
        let url = format!("sqlite://{}", dir.path().join("record.db").display());
        let writer = CdrWriter::start(options(url, &spool, 1000)).unwrap();
        let records: Vec<CdrRecord> = (0..10_000).map(record).collect();
        let started = Instant::now();
        for r in records {
            writer.record(r);
        }
        let spent = started.elapsed();
        println!(
            "record(): 10000 calls in {:.2} ms = {:.0} ns each",
            spent.as_secs_f64() * 1e3,
            spent.as_nanos() as f64 / 10_000.0
        );
        writer.shutdown().await;
    }

    for batch in [100, 1000] {
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("w{batch}.db")).display()
        );
        let spent = through_writer(url, dir.path(), n, batch).await;
        println!("writer -> SQLite (batch {batch}): {}", rate(n, spent));
    }

    // Database unreachable: everything to the spool, fsync per batch.
    let spool = dir.path().join("outage.jsonl");
    {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://x:y@127.0.0.1:{port}/x");
        let writer = CdrWriter::start(options(url, &spool, 100)).unwrap();
        // Once the writer knows the database is down (its first attempt
        // failed and one record went to the spool).
        writer.record(record(n));
        wait(&writer, |s| s.spooled == 1).await;
        let records: Vec<CdrRecord> = (0..n).map(record).collect();
        let started = Instant::now();
        for r in records {
            writer.record(r);
        }
        wait(&writer, |s| s.spooled == u64::from(n) + 1).await;
        println!(
            "spool (batch 100, fsync each): {}",
            rate(n, started.elapsed())
        );
        writer.shutdown().await;
        let size = std::fs::metadata(&spool).unwrap().len();
        println!(
            "spool size: {size} bytes = {} bytes/record",
            size / (u64::from(n) + 1)
        );
    }

    // The database is back: replay the spool into SQLite.
    {
        let url = format!("sqlite://{}", dir.path().join("replay.db").display());
        let writer = CdrWriter::start(options(url.clone(), &spool, 500)).unwrap();
        let started = Instant::now();
        wait(&writer, |s| {
            s.backlog == 0 && s.replayed == u64::from(n) + 1
        })
        .await;
        println!(
            "replay -> SQLite (batch 500): {}",
            rate(n, started.elapsed())
        );
        writer.shutdown().await;
        let store = CdrStore::open(&url).await.unwrap();
        assert_eq!(
            store.count(TimeRange::all()).await.unwrap(),
            u64::from(n) + 1
        );
        // Export speed, CSV to a sink.
        let started = Instant::now();
        let exported = voxline_cdr::export(
            &store,
            TimeRange::all(),
            voxline_cdr::ExportFormat::Csv,
            std::io::sink(),
        )
        .await
        .unwrap();
        println!(
            "export CSV from SQLite: {}",
            rate(u32::try_from(exported).unwrap(), started.elapsed())
        );
    }

    match voxline_testdb::PgCluster::start() {
        Some(cluster) => {
            for batch in [100, 1000] {
                let spent = through_writer(cluster.url(), dir.path(), n, batch).await;
                println!("writer -> PostgreSQL (batch {batch}): {}", rate(n, spent));
                let store = CdrStore::open(&cluster.url()).await.unwrap();
                let _ = store.count(TimeRange::all()).await.unwrap();
            }
        }
        None => println!("PostgreSQL not installed: skipped"),
    }
}
