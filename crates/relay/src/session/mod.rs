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

mod adopt;
mod media;
mod model;
mod rewrite;
pub(crate) mod standby;
mod stats;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use voxline_ng::command::{DeleteRequest, MediaRequest};
use voxline_ng::reply;
use voxline_relay_dataplane::{CounterSnapshot, StreamKey};
use voxline_sdp::Sdp;

use crate::config::{InterfaceConfig, RelayConfig};
use crate::ports::{PortBinder, PortPool};
use media::{
    apply_tos, configure_call, latch_policy, new_leg, release_call, remove_legs, sync_media,
};
pub use model::{
    Call, DeleteOutcome, Effect, EndReason, Expired, LatchPolicy, Leg, LegMedia, MediaOutcome,
    SessionError, StreamState, TableConfig, Totals,
};

/// All calls of the relay plus the port pools.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionTable {
    config: TableConfig,
    calls: HashMap<String, Call>,
    pools: Vec<PortPool>,
    next_key: u64,
    totals: Totals,
    /// Port range and quarantine for pools of interfaces added by a
    /// takeover.
    port_range: (u16, u16, u64),
    /// Call-ids changed since the last [`SessionTable::take_changed`]
    /// (replication).
    #[serde(skip)]
    changed: Vec<String>,
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
            // At most one call per 4 ports (2 legs x RTP/RTCP pairs).
            calls: HashMap::with_capacity(
                (usize::from(config.port_max.saturating_sub(config.port_min)) + 1) / 4,
            ),
            pools,
            next_key: 1,
            totals: Totals::default(),
            port_range: (
                config.port_min,
                config.port_max,
                config.port_quarantine_secs.saturating_mul(1000),
            ),
            changed: Vec::new(),
        }
    }

    /// The interfaces legs refer to by index: the configured ones, then any
    /// added by takeovers.
    pub fn interfaces(&self) -> &[InterfaceConfig] {
        &self.config.interfaces
    }

    /// All calls.
    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.values()
    }

    /// Call-ids created, changed or ended since the last call (each once).
    pub fn take_changed(&mut self) -> Vec<String> {
        let mut v = std::mem::take(&mut self.changed);
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Marks a call for writing (again).
    pub(crate) fn mark_changed(&mut self, call_id: &str) {
        self.changed.push(call_id.to_owned());
    }

    /// A fresh data-plane stream key.
    pub(crate) fn alloc_key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
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

    pub(crate) fn worker_for(&self, call_id: &str) -> usize {
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
        if let (Some(af), Some(ifc)) = (req.address_family, self.config.interfaces.get(to_if)) {
            let v4 = ifc.sdp_address().is_ipv4();
            if v4 != (af == voxline_ng::command::AddressFamily::Ip4) {
                warnings.push(format!(
                    "address-family {} not available on interface '{}'",
                    af.as_str(),
                    ifc.name
                ));
            }
        }
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
                // Two legs per call; forks and serial branches grow it.
                legs: Vec::with_capacity(2),
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
            self.config.port_partitions,
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
        configure_call(call, &mut effects, false);
        self.changed.push(req.call_id.clone());
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
        self.changed.push(req.call_id.clone());
        sync_media(
            call,
            b_id,
            a_id,
            &sdp,
            req,
            &self.config.interfaces,
            &mut self.pools,
            self.config.port_partitions,
            &mut self.next_key,
            now_ms,
            binder,
            &mut effects,
        )?;
        let out = rewrite::rewrite(&sdp, call, a_id, req, &self.config.interfaces)?;
        configure_call(call, &mut effects, false);
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
        self.changed.push(req.call_id.clone());
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
                configure_call(call, &mut effects, false);
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
        self.changed.push(call.call_id.clone());
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
