//! The session table: a sans-IO core that turns ng commands into session
//! state, rewritten SDP and stream effects for the data plane.
//!
//! A [`Call`] (one call-id) holds [`Leg`]s (rtpengine's monologues): one per
//! tag, each with its own local ports on its logical interface. The offerer's
//! leg and the recipient's leg are in dialogue; media received on one leg's
//! ports is sent out of the other leg's ports. Re-offers reuse ports; forks
//! (several to-tags answering one offer) share the recipient leg, the latest
//! answer deciding where media goes. Time is an explicit `now` in Unix
//! milliseconds. All state is `serde`-serializable for replication.

mod rewrite;
mod stats;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use voxline_ng::command::{DeleteRequest, Flags, MediaRequest};
use voxline_ng::reply;
use voxline_relay_dataplane::{CounterSnapshot, Latching, StreamConfig, StreamKey, StreamKind};
use voxline_sdp::Sdp;

use crate::config::{InterfaceConfig, RelayConfig};
use crate::ports::{PortBinder, PortPool};

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
    fn mux_active(&self) -> bool {
        self.offered_mux && self.sent_mux
    }

    fn one_way(&self) -> bool {
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
    /// Relay ICE credentials towards this leg.
    pub ice_ufrag: String,
    /// Relay ICE password towards this leg.
    pub ice_pwd: String,
}

impl Leg {
    fn has_tag(&self, tag: &str) -> bool {
        self.tag == tag || self.fork_tags.iter().any(|t| t == tag)
    }
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
    next_leg: u32,
}

impl Call {
    fn leg(&self, id: u32) -> Option<&Leg> {
        self.legs.iter().find(|l| l.id == id)
    }

    fn leg_pos(&self, id: u32) -> Option<usize> {
        self.legs.iter().position(|l| l.id == id)
    }

    fn streams(&self) -> impl Iterator<Item = (&Leg, &StreamState, StreamKind)> {
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
        }
    }
}

/// All calls of the relay plus the port pools.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionTable {
    config: TableConfig,
    calls: HashMap<String, Call>,
    pools: Vec<PortPool>,
    next_key: u64,
    totals: Totals,
}

fn latch_policy(flags: &Flags) -> LatchPolicy {
    if flags.trust_address || flags.no_port_latching || flags.asymmetric {
        LatchPolicy::Off
    } else if flags.media_handover {
        LatchPolicy::Always
    } else {
        LatchPolicy::Once
    }
}

fn random_token(len: usize) -> String {
    use rand::RngExt as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| {
            let i = rng.random_range(0..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'x'))
        })
        .collect()
}

impl SessionTable {
    /// An empty table with one port pool per interface.
    pub fn new(config: &RelayConfig) -> SessionTable {
        let table_config = TableConfig::from(config);
        let pools = table_config
            .interfaces
            .iter()
            .map(|_| {
                PortPool::new(
                    config.port_min,
                    config.port_max,
                    config.port_quarantine_secs.saturating_mul(1000),
                )
            })
            .collect();
        SessionTable {
            config: table_config,
            calls: HashMap::new(),
            pools,
            next_key: 1,
            totals: Totals::default(),
        }
    }

    /// Number of calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True if there are no calls.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// A call by id.
    pub fn call(&self, call_id: &str) -> Option<&Call> {
        self.calls.get(call_id)
    }

    /// Up to `limit` call-ids.
    pub fn list(&self, limit: usize) -> Vec<String> {
        self.calls.keys().take(limit).cloned().collect()
    }

    /// Running totals.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Port usage per interface: (config, used ports).
    pub fn port_usage(&self) -> Vec<(&InterfaceConfig, usize)> {
        self.config
            .interfaces
            .iter()
            .zip(self.pools.iter().map(PortPool::used_ports))
            .collect()
    }

    fn interface_index(&self, name: Option<&str>, warnings: &mut Vec<String>) -> usize {
        match name {
            None | Some("") => 0,
            Some(n) => match self.config.interfaces.iter().position(|i| i.name == n) {
                Some(i) => i,
                None => {
                    warnings.push(format!("Unknown interface '{n}', using the default"));
                    0
                }
            },
        }
    }

    fn worker_for(&self, call_id: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        call_id.hash(&mut h);
        usize::try_from(h.finish() % self.config.workers.max(1) as u64).unwrap_or(0)
    }

