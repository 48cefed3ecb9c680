//! Standby ("foreign") sessions: other relays' sessions, restored from
//! their Redis records and held for takeover. Each keeps this relay's own
//! stream keys (so a takeover keeps the sockets), and each of its sockets is
//! bound here when possible — a stream in standby drops what it receives
//! and reports it, which triggers a takeover when the dead relay's address
//! has moved here. Sans-IO: binding is the caller's.

use std::collections::HashMap;
use std::net::SocketAddr;

use voxline_relay_dataplane::{StreamKey, StreamKind};

use super::SessionTable;
use super::media::configure_call;
use super::model::{Call, Effect};
use crate::config::InterfaceConfig;
use crate::replication::SessionRecord;

/// One socket of a standby session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StandbySocket {
    /// This relay's stream key.
    pub key: StreamKey,
    /// The owner's address and port.
    pub local: SocketAddr,
    /// RTP or RTCP.
    pub kind: StreamKind,
    /// Bound here (else retried when the owner misses heartbeats, and at
    /// takeover).
    pub bound: bool,
}

/// A session held for another relay.
#[derive(Debug, Clone)]
pub(crate) struct StandbyCall {
    /// Its owner.
    pub owner: String,
    /// The owner's interfaces (legs refer to them by index).
    pub interfaces: Vec<InterfaceConfig>,
    /// The session, with this relay's stream keys and worker.
    pub call: Call,
    /// Its sockets.
    pub sockets: Vec<StandbySocket>,
}

/// What an upsert needs from the I/O layer.
#[derive(Debug, Default)]
pub(crate) struct StandbyChange {
    /// Sockets to try binding; each bound one becomes a standby stream
    /// (`Effect::Open` with `standby`) — report with
    /// [`StandbyTable::mark_bound`].
    pub to_bind: Vec<(StreamKey, SocketAddr, StreamKind, usize)>,
    /// Streams to close and configurations to apply (after the opens).
    pub effects: Vec<Effect>,
}

/// All standby sessions of this relay.
#[derive(Debug, Default)]
pub(crate) struct StandbyTable {
    calls: HashMap<String, StandbyCall>,
    by_key: HashMap<StreamKey, String>,
}

impl StandbyTable {
    /// Number of standby sessions.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// The owner of a standby session.
    pub fn owner_of_call(&self, call_id: &str) -> Option<&str> {
        self.calls.get(call_id).map(|c| c.owner.as_str())
    }

    /// The owner of the standby session a stream belongs to.
    pub fn owner_of_key(&self, key: StreamKey) -> Option<&str> {
        self.by_key.get(&key).and_then(|id| self.owner_of_call(id))
    }

