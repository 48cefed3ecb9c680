//! The same store suite against a real PostgreSQL cluster started by the
//! test (`initdb` + `pg_ctl` on a free loopback port, password auth).
//! Skipped with a message when PostgreSQL is not installed.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::servers::PgCluster;
use voxline_auth::{AuthError, Dialect, StoreOptions, SubscriberStore};

#[tokio::test]
async fn suite_on_postgres() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let store = SubscriberStore::open(&cluster.url()).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Postgres);
    common::suite::provisioning(&store).await;
    let auth = common::suite::digest_auth(store);
    common::suite::digest_exchange(&auth).await;
    // A second open of a migrated database is fine.
    let again = SubscriberStore::open(&cluster.url()).await.unwrap();
    assert!(again.lookup("alice", "localhost").await.unwrap().is_some());
}

#[tokio::test]
async fn outage_is_reported_quickly_and_recovers() {
    let Some(mut cluster) = PgCluster::start() else {
        return;
    };
    let options = StoreOptions {
        timeout: Duration::from_millis(500),
        cache_ttl: Duration::ZERO,
        ..StoreOptions::default()
    };
    let store = SubscriberStore::open_with(&cluster.url(), &options)
        .await
        .unwrap();
    store.add("alice", "localhost", "secret").await.unwrap();
    let auth = common::suite::digest_auth(store);

    cluster.stop();
    let started = Instant::now();
    let err = auth.store().lookup("alice", "localhost").await.unwrap_err();
    assert!(matches!(err, AuthError::StoreUnavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Through the authenticator: an error (500/503), not a challenge.
    let first = auth
        .authenticate(&common::suite::register(None), SystemTime::now())
        .await
        .unwrap();
    let value = common::suite::answer(
        &first.challenge().unwrap().values,
        voxline_auth::Algorithm::Md5,
        "alice",
        "secret",
        1,
    );
    let credentials = voxline_auth::DigestCredentials::parse(&value).unwrap();
    let started = Instant::now();
    let err = auth
        .authenticate(
            &common::suite::register(Some(&credentials)),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::StoreUnavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Back up: the pool reconnects (allow one failed attempt on a
    // connection that died with the old server).
    cluster.restart();
    let mut outcome = None;
    for _ in 0..3 {
        outcome = Some(auth.store().lookup("alice", "localhost").await);
        if matches!(outcome, Some(Ok(_))) {
            break;
        }
    }
    assert!(matches!(outcome, Some(Ok(Some(_)))), "{outcome:?}");
    let decision = auth
        .authenticate(
            &common::suite::register(Some(&credentials)),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(decision.accepted().is_some(), "{decision:?}");
}

#[tokio::test]
async fn unreachable_server_fails_to_open_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = StoreOptions {
        timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    };
    let started = Instant::now();
    let url = format!("postgres://voxline:pw@127.0.0.1:{port}/voxline");
    let err = SubscriberStore::open_with(&url, &options)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Open(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
