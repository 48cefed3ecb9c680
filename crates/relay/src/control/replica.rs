//! The control plane's side of Redis replication: turning session changes
//! into writes, keeping other relays' sessions in standby, and taking them
//! over. Synchronous and socket-free apart from binding media ports; the
//! Redis I/O is in [`crate::replication`].

use std::collections::HashMap;
use std::net::UdpSocket;

use tokio::sync::mpsc::UnboundedSender;
use voxline_relay_dataplane::{StreamKey, StreamKind};

use super::{Control, bind_freebind};
use crate::replication::{Liveness, RECORD_VERSION, RelayInfo, SessionRecord, Verdict};
use crate::session::Effect;
use crate::session::standby::{StandbyChange, StandbyTable};

/// A write for the Redis writer: the latest state of one session (`None`:
/// delete its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteOp {
    /// The call-id.
    pub call_id: String,
    /// The encoded [`SessionRecord`], or `None` to delete.
    pub value: Option<String>,
}

/// What set off a takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The owner's heartbeat stopped.
    Heartbeat,
    /// The owner missed a heartbeat and its ng address is free and local
    /// here: its process is gone (one machine), or its address has moved
    /// here.
    Address,
    /// Media arrived on a standby stream.
    Media,
    /// An ng command for a standby session.
    Signalling,
}

impl Trigger {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::Heartbeat => "heartbeat",
            Trigger::Address => "address",
            Trigger::Media => "media",
            Trigger::Signalling => "signalling",
        }
    }
}

/// A takeover done by the control plane; the I/O layer completes it (ng
/// addresses, Redis bookkeeping).
#[derive(Debug, Clone)]
pub(crate) struct TakenOver {
    /// The relay taken over.
    pub relay: String,
    /// Its last known addresses.
    pub info: Option<RelayInfo>,
    /// What set it off.
    pub trigger: Trigger,
    /// Sessions adopted.
    pub sessions: usize,
    /// Media sockets that could not be bound.
    pub unbound: usize,
}

