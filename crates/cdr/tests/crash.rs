//! A writer killed with SIGKILL (no flush, no shutdown) while it spools:
//! the next writer replays the spool, and every record whose batch was
//! spooled before the kill is stored exactly once. The killed writer is
//! this test binary run again as a child process (`crash_child`).
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use voxline_cdr::{CdrStore, CdrWriter, RecordId, StoreOptions, TimeRange, WriterOptions};

/// Tells the child where its spool is.
const CHILD_ENV: &str = "VOXLINE_CDR_CRASH_SPOOL";
/// Records the child has spooled (fsync'ed) before it announces itself.
const SPOOLED_BEFORE_KILL: u32 = 120;

fn options(db_url: String, spool: &Path) -> WriterOptions {
    WriterOptions {
        db_url,
        store: StoreOptions {
            timeout: Duration::from_millis(200),
            max_connections: 1,
        },
        spool_path: spool.to_owned(),
        batch_size: 10,
        queue_size: 50,
        retry_interval: Duration::from_millis(50),
        retry_max_interval: Duration::from_millis(200),
    }
}

/// The process that gets killed: spools records (its database refuses
/// connections), says so on stdout, keeps spooling until killed.
#[test]
#[ignore = "child process of killed_writer_spool_is_replayed_on_restart"]
fn crash_child() {
    let Some(spool) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let writer =
            CdrWriter::start(options(common::refused_postgres_url(), Path::new(&spool))).unwrap();
        for r in common::records(1, SPOOLED_BEFORE_KILL, common::DAY) {
            writer.record(r);
        }
        common::wait_for(&writer, "spooled", |s| {
            s.spooled == u64::from(SPOOLED_BEFORE_KILL)
        })
        .await;
        // Still writing when the kill comes: announced once a few more
        // batches made it, while the rest keep streaming into the spool.
        for r in common::records(2, 100_000, common::DAY + 60_000) {
            writer.record(r);
        }
        let stats = common::wait_for(&writer, "more spooled", |s| {
            s.spooled >= u64::from(SPOOLED_BEFORE_KILL) + 200
        })
        .await;
        println!("SPOOLED {}", stats.spooled);
        std::future::pending::<()>().await;
    });
}

#[test]
fn killed_writer_spool_is_replayed_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("cdr-spool.jsonl");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &spool)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, n)) = line.split_once("SPOOLED ") {
                let _ = tx.send(n.trim().parse::<u64>().unwrap_or(0));
            }
        }
    });
    let announced = rx.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    let status = child.wait().unwrap();
    let announced = announced.expect("the child never reported its spooled records");
    assert_eq!(status.signal(), Some(9), "{status:?}");

    let text = std::fs::read(&spool).unwrap();
    let lines = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    assert!(lines >= announced, "{lines} < {announced}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("voxline.db").display());
        let writer = CdrWriter::start(options(url.clone(), &spool)).unwrap();
        assert_eq!(writer.stats().backlog, lines);
        let stats = common::wait_for(&writer, "replay", |s| {
            s.database_up && s.backlog == 0 && s.replayed + s.invalid == lines
        })
        .await;
        eprintln!(
            "spool at the kill: {lines} records; replayed {}, unreadable {}",
            stats.replayed, stats.invalid
        );
        // At most the line being written at the kill is cut short.
        assert!(stats.invalid <= 1, "{stats:?}");
        writer.shutdown().await;
        assert_eq!(std::fs::metadata(&spool).unwrap().len(), 0);

        let store = CdrStore::open(&url).await.unwrap();
        let stored = store.query(TimeRange::all()).await.unwrap();
        assert_eq!(stored.len() as u64, stats.replayed);
        let ids: HashSet<RecordId> = stored.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), stored.len());
        for n in 0..SPOOLED_BEFORE_KILL {
            assert!(ids.contains(&common::id(1, n)), "record {n} lost");
        }
        // Everything acknowledged as spooled before the kill, and more.
        assert!(
            stored.len() as u64 >= announced,
            "{} < {announced}",
            stored.len()
        );
    });
}
