//! Client transactions on a virtual clock: every state transition and
//! Timers A, B, D, E, F, K, M (RFC 3261 §17.1, RFC 6026).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, Sent, ms, tcp, udp};
use voxline_transaction::testing::TestMessage;
use voxline_transaction::{
    Absorbed, CancelOutcome, ClientState, Incoming, SipMessage, Timer, TimerConfig,
    TransactionError, TxEvent, TxId,
};

fn invite() -> TestMessage {
    TestMessage::request("INVITE", "z9hG4bKclient1")
}

fn options() -> TestMessage {
    TestMessage::request("OPTIONS", "z9hG4bKclient2")
}

fn req(method: &str) -> Sent {
    Sent::Request(method.to_owned())
}

#[test]
fn timer_a_doubles_until_timer_b_times_out() {
    let mut h = Harness::new();
    let id = h.send(&invite(), udp());
    assert_eq!(h.sent(), [req("INVITE")]);
    assert_eq!(h.table.client_state(id), Some(ClientState::Calling));
    let (sent, events) = h.run_until(40_000);
    let times: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    // Timer A: T1, 2·T1, 4·T1 ... (no T2 cap for INVITE), until Timer B at 64·T1.
    assert_eq!(times, [500, 1500, 3500, 7500, 15_500, 31_500]);
    assert!(sent.iter().all(|(_, s)| *s == req("INVITE")));
    let id = TxId::Client(id);
    assert_eq!(
        events,
        [
            (
                32_000,
                TxEvent::Timeout {
                    id,
                    timer: Timer::B
                }
            ),
            (32_000, TxEvent::Terminated { id })
        ]
    );
    assert!(h.table.is_empty());
    assert_eq!(h.table.poll_timeout(), None);
    assert_eq!(h.table.stats().timeouts, 1);
}

#[test]
fn timers_follow_a_configured_t1() {
    let mut h = Harness::with_timers(TimerConfig::with_base(ms(100), ms(400), ms(1000)));
    h.send(&invite(), udp());
    h.sent();
    let (sent, events) = h.run_until(10_000);
    let times: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [100, 300, 700, 1500, 3100, 6300]);
    assert!(matches!(
        events[0],
        (
            6400,
            TxEvent::Timeout {
                timer: Timer::B,
                ..
            }
        )
    ));
}

#[test]
fn reliable_invite_never_retransmits_but_times_out_with_b() {
    let mut h = Harness::new();
    h.send(&invite(), tcp());
    assert_eq!(h.sent().len(), 1);
    let (sent, events) = h.run_until(40_000);
    assert!(sent.is_empty());
    assert!(matches!(
        events[0],
        (
            32_000,
            TxEvent::Timeout {
                timer: Timer::B,
                ..
            }
        )
    ));
}

#[test]
fn provisional_moves_calling_to_proceeding_and_stops_a_and_b() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.send(&inv, udp());
    h.sent();
    h.run_until(700); // after the first retransmission at 500
    for status in [100, 180, 183] {
        let got = h.incoming(&inv.build_response(status), udp());
        assert_eq!(
            got,
            Incoming::Response {
                id,
                response: inv.build_response(status)
            }
        );
        assert_eq!(h.table.client_state(id), Some(ClientState::Proceeding));
    }
    assert_eq!(h.table.deadline(id.into(), Timer::A), None);
    assert_eq!(h.table.deadline(id.into(), Timer::B), None);
    // No retransmission, no timeout for minutes: Proceeding has no RFC timer.
    let (sent, events) = h.run_until(200_000);
    assert!(sent.is_empty() && events.is_empty());
    assert_eq!(h.table.client_state(id), Some(ClientState::Proceeding));
}

#[test]
fn lifetime_bounds_an_invite_stuck_in_proceeding() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.send(&inv, udp());
    h.incoming(&inv.build_response(180), udp());
    let (_, events) = h.run_until(400_000);
    let id = TxId::Client(id);
    assert_eq!(
        events,
        [
            (
                300_000,
                TxEvent::Timeout {
                    id,
                    timer: Timer::Lifetime
                }
            ),
            (300_000, TxEvent::Terminated { id })
        ]
    );
}

