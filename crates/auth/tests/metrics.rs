//! Outages and decisions are counted through the `metrics` facade.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use voxline_auth::{
    AuthConfig, AuthError, AuthRequest, Authenticator, ChallengeKind, DigestAuth, ServerSecret,
    StoreOptions, SubscriberStore,
};

type Counts = Arc<Mutex<HashMap<String, u64>>>;

struct Counting(Counts);
struct Cell(String, Counts);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
    }
    fn absolute(&self, value: u64) {
        self.1.lock().unwrap().insert(self.0.clone(), value);
    }
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut name = key.name().to_string();
        for label in key.labels() {
            name.push_str(&format!(" {}={}", label.key(), label.value()));
        }
        Counter::from_arc(Arc::new(Cell(name, self.0.clone())))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn outages_and_decisions_are_counted() {
    let counts = Counts::default();
    metrics::set_global_recorder(Counting(counts.clone())).unwrap();
    let get = |name: &str| counts.lock().unwrap().get(name).copied().unwrap_or(0);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("voxline.db").display());
    let options = StoreOptions {
        cache_ttl: Duration::from_secs(60),
        ..StoreOptions::default()
    };
    let store = SubscriberStore::open_with(&url, &options).await.unwrap();
    store.add("alice", "localhost", "secret").await.unwrap();
    assert!(store.lookup("alice", "localhost").await.unwrap().is_some());
    assert!(store.lookup("alice", "localhost").await.unwrap().is_some());
    assert_eq!(get("voxline_auth_cache_misses_total"), 1);
    assert_eq!(get("voxline_auth_cache_hits_total"), 1);

    let config = AuthConfig::default();
    let auth = DigestAuth::new(
        Authenticator::new(&config, &ServerSecret::generate()),
        store,
    );
    let request = AuthRequest {
        method: "REGISTER",
        realm: "localhost",
        kind: ChallengeKind::Www,
        credentials: None,
    };
    auth.authenticate(&request, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(get("voxline_auth_decisions_total outcome=challenged"), 1);

    auth.store().close().await;
    auth.store().clear_cache();
    for _ in 0..3 {
        let err = auth.store().lookup("alice", "localhost").await.unwrap_err();
        assert!(matches!(err, AuthError::StoreUnavailable(_)));
    }
    assert_eq!(
        get("voxline_auth_store_unavailable_total operation=lookup"),
        3
    );
}
