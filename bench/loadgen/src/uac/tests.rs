//! Flow tests on a virtual clock: requests are read back from the outbox, replies are
//! built from them as a server would.

use super::*;
use crate::message::parse;
use crate::response::{ResponseSpec, write_response};

fn cfg(scenario: Scenario) -> UacConfig {
    UacConfig {
        scenario,
        domain: "example.com".into(),
        local: "127.0.0.1:40000".parse().unwrap(),
        user_prefix: "u".into(),
        first_user: 0,
        users: 10,
        first_callee: 0,
        callees: 5,
        expires: 600,
        password: Some("pw-{user}".into()),
        algorithm: Algorithm::Md5,
        timing: Timing::default(),
        slots: 4,
        run_id: 0xabcdef,
        leg: Leg::Uac,
    }
}

fn take(out: &mut Outbox) -> Vec<Vec<u8>> {
    let v = out.iter().map(|(_, b)| b.to_vec()).collect();
    out.clear();
    v
}

fn reply(req: &[u8], code: u16, extra: &[&str]) -> Vec<u8> {
    let m = parse(req).unwrap();
    let mut buf = [0u8; 4096];
    let mut w = Writer::new(&mut buf);
    let spec = ResponseSpec {
        code,
        reason: b"X",
        to_tag: if code > 100 { b"srv" } else { b"" },
        copy_record_route: false,
        contact: None,
    };
    write_response(&mut w, &m, &spec).unwrap();
    let mut v = w.written().to_vec();
    // Insert extra headers before the blank line.
    let at = v.len() - 2;
    let extra: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
    v.splice(at..at, extra.into_bytes());
    v
}