    /// Handles `offer`.
    pub fn offer(
        &mut self,
        req: &MediaRequest,
        now_ms: u64,
        binder: &mut dyn PortBinder,
    ) -> Result<MediaOutcome, SessionError> {
        let sdp = Sdp::parse(&req.sdp)?;
        let mut warnings = Vec::new();
        let dir = req.direction.as_ref();
        let from_if = self.interface_index(dir.map(|d| d[0].as_str()), &mut warnings);
        let to_if = self.interface_index(dir.map(|d| d[1].as_str()), &mut warnings);
        let is_new = !self.calls.contains_key(&req.call_id);
        if is_new && self.config.max_sessions > 0 && self.calls.len() >= self.config.max_sessions {
            self.totals.rejected += 1;
            return Err(SessionError::SessionLimit);
        }
        let worker = self.worker_for(&req.call_id);
        let tos_default = self.config.tos;
        let call = self
            .calls
            .entry(req.call_id.clone())
            .or_insert_with(|| Call {
                call_id: req.call_id.clone(),
                created_ms: now_ms,
                last_signal_ms: now_ms,
                tos: tos_default,
                worker,
                legs: Vec::new(),
                next_leg: 1,
            });
        call.last_signal_ms = now_ms;
        apply_tos(call, req.tos, tos_default);
        // The sender's leg.
        let from_id = match call.legs.iter().find(|l| l.has_tag(&req.from_tag)) {
            Some(l) => l.id,
            None => new_leg(call, &req.from_tag, None, from_if, now_ms),
        };
        // The recipient's leg.
        let to_id = match &req.to_tag {
            Some(t) if !t.is_empty() => match call.legs.iter().find(|l| l.has_tag(t)) {
                Some(l) => l.id,
                None => new_leg(call, t, req.via_branch.clone(), to_if, now_ms),
            },
            _ => {
                let pending = call.legs.iter().find(|l| {
                    l.tag.is_empty()
                        && l.peer == Some(from_id)
                        && (req.via_branch.is_none()
                            || l.via_branch.is_none()
                            || l.via_branch == req.via_branch)
                });
                match pending {
                    Some(l) => l.id,
                    None => match call.leg(from_id).and_then(|l| l.peer) {
                        // Re-offer in an established dialogue without to-tag.
                        Some(p)
                            if req.via_branch.is_none()
                                && call.leg(p).is_some_and(|l| !l.tag.is_empty()) =>
                        {
                            p
                        }
                        _ => new_leg(call, "", req.via_branch.clone(), to_if, now_ms),
                    },
                }
            }
        };
        if let Some(p) = call.leg_pos(from_id).and_then(|i| call.legs.get_mut(i)) {
            p.peer = Some(to_id);
            p.latching = latch_policy(&req.flags);
            p.strict_source = req.flags.strict_source;
            if req.label.is_some() {
                p.label = req.label.clone();
            }
            if req.direction.is_some() {
                p.interface = from_if;
            }
        }
        if let Some(p) = call.leg_pos(to_id).and_then(|i| call.legs.get_mut(i)) {
            p.peer = Some(from_id);
            if req.direction.is_some() {
                p.interface = to_if;
            }
        }
        let mut effects = Vec::new();
        let result = sync_media(
            call,
            from_id,
            to_id,
            &sdp,
            req,
            &self.config.interfaces,
            &mut self.pools,
            &mut self.next_key,
            now_ms,
            binder,
            &mut effects,
        );
        if let Err(e) = result {
            // Undo a brand-new call entirely; keep an existing one as it was
            // apart from streams already opened (they stay valid).
            if is_new {
                let call = self.calls.remove(&req.call_id);
                if let Some(call) = call {
                    release_call(&call, &mut self.pools, now_ms, &mut effects);
                }
                effects.retain(|e| !matches!(e, Effect::Configure { .. }));
            }
            self.totals.rejected += 1;
            return Err(e);
        }
        if is_new {
            self.totals.managed += 1;
        }
        let Some(call) = self.calls.get_mut(&req.call_id) else {
            return Err(SessionError::UnknownCall);
        };
        let out = rewrite::rewrite(&sdp, call, to_id, req, &self.config.interfaces)?;
        configure_call(call, &mut effects);
        Ok(MediaOutcome {
            sdp: out,
            warnings,
            effects,
        })
    }

