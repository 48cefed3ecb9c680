//! Dialogs as a record-routing proxy sees them (Kamailio's dialog module):
//! which calls exist, in which state, with what each side needs to be sent
//! a BYE, when they must end (maximum duration), and how many each
//! subscriber and domain has (concurrent-call limits).
//!
//! No I/O and no clock: every operation takes `now` in Unix milliseconds,
//! so the table is tested deterministically. The proxy feeds it and acts on
//! what it returns (BYEs to send, records to write).

mod config;
mod table;

pub use config::DialogConfig;
pub use table::{DialogTable, Leg};

use std::net::SocketAddr;

use serde::Serialize;

/// Where a dialog is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DialogState {
    /// INVITE forwarded, no 2xx yet.
    Early,
    /// A 2xx arrived: the call is up.
    Confirmed,
    /// Over (kept only in the returned [`Ended`] record).
    Terminated,
}

/// Who ended a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "by", content = "reason")]
pub enum Hangup {
    /// The caller (BYE or CANCEL from the caller side).
    Caller,
    /// The callee (BYE from the callee, or a final failure response).
    Callee,
    /// This proxy, with a reason: `max-duration`, `no-media`, `timeout`...
    Proxy(String),
}

/// A new call attempt (an initial INVITE the proxy is about to forward).
#[derive(Debug, Clone)]
pub struct NewCall {
    /// Call-ID.
    pub call_id: String,
    /// From tag of the caller.
    pub from_tag: String,
    /// Caller's address-of-record (`user@domain`).
    pub caller: String,
    /// Callee (Request-URI / To address-of-record).
    pub callee: String,
    /// Where the INVITE came from.
    pub source: SocketAddr,
    /// Transport of the INVITE (`udp`, `tcp`...).
    pub transport: String,
    /// The subscriber the call counts against (the authenticated caller),
    /// if any.
    pub subscriber: Option<String>,
    /// The domain the call counts against, if any.
    pub domain: Option<String>,
    /// CSeq number of the INVITE.
    pub cseq: u32,
    /// The caller's side of the dialog, for a BYE the proxy may have to send.
    pub caller_leg: Leg,
}

/// The answer to [`DialogTable::begin`] when a limit is hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct LimitExceeded {
    /// Response status to send (403 or 486, per config).
    pub status: u16,
    /// Reason phrase naming the limit.
    pub reason: &'static str,
}

/// A snapshot of one dialog (admin API, CDRs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DialogInfo {
    /// Table-unique id.
    pub id: u64,
    /// Call-ID.
    pub call_id: String,
    /// Caller's From tag.
    pub from_tag: String,
    /// Callee's To tag, once known.
    pub to_tag: Option<String>,
    /// State.
    pub state: DialogState,
    /// Caller AOR.
    pub caller: String,
    /// Callee AOR.
    pub callee: String,
    /// Caller's source address.
    pub source: String,
    /// Caller's transport.
    pub transport: String,
    /// Start (INVITE) time, Unix ms.
    pub started_ms: u64,
    /// Answer (2xx) time, Unix ms.
    pub answered_ms: Option<u64>,
    /// Last in-dialog request, Unix ms.
    pub last_activity_ms: u64,
    /// The media relay anchoring the call, if any.
    pub relay: Option<String>,
}

/// A dialog that ended, with everything a call detail record needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ended {
    /// The dialog as it was.
    pub info: DialogInfo,
    /// End time, Unix ms.
    pub ended_ms: u64,
    /// Final status of the call attempt (200 for answered calls).
    pub status: u16,
    /// Reason phrase of that status.
    pub reason: String,
    /// Who ended it.
    pub hangup: Hangup,
}

impl Ended {
    /// Answer-to-end duration in ms (0 if never answered).
    pub fn duration_ms(&self) -> u64 {
        self.info
            .answered_ms
            .map_or(0, |a| self.ended_ms.saturating_sub(a))
    }
}

/// A confirmed dialog the proxy must end itself: send a BYE on both legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// The record of the call.
    pub ended: Ended,
    /// The caller's leg (BYE towards the caller).
    pub caller: Leg,
    /// The callee's leg (BYE towards the callee), when the call was answered.
    pub callee: Option<Leg>,
}
