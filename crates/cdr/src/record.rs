//! The call detail record: one per call attempt, written when it ends.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use voxline_transaction::TransportKind;

use crate::row::Row;
use crate::time::Timestamp;

mod media;

pub use media::{MediaTotals, RelayUsage};

/// One call attempt: who called whom from where, when it started, was
/// answered and ended, how it ended, and the media relay's totals.
///
/// Build it with [`CdrRecord::new`] when the attempt starts (or ends) and
/// fill in the rest; hand it to [`crate::CdrWriter::record`] when it ends,
/// whether it was answered or failed.
///
/// Its serde form (JSON export, spool lines) is the flat row described in
/// `docs/cdr.md`, with times as RFC 3339 strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Row", try_from = "Row")]
pub struct CdrRecord {
    /// Unique id of the record (the idempotency key of the store).
    pub id: RecordId,
    /// The Call-ID of the INVITE.
    pub call_id: String,
    /// The node that handled the call (`[node] name`).
    pub node: String,
    /// The caller (From).
    pub caller: Caller,
    /// The callee (To and Request-URI).
    pub callee: Callee,
    /// Where the INVITE came from.
    pub source: Source,
    /// When the INVITE arrived.
    pub start: Timestamp,
    /// When the call was answered (2xx), if it was.
    pub answer: Option<Timestamp>,
    /// When the attempt ended (BYE, final failure, CANCEL, timeout).
    pub end: Timestamp,
    /// Final SIP status of the INVITE (200 for an answered call; 487
    /// after CANCEL, 408 on timeout ...).
    pub status: u16,
    /// The reason phrase sent with `status`.
    pub reason: String,
    /// Who ended the call, and why.
    pub hangup: Hangup,
    /// The media relay the call used and its totals; `None` without a
    /// relay (no SDP, no media anchoring, or the attempt failed first).
    pub relay: Option<RelayUsage>,
}

/// The caller, from the From header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The address of record (`sip:alice@example.com`, no parameters).
    pub aor: String,
    /// The display name, if any (unquoted).
    pub display: Option<String>,
}

/// The callee.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callee {
    /// The To address of record.
    pub aor: String,
    /// The Request-URI of the INVITE as received.
    pub request_uri: String,
}

/// The transport address the caller's INVITE came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// IP and port.
    pub addr: SocketAddr,
    /// The transport.
    pub transport: TransportKind,
}

/// Who ended a call attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HangupParty {
    /// The caller (BYE from the caller, or CANCEL).
    Caller,
    /// The callee (BYE from the callee, or a final failure response).
    Callee,
    /// The proxy itself (maximum duration, timeout, media gone ...).
    Proxy,
}

impl HangupParty {
    /// `caller`, `callee` or `proxy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HangupParty::Caller => "caller",
            HangupParty::Callee => "callee",
            HangupParty::Proxy => "proxy",
        }
    }
}

impl fmt::Display for HangupParty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HangupParty {
    type Err = RecordError;
    fn from_str(s: &str) -> Result<HangupParty, RecordError> {
        match s {
            "caller" => Ok(HangupParty::Caller),
            "callee" => Ok(HangupParty::Callee),
            "proxy" => Ok(HangupParty::Proxy),
            _ => Err(RecordError::Field("hangup_by", s.to_string())),
        }
    }
}

/// Why a call attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HangupReason {
    /// A BYE (`bye`).
    Bye,
    /// The caller cancelled before an answer (`cancel`).
    Cancel,
    /// A final failure response (`rejected`; the status says which).
    Rejected,
    /// The maximum call duration was reached (`max-duration`).
    MaxDuration,
    /// No final answer in time, or the ringing timeout (`timeout`).
    Timeout,
    /// The endpoints vanished: no signalling and no media (`inactivity`).
    Inactivity,
    /// Anything else, as a short kebab-case word (`shutdown`,
    /// `relay-failure` ...).
    Other(String),
}

