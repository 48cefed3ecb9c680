//! Session replication through a real Redis and takeover between two relays
//! in this process, each on its own loopback address. (The kill -9 test with
//! relay processes is in bench/relaygen/tests/takeover.rs.)
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cut::Cuttable;
use common::*;
use voxline_location::testutil::RedisServer;
use voxline_ng::client::{NgError, RetransmitPolicy};
use voxline_ng::command::{DeleteRequest, MediaRequest, QueryRequest};
use voxline_relay::client::NgClient;
use voxline_relay::{InterfaceConfig, RedisConfig, Relay, RelayConfig, RelayHandle};

fn policy() -> RetransmitPolicy {
    RetransmitPolicy {
        timeout: Duration::from_millis(300),
        attempts: 4,
    }
}

fn redis() -> RedisServer {
    let r = RedisServer::start().unwrap();
    r.cli(&["CONFIG", "SET", "notify-keyspace-events", "AKE"])
        .unwrap();
    r
}

/// A relay on `127.0.0.<host>` with its own ports and Redis settings.
async fn relay(
    host: u8,
    ports: u16,
    url: &str,
    id: &str,
    tweak: impl FnOnce(&mut RedisConfig),
) -> RelayHandle {
    let ip = std::net::IpAddr::from([127, 0, 0, host]);
    relay_ng(SocketAddr::new(ip, 0), host, ports, url, id, tweak).await
}

/// Same, with ng on `ng`.
async fn relay_ng(
    ng: SocketAddr,
    host: u8,
    ports: u16,
    url: &str,
    id: &str,
    tweak: impl FnOnce(&mut RedisConfig),
) -> RelayHandle {
    let ip = std::net::IpAddr::from([127, 0, 0, host]);
    let mut redis = RedisConfig {
        url: url.to_owned(),
        key_prefix: "test:relay".into(),
        relay_id: id.into(),
        heartbeat_interval_ms: 50,
        heartbeat_timeout_ms: 300,
        ..RedisConfig::default()
    };
    tweak(&mut redis);
    Relay::start(RelayConfig {
        ng_udp: ng,
        ng_tcp: None,
        interfaces: vec![InterfaceConfig {
            name: "default".into(),
            address: ip,
            advertised_address: None,
        }],
        port_min: ports,
        port_max: ports + 99,
        port_quarantine_secs: 1,
        workers: 2,
        redis: Some(redis),
        ..RelayConfig::default()
    })
    .await
    .unwrap()
}

fn media(call: &str, from: &str, to: Option<&str>, addr: SocketAddr) -> MediaRequest {
    MediaRequest {
        call_id: call.into(),
        from_tag: from.into(),
        to_tag: to.map(str::to_owned),
        sdp: sdp(addr, "a=sendrecv\r\n"),
        ..MediaRequest::default()
    }
}

/// A call through a relay: caller A, callee B, and where each sends.
struct Call {
    a: Endpoint,
    b: Endpoint,
    to_a_side: SocketAddr,
    to_b_side: SocketAddr,
}

impl Call {
    async fn set_up(ng: &NgClient, id: &str) -> Call {
        let (a, b) = (Endpoint::new(), Endpoint::new());
        let o = ng.offer(&media(id, "ft", None, a.addr())).await.unwrap();
        let ans = ng
            .answer(&media(id, "ft", Some("tt"), b.addr()))
            .await
            .unwrap();
        Call {
            a,
            b,
            // A sends to the relay port in the answer, B to the one in the offer.
            to_a_side: media_addr(&ans.sdp),
            to_b_side: media_addr(&o.sdp),
        }
    }

    /// One packet each way arrives.
    fn media_flows(&self, seq: u16) {
        self.a.send(&rtp(seq), self.to_a_side);
        assert_eq!(self.b.recv().0, rtp(seq));
        self.b.send(&rtp(seq), self.to_b_side);
        assert_eq!(self.a.recv().0, rtp(seq));
    }