#[test]
fn non_2xx_final_is_acked_and_timer_d_absorbs_retransmissions() {
    for (from_state_status, peer) in [(None, udp()), (Some(180), udp())] {
        let mut h = Harness::new();
        let inv = invite();
        let id = h.send(&inv, peer);
        if let Some(status) = from_state_status {
            h.incoming(&inv.build_response(status), peer);
        }
        h.sent();
        let busy = inv.build_response(486).with_to_tag("t1");
        assert!(matches!(h.incoming(&busy, peer), Incoming::Response { .. }));
        assert_eq!(h.table.client_state(id), Some(ClientState::Completed));
        let ack = h.transmits();
        assert_eq!(ack.len(), 1);
        let ack_info = ack[0].msg.info().unwrap();
        assert_eq!(ack_info.method(), Some("ACK"));
        assert_eq!(ack_info.via.branch, Some("z9hG4bKclient1"));
        assert_eq!(ack_info.to_tag, Some("t1"));
        // A retransmitted final response: ACK again, nothing to the TU.
        h.at(1000);
        assert_eq!(
            h.incoming(&busy, peer),
            Incoming::Absorbed(Absorbed::ResponseRetransmission)
        );
        assert_eq!(h.sent(), [req("ACK")]);
        // Timer D (32 s on UDP, from the final response) ends it, without a
        // timeout event.
        let (_, events) = h.run_until(40_000);
        assert_eq!(events, [(32_000, TxEvent::Terminated { id: id.into() })]);
    }
}

#[test]
fn timer_d_is_zero_on_reliable_transports() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.send(&inv, tcp());
    h.incoming(&inv.build_response(603).with_to_tag("t"), tcp());
    assert_eq!(h.sent(), [req("INVITE"), req("ACK")]);
    assert_eq!(h.events(), [TxEvent::Terminated { id: id.into() }]);
    assert_eq!(h.table.client_state(id), None);
}

#[test]
fn accepted_passes_every_2xx_up_until_timer_m() {
    // From Calling and from Proceeding, over unreliable and reliable transports.
    for (peer, provisional) in [(udp(), false), (udp(), true), (tcp(), false), (tcp(), true)] {
        let mut h = Harness::new();
        let inv = invite();
        let id = h.send(&inv, peer);
        h.sent();
        if provisional {
            h.incoming(&inv.build_response(183), peer);
            assert_eq!(h.table.client_state(id), Some(ClientState::Proceeding));
        }
        let ok = inv.build_response(200).with_to_tag("a");
        assert!(matches!(h.incoming(&ok, peer), Incoming::Response { .. }));
        assert_eq!(h.table.client_state(id), Some(ClientState::Accepted));
        assert!(h.sent().is_empty(), "the ACK for 2xx is the TU's job");
        // RFC 6026: retransmitted and forked 2xx responses go to the TU ...
        let fork = inv.build_response(200).with_to_tag("b");
        assert!(matches!(h.incoming(&ok, peer), Incoming::Response { .. }));
        assert!(matches!(h.incoming(&fork, peer), Incoming::Response { .. }));
        // ... other responses are absorbed.
        assert_eq!(
            h.incoming(&inv.build_response(180), peer),
            Incoming::Absorbed(Absorbed::LateResponse)
        );
        assert_eq!(
            h.incoming(&inv.build_response(500), peer),
            Incoming::Absorbed(Absorbed::LateResponse)
        );
        assert_eq!(
            h.table.deadline(id.into(), Timer::M),
            Some(h.t0 + ms(32_000))
        );
        let (sent, events) = h.run_until(40_000);
        assert!(sent.is_empty());
        assert_eq!(events, [(32_000, TxEvent::Terminated { id: id.into() })]);
        // Afterwards a 2xx matches nothing.
        assert_eq!(h.incoming(&ok, peer), Incoming::Stray(ok.clone()));
    }
}

