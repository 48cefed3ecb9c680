//! Limits, expiry, admin listing, replication and the change feed, part of the shared suite (see `mod.rs`).
#![allow(clippy::unwrap_used)]

use super::*;

pub async fn max_contacts_refuse_and_drop_oldest(_store: LocationStore, factory: Factory) {
    let t = now();
    let aor = "u7@example.com";
    let (store, _g) = factory(Limits {
        max_contacts: 2,
        policy: MaxContactsPolicy::Refuse,
    })
    .await;
    store
        .apply(
            aor,
            &update("a", 1, vec![contact("sip:1@10.0.0.1", 600, 1000)]),
            t,
        )
        .await
        .unwrap();
    store
        .apply(
            aor,
            &update("b", 1, vec![contact("sip:2@10.0.0.2", 600, 1000)]),
            t.add_secs(1),
        )
        .await
        .unwrap();
    let e = store
        .apply(
            aor,
            &update("c", 1, vec![contact("sip:3@10.0.0.3", 600, 1000)]),
            t.add_secs(2),
        )
        .await;
    assert!(
        matches!(e, Err(LocationError::TooManyContacts { limit: 2 })),
        "{e:?}"
    );
    // Refreshing an existing one is still fine.
    store
        .apply(
            aor,
            &update("a", 2, vec![contact("sip:1@10.0.0.1", 600, 1000)]),
            t.add_secs(3),
        )
        .await
        .unwrap();
    assert_eq!(store.lookup(aor, t.add_secs(3)).await.unwrap().len(), 2);

    let (store, _g2) = factory(Limits {
        max_contacts: 2,
        policy: MaxContactsPolicy::DropOldest,
    })
    .await;
    store
        .apply(
            aor,
            &update("a", 1, vec![contact("sip:1@10.0.0.1", 600, 1000)]),
            t,
        )
        .await
        .unwrap();
    store
        .apply(
            aor,
            &update("b", 1, vec![contact("sip:2@10.0.0.2", 600, 1000)]),
            t.add_secs(1),
        )
        .await
        .unwrap();
    let a = store
        .apply(
            aor,
            &update("c", 1, vec![contact("sip:3@10.0.0.3", 600, 1000)]),
            t.add_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(
        contacts_of(&a.bindings),
        ["sip:3@10.0.0.3", "sip:2@10.0.0.2"]
    );
    assert!(a.changes.iter().any(|c| matches!(
        c.kind,
        ChangeKind::Remove {
            reason: RemoveReason::Dropped,
            ..
        }
    )));
}

pub async fn expiry_filters_and_expire_reports(store: LocationStore, _: Factory) {
    let t = now();
    store
        .apply(
            "e1@example.com",
            &update(
                "c",
                1,
                vec![
                    contact("sip:short@10.0.0.1", 30, 1000),
                    contact("sip:long@10.0.0.2", 90, 1000),
                ],
            ),
            t,
        )
        .await
        .unwrap();
    store
        .apply(
            "e2@example.com",
            &update("c", 1, vec![contact("sip:e2@10.0.0.3", 30, 1000)]),
            t,
        )
        .await
        .unwrap();
    assert_eq!(
        store.count(t).await.unwrap(),
        Counts {
            aors: 2,
            bindings: 3
        }
    );
    // Nothing is due yet.
    assert!(store.expire(t.add_secs(29)).await.unwrap().is_empty());
    // Past expiry: lookup filters even before the timer ran.
    let later = t.add_secs(31);
    assert_eq!(
        contacts_of(&store.lookup("e1@example.com", later).await.unwrap()),
        ["sip:long@10.0.0.2"]
    );
    let mut expired = store.expire(later).await.unwrap();
    expired.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(expired.len(), 2, "{expired:?}");
    assert!(expired.iter().all(|c| matches!(
        c.kind,
        ChangeKind::Remove {
            reason: RemoveReason::Expired,
            ..
        }
    )));
    assert!(
        store.expire(later).await.unwrap().is_empty(),
        "expiry is reported once"
    );
    assert_eq!(
        store.count(later).await.unwrap(),
        Counts {
            aors: 1,
            bindings: 1
        }
    );
    // A refresh moves the expiry: the old timer must not remove it.
    store
        .apply(
            "e1@example.com",
            &update("c", 2, vec![contact("sip:long@10.0.0.2", 600, 1000)]),
            later,
        )
        .await
        .unwrap();
    assert!(store.expire(t.add_secs(95)).await.unwrap().is_empty());
    assert_eq!(
        store
            .lookup("e1@example.com", t.add_secs(95))
            .await
            .unwrap()
            .len(),
        1
    );
    let gone = store.expire(later.add_secs(601)).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(
        store.count(later.add_secs(601)).await.unwrap(),
        Counts::default()
    );
}

pub async fn remove_aor_count_and_list(store: LocationStore, _: Factory) {
    let t = now();
    let n = 57;
    for i in 0..n {
        let aor = format!("l{i:03}@example.com");
        let contacts = (0..(1 + i % 2))
            .map(|k| contact(&format!("sip:l{i}@10.0.{k}.1"), 600, 1000))
            .collect();
        store
            .apply(&aor, &update("c", 1, contacts), t)
            .await
            .unwrap();
    }
    let bindings = (0..n).map(|i| 1 + i % 2).sum::<u64>();
    assert_eq!(store.count(t).await.unwrap(), Counts { aors: n, bindings });
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page = store.list(cursor.as_deref(), 10, t).await.unwrap();
        seen.extend(page.entries.into_iter().map(|(a, b)| (a, b.len())));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "listing did not finish");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len() as u64, n);
    assert!(seen.iter().all(|(a, k)| a.starts_with('l') && *k >= 1));
    let removed = store.remove_aor("l001@example.com", t).await.unwrap();
    assert_eq!(removed.len(), 2);
    assert!(removed.iter().all(|c| matches!(
        c.kind,
        ChangeKind::Remove {
            reason: RemoveReason::Admin,
            ..
        }
    )));
    assert!(
        store
            .lookup("l001@example.com", t)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .remove_aor("l001@example.com", t)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.count(t).await.unwrap(),
        Counts {
            aors: n - 1,
            bindings: bindings - 2
        }
    );
}

