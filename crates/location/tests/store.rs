//! `LocationStore` opened from configuration, with its maintenance task
//! doing expiry, snapshots and fsyncs in real time.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use voxline_location::*;

fn update(uri: &str, expires: u32) -> Update {
    Update {
        call_id: "c".into(),
        cseq: 1,
        source: Source {
            transport: Transport::Tcp,
            remote: "[2001:db8::5]:50000".parse().unwrap(),
            local: "[2001:db8::1]:5060".parse().unwrap(),
        },
        path: vec![],
        user_agent: None,
        nat: false,
        contacts: Contacts::List(vec![ContactUpdate::new(uri, expires)]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_expires_snapshots_and_a_reopen_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config: LocationConfig = toml::from_str(&format!(
        r#"
        backend = "memory"
        data_dir = "{}"
        snapshot_interval_secs = 1
        fsync = "interval"
        fsync_interval_ms = 20
        expire_interval_ms = 50
        max_contacts = 3
        "#,
        dir.path().display()
    ))
    .unwrap();
    let store = LocationStore::open(&config).await.unwrap();
    assert!(matches!(store, LocationStore::Memory(_)));
    let mut feed = store.subscribe();
    let task = store.spawn_maintenance(&config);
    let now = Timestamp::now();
    store
        .apply(
            "short@x",
            &update("sip:s@[2001:db8::5]:50000;transport=tcp", 1),
            now,
        )
        .await
        .unwrap();
    store
        .apply(
            "long@x",
            &update("sip:l@[2001:db8::5]:50001;transport=tcp", 3600),
            now,
        )
        .await
        .unwrap();
    // The maintenance task reports the expiry on the feed by itself.
    let expired = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let c = feed.recv().await.unwrap();
            if matches!(
                c.kind,
                ChangeKind::Remove {
                    reason: RemoveReason::Expired,
                    ..
                }
            ) {
                return c;
            }
        }
    })
    .await
    .expect("expiry not reported within 5 s");
    assert_eq!(expired.aor, "short@x");
    assert_eq!(
        store.count(Timestamp::now()).await.unwrap(),
        Counts {
            aors: 1,
            bindings: 1
        }
    );
    // Wait (bounded) for a periodic snapshot: the log rotates, so a second
    // snapshot file number appears.
    let first = snapshots(dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while snapshots(dir.path()) == first {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    drop(store);
    let reopened = LocationStore::open(&config).await.unwrap();
    let got = reopened.lookup("long@x", Timestamp::now()).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].source.remote, "[2001:db8::5]:50000".parse().unwrap());
    assert!(
        reopened
            .lookup("short@x", Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
}

fn snapshots(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn bad_backend_urls_are_config_errors() {
    for backend in ["mysql://db", "redis+cluster://", "memoryy"] {
        let config = LocationConfig {
            backend: backend.into(),
            ..LocationConfig::default()
        };
        let r = LocationStore::open(&config).await;
        assert!(matches!(r, Err(LocationError::Config(_))), "{backend}");
    }
    let config = LocationConfig {
        shards: 3,
        ..LocationConfig::default()
    };
    assert!(matches!(
        LocationStore::open(&config).await,
        Err(LocationError::Config(ConfigError::Shards(3)))
    ));
}