impl HangupReason {
    /// The text form (`bye`, `max-duration`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            HangupReason::Bye => "bye",
            HangupReason::Cancel => "cancel",
            HangupReason::Rejected => "rejected",
            HangupReason::MaxDuration => "max-duration",
            HangupReason::Timeout => "timeout",
            HangupReason::Inactivity => "inactivity",
            HangupReason::Other(s) => s,
        }
    }

    /// The reason of a text form (unknown words become [`HangupReason::Other`]).
    pub fn parse(s: &str) -> HangupReason {
        match s {
            "bye" => HangupReason::Bye,
            "cancel" => HangupReason::Cancel,
            "rejected" => HangupReason::Rejected,
            "max-duration" => HangupReason::MaxDuration,
            "timeout" => HangupReason::Timeout,
            "inactivity" => HangupReason::Inactivity,
            other => HangupReason::Other(other.to_string()),
        }
    }
}

impl fmt::Display for HangupReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who ended the call and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hangup {
    /// Who.
    pub by: HangupParty,
    /// Why.
    pub reason: HangupReason,
}

impl Hangup {
    /// Ended by the caller.
    pub fn caller(reason: HangupReason) -> Hangup {
        Hangup {
            by: HangupParty::Caller,
            reason,
        }
    }

    /// Ended by the callee.
    pub fn callee(reason: HangupReason) -> Hangup {
        Hangup {
            by: HangupParty::Callee,
            reason,
        }
    }

    /// Ended by the proxy.
    pub fn proxy(reason: HangupReason) -> Hangup {
        Hangup {
            by: HangupParty::Proxy,
            reason,
        }
    }
}

/// A record's unique id: 128 random bits written as a UUID (version 4).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId([u8; 16]);

impl RecordId {
    /// A new random id.
    pub fn random() -> RecordId {
        use rand::Rng as _;
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        // RFC 9562: version 4, variant 10.
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        RecordId(bytes)
    }

    /// The id with these bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> RecordId {
        RecordId(bytes)
    }

    /// Its bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for RecordId {
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({self})")
    }
}

impl FromStr for RecordId {
    type Err = RecordError;
    /// Reads the UUID form (any case, hyphens optional).
    fn from_str(s: &str) -> Result<RecordId, RecordError> {
        let bad = || RecordError::Field("id", s.to_string());
        let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
        if hex.len() != 32 || s.len() > 36 {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| char::from(c).to_digit(16);
            match pair {
                [hi, lo] => {
                    let (hi, lo) = (digit(*hi).ok_or_else(bad)?, digit(*lo).ok_or_else(bad)?);
                    *byte = u8::try_from(hi * 16 + lo).map_err(|_| bad())?;
                }
                _ => return Err(bad()),
            }
        }
        Ok(RecordId(bytes))
    }
}

/// A stored or spooled record that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A field holds a value of the wrong form.
    #[error("invalid {0} {1:?}")]
    Field(&'static str, String),
}

impl CdrRecord {
    /// A record for a call attempt that started at `start` and ended at
    /// `end`, not answered, ended by the callee with `rejected`, no relay;
    /// with a fresh random id. Set the other fields as the call went.
    pub fn new(
        call_id: impl Into<String>,
        node: impl Into<String>,
        source: Source,
        start: Timestamp,
        end: Timestamp,
    ) -> CdrRecord {
        CdrRecord {
            id: RecordId::random(),
            call_id: call_id.into(),
            node: node.into(),
            caller: Caller::default(),
            callee: Callee::default(),
            source,
            start,
            answer: None,
            end,
            status: 0,
            reason: String::new(),
            hangup: Hangup::callee(HangupReason::Rejected),
            relay: None,
        }
    }

    /// The talk time: answer to end, zero if not answered.
    pub fn duration(&self) -> Duration {
        self.answer.map_or(Duration::ZERO, |a| self.end.since(a))
    }

    /// Whether the call was answered.
    pub fn answered(&self) -> bool {
        self.answer.is_some()
    }
}

/// The longest text kept in a field (bytes); longer values are cut at a
/// character boundary so that every database accepts them.
pub const MAX_FIELD_LEN: usize = 1024;

