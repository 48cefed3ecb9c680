//! The store suite against real SQLite files, and the CDR table sharing
//! its database file with the subscriber store.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use voxline_cdr::{CdrConfig, CdrError, CdrStore, Dialect, TimeRange};

#[tokio::test]
async fn suite_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("nested/voxline.db").display()
    );
    let store = CdrStore::open(&url).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Sqlite);
    common::suite(&store).await;
    store.close().await;
    // Reopened (migrations already applied): everything is still there.
    let again = CdrStore::open(&url).await.unwrap();
    assert_eq!(again.count(TimeRange::all()).await.unwrap(), 2515);
}

#[tokio::test]
async fn shares_the_node_database_with_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let config = CdrConfig::default();
    let url = config.database_url(dir.path());
    let subscribers = voxline_auth::SubscriberStore::open(&url).await.unwrap();
    subscribers
        .add("alice", "localhost", "secret")
        .await
        .unwrap();
    let cdrs = CdrStore::from_config(&config, dir.path()).await.unwrap();
    cdrs.insert(&common::records(1, 3, common::DAY))
        .await
        .unwrap();
    // Both schemas live side by side; opening again migrates nothing twice.
    let subscribers = voxline_auth::SubscriberStore::open(&url).await.unwrap();
    assert!(
        subscribers
            .lookup("alice", "localhost")
            .await
            .unwrap()
            .is_some()
    );
    let cdrs = CdrStore::open(&url).await.unwrap();
    assert_eq!(cdrs.count(TimeRange::all()).await.unwrap(), 3);
    assert!(dir.path().join("voxline.db").is_file());
}

#[tokio::test]
async fn unusable_urls_and_configs_are_refused() {
    assert!(matches!(
        CdrStore::open("redis://127.0.0.1").await,
        Err(CdrError::UnsupportedDatabaseUrl(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let bad = CdrConfig {
        batch_size: 0,
        ..CdrConfig::default()
    };
    assert!(matches!(
        CdrStore::from_config(&bad, dir.path()).await,
        Err(CdrError::Config(_))
    ));
    // A database path below a regular file cannot be created.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let url = format!("sqlite://{}", file.join("voxline.db").display());
    assert!(matches!(CdrStore::open(&url).await, Err(CdrError::Open(_))));
}
