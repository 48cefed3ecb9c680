//! The client side of ng: cookies, request encoding, reply decoding into
//! typed results, and a sans-IO retransmission state.

use std::time::{Duration, Instant};

use rand::RngExt as _;

use crate::bencode::Value;
use crate::frame::{Encoding, Frame, encode_message};
use crate::reply::{CallStats, OUT_OF_PORTS, SESSION_LIMIT};

/// Client-side failures; the relay-specific reasons Kamailio fails over on
/// have their own variants.
#[derive(Debug, thiserror::Error)]
pub enum NgError {
    /// No reply after all attempts.
    #[error("no ng reply after {attempts} attempts")]
    Timeout {
        /// Datagrams sent.
        attempts: u32,
    },
    /// `error-reason: Ran out of ports`.
    #[error("Ran out of ports")]
    OutOfPorts,
    /// `error-reason: Parallel session limit reached`.
    #[error("Parallel session limit reached")]
    SessionLimit,
    /// `result: load limit`.
    #[error("load limit: {0}")]
    LoadLimit(String),
    /// Any other `result: error`.
    #[error("ng error: {0}")]
    Remote(String),
    /// The reply could not be decoded or lacks required keys.
    #[error("malformed ng reply: {0}")]
    MalformedReply(String),
    /// Socket error in an I/O driver.
    #[error("ng transport: {0}")]
    Io(#[from] std::io::Error),
}

impl NgError {
    /// True for the errors after which Kamailio tries the next relay.
    pub fn is_failover(&self) -> bool {
        matches!(
            self,
            NgError::OutOfPorts
                | NgError::SessionLimit
                | NgError::LoadLimit(_)
                | NgError::Timeout { .. }
        )
    }
}

/// Generates unique cookies `<random prefix>_<sequence>` (Kamailio uses
/// `<server id>_<random>_<seq>`).
#[derive(Debug)]
pub struct CookieGenerator {
    prefix: String,
    seq: u64,
}

impl Default for CookieGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl CookieGenerator {
    /// A generator with a random prefix.
    pub fn new() -> Self {
        let n: u32 = rand::rng().random();
        CookieGenerator {
            prefix: format!("{n:08x}"),
            seq: 0,
        }
    }

    /// The next cookie.
    pub fn next_cookie(&mut self) -> String {
        self.seq += 1;
        format!("{}_{}", self.prefix, self.seq)
    }
}

/// Encodes a request datagram `<cookie> <bencode dict>`.
pub fn encode_request(cookie: &str, body: &Value<'_>) -> Vec<u8> {
    encode_message(cookie.as_bytes(), body, Encoding::Bencode)
}

/// A decoded reply datagram.
#[derive(Debug)]
pub struct ReplyMessage<'a> {
    /// The echoed cookie.
    pub cookie: &'a [u8],
    /// The reply dictionary.
    pub body: Value<'a>,
}

/// Splits and decodes a reply datagram.
pub fn decode_reply(datagram: &[u8]) -> Result<ReplyMessage<'_>, NgError> {
    let frame = Frame::parse(datagram).map_err(|e| NgError::MalformedReply(e.to_string()))?;
    let body = frame
        .decode()
        .map_err(|e| NgError::MalformedReply(e.to_string()))?;
    Ok(ReplyMessage {
        cookie: frame.cookie,
        body,
    })
}

/// Checks `result`; returns the `warning` on success.
pub fn check_result(body: &Value<'_>) -> Result<Option<String>, NgError> {
    let result = body
        .get("result")
        .and_then(Value::as_str)
        .ok_or_else(|| NgError::MalformedReply("no 'result' key".into()))?;
    match result {
        "ok" | "pong" => Ok(body
            .get("warning")
            .and_then(Value::as_str)
            .map(str::to_owned)),
        "load limit" => Err(NgError::LoadLimit(
            body.get("message")
                .and_then(Value::as_str)
                .unwrap_or("load limit")
                .to_owned(),
        )),
        "error" => {
            let reason = body
                .get("error-reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Err(match reason {
                OUT_OF_PORTS => NgError::OutOfPorts,
                SESSION_LIMIT => NgError::SessionLimit,
                other => NgError::Remote(other.to_owned()),
            })
        }
        other => Err(NgError::MalformedReply(format!("unknown result '{other}'"))),
    }
}

/// Reply to `offer`/`answer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferReply {
    /// The rewritten SDP.
    pub sdp: String,
    /// `warning`, if any.
    pub warning: Option<String>,
}

impl OfferReply {
    /// Interprets a reply body.
    pub fn from_body(body: &Value<'_>) -> Result<OfferReply, NgError> {
        let warning = check_result(body)?;
        let sdp = body
            .get("sdp")
            .and_then(Value::as_str)
            .ok_or_else(|| NgError::MalformedReply("no 'sdp' in reply".into()))?
            .to_owned();
        Ok(OfferReply { sdp, warning })
    }
}

/// Reply to `delete` (statistics unless `fast` or unknown call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteReply {
    /// Final statistics, if present.
    pub stats: Option<CallStats>,
    /// `warning`, if any (e.g. call not found).
    pub warning: Option<String>,
}

impl DeleteReply {
    /// Interprets a reply body.
    pub fn from_body(body: &Value<'_>) -> Result<DeleteReply, NgError> {
        let warning = check_result(body)?;
        let stats = body.get("tags").map(|_| CallStats::from_value(body));
        Ok(DeleteReply { stats, warning })
    }
}

/// Interprets a `query` reply body.
pub fn query_from_body(body: &Value<'_>) -> Result<CallStats, NgError> {
    check_result(body)?;
    Ok(CallStats::from_value(body))
}