#[test]
fn timer_e_doubles_to_t2_until_timer_f() {
    let mut h = Harness::new();
    let id = h.send(&options(), udp());
    h.sent();
    let (sent, events) = h.run_until(40_000);
    let times: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        [
            500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    let id = TxId::Client(id);
    assert_eq!(
        events,
        [
            (
                32_000,
                TxEvent::Timeout {
                    id,
                    timer: Timer::F
                }
            ),
            (32_000, TxEvent::Terminated { id })
        ]
    );
}

#[test]
fn timer_e_uses_t2_in_proceeding() {
    let mut h = Harness::new();
    let opt = options();
    let id = h.send(&opt, udp());
    h.sent();
    h.run_until(600); // retransmission at 500, next E at 1500
    h.sent();
    assert!(matches!(
        h.incoming(&opt.build_response(100), udp()),
        Incoming::Response { .. }
    ));
    assert_eq!(h.table.client_state(id), Some(ClientState::Proceeding));
    let (sent, _) = h.run_until(14_000);
    let times: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [1500, 5500, 9500, 13_500]);
}

#[test]
fn non_invite_final_completes_and_timer_k_absorbs_retransmissions() {
    for provisional in [false, true] {
        let mut h = Harness::new();
        let opt = options();
        let id = h.send(&opt, udp());
        h.sent();
        if provisional {
            h.incoming(&opt.build_response(100), udp());
        }
        let ok = opt.build_response(200);
        assert!(matches!(h.incoming(&ok, udp()), Incoming::Response { .. }));
        assert_eq!(h.table.client_state(id), Some(ClientState::Completed));
        assert_eq!(
            h.incoming(&ok, udp()),
            Incoming::Absorbed(Absorbed::LateResponse)
        );
        let (sent, events) = h.run_until(10_000);
        assert!(sent.is_empty(), "no retransmission in Completed");
        assert_eq!(events, [(5000, TxEvent::Terminated { id: id.into() })]);
    }
}

#[test]
fn timer_k_is_zero_on_reliable_transports() {
    let mut h = Harness::new();
    let opt = options();
    let id = h.send(&opt, tcp());
    h.incoming(&opt.build_response(404), tcp());
    assert_eq!(h.events(), [TxEvent::Terminated { id: id.into() }]);
    assert!(h.table.is_empty());
}

#[test]
fn transport_error_terminates_and_informs_the_tu() {
    let mut h = Harness::new();
    let id = h.send(&invite(), udp());
    let transmit = h.transmits().remove(0);
    assert_eq!(transmit.tx, TxId::Client(id));
    h.table.transport_error(h.now, transmit.tx).unwrap();
    assert_eq!(
        h.events(),
        [
            TxEvent::TransportError { id: id.into() },
            TxEvent::Terminated { id: id.into() }
        ]
    );
    assert_eq!(
        h.table.transport_error(h.now, transmit.tx),
        Err(TransactionError::UnknownTransaction)
    );
    let (sent, _) = h.run_until(40_000);
    assert!(sent.is_empty(), "nothing is sent after termination");
}

#[test]
fn responses_match_branch_and_cseq_method() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.send(&inv, udp());
    // Same branch, other CSeq method (a CANCEL's response): not the INVITE's.
    let cancel_ok = inv.build_cancel().build_response(200);
    assert_eq!(
        h.incoming(&cancel_ok, udp()),
        Incoming::Stray(cancel_ok.clone())
    );
    // Other branch: stray.
    let other = inv.build_response(180).with_branch(Some("z9hG4bKother"));
    assert_eq!(h.incoming(&other, udp()), Incoming::Stray(other.clone()));
    let no_branch = inv.build_response(180).with_branch(None);
    assert_eq!(
        h.incoming(&no_branch, udp()),
        Incoming::Stray(no_branch.clone())
    );
    assert_eq!(h.table.client_state(id), Some(ClientState::Calling));
    assert_eq!(h.table.stats().stray_responses, 3);
}

