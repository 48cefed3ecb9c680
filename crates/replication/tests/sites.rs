//! Two sites on loopback, each with its own location store (memory, or a
//! real redis-server), replicating to each other over real sockets.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use voxline_location::testutil::RedisServer;
use voxline_location::{
    Binding, ContactUpdate, Contacts, LocationConfig, LocationStore, Source, Timestamp, Transport,
    Update,
};
use voxline_replication::{LinkState, PeerConfig, Replication, ReplicationConfig};

const SECRET: &str = "a shared secret for tests";

fn free_addr(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap()
}

fn config(site: &str, listen: SocketAddr, peer: &str, peer_addr: SocketAddr) -> ReplicationConfig {
    ReplicationConfig {
        site: site.into(),
        listen,
        secret: Some(SECRET.into()),
        peers: vec![PeerConfig {
            name: peer.into(),
            addresses: vec![peer_addr.to_string()],
        }],
        retry_min_ms: 20,
        retry_max_ms: 200,
        heartbeat_ms: 200,
        request_timeout_ms: 1000,
        ..ReplicationConfig::default()
    }
}

struct Site {
    store: LocationStore,
    repl: Replication,
}

async fn memory_store() -> LocationStore {
    LocationStore::open(&LocationConfig::default())
        .await
        .unwrap()
}

async fn redis_store(redis: &RedisServer) -> LocationStore {
    LocationStore::open(&LocationConfig {
        backend: redis.url(),
        ..LocationConfig::default()
    })
    .await
    .unwrap()
}

/// Sites "a" and "b" on 127.0.0.11 and 127.0.0.12, `tweak` applied to both
/// configurations.
async fn pair_with(
    a_store: LocationStore,
    b_store: LocationStore,
    tweak: impl Fn(&mut ReplicationConfig),
) -> (Site, Site) {
    let a_addr = free_addr("127.0.0.11");
    let b_addr = free_addr("127.0.0.12");
    let mut ca = config("a", a_addr, "b", b_addr);
    let mut cb = config("b", b_addr, "a", a_addr);
    tweak(&mut ca);
    tweak(&mut cb);
    let a = Site {
        repl: Replication::start(&ca, "a1", a_store.clone())
            .await
            .unwrap(),
        store: a_store,
    };
    let b = Site {
        repl: Replication::start(&cb, "b1", b_store.clone())
            .await
            .unwrap(),
        store: b_store,
    };
    (a, b)
}

async fn pair() -> (Site, Site) {
    pair_with(memory_store().await, memory_store().await, |_| {}).await
}

fn update(call_id: &str, cseq: u32, contact: &str, expires: u32) -> Update {
    Update {
        call_id: call_id.into(),
        cseq,
        source: Source {
            transport: Transport::Udp,
            remote: "192.0.2.10:5060".parse().unwrap(),
            local: "192.0.2.1:5060".parse().unwrap(),
        },
        path: vec!["<sip:edge-a.example.net;lr>".into()],
        user_agent: Some("test".into()),
        nat: false,
        contacts: Contacts::List(vec![ContactUpdate::new(contact, expires)]),
    }
}

async fn register(
    store: &LocationStore,
    aor: &str,
    call_id: &str,
    cseq: u32,
    contact: &str,
    expires: u32,
) {
    store
        .apply(
            aor,
            &update(call_id, cseq, contact, expires),
            Timestamp::now(),
        )
        .await
        .unwrap();
}

async fn lookup(store: &LocationStore, aor: &str) -> Vec<Binding> {
    store.lookup(aor, Timestamp::now()).await.unwrap()
}

