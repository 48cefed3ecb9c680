use std::cell::RefCell;
use std::collections::HashMap;

use voxline_ng::command::{DeleteRequest, Flags, IceMode, MediaRequest, Replace, RtcpMux};
use voxline_relay_dataplane::{CounterSnapshot, StreamKey};

use super::*;
use crate::config::{InterfaceConfig, RelayConfig};
use crate::ports::tests::FakeBinder;

const A_SDP: &str = "v=0\r\no=alice 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\nm=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
const B_SDP: &str = "v=0\r\no=bob 7 7 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:6005\r\nm=video 6002 RTP/AVP 96\r\n";

fn config() -> RelayConfig {
    RelayConfig {
        interfaces: vec![
            InterfaceConfig {
                name: "internal".into(),
                address: "127.0.0.1".parse().unwrap(),
                advertised_address: None,
            },
            InterfaceConfig {
                name: "external".into(),
                address: "127.0.0.2".parse().unwrap(),
                advertised_address: Some("192.0.2.7".parse().unwrap()),
            },
        ],
        port_min: 30000,
        port_max: 30099,
        workers: 2,
        ..RelayConfig::default()
    }
}

fn offer(call: &str, from: &str, sdp: &str) -> MediaRequest {
    MediaRequest {
        call_id: call.into(),
        from_tag: from.into(),
        sdp: sdp.into(),
        ..MediaRequest::default()
    }
}

fn answer(call: &str, from: &str, to: &str, sdp: &str) -> MediaRequest {
    MediaRequest {
        to_tag: Some(to.into()),
        ..offer(call, from, sdp)
    }
}

fn no_counters(_: StreamKey) -> CounterSnapshot {
    CounterSnapshot::default()
}

