//! Server transactions on a virtual clock: every state transition, Timers
//! G, H, I, J, L, the 100 Trying timer, retransmission and ACK absorption
//! (RFC 3261 §17.2, RFC 6026).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, Sent, ms, tcp, udp};
use voxline_transaction::testing::TestMessage;
use voxline_transaction::{
    Absorbed, Incoming, ServerState, SipMessage, Timer, TimerConfig, TransactionError,
    TryingPolicy, TxEvent, TxId,
};

fn invite() -> TestMessage {
    TestMessage::request("INVITE", "z9hG4bKserver1")
}

fn register() -> TestMessage {
    TestMessage::request("REGISTER", "z9hG4bKserver2")
}

fn ack_for(request: &TestMessage) -> TestMessage {
    request.build_ack_for(&request.build_response(486).with_to_tag("uas"))
}

fn resp(status: u16) -> Sent {
    Sent::Response(status)
}

/// (policy, when the TU responds, expected transmissions with their times)
type TryingCase = (TryingPolicy, Option<u64>, Vec<(u64, Sent)>);

#[test]
fn trying_is_sent_after_200ms_unless_the_tu_responds() {
    let table: [TryingCase; 5] = [
        (TryingPolicy::After(ms(200)), None, vec![(200, resp(100))]),
        (
            TryingPolicy::After(ms(200)),
            Some(150),
            vec![(150, resp(180))],
        ),
        (
            TryingPolicy::After(ms(200)),
            Some(250),
            vec![(200, resp(100)), (250, resp(180))],
        ),
        (TryingPolicy::Immediate, None, vec![(0, resp(100))]),
        (TryingPolicy::Never, None, vec![]),
    ];
    for (policy, respond_at, expected) in table {
        let mut h = Harness::with_timers(TimerConfig::default().trying(policy));
        let inv = invite();
        let id = h.new_server(&inv, udp());
        let mut sent: Vec<(u64, Sent)> = h.sent().into_iter().map(|s| (0, s)).collect();
        if let Some(at) = respond_at {
            sent.extend(h.run_until(at).0);
            h.respond(id, &inv, 180);
            sent.extend(h.sent().into_iter().map(|s| (at, s)));
        }
        sent.extend(h.run_until(1000).0);
        assert_eq!(sent, expected, "{policy:?}, TU at {respond_at:?}");
        assert_eq!(h.table.server_state(id), Some(ServerState::Proceeding));
    }
}

#[test]
fn invite_retransmission_gets_the_last_provisional_and_is_never_delivered_twice() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.new_server(&inv, udp());
    // Before any response: absorbed silently.
    assert_eq!(
        h.incoming(&inv, udp()),
        Incoming::Absorbed(Absorbed::RequestRetransmission)
    );
    assert!(h.sent().is_empty());
    h.respond(id, &inv, 180);
    h.respond(id, &inv, 183);
    assert_eq!(h.sent(), [resp(180), resp(183)]);
    for _ in 0..3 {
        assert_eq!(
            h.incoming(&inv, udp()),
            Incoming::Absorbed(Absorbed::RequestRetransmission)
        );
        assert_eq!(h.sent(), [resp(183)]);
    }
    assert_eq!(h.table.stats().server_created, 1);
    assert_eq!(h.table.stats().absorbed, 4);
}

#[test]
fn timer_g_retransmits_the_final_response_until_timer_h() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.new_server(&inv, udp());
    h.respond(id, &inv, 486);
    assert_eq!(h.sent(), [resp(486)]);
    assert_eq!(h.table.server_state(id), Some(ServerState::Completed));
    let (sent, events) = h.run_until(40_000);
    let times: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    // G: T1, 2·T1, 4·T1, then capped at T2 (§17.2.1).
    assert_eq!(
        times,
        [
            500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert!(sent.iter().all(|(_, s)| *s == resp(486)));
    let id = TxId::Server(id);
    assert_eq!(
        events,
        [
            (
                32_000,
                TxEvent::Timeout {
                    id,
                    timer: Timer::H
                }
            ),
            (32_000, TxEvent::Terminated { id })
        ]
    );
}

#[test]
fn reliable_completed_has_no_timer_g_but_timer_h() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.new_server(&inv, tcp());
    h.respond(id, &inv, 404);
    h.sent();
    assert_eq!(h.table.deadline(id.into(), Timer::G), None);
    let (sent, events) = h.run_until(40_000);
    assert!(sent.is_empty());
    assert!(matches!(
        events[0],
        (
            32_000,
            TxEvent::Timeout {
                timer: Timer::H,
                ..
            }
        )
    ));
}