pub async fn replication_is_idempotent_and_ordered(site_a: LocationStore, factory: Factory) {
    let (site_b, _g) = factory(Limits::default()).await;
    let t = now();
    let aor = "r1@example.com";
    let mut feed = Vec::new();
    feed.extend(
        site_a
            .apply(
                aor,
                &update(
                    "c",
                    1,
                    vec![
                        contact("sip:r1@10.0.0.1", 600, 1000),
                        contact("sip:r1@10.0.0.2", 600, 500),
                    ],
                ),
                t,
            )
            .await
            .unwrap()
            .changes,
    );
    feed.extend(
        site_a
            .apply(
                aor,
                &update("c", 2, vec![contact("sip:r1@10.0.0.1", 900, 1000)]),
                t.add_secs(1),
            )
            .await
            .unwrap()
            .changes,
    );
    feed.extend(
        site_a
            .apply(
                aor,
                &update("c", 3, vec![contact("sip:r1@10.0.0.2", 0, 500)]),
                t.add_secs(2),
            )
            .await
            .unwrap()
            .changes,
    );
    assert_eq!(feed.len(), 4);
    for c in &feed {
        assert!(site_b.apply_replicated(c, t.add_secs(2)).await.unwrap());
    }
    let want = site_a.lookup(aor, t.add_secs(2)).await.unwrap();
    assert_eq!(site_b.lookup(aor, t.add_secs(2)).await.unwrap(), want);
    // Replaying everything (duplicates, any order) changes nothing.
    for c in feed.iter().rev().chain(feed.iter()) {
        assert!(
            !site_b.apply_replicated(c, t.add_secs(2)).await.unwrap(),
            "{c:?} applied twice"
        );
    }
    assert_eq!(site_b.lookup(aor, t.add_secs(2)).await.unwrap(), want);
    // An older upsert arriving late is ignored.
    let older = feed[0].clone();
    assert!(
        !site_b
            .apply_replicated(&older, t.add_secs(2))
            .await
            .unwrap()
    );
    // A newer write on site B wins over a stale one from A.
    let b_changes = site_b
        .apply(
            aor,
            &update("phone-b", 1, vec![contact("sip:r1@10.0.0.1", 300, 1000)]),
            t.add_secs(5),
        )
        .await
        .unwrap()
        .changes;
    assert!(
        !site_b
            .apply_replicated(&feed[2], t.add_secs(5))
            .await
            .unwrap()
    );
    assert!(
        site_a
            .apply_replicated(&b_changes[0], t.add_secs(5))
            .await
            .unwrap()
    );
    assert_eq!(
        site_a.lookup(aor, t.add_secs(5)).await.unwrap(),
        site_b.lookup(aor, t.add_secs(5)).await.unwrap()
    );
    // A replicated removal covering the stored version removes it.
    let removal = site_b.remove_aor(aor, t.add_secs(6)).await.unwrap();
    assert!(
        site_a
            .apply_replicated(&removal[0], t.add_secs(6))
            .await
            .unwrap()
    );
    assert!(site_a.lookup(aor, t.add_secs(6)).await.unwrap().is_empty());
}