/// Timeout and attempts, Kamailio's defaults: 1000 ms × 5
/// (`rtpengine_tout_ms`, `rtpengine_retr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitPolicy {
    /// Wait after each send.
    pub timeout: Duration,
    /// Total datagrams to send.
    pub attempts: u32,
}

impl Default for RetransmitPolicy {
    fn default() -> Self {
        RetransmitPolicy {
            timeout: Duration::from_millis(1000),
            attempts: 5,
        }
    }
}

/// What the driver of an [`Exchange`] should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum ExchangeAction<'a> {
    /// Send this datagram now (same cookie every time).
    Send(&'a [u8]),
    /// Nothing to do before this instant, unless a reply arrives.
    Wait(Instant),
    /// All attempts used up without a reply.
    TimedOut {
        /// Datagrams sent.
        attempts: u32,
    },
    /// A reply was matched; stop.
    Done,
}

/// One request/reply exchange with retransmissions under the same cookie.
#[derive(Debug)]
pub struct Exchange {
    cookie: String,
    datagram: Vec<u8>,
    policy: RetransmitPolicy,
    sent: u32,
    deadline: Option<Instant>,
    done: bool,
}

impl Exchange {
    /// Prepares an exchange for `body` under `cookie`.
    pub fn new(cookie: String, body: &Value<'_>, policy: RetransmitPolicy) -> Exchange {
        let datagram = encode_request(&cookie, body);
        Exchange {
            cookie,
            datagram,
            policy,
            sent: 0,
            deadline: None,
            done: false,
        }
    }

    /// The cookie.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Drives the state at `now`.
    pub fn poll(&mut self, now: Instant) -> ExchangeAction<'_> {
        if self.done {
            return ExchangeAction::Done;
        }
        match self.deadline {
            Some(d) if now < d => ExchangeAction::Wait(d),
            _ if self.sent >= self.policy.attempts.max(1) => ExchangeAction::TimedOut {
                attempts: self.sent,
            },
            _ => {
                self.sent += 1;
                self.deadline = Some(now + self.policy.timeout);
                ExchangeAction::Send(&self.datagram)
            }
        }
    }

    /// Offers a received datagram; returns the reply body if its cookie
    /// matches (a reply for another cookie is ignored).
    pub fn handle_datagram<'d>(
        &mut self,
        datagram: &'d [u8],
    ) -> Option<Result<Value<'d>, NgError>> {
        let frame = Frame::parse(datagram).ok()?;
        if frame.cookie != self.cookie.as_bytes() || self.done {
            return None;
        }
        self.done = true;
        Some(
            frame
                .decode()
                .map_err(|e| NgError::MalformedReply(e.to_string())),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::reply::build;

    #[test]
    fn maps_failover_reasons() {
        assert!(matches!(
            check_result(&build::error(OUT_OF_PORTS)),
            Err(NgError::OutOfPorts)
        ));
        assert!(matches!(
            check_result(&build::error(SESSION_LIMIT)),
            Err(NgError::SessionLimit)
        ));
        assert!(matches!(
            check_result(&build::load_limit("CPU usage limit exceeded")),
            Err(NgError::LoadLimit(m)) if m == "CPU usage limit exceeded"
        ));
        assert!(
            matches!(check_result(&build::error("Unknown call-id")), Err(NgError::Remote(r)) if r == "Unknown call-id")
        );
        assert!(NgError::OutOfPorts.is_failover());
        assert!(!NgError::Remote(String::new()).is_failover());
        let ok = build::ok_sdp("v=0\r\n".into(), &["w".into()]);
        assert_eq!(
            OfferReply::from_body(&ok).unwrap(),
            OfferReply {
                sdp: "v=0\r\n".into(),
                warning: Some("w".into())
            }
        );
        assert!(matches!(
            OfferReply::from_body(&build::ok(&[])),
            Err(NgError::MalformedReply(_))
        ));
    }

    #[test]
    fn cookies_are_unique() {
        let mut g = CookieGenerator::new();
        assert_ne!(g.next_cookie(), g.next_cookie());
    }

    #[test]
    fn retransmits_with_same_cookie_then_times_out() {
        let t0 = Instant::now();
        let policy = RetransmitPolicy {
            timeout: Duration::from_millis(100),
            attempts: 3,
        };
        let mut ex = Exchange::new(
            "ck_1".into(),
            &Value::dict().with("command", Value::str("ping")),
            policy,
        );
        let first = match ex.poll(t0) {
            ExchangeAction::Send(d) => d.to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(first, b"ck_1 d7:command4:pinge");
        assert_eq!(
            ex.poll(t0 + Duration::from_millis(50)),
            ExchangeAction::Wait(t0 + Duration::from_millis(100))
        );
        assert_eq!(
            ex.poll(t0 + Duration::from_millis(100)),
            ExchangeAction::Send(&first)
        );
        assert_eq!(
            ex.poll(t0 + Duration::from_millis(200)),
            ExchangeAction::Send(&first)
        );
        assert_eq!(
            ex.poll(t0 + Duration::from_millis(300)),
            ExchangeAction::TimedOut { attempts: 3 }
        );
    }

    #[test]
    fn matches_reply_by_cookie() {
        let mut ex = Exchange::new("ck_2".into(), &Value::dict(), RetransmitPolicy::default());
        let _ = ex.poll(Instant::now());
        assert!(ex.handle_datagram(b"other d6:result4:ponge").is_none());
        let body = ex
            .handle_datagram(b"ck_2 d6:result4:ponge")
            .unwrap()
            .unwrap();
        assert_eq!(body.get("result").unwrap().as_str(), Some("pong"));
        assert_eq!(ex.poll(Instant::now()), ExchangeAction::Done);
    }
}