    /// Owners with at least one standby session.
    pub fn owners(&self) -> Vec<String> {
        let mut v: Vec<String> = self.calls.values().map(|c| c.owner.clone()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Call-ids held.
    pub fn call_ids(&self) -> Vec<String> {
        self.calls.keys().cloned().collect()
    }

    /// Adds or updates a session from its owner's record. Sockets that stay
    /// keep their keys (and binding); new ones are to be bound; gone ones are
    /// closed.
    pub fn upsert(&mut self, record: SessionRecord, table: &mut SessionTable) -> StandbyChange {
        let call_id = record.call.call_id.clone();
        let old: HashMap<SocketAddr, StandbySocket> = self
            .calls
            .remove(&call_id)
            .map(|c| c.sockets.into_iter().map(|s| (s.local, s)).collect())
            .unwrap_or_default();
        let mut old = old;
        let mut call = record.call;
        call.worker = table.worker_for(&call_id);
        let worker = call.worker;
        let mut sockets = Vec::new();
        let mut change = StandbyChange::default();
        for leg in &mut call.legs {
            let Some(ifc) = record.interfaces.get(leg.interface) else {
                continue;
            };
            for m in &mut leg.media {
                for (state, kind) in [
                    (m.rtp.as_mut(), StreamKind::Rtp),
                    (m.rtcp.as_mut(), StreamKind::Rtcp),
                ] {
                    let Some(state) = state else { continue };
                    let local = SocketAddr::new(ifc.address, state.local_port);
                    let socket = match old.remove(&local) {
                        Some(s) => s,
                        None => {
                            let key = StreamKey(table.alloc_key());
                            change.to_bind.push((key, local, kind, worker));
                            StandbySocket {
                                key,
                                local,
                                kind,
                                bound: false,
                            }
                        }
                    };
                    state.key = socket.key.0;
                    self.by_key.insert(socket.key, call_id.clone());
                    sockets.push(socket);
                }
            }
        }
        for gone in old.into_values() {
            self.by_key.remove(&gone.key);
            if gone.bound {
                change.effects.push(Effect::Close {
                    key: gone.key,
                    worker,
                });
            }
        }
        configure_call(&call, &mut change.effects, true);
        self.calls.insert(
            call_id,
            StandbyCall {
                owner: record.owner,
                interfaces: record.interfaces,
                call,
                sockets,
            },
        );
        change
    }

    /// Records whether a socket of [`StandbyChange::to_bind`] (or of
    /// [`StandbyTable::unbound_of`]) could be bound.
    pub fn mark_bound(&mut self, key: StreamKey) {
        let Some(id) = self.by_key.get(&key) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(id)
            && let Some(s) = c.sockets.iter_mut().find(|s| s.key == key)
        {
            s.bound = true;
        }
    }

    /// Standby configurations of the sessions the given streams belong to.
    pub fn configs_for_keys(&self, keys: &[StreamKey]) -> Vec<Effect> {
        let mut ids: Vec<&String> = keys.iter().filter_map(|k| self.by_key.get(k)).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut effects = Vec::new();
        for id in ids {
            if let Some(c) = self.calls.get(id) {
                configure_call(&c.call, &mut effects, true);
            }
        }
        effects
    }

    /// Removes a session; returns the effects closing its bound streams.
    pub fn remove(&mut self, call_id: &str) -> Vec<Effect> {
        let Some(c) = self.calls.remove(call_id) else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        for s in c.sockets {
            self.by_key.remove(&s.key);
            if s.bound {
                effects.push(Effect::Close {
                    key: s.key,
                    worker: c.call.worker,
                });
            }
        }
        effects
    }

    /// Sockets of `owner`'s sessions not bound yet: (key, address, kind,
    /// worker).
    pub fn unbound_of(&self, owner: &str) -> Vec<(StreamKey, SocketAddr, StreamKind, usize)> {
        self.calls
            .values()
            .filter(|c| c.owner == owner)
            .flat_map(|c| {
                c.sockets
                    .iter()
                    .filter(|s| !s.bound)
                    .map(|s| (s.key, s.local, s.kind, c.call.worker))
            })
            .collect()
    }

    /// Removes and returns all sessions of `owner` (for a takeover).
    pub fn take_owner(&mut self, owner: &str) -> Vec<StandbyCall> {
        let ids: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.owner == owner)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(c) = self.calls.remove(&id) {
                for s in &c.sockets {
                    self.by_key.remove(&s.key);
                }
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::RelayConfig;
    use crate::replication::RECORD_VERSION;
    use crate::session::{LatchPolicy, Leg, LegMedia, StreamState};

    fn ifc(addr: &str) -> InterfaceConfig {
        InterfaceConfig {
            name: "default".into(),
            address: addr.parse().unwrap(),
            advertised_address: None,
        }
    }

    fn media(port: u16, key: u64) -> LegMedia {
        LegMedia {
            index: 1,
            kind: "audio".into(),
            protocol: "RTP/AVP".into(),
            direction: "sendrecv".into(),
            zero_address: false,
            disabled: false,
            rtp: Some(StreamState {
                key,
                local_port: port,
                advertised: Some("127.0.0.1:4000".parse().unwrap()),
            }),
            rtcp: Some(StreamState {
                key: key + 1,
                local_port: port + 1,
                advertised: None,
            }),
            offered_mux: false,
            sent_mux: false,
        }
    }

    fn leg(id: u32, tag: &str, peer: u32, port: u16) -> Leg {
        Leg {
            id,
            tag: tag.into(),
            fork_tags: vec![],
            label: None,
            via_branch: None,
            created_ms: 0,
            peer: Some(peer),
            interface: 0,
            media: vec![media(port, u64::from(port))],
            latching: LatchPolicy::Once,
            strict_source: false,
            ice_seed: 1,
        }
    }

    fn record(owner: &str, call_id: &str, legs: Vec<Leg>) -> SessionRecord {
        SessionRecord {
            v: RECORD_VERSION,
            owner: owner.into(),
            updated_ms: 1,
            interfaces: vec![ifc("127.0.0.2")],
            call: Call {
                call_id: call_id.into(),
                created_ms: 0,
                last_signal_ms: 0,
                tos: 184,
                worker: 7,
                legs,
                next_leg: 3,
            },
        }
    }

    #[test]
    fn upsert_keeps_keys_binds_new_sockets_and_closes_gone_ones() {
        let mut table = SessionTable::new(&RelayConfig::default());
        let mut st = StandbyTable::default();
        let r = record("a", "c1", vec![leg(1, "x", 2, 40000)]);
        let ch = st.upsert(r, &mut table);
        assert_eq!(ch.to_bind.len(), 2, "RTP and RTCP");
        let (k_rtp, addr, kind, worker) = ch.to_bind[0];
        assert_eq!(
            (addr, kind),
            ("127.0.0.2:40000".parse().unwrap(), StreamKind::Rtp)
        );
        assert_eq!(worker, 0, "this relay's worker, not the owner's");
        assert!(
            ch.effects
                .iter()
                .all(|e| matches!(e, Effect::Configure { config, .. } if config.standby)),
            "standby configuration only"
        );
        st.mark_bound(k_rtp);
        assert_eq!(st.owner_of_key(k_rtp), Some("a"));
        assert_eq!(st.unbound_of("a").len(), 1);
        // The answer adds the second leg: the first keeps its sockets.
        let r = record(
            "a",
            "c1",
            vec![leg(1, "x", 2, 40000), leg(2, "y", 1, 40002)],
        );
        let ch = st.upsert(r, &mut table);
        assert_eq!(ch.to_bind.len(), 2);
        assert!(ch.to_bind.iter().all(|(k, ..)| *k != k_rtp));
        assert_eq!(st.unbound_of("a").len(), 3);
        // A re-offer moved the first leg: its bound RTP socket is closed.
        let r = record(
            "a",
            "c1",
            vec![leg(1, "x", 2, 40010), leg(2, "y", 1, 40002)],
        );
        let ch = st.upsert(r, &mut table);
        assert!(ch.effects.contains(&Effect::Close {
            key: k_rtp,
            worker: 0
        }));
        assert_eq!(st.owner_of_key(k_rtp), None);
        assert_eq!((st.len(), st.owners()), (1, vec!["a".to_owned()]));
        st.upsert(record("b", "c2", vec![leg(1, "x", 2, 40100)]), &mut table);
        assert_eq!(st.owner_of_call("c2"), Some("b"));
        let taken = st.take_owner("a");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].call.legs.len(), 2);
        assert!(st.unbound_of("a").is_empty());
        assert!(
            st.remove("c2").is_empty(),
            "nothing bound, nothing to close"
        );
        assert_eq!(st.len(), 0);
    }
}