    /// Handles `answer`.
    pub fn answer(
        &mut self,
        req: &MediaRequest,
        now_ms: u64,
        binder: &mut dyn PortBinder,
    ) -> Result<MediaOutcome, SessionError> {
        let sdp = Sdp::parse(&req.sdp)?;
        let mut warnings = Vec::new();
        let to_tag = req.to_tag.clone().unwrap_or_default();
        let call = self
            .calls
            .get_mut(&req.call_id)
            .ok_or(SessionError::UnknownCall)?;
        call.last_signal_ms = now_ms;
        apply_tos(call, req.tos, self.config.tos);
        let a_id = call
            .legs
            .iter()
            .find(|l| l.has_tag(&req.from_tag))
            .map(|l| l.id)
            .ok_or(SessionError::UnknownCall)?;
        let b_id = match call.legs.iter().find(|l| l.has_tag(&to_tag)) {
            Some(l) => l.id,
            None => {
                let untagged = call.legs.iter().find(|l| {
                    l.tag.is_empty()
                        && l.peer == Some(a_id)
                        && (req.via_branch.is_none()
                            || l.via_branch.is_none()
                            || l.via_branch == req.via_branch)
                });
                match (untagged.map(|l| l.id), call.leg(a_id).and_then(|l| l.peer)) {
                    (Some(id), _) => {
                        if let Some(l) = call.leg_pos(id).and_then(|i| call.legs.get_mut(i)) {
                            l.tag = to_tag.clone();
                        }
                        id
                    }
                    // A second to-tag answering the same offer: a fork.
                    (None, Some(peer)) => {
                        if let Some(l) = call.leg_pos(peer).and_then(|i| call.legs.get_mut(i)) {
                            l.fork_tags.push(to_tag.clone());
                        }
                        peer
                    }
                    (None, None) => return Err(SessionError::UnknownCall),
                }
            }
        };
        if let Some(p) = call.leg_pos(b_id).and_then(|i| call.legs.get_mut(i)) {
            p.peer = Some(a_id);
            p.latching = latch_policy(&req.flags);
            p.strict_source = req.flags.strict_source;
            if req.label.is_some() {
                p.label = req.label.clone();
            }
        }
        if let Some(p) = call.leg_pos(a_id).and_then(|i| call.legs.get_mut(i)) {
            p.peer = Some(b_id);
        }
        if req.direction.is_some() {
            warnings
                .push("'direction' ignored in answer: interfaces are chosen by the offer".into());
        }
        let mut effects = Vec::new();
        sync_media(
            call,
            b_id,
            a_id,
            &sdp,
            req,
            &self.config.interfaces,
            &mut self.pools,
            &mut self.next_key,
            now_ms,
            binder,
            &mut effects,
        )?;
        let out = rewrite::rewrite(&sdp, call, a_id, req, &self.config.interfaces)?;
        configure_call(call, &mut effects);
        Ok(MediaOutcome {
            sdp: out,
            warnings,
            effects,
        })
    }

