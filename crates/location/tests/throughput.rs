//! Throughput measurements (ignored by default; run in release):
//! `cargo test --release -p voxline-location --features test-util --test throughput -- --ignored --nocapture --test-threads=1`
//! Every loop is bounded in count.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use voxline_location::testutil::RedisServer;
use voxline_location::*;

fn update(i: u32, cseq: u32) -> Update {
    Update {
        call_id: format!("{i:08x}-9c4e-4f6a-8d2b-5e7f3a1c0b9d"),
        cseq,
        source: Source {
            transport: Transport::Udp,
            remote: "192.0.2.10:5060".parse().unwrap(),
            local: "192.0.2.1:5060".parse().unwrap(),
        },
        path: vec![],
        user_agent: Some("bench/1.0".into()),
        nat: false,
        contacts: Contacts::List(vec![ContactUpdate::new(
            format!("sip:u{i:08}@192.0.2.10:5060;transport=udp"),
            3600,
        )]),
    }
}

async fn measure(name: &str, store: LocationStore, tasks: u32, per_task: u32) {
    let now = Timestamp::now();
    for (phase, cseq) in [("register", 1), ("refresh", 2)] {
        let started = Instant::now();
        let mut handles = Vec::new();
        for task in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for k in 0..per_task {
                    let i = task * per_task + k;
                    store
                        .apply(&format!("u{i:08}@example.com"), &update(i, cseq), now)
                        .await
                        .unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let n = tasks * per_task;
        println!(
            "{name} {phase}: {n} in {:?} = {:.0}/s",
            started.elapsed(),
            f64::from(n) / started.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for k in 0..per_task {
                let i = task * per_task + k;
                assert_eq!(
                    store
                        .lookup(&format!("u{i:08}@example.com"), now)
                        .await
                        .unwrap()
                        .len(),
                    1
                );
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let n = tasks * per_task;
    println!(
        "{name} lookup: {n} in {:?} = {:.0}/s",
        started.elapsed(),
        f64::from(n) / started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn memory_persisted_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let options = MemoryOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..MemoryOptions::default()
    };
    let store = LocationStore::Memory(Arc::new(
        MemoryStore::open(options, Timestamp::now()).unwrap(),
    ));
    measure("memory+log (fsync never)", store, 2, 100_000).await;
    let log_bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!("log bytes per write: {:.1}", log_bytes as f64 / 400_000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn redis_standalone_throughput() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap()
        .unwrap();
    let store = RedisStore::new(RedisOptions {
        nodes: vec![server.url()],
        ..RedisOptions::default()
    })
    .unwrap();
    measure(
        "redis standalone (64 in flight)",
        LocationStore::Redis(Arc::new(store)),
        64,
        500,
    )
    .await;
}