fn ports_in(sdp: &str) -> Vec<u16> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("m="))
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn offer_answer_rewrites_sdp_and_wires_streams() {
    let mut t = SessionTable::new(&config());
    let mut b = FakeBinder::default();
    let o = t.offer(&offer("c1", "ft", A_SDP), 1000, &mut b).unwrap();
    assert!(o.sdp.contains("c=IN IP4 127.0.0.1\r\n"), "{}", o.sdp);
    assert!(
        o.sdp.contains("o=alice 1 1 IN IP4 10.0.0.1\r\n"),
        "origin untouched without replace"
    );
    assert!(o.sdp.contains("a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"));
    let offer_ports = ports_in(&o.sdp);
    assert_eq!(offer_ports.len(), 2);
    assert!(
        offer_ports
            .iter()
            .all(|p| p % 2 == 0 && (30000..30100).contains(p))
    );
    assert!(
        o.sdp
            .contains(&format!("a=rtcp:{}\r\n", offer_ports[0] + 1))
    );
    // 2 legs x 2 media x (rtp + rtcp)
    assert_eq!(
        o.effects
            .iter()
            .filter(|e| matches!(e, Effect::Open { .. }))
            .count(),
        8
    );
    assert_eq!(b.bound.len(), 4);

    let a = t
        .answer(&answer("c1", "ft", "tt", B_SDP), 2000, &mut b)
        .unwrap();
    let answer_ports = ports_in(&a.sdp);
    assert!(answer_ports.iter().all(|p| !offer_ports.contains(p)));
    assert!(
        !a.effects.iter().any(|e| matches!(e, Effect::Open { .. })),
        "answer reuses ports"
    );
    // The stream receiving from A (A's leg, port in the answer) forwards to
    // B's leg and sends to A's SDP address.
    let call = t.call("c1").unwrap();
    let a_leg = call.legs.iter().find(|l| l.tag == "ft").unwrap();
    let b_leg = call.legs.iter().find(|l| l.tag == "tt").unwrap();
    assert_eq!(
        a_leg.media[0].rtp.as_ref().unwrap().local_port,
        answer_ports[0]
    );
    assert_eq!(
        b_leg.media[0].rtp.as_ref().unwrap().local_port,
        offer_ports[0]
    );
    assert_eq!(
        b_leg.media[0].rtcp.as_ref().unwrap().advertised,
        Some("10.0.0.2:6005".parse().unwrap())
    );
    let a_rtp_key = StreamKey(a_leg.media[0].rtp.as_ref().unwrap().key);
    let b_rtp_key = StreamKey(b_leg.media[0].rtp.as_ref().unwrap().key);
    let cfg = a
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::Configure { key, config, .. } if *key == a_rtp_key => Some(config.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(cfg.endpoint, Some("10.0.0.1:5000".parse().unwrap()));
    assert_eq!(cfg.sink_rtp, Some(b_rtp_key));
    assert_eq!(cfg.tos, 184);

    let q = t.query("c1", &no_counters).unwrap();
    assert_eq!(q.tags.len(), 2);
    assert_eq!(q.tags[0].in_dialogue_with.as_deref(), Some("tt"));
    assert_eq!(q.tags[0].medias[0].streams.len(), 2);
}

#[test]
fn reoffer_and_hold_keep_ports() {
    let mut t = SessionTable::new(&config());
    let mut b = FakeBinder::default();
    let first = t.offer(&offer("c", "ft", A_SDP), 0, &mut b).unwrap();
    t.answer(&answer("c", "ft", "tt", B_SDP), 0, &mut b)
        .unwrap();
    let bound = b.bound.len();
    // re-INVITE from the caller, on hold with a=sendonly.
    let hold = A_SDP.replace("a=sendrecv", "a=sendonly");
    let mut req = offer("c", "ft", &hold);
    req.to_tag = Some("tt".into());
    let again = t.offer(&req, 10, &mut b).unwrap();
    assert_eq!(ports_in(&again.sdp), ports_in(&first.sdp));
    assert!(again.sdp.contains("a=sendonly"));
    // Old-style hold: c=0.0.0.0 is passed through, ports kept.
    let zero = A_SDP.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0");
    let z = t.offer(&offer("c", "ft", &zero), 20, &mut b).unwrap();
    assert!(z.sdp.contains("c=IN IP4 0.0.0.0"));
    assert_eq!(ports_in(&z.sdp), ports_in(&first.sdp));
    // With replace zero-address it becomes the relay's.
    let mut zr = offer("c", "ft", &zero);
    zr.replace = Replace {
        zero_address: true,
        ..Replace::default()
    };
    assert!(
        t.offer(&zr, 30, &mut b)
            .unwrap()
            .sdp
            .contains("c=IN IP4 127.0.0.1")
    );
    // re-INVITE from the callee: reversed tags, same ports on both legs.
    let mut rev = offer("c", "tt", B_SDP);
    rev.to_tag = Some("ft".into());
    t.offer(&rev, 40, &mut b).unwrap();
    assert_eq!(b.bound.len(), bound, "no new ports for re-offers");
    assert_eq!(t.call("c").unwrap().legs.len(), 2);
}

#[test]
fn forking_and_branch_deletes() {
    let mut t = SessionTable::new(&config());
    let mut b = FakeBinder::default();
    t.offer(&offer("f", "ft", A_SDP), 0, &mut b).unwrap();
    let a1 = t
        .answer(&answer("f", "ft", "t1", B_SDP), 0, &mut b)
        .unwrap();
    let b2 = B_SDP.replace("10.0.0.2", "10.0.0.3");
    let a2 = t.answer(&answer("f", "ft", "t2", &b2), 0, &mut b).unwrap();
    assert_eq!(
        ports_in(&a1.sdp),
        ports_in(&a2.sdp),
        "forks share the caller's ports"
    );
    let q = t.query("f", &no_counters).unwrap();
    let tags: Vec<_> = q.tags.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(tags, vec!["ft", "t1", "t2"]);
    // Latest answer decides where media goes.
    let callee = t
        .call("f")
        .unwrap()
        .legs
        .iter()
        .find(|l| l.has_tag("t2"))
        .unwrap()
        .clone();
    assert_eq!(
        callee.media[0].rtp.as_ref().unwrap().advertised,
        Some("10.0.0.3:6000".parse().unwrap())
    );
    // Deleting one fork keeps the call.
    let d = t
        .delete(
            &DeleteRequest {
                call_id: "f".into(),
                from_tag: Some("ft".into()),
                to_tag: Some("t1".into()),
                ..Default::default()
            },
            5,
            &no_counters,
        )
        .unwrap();
    assert!(d.effects.is_empty() && d.warning.is_none());
    assert!(t.call("f").is_some());
    // Deleting the last one ends it and closes all 8 streams.
    let d = t
        .delete(
            &DeleteRequest {
                call_id: "f".into(),
                from_tag: Some("ft".into()),
                to_tag: Some("t2".into()),
                ..Default::default()
            },
            6,
            &no_counters,
        )
        .unwrap();
    assert_eq!(
        d.effects
            .iter()
            .filter(|e| matches!(e, Effect::Close { .. }))
            .count(),
        8
    );
    assert!(t.is_empty());
    assert_eq!(t.totals().regular, 1);
}

#[test]
fn via_branch_delete_cancels_one_pending_branch() {
    let mut t = SessionTable::new(&config());
    let mut b = FakeBinder::default();
    let mut o1 = offer("v", "ft", A_SDP);
    o1.via_branch = Some("z9hG4bK.1".into());
    let mut o2 = o1.clone();
    o2.via_branch = Some("z9hG4bK.2".into());
    let r1 = t.offer(&o1, 0, &mut b).unwrap();
    let r2 = t.offer(&o2, 0, &mut b).unwrap();
    assert_ne!(
        ports_in(&r1.sdp),
        ports_in(&r2.sdp),
        "serial branches get their own ports"
    );
    let d = t
        .delete(
            &DeleteRequest {
                call_id: "v".into(),
                from_tag: Some("ft".into()),
                via_branch: Some("z9hG4bK.1".into()),
                ..Default::default()
            },
            1,
            &no_counters,
        )
        .unwrap();
    assert_eq!(
        d.effects
            .iter()
            .filter(|e| matches!(e, Effect::Close { .. }))
            .count(),
        4
    );
    assert_eq!(t.call("v").unwrap().legs.len(), 2);
    let mut ans = answer("v", "ft", "tt", B_SDP);
    ans.via_branch = Some("z9hG4bK.2".into());
    t.answer(&ans, 2, &mut b).unwrap();
    let d = t
        .delete(
            &DeleteRequest {
                call_id: "v".into(),
                ..Default::default()
            },
            3,
            &no_counters,
        )
        .unwrap();
    assert!(d.stats.is_some());
    assert!(t.is_empty());
}

#[test]
fn delete_unknown_warns_or_fails_with_fatal() {
    let mut t = SessionTable::new(&config());
    let d = t
        .delete(
            &DeleteRequest {
                call_id: "x".into(),
                ..Default::default()
            },
            0,
            &no_counters,
        )
        .unwrap();
    assert_eq!(d.warning.as_deref(), Some(reply::CALL_NOT_FOUND));
    let fatal = DeleteRequest {
        call_id: "x".into(),
        flags: Flags {
            fatal: true,
            ..Flags::default()
        },
        ..Default::default()
    };
    assert_eq!(
        t.delete(&fatal, 0, &no_counters).unwrap_err(),
        SessionError::NotFound
    );
    assert_eq!(
        t.answer(&answer("x", "a", "b", B_SDP), 0, &mut FakeBinder::default())
            .unwrap_err(),
        SessionError::UnknownCall
    );
    assert_eq!(
        t.query("x", &no_counters).unwrap_err().to_string(),
        "Unknown call-id"
    );
}

#[test]
fn port_exhaustion_and_session_limit() {
    let mut c = config();
    c.port_max = 30007; // 4 pairs: one 2-media offer needs 4
    let mut t = SessionTable::new(&c);
    let mut b = FakeBinder::default();
    t.offer(&offer("a", "ft", A_SDP), 0, &mut b).unwrap();
    let e = t.offer(&offer("b", "ft", A_SDP), 0, &mut b).unwrap_err();
    assert_eq!(e.to_string(), "Ran out of ports");
    assert_eq!(t.len(), 1, "failed new call is not kept");
    assert_eq!(t.totals().rejected, 1);
    let mut c = config();
    c.max_sessions = 1;
    let mut t = SessionTable::new(&c);
    t.offer(&offer("a", "ft", A_SDP), 0, &mut b).unwrap();
    assert_eq!(
        t.offer(&offer("b", "ft", A_SDP), 0, &mut b)
            .unwrap_err()
            .to_string(),
        "Parallel session limit reached"
    );
    // Re-offers of existing calls are not limited.
    t.offer(&offer("a", "ft", A_SDP), 1, &mut b).unwrap();
}

#[test]
fn malformed_sdp_is_a_named_error() {
    let mut t = SessionTable::new(&config());
    let e = t
        .offer(
            &offer("a", "ft", "v=0\r\nm=audio x RTP/AVP 0\r\n"),
            0,
            &mut FakeBinder::default(),
        )
        .unwrap_err();
    assert!(
        e.to_string().starts_with("Failed to parse SDP: line 2"),
        "{e}"
    );
}

#[test]
fn timeouts_follow_media_activity() {
    let mut c = config();
    c.timeout_secs = 60;
    c.silent_timeout_secs = 600;
    c.final_timeout_secs = 0;
    let mut t = SessionTable::new(&c);
    let mut b = FakeBinder::default();
    t.offer(&offer("active", "ft", A_SDP), 0, &mut b).unwrap();
    t.offer(
        &offer("held", "ft", &A_SDP.replace("a=sendrecv", "a=inactive")),
        0,
        &mut b,
    )
    .unwrap();
    let active_keys: Vec<u64> = t
        .call("active")
        .unwrap()
        .streams()
        .map(|(_, s, _)| s.key)
        .collect();
    let last = RefCell::new(HashMap::<u64, u64>::new());
    let counters = |k: StreamKey| CounterSnapshot {
        last_packet_ms: last.borrow().get(&k.0).copied().unwrap_or(0),
        ..CounterSnapshot::default()
    };
    // Media at 50 s keeps "active" alive at 100 s.
    last.borrow_mut().insert(active_keys[0], 50_000);
    let (exp, _) = t.poll_timeouts(100_000, &counters);
    assert!(exp.is_empty());
    let (exp, eff) = t.poll_timeouts(110_000, &counters);
    assert_eq!(
        exp,
        vec![Expired {
            call_id: "active".into(),
            reason: EndReason::Timeout
        }]
    );
    assert_eq!(
        eff.iter()
            .filter(|e| matches!(e, Effect::Close { .. }))
            .count(),
        8
    );
    // The held call uses the silent timeout.
    let (exp, _) = t.poll_timeouts(599_000, &counters);
    assert!(exp.is_empty());
    let (exp, _) = t.poll_timeouts(600_000, &counters);
    assert_eq!(exp[0].reason, EndReason::SilentTimeout);
    assert_eq!(
        (
            t.totals().timeout,
            t.totals().silent_timeout,
            t.totals().zero_way
        ),
        (1, 1, 2)
    );
    // Final timeout regardless of media.
    let mut c = config();
    c.final_timeout_secs = 30;
    let mut t = SessionTable::new(&c);
    t.offer(&offer("f", "ft", A_SDP), 0, &mut b).unwrap();
    let busy = |_: StreamKey| CounterSnapshot {
        last_packet_ms: 30_000,
        ..CounterSnapshot::default()
    };
    assert_eq!(
        t.poll_timeouts(30_000, &busy).0[0].reason,
        EndReason::FinalTimeout
    );
}

#[test]
fn interfaces_ice_and_rtcp_mux() {
    let mut t = SessionTable::new(&config());
    let mut b = FakeBinder::default();
    let ice_sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=candidate:1 1 UDP 2130706431 10.0.0.1 5000 typ host\r\na=rtcp-mux\r\n";
    let mut req = offer("i", "ft", ice_sdp);
    req.direction = Some(["internal".into(), "external".into()]);
    req.ice = Some(IceMode::Remove);
    req.rtcp_mux = RtcpMux {
        demux: true,
        ..RtcpMux::default()
    };
    req.replace = Replace {
        origin: true,
        session_name: true,
        force_increment_sdp_ver: true,
        ..Replace::default()
    };
    let o = t.offer(&req, 0, &mut b).unwrap();
    assert!(
        o.sdp.contains("c=IN IP4 192.0.2.7\r\n"),
        "external advertised address: {}",
        o.sdp
    );
    assert!(o.sdp.contains("o=- 1 2 IN IP4 192.0.2.7\r\n"));
    assert!(o.sdp.contains("s=voxline\r\n"));
    assert!(
        !o.sdp.contains("ice-") && !o.sdp.contains("candidate") && !o.sdp.contains("rtcp-mux"),
        "{}",
        o.sdp
    );
    // Default ICE: the endpoint's candidates are stripped (the relay runs no
    // connectivity checks); rtcp-mux passes through.
    let o = t.offer(&offer("j", "ft", ice_sdp), 0, &mut b).unwrap();
    assert!(
        !o.sdp.contains("candidate") && !o.sdp.contains("ice-"),
        "{}",
        o.sdp
    );
    // ICE=force: the relay's ports become host candidates.
    let mut forced = offer("j2", "ft", ice_sdp);
    forced.ice = Some(IceMode::Force);
    let o = t.offer(&forced, 0, &mut b).unwrap();
    let port = ports_in(&o.sdp)[0];
    assert!(
        o.sdp.contains(&format!(
            "a=candidate:vxl0 1 UDP 2130706431 127.0.0.1 {port} typ host\r\n"
        )),
        "{}",
        o.sdp
    );
    assert!(!o.sdp.contains("10.0.0.1 5000 typ host"));
    assert!(o.sdp.contains("a=rtcp-mux\r\n"));
    // unknown interface falls back with a warning
    let mut req = offer("k", "ft", A_SDP);
    req.direction = Some(["nope".into(), "external".into()]);
    let o = t.offer(&req, 0, &mut b).unwrap();
    assert_eq!(
        o.warnings,
        vec!["Unknown interface 'nope', using the default".to_string()]
    );
}

#[test]
fn table_state_is_serializable() {
    let mut t = SessionTable::new(&config());
    let mut b = FakeBinder::default();
    t.offer(&offer("s", "ft", A_SDP), 0, &mut b).unwrap();
    t.answer(&answer("s", "ft", "tt", B_SDP), 0, &mut b)
        .unwrap();
    let json = serde_json::to_string(t.call("s").unwrap()).unwrap();
    let back: Call = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, t.call("s").unwrap());
}