    /// Handles `delete`: the whole call, one branch (`to-tag`, or a fork
    /// tag) or the pending branch of a `via-branch`.
    pub fn delete(
        &mut self,
        req: &DeleteRequest,
        now_ms: u64,
        counters: &dyn Fn(StreamKey) -> CounterSnapshot,
    ) -> Result<DeleteOutcome, SessionError> {
        let not_found = |fatal: bool| {
            if fatal {
                Err(SessionError::NotFound)
            } else {
                Ok(DeleteOutcome {
                    stats: None,
                    warning: Some(reply::CALL_NOT_FOUND.to_owned()),
                    effects: Vec::new(),
                })
            }
        };
        let Some(call) = self.calls.get_mut(&req.call_id) else {
            return not_found(req.flags.fatal);
        };
        call.last_signal_ms = now_ms;
        let stats =
            (!req.flags.fast).then(|| stats::call_stats(call, &self.config.interfaces, counters));
        let from = req.from_tag.as_deref().filter(|t| !t.is_empty());
        let to = req.to_tag.as_deref().filter(|t| !t.is_empty());
        if let Some(f) = from
            && !call.legs.iter().any(|l| l.has_tag(f))
        {
            return not_found(req.flags.fatal);
        }
        // Branch deletes.
        let mut effects = Vec::new();
        if let Some(t) = to {
            let Some(pos) = call.legs.iter().position(|l| l.has_tag(t)) else {
                return not_found(req.flags.fatal);
            };
            let forks = call.legs.get(pos).map_or(0, |l| l.fork_tags.len());
            if forks > 0 {
                if let Some(l) = call.legs.get_mut(pos) {
                    if l.tag == t {
                        let next = l.fork_tags.remove(0);
                        l.tag = next;
                    } else {
                        l.fork_tags.retain(|x| x != t);
                    }
                }
                return Ok(DeleteOutcome {
                    stats,
                    warning: None,
                    effects,
                });
            }
        } else if let Some(vb) = req.via_branch.as_deref().filter(|v| !v.is_empty()) {
            let doomed: Vec<u32> = call
                .legs
                .iter()
                .filter(|l| l.tag.is_empty() && l.via_branch.as_deref() == Some(vb))
                .map(|l| l.id)
                .collect();
            if doomed.is_empty() {
                return not_found(req.flags.fatal);
            }
            let others = call.legs.iter().filter(|l| !doomed.contains(&l.id)).count();
            if others > 1 {
                remove_legs(call, &doomed, &mut self.pools, now_ms, &mut effects);
                configure_call(call, &mut effects);
                return Ok(DeleteOutcome {
                    stats,
                    warning: None,
                    effects,
                });
            }
        }
        let call_id = req.call_id.clone();
        self.end_call(&call_id, EndReason::Deleted, now_ms, counters, &mut effects);
        Ok(DeleteOutcome {
            stats,
            warning: None,
            effects,
        })
    }

    /// Handles `query`.
    pub fn query(
        &self,
        call_id: &str,
        counters: &dyn Fn(StreamKey) -> CounterSnapshot,
    ) -> Result<reply::CallStats, SessionError> {
        let call = self.calls.get(call_id).ok_or(SessionError::UnknownCall)?;
        Ok(stats::call_stats(call, &self.config.interfaces, counters))
    }

    /// Ends sessions whose timers ran out; returns them and the effects.
    pub fn poll_timeouts(
        &mut self,
        now_ms: u64,
        counters: &dyn Fn(StreamKey) -> CounterSnapshot,
    ) -> (Vec<Expired>, Vec<Effect>) {
        let mut expired = Vec::new();
        for call in self.calls.values() {
            let last_media = call
                .streams()
                .map(|(_, s, _)| counters(StreamKey(s.key)).last_packet_ms)
                .max()
                .unwrap_or(0);
            let idle = now_ms.saturating_sub(last_media.max(call.last_signal_ms));
            let one_way = call
                .legs
                .iter()
                .any(|l| l.media.iter().any(LegMedia::one_way));
            let reason = if self.config.final_timeout_ms > 0
                && now_ms.saturating_sub(call.created_ms) >= self.config.final_timeout_ms
            {
                Some(EndReason::FinalTimeout)
            } else if one_way {
                (idle >= self.config.silent_timeout_ms).then_some(EndReason::SilentTimeout)
            } else {
                (idle >= self.config.timeout_ms).then_some(EndReason::Timeout)
            };
            if let Some(reason) = reason {
                expired.push(Expired {
                    call_id: call.call_id.clone(),
                    reason,
                });
            }
        }
        let mut effects = Vec::new();
        for e in &expired {
            self.end_call(&e.call_id, e.reason, now_ms, counters, &mut effects);
        }
        (expired, effects)
    }

    /// Ends every call (shutdown).
    pub fn clear(
        &mut self,
        now_ms: u64,
        counters: &dyn Fn(StreamKey) -> CounterSnapshot,
    ) -> Vec<Effect> {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        let mut effects = Vec::new();
        for id in ids {
            self.end_call(&id, EndReason::Shutdown, now_ms, counters, &mut effects);
        }
        effects
    }