    /// Sends A→B every 20 ms until a packet arrives; the time it took.
    async fn resumes_within(&self, secs: u64) -> Duration {
        let t0 = Instant::now();
        self.b
            .socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut seq = 1000u16;
        loop {
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "media did not resume within {secs} s"
            );
            self.a.send(&rtp(seq), self.to_a_side);
            seq = seq.wrapping_add(1);
            let got = {
                let s = self.b.socket.try_clone().unwrap();
                tokio::task::spawn_blocking(move || s.recv_from(&mut buf).is_ok())
                    .await
                    .unwrap()
            };
            if got {
                break;
            }
        }
        self.b
            .socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        // Drain what is still in flight.
        while self.b.socket.set_nonblocking(true).is_ok()
            && self.b.socket.recv_from(&mut buf).is_ok()
        {}
        self.b.socket.set_nonblocking(false).unwrap();
        t0.elapsed()
    }
}

/// A wildcard-bound address as reached on loopback.
fn loopback(a: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], a.port()))
}

fn taken_over(h: &RelayHandle) -> Vec<(String, &'static str)> {
    h.stats()
        .redis
        .unwrap()
        .taken_over
        .into_iter()
        .map(|t| (t.relay, t.trigger))
        .collect()
}

fn owner_in_redis(r: &RedisServer, call: &str) -> Option<String> {
    let v = r.cli(&["GET", &format!("test:relay:call:{call}")]).unwrap();
    let v: serde_json::Value = serde_json::from_str(v.trim()).ok()?;
    v["owner"].as_str().map(str::to_owned)
}

/// The URL of a Redis user that may do everything but `denied` (an ACL
/// rule such as `-scan`).
fn user_without(r: &RedisServer, denied: &str) -> String {
    r.cli(&[
        "ACL", "SETUSER", "relay", "on", ">secret", "~*", "&*", "+@all", denied,
    ])
    .unwrap();
    format!("redis://relay:secret@127.0.0.1:{}/0", r.port())
}

/// Redis clients subscribed to a pattern.
fn pattern_subscribers(r: &RedisServer) -> usize {
    r.cli(&["CLIENT", "LIST"])
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.starts_with("psub=") && f != "psub=0")
        })
        .count()
}

