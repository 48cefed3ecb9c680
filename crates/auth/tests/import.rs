//! Bulk provisioning (`SubscriberStore::import`) on a real SQLite file.
#![allow(clippy::unwrap_used)] // tests may unwrap

use voxline_auth::{
    AuthError, Imported, NewSubscriber, StoreOptions, StoredCredentials, SubscriberStore,
};

fn entry<'a>(username: &'a str, domain: &'a str, password: &'a str) -> NewSubscriber<'a> {
    NewSubscriber {
        username,
        domain,
        password,
    }
}

#[tokio::test]
async fn imports_in_batches_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("voxline.db").display());
    let store = SubscriberStore::open_with(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.add("carol", "localhost", "old").await.unwrap();
    // A cached lookup must not survive the import.
    assert_eq!(
        store.lookup("carol", "localhost").await.unwrap(),
        Some(StoredCredentials::from_password(
            "carol",
            "localhost",
            "old"
        ))
    );

    let names: Vec<String> = (0..2500).map(|i| format!("u{i:08}")).collect();
    let mut batch: Vec<NewSubscriber<'_>> = names
        .iter()
        .map(|n| entry(n, "LocalHost", "secret"))
        .collect();
    batch.push(entry("carol", "localhost", "new,with,commas"));
    let first = store.import(&batch).await.unwrap();
    assert_eq!(
        first,
        Imported {
            added: 2500,
            updated: 1
        }
    );
    assert_eq!(
        store.lookup("u00001234", "localhost").await.unwrap(),
        Some(StoredCredentials::from_password(
            "u00001234",
            "localhost",
            "secret"
        ))
    );
    assert_eq!(
        store.lookup("carol", "localhost").await.unwrap(),
        Some(StoredCredentials::from_password(
            "carol",
            "localhost",
            "new,with,commas"
        ))
    );

    // Again: nothing new, every password set.
    let again = store.import(&batch[..100]).await.unwrap();
    assert_eq!(
        again,
        Imported {
            added: 0,
            updated: 100
        }
    );
    assert_eq!(store.list(Some("localhost")).await.unwrap().len(), 2501);
    store.close().await;
}

#[tokio::test]
async fn an_invalid_entry_fails_the_batch_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("voxline.db").display());
    let store = SubscriberStore::open(&url).await.unwrap();
    let batch = [
        entry("dave", "localhost", "x"),
        entry("bad user", "localhost", "x"),
    ];
    assert!(matches!(
        store.import(&batch).await,
        Err(AuthError::InvalidUsername(_))
    ));
    let batch = [entry("dave", "localhost", "")];
    assert!(matches!(
        store.import(&batch).await,
        Err(AuthError::EmptyPassword)
    ));
    assert!(store.list(None).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn preload_fills_the_lookup_cache() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("voxline.db").display());
    let cached = SubscriberStore::open_with(
        &url,
        &StoreOptions {
            cache_ttl: std::time::Duration::from_secs(3600),
            cache_size: 1000,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let names: Vec<String> = (0..200).map(|i| format!("p{i}")).collect();
    let batch: Vec<NewSubscriber<'_>> = names.iter().map(|n| entry(n, "localhost", n)).collect();
    cached.import(&batch).await.unwrap();
    assert_eq!(cached.preload().await.unwrap(), 200);
    // Removed behind its back (another process, say): the preloaded
    // entries still answer until they expire.
    let other = SubscriberStore::open_with(
        &url,
        &StoreOptions {
            cache_size: 0,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    other.remove("p7", "localhost").await.unwrap();
    assert_eq!(other.lookup("p7", "localhost").await.unwrap(), None);
    assert_eq!(
        cached.lookup("p7", "localhost").await.unwrap(),
        Some(StoredCredentials::from_password("p7", "localhost", "p7"))
    );
    // Without a cache there is nothing to fill.
    assert_eq!(other.preload().await.unwrap(), 0);
    other.close().await;
    cached.close().await;
}
