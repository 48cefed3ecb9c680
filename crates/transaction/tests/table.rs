//! Table-level behaviour: bounds, size metrics, sharding, reliable vs
//! unreliable transports, and timer bookkeeping at scale.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{Harness, ms, tcp, udp};
use voxline_transaction::testing::TestMessage;
use voxline_transaction::{
    Incoming, Peer, ShardRouter, ShardedTable, SipMessage, TableConfig, TransactionError,
    TransactionTable, TransportKind, TxEvent,
};

fn bounded(max: usize) -> Harness {
    Harness::with_config(TableConfig {
        max_transactions: max,
        ..TableConfig::default()
    })
}

fn nth(method: &str, i: usize) -> TestMessage {
    TestMessage::request(method, &format!("z9hG4bK{i}")).with_call_id(&format!("call-{i}"))
}

#[test]
fn a_full_table_refuses_new_server_transactions_but_serves_existing_ones() {
    let mut h = bounded(2);
    let a = h.new_server(&nth("INVITE", 0), udp());
    h.new_server(&nth("OPTIONS", 1), udp());
    assert_eq!(h.table.len(), 2);
    let third = nth("INVITE", 2);
    assert_eq!(
        h.incoming(&third, udp()),
        Incoming::Refused {
            request: third.clone()
        }
    );
    assert_eq!(h.table.stats().refused, 1);
    assert_eq!(h.table.len(), 2, "a refused request creates nothing");
    // Existing transactions still absorb retransmissions and take responses.
    assert!(matches!(
        h.incoming(&nth("INVITE", 0), udp()),
        Incoming::Absorbed(_)
    ));
    h.respond(a, &nth("INVITE", 0), 180);
    // ACKs create no transaction and are never refused.
    let ack = TestMessage::request("ACK", "z9hG4bKack");
    assert!(matches!(h.incoming(&ack, udp()), Incoming::Ack { .. }));
    // Client transactions are bounded too.
    assert_eq!(
        h.table.send_request(h.now, nth("BYE", 3), udp()),
        Err(TransactionError::TableFull)
    );
    // Room again once a transaction terminates.
    h.table.terminate(h.now, a.into()).unwrap();
    assert_eq!(h.table.len(), 1);
    assert!(matches!(
        h.incoming(&third, udp()),
        Incoming::Request { .. }
    ));
}

#[test]
fn size_metrics_count_server_and_client_transactions() {
    let mut h = Harness::new();
    for i in 0..5 {
        h.new_server(&nth("REGISTER", i), udp());
    }
    for i in 5..8 {
        h.send(&nth("OPTIONS", i), udp());
    }
    assert_eq!(
        (h.table.len(), h.table.server_len(), h.table.client_len()),
        (8, 5, 3)
    );
    let (_, events) = h.run_until(100_000);
    let terminated = events
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Terminated { .. }))
        .count();
    assert_eq!(terminated, 8);
    assert!(h.table.is_empty());
    assert_eq!(h.table.stats().server_created, 5);
    assert_eq!(h.table.stats().client_created, 3);
}

/// For each transaction kind and transport: how many times the first message
/// goes out in the first 40 s, and how long the transaction lives after its
/// final response (ms), i.e. Timers D, I, J, K.
#[test]
fn reliable_transports_retransmit_nothing_and_linger_zero() {
    struct Case {
        name: &'static str,
        peer: Peer,
        sends: usize,
        linger_ms: Option<u64>,
    }
    let cases = [
        ("INVITE client", udp(), 7, Some(32_000)),
        ("INVITE client", tcp(), 1, Some(0)),
        ("non-INVITE client", udp(), 11, Some(5000)),
        ("non-INVITE client", tcp(), 1, Some(0)),
        ("INVITE server", udp(), 11, Some(5000)),
        ("INVITE server", tcp(), 1, Some(0)),
        ("non-INVITE server", udp(), 1, Some(32_000)),
        ("non-INVITE server", tcp(), 1, Some(0)),
    ]
    .map(|(name, peer, sends, linger_ms)| Case {
        name,
        peer,
        sends,
        linger_ms,
    });
    for case in cases {
        let label = format!("{} over {:?}", case.name, case.peer.transport);
        // Retransmissions of the first message without any answer.
        let mut h = Harness::new();
        let first_sends = match case.name {
            "INVITE client" | "non-INVITE client" => {
                let method = if case.name.starts_with("INVITE") {
                    "INVITE"
                } else {
                    "BYE"
                };
                h.send(&nth(method, 0), case.peer);
                h.sent().len() + h.run_until(40_000).0.len()
            }
            _ => {
                let method = if case.name.starts_with("INVITE") {
                    "INVITE"
                } else {
                    "BYE"
                };
                let request = nth(method, 0);
                let id = h.new_server(&request, case.peer);
                h.respond(id, &request, 486);
                h.sent().len() + h.run_until(40_000).0.len()
            }
        };
        assert_eq!(first_sends, case.sends, "{label}: sends");
        // Linger time after the final response (+ ACK for INVITE server).
        let mut h = Harness::new();
        let request = nth(
            if case.name.starts_with("INVITE") {
                "INVITE"
            } else {
                "BYE"
            },
            0,
        );
        let id = if case.name.ends_with("client") {
            let id = h.send(&request, case.peer);
            h.incoming(&request.build_response(486).with_to_tag("t"), case.peer);
            id.into()
        } else {
            let id = h.new_server(&request, case.peer);
            h.respond(id, &request, 486);
            if case.name.starts_with("INVITE") {
                h.incoming(
                    &request.build_ack_for(&request.build_response(486).with_to_tag("uas")),
                    case.peer,
                );
            }
            id.into()
        };
        let mut ended = h
            .events()
            .into_iter()
            .any(|e| e == TxEvent::Terminated { id })
            .then_some(0);
        if ended.is_none() {
            let (_, events) = h.run_until(100_000);
            ended = events
                .into_iter()
                .find(|(_, e)| *e == TxEvent::Terminated { id })
                .map(|(t, _)| t);
        }
        assert_eq!(ended, case.linger_ms, "{label}: linger");
    }
}