/// The session keys in Redis (for a failure's message).
fn call_keys(r: &RedisServer) -> String {
    r.cli(&["KEYS", "test:relay:call:*"])
        .unwrap_or_else(|e| format!("(KEYS failed: {e})"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

async fn query(ng: &NgClient, call: &str) -> Result<voxline_ng::reply::CallStats, NgError> {
    ng.query(&QueryRequest {
        call_id: call.into(),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_follows_sessions_and_takes_over_when_the_owner_stops() {
    let r = redis();
    let a = relay(2, 33000, &r.url(), "a", |_| {}).await;
    let b = relay(3, 33100, &r.url(), "b", |_| {}).await;
    let a_ng = a.ng_udp_addr();
    let ng = NgClient::connect(a_ng, policy()).await.unwrap();
    let calls = [
        Call::set_up(&ng, "c1").await,
        Call::set_up(&ng, "c2").await,
        Call::set_up(&ng, "c3").await,
    ];
    for (i, c) in calls.iter().enumerate() {
        c.media_flows(i as u16);
        assert_eq!(c.to_a_side.ip().to_string(), "127.0.0.2");
    }
    eventually(5, || b.stats().foreign_sessions == 3).await;
    assert_eq!(owner_in_redis(&r, "c1").as_deref(), Some("a"));
    // Deletes are followed too.
    ng.delete(&DeleteRequest {
        call_id: "c3".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    eventually(5, || b.stats().foreign_sessions == 2).await;
    assert_eq!(owner_in_redis(&r, "c3"), None);
    let b_ng = NgClient::connect(b.ng_udp_addr(), policy()).await.unwrap();
    assert!(
        matches!(query(&b_ng, "c1").await, Err(NgError::Remote(e)) if e == "Unknown call-id"),
        "a standby session of a live relay is not taken over by a command"
    );

    // The owner goes away (its sockets close, its heartbeat stops).
    a.shutdown().await;
    let t0 = Instant::now();
    // Its ng address is free at once: taken over after one missed heartbeat.
    eventually(5, || !taken_over(&b).is_empty()).await;
    assert_eq!(taken_over(&b), [("a".to_owned(), "address")]);
    let detect = t0.elapsed();
    let st = b.stats();
    assert_eq!((st.sessions, st.foreign_sessions, st.adopted), (2, 0, 2));
    for c in &calls[..2] {
        c.resumes_within(5).await;
        c.media_flows(7);
    }
    // The proxy keeps using the dead relay's ng address: B answers there.
    let q = query(&ng, "c1").await.unwrap();
    assert_eq!(q.tags.len(), 2);
    eventually(5, || owner_in_redis(&r, "c1").as_deref() == Some("b")).await;
    let d = ng
        .delete(&DeleteRequest {
            call_id: "c2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(d.warning.is_none());
    eventually(5, || owner_in_redis(&r, "c2").is_none()).await;
    assert_eq!(b.stats().sessions, 1);
    eprintln!("takeover {detect:?} after shutdown");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_on_a_standby_socket_takes_over_before_the_heartbeat_timeout() {
    let r = redis();
    // A long heartbeat timeout: only media can trigger the takeover in time.
    let slow = |c: &mut RedisConfig| c.heartbeat_timeout_ms = 20_000;
    // ng on the wildcard address: no address trigger.
    let a = relay_ng("0.0.0.0:0".parse().unwrap(), 4, 33200, &r.url(), "a", slow).await;
    let b = relay(5, 33300, &r.url(), "b", slow).await;
    let ng = NgClient::connect(loopback(a.ng_udp_addr()), policy())
        .await
        .unwrap();
    let call = Call::set_up(&ng, "m1").await;
    call.media_flows(1);
    eventually(5, || b.stats().foreign_sessions == 1).await;
    a.shutdown().await;
    // B binds the freed media ports once A misses heartbeats; the next
    // packet takes the session over.
    let gap = call.resumes_within(10).await;
    assert!(gap < Duration::from_secs(5), "took {gap:?}");
    assert_eq!(taken_over(&b), [("a".to_owned(), "media")]);
    call.media_flows(2);
    let b_ng = NgClient::connect(b.ng_udp_addr(), policy()).await.unwrap();
    query(&b_ng, "m1").await.unwrap();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ng_command_for_a_standby_session_of_a_silent_relay_takes_it_over() {
    let r = redis();
    let slow = |c: &mut RedisConfig| c.heartbeat_timeout_ms = 20_000;
    let a = relay_ng("0.0.0.0:0".parse().unwrap(), 6, 33400, &r.url(), "a", slow).await;
    let b = relay(7, 33500, &r.url(), "b", slow).await;
    let ng = NgClient::connect(loopback(a.ng_udp_addr()), policy())
        .await
        .unwrap();
    let call = Call::set_up(&ng, "s1").await;
    eventually(5, || b.stats().foreign_sessions == 1).await;
    a.shutdown().await;
    // No address to probe and no media: only the command can set the
    // takeover off.
    // The proxy fails over to B's own address.
    let b_ng = NgClient::connect(b.ng_udp_addr(), policy()).await.unwrap();
    let t0 = Instant::now();
    let q = loop {
        match query(&b_ng, "s1").await {
            Ok(q) => break q,
            Err(_) if t0.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(q.tags.len(), 2);
    assert_eq!(b.stats().sessions, 1);
    call.resumes_within(5).await;
    eventually(5, || !taken_over(&b).is_empty()).await;
    assert_eq!(taken_over(&b), [("a".to_owned(), "signalling")]);
    drop(ng);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outages_stall_nothing_and_are_reconciled() {
    let r = redis();
    let upstream: SocketAddr = format!("127.0.0.1:{}", r.port()).parse().unwrap();
    let (link_a, link_b) = (
        Cuttable::start(upstream).await,
        Cuttable::start(upstream).await,
    );
    let a = relay(8, 33600, &link_a.url(), "a", |_| {}).await;
    let b = relay(9, 33700, &link_b.url(), "b", |_| {}).await;
    let ng = NgClient::connect(a.ng_udp_addr(), policy()).await.unwrap();
    let c1 = Call::set_up(&ng, "o1").await;
    eventually(5, || b.stats().foreign_sessions == 1).await;
    eventually(5, || b.stats().redis.unwrap().connected).await;

    // B misses everything A does while B's link is down.
    link_b.cut().await;
    ng.delete(&DeleteRequest {
        call_id: "o1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let c2 = Call::set_up(&ng, "o2").await;
    let _c3 = Call::set_up(&ng, "o3").await;
    eventually(5, || owner_in_redis(&r, "o3").is_some()).await;
    let o1_after_delete = r.cli(&["GET", "test:relay:call:o1"]).unwrap_or_default();
    eventually(5, || !b.stats().redis.unwrap().connected).await;
    assert_eq!(b.stats().foreign_sessions, 1, "stale while cut off");
    link_b.restore().await;
    // The SCAN after resubscribing finds o2 and o3 and drops o1.
    eventually_explained(
        10,
        || b.stats().foreign_sessions == 2,
        || {
            format!(
                "B: {:?}; A: {:?}; keys: {:?}; o1 once o3 was written: {o1_after_delete:?}; o1 now: {:?}",
                b.stats(),
                a.stats(),
                call_keys(&r),
                r.cli(&["GET", "test:relay:call:o1"]).unwrap_or_default()
            )
        },
    )
    .await;
    drop(c1);

    // A's own link down: commands and media do not wait for Redis.
    link_a.cut().await;
    let t0 = Instant::now();
    let c4 = Call::set_up(&ng, "o4").await;
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "ng waited {:?}",
        t0.elapsed()
    );
    c4.media_flows(1);
    c2.media_flows(2);
    eventually(5, || !a.stats().redis.unwrap().connected).await;
    eventually(5, || a.stats().redis.unwrap().pending_writes >= 1).await;
    assert_eq!(owner_in_redis(&r, "o4"), None);
    eventually(5, || a.stats().redis.unwrap().write_errors >= 1).await;
    c4.media_flows(3);
    link_a.restore().await;
    eventually(10, || owner_in_redis(&r, "o4").as_deref() == Some("a")).await;
    eventually(10, || b.stats().foreign_sessions == 3).await;
    eventually(5, || {
        let st = a.stats().redis.unwrap();
        st.pending_writes == 0 && st.connected
    })
    .await;
    // Both outages ended with the client library's own subscription: no
    // relay found itself deaf afterwards.
    assert_eq!(a.stats().redis.unwrap().resubscriptions, 0);
    assert_eq!(b.stats().redis.unwrap().resubscriptions, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_restores_its_own_sessions() {
    let r = redis();
    let solo = |c: &mut RedisConfig| c.standby = false;
    let a = relay(10, 33800, &r.url(), "a", solo).await;
    let ng = NgClient::connect(a.ng_udp_addr(), policy()).await.unwrap();
    let call = Call::set_up(&ng, "r1").await;
    call.media_flows(1);
    eventually(5, || owner_in_redis(&r, "r1").is_some()).await;
    let addr = a.ng_udp_addr();
    a.shutdown().await;
    assert_eq!(
        owner_in_redis(&r, "r1").as_deref(),
        Some("a"),
        "kept in Redis"
    );
    let a2 = relay(10, 33800, &r.url(), "a", |c| c.standby = false).await;
    let _ = addr;
    eventually(5, || a2.stats().sessions == 1).await;
    call.resumes_within(5).await;
    let ng2 = NgClient::connect(a2.ng_udp_addr(), policy()).await.unwrap();
    query(&ng2, "r1").await.unwrap();
    a2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_keyspace_events_off_is_reported() {
    let r = RedisServer::start().unwrap();
    let a = relay(11, 33900, &r.url(), "a", |_| {}).await;
    eventually(5, || {
        a.stats().redis.unwrap().keyspace_notifications == Some(false)
    })
    .await;
    a.shutdown().await;
    r.cli(&["CONFIG", "SET", "notify-keyspace-events", "KEA"])
        .unwrap();
    let a = relay(11, 33900, &r.url(), "a", |_| {}).await;
    eventually(5, || {
        a.stats().redis.unwrap().keyspace_notifications == Some(true)
    })
    .await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_timeout_takes_over_a_relay_without_a_known_address() {
    let r = redis();
    // ng on the wildcard address: nothing to probe or take over; only the
    // heartbeat timeout (300 ms) decides. No media until then.
    let a = relay_ng(
        "0.0.0.0:0".parse().unwrap(),
        12,
        34000,
        &r.url(),
        "a",
        |_| {},
    )
    .await;
    let b = relay(13, 34100, &r.url(), "b", |_| {}).await;
    let ng = NgClient::connect(loopback(a.ng_udp_addr()), policy())
        .await
        .unwrap();
    let call = Call::set_up(&ng, "h1").await;
    eventually(5, || b.stats().foreign_sessions == 1).await;
    // The heartbeat stops when the shutdown starts.
    let t0 = Instant::now();
    a.shutdown().await;
    eventually(5, || !taken_over(&b).is_empty()).await;
    let took = t0.elapsed();
    assert_eq!(taken_over(&b), [("a".to_owned(), "heartbeat")]);
    // At most one interval (50 ms) passed since the last heartbeat.
    assert!(
        took >= Duration::from_millis(250),
        "not before the timeout: {took:?}"
    );
    call.resumes_within(5).await;
    let b_ng = NgClient::connect(b.ng_udp_addr(), policy()).await.unwrap();
    query(&b_ng, "h1").await.unwrap();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_subscription_was_lost_subscribes_again() {
    let r = redis();
    let upstream: SocketAddr = format!("127.0.0.1:{}", r.port()).parse().unwrap();
    let link_b = Cuttable::start(upstream).await;
    let a = relay(14, 34200, &r.url(), "a", |_| {}).await;
    let b = relay(15, 34300, &link_b.url(), "b", |_| {}).await;
    let ng = NgClient::connect(a.ng_udp_addr(), policy()).await.unwrap();
    let _c1 = Call::set_up(&ng, "l1").await;
    eventually(5, || b.stats().foreign_sessions == 1).await;

    // Redis forgets B's subscription while B's connection stays up (as
    // behind a proxy that fails over to another Redis): B hears nothing
    // more, and nothing tells its client library.
    assert_eq!(pattern_subscribers(&r), 2);
    assert_eq!(link_b.inject(b"*1\r\n$12\r\nPUNSUBSCRIBE\r\n"), 1);
    eventually(5, || pattern_subscribers(&r) == 1).await;
    let _c2 = Call::set_up(&ng, "l2").await;
    eventually(5, || owner_in_redis(&r, "l2").is_some()).await;
    // B notices that its own heartbeats no longer come back, subscribes
    // again, and its reconcile finds the session A set up meanwhile.
    // (Under load a reconcile B retries may find it first.)
    eventually_explained(
        10,
        || b.stats().redis.unwrap().resubscriptions == 1 && pattern_subscribers(&r) == 2,
        || format!("B: {:?}", b.stats()),
    )
    .await;
    eventually_explained(
        5,
        || b.stats().foreign_sessions == 2,
        || format!("B: {:?}; keys: {:?}", b.stats(), call_keys(&r)),
    )
    .await;
    assert!(b.stats().redis.unwrap().connected);
    // And B follows what comes next as before.
    let _c3 = Call::set_up(&ng, "l3").await;
    eventually(5, || b.stats().foreign_sessions == 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_never_hears_itself_subscribes_again_less_and_less_often() {
    // Keyspace notifications off (Redis's default), and the relay's user
    // may not read the config that says so.
    let r = RedisServer::start().unwrap();
    let url = user_without(&r, "-config");
    let a = relay(16, 34400, &url, "a", |_| {}).await;
    eventually(5, || a.stats().redis.unwrap().connected).await;
    assert_eq!(a.stats().redis.unwrap().keyspace_notifications, None);
    // Deaf: the first new subscription after 2 s, the next twice as late.
    eventually(5, || a.stats().redis.unwrap().resubscriptions == 1).await;
    let first = Instant::now();
    eventually(8, || a.stats().redis.unwrap().resubscriptions == 2).await;
    let gap = first.elapsed();
    assert!(
        gap >= Duration::from_millis(3500),
        "second attempt after {gap:?}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_before_the_first_reconcile_stays_ended() {
    // The relay may not SCAN: its first reconcile never completes, and it
    // would take back own sessions from before a restart.
    let r = redis();
    let url = user_without(&r, "-scan");
    let a = relay(17, 34500, &url, "a", |_| {}).await;
    let ng = NgClient::connect(a.ng_udp_addr(), policy()).await.unwrap();
    let call = Call::set_up(&ng, "e1").await;
    eventually(5, || owner_in_redis(&r, "e1").is_some()).await;
    let record = r.cli(&["GET", "test:relay:call:e1"]).unwrap();
    ng.delete(&DeleteRequest {
        call_id: "e1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    eventually(5, || owner_in_redis(&r, "e1").is_none()).await;
    assert_eq!(a.stats().sessions, 0);
    // This run's record of the call shows up again, as when a read of it
    // crossed the delete: the relay deletes it again and does not bring
    // the call back.
    r.cli(&["SET", "test:relay:call:e1", record.trim_end()])
        .unwrap();
    eventually_explained(
        5,
        || owner_in_redis(&r, "e1").is_none(),
        || format!("A: {:?}", a.stats()),
    )
    .await;
    assert_eq!(a.stats().sessions, 0);
    drop(call);
    a.shutdown().await;
}
