//! The called side of the `call` scenario: answers INVITE with 100/180/200, retransmits the
//! 200 until the ACK arrives (RFC 3261 §13.3.1.4: T1 doubling up to T2, give up after
//! 64·T1), and answers BYE with 200. Dialog state is indexed by the caller's slot number,
//! which the generator writes into the Call-ID, so no lookup table is needed. No I/O.

use crate::message::{Message, StartLine, sdp_audio_addr};
use crate::outbox::{Leg, Outbox};
use crate::response::{ResponseSpec, write_response, write_response_with_tail};
use crate::stats::Counters;
use crate::timers::Timers;
use crate::uac::{Timing, parse_call_id};
use std::net::SocketAddr;

/// Largest 2xx a dialog keeps for retransmission (room for a proxy's Via and
/// Record-Route lines and an SDP answer).
const RESPONSE_MAX: usize = 2048;
use crate::writer::{Writer, WriterFull};

/// Configuration of the called side.
#[derive(Debug, Clone, Copy)]
pub struct UasConfig {
    /// Number of dialogs that can be tracked (the caller's slot count).
    pub slots: u32,
    /// Timer values.
    pub timing: Timing,
    /// Send 100 Trying before 180 and 200.
    pub send_trying: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Idle,
    Answered,
    Confirmed,
}

#[derive(Debug, Default)]
struct Dialog {
    flow: u32,
    state: State,
    retrans_us: u64,
    response: Vec<u8>,
    response_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    Retransmit,
    AckTimeout,
}

#[derive(Debug, Clone, Copy)]
struct TimerRef {
    slot: u32,
    flow: u32,
    kind: TimerKind,
}

/// The called side.
#[derive(Debug)]
pub struct Uas {
    cfg: UasConfig,
    dialogs: Vec<Dialog>,
    timers: Timers<TimerRef>,
    answer_tail: Option<Vec<u8>>,
    record_media: bool,
    /// With media recording on: (slot, flow, media address of the INVITE's SDP offer)
    /// of every new INVITE that carried one.
    pub media: Vec<(u32, u32, SocketAddr)>,
    /// Called-side counters (the `uas_*` fields).
    pub counters: Counters,
}