    fn end_call(
        &mut self,
        call_id: &str,
        reason: EndReason,
        now_ms: u64,
        counters: &dyn Fn(StreamKey) -> CounterSnapshot,
        effects: &mut Vec<Effect>,
    ) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        let mut legs_with_media = 0;
        for leg in &call.legs {
            let got = leg.media.iter().any(|m| {
                m.rtp
                    .as_ref()
                    .is_some_and(|s| counters(StreamKey(s.key)).packets > 0)
            });
            if got {
                legs_with_media += 1;
            }
        }
        let t = &mut self.totals;
        match legs_with_media {
            0 => t.zero_way += 1,
            1 => t.one_way += 1,
            _ => {}
        }
        match reason {
            EndReason::Deleted => t.regular += 1,
            EndReason::Timeout => t.timeout += 1,
            EndReason::SilentTimeout => t.silent_timeout += 1,
            EndReason::FinalTimeout => t.final_timeout += 1,
            EndReason::Shutdown => t.forced += 1,
        }
        t.ended += 1;
        t.duration_ms_sum += now_ms.saturating_sub(call.created_ms);
        tracing::info!(call_id = %call.call_id, reason = reason.as_str(), "session ended");
        release_call(&call, &mut self.pools, now_ms, effects);
    }
}

fn apply_tos(call: &mut Call, tos: Option<i64>, default: u8) {
    match tos {
        Some(t) if t < 0 => {}
        Some(t) => call.tos = u8::try_from(t).unwrap_or(default),
        None => {}
    }
}

fn new_leg(
    call: &mut Call,
    tag: &str,
    via_branch: Option<String>,
    interface: usize,
    now_ms: u64,
) -> u32 {
    let id = call.next_leg;
    call.next_leg += 1;
    call.legs.push(Leg {
        id,
        tag: tag.to_owned(),
        fork_tags: Vec::new(),
        label: None,
        via_branch,
        created_ms: now_ms,
        peer: None,
        interface,
        media: Vec::new(),
        latching: LatchPolicy::Once,
        strict_source: false,
        ice_ufrag: random_token(8),
        ice_pwd: random_token(26),
    });
    id
}

fn release_call(call: &Call, pools: &mut [PortPool], now_ms: u64, effects: &mut Vec<Effect>) {
    for leg in &call.legs {
        release_leg(leg, call.worker, pools, now_ms, effects);
    }
}

fn release_leg(
    leg: &Leg,
    worker: usize,
    pools: &mut [PortPool],
    now_ms: u64,
    effects: &mut Vec<Effect>,
) {
    for m in &leg.media {
        if let Some(r) = &m.rtp
            && let Some(pool) = pools.get_mut(leg.interface)
        {
            pool.release(r.local_port, now_ms);
        }
        for s in m.rtp.iter().chain(m.rtcp.iter()) {
            effects.push(Effect::Close {
                key: StreamKey(s.key),
                worker,
            });
        }
    }
}

fn remove_legs(
    call: &mut Call,
    ids: &[u32],
    pools: &mut [PortPool],
    now_ms: u64,
    effects: &mut Vec<Effect>,
) {
    for id in ids {
        if let Some(pos) = call.leg_pos(*id) {
            let leg = call.legs.remove(pos);
            release_leg(&leg, call.worker, pools, now_ms, effects);
        }
    }
    for l in &mut call.legs {
        if l.peer.is_some_and(|p| ids.contains(&p)) {
            l.peer = None;
        }
    }
}

/// Endpoint from one media section of an incoming SDP, with the request's
/// address overrides.
fn endpoints(
    info: &voxline_sdp::MediaInfo,
    req: &MediaRequest,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let mut addr = info.connection.address;
    if let Some(m) = req.media_address {
        addr = m;
    } else if req.flags.sip_source_address
        && !req.flags.trust_address
        && let Some(r) = req.received_from
    {
        addr = r;
    }
    if addr.is_unspecified() || info.port == 0 {
        return (None, None);
    }
    let rtp = SocketAddr::new(addr, info.port);
    let rtcp_addr: IpAddr = match (info.rtcp_address, req.media_address) {
        (Some(a), None) if !req.flags.sip_source_address => a,
        _ => addr,
    };
    let rtcp_port = info.rtcp_port.unwrap_or(info.port.saturating_add(1));
    (Some(rtp), Some(SocketAddr::new(rtcp_addr, rtcp_port)))
}

