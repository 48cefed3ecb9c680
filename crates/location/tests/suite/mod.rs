//! The semantic test suite every backend must pass. Each case takes a fresh
//! store; `location_suite!` turns every case into a `#[tokio::test]`, and
//! `run_all` runs them in sequence against one factory (for the cluster).
#![allow(dead_code, clippy::unwrap_used)]

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use voxline_location::*;

/// Keeps whatever the store needs alive (a redis-server, a temp dir).
pub type Guard = Box<dyn Any + Send>;
/// Builds a fresh, empty store with the given limits.
pub type Factory = fn(Limits) -> Pin<Box<dyn Future<Output = (LocationStore, Guard)> + Send>>;

pub fn now() -> Timestamp {
    Timestamp::from_secs(Timestamp::now().as_secs())
}

pub fn source() -> Source {
    Source {
        transport: Transport::Udp,
        remote: "198.51.100.7:40123".parse().unwrap(),
        local: "192.0.2.1:5060".parse().unwrap(),
    }
}

pub fn update(call_id: &str, cseq: u32, contacts: Vec<ContactUpdate>) -> Update {
    Update {
        call_id: call_id.into(),
        cseq,
        source: source(),
        path: vec![],
        user_agent: None,
        nat: false,
        contacts: Contacts::List(contacts),
    }
}

pub fn contact(uri: &str, expires: u32, q: u16) -> ContactUpdate {
    ContactUpdate {
        q,
        ..ContactUpdate::new(uri, expires)
    }
}

fn contacts_of(b: &[Binding]) -> Vec<&str> {
    b.iter().map(|b| b.contact.as_str()).collect()
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, by name.
        pub const CASES: &[(&str, fn(LocationStore, Factory) -> Pin<Box<dyn Future<Output = ()> + Send>>)] = &[
            $((stringify!($name), |s, f| Box::pin($name(s, f)))),*
        ];

        /// Generate one `#[tokio::test]` per case for `$factory`.
        #[macro_export]
        macro_rules! location_suite {
            ($factory:expr) => {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let f: suite::Factory = $factory;
                        let (store, _guard) = f(Limits::default()).await;
                        suite::$name(store, f).await;
                    }
                )*
            };
        }
    };
}

cases!(
    register_lookup_keeps_every_field,
    refresh_requires_higher_cseq_for_same_call_id,
    new_call_id_replaces_equivalent_contact,
    lookup_orders_by_q_then_recency,
    expires_zero_and_star_remove,
    star_with_stale_cseq_is_refused,
    instance_and_reg_id_matching,
    max_contacts_refuse_and_drop_oldest,
    expiry_filters_and_expire_reports,
    remove_aor_count_and_list,
    replication_is_idempotent_and_ordered,
    subscription_sees_changes,
    invalid_input_is_refused,
);

/// Run every case in sequence, each with a fresh store from `factory`.
pub async fn run_all(factory: Factory) {
    for (name, case) in CASES {
        eprintln!("suite case {name}");
        let (store, guard) = factory(Limits::default()).await;
        case(store, factory).await;
        drop(guard);
    }
}