#[test]
fn sharded_table_routes_every_message_to_the_owning_shard() {
    let mut table: ShardedTable<TestMessage> = ShardedTable::new(TableConfig::default(), 4);
    let t0 = std::time::Instant::now();
    let mut shards_used = HashSet::new();
    let mut ids = Vec::new();
    for i in 0..64 {
        let request = nth("INVITE", i);
        let Incoming::Request { id, .. } = table.handle_incoming(t0, request.clone(), udp()) else {
            panic!("new request expected");
        };
        shards_used.insert(id.shard());
        // Retransmission and CANCEL land on the same shard and match.
        assert!(matches!(
            table.handle_incoming(t0, request.clone(), udp()),
            Incoming::Absorbed(_)
        ));
        assert!(matches!(
            table.handle_incoming(t0, request.build_cancel(), udp()),
            Incoming::Cancel { invite: Some(invite), .. } if invite == id
        ));
        ids.push((id, request));
    }
    assert_eq!(shards_used.len(), 4, "64 random branches use all shards");
    assert_eq!(table.len(), 128);
    for (id, request) in &ids {
        table
            .send_response(t0, *id, request.build_response(486))
            .unwrap();
    }
    // Client transactions with any branch: responses find them.
    for i in 0..32 {
        let request = nth("OPTIONS", 100 + i);
        let id = table.send_request(t0, request.clone(), udp()).unwrap();
        let got = table.handle_incoming(t0, request.build_response(200), udp());
        assert!(matches!(got, Incoming::Response { id: r, .. } if r == id));
    }
    // Everything eventually terminates on every shard.
    let mut now = t0;
    for _ in 0..10_000 {
        let Some(next) = table.poll_timeout() else {
            break;
        };
        now = next;
        table.handle_timeout(now);
        while table.poll_transmit().is_some() {}
        while table.poll_event().is_some() {}
    }
    assert!(table.is_empty());
    assert!(now < t0 + ms(400_000));
    assert_eq!(table.stats().server_created, 128);
}

#[test]
fn a_worker_owned_shard_only_accepts_its_own_branches() {
    let router = ShardRouter::new(4);
    let mut shard: TransactionTable<TestMessage> =
        TransactionTable::with_shard(TableConfig::default(), router.clone(), 2);
    let t0 = std::time::Instant::now();
    let mine = TestMessage::request("INVITE", &router.branch(2, "abc"));
    let theirs = TestMessage::request("INVITE", &router.branch(1, "abc"));
    let id = shard.send_request(t0, mine.clone(), udp()).unwrap();
    assert_eq!(id.shard(), 2);
    assert_eq!(
        shard.send_request(t0, theirs, udp()),
        Err(TransactionError::WrongShard { expected: 1 })
    );
    // The I/O layer routes the response by the router to this shard.
    let response = mine.build_response(180);
    assert_eq!(router.shard_of(&response.info().unwrap()), 2);
    assert!(matches!(
        shard.handle_incoming(t0, response, udp()),
        Incoming::Response { .. }
    ));
}

#[test]
fn answered_invites_keep_only_timer_m() {
    // 20,000 INVITE client transactions answered at once over UDP: their
    // Timers A and B are cancelled (lazily) and only Timer M remains.
    let mut table: TransactionTable<TestMessage> = TransactionTable::new(TableConfig::default());
    let t0 = std::time::Instant::now();
    let peer = Peer::new("127.0.0.1:5060".parse().unwrap(), TransportKind::Udp);
    for i in 0..20_000 {
        let request = nth("INVITE", i);
        table.send_request(t0, request.clone(), peer).unwrap();
        table.handle_incoming(t0, request.build_response(200), peer);
    }
    assert_eq!(table.len(), 20_000);
    // Each Accepted transaction has only Timer M left.
    let first = table.poll_timeout().unwrap();
    assert_eq!(first, t0 + ms(32_000));
    table.handle_timeout(first);
    assert!(table.is_empty());
    assert_eq!(table.poll_timeout(), None);
}