#[test]
fn completed_resends_the_final_on_invite_retransmission() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.new_server(&inv, udp());
    h.respond(id, &inv, 503);
    h.sent();
    assert_eq!(
        h.incoming(&inv, udp()),
        Incoming::Absorbed(Absorbed::RequestRetransmission)
    );
    assert_eq!(h.sent(), [resp(503)]);
}

#[test]
fn ack_for_non_2xx_is_absorbed_and_timer_i_ends_confirmed() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.new_server(&inv, udp());
    h.respond(id, &inv, 486);
    h.sent();
    h.at(700);
    let ack = ack_for(&inv);
    assert_eq!(
        h.incoming(&ack, udp()),
        Incoming::Absorbed(Absorbed::AckForNonSuccess)
    );
    assert_eq!(h.table.server_state(id), Some(ServerState::Confirmed));
    // ACK and INVITE retransmissions in Confirmed: absorbed, nothing sent.
    assert_eq!(
        h.incoming(&ack, udp()),
        Incoming::Absorbed(Absorbed::AckForNonSuccess)
    );
    assert_eq!(
        h.incoming(&inv, udp()),
        Incoming::Absorbed(Absorbed::RequestRetransmission)
    );
    let (sent, events) = h.run_until(40_000);
    assert!(sent.is_empty(), "Timer G stopped by the ACK");
    assert_eq!(events, [(5700, TxEvent::Terminated { id: id.into() })]);
}

#[test]
fn timer_i_is_zero_on_reliable_transports() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.new_server(&inv, tcp());
    h.respond(id, &inv, 486);
    h.incoming(&ack_for(&inv), tcp());
    assert_eq!(h.events(), [TxEvent::Terminated { id: id.into() }]);
    // A late ACK then matches nothing and is handed up as transaction-less.
    let ack = ack_for(&inv);
    assert_eq!(
        h.incoming(&ack, tcp()),
        Incoming::Ack {
            request: ack.clone(),
            invite: None
        }
    );
}

#[test]
fn early_ack_is_absorbed_without_changing_state() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.new_server(&inv, udp());
    assert_eq!(
        h.incoming(&ack_for(&inv), udp()),
        Incoming::Absorbed(Absorbed::EarlyAck)
    );
    assert_eq!(h.table.server_state(id), Some(ServerState::Proceeding));
}

#[test]
fn accepted_absorbs_invites_passes_2xx_and_acks_until_timer_l() {
    for peer in [udp(), tcp()] {
        let mut h = Harness::new();
        let inv = invite();
        let id = h.new_server(&inv, peer);
        h.respond(id, &inv, 200);
        assert_eq!(h.sent(), [resp(200)]);
        assert_eq!(h.table.server_state(id), Some(ServerState::Accepted));
        // RFC 6026: INVITE retransmissions are absorbed without a response ...
        assert_eq!(
            h.incoming(&inv, peer),
            Incoming::Absorbed(Absorbed::RequestRetransmission)
        );
        assert!(h.sent().is_empty());
        // ... the TU's 2xx retransmissions pass through ...
        h.at(500);
        h.respond(id, &inv, 200);
        assert_eq!(h.sent(), [resp(200)]);
        // ... but nothing else.
        let err = h.table.send_response(h.now, id, inv.build_response(486));
        assert_eq!(
            err,
            Err(TransactionError::InvalidState {
                state: ServerState::Accepted,
                status: 486
            })
        );
        // An ACK reusing the INVITE's branch goes to the TU with the INVITE's id.
        let ack = inv.build_ack_for(&inv.build_response(200).with_to_tag("uas"));
        assert_eq!(
            h.incoming(&ack, peer),
            Incoming::Ack {
                request: ack.clone(),
                invite: Some(id)
            }
        );
        let (sent, events) = h.run_until(40_000);
        assert!(sent.is_empty(), "no 2xx retransmission by the transaction");
        assert_eq!(events, [(32_000, TxEvent::Terminated { id: id.into() })]);
    }
}

