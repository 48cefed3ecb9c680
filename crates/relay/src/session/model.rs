//! Session state types (all serializable) and the effects and errors the
//! table produces.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use voxline_ng::reply;
use voxline_relay_dataplane::{Latching, StreamConfig, StreamKey, StreamKind};

use crate::config::{InterfaceConfig, RelayConfig};

/// One RTP or RTCP port of a leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Data-plane key.
    pub key: u64,
    /// Local port.
    pub local_port: u16,
    /// Where the endpoint said it receives (from its SDP); `None` on hold
    /// (`0.0.0.0`) or before its SDP is known.
    pub advertised: Option<SocketAddr>,
}

/// One media section (`m=` line) of a leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegMedia {
    /// 1-based index of the `m=` line.
    pub index: u32,
    /// `audio`, `video`, ...
    pub kind: String,
    /// Transport protocol as in the leg's SDP.
    pub protocol: String,
    /// Direction attribute from the leg's SDP.
    pub direction: String,
    /// Connection address `0.0.0.0` (old-style hold).
    pub zero_address: bool,
    /// Port 0: stream rejected/disabled; no ports allocated.
    pub disabled: bool,
    /// RTP port (None while disabled).
    pub rtp: Option<StreamState>,
    /// RTCP port (None while disabled).
    pub rtcp: Option<StreamState>,
    /// The leg's SDP had `a=rtcp-mux`.
    pub offered_mux: bool,
    /// The SDP the relay sent to this leg had `a=rtcp-mux`.
    pub sent_mux: bool,
}

impl LegMedia {
    pub(super) fn mux_active(&self) -> bool {
        self.offered_mux && self.sent_mux
    }

    pub(super) fn one_way(&self) -> bool {
        self.zero_address || self.direction != "sendrecv"
    }
}

/// Source policy of a leg's streams (serializable mirror of [`Latching`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatchPolicy {
    /// Never latch.
    Off,
    /// Latch on the first packet.
    Once,
    /// Follow every source change.
    Always,
}

impl From<LatchPolicy> for Latching {
    fn from(p: LatchPolicy) -> Latching {
        match p {
            LatchPolicy::Off => Latching::Off,
            LatchPolicy::Once => Latching::Once,
            LatchPolicy::Always => Latching::Always,
        }
    }
}

/// One side of a call (rtpengine's monologue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// Stable id within the call.
    pub id: u32,
    /// From- or to-tag; empty until the answer names it.
    pub tag: String,
    /// Further to-tags that answered through this leg (forking).
    pub fork_tags: Vec<String>,
    /// `label`.
    pub label: Option<String>,
    /// `via-branch` of the offer that created this leg.
    pub via_branch: Option<String>,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Leg in dialogue with this one.
    pub peer: Option<u32>,
    /// Index into the configured interfaces.
    pub interface: usize,
    /// Media sections, by `m=` index.
    pub media: Vec<LegMedia>,
    /// Source policy.
    pub latching: LatchPolicy,
    /// `strict source`.
    pub strict_source: bool,
    /// Random seed of the relay's ICE credentials towards this leg (stable
    /// across re-offers); see [`Leg::ice_ufrag`] and [`Leg::ice_pwd`].
    pub ice_seed: u64,
}

impl Leg {
    /// The relay's ICE username fragment towards this leg (8 characters).
    pub fn ice_ufrag(&self) -> String {
        ice_token(self.ice_seed, 8)
    }

    /// The relay's ICE password towards this leg (26 characters).
    pub fn ice_pwd(&self) -> String {
        ice_token(self.ice_seed ^ 0x5bd1_e995_9e37_79b9, 26)
    }

    pub(super) fn has_tag(&self, tag: &str) -> bool {
        self.tag == tag || self.fork_tags.iter().any(|t| t == tag)
    }
}

/// Expands a seed into `len` alphanumeric characters (splitmix64).
fn ice_token(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let i = usize::try_from(z % ALPHABET.len() as u64).unwrap_or(0);
            char::from(ALPHABET.get(i).copied().unwrap_or(b'x'))
        })
        .collect()
}

/// One call (call-id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The call-id.
    pub call_id: String,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Last ng command (ms).
    pub last_signal_ms: u64,
    /// TOS byte for this call's packets.
    pub tos: u8,
    /// Data-plane worker owning all streams of this call.
    pub worker: usize,
    /// Legs.
    pub legs: Vec<Leg>,
    pub(super) next_leg: u32,
}

impl Call {
    pub(super) fn leg(&self, id: u32) -> Option<&Leg> {
        self.legs.iter().find(|l| l.id == id)
    }

    pub(super) fn leg_pos(&self, id: u32) -> Option<usize> {
        self.legs.iter().position(|l| l.id == id)
    }

    pub(super) fn streams(&self) -> impl Iterator<Item = (&Leg, &StreamState, StreamKind)> {
        self.legs.iter().flat_map(|l| {
            l.media.iter().flat_map(move |m| {
                m.rtp
                    .iter()
                    .map(move |s| (l, s, StreamKind::Rtp))
                    .chain(m.rtcp.iter().map(move |s| (l, s, StreamKind::Rtcp)))
            })
        })
    }
}