/// Brings the media of `src` (the SDP sender) and `dst` (its recipient) in
/// line with `sdp`: records the sender's endpoints, allocates ports for new
/// media sections on both legs.
#[allow(clippy::too_many_arguments)]
fn sync_media(
    call: &mut Call,
    src: u32,
    dst: u32,
    sdp: &Sdp<'_>,
    req: &MediaRequest,
    interfaces: &[InterfaceConfig],
    pools: &mut [PortPool],
    next_key: &mut u64,
    now_ms: u64,
    binder: &mut dyn PortBinder,
    effects: &mut Vec<Effect>,
) -> Result<(), SessionError> {
    let worker = call.worker;
    for i in 0..sdp.media_count() {
        let Some(info) = sdp.media(i) else {
            return Err(SessionError::Mismatch(format!(
                "media section {} unreadable",
                i + 1
            )));
        };
        let disabled = info.port == 0;
        for (leg_id, is_src) in [(src, true), (dst, false)] {
            let Some(pos) = call.leg_pos(leg_id) else {
                continue;
            };
            let Some(leg) = call.legs.get_mut(pos) else {
                continue;
            };
            while leg.media.len() <= i {
                let index = u32::try_from(leg.media.len() + 1).unwrap_or(u32::MAX);
                leg.media.push(LegMedia {
                    index,
                    kind: info.kind.clone(),
                    protocol: info.protocol.clone(),
                    direction: "sendrecv".to_owned(),
                    zero_address: false,
                    disabled: true,
                    rtp: None,
                    rtcp: None,
                    offered_mux: false,
                    sent_mux: false,
                });
            }
            let iface = leg.interface;
            let Some(m) = leg.media.get_mut(i) else {
                continue;
            };
            if is_src {
                m.kind = info.kind.clone();
                m.protocol = info.protocol.clone();
                m.direction = info.direction.as_str().to_owned();
                m.zero_address = info.connection.is_unspecified();
                m.offered_mux = info.rtcp_mux;
            }
            m.disabled = disabled;
            if !disabled && m.rtp.is_none() {
                let addr = interfaces
                    .get(iface)
                    .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.address);
                let pool = pools.get_mut(iface).ok_or(SessionError::OutOfPorts)?;
                let port = pool
                    .allocate(addr, now_ms, binder)
                    .ok_or(SessionError::OutOfPorts)?;
                for (slot, kind, p) in [(0, StreamKind::Rtp, port), (1, StreamKind::Rtcp, port + 1)]
                {
                    let key = *next_key;
                    *next_key += 1;
                    let state = StreamState {
                        key,
                        local_port: p,
                        advertised: None,
                    };
                    if slot == 0 {
                        m.rtp = Some(state);
                    } else {
                        m.rtcp = Some(state);
                    }
                    effects.push(Effect::Open {
                        key: StreamKey(key),
                        worker,
                        local: SocketAddr::new(addr, p),
                        kind,
                    });
                }
            }
            if is_src {
                let (rtp_ep, rtcp_ep) = endpoints(&info, req);
                if let Some(s) = m.rtp.as_mut() {
                    s.advertised = rtp_ep;
                }
                if let Some(s) = m.rtcp.as_mut() {
                    s.advertised = rtcp_ep;
                }
            }
        }
    }
    Ok(())
}

/// Emits a `Configure` for every stream of the call.
fn configure_call(call: &Call, effects: &mut Vec<Effect>) {
    for leg in &call.legs {
        let peer = leg.peer.and_then(|p| call.leg(p));
        for (i, m) in leg.media.iter().enumerate() {
            let pm = peer.and_then(|p| p.media.get(i)).filter(|pm| !pm.disabled);
            let sink_rtp = pm.and_then(|pm| pm.rtp.as_ref()).map(|s| StreamKey(s.key));
            let sink_rtcp = pm.and_then(|pm| {
                if pm.mux_active() {
                    pm.rtp.as_ref()
                } else {
                    pm.rtcp.as_ref()
                }
                .map(|s| StreamKey(s.key))
            });
            for s in m.rtp.iter().chain(m.rtcp.iter()) {
                effects.push(Effect::Configure {
                    key: StreamKey(s.key),
                    worker: call.worker,
                    config: StreamConfig {
                        endpoint: s.advertised,
                        latching: leg.latching.into(),
                        strict_source: leg.strict_source,
                        sink_rtp,
                        sink_rtcp,
                        tos: call.tos,
                    },
                });
            }
        }
    }
}
