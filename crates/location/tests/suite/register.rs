//! Registration semantics: matching, ordering, removal, part of the shared suite (see `mod.rs`).
#![allow(clippy::unwrap_used)]

use super::*;

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