fn s(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn options_flow_completes_and_counts_duplicates() {
    let mut u = Uac::new(cfg(Scenario::Options)).unwrap();
    let mut out = Outbox::new();
    assert!(u.start_flow(0, &mut out));
    let reqs = take(&mut out);
    assert_eq!(reqs.len(), 1);
    let m = parse(&reqs[0]).unwrap();
    assert_eq!(m.method(), Some(&b"OPTIONS"[..]));
    let (slot, flow, txn) = parse_branch(m.branch).unwrap();
    assert_eq!((flow, txn), (1, 1));
    assert_eq!(parse_call_id(m.call_id), Some((slot, 1)));
    assert!(s(m.call_id).ends_with(".00abcdef@loadgen"));
    let ok = reply(&reqs[0], 200, &[]);
    u.on_datagram(1500, &ok, &mut out);
    assert_eq!(u.stats.counters.flows_completed, 1);
    assert_eq!(u.outstanding(), 0);
    assert_eq!(u.stats.latency_us.max(), 1500);
    // The same 200 again is a duplicate, not a second completion.
    u.on_datagram(1600, &ok, &mut out);
    assert_eq!(u.stats.counters.duplicate_replies, 1);
    assert_eq!(u.stats.counters.flows_completed, 1);
    assert_eq!(u.stats.counters.replies_with(200), 2);
    assert!(out.is_empty());
}

#[test]
fn timer_e_doubles_to_t2_and_timer_f_times_out() {
    let mut u = Uac::new(cfg(Scenario::Register)).unwrap();
    let mut out = Outbox::new();
    u.start_flow(0, &mut out);
    let first = take(&mut out);
    let mut sent_at = vec![];
    let mut now = 0;
    while now <= 32_000_000 {
        u.on_timers(now, &mut out);
        for r in take(&mut out) {
            assert_eq!(r, first[0], "a retransmission is byte-identical");
            sent_at.push(now);
        }
        now += 10_000;
    }
    // 0.5, 1.5, 3.5, 7.5, 11.5, ... (intervals 0.5, 1, 2, 4, 4, ...)
    assert_eq!(
        &sent_at[..5],
        &[500_000, 1_500_000, 3_500_000, 7_500_000, 11_500_000]
    );
    assert_eq!(u.stats.counters.retransmissions, sent_at.len() as u64);
    assert_eq!(u.stats.counters.flows_timed_out, 1);
    assert_eq!(u.outstanding(), 0);
}

#[test]
fn slots_run_out_and_are_reused() {
    let mut u = Uac::new(cfg(Scenario::Options)).unwrap();
    let mut out = Outbox::new();
    for _ in 0..4 {
        assert!(u.start_flow(0, &mut out));
    }
    assert!(!u.start_flow(0, &mut out));
    assert_eq!(u.stats.counters.flows_blocked, 1);
    let reqs = take(&mut out);
    u.on_datagram(10, &reply(&reqs[2], 200, &[]), &mut out);
    assert!(u.start_flow(20, &mut out));
    let again = take(&mut out);
    let m = parse(&again[0]).unwrap();
    let (slot, flow, _) = parse_branch(m.branch).unwrap();
    let (slot2, _, _) = parse_branch(parse(&reqs[2]).unwrap().branch).unwrap();
    assert_eq!(slot, slot2);
    assert_eq!(flow, 2, "a reused slot starts a new flow generation");
    // A late reply to the old generation is a duplicate.
    u.on_datagram(30, &reply(&reqs[2], 200, &[]), &mut out);
    assert_eq!(u.stats.counters.duplicate_replies, 1);
}

#[test]
fn register_auth_answers_the_challenge() {
    let mut u = Uac::new(cfg(Scenario::RegisterAuth)).unwrap();
    let mut out = Outbox::new();
    u.start_flow(0, &mut out);
    let r1 = take(&mut out);
    let m1 = parse(&r1[0]).unwrap();
    assert!(s(&r1[0]).contains("Expires: 600\r\n"));
    assert!(s(&r1[0]).contains("Contact: <sip:u00000000@127.0.0.1:40000>\r\n"));
    let challenge = reply(
        &r1[0],
        401,
        &[
            "WWW-Authenticate: Digest realm=\"example.com\", nonce=\"abc123\", qop=\"auth\", opaque=\"op\"",
        ],
    );
    u.on_datagram(100, &challenge, &mut out);
    let r2 = take(&mut out);
    assert_eq!(r2.len(), 1);
    let m2 = parse(&r2[0]).unwrap();
    assert_eq!(m2.cseq, 2);
    assert_eq!(m2.call_id, m1.call_id);
    assert_ne!(m2.branch, m1.branch);
    let text = s(&r2[0]);
    let auth_line = text
        .lines()
        .find(|l| l.starts_with("Authorization: "))
        .unwrap();
    // Recompute the expected response independently of the writer.
    let ch =
        digest::parse_challenge(b"Digest realm=\"example.com\", nonce=\"abc123\", qop=\"auth\"")
            .unwrap();
    let cnonce = auth_line
        .split("cnonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let cr = Credentials {
        username: b"u00000000",
        password: b"pw-u00000000",
        method: b"REGISTER",
        uri: b"sip:example.com",
        cnonce: cnonce.as_bytes(),
        nc: 1,
    };
    let mut expect = [0u8; 64];
    let n = digest::response(&ch, &cr, &mut expect);
    assert!(auth_line.contains(&format!("response=\"{}\"", s(&expect[..n]))));
    assert!(auth_line.contains("opaque=\"op\""));
    assert_eq!(u.stats.counters.challenges_answered, 1);
    // A second challenge fails the flow instead of looping.
    u.on_datagram(
        200,
        &reply(
            &r2[0],
            401,
            &["WWW-Authenticate: Digest realm=\"x\", nonce=\"n\""],
        ),
        &mut out,
    );
    assert_eq!(u.stats.counters.flows_failed, 1);
    assert!(out.is_empty());
}

#[test]
fn sha256_is_used_when_offered_and_asked() {
    let mut c = cfg(Scenario::RegisterAuth);
    c.algorithm = Algorithm::Sha256;
    let mut u = Uac::new(c).unwrap();
    let mut out = Outbox::new();
    u.start_flow(0, &mut out);
    let r1 = take(&mut out);
    let ch = reply(
        &r1[0],
        401,
        &[
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", algorithm=SHA-256",
        ],
    );
    u.on_datagram(1, &ch, &mut out);
    let r2 = take(&mut out);
    let t = s(&r2[0]);
    assert!(t.contains("nonce=\"n2\""));
    assert!(t.contains("algorithm=SHA-256"));
    let resp = t
        .split("response=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(resp.len(), 64);
    u.on_datagram(2, &reply(&r2[0], 200, &[]), &mut out);
    assert_eq!(u.stats.counters.flows_completed, 1);
}

#[test]
fn call_flow_follows_record_route_and_contact() {
    let mut u = Uac::new(cfg(Scenario::Call)).unwrap();
    let mut out = Outbox::new();
    u.start_flow(0, &mut out);
    let inv = take(&mut out);
    let mi = parse(&inv[0]).unwrap();
    assert_eq!(
        mi.start,
        message::StartLine::Request {
            method: b"INVITE",
            uri: b"sip:c00000000@example.com"
        }
    );
    // 100 from the proxy stops Timer A.
    u.on_datagram(10, &reply(&inv[0], 100, &[]), &mut out);
    u.on_timers(600_000, &mut out);
    assert!(out.is_empty(), "no INVITE retransmission after 100 Trying");
    u.on_datagram(20, &reply(&inv[0], 180, &[]), &mut out);
    let ok = reply(
        &inv[0],
        200,
        &[
            "Record-Route: <sip:10.0.0.2;lr>",
            "Record-Route: <sip:127.0.0.1:5060;lr;ftag=x>, <sip:10.0.0.1;lr>",
            "Contact: <sip:c00000000@127.0.0.1:40001>",
        ],
    );
    u.on_datagram(30, &ok, &mut out);
    let msgs = take(&mut out);
    assert_eq!(msgs.len(), 2);
    let ack = parse(&msgs[0]).unwrap();
    let bye = parse(&msgs[1]).unwrap();
    for (m, method, cseq) in [(&ack, &b"ACK"[..], 1), (&bye, &b"BYE"[..], 2)] {
        assert_eq!(
            m.start,
            message::StartLine::Request {
                method,
                uri: b"sip:c00000000@127.0.0.1:40001"
            }
        );
        assert_eq!(m.cseq, cseq);
        assert_eq!(m.to_tag, b"srv");
        assert_eq!(m.call_id, mi.call_id);
        assert_ne!(m.branch, mi.branch);
    }
    assert!(s(&msgs[0]).contains(
        "Route: <sip:10.0.0.1;lr>, <sip:127.0.0.1:5060;lr;ftag=x>, <sip:10.0.0.2;lr>\r\n"
    ));
    // A retransmitted 200 is ACKed again; the BYE is not resent by it.
    u.on_datagram(40, &ok, &mut out);
    let again = take(&mut out);
    assert_eq!(again, vec![msgs[0].clone()]);
    // BYE is retransmitted by Timer E until its 200.
    u.on_timers(530, &mut out);
    assert!(out.is_empty());
    u.on_timers(500_030, &mut out);
    assert_eq!(take(&mut out), vec![msgs[1].clone()]);
    u.on_datagram(600_000, &reply(&msgs[1], 200, &[]), &mut out);
    assert_eq!(u.stats.counters.flows_completed, 1);
    assert_eq!(u.stats.counters.requests_sent, 3);
    assert_eq!(u.stats.counters.retransmissions, 2);
    assert!(
        u.stats
            .latency_us
            .equivalent(u.stats.latency_us.max(), 600_000)
    );
}

#[test]
fn proxy_challenge_on_invite_is_acked_and_answered() {
    let mut u = Uac::new(cfg(Scenario::Call)).unwrap();
    let mut out = Outbox::new();
    u.start_flow(0, &mut out);
    let inv = take(&mut out);
    let ch = reply(
        &inv[0],
        407,
        &["Proxy-Authenticate: Digest realm=\"example.com\", nonce=\"n\", qop=\"auth\""],
    );
    u.on_datagram(10, &ch, &mut out);
    let msgs = take(&mut out);
    assert_eq!(msgs.len(), 2);
    let ack = parse(&msgs[0]).unwrap();
    let inv2 = parse(&msgs[1]).unwrap();
    let inv1 = parse(&inv[0]).unwrap();
    assert_eq!(ack.method(), Some(&b"ACK"[..]));
    assert_eq!(
        ack.branch, inv1.branch,
        "non-2xx ACK reuses the INVITE branch"
    );
    assert_eq!(ack.cseq, 1);
    assert_eq!(ack.to_tag, b"srv");
    assert_eq!(inv2.method(), Some(&b"INVITE"[..]));
    assert_eq!(inv2.cseq, 2);
    assert!(s(&msgs[1]).contains("Proxy-Authorization: Digest username=\"u00000000\""));
    assert!(s(&msgs[1]).contains("uri=\"sip:c00000000@example.com\""));
}

#[test]
fn error_response_fails_the_call_with_ack() {
    let mut u = Uac::new(cfg(Scenario::Call)).unwrap();
    let mut out = Outbox::new();
    u.start_flow(0, &mut out);
    let inv = take(&mut out);
    u.on_datagram(10, &reply(&inv[0], 486, &[]), &mut out);
    let msgs = take(&mut out);
    assert_eq!(msgs.len(), 1);
    assert_eq!(parse(&msgs[0]).unwrap().method(), Some(&b"ACK"[..]));
    assert_eq!(u.stats.counters.flows_failed, 1);
}

#[test]
fn foreign_and_garbage_replies_are_counted() {
    let mut u = Uac::new(cfg(Scenario::Options)).unwrap();
    let mut out = Outbox::new();
    u.on_datagram(0, b"garbage", &mut out);
    u.on_datagram(
        0,
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKother\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
        &mut out,
    );
    u.on_datagram(
        0,
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK99999999.0000000001.0001\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
        &mut out,
    );
    assert_eq!(u.stats.counters.parse_errors, 1);
    assert_eq!(u.stats.counters.unmatched, 2);
    assert!(out.is_empty());
}

/// `msg` (ending in `Content-Length: 0` and the blank line) with an SDP body instead.
fn with_sdp(msg: &[u8], sdp: &str) -> Vec<u8> {
    let text = s(msg).replacen(
        "Content-Length: 0\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n",
            sdp.len()
        ),
        1,
    );
    assert!(text.ends_with("\r\n\r\n"));
    format!("{text}{sdp}").into_bytes()
}

#[test]
fn sdp_offer_and_held_call_records_the_answer_address() {
    let mut u = Uac::new(cfg(Scenario::Call)).unwrap();
    u.set_call_options(CallOptions {
        sdp: true,
        hold: true,
        record_media: true,
    });
    let mut out = Outbox::new();
    u.start_flow(0, &mut out);
    let inv = take(&mut out);
    let mi = parse(&inv[0]).unwrap();
    assert!(s(&inv[0]).contains("Content-Type: application/sdp\r\n"));
    assert_eq!(
        message::sdp_audio_addr(mi.body()),
        Some("127.0.0.1:40000".parse().unwrap())
    );
    let declared: usize = s(&inv[0])
        .split("Content-Length: ")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(declared, mi.body().len());
    let ok = with_sdp(
        &reply(&inv[0], 200, &["Contact: <sip:c00000000@127.0.0.1:40001>"]),
        "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30004 RTP/AVP 0\r\n",
    );
    u.on_datagram(30, &ok, &mut out);
    let msgs = take(&mut out);
    assert_eq!(msgs.len(), 1, "ACK only, no BYE");
    assert_eq!(parse(&msgs[0]).unwrap().method(), Some(&b"ACK"[..]));
    assert_eq!(u.stats.counters.flows_completed, 1);
    assert_eq!(u.outstanding(), 0);
    assert_eq!(u.media, vec![(0, 1, "127.0.0.1:30004".parse().unwrap())]);
    // The 200 retransmitted (ACK lost): ACKed again, nothing else.
    u.on_datagram(40, &ok, &mut out);
    assert_eq!(take(&mut out), msgs);
    u.on_timers(10_000_000, &mut out);
    assert!(out.is_empty());
}

#[test]
fn plain_calls_keep_a_bodiless_invite() {
    let mut u = Uac::new(cfg(Scenario::Call)).unwrap();
    let mut out = Outbox::new();
    u.start_flow(0, &mut out);
    let inv = take(&mut out);
    assert!(s(&inv[0]).ends_with("Content-Length: 0\r\n\r\n"));
    // Options are ignored outside the call scenario.
    let mut o = Uac::new(cfg(Scenario::Options)).unwrap();
    o.set_call_options(CallOptions {
        sdp: true,
        hold: true,
        record_media: true,
    });
    o.start_flow(0, &mut out);
    assert!(s(&take(&mut out)[0]).ends_with("Content-Length: 0\r\n\r\n"));
}