pub async fn register_lookup_keeps_every_field(store: LocationStore, _: Factory) {
    let t = now();
    let long_ua = "UA/".to_string() + &"x".repeat(300);
    let mut u = update(
        "cid-1@host",
        1,
        vec![ContactUpdate {
            uri: "sip:Alice@198.51.100.7:40123;transport=UDP;rinstance=abc".into(),
            expires: 3600,
            q: 700,
            instance: Some("\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"".into()),
            reg_id: Some(1),
            params:
                ";+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1;ob"
                    .into(),
        }],
    );
    u.path = vec![
        "<sip:edge1.example.net;lr>".into(),
        "<sip:[2001:db8::1]:5070;lr>".into(),
    ];
    u.user_agent = Some(long_ua);
    u.nat = true;
    u.source.transport = Transport::Tls;
    let applied = store.apply("alice@example.com", &u, t).await.unwrap();
    assert_eq!(applied.bindings.len(), 1);
    assert_eq!(applied.changes.len(), 1);
    assert!(
        matches!(&applied.changes[0].kind, ChangeKind::Upsert(b) if b.contact.starts_with("sip:Alice@"))
    );
    let got = store.lookup("alice@example.com", t).await.unwrap();
    assert_eq!(got, applied.bindings);
    let b = &got[0];
    assert_eq!(
        b.contact,
        "sip:Alice@198.51.100.7:40123;transport=UDP;rinstance=abc"
    );
    assert_eq!(b.expires, t.add_secs(3600));
    assert_eq!(b.expires_in(t), 3600);
    assert_eq!(b.q, 700);
    assert_eq!((b.call_id.as_str(), b.cseq), ("cid-1@host", 1));
    assert_eq!(b.source, u.source);
    assert_eq!(b.path, u.path);
    assert_eq!(b.reg_id, Some(1));
    assert!(b.params.ends_with(";ob"));
    assert_eq!(b.user_agent.as_ref().unwrap().len(), 128);
    assert_eq!(b.registered_at, t);
    assert!(b.nat);
    assert!(store.lookup("bob@example.com", t).await.unwrap().is_empty());
}

pub async fn refresh_requires_higher_cseq_for_same_call_id(store: LocationStore, _: Factory) {
    let t = now();
    let aor = "u1@example.com";
    store
        .apply(
            aor,
            &update("c1", 10, vec![contact("sip:u1@10.0.0.1", 60, 1000)]),
            t,
        )
        .await
        .unwrap();
    for bad in [10, 9] {
        let e = store
            .apply(
                aor,
                &update("c1", bad, vec![contact("sip:u1@10.0.0.1", 3600, 1000)]),
                t.add_secs(1),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, LocationError::OutOfOrder { cseq, stored_cseq: 10 } if cseq == bad),
            "{e:?}"
        );
    }
    // The refused requests changed nothing.
    let b = store.lookup(aor, t).await.unwrap();
    assert_eq!((b[0].cseq, b[0].expires), (10, t.add_secs(60)));
    let a = store
        .apply(
            aor,
            &update("c1", 11, vec![contact("sip:u1@10.0.0.1", 3600, 1000)]),
            t.add_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(a.bindings.len(), 1);
    assert_eq!(
        (a.bindings[0].cseq, a.bindings[0].expires),
        (11, t.add_secs(3602))
    );
    // A refused request with several contacts is refused as a whole.
    let e = store
        .apply(
            aor,
            &update(
                "c1",
                11,
                vec![
                    contact("sip:new@10.0.0.9", 60, 1000),
                    contact("sip:u1@10.0.0.1", 60, 1000),
                ],
            ),
            t.add_secs(3),
        )
        .await;
    assert!(matches!(e, Err(LocationError::OutOfOrder { .. })));
    assert_eq!(store.lookup(aor, t.add_secs(3)).await.unwrap().len(), 1);
}

pub async fn new_call_id_replaces_equivalent_contact(store: LocationStore, _: Factory) {
    let t = now();
    let aor = "u2@example.com";
    store
        .apply(
            aor,
            &update(
                "old",
                50,
                vec![contact(
                    "sip:u2@Host.Example.com:5060;transport=tcp",
                    60,
                    1000,
                )],
            ),
            t,
        )
        .await
        .unwrap();
    // Lower CSeq but a different Call-ID (phone rebooted): replaces.
    let a = store
        .apply(
            aor,
            &update(
                "new",
                1,
                vec![contact(
                    "sip:u2@host.example.COM:5060;TRANSPORT=TCP;x=y",
                    120,
                    1000,
                )],
            ),
            t.add_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(a.bindings.len(), 1);
    let b = &a.bindings[0];
    assert_eq!(b.contact, "sip:u2@host.example.COM:5060;TRANSPORT=TCP;x=y");
    assert_eq!((b.call_id.as_str(), b.cseq), ("new", 1));
    // Not equivalent (port differs): a second binding.
    let a = store
        .apply(
            aor,
            &update(
                "new",
                2,
                vec![contact("sip:u2@host.example.com;transport=tcp", 120, 1000)],
            ),
            t.add_secs(6),
        )
        .await
        .unwrap();
    assert_eq!(a.bindings.len(), 2);
}

pub async fn lookup_orders_by_q_then_recency(store: LocationStore, _: Factory) {
    let t = now();
    let aor = "u3@example.com";
    store
        .apply(
            aor,
            &update("a", 1, vec![contact("sip:low@10.0.0.1", 600, 100)]),
            t,
        )
        .await
        .unwrap();
    store
        .apply(
            aor,
            &update("b", 1, vec![contact("sip:older@10.0.0.2", 600, 900)]),
            t.add_secs(1),
        )
        .await
        .unwrap();
    store
        .apply(
            aor,
            &update("c", 1, vec![contact("sip:newer@10.0.0.3", 600, 900)]),
            t.add_secs(2),
        )
        .await
        .unwrap();
    let a = store
        .apply(
            aor,
            &update("d", 1, vec![contact("sip:mid@10.0.0.4", 600, 500)]),
            t.add_secs(3),
        )
        .await
        .unwrap();
    let want = [
        "sip:newer@10.0.0.3",
        "sip:older@10.0.0.2",
        "sip:mid@10.0.0.4",
        "sip:low@10.0.0.1",
    ];
    assert_eq!(contacts_of(&a.bindings), want);
    assert_eq!(
        contacts_of(&store.lookup(aor, t.add_secs(3)).await.unwrap()),
        want
    );
}

pub async fn expires_zero_and_star_remove(store: LocationStore, _: Factory) {
    let t = now();
    let aor = "u4@example.com";
    store
        .apply(
            aor,
            &update(
                "c",
                1,
                vec![
                    contact("sip:a@10.0.0.1", 600, 1000),
                    contact("sip:b@10.0.0.2", 600, 1000),
                ],
            ),
            t,
        )
        .await
        .unwrap();
    let a = store
        .apply(
            aor,
            &update("c", 2, vec![contact("sip:a@10.0.0.1", 0, 1000)]),
            t,
        )
        .await
        .unwrap();
    assert_eq!(contacts_of(&a.bindings), ["sip:b@10.0.0.2"]);
    assert!(matches!(
        &a.changes[..],
        [LocationChange {
            kind: ChangeKind::Remove {
                reason: RemoveReason::Unregistered,
                ..
            },
            ..
        }]
    ));
    // Removing an unknown contact is fine and changes nothing.
    let a = store
        .apply(
            aor,
            &update("c", 3, vec![contact("sip:zzz@10.0.0.9", 0, 1000)]),
            t,
        )
        .await
        .unwrap();
    assert!(a.changes.is_empty());
    store
        .apply(
            aor,
            &update("other", 1, vec![contact("sip:c@10.0.0.3", 600, 1000)]),
            t,
        )
        .await
        .unwrap();
    let mut star = update("other", 2, vec![]);
    star.contacts = Contacts::RemoveAll;
    let a = store.apply(aor, &star, t).await.unwrap();
    assert!(a.bindings.is_empty());
    assert_eq!(a.changes.len(), 2);
    assert!(store.lookup(aor, t).await.unwrap().is_empty());
    assert_eq!(store.count(t).await.unwrap(), Counts::default());
}

pub async fn star_with_stale_cseq_is_refused(store: LocationStore, _: Factory) {
    let t = now();
    let aor = "u5@example.com";
    store
        .apply(
            aor,
            &update("c", 7, vec![contact("sip:a@10.0.0.1", 600, 1000)]),
            t,
        )
        .await
        .unwrap();
    let mut star = update("c", 7, vec![]);
    star.contacts = Contacts::RemoveAll;
    assert!(matches!(
        store.apply(aor, &star, t).await,
        Err(LocationError::OutOfOrder { stored_cseq: 7, .. })
    ));
    assert_eq!(store.lookup(aor, t).await.unwrap().len(), 1);
    // Another Call-ID may remove all.
    star.call_id = "d".into();
    star.cseq = 1;
    assert!(
        store
            .apply(aor, &star, t)
            .await
            .unwrap()
            .bindings
            .is_empty()
    );
}

pub async fn instance_and_reg_id_matching(store: LocationStore, _: Factory) {
    let t = now();
    let aor = "u6@example.com";
    let inst = "\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";
    let with = |uri: &str, reg: u32| ContactUpdate {
        instance: Some(inst.into()),
        reg_id: Some(reg),
        ..ContactUpdate::new(uri, 600)
    };
    store
        .apply(
            aor,
            &update("c1", 1, vec![with("sip:u6@10.0.0.1:5060", 1)]),
            t,
        )
        .await
        .unwrap();
    // Same instance and reg-id from a new address (new flow): replaces.
    let a = store
        .apply(
            aor,
            &update("c2", 1, vec![with("sip:u6@10.9.9.9:6000", 1)]),
            t.add_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(contacts_of(&a.bindings), ["sip:u6@10.9.9.9:6000"]);
    // Same instance, another reg-id (second flow): a separate binding.
    let a = store
        .apply(
            aor,
            &update("c2", 2, vec![with("sip:u6@10.8.8.8:6000", 2)]),
            t.add_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(a.bindings.len(), 2);
    // Unregister flow 1 by instance only.
    let a = store
        .apply(
            aor,
            &update(
                "c2",
                3,
                vec![ContactUpdate {
                    expires: 0,
                    ..with("sip:whatever@1.2.3.4", 1)
                }],
            ),
            t.add_secs(3),
        )
        .await
        .unwrap();
    assert_eq!(contacts_of(&a.bindings), ["sip:u6@10.8.8.8:6000"]);
}

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
    assert_eq!(store.count(t).await.unwrap(), Counts::default());
}