#[test]
fn ack_for_2xx_with_a_new_branch_is_transaction_less() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.new_server(&inv, udp());
    h.respond(id, &inv, 200);
    let ack = TestMessage::request("ACK", "z9hG4bKnewbranch").with_to_tag("uas");
    assert_eq!(
        h.incoming(&ack, udp()),
        Incoming::Ack {
            request: ack.clone(),
            invite: None
        }
    );
    assert_eq!(h.table.server_state(id), Some(ServerState::Accepted));
}

#[test]
fn non_invite_trying_proceeding_completed_and_timer_j() {
    let mut h = Harness::new();
    let reg = register();
    let id = h.new_server(&reg, udp());
    assert_eq!(h.table.server_state(id), Some(ServerState::Trying));
    // Trying: retransmissions absorbed silently.
    assert_eq!(
        h.incoming(&reg, udp()),
        Incoming::Absorbed(Absorbed::RequestRetransmission)
    );
    assert!(h.sent().is_empty(), "no 100 Trying for non-INVITE");
    h.respond(id, &reg, 100);
    assert_eq!(h.table.server_state(id), Some(ServerState::Proceeding));
    h.incoming(&reg, udp());
    assert_eq!(h.sent(), [resp(100), resp(100)]);
    h.at(1000);
    h.respond(id, &reg, 200);
    assert_eq!(h.table.server_state(id), Some(ServerState::Completed));
    h.incoming(&reg, udp());
    assert_eq!(h.sent(), [resp(200), resp(200)]);
    let err = h.table.send_response(h.now, id, reg.build_response(200));
    assert!(matches!(
        err,
        Err(TransactionError::InvalidState {
            state: ServerState::Completed,
            ..
        })
    ));
    let (sent, events) = h.run_until(60_000);
    assert!(sent.is_empty(), "no Timer G for non-INVITE");
    assert_eq!(events, [(33_000, TxEvent::Terminated { id: id.into() })]);
}

#[test]
fn timer_j_is_zero_on_reliable_transports() {
    let mut h = Harness::new();
    let reg = register();
    let id = h.new_server(&reg, tcp());
    h.respond(id, &reg, 200);
    assert_eq!(h.sent(), [resp(200)]);
    assert_eq!(h.events(), [TxEvent::Terminated { id: id.into() }]);
    // The same request again is a new transaction now.
    assert!(matches!(h.incoming(&reg, tcp()), Incoming::Request { .. }));
}

#[test]
fn lifetime_ends_server_transactions_the_tu_never_answers() {
    let table = [(register(), 32_000), (invite(), 300_000)];
    for (request, expected_ms) in table {
        let mut h = Harness::with_timers(TimerConfig::default().trying(TryingPolicy::Never));
        let id = TxId::Server(h.new_server(&request, udp()));
        let (_, events) = h.run_until(400_000);
        assert_eq!(
            events,
            [
                (
                    expected_ms,
                    TxEvent::Timeout {
                        id,
                        timer: Timer::Lifetime
                    }
                ),
                (expected_ms, TxEvent::Terminated { id })
            ]
        );
    }
}

#[test]
fn transport_error_terminates_except_in_accepted() {
    let mut h = Harness::new();
    let reg = register();
    let id = h.new_server(&reg, udp());
    h.respond(id, &reg, 200);
    let tx = h.transmits().remove(0).tx;
    h.table.transport_error(h.now, tx).unwrap();
    assert_eq!(
        h.events(),
        [
            TxEvent::TransportError { id: tx },
            TxEvent::Terminated { id: tx }
        ]
    );

    let inv = invite();
    let id = h.new_server(&inv, udp());
    h.respond(id, &inv, 200);
    h.table.transport_error(h.now, id.into()).unwrap();
    assert_eq!(h.events(), [TxEvent::TransportError { id: id.into() }]);
    assert_eq!(h.table.server_state(id), Some(ServerState::Accepted));
}

#[test]
fn send_response_rejects_bad_input() {
    let mut h = Harness::new();
    let reg = register();
    let id = h.new_server(&reg, udp());
    let bad_status = reg.build_response(99);
    assert_eq!(
        h.table.send_response(h.now, id, bad_status),
        Err(TransactionError::InvalidStatus(99))
    );
    assert_eq!(
        h.table.send_response(h.now, id, reg.clone()),
        Err(TransactionError::NotAResponse)
    );
    h.table.terminate(h.now, id.into()).unwrap();
    assert_eq!(
        h.table.send_response(h.now, id, reg.build_response(200)),
        Err(TransactionError::UnknownTransaction)
    );
    assert!(h.sent().is_empty());
}
