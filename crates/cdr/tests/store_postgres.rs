//! The store suite against a real PostgreSQL cluster started by the test
//! (`initdb` + `pg_ctl` on a free loopback port, password auth). Skipped
//! with a message when PostgreSQL is not installed.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::time::{Duration, Instant};

use common::servers::PgCluster;
use voxline_cdr::{CdrError, CdrStore, Dialect, StoreOptions, TimeRange};

#[tokio::test]
async fn suite_on_postgres() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let store = CdrStore::open(&cluster.url()).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Postgres);
    common::suite(&store).await;
    let again = CdrStore::open(&cluster.url()).await.unwrap();
    assert_eq!(again.count(TimeRange::all()).await.unwrap(), 2515);
}

#[tokio::test]
async fn stopped_server_is_unavailable_quickly_then_back() {
    let Some(mut cluster) = PgCluster::start() else {
        return;
    };
    let options = StoreOptions {
        timeout: Duration::from_millis(500),
        max_connections: 2,
    };
    let store = CdrStore::open_with(&cluster.url(), &options).await.unwrap();
    store
        .insert(&common::records(1, 5, common::DAY))
        .await
        .unwrap();
    cluster.stop();
    let started = Instant::now();
    let err = store
        .insert(&common::records(2, 5, common::DAY))
        .await
        .unwrap_err();
    assert!(matches!(err, CdrError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(store.ping().await.is_err());
    cluster.restart();
    // The pool reconnects (a connection that died with the server may fail once).
    let mut ok = false;
    for _ in 0..3 {
        if store.ping().await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok);
    assert_eq!(store.count(TimeRange::all()).await.unwrap(), 5);
}

#[tokio::test]
async fn unreachable_server_fails_to_open_quickly() {
    let options = StoreOptions {
        timeout: Duration::from_millis(300),
        max_connections: 1,
    };
    let started = Instant::now();
    let err = CdrStore::open_with(&common::refused_postgres_url(), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, CdrError::Open(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