pub async fn subscription_sees_changes(store: LocationStore, _: Factory) {
    let mut rx = store.subscribe();
    let t = now();
    let applied = store
        .apply(
            "s1@example.com",
            &update("c", 1, vec![contact("sip:s1@10.0.0.1", 30, 1000)]),
            t,
        )
        .await
        .unwrap();
    let got = rx.recv().await.unwrap();
    assert_eq!(got, applied.changes[0]);
    assert_eq!(got.origin, ChangeOrigin::Local);
    store.expire(t.add_secs(31)).await.unwrap();
    let got = rx.recv().await.unwrap();
    assert!(matches!(
        got.kind,
        ChangeKind::Remove {
            reason: RemoveReason::Expired,
            ..
        }
    ));
    assert!(
        store
            .apply_replicated(&applied.changes[0], t)
            .await
            .unwrap()
    );
    assert_eq!(rx.recv().await.unwrap().origin, ChangeOrigin::Replicated);
}

pub async fn invalid_input_is_refused(store: LocationStore, _: Factory) {
    let t = now();
    let e = store
        .apply("", &update("c", 1, vec![contact("sip:a@h", 60, 1000)]), t)
        .await;
    assert!(matches!(
        e,
        Err(LocationError::Invalid(InvalidInput::EmptyAor))
    ));
    let e = store
        .apply(
            "x@y",
            &update("c", 1, vec![contact("sip:a@h", 60, 1001)]),
            t,
        )
        .await;
    assert!(matches!(
        e,
        Err(LocationError::Invalid(InvalidInput::QOutOfRange))
    ));
    let e = store
        .apply("x@y", &update("c", 1, vec![contact("  ", 60, 1000)]), t)
        .await;
    assert!(matches!(
        e,
        Err(LocationError::Invalid(InvalidInput::EmptyContact))
    ));
    let e = store
        .apply(
            "x@y",
            &update(&"c".repeat(5000), 1, vec![contact("sip:a@h", 60, 1000)]),
            t,
        )
        .await;
    assert!(matches!(
        e,
        Err(LocationError::Invalid(InvalidInput::TooLong(_)))
    ));
    assert!(matches!(
        store.remove_aor("", t).await,
        Err(LocationError::Invalid(InvalidInput::EmptyAor))
    ));
    assert_eq!(store.count(t).await.unwrap(), Counts::default());
}
