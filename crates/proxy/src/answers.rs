//! 2xx answers the proxy forwarded with their SDP rewritten for a relay.
//!
//! The callee retransmits its 2xx until the ACK reaches it, and every copy
//! must reach the caller with the same rewritten SDP: a copy forwarded
//! statelessly would show the caller the callee's own media address. The
//! proxy session therefore used to stay for the 32 s its INVITE
//! transactions linger. Instead it leaves once every branch has its final
//! response, and the forwarded bytes stay here: a retransmitted 2xx that
//! arrives after the session left is answered with them. The ACK for the 2xx
//! shortens the stay to [`AFTER_ACK`] (an ACK lost beyond this proxy makes
//! the callee retransmit for a few seconds more); without an ACK the entry
//! goes after [`WITHOUT_ACK`], when the INVITE transactions end too.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use voxline_sip::Message;

/// How long an answer stays after its ACK passed: T2, the longest interval
/// between a UAS's 2xx retransmissions (RFC 3261 §13.3.1.4).
pub const AFTER_ACK: Duration = Duration::from_secs(4);
/// How long an answer stays without an ACK: 64·T1, when the UAS gives up
/// retransmitting and the INVITE transactions end.
pub const WITHOUT_ACK: Duration = Duration::from_secs(32);

/// What identifies a 2xx, its retransmissions and its ACK: Call-ID, CSeq
/// number and To tag, joined by a byte no header value contains.
type Key = Box<str>;

fn key_of(msg: &Message) -> Option<Key> {
    let call_id = msg.call_id().ok()?;
    let seq = msg.cseq().ok()?.seq;
    let to_tag = msg.to_tag()?;
    Some(format!("{call_id}\0{seq}\0{to_tag}").into_boxed_str())
}

struct Answer {
    bytes: Bytes,
    expires: Instant,
}

#[derive(Default)]
struct State {
    answers: HashMap<Key, Answer>,
    /// Expiry order of the answers not acknowledged yet (deadlines grow
    /// in insertion order, so the front is the next to go).
    unacked: VecDeque<(Instant, Key)>,
    /// Likewise for acknowledged answers.
    acked: VecDeque<(Instant, Key)>,
}

impl State {
    fn sweep(&mut self, now: Instant) {
        for queue in [&mut self.unacked, &mut self.acked] {
            while let Some((at, _)) = queue.front()
                && *at <= now
            {
                let Some((_, key)) = queue.pop_front() else {
                    break;
                };
                // An acknowledged answer is queued twice: it goes when its
                // current deadline is due, not its first one.
                if self.answers.get(&key).is_some_and(|a| a.expires <= now) {
                    self.answers.remove(&key);
                }
            }
        }
    }
}

/// The rewritten 2xx answers of a proxy, shared by its sessions.
#[derive(Default)]
pub struct RewrittenAnswers {
    state: Mutex<State>,
}

impl RewrittenAnswers {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `forwarded`, the bytes sent upstream for `response` (a 2xx as
    /// received from downstream).
    pub fn keep(&self, response: &Message, forwarded: Bytes, now: Instant) {
        let Some(key) = key_of(response) else {
            return;
        };
        let expires = now + WITHOUT_ACK;
        let mut state = self.lock();
        state.sweep(now);
        state.unacked.push_back((expires, key.clone()));
        state.answers.insert(
            key,
            Answer {
                bytes: forwarded,
                expires,
            },
        );
    }

    /// What to send upstream for `response`, a 2xx retransmission that no
    /// session handles any more: the bytes forwarded for its first copy.
    pub fn resend(&self, response: &Message, now: Instant) -> Option<Bytes> {
        let key = key_of(response)?;
        let mut state = self.lock();
        state.sweep(now);
        state.answers.get(&key).map(|a| a.bytes.clone())
    }

    /// The ACK `ack` passed: its answer stays only [`AFTER_ACK`] more.
    pub fn acknowledged(&self, ack: &Message, now: Instant) {
        let mut state = self.lock();
        state.sweep(now);
        if state.answers.is_empty() {
            return;
        }
        let Some(key) = key_of(ack) else {
            return;
        };
        let expires = now + AFTER_ACK;
        if let Some(answer) = state.answers.get_mut(&key)
            && answer.expires > expires
        {
            answer.expires = expires;
            state.acked.push_back((expires, key));
        }
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.lock().answers.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(first: &str, to_tag: &str) -> Message {
        let raw = format!(
            "{first}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:a@h>;tag=f\r\nTo: <sip:b@h>;tag={to_tag}\r\nCall-ID: c1\r\n\
             CSeq: 1 {}\r\nContent-Length: 0\r\n\r\n",
            if first.starts_with("ACK") {
                "ACK"
            } else {
                "INVITE"
            }
        );
        Message::parse(Bytes::from(raw)).unwrap()
    }

    #[test]
    fn a_retransmission_gets_the_forwarded_bytes_until_the_ack_has_aged() {
        let answers = RewrittenAnswers::default();
        let t0 = Instant::now();
        let ok = msg("SIP/2.0 200 OK", "t1");
        answers.keep(&ok, Bytes::from_static(b"rewritten"), t0);
        assert_eq!(answers.resend(&ok, t0).as_deref(), Some(&b"rewritten"[..]));
        // Another fork's 2xx (other To tag) is not this answer.
        assert_eq!(answers.resend(&msg("SIP/2.0 200 OK", "t2"), t0), None);

        answers.acknowledged(
            &msg("ACK sip:b@h SIP/2.0", "t1"),
            t0 + Duration::from_secs(1),
        );
        let before = t0 + Duration::from_secs(1) + AFTER_ACK - Duration::from_millis(1);
        assert!(answers.resend(&ok, before).is_some());
        assert_eq!(answers.resend(&ok, before + Duration::from_millis(2)), None);
        assert!(answers.is_empty());
    }

    #[test]
    fn an_unacknowledged_answer_goes_with_the_transactions() {
        let answers = RewrittenAnswers::default();
        let t0 = Instant::now();
        let ok = msg("SIP/2.0 200 OK", "t1");
        answers.keep(&ok, Bytes::from_static(b"x"), t0);
        // An ACK of another dialog does not shorten it.
        answers.acknowledged(&msg("ACK sip:b@h SIP/2.0", "t9"), t0);
        assert!(
            answers
                .resend(&ok, t0 + WITHOUT_ACK - Duration::from_millis(1))
                .is_some()
        );
        assert_eq!(answers.resend(&ok, t0 + WITHOUT_ACK), None);
        assert_eq!(answers.len(), 0);
    }
}