/// What the I/O layer must do for the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Bind (already bound by the [`PortBinder`]) socket `local` becomes stream `key`.
    Open {
        /// Stream key.
        key: StreamKey,
        /// Worker to own it.
        worker: usize,
        /// Bound local address.
        local: SocketAddr,
        /// RTP or RTCP.
        kind: StreamKind,
        /// Held for another relay (see [`StreamConfig::standby`]).
        standby: bool,
    },
    /// (Re)configure a stream.
    Configure {
        /// Stream key.
        key: StreamKey,
        /// Its worker.
        worker: usize,
        /// New configuration.
        config: StreamConfig,
    },
    /// Close a stream.
    Close {
        /// Stream key.
        key: StreamKey,
        /// Its worker.
        worker: usize,
    },
}

/// Why a session ended (logged, counted in `statistics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// `delete` command.
    Deleted,
    /// No media for `timeout`.
    Timeout,
    /// No media for `silent-timeout` while on hold / one-way.
    SilentTimeout,
    /// `final-timeout` reached.
    FinalTimeout,
    /// Relay shutdown.
    Shutdown,
}

impl EndReason {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Deleted => "delete",
            EndReason::Timeout => "timeout",
            EndReason::SilentTimeout => "silent-timeout",
            EndReason::FinalTimeout => "final-timeout",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// A command that failed; `Display` is the ng `error-reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Port pool exhausted.
    #[error("Ran out of ports")]
    OutOfPorts,
    /// `max_sessions` reached.
    #[error("Parallel session limit reached")]
    SessionLimit,
    /// `answer`/`query` for an unknown call or tag.
    #[error("Unknown call-id")]
    UnknownCall,
    /// `delete` (with `fatal`) for an unknown call or tags.
    #[error("Call-ID not found or tags didn't match")]
    NotFound,
    /// A session taken over from another relay has a call-id this relay
    /// already serves.
    #[error("Call-ID already exists")]
    Exists,
    /// The SDP could not be parsed.
    #[error("Failed to parse SDP: {0}")]
    Sdp(#[from] voxline_sdp::SdpError),
    /// An answer/re-offer with a different number of media sections than
    /// the relay can map.
    #[error("Incomplete SDP specification: {0}")]
    Mismatch(String),
}

/// Outcome of offer/answer: SDP for the recipient, warnings, effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOutcome {
    /// Rewritten SDP.
    pub sdp: String,
    /// Warnings (unknown interface, ...).
    pub warnings: Vec<String>,
    /// Data-plane work.
    pub effects: Vec<Effect>,
}

/// Outcome of a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// Statistics taken before deletion (None with `fast`, or not found).
    pub stats: Option<reply::CallStats>,
    /// Warning for a non-fatal miss.
    pub warning: Option<String>,
    /// Data-plane work.
    pub effects: Vec<Effect>,
}

/// A session ended by the timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The call-id.
    pub call_id: String,
    /// Why.
    pub reason: EndReason,
}

/// Running totals for `statistics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sessions created.
    pub managed: u64,
    /// Offers refused.
    pub rejected: u64,
    /// Ended by timeout.
    pub timeout: u64,
    /// Ended by silent timeout.
    pub silent_timeout: u64,
    /// Ended by final timeout.
    pub final_timeout: u64,
    /// Ended by delete.
    pub regular: u64,
    /// Ended by shutdown.
    pub forced: u64,
    /// Ended without any media.
    pub zero_way: u64,
    /// Ended with media one way only.
    pub one_way: u64,
    /// Sum of durations of ended sessions (ms).
    pub duration_ms_sum: u64,
    /// Ended sessions.
    pub ended: u64,
    /// Sessions taken over from other relays.
    #[serde(default)]
    pub adopted: u64,
}

/// The table's settings, derived from [`RelayConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableConfig {
    /// Logical interfaces (first = default).
    pub interfaces: Vec<InterfaceConfig>,
    /// Default TOS.
    pub tos: u8,
    /// ms.
    pub timeout_ms: u64,
    /// ms.
    pub silent_timeout_ms: u64,
    /// ms; 0 = off.
    pub final_timeout_ms: u64,
    /// 0 = unlimited.
    pub max_sessions: usize,
    /// Data-plane workers.
    pub workers: usize,
    /// Raw I/O with several workers: a call's ports come from its worker's
    /// partition of the range (`voxline_relay_dataplane::raw_partition`).
    /// 0 or 1: no partitions.
    #[serde(default)]
    pub port_partitions: usize,
}

impl From<&RelayConfig> for TableConfig {
    fn from(c: &RelayConfig) -> Self {
        TableConfig {
            interfaces: c.interfaces.clone(),
            tos: c.tos,
            timeout_ms: c.timeout_secs.saturating_mul(1000),
            silent_timeout_ms: c.silent_timeout_secs.saturating_mul(1000),
            final_timeout_ms: c.final_timeout_secs.saturating_mul(1000),
            max_sessions: c.max_sessions,
            workers: c.workers.max(1),
            port_partitions: match c.io {
                crate::config::RelayIo::Raw => c.workers.max(1),
                crate::config::RelayIo::Sockets => 1,
            },
        }
    }
}
