#![allow(clippy::unwrap_used)]

use super::*;
use crate::binding::{ContactUpdate, Source, Transport};

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + s)
}

fn upd(call_id: &str, cseq: u32, contacts: Vec<ContactUpdate>) -> Update {
    Update {
        call_id: call_id.into(),
        cseq,
        source: Source {
            transport: Transport::Tcp,
            remote: "10.1.1.1:5060".parse().unwrap(),
            local: "10.0.0.1:5060".parse().unwrap(),
        },
        path: vec![],
        user_agent: None,
        nat: false,
        contacts: Contacts::List(contacts),
    }
}

#[test]
fn repeated_contact_in_one_request_is_not_out_of_order() {
    let mut set = BindingSet::default();
    let u = upd(
        "c",
        1,
        vec![
            ContactUpdate::new("sip:a@h", 60),
            ContactUpdate::new("sip:a@H", 120),
        ],
    );
    let changes = apply_update("x@y", &mut set, &u, t(0), Limits::default()).unwrap();
    assert_eq!(set.bindings.len(), 1);
    assert_eq!(set.bindings[0].expires, t(120));
    assert_eq!(changes.len(), 1, "one upsert per binding: {changes:?}");
    assert!(matches!(&changes[0].kind, ChangeKind::Upsert(b) if b.expires == t(120)));
}

#[test]
fn gaining_an_instance_changes_the_key_and_reports_the_replacement() {
    let mut set = BindingSet::default();
    apply_update(
        "x@y",
        &mut set,
        &upd("c", 1, vec![ContactUpdate::new("sip:a@h", 60)]),
        t(0),
        Limits::default(),
    )
    .unwrap();
    let with = ContactUpdate {
        instance: Some("\"<urn:uuid:1>\"".into()),
        reg_id: Some(1),
        ..ContactUpdate::new("sip:a@h", 60)
    };
    let changes = apply_update(
        "x@y",
        &mut set,
        &upd("c", 2, vec![with]),
        t(1),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(set.bindings.len(), 1);
    assert!(matches!(
        changes[0].kind,
        ChangeKind::Remove {
            reason: RemoveReason::Replaced,
            ..
        }
    ));
    assert_eq!(changes[0].key, "u:sip:a@h");
    assert!(matches!(&changes[1].kind, ChangeKind::Upsert(b) if b.key() == changes[1].key));
    assert!(changes[1].key.starts_with("i:"));
}

#[test]
fn tombstones_block_older_writes_then_expire() {
    let mut a = BindingSet::default();
    let first = apply_update(
        "x@y",
        &mut a,
        &upd("c", 1, vec![ContactUpdate::new("sip:a@h", 60)]),
        t(0),
        Limits::default(),
    )
    .unwrap();
    let gone = apply_update(
        "x@y",
        &mut a,
        &upd("c", 2, vec![ContactUpdate::new("sip:a@h", 0)]),
        t(1),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(a.tombstones.len(), 1);
    assert_eq!(a.tombstones[0].until, t(60));
    // The old upsert arrives late at a replica that already saw the removal.
    let mut b = BindingSet::default();
    assert_eq!(
        apply_replicated(&mut b, &gone[0], t(2)),
        ReplicaOutcome::Remembered
    );
    assert_eq!(
        apply_replicated(&mut b, &first[0], t(2)),
        ReplicaOutcome::Ignored
    );
    assert!(b.bindings.is_empty());
    // Tombstones end; then the set is empty and can be dropped.
    expire_due("x@y", &mut a, t(61));
    assert!(a.is_empty());
    // A new registration lifts the tombstone.
    let mut c = BindingSet::default();
    apply_update(
        "x@y",
        &mut c,
        &upd("c", 1, vec![ContactUpdate::new("sip:a@h", 60)]),
        t(0),
        Limits::default(),
    )
    .unwrap();
    apply_update(
        "x@y",
        &mut c,
        &upd("c", 2, vec![ContactUpdate::new("sip:a@h", 0)]),
        t(1),
        Limits::default(),
    )
    .unwrap();
    apply_update(
        "x@y",
        &mut c,
        &upd("d", 1, vec![ContactUpdate::new("sip:a@h", 60)]),
        t(2),
        Limits::default(),
    )
    .unwrap();
    assert!(c.tombstones.is_empty());
    assert_eq!(c.bindings.len(), 1);
}

#[test]
fn tombstones_are_bounded() {
    let mut set = BindingSet::default();
    let contacts: Vec<ContactUpdate> = (0..40)
        .map(|i| ContactUpdate::new(format!("sip:{i}@h"), 60))
        .collect();
    apply_update(
        "x@y",
        &mut set,
        &upd("c", 1, contacts.clone()),
        t(0),
        Limits::default(),
    )
    .unwrap();
    let zero: Vec<ContactUpdate> = contacts
        .into_iter()
        .map(|c| ContactUpdate { expires: 0, ..c })
        .collect();
    apply_update("x@y", &mut set, &upd("c", 2, zero), t(1), Limits::default()).unwrap();
    assert!(set.bindings.is_empty());
    assert_eq!(set.tombstones.len(), TOMBSTONES_MAX);
}

#[test]
fn user_agent_is_truncated_on_a_char_boundary() {
    let mut set = BindingSet::default();
    let mut u = upd("c", 1, vec![ContactUpdate::new("sip:a@h", 60)]);
    u.user_agent = Some("é".repeat(100)); // 200 bytes
    apply_update("x@y", &mut set, &u, t(0), Limits::default()).unwrap();
    let ua = set.bindings[0].user_agent.as_ref().unwrap();
    assert_eq!(ua.len(), 128);
    assert!(ua.chars().all(|c| c == 'é'));
}

#[test]
fn expired_bindings_are_reported_when_a_register_finds_them() {
    let mut set = BindingSet::default();
    apply_update(
        "x@y",
        &mut set,
        &upd("c", 1, vec![ContactUpdate::new("sip:old@h", 10)]),
        t(0),
        Limits::default(),
    )
    .unwrap();
    let changes = apply_update(
        "x@y",
        &mut set,
        &upd("d", 1, vec![ContactUpdate::new("sip:new@h", 10)]),
        t(20),
        Limits::default(),
    )
    .unwrap();
    assert!(matches!(
        changes[0].kind,
        ChangeKind::Remove {
            reason: RemoveReason::Expired,
            ..
        }
    ));
    assert_eq!(set.bindings.len(), 1);
}