impl Uas {
    /// A called side with room for `cfg.slots` dialogs.
    pub fn new(cfg: UasConfig) -> Uas {
        let dialogs = (0..cfg.slots.max(1)).map(|_| Dialog::default()).collect();
        Uas {
            cfg,
            dialogs,
            timers: Timers::new(),
            answer_tail: None,
            record_media: false,
            media: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Answers INVITEs that carry an SDP offer with an SDP answer (one audio stream, PCMU,
    /// at `media`) in the 200, and with `record` remembers each offer's media address in
    /// [`Uas::media`].
    pub fn set_media(&mut self, media: Option<SocketAddr>, record: bool) {
        self.answer_tail =
            media.map(|a| crate::template::sdp_tail(&crate::template::audio_sdp(a, 2)));
        self.record_media = record;
    }

    /// Earliest timer deadline (µs).
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    /// Handles one request received on the called side's socket.
    pub fn on_request(&mut self, now_us: u64, m: &Message<'_>, out: &mut Outbox) {
        let StartLine::Request { method, uri } = m.start else {
            return;
        };
        let dialog = parse_call_id(m.call_id);
        // The tag is derived from the Call-ID, so 180, 200 and retransmissions agree.
        let mut tag_buf = [0u8; 24];
        let tag = {
            let mut w = Writer::new(&mut tag_buf);
            let _ = w.put(b"uas");
            let _ = w.put(m.call_id.get(..19).unwrap_or(b""));
            let n = w.len();
            tag_buf.get(..n).unwrap_or(b"uas")
        };
        match method {
            b"INVITE" => {
                self.counters.uas_requests[0] += 1;
                if let Some((slot, flow)) = dialog
                    && let Some(d) = self.dialogs.get(slot as usize)
                    && d.flow == flow
                    && d.state != State::Idle
                {
                    self.counters.uas_duplicate_invites += 1;
                    if d.state == State::Answered {
                        out.push_bytes(Leg::Uas, &d.response[..d.response_len]);
                    }
                    return;
                }
                if self.cfg.send_trying {
                    let spec = spec(100, b"Trying", b"", false, None);
                    let _ = out.push(Leg::Uas, |b| respond(b, m, &spec));
                }
                let ringing = spec(180, b"Ringing", tag, true, Some(uri));
                let _ = out.push(Leg::Uas, |b| respond(b, m, &ringing));
                let ok = spec(200, b"OK", tag, true, Some(uri));
                let offer = sdp_audio_addr(m.body());
                let tail: &[u8] = match (&self.answer_tail, offer) {
                    (Some(t), Some(_)) => t,
                    _ => b"Content-Length: 0\r\n\r\n",
                };
                let Some((slot, flow)) = dialog else {
                    let _ = out.push(Leg::Uas, |b| respond_tail(b, m, &ok, tail));
                    return;
                };
                if self.record_media
                    && let Some(addr) = offer
                {
                    self.media.push((slot, flow, addr));
                }
                let Some(d) = self.dialogs.get_mut(slot as usize) else {
                    let _ = out.push(Leg::Uas, |b| respond_tail(b, m, &ok, tail));
                    return;
                };
                if d.response.len() < RESPONSE_MAX {
                    d.response.resize(RESPONSE_MAX, 0);
                }
                let Ok(n) = respond_tail(&mut d.response, m, &ok, tail) else {
                    self.counters.send_errors += 1;
                    return;
                };
                d.response_len = n;
                d.flow = flow;
                d.state = State::Answered;
                d.retrans_us = self.cfg.timing.t1_us;
                out.push_bytes(Leg::Uas, &d.response[..n]);
                let r = TimerRef {
                    slot,
                    flow,
                    kind: TimerKind::Retransmit,
                };
                self.timers.arm(now_us, self.cfg.timing.t1_us, r);
                self.timers.arm(
                    now_us,
                    self.cfg.timing.timeout_us,
                    TimerRef {
                        kind: TimerKind::AckTimeout,
                        ..r
                    },
                );
            }
            b"ACK" => {
                self.counters.uas_requests[1] += 1;
                if let Some((slot, flow)) = dialog
                    && let Some(d) = self.dialogs.get_mut(slot as usize)
                    && d.flow == flow
                    && d.state == State::Answered
                {
                    d.state = State::Confirmed;
                }
            }
            b"BYE" => {
                self.counters.uas_requests[2] += 1;
                if let Some((slot, flow)) = dialog
                    && let Some(d) = self.dialogs.get_mut(slot as usize)
                    && d.flow == flow
                {
                    d.state = State::Idle;
                }
                let ok = spec(200, b"OK", tag, false, None);
                let _ = out.push(Leg::Uas, |b| respond(b, m, &ok));
            }
            _ => {
                self.counters.uas_requests[3] += 1;
                let ok = spec(200, b"OK", tag, false, None);
                let _ = out.push(Leg::Uas, |b| respond(b, m, &ok));
            }
        }
    }

    /// Fires due timers: 2xx retransmissions and ACK timeouts.
    pub fn on_timers(&mut self, now_us: u64, out: &mut Outbox) {
        let t2 = self.cfg.timing.t2_us;
        while let Some(a) = self.timers.pop_due(now_us) {
            let r = a.payload;
            let Some(d) = self.dialogs.get_mut(r.slot as usize) else {
                continue;
            };
            if d.flow != r.flow || d.state != State::Answered {
                continue;
            }
            match r.kind {
                TimerKind::Retransmit => {
                    out.push_bytes(Leg::Uas, &d.response[..d.response_len]);
                    self.counters.uas_retransmissions += 1;
                    d.retrans_us = d.retrans_us.saturating_mul(2).min(t2);
                    self.timers.arm(now_us, d.retrans_us, r);
                }
                TimerKind::AckTimeout => {
                    self.counters.uas_ack_timeouts += 1;
                    d.state = State::Idle;
                }
            }
        }
    }
}

fn spec<'a>(
    code: u16,
    reason: &'a [u8],
    to_tag: &'a [u8],
    copy_record_route: bool,
    contact: Option<&'a [u8]>,
) -> ResponseSpec<'a> {
    ResponseSpec {
        code,
        reason,
        to_tag,
        copy_record_route,
        contact,
    }
}

fn respond(buf: &mut [u8], m: &Message<'_>, spec: &ResponseSpec<'_>) -> Result<usize, WriterFull> {
    let mut w = Writer::new(buf);
    write_response(&mut w, m, spec)?;
    Ok(w.len())
}

fn respond_tail(
    buf: &mut [u8],
    m: &Message<'_>,
    spec: &ResponseSpec<'_>,
    tail: &[u8],
) -> Result<usize, WriterFull> {
    let mut w = Writer::new(buf);
    write_response_with_tail(&mut w, m, spec, tail)?;
    Ok(w.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse;

    const INVITE: &[u8] = b"INVITE sip:c00000001@127.0.0.1:40001 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK00000002.0000000005.0001;rport=40000\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
From: <sip:u00000001@localhost>;tag=00000002.0000000005\r\n\
To: <sip:c00000001@localhost>\r\n\
Call-ID: 00000002.0000000005.00abcdef@loadgen\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    fn uas() -> Uas {
        Uas::new(UasConfig {
            slots: 8,
            timing: Timing::default(),
            send_trying: true,
        })
    }

    fn take(out: &mut Outbox) -> Vec<Vec<u8>> {
        let v = out.iter().map(|(_, b)| b.to_vec()).collect();
        out.clear();
        v
    }

    fn request(method: &str) -> Vec<u8> {
        let s = std::str::from_utf8(INVITE).unwrap();
        s.replace("INVITE sip", &format!("{method} sip"))
            .replace("CSeq: 1 INVITE", &format!("CSeq: 1 {method}"))
            .replace(
                "To: <sip:c00000001@localhost>",
                "To: <sip:c00000001@localhost>;tag=uas00000002.0000000005",
            )
            .into_bytes()
    }

    #[test]
    fn answers_invite_and_retransmits_200_until_ack() {
        let mut u = uas();
        let mut out = Outbox::new();
        u.on_request(0, &parse(INVITE).unwrap(), &mut out);
        let r = take(&mut out);
        let codes: Vec<u16> = r
            .iter()
            .map(|b| parse(b).unwrap().status().unwrap())
            .collect();
        assert_eq!(codes, vec![100, 180, 200]);
        let ok = parse(&r[2]).unwrap();
        assert_eq!(ok.via_lines.len(), 2);
        assert_eq!(ok.record_routes.len(), 1);
        assert_eq!(ok.contact_uri, b"sip:c00000001@127.0.0.1:40001");
        assert_eq!(ok.to_tag, b"uas00000002.0000000005");
        assert_eq!(parse(&r[1]).unwrap().to_tag, ok.to_tag);
        // INVITE retransmission: the 200 again, no new processing.
        u.on_request(10, &parse(INVITE).unwrap(), &mut out);
        assert_eq!(take(&mut out), vec![r[2].clone()]);
        assert_eq!(u.counters.uas_duplicate_invites, 1);
        // No ACK: 200 retransmitted at T1.
        u.on_timers(500_000, &mut out);
        assert_eq!(take(&mut out), vec![r[2].clone()]);
        assert_eq!(u.counters.uas_retransmissions, 1);
        // ACK stops it.
        u.on_request(600_000, &parse(&request("ACK")).unwrap(), &mut out);
        u.on_timers(2_000_000, &mut out);
        assert!(out.is_empty());
        // BYE gets 200 with the dialog's tag kept.
        u.on_request(2_000_001, &parse(&request("BYE")).unwrap(), &mut out);
        let bye_ok = take(&mut out);
        let m = parse(&bye_ok[0]).unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.cseq_method, b"BYE");
        assert_eq!(u.counters.uas_requests, [2, 1, 1, 0]);
    }

    #[test]
    fn answers_an_sdp_offer_with_an_answer_and_records_the_offer() {
        let mut u = uas();
        u.set_media(Some("127.0.0.1:40001".parse().unwrap()), true);
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30010 RTP/AVP 0\r\n";
        let inv = std::str::from_utf8(INVITE).unwrap().replacen(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
            1,
        );
        let mut out = Outbox::new();
        u.on_request(0, &parse(inv.as_bytes()).unwrap(), &mut out);
        let r = take(&mut out);
        let ok = parse(&r[2]).unwrap();
        assert_eq!(ok.status(), Some(200));
        assert_eq!(
            crate::message::sdp_audio_addr(ok.body()),
            Some("127.0.0.1:40001".parse().unwrap())
        );
        assert!(parse(&r[1]).unwrap().body().is_empty(), "180 without SDP");
        assert_eq!(u.media, vec![(2, 5, "127.0.0.1:30010".parse().unwrap())]);
        // Without an offer the 200 has no body either.
        let mut u = uas();
        u.set_media(Some("127.0.0.1:40001".parse().unwrap()), true);
        u.on_request(0, &parse(INVITE).unwrap(), &mut out);
        assert!(parse(&take(&mut out)[2]).unwrap().body().is_empty());
        assert!(u.media.is_empty());
    }

    #[test]
    fn gives_up_without_ack() {
        let mut u = uas();
        let mut out = Outbox::new();
        u.on_request(0, &parse(INVITE).unwrap(), &mut out);
        out.clear();
        u.on_timers(40_000_000, &mut out);
        u.on_timers(40_000_001, &mut out);
        assert_eq!(u.counters.uas_ack_timeouts, 1);
    }

    #[test]
    fn unknown_call_id_is_answered_statelessly() {
        let mut u = uas();
        let mut out = Outbox::new();
        let s = std::str::from_utf8(INVITE)
            .unwrap()
            .replace("00000002.0000000005.00abcdef@loadgen", "foreign");
        u.on_request(0, &parse(s.as_bytes()).unwrap(), &mut out);
        assert_eq!(out.len(), 3);
        assert!(u.next_deadline().is_none());
    }
}