/// `s` without control characters, at most [`MAX_FIELD_LEN`] bytes.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_FIELD_LEN));
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_FIELD_LEN {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> CdrRecord {
        let source = Source {
            addr: "192.0.2.10:5062".parse().unwrap(),
            transport: TransportKind::Udp,
        };
        let start = Timestamp::parse("2026-11-21T14:03:07.250Z").unwrap();
        let mut r = CdrRecord::new(
            "a84b4c76e66710@pc33",
            "node-1",
            source,
            start,
            start.saturating_add(Duration::from_millis(65_500)),
        );
        r.caller = Caller {
            aor: "sip:alice@example.com".into(),
            display: Some("Alice \"Al\" Smith".into()),
        };
        r.callee = Callee {
            aor: "sip:bob@example.com".into(),
            request_uri: "sip:bob@192.0.2.20:5060;transport=udp".into(),
        };
        r.answer = Some(start.saturating_add(Duration::from_millis(4_250)));
        r.status = 200;
        r.reason = "OK".into();
        r.hangup = Hangup::caller(HangupReason::Bye);
        r.relay = Some(RelayUsage {
            relay: "127.0.0.1:22222".into(),
            from_caller: MediaTotals {
                packets: 3063,
                bytes: 526_836,
                lost: 2,
            },
            from_callee: MediaTotals {
                packets: 3060,
                bytes: 526_320,
                lost: 0,
            },
        });
        r
    }

    #[test]
    fn duration_is_answer_to_end() {
        let mut r = sample();
        assert_eq!(r.duration(), Duration::from_millis(61_250));
        assert!(r.answered());
        r.answer = None;
        assert_eq!(r.duration(), Duration::ZERO);
        // An answer after the end (clock trouble) is not a negative duration.
        r.answer = Some(r.end.saturating_add(Duration::from_secs(1)));
        assert_eq!(r.duration(), Duration::ZERO);
    }

    #[test]
    fn ids_are_uuid_v4_and_round_trip() {
        let a = RecordId::random();
        let b = RecordId::random();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.as_bytes()[14], b'4');
        assert!(matches!(text.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_eq!(text.parse::<RecordId>().unwrap(), a);
        assert_eq!(text.to_uppercase().parse::<RecordId>().unwrap(), a);
        assert_eq!(text.replace('-', "").parse::<RecordId>().unwrap(), a);
        for bad in [
            "",
            "xyz",
            &text[..35],
            &format!("{text}0"),
            &text.replace('a', "g"),
        ] {
            if bad != text {
                assert!(bad.parse::<RecordId>().is_err(), "{bad:?}");
            }
        }
        assert!("é".repeat(16).parse::<RecordId>().is_err());
    }

    #[test]
    fn hangup_words() {
        for (reason, word) in [
            (HangupReason::Bye, "bye"),
            (HangupReason::Cancel, "cancel"),
            (HangupReason::Rejected, "rejected"),
            (HangupReason::MaxDuration, "max-duration"),
            (HangupReason::Timeout, "timeout"),
            (HangupReason::Inactivity, "inactivity"),
            (HangupReason::Other("shutdown".into()), "shutdown"),
        ] {
            assert_eq!(reason.as_str(), word);
            assert_eq!(HangupReason::parse(word), reason);
        }
        for party in [HangupParty::Caller, HangupParty::Callee, HangupParty::Proxy] {
            assert_eq!(party.as_str().parse::<HangupParty>().unwrap(), party);
        }
        assert!("nobody".parse::<HangupParty>().is_err());
    }

    #[test]
    fn clean_drops_controls_and_caps_length() {
        assert_eq!(clean("a\0b\r\nc\u{7f}"), "abc");
        assert_eq!(clean("jörg"), "jörg");
        let long = "ä".repeat(MAX_FIELD_LEN);
        let cut = clean(&long);
        assert!(cut.len() <= MAX_FIELD_LEN && cut.len() >= MAX_FIELD_LEN - 1);
        assert!(cut.chars().all(|c| c == 'ä'));
    }
}