/// Every AOR with its bindings (contact, Call-ID, CSeq, expiry).
async fn listing(store: &LocationStore) -> Vec<(String, Vec<(String, String, u32, u64)>)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let now = Timestamp::now();
    loop {
        let page = store.list(cursor.as_deref(), 100, now).await.unwrap();
        for (aor, bs) in page.entries {
            let mut v: Vec<_> = bs
                .iter()
                .map(|b| {
                    (
                        b.contact.clone(),
                        b.call_id.clone(),
                        b.cseq,
                        b.expires.as_millis(),
                    )
                })
                .collect();
            v.sort();
            out.push((aor, v));
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    out.sort();
    out
}

/// Polls `check` every 20 ms until it holds; panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the next replicated change of `aor` applied to `store`.
async fn replicated(
    feed: &mut tokio::sync::broadcast::Receiver<voxline_location::LocationChange>,
    aor: &str,
) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let c = feed.recv().await.unwrap();
            if c.aor == aor && c.origin == voxline_location::ChangeOrigin::Replicated {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no replicated change for {aor} within 5 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_refresh_and_removal_reach_the_peer_and_do_not_come_back() {
    let (a, b) = pair().await;
    let mut feed = b.store.subscribe();
    let t = Instant::now();
    register(
        &a.store,
        "alice@example.com",
        "c1",
        1,
        "sip:alice@192.0.2.10:5060",
        600,
    )
    .await;
    replicated(&mut feed, "alice@example.com").await;
    let lag = t.elapsed();
    let at_b = lookup(&b.store, "alice@example.com").await;
    assert_eq!(
        at_b,
        lookup(&a.store, "alice@example.com").await,
        "the whole binding, Path included"
    );
    assert_eq!(at_b[0].path, ["<sip:edge-a.example.net;lr>"]);
    assert!(lag < Duration::from_secs(1), "lag {lag:?}");

    // Refresh: a new CSeq and expiry.
    register(
        &a.store,
        "alice@example.com",
        "c1",
        2,
        "sip:alice@192.0.2.10:5060",
        1200,
    )
    .await;
    replicated(&mut feed, "alice@example.com").await;
    let at_b = lookup(&b.store, "alice@example.com").await;
    assert_eq!(at_b[0].cseq, 2);
    assert_eq!(at_b, lookup(&a.store, "alice@example.com").await);

    // Removal.
    register(
        &a.store,
        "alice@example.com",
        "c1",
        3,
        "sip:alice@192.0.2.10:5060",
        0,
    )
    .await;
    replicated(&mut feed, "alice@example.com").await;
    assert!(lookup(&b.store, "alice@example.com").await.is_empty());

    // Nothing was sent back: B's journal holds only its own (no) changes
    // and A never applied anything from B.
    eventually(
        "B counted 3 applied changes",
        Duration::from_secs(2),
        || async { b.repl.status().inbound[0].applied == 3 },
    )
    .await;
    let sb = b.repl.status();
    assert_eq!(
        sb.journal.last_seq, 0,
        "replicated changes are not journaled"
    );
    let sa = a.repl.status();
    assert_eq!(sa.inbound[0].applied, 0);
    assert_eq!(sa.peers[0].state, LinkState::Up);
    assert!(
        sa.peers[0].counters.resyncs_done >= 1,
        "the start resync ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sites_write_and_see_each_other() {
    let (a, b) = pair().await;
    register(
        &a.store,
        "u1@example.com",
        "a-1",
        1,
        "sip:u1@192.0.2.1",
        600,
    )
    .await;
    register(
        &b.store,
        "u2@example.com",
        "b-1",
        1,
        "sip:u2@192.0.2.2",
        600,
    )
    .await;
    // The same AOR with one phone at each site: both bindings everywhere.
    register(
        &a.store,
        "u3@example.com",
        "a-3",
        1,
        "sip:u3@192.0.2.31",
        600,
    )
    .await;
    register(
        &b.store,
        "u3@example.com",
        "b-3",
        1,
        "sip:u3@192.0.2.32",
        600,
    )
    .await;
    eventually("listings equal", Duration::from_secs(5), || async {
        listing(&a.store).await == listing(&b.store).await
    })
    .await;
    assert_eq!(lookup(&a.store, "u3@example.com").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_without_lost_or_resurrected_bindings() {
    let (a, b) = pair().await;
    for i in 0..20 {
        register(
            &a.store,
            &format!("u{i}@example.com"),
            &format!("c{i}"),
            1,
            &format!("sip:u{i}@192.0.2.1"),
            600,
        )
        .await;
    }
    eventually("initial sync", Duration::from_secs(5), || async {
        listing(&a.store).await == listing(&b.store).await
    })
    .await;
    a.repl.set_blocked("b", true).unwrap();
    assert_eq!(a.repl.status().peers[0].state, LinkState::Blocked);
    // At A: u0..u4 unregister, u5..u9 refresh. At B: u10..u14 unregister,
    // new users appear on both sides.
    for i in 0..5 {
        register(
            &a.store,
            &format!("u{i}@example.com"),
            &format!("c{i}"),
            2,
            &format!("sip:u{i}@192.0.2.1"),
            0,
        )
        .await;
    }
    for i in 5..10 {
        register(
            &a.store,
            &format!("u{i}@example.com"),
            &format!("c{i}"),
            2,
            &format!("sip:u{i}@192.0.2.1"),
            900,
        )
        .await;
    }
    for i in 10..15 {
        register(
            &b.store,
            &format!("u{i}@example.com"),
            &format!("b{i}"),
            1,
            &format!("sip:u{i}@192.0.2.1"),
            0,
        )
        .await;
    }
    register(
        &a.store,
        "new-a@example.com",
        "na",
        1,
        "sip:na@192.0.2.7",
        600,
    )
    .await;
    register(
        &b.store,
        "new-b@example.com",
        "nb",
        1,
        "sip:nb@192.0.2.8",
        600,
    )
    .await;
    // B really does not hear from A (and A's link refuses B's requests).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lookup(&b.store, "u0@example.com").await.len(), 1);
    assert!(lookup(&a.store, "new-b@example.com").await.is_empty());

    let healed = Instant::now();
    a.repl.set_blocked("b", false).unwrap();
    let took = eventually(
        "convergence after heal",
        Duration::from_secs(10),
        || async { listing(&a.store).await == listing(&b.store).await },
    )
    .await;
    let list = listing(&a.store).await;
    let aors: Vec<&str> = list.iter().map(|(a, _)| a.as_str()).collect();
    for i in 0..5 {
        assert!(
            !aors.contains(&format!("u{i}@example.com").as_str()),
            "u{i} resurrected"
        );
    }
    for i in 10..15 {
        assert!(
            !aors.contains(&format!("u{i}@example.com").as_str()),
            "u{i} resurrected"
        );
    }
    for aor in [
        "new-a@example.com",
        "new-b@example.com",
        "u5@example.com",
        "u15@example.com",
    ] {
        assert!(aors.contains(&aor), "{aor} lost");
    }
    assert_eq!(aors.len(), 12);
    let refreshed = lookup(&b.store, "u7@example.com").await;
    assert_eq!(refreshed[0].cseq, 2);
    eprintln!("converged {took:?} after heal ({:?})", healed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_starts_late_catches_up_from_the_journal() {
    let a_addr = free_addr("127.0.0.11");
    let b_addr = free_addr("127.0.0.12");
    let quiet = |mut c: ReplicationConfig| {
        c.resync_on_start = false;
        c
    };
    let a_store = memory_store().await;
    let a = Replication::start(
        &quiet(config("a", a_addr, "b", b_addr)),
        "a1",
        a_store.clone(),
    )
    .await
    .unwrap();
    for i in 0..50 {
        register(
            &a_store,
            &format!("u{i}@example.com"),
            "c",
            1,
            "sip:u@192.0.2.1",
            600,
        )
        .await;
    }
    eventually(
        "link down with 50 queued",
        Duration::from_secs(5),
        || async {
            let st = a.status();
            st.peers[0].state == LinkState::Down && st.peers[0].queue == 50
        },
    )
    .await;
    let st = a.status();
    assert_eq!(st.peers[0].queue, 50);
    assert!(st.peers[0].last_error.is_some());
    let b_store = memory_store().await;
    let _b = Replication::start(
        &quiet(config("b", b_addr, "a", a_addr)),
        "b1",
        b_store.clone(),
    )
    .await
    .unwrap();
    eventually("catch-up", Duration::from_secs(5), || async {
        listing(&a_store).await == listing(&b_store).await
    })
    .await;
    let st = a.status();
    assert_eq!(st.peers[0].counters.resyncs, 0, "the journal sufficed");
    eventually("journal trimmed", Duration::from_secs(2), || async {
        a.status().journal.entries == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_overflow_is_repaired_by_a_full_resync() {
    let (a, b) = pair_with(memory_store().await, memory_store().await, |c| {
        c.journal_max_entries = 10;
        c.resync_page = 7;
    })
    .await;
    register(&a.store, "gone@example.com", "g", 1, "sip:g@192.0.2.1", 600).await;
    eventually("first sync", Duration::from_secs(5), || async {
        !lookup(&b.store, "gone@example.com").await.is_empty()
    })
    .await;
    a.repl.set_blocked("b", true).unwrap();
    register(&a.store, "gone@example.com", "g", 2, "sip:g@192.0.2.1", 0).await;
    for i in 0..40 {
        register(
            &a.store,
            &format!("u{i}@example.com"),
            "c",
            1,
            "sip:u@192.0.2.1",
            600,
        )
        .await;
    }
    eventually(
        "journal holds 41 changes",
        Duration::from_secs(2),
        || async { a.repl.status().journal.last_seq == 42 },
    )
    .await;
    let st = a.repl.status();
    assert_eq!(st.journal.entries, 10);
    assert_eq!(st.journal.evicted_removals, 0, "the removal is kept");
    let resyncs = st.peers[0].counters.resyncs;
    a.repl.set_blocked("b", false).unwrap();
    eventually("resync", Duration::from_secs(10), || async {
        listing(&a.store).await == listing(&b.store).await
    })
    .await;
    assert!(
        lookup(&b.store, "gone@example.com").await.is_empty(),
        "removal delivered"
    );
    assert_eq!(a.repl.status().peers[0].counters.resyncs, resyncs + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_another_secret_is_refused() {
    let a_addr = free_addr("127.0.0.11");
    let b_addr = free_addr("127.0.0.12");
    let a_store = memory_store().await;
    let b_store = memory_store().await;
    let a = Replication::start(&config("a", a_addr, "b", b_addr), "a1", a_store.clone())
        .await
        .unwrap();
    let mut cb = config("b", b_addr, "a", a_addr);
    cb.secret = Some("not the same secret at all".into());
    let b = Replication::start(&cb, "b1", b_store.clone())
        .await
        .unwrap();
    register(&a_store, "x@example.com", "c", 1, "sip:x@192.0.2.1", 600).await;
    eventually("refusal seen", Duration::from_secs(5), || async {
        a.status().peers[0]
            .last_error
            .as_deref()
            // The whole phrase: an address in a connect error can hold "401".
            .is_some_and(|e| e.contains("peer answered 401"))
    })
    .await;
    assert!(lookup(&b_store, "x@example.com").await.is_empty());
    assert!(b.status().inbound[0].refused > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_never_slows_registrations_and_memory_stays_bounded() {
    // The peer accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.12:0").await.unwrap();
    let hole_addr = black_hole.local_addr().unwrap();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = black_hole.accept().await {
            held.push(s);
        }
    });
    let store = memory_store().await;
    let mut c = config("a", free_addr("127.0.0.11"), "b", hole_addr);
    c.journal_max_entries = 1000;
    let a = Replication::start(&c, "a1", store.clone()).await.unwrap();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..5000 {
        let t = Instant::now();
        register(
            &store,
            &format!("u{i}@example.com"),
            "c",
            1,
            "sip:u@192.0.2.1",
            600,
        )
        .await;
        worst = worst.max(t.elapsed());
    }
    let total = start.elapsed();
    eventually("all 5000 journaled", Duration::from_secs(5), || async {
        a.status().journal.last_seq == 5000
    })
    .await;
    let st = a.status();
    assert!(st.journal.entries <= 1000, "{:?}", st.journal);
    assert!(st.journal.evicted_upserts >= 4000);
    assert_ne!(st.peers[0].state, LinkState::Up);
    assert!(
        worst < Duration::from_millis(200),
        "one REGISTER took {worst:?} (5000 in {total:?})"
    );
    eprintln!("5000 registrations with a silent peer: {total:?}, slowest {worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_on_redis_replicate_and_converge_after_a_partition() {
    let redis_a = RedisServer::start().unwrap();
    let redis_b = RedisServer::start().unwrap();
    let (a, b) = pair_with(
        redis_store(&redis_a).await,
        redis_store(&redis_b).await,
        |_| {},
    )
    .await;
    let mut feed = b.store.subscribe();
    register(&a.store, "r@example.com", "c", 1, "sip:r@192.0.2.1", 600).await;
    replicated(&mut feed, "r@example.com").await;
    assert_eq!(
        lookup(&b.store, "r@example.com").await,
        lookup(&a.store, "r@example.com").await
    );
    b.repl.set_blocked("a", true).unwrap();
    register(&a.store, "r@example.com", "c", 2, "sip:r@192.0.2.1", 0).await;
    register(&b.store, "s@example.com", "d", 1, "sip:s@192.0.2.2", 600).await;
    b.repl.set_blocked("a", false).unwrap();
    eventually("convergence", Duration::from_secs(10), || async {
        listing(&a.store).await == listing(&b.store).await
    })
    .await;
    assert!(lookup(&b.store, "r@example.com").await.is_empty());
    assert_eq!(lookup(&a.store, "s@example.com").await.len(), 1);
}
