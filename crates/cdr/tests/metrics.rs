//! The writer's counters and gauges through the `metrics` facade.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use voxline_cdr::{CdrWriter, StoreOptions, WriterOptions};

type Values = Arc<Mutex<HashMap<String, f64>>>;

struct Recording(Values);
struct Cell(String, Values);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.1.lock().unwrap().insert(self.0.clone(), value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
    }
    fn decrement(&self, value: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= value;
    }
    fn set(&self, value: f64) {
        self.1.lock().unwrap().insert(self.0.clone(), value);
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(key.name().to_string(), self.0.clone())))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(key.name().to_string(), self.0.clone())))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn options(db_url: String, spool: &std::path::Path) -> WriterOptions {
    WriterOptions {
        db_url,
        store: StoreOptions {
            timeout: Duration::from_millis(200),
            max_connections: 1,
        },
        spool_path: spool.to_owned(),
        batch_size: 10,
        queue_size: 100,
        retry_interval: Duration::from_millis(50),
        retry_max_interval: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn written_spooled_and_backlog_are_exported() {
    let values = Values::default();
    metrics::set_global_recorder(Recording(values.clone())).unwrap();
    let get = |name: &str| values.lock().unwrap().get(name).copied().unwrap_or(-1.0);
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("cdr-spool.jsonl");

    // Database unreachable: 25 spooled, backlog 25, database down.
    let down = CdrWriter::start(options(common::refused_postgres_url(), &spool)).unwrap();
    for r in common::records(1, 25, common::DAY) {
        down.record(r);
    }
    common::wait_for(&down, "spooled", |s| s.spooled == 25).await;
    down.shutdown().await;
    assert_eq!(get("voxline_cdr_spooled_total"), 25.0);
    assert_eq!(get("voxline_cdr_spool_backlog"), 25.0);
    assert_eq!(get("voxline_cdr_database_up"), 0.0);
    assert_eq!(get("voxline_cdr_written_total"), -1.0);

    // Database back: the 25 replayed plus 7 new are written, backlog 0.
    let url = format!("sqlite://{}", dir.path().join("voxline.db").display());
    let up = CdrWriter::start(options(url, &spool)).unwrap();
    common::wait_for(&up, "replay", |s| s.backlog == 0 && s.written == 25).await;
    assert_eq!(get("voxline_cdr_database_up"), 1.0);
    for r in common::records(2, 7, common::DAY) {
        up.record(r);
    }
    up.shutdown().await;
    assert_eq!(get("voxline_cdr_written_total"), 32.0);
    assert_eq!(get("voxline_cdr_spool_backlog"), 0.0);
    assert_eq!(get("voxline_cdr_spooled_total"), 25.0);
}
