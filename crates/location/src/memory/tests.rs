#![allow(clippy::unwrap_used)]

use super::*;
use crate::binding::{ContactUpdate, Contacts, Source, Transport};

fn upd(cseq: u32, expires: u32) -> Update {
    Update {
        call_id: "c".into(),
        cseq,
        source: Source {
            transport: Transport::Udp,
            remote: "10.1.1.1:5060".parse().unwrap(),
            local: "10.0.0.1:5060".parse().unwrap(),
        },
        path: vec![],
        user_agent: None,
        nat: false,
        contacts: Contacts::List(vec![ContactUpdate::new("sip:a@10.1.1.1", expires)]),
    }
}

fn wheel_entries(store: &MemoryStore) -> usize {
    store
        .shards
        .iter()
        .map(|s| s.lock().unwrap().wheel.len())
        .sum()
}

#[test]
fn refreshes_do_not_grow_the_timer_wheel() {
    let store = MemoryStore::open(
        MemoryOptions {
            shards: 4,
            ..MemoryOptions::default()
        },
        Timestamp::from_secs(0),
    )
    .unwrap();
    let t0 = Timestamp::from_secs(1_000_000);
    for i in 0..100 {
        store.apply(&format!("a{i}@x"), &upd(1, 60), t0).unwrap();
    }
    // Each AOR refreshed 10 times with later expiries: still one entry each.
    for r in 2..12 {
        for i in 0..100 {
            store
                .apply(&format!("a{i}@x"), &upd(r, 60), t0.add_secs(u64::from(r)))
                .unwrap();
        }
    }
    assert_eq!(wheel_entries(&store), 100);
    // The first timer fires, finds nothing due, and re-arms once per AOR.
    assert!(store.expire(t0.add_secs(61)).unwrap().is_empty());
    assert_eq!(wheel_entries(&store), 100);
    assert_eq!(store.expire(t0.add_secs(72)).unwrap().len(), 100);
    assert_eq!(wheel_entries(&store), 0);
    assert_eq!(store.count(), Counts::default());
}

#[test]
fn an_earlier_expiry_arms_an_earlier_timer() {
    let store = MemoryStore::open(MemoryOptions::default(), Timestamp::from_secs(0)).unwrap();
    let t0 = Timestamp::from_secs(1_000_000);
    store.apply("a@x", &upd(1, 3600), t0).unwrap();
    store.apply("a@x", &upd(2, 30), t0).unwrap();
    assert_eq!(store.expire(t0.add_secs(31)).unwrap().len(), 1);
    // The stale 3600 s entry later fires harmlessly.
    assert!(store.expire(t0.add_secs(4000)).unwrap().is_empty());
}

#[test]
fn bad_shard_counts_are_refused() {
    for shards in [0, 3, 8192] {
        let r = MemoryStore::open(
            MemoryOptions {
                shards,
                ..MemoryOptions::default()
            },
            Timestamp::from_secs(0),
        );
        assert!(matches!(
            r,
            Err(LocationError::Config(ConfigError::Shards(_)))
        ));
    }
}

#[test]
fn a_batch_persists_at_commit_and_a_failed_one_turns_batches_off() {
    let dir = tempfile::tempdir().unwrap();
    let options = || MemoryOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..MemoryOptions::default()
    };
    let t0 = Timestamp::now();
    let store = MemoryStore::open(options(), t0).unwrap();
    store.begin_batch();
    store.apply("a@x", &upd(1, 3600), t0).unwrap();
    store.apply("b@x", &upd(1, 3600), t0).unwrap();
    store.commit_batch().unwrap();
    // Reopened, the data directory holds both.
    drop(store);
    let store = MemoryStore::open(options(), t0).unwrap();
    assert_eq!(store.count().aors, 2);

    // The disk fills up: the batch's change is in memory, the commit fails.
    store.journal.as_ref().unwrap().fail_writes();
    store.begin_batch();
    store.apply("c@x", &upd(1, 3600), t0).unwrap();
    assert!(store.commit_batch().is_err());
    // For a while batches write record by record: the change is refused.
    store.begin_batch();
    assert!(store.apply("d@x", &upd(1, 3600), t0).is_err());
    assert!(store.commit_batch().is_ok(), "nothing was buffered");
}

#[test]
fn batches_on_several_threads_recover_to_the_state_in_memory() {
    // Four threads change the same addresses-of-record in batches of their
    // own, as UDP workers do: the shared buffer must keep the records in the
    // order of the changes, so that recovery ends where memory is.
    let dir = tempfile::tempdir().unwrap();
    let options = || MemoryOptions {
        data_dir: Some(dir.path().to_path_buf()),
        shards: 4,
        ..MemoryOptions::default()
    };
    let t0 = Timestamp::now();
    let store = MemoryStore::open(options(), t0).unwrap();
    let aors: Vec<String> = (0..8).map(|i| format!("u{i}@x")).collect();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (store, aors) = (&store, &aors);
            s.spawn(move || {
                for round in 1..=200u32 {
                    store.begin_batch();
                    // Each address twice per batch: the second change wins.
                    for (k, (i, aor)) in aors
                        .iter()
                        .enumerate()
                        .chain(aors.iter().enumerate())
                        .enumerate()
                    {
                        if (i as u32 + round + t).is_multiple_of(3) {
                            continue;
                        }
                        let cseq = 2 * round + u32::from(k >= aors.len());
                        let mut u = upd(cseq, 600);
                        u.call_id = format!("t{t}");
                        // Each thread's own contact; every fifth round removes it.
                        let expires = if round % 5 == 0 { 0 } else { 600 + cseq % 50 };
                        u.contacts = Contacts::List(vec![ContactUpdate::new(
                            format!("sip:t{t}@10.1.1.{t}"),
                            expires,
                        )]);
                        store.apply(aor, &u, t0).unwrap();
                    }
                    store.commit_batch().unwrap();
                }
            });
        }
    });
    let in_memory: Vec<Vec<Binding>> = aors.iter().map(|a| store.lookup(a, t0).unwrap()).collect();
    assert!(in_memory.iter().any(|b| !b.is_empty()));
    drop(store);
    let store = MemoryStore::open(options(), t0).unwrap();
    let recovered: Vec<Vec<Binding>> = aors.iter().map(|a| store.lookup(a, t0).unwrap()).collect();
    assert_eq!(recovered, in_memory);
}
