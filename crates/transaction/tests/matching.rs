//! Server-side matching (RFC 3261 §17.2.3): branch + sent-by + method,
//! ACK to INVITE, CANCEL as its own transaction matched to its INVITE
//! (§9.2), and the RFC 2543 fallback.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, Sent, udp};
use voxline_transaction::testing::TestMessage;
use voxline_transaction::{Absorbed, Incoming, MessageError, ServerState, SipMessage, TxEvent};

fn invite() -> TestMessage {
    TestMessage::request("INVITE", "z9hG4bKmatch1")
}

#[test]
fn what_makes_a_request_a_retransmission() {
    let base = invite();
    // (variant, is it the same transaction as `base`?)
    let table = [
        (base.clone(), true),
        (
            base.with(|f| f.sent_by = "CLIENT.example:5060".into()),
            true,
        ),
        (base.with(|f| f.call_id = "other".into()), true), // branch rules
        (base.with_branch(Some("z9hG4bKmatch2")), false),
        (base.with_branch(Some("z9hG4bKMATCH1")), false),
        (
            base.with(|f| f.sent_by = "other.example:5060".into()),
            false,
        ),
        (
            base.with(|f| f.sent_by = "client.example:5070".into()),
            false,
        ),
        (
            base.with(|f| {
                f.method = Some("OPTIONS".into());
                f.cseq_method = "OPTIONS".into();
            }),
            false,
        ),
    ];
    for (variant, same) in table {
        let mut h = Harness::new();
        h.new_server(&base, udp());
        let got = h.incoming(&variant, udp());
        if same {
            assert_eq!(
                got,
                Incoming::Absorbed(Absorbed::RequestRetransmission),
                "{variant:?}"
            );
        } else {
            assert!(
                matches!(got, Incoming::Request { .. }),
                "{variant:?}: {got:?}"
            );
        }
    }
}

#[test]
fn cancel_is_its_own_transaction_matched_to_the_invite() {
    let mut h = Harness::new();
    let inv = invite();
    let invite_id = h.new_server(&inv, udp());
    h.respond(invite_id, &inv, 180);
    h.sent();
    let cancel = inv.build_cancel();
    let Incoming::Cancel {
        id,
        invite,
        request,
    } = h.incoming(&cancel, udp())
    else {
        panic!("expected a CANCEL");
    };
    assert_eq!(invite, Some(invite_id));
    assert_ne!(id, invite_id);
    assert_eq!(request, cancel);
    // The CANCEL does not touch the INVITE transaction.
    assert_eq!(
        h.table.server_state(invite_id),
        Some(ServerState::Proceeding)
    );
    // The TU answers the CANCEL with 200 and the INVITE with 487.
    h.respond(id, &cancel, 200);
    h.respond(invite_id, &inv, 487);
    assert_eq!(h.sent(), [Sent::Response(200), Sent::Response(487)]);
    // A retransmitted CANCEL gets its 200 again; a retransmitted INVITE its 487.
    assert_eq!(
        h.incoming(&cancel, udp()),
        Incoming::Absorbed(Absorbed::RequestRetransmission)
    );
    assert_eq!(
        h.incoming(&inv, udp()),
        Incoming::Absorbed(Absorbed::RequestRetransmission)
    );
    assert_eq!(h.sent(), [Sent::Response(200), Sent::Response(487)]);
}

#[test]
fn cancel_without_its_invite_is_reported_unmatched() {
    let mut h = Harness::new();
    let inv = invite();
    h.new_server(&inv, udp());
    for cancel in [
        inv.build_cancel().with_branch(Some("z9hG4bKunknown")),
        inv.build_cancel()
            .with(|f| f.sent_by = "elsewhere:5060".into()),
    ] {
        let got = h.incoming(&cancel, udp());
        assert!(
            matches!(got, Incoming::Cancel { invite: None, .. }),
            "{got:?}"
        );
    }
}

#[test]
fn rfc2543_fallback_matches_on_uri_tags_call_id_cseq_and_via() {
    let old = invite().with_branch(None);
    let mut h = Harness::new();
    let id = h.new_server(&old, udp());
    assert_eq!(
        h.incoming(&old, udp()),
        Incoming::Absorbed(Absorbed::RequestRetransmission)
    );
    // Any difference in the matched fields is another transaction.
    let variants = [
        old.with(|f| f.cseq = 2),
        old.with_call_id("call-2"),
        old.with(|f| f.from_tag = Some("other".into())),
        old.with(|f| f.uri = "sip:carol@example.com".into()),
        old.with(|f| f.sent_by = "other.example".into()),
        old.with_branch(Some("1234")),
    ];
    for variant in variants {
        assert!(
            matches!(h.incoming(&variant, udp()), Incoming::Request { .. }),
            "{variant:?}"
        );
    }
    // CANCEL is matched to the INVITE the same way.
    let cancel = old.build_cancel();
    assert!(
        matches!(h.incoming(&cancel, udp()), Incoming::Cancel { invite: Some(i), .. } if i == id)
    );
    // The ACK must carry the To tag of the final response (§17.2.3).
    h.respond(id, &old, 486); // To tag "uas"
    let wrong_tag = old.build_ack_for(&old.build_response(486).with_to_tag("nope"));
    assert_eq!(
        h.incoming(&wrong_tag, udp()),
        Incoming::Ack {
            request: wrong_tag.clone(),
            invite: None
        }
    );
    assert_eq!(h.table.server_state(id), Some(ServerState::Completed));
    let ack = old.build_ack_for(&old.build_response(486).with_to_tag("uas"));
    assert_eq!(
        h.incoming(&ack, udp()),
        Incoming::Absorbed(Absorbed::AckForNonSuccess)
    );
    assert_eq!(h.table.server_state(id), Some(ServerState::Confirmed));
}

#[test]
fn rfc2543_and_rfc3261_requests_do_not_collide() {
    let mut h = Harness::new();
    let new = invite();
    let old = invite().with_branch(None);
    h.new_server(&new, udp());
    assert!(matches!(h.incoming(&old, udp()), Incoming::Request { .. }));
    assert_eq!(h.table.server_len(), 2);
}

#[test]
fn malformed_messages_are_reported_not_matched() {
    let mut h = Harness::new();
    let table = [
        (TestMessage::malformed(), MessageError::MissingHeader("Via")),
        (
            invite().with(|f| f.cseq_method = "BYE".into()),
            MessageError::CSeqMethodMismatch,
        ),
        (
            invite().build_response(700),
            MessageError::MalformedStartLine,
        ),
        (
            invite().build_response(99),
            MessageError::MalformedStartLine,
        ),
    ];
    for (msg, error) in table {
        assert_eq!(
            h.incoming(&msg, udp()),
            Incoming::Malformed {
                message: msg.clone(),
                error
            }
        );
    }
    assert!(h.table.is_empty());
    assert_eq!(h.table.stats().malformed, 4);
}

#[test]
fn ids_of_terminated_transactions_never_alias_new_ones() {
    let mut h = Harness::new();
    let inv = invite();
    let first = h.new_server(&inv, common::tcp());
    h.respond(first, &inv, 486);
    h.incoming(
        &inv.build_ack_for(&inv.build_response(486).with_to_tag("uas")),
        common::tcp(),
    );
    assert_eq!(h.events(), [TxEvent::Terminated { id: first.into() }]);
    let second = h.new_server(&inv, common::tcp());
    assert_ne!(first, second);
    assert_eq!(h.table.server_state(first), None);
    assert_eq!(h.table.server_state(second), Some(ServerState::Proceeding));
}