#[test]
fn send_request_rejects_what_cannot_be_a_client_transaction() {
    let mut h = Harness::new();
    let inv = invite();
    let table = [
        (inv.build_response(200), TransactionError::NotARequest),
        (
            TestMessage::request("ACK", "z9hG4bKa"),
            TransactionError::AckNotATransaction,
        ),
        (inv.with_branch(None), TransactionError::MissingBranch),
        (
            TestMessage::malformed(),
            TransactionError::Malformed(voxline_transaction::MessageError::MissingHeader("Via")),
        ),
    ];
    for (msg, error) in table {
        assert_eq!(h.table.send_request(h.now, msg, udp()), Err(error));
    }
    h.send(&inv, udp());
    assert_eq!(
        h.table.send_request(h.now, inv.clone(), udp()),
        Err(TransactionError::DuplicateTransaction)
    );
    // A CANCEL with the same branch is a separate transaction.
    assert!(
        h.table
            .send_request(h.now, inv.build_cancel(), udp())
            .is_ok()
    );
    assert_eq!(h.table.client_len(), 2);
}

#[test]
fn cancel_after_provisional_is_sent_at_once() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.send(&inv, udp());
    h.incoming(&inv.build_response(180), udp());
    h.sent();
    let CancelOutcome::Sent(cancel) = h.table.cancel_client(h.now, id).unwrap() else {
        panic!("expected the CANCEL to be sent");
    };
    assert_eq!(h.sent(), [req("CANCEL")]);
    assert_eq!(
        h.table.cancel_client(h.now, id),
        Err(TransactionError::NotCancellable)
    );
    // The CANCEL's 200 and the INVITE's 487 each reach their own transaction.
    let cancel_ok = inv.build_cancel().build_response(200);
    assert_eq!(
        h.incoming(&cancel_ok, udp()),
        Incoming::Response {
            id: cancel,
            response: cancel_ok.clone()
        }
    );
    let terminated = inv.build_response(487).with_to_tag("t");
    assert_eq!(
        h.incoming(&terminated, udp()),
        Incoming::Response {
            id,
            response: terminated.clone()
        }
    );
    assert_eq!(h.sent(), [req("ACK")]);
}

#[test]
fn cancel_before_provisional_waits_for_one() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.send(&inv, udp());
    h.sent();
    assert_eq!(h.table.cancel_client(h.now, id), Ok(CancelOutcome::Pending));
    assert!(
        h.sent().is_empty(),
        "§9.1: no CANCEL before a provisional response"
    );
    h.incoming(&inv.build_response(100), udp());
    assert_eq!(h.sent(), [req("CANCEL")]);
    let events = h.events();
    assert!(matches!(events.as_slice(), [TxEvent::CancelSent { invite, .. }] if *invite == id));
}

#[test]
fn pending_cancel_is_dropped_when_a_final_response_comes_first() {
    let mut h = Harness::new();
    let inv = invite();
    let id = h.send(&inv, udp());
    h.table.cancel_client(h.now, id).unwrap();
    h.sent();
    h.incoming(&inv.build_response(200), udp());
    assert!(h.sent().is_empty());
    assert_eq!(
        h.table.cancel_client(h.now, id),
        Err(TransactionError::NotCancellable)
    );
    let opt = h.send(&options(), udp());
    assert_eq!(
        h.table.cancel_client(h.now, opt),
        Err(TransactionError::NotCancellable)
    );
}

#[test]
fn terminate_abandons_a_client_transaction_silently() {
    // A proxy whose Timer C fires before any provisional response (§16.8).
    let mut h = Harness::new();
    let id = h.send(&invite(), udp());
    h.sent();
    h.table.terminate(h.now, id.into()).unwrap();
    assert_eq!(h.events(), [TxEvent::Terminated { id: id.into() }]);
    let (sent, events) = h.run_until(60_000);
    assert!(sent.is_empty() && events.is_empty());
}
