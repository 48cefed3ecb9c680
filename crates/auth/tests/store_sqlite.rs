//! The subscriber store on real SQLite files.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::path::Path;
use std::time::Duration;

use voxline_auth::{AuthConfig, AuthError, Dialect, DigestAuth, StoreOptions, SubscriberStore};

fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("voxline.db").display())
}

#[tokio::test]
async fn suite_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    // The data directory does not exist yet: it is created.
    let data = dir.path().join("voxline-data");
    let store = SubscriberStore::open(&url(&data)).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Sqlite);
    common::suite::provisioning(&store).await;
    let auth = common::suite::digest_auth(store);
    common::suite::digest_exchange(&auth).await;
    auth.store().close().await;

    // WAL mode is recorded in the database header (bytes 18 and 19 = 2).
    let header = std::fs::read(data.join("voxline.db")).unwrap();
    assert_eq!((header[18], header[19]), (2, 2), "not in WAL mode");
}

#[tokio::test]
async fn passwords_are_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = SubscriberStore::open(&url(dir.path())).await.unwrap();
    let password = "Pa55-word-that-must-not-appear";
    store.add("alice", "localhost", password).await.unwrap();
    store.add("bob", "localhost", "x").await.unwrap();
    store
        .set_password("bob", "localhost", password)
        .await
        .unwrap();
    store.close().await;
    let mut seen = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "password found on disk"
        );
        seen += bytes.len();
    }
    assert!(seen > 0);
}

#[tokio::test]
async fn survives_reopen_and_is_shared_with_another_process_view() {
    let dir = tempfile::tempdir().unwrap();
    let no_cache = StoreOptions {
        cache_ttl: Duration::ZERO,
        ..StoreOptions::default()
    };
    // The node and the CLI open the same file at the same time.
    let node = SubscriberStore::open_with(&url(dir.path()), &no_cache)
        .await
        .unwrap();
    let cli = SubscriberStore::open(&url(dir.path())).await.unwrap();
    assert_eq!(node.lookup("alice", "localhost").await.unwrap(), None);
    cli.add("alice", "localhost", "secret").await.unwrap();
    assert!(node.lookup("alice", "localhost").await.unwrap().is_some());
    cli.close().await;
    node.close().await;

    // Migrations run again without harm; the data is still there.
    let again = SubscriberStore::open(&url(dir.path())).await.unwrap();
    assert!(again.lookup("alice", "localhost").await.unwrap().is_some());
    assert_eq!(again.list(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn cached_lookups_see_other_writers_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let node = SubscriberStore::open(&url(dir.path())).await.unwrap();
    let cli = SubscriberStore::open(&url(dir.path())).await.unwrap();
    assert_eq!(node.lookup("alice", "localhost").await.unwrap(), None);
    cli.add("alice", "localhost", "secret").await.unwrap();
    // Still the cached miss (the cache is per process)...
    assert_eq!(node.lookup("alice", "localhost").await.unwrap(), None);
    // ...until it is dropped (what the TTL does).
    node.clear_cache();
    assert!(node.lookup("alice", "localhost").await.unwrap().is_some());
}

#[tokio::test]
async fn default_config_uses_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("voxline-data");
    let auth = DigestAuth::from_config(&AuthConfig::default(), &data)
        .await
        .unwrap();
    common::suite::digest_exchange(&auth).await;
    assert!(data.join("voxline.db").is_file());
    assert!(data.join("auth-secret").is_file());
}

#[tokio::test]
async fn in_memory_database() {
    let store = SubscriberStore::open("sqlite::memory:").await.unwrap();
    common::suite::provisioning(&store).await;
}

#[tokio::test]
async fn bad_urls_and_paths_fail_clearly() {
    assert!(matches!(
        SubscriberStore::open("redis://127.0.0.1/0").await,
        Err(AuthError::UnsupportedDatabaseUrl(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    // The "data directory" is a file.
    let err = SubscriberStore::open(&url(&file)).await.unwrap_err();
    assert!(matches!(err, AuthError::Open(_)), "{err:?}");
    let config = AuthConfig {
        nonce_lifetime_secs: 0,
        ..AuthConfig::default()
    };
    assert!(matches!(
        DigestAuth::from_config(&config, dir.path()).await,
        Err(AuthError::Config(_))
    ));
}

#[tokio::test]
async fn closed_pool_is_unavailable_not_a_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        cache_ttl: Duration::ZERO,
        ..StoreOptions::default()
    };
    let store = SubscriberStore::open_with(&url(dir.path()), &options)
        .await
        .unwrap();
    store.add("alice", "localhost", "secret").await.unwrap();
    store.close().await;
    let started = std::time::Instant::now();
    let err = store.lookup("alice", "localhost").await.unwrap_err();
    assert!(matches!(err, AuthError::StoreUnavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        store.add("bob", "localhost", "x").await,
        Err(AuthError::StoreUnavailable(_))
    ));
}