/// Replication state of a relay with `[relay.redis]`.
/// How long a takeover waits, in all, for media ports the old owner still
/// holds. A crashed relay's ports are free at once; one shutting down (or
/// whose process is being torn down) releases them within milliseconds.
const REBIND_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// Binds a taken-over media socket, retrying while the address is still in
/// use until `deadline`. Blocks the caller for at most that long, and only
/// in a takeover that raced the old owner's release of its ports.
fn bind_taken_over(
    local: std::net::SocketAddr,
    deadline: std::time::Instant,
) -> std::io::Result<UdpSocket> {
    loop {
        match bind_freebind(local) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

pub(crate) struct Replica {
    me: String,
    standby_enabled: bool,
    writes: UnboundedSender<WriteOp>,
    takeovers: UnboundedSender<TakenOver>,
    standby: StandbyTable,
    liveness: Liveness,
    infos: HashMap<String, RelayInfo>,
    /// Relays this relay took over: records still naming them as owner are
    /// stale (our write-back is on its way).
    taken_over: std::collections::HashSet<String>,
    /// The first reconcile (own sessions restored) is done.
    restored: bool,
    /// When this relay started (Unix ms): its own records written since
    /// are this run's, never sessions to take back from before a restart.
    started_ms: u64,
}

impl Replica {
    /// `writes` feeds the Redis writer; `takeovers` tells the I/O layer
    /// about takeovers started by ng commands.
    pub(crate) fn new(
        config: &crate::config::RedisConfig,
        writes: UnboundedSender<WriteOp>,
        takeovers: UnboundedSender<TakenOver>,
    ) -> Replica {
        Replica {
            me: config.relay_id.clone(),
            standby_enabled: config.standby,
            writes,
            takeovers,
            standby: StandbyTable::default(),
            liveness: Liveness::new(
                &config.relay_id,
                &config.follow,
                config.heartbeat_interval_ms,
                config.heartbeat_timeout_ms,
            ),
            infos: HashMap::new(),
            taken_over: std::collections::HashSet::new(),
            restored: false,
            started_ms: voxline_relay_dataplane::unix_ms(),
        }
    }
}

impl Control {
    pub(crate) fn foreign_len(&self) -> usize {
        self.replica.as_ref().map_or(0, |r| r.standby.len())
    }

    fn own_record(&self, call_id: &str, now_ms: u64) -> Option<String> {
        let r = self.replica.as_ref()?;
        let call = self.table.call(call_id)?;
        let record = SessionRecord {
            v: RECORD_VERSION,
            owner: r.me.clone(),
            updated_ms: now_ms,
            interfaces: self.table.interfaces().to_vec(),
            call: call.clone(),
        };
        match record.encode() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(call_id, error = %e, "cannot encode session record");
                None
            }
        }
    }

    /// Queues a write for every session changed since the last call.
    pub(crate) fn replicate(&mut self, now_ms: u64) {
        let changed = self.table.take_changed();
        if self.replica.is_none() {
            return;
        }
        for call_id in changed {
            let value = self.own_record(&call_id, now_ms);
            if let Some(r) = &self.replica {
                let _ = r.writes.send(WriteOp { call_id, value });
            }
        }
    }

    /// Writes of every own session (full resync after a reconnect).
    pub(crate) fn own_records(&self, now_ms: u64) -> Vec<WriteOp> {
        let ids: Vec<String> = self.table.calls().map(|c| c.call_id.clone()).collect();
        ids.into_iter()
            .filter_map(|call_id| {
                let value = self.own_record(&call_id, now_ms)?;
                Some(WriteOp {
                    call_id,
                    value: Some(value),
                })
            })
            .collect()
    }

    /// This relay's interfaces (own and taken over).
    pub(crate) fn interfaces(&self) -> Vec<crate::config::InterfaceConfig> {
        self.table.interfaces().to_vec()
    }

    /// The stored state of a session: `value` is its record, `None` if the
    /// key is gone.
    pub(crate) fn on_call_record(&mut self, call_id: &str, value: Option<&[u8]>, now_ms: u64) {
        let Some(r) = self.replica.as_mut() else {
            return;
        };
        let record = match value.map(SessionRecord::decode) {
            None => None,
            Some(Ok(rec)) => Some(rec),
            Some(Err(e)) => {
                tracing::warn!(call_id, error = %e, "unreadable session record ignored");
                metrics::counter!("voxline_relay_redis_bad_records_total").increment(1);
                return;
            }
        };
        let Some(record) = record else {
            if r.standby.owner_of_call(call_id).is_some() {
                let effects = r.standby.remove(call_id);
                self.execute(effects);
            } else if self.table.call(call_id).is_some() {
                // Our key vanished (flushed, evicted): write it again.
                self.table.mark_changed(call_id);
                self.replicate(now_ms);
            }
            return;
        };
        if record.owner == r.me {
            if self.table.call(call_id).is_some() {
                return;
            }
            if r.restored || record.updated_ms >= r.started_ms {
                // Stale: we ended it and the delete is still on its way (or
                // was lost). Also before the first reconcile: a record this
                // run wrote for a session no longer in the table was ended
                // here (read back before the delete landed); taking it back
                // would bring a deleted call back to life, in Redis and on
                // every standby.
                let _ = r.writes.send(WriteOp {
                    call_id: call_id.to_owned(),
                    value: None,
                });
                return;
            }
            // Ours from before a restart: take it back.
            let owner = record.owner.clone();
            let change = r.standby.upsert(record, &mut self.table);
            self.apply_standby_change(change);
            self.adopt_owner(&owner, now_ms);
            return;
        }
        if r.taken_over.contains(&record.owner) {
            // Written by a relay we took over before our write-back landed.
            if self.table.call(call_id).is_some() {
                self.table.mark_changed(call_id);
                self.replicate(now_ms);
            }
            return;
        }
        if self.table.call(call_id).is_some() {
            // Another relay has taken one of ours.
            if let Some(effects) = self.table.demote(call_id, now_ms) {
                self.execute(effects);
            }
        }
        let Some(r) = self.replica.as_mut() else {
            return;
        };
        if r.standby_enabled && r.liveness.follows(&record.owner) {
            r.liveness.on_known(&record.owner, now_ms);
            let change = r.standby.upsert(record, &mut self.table);
            self.apply_standby_change(change);
        } else if r.standby.owner_of_call(call_id).is_some() {
            let effects = r.standby.remove(call_id);
            self.execute(effects);
        }
    }

    /// Binds what an upsert asks for and applies its effects.
    fn apply_standby_change(&mut self, change: StandbyChange) {
        let mut bound = Vec::new();
        for (key, local, kind, worker) in change.to_bind {
            if let Some(e) = self.try_bind_standby(key, local, kind, worker) {
                bound.push(e);
            }
        }
        bound.extend(change.effects);
        self.execute(bound);
    }

    fn try_bind_standby(
        &mut self,
        key: StreamKey,
        local: std::net::SocketAddr,
        kind: StreamKind,
        worker: usize,
    ) -> Option<Effect> {
        let socket = bind_freebind(local).ok()?;
        self.pending.insert(local, socket);
        if let Some(r) = self.replica.as_mut() {
            r.standby.mark_bound(key);
        }
        Some(Effect::Open {
            key,
            worker,
            local,
            kind,
            standby: true,
        })
    }

    /// A relay's heartbeat was written (`alive`) or its key is gone.
    pub(crate) fn on_heartbeat(&mut self, relay: &str, alive: bool, now_ms: u64) {
        if let Some(r) = self.replica.as_mut() {
            if alive {
                if r.taken_over.remove(relay) {
                    tracing::warn!(relay, "a relay taken over is back (restarted)");
                }
                r.liveness.on_heartbeat(relay, now_ms);
            } else {
                r.liveness.on_heartbeat_gone(relay, now_ms);
            }
        }
    }

    /// A relay's info record (`None`: deleted, e.g. after someone took it
    /// over).
    pub(crate) fn on_relay_info(&mut self, relay: &str, info: Option<RelayInfo>, now_ms: u64) {
        let Some(r) = self.replica.as_mut() else {
            return;
        };
        if relay == r.me {
            return;
        }
        match info {
            Some(i) => {
                r.liveness.on_known(relay, now_ms);
                r.infos.insert(relay.to_owned(), i);
            }
            None => {
                r.infos.remove(relay);
                if r.standby.owners().iter().all(|o| o != relay) {
                    r.liveness.forget(relay);
                }
            }
        }
    }

    /// After a (re)subscription: the complete set of stored sessions. Standby
    /// sessions no longer stored are dropped; own sessions missing from
    /// Redis are written again. The first reconcile after start restores
    /// this relay's own sessions.
    pub(crate) fn reconcile(&mut self, calls: Vec<(String, Vec<u8>)>, now_ms: u64) {
        let Some(r) = self.replica.as_mut() else {
            return;
        };
        let stored: std::collections::HashSet<String> =
            calls.iter().map(|(id, _)| id.clone()).collect();
        let gone: Vec<String> = r
            .standby
            .call_ids()
            .into_iter()
            .filter(|id| !stored.contains(id))
            .collect();
        for id in gone {
            self.on_call_record(&id, None, now_ms);
        }
        for (id, value) in &calls {
            self.on_call_record(id, Some(value), now_ms);
        }
        let missing: Vec<String> = self
            .table
            .calls()
            .map(|c| c.call_id.clone())
            .filter(|id| !stored.contains(id))
            .collect();
        for id in missing {
            self.table.mark_changed(&id);
        }
        self.replicate(now_ms);
        if let Some(r) = self.replica.as_mut()
            && !r.restored
        {
            r.restored = true;
            tracing::info!(
                own = self.table.len(),
                standby = r.standby.len(),
                "sessions loaded from Redis"
            );
        }
        self.flush_wakes();
    }

    /// Timer: heartbeat verdicts, as relays to take over with the reason.
    /// A relay that missed a heartbeat is taken over at once if its ng
    /// address is free here (its process is gone, or its address moved
    /// here); otherwise its standby sockets are bound where possible, so its
    /// media triggers the takeover when it arrives. Dead relays are taken
    /// over.
    pub(crate) fn poll_standby(&mut self, now_ms: u64) -> Vec<(String, Trigger)> {
        let Some(r) = self.replica.as_mut() else {
            return Vec::new();
        };
        if !r.standby_enabled {
            return Vec::new();
        }
        let mut out = Vec::new();
        for v in r.liveness.poll(now_ms) {
            match v {
                Verdict::Suspect(relay) => {
                    if self.ng_address_free(&relay) {
                        out.push((relay, Trigger::Address));
                    } else {
                        self.prebind(&relay);
                    }
                }
                Verdict::Dead(relay) => out.push((relay, Trigger::Heartbeat)),
            }
        }
        self.flush_wakes();
        out
    }

    /// True if one of `relay`'s ng UDP addresses can be bound here without
    /// `IP_FREEBIND`: local, and not held by anyone.
    fn ng_address_free(&self, relay: &str) -> bool {
        let Some(info) = self.replica.as_ref().and_then(|r| r.infos.get(relay)) else {
            return false;
        };
        info.ng_udp
            .iter()
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
            .any(|a| UdpSocket::bind(a).is_ok())
    }

    /// Tries to bind the not yet bound standby sockets of `relay`.
    fn prebind(&mut self, relay: &str) {
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let wanted = r.standby.unbound_of(relay);
        let mut effects = Vec::new();
        let mut keys = Vec::new();
        for (key, local, kind, worker) in wanted {
            match self.try_bind_standby(key, local, kind, worker) {
                Some(e) => {
                    effects.push(e);
                    keys.push(key);
                }
                // Still held by its owner: no point trying the rest now.
                None => break,
            }
        }
        if keys.is_empty() {
            return;
        }
        tracing::info!(relay, sockets = keys.len(), "standby sockets bound");
        if let Some(r) = self.replica.as_ref() {
            effects.extend(r.standby.configs_for_keys(&keys));
        }
        self.execute(effects);
        self.flush_wakes();
    }

    /// Whether a heartbeat verdict about `relay` still calls for a takeover
    /// (nobody took it over meanwhile).
    pub(crate) fn has_standby_of(&self, relay: &str) -> bool {
        self.replica.as_ref().is_some_and(|r| {
            r.standby.owners().iter().any(|o| o == relay) || r.infos.contains_key(relay)
        })
    }

    /// The last known info of `relay`.
    pub(crate) fn relay_info(&self, relay: &str) -> Option<RelayInfo> {
        self.replica.as_ref()?.infos.get(relay).cloned()
    }

    /// Media arrived on a standby stream: the owner of its session, if that
    /// is to be taken over.
    pub(crate) fn owner_of_stream(&self, key: StreamKey) -> Option<String> {
        let r = self.replica.as_ref()?;
        r.standby.owner_of_key(key).map(str::to_owned)
    }

    /// An ng command names `call_id`: if it is a standby session whose
    /// owner has missed a heartbeat, take that owner over now, so the
    /// command finds the session.
    pub(super) fn signal_for_foreign(&mut self, call_id: &str, now_ms: u64) {
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        if !r.standby_enabled || self.table.call(call_id).is_some() {
            return;
        }
        let Some(owner) = r.standby.owner_of_call(call_id).map(str::to_owned) else {
            return;
        };
        if r.liveness.is_alive(&owner, now_ms) || !r.liveness.own_link_fresh(now_ms) {
            tracing::debug!(call_id, %owner, "ng command for a standby session of a live relay");
            return;
        }
        let done = self.takeover(&owner, Trigger::Signalling, now_ms);
        if let Some(r) = self.replica.as_ref() {
            let _ = r.takeovers.send(done);
        }
    }

    /// Takes over every standby session of `relay`: binds the sockets not
    /// bound yet, makes the sessions this relay's own (written back to Redis
    /// as such) and switches their streams to forwarding.
    pub(crate) fn takeover(&mut self, relay: &str, trigger: Trigger, now_ms: u64) -> TakenOver {
        let info = self.replica.as_mut().and_then(|r| {
            r.liveness.forget(relay);
            r.taken_over.insert(relay.to_owned());
            r.infos.remove(relay)
        });
        let t0 = std::time::Instant::now();
        let (sessions, unbound) = self.adopt_owner(relay, now_ms);
        tracing::warn!(
            relay,
            trigger = trigger.as_str(),
            sessions,
            unbound_sockets = unbound,
            adopt_ms = t0.elapsed().as_millis() as u64,
            "took over relay"
        );
        metrics::counter!("voxline_relay_takeovers_total", "trigger" => trigger.as_str())
            .increment(1);
        TakenOver {
            relay: relay.to_owned(),
            info,
            trigger,
            sessions,
            unbound,
        }
    }

    /// Adopts all standby sessions of `owner`; returns (sessions, sockets
    /// that could not be bound).
    fn adopt_owner(&mut self, owner: &str, now_ms: u64) -> (usize, usize) {
        let Some(r) = self.replica.as_mut() else {
            return (0, 0);
        };
        let calls = r.standby.take_owner(owner);
        let deadline = std::time::Instant::now() + REBIND_WAIT;
        let (mut sessions, mut unbound) = (0, 0);
        let mut effects = Vec::new();
        for c in calls {
            let worker = c.call.worker;
            for s in c.sockets.iter().filter(|s| !s.bound) {
                match bind_taken_over(s.local, deadline) {
                    Ok(socket) => {
                        self.pending.insert(s.local, socket);
                        effects.push(Effect::Open {
                            key: s.key,
                            worker,
                            local: s.local,
                            kind: s.kind,
                            standby: false,
                        });
                    }
                    Err(e) => {
                        unbound += 1;
                        tracing::error!(local = %s.local, error = %e, "cannot bind a taken-over socket");
                    }
                }
            }
            let call_id = c.call.call_id.clone();
            match self.table.adopt(c.call, &c.interfaces, now_ms) {
                Ok(e) => {
                    sessions += 1;
                    effects.extend(e);
                }
                Err(e) => {
                    tracing::warn!(%call_id, error = %e, "standby session not adopted");
                    effects.extend(
                        c.sockets
                            .iter()
                            .map(|s| Effect::Close { key: s.key, worker }),
                    );
                }
            }
        }
        self.execute(effects);
        self.pending.clear();
        // Media first: the workers switch the streams over while the
        // records are encoded for Redis.
        self.flush_wakes();
        self.replicate(now_ms);
        (sessions, unbound)
    }
}
