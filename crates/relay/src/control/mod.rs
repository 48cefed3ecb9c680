//! The relay's command executor: ng bytes in, ng bytes out. Owns the session
//! table, the data plane, the stream counters and the cookie cache; turns the
//! table's effects into socket binds and worker commands.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

use voxline_ng::Value;
use voxline_ng::cache::CookieCache;
use voxline_ng::command::{Command, CommandKind, Request};
use voxline_ng::frame::{Frame, encode_message};
use voxline_ng::reply::{InterfaceStats, Statistics, build};
use voxline_relay_dataplane::{
    CounterSnapshot, Dataplane, StreamCommand, StreamConfig, StreamCounters, StreamKey,
};

use crate::ports::PortBinder;
use crate::session::{Effect, SessionTable};

mod replica;
pub(crate) use replica::{Replica, TakenOver, Trigger, WriteOp};

const COOKIE_CACHE_ENTRIES: usize = 65_536;
const COOKIE_CACHE_TTL_MS: u64 = 10_000;
const COMMANDS: [CommandKind; 7] = [
    CommandKind::Ping,
    CommandKind::Offer,
    CommandKind::Answer,
    CommandKind::Delete,
    CommandKind::Query,
    CommandKind::List,
    CommandKind::Statistics,
];

/// Numbers about a running relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Active sessions (calls).
    pub sessions: usize,
    /// Streams (RTP + RTCP ports) in the data plane.
    pub streams: usize,
    /// Packets received and accepted on all streams, ever.
    pub packets: u64,
    /// Bytes received and accepted, ever.
    pub bytes: u64,
    /// Packets dropped (invalid, wrong source, send failure), ever.
    pub errors: u64,
    /// Packets forwarded, ever.
    pub forwarded: u64,
    /// ng commands executed (retransmissions answered from cache excluded).
    pub commands: u64,
    /// Retransmitted ng commands answered from the cookie cache.
    pub duplicates: u64,
    /// Sessions ended by a timeout of any kind.
    pub timed_out: u64,
    /// Standby sessions held for other relays.
    pub foreign_sessions: usize,
    /// Sessions taken over from other relays, ever.
    pub adopted: u64,
    /// Redis replication state (None without `[relay.redis]`).
    pub redis: Option<crate::replication::RedisStatus>,
}

struct Binder<'a> {
    pending: &'a mut HashMap<SocketAddr, UdpSocket>,
}

impl PortBinder for Binder<'_> {
    fn bind_pair(&mut self, addr: IpAddr, rtp_port: u16) -> bool {
        let rtp = SocketAddr::new(addr, rtp_port);
        let rtcp = SocketAddr::new(addr, rtp_port.wrapping_add(1));
        match (bind_nonblocking(rtp), bind_nonblocking(rtcp)) {
            (Ok(a), Ok(b)) => {
                self.pending.insert(rtp, a);
                self.pending.insert(rtcp, b);
                true
            }
            _ => {
                tracing::debug!(%addr, rtp_port, "port pair busy, skipped");
                false
            }
        }
    }
}

/// A non-blocking UDP socket bound to `addr` (SOCK_NONBLOCK: no extra
/// syscall).
fn bind_nonblocking(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let ty = socket2::Type::DGRAM.nonblocking();
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Like [`bind_nonblocking`], also for an address that is not (yet) local
/// (`IP_FREEBIND`): a standby holds another relay's ports before that
/// relay's address moves here.
pub(crate) fn bind_freebind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let ty = socket2::Type::DGRAM.nonblocking();
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None)?;
    match s.bind(&addr.into()) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            if addr.is_ipv4() {
                s.set_freebind_v4(true)?;
            } else {
                s.set_freebind_v6(true)?;
            }
            s.bind(&addr.into())?;
        }
        r => r?,
    }
    Ok(s.into())
}

pub(crate) struct Control {
    table: SessionTable,
    dataplane: Option<Dataplane>,
    counters: HashMap<u64, Arc<StreamCounters>>,
    pending: HashMap<SocketAddr, UdpSocket>,
    /// Keyed by a keyed hash of (source, cookie): no per-entry key
    /// allocations; collisions are negligible (64 bits, secret seed).
    cache: CookieCache<u64>,
    cookie_hasher: std::collections::hash_map::RandomState,
    command_counts: [u64; 7],
    duplicates: u64,
    closed: CounterSnapshot,
    started_ms: u64,
    rate: (u64, u64, u64, u64),
    rates: (u64, u64, u64),
    port_range: (u16, u16),
    unwoken: Vec<usize>,
    /// Redis replication and standby sessions (None without
    /// `[relay.redis]`).
    replica: Option<Replica>,
}

/// Pairs every effect with the configuration a stream it opens starts with:
/// the last `Configure` of that stream in the same batch (before any
/// `Close` of it), which is then dropped. The worker sets a stream up once
/// (one TOS option) instead of adding it bare and reconfiguring it.
fn merge_configures(effects: Vec<Effect>) -> Vec<(Effect, Option<StreamConfig>)> {
    let mut slots: Vec<Option<Effect>> = effects.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    for i in 0..slots.len() {
        let Some(e) = slots.get_mut(i).and_then(Option::take) else {
            continue;
        };
        let mut initial = None;
        if let Effect::Open { key, .. } = &e {
            for later in slots.iter_mut().skip(i + 1) {
                match later {
                    Some(Effect::Close { key: k, .. }) if k == key => break,
                    Some(Effect::Configure { key: k, .. }) if k == key => {
                        if let Some(Effect::Configure { config, .. }) = later.take() {
                            initial = Some(config);
                        }
                    }
                    _ => {}
                }
            }
        }
        out.push((e, initial));
    }
    out
}

fn snapshot(map: &HashMap<u64, Arc<StreamCounters>>, key: StreamKey) -> CounterSnapshot {
    map.get(&key.0).map(|c| c.snapshot()).unwrap_or_default()
}

impl Control {
    pub(crate) fn new(
        table: SessionTable,
        dataplane: Dataplane,
        port_range: (u16, u16),
        now_ms: u64,
    ) -> Control {
        let streams = usize::from(port_range.1.saturating_sub(port_range.0)) + 1;
        Control {
            table,
            dataplane: Some(dataplane),
            counters: HashMap::with_capacity(streams),
            pending: HashMap::new(),
            cache: CookieCache::new(COOKIE_CACHE_ENTRIES, COOKIE_CACHE_TTL_MS),
            cookie_hasher: std::collections::hash_map::RandomState::new(),
            command_counts: [0; 7],
            duplicates: 0,
            closed: CounterSnapshot::default(),
            started_ms: now_ms,
            rate: (now_ms, 0, 0, 0),
            rates: (0, 0, 0),
            port_range,
            unwoken: Vec::new(),
            replica: None,
        }
    }

    /// Switches replication on.
    pub(crate) fn set_replica(&mut self, replica: Replica) {
        self.replica = Some(replica);
    }

    /// Handles one ng message; `None` when it has no cookie (nothing to
    /// answer, as rtpengine does).
    pub(crate) fn handle_message(
        &mut self,
        msg: &[u8],
        src: SocketAddr,
        now_ms: u64,
    ) -> Option<Vec<u8>> {
        let frame = match Frame::parse(msg) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%src, error = %e, "ng message without cookie dropped");
                metrics::counter!("voxline_relay_ng_malformed_total").increment(1);
                return None;
            }
        };
        let key = std::hash::BuildHasher::hash_one(&self.cookie_hasher, (src, frame.cookie));
        if let Some(cached) = self.cache.get(&key, now_ms) {
            self.duplicates += 1;
            metrics::counter!("voxline_relay_ng_duplicates_total").increment(1);
            return Some(cached.to_vec());
        }
        let body = match frame.decode() {
            Ok(v) => self.dispatch(&v, now_ms),
            Err(e) => {
                metrics::counter!("voxline_relay_ng_malformed_total").increment(1);
                build::error(&e.to_string())
            }
        };
        let reply = encode_message(frame.cookie, &body, frame.encoding());
        self.cache.insert(key, reply.clone(), now_ms);
        Some(reply)
    }

    fn dispatch(&mut self, v: &Value<'_>, now_ms: u64) -> Value<'static> {
        let req = match Request::parse(v) {
            Ok(r) => r,
            Err(e) => return build::error(&e.to_string()),
        };
        let kind = req.command.kind();
        if let Some(i) = COMMANDS.iter().position(|k| *k == kind)
            && let Some(c) = self.command_counts.get_mut(i)
        {
            *c += 1;
        }
        metrics::counter!("voxline_relay_ng_commands_total", "command" => kind.as_str())
            .increment(1);
        let call_id = match &req.command {
            Command::Offer(m) | Command::Answer(m) => Some(m.call_id.as_str()),
            Command::Delete(d) => Some(d.call_id.as_str()),
            Command::Query(q) => Some(q.call_id.as_str()),
            _ => None,
        };
        if let Some(id) = call_id {
            self.signal_for_foreign(id, now_ms);
        }
        let mut warnings = req.warnings;
        let reply = match req.command {
            Command::Ping => build::pong(),
            Command::Offer(m) | Command::Answer(m) => {
                let mut binder = Binder {
                    pending: &mut self.pending,
                };
                let result = if kind == CommandKind::Offer {
                    self.table.offer(&m, now_ms, &mut binder)
                } else {
                    self.table.answer(&m, now_ms, &mut binder)
                };
                match result {
                    Ok(o) => {
                        self.execute(o.effects);
                        warnings.extend(o.warnings);
                        build::ok_sdp(o.sdp, &warnings)
                    }
                    Err(e) => build::error(&e.to_string()),
                }
            }
            Command::Delete(d) => {
                let counters = &self.counters;
                match self.table.delete(&d, now_ms, &|k| snapshot(counters, k)) {
                    Ok(o) => {
                        self.execute(o.effects);
                        warnings.extend(o.warning);
                        match o.stats {
                            Some(s) => build::call_stats(&s, &warnings),
                            None => build::ok(&warnings),
                        }
                    }
                    Err(e) => build::error(&e.to_string()),
                }
            }
            Command::Query(q) => {
                let counters = &self.counters;
                match self.table.query(&q.call_id, &|k| snapshot(counters, k)) {
                    Ok(s) => build::call_stats(&s, &warnings),
                    Err(e) => build::error(&e.to_string()),
                }
            }
            Command::List { limit } => build::list(self.table.list(limit)),
            Command::Statistics => self.statistics(now_ms).to_value(),
        };
        // Sockets bound for an attempt that failed are closed here.
        self.pending.clear();
        self.replicate(now_ms);
        metrics::gauge!("voxline_relay_sessions").set(self.table.len() as f64);
        reply
    }

    fn execute(&mut self, effects: Vec<Effect>) {
        let Some(dp) = self.dataplane.as_ref() else {
            return;
        };
        for (e, initial) in merge_configures(effects) {
            let worker = match &e {
                Effect::Open { worker, .. }
                | Effect::Configure { worker, .. }
                | Effect::Close { worker, .. } => *worker,
            };
            if !self.unwoken.contains(&worker) {
                self.unwoken.push(worker);
            }
            let r = match e {
                Effect::Open {
                    key,
                    worker,
                    local,
                    kind,
                    standby,
                } => {
                    let Some(socket) = self.pending.remove(&local) else {
                        tracing::error!(%local, "no bound socket for a new stream");
                        continue;
                    };
                    let counters = Arc::new(StreamCounters::default());
                    self.counters.insert(key.0, counters.clone());
                    let config = initial.unwrap_or_else(|| StreamConfig::idle(standby));
                    dp.queue(
                        worker,
                        StreamCommand::Add {
                            key,
                            socket,
                            local,
                            kind,
                            counters,
                            config,
                        },
                    )
                }
                Effect::Configure {
                    key,
                    worker,
                    config,
                } => dp.queue(worker, StreamCommand::Configure { key, config }),
                Effect::Close { key, worker } => {
                    if let Some(c) = self.counters.remove(&key.0) {
                        let s = c.snapshot();
                        self.closed.packets += s.packets;
                        self.closed.bytes += s.bytes;
                        self.closed.errors += s.errors;
                        self.closed.sent += s.sent;
                    }
                    dp.queue(worker, StreamCommand::Remove { key })
                }
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "data plane command failed");
            }
        }
    }

    /// Wakes the workers that have commands queued since the last call.
    /// Callers run this after a burst of commands: one wake-up (and context
    /// switch) per burst instead of per command. Workers also apply queued
    /// commands on their own within 100 ms.
    pub(crate) fn flush_wakes(&mut self) {
        if let Some(dp) = self.dataplane.as_ref() {
            for w in self.unwoken.drain(..) {
                let _ = dp.wake(w);
            }
        }
    }

    fn sums(&self) -> CounterSnapshot {
        let mut t = self.closed;
        for c in self.counters.values() {
            let (packets, bytes, errors, sent) = c.totals();
            t.packets += packets;
            t.bytes += bytes;
            t.errors += errors;
            t.sent += sent;
        }
        t
    }

    /// Timer work: expire sessions, refresh rates and metrics.
    pub(crate) fn tick(&mut self, now_ms: u64) {
        let counters = &self.counters;
        let (expired, effects) = self.table.poll_timeouts(now_ms, &|k| snapshot(counters, k));
        for e in &expired {
            metrics::counter!("voxline_relay_sessions_ended_total", "reason" => e.reason.as_str())
                .increment(1);
        }
        self.execute(effects);
        self.replicate(now_ms);
        self.flush_wakes();
        self.cache.get(&0, now_ms); // expires old replies
        let sums = self.sums();
        let (t0, p0, b0, e0) = self.rate;
        let dt = now_ms.saturating_sub(t0);
        if dt >= 1000 {
            self.rates = (
                (sums.packets - p0.min(sums.packets)) * 1000 / dt,
                (sums.bytes - b0.min(sums.bytes)) * 1000 / dt,
                (sums.errors - e0.min(sums.errors)) * 1000 / dt,
            );
            self.rate = (now_ms, sums.packets, sums.bytes, sums.errors);
        }
        metrics::gauge!("voxline_relay_sessions").set(self.table.len() as f64);
        metrics::gauge!("voxline_relay_sessions_foreign").set(self.foreign_len() as f64);
        metrics::gauge!("voxline_relay_streams").set(self.counters.len() as f64);
        metrics::counter!("voxline_relay_packets_total").absolute(sums.packets);
        metrics::counter!("voxline_relay_bytes_total").absolute(sums.bytes);
        metrics::counter!("voxline_relay_packet_errors_total").absolute(sums.errors);
        metrics::counter!("voxline_relay_packets_forwarded_total").absolute(sums.sent);
        if let Some(dp) = self.dataplane.as_ref() {
            let raw = dp.raw_stats();
            metrics::counter!("voxline_relay_raw_sent_total")
                .absolute(raw.sent.load(std::sync::atomic::Ordering::Relaxed));
            metrics::counter!("voxline_relay_raw_unrouted_total")
                .absolute(raw.unrouted.load(std::sync::atomic::Ordering::Relaxed));
            if let Some(drops) = dp.raw_drops() {
                metrics::counter!("voxline_relay_raw_dropped_total").absolute(drops);
            }
        }
        // RTCP-reported quality across all streams that saw a report.
        let (mut reports, mut lost_sum, mut jitter_max) = (0u64, 0u64, 0u32);
        for c in self.counters.values() {
            if c.rtcp_seen.load(std::sync::atomic::Ordering::Relaxed) {
                reports += 1;
                lost_sum += u64::from(
                    c.rtcp_fraction_lost
                        .load(std::sync::atomic::Ordering::Relaxed),
                );
                jitter_max =
                    jitter_max.max(c.rtcp_jitter.load(std::sync::atomic::Ordering::Relaxed));
            }
        }
        metrics::gauge!("voxline_relay_rtcp_streams").set(reports as f64);
        metrics::gauge!("voxline_relay_rtcp_fraction_lost_avg").set(if reports > 0 {
            lost_sum as f64 / reports as f64 / 256.0
        } else {
            0.0
        });
        metrics::gauge!("voxline_relay_rtcp_jitter_max").set(f64::from(jitter_max));
        for (ifc, used) in self.table.port_usage() {
            metrics::gauge!("voxline_relay_ports_used", "interface" => ifc.name.clone())
                .set(used as f64);
        }
    }

    fn statistics(&self, now_ms: u64) -> Statistics {
        let t = self.table.totals();
        let sums = self.sums();
        Statistics {
            sessions_own: self.table.len() as u64,
            sessions_foreign: self.foreign_len() as u64,
            packet_rate: self.rates.0,
            byte_rate: self.rates.1,
            error_rate: self.rates.2,
            uptime: now_ms.saturating_sub(self.started_ms) / 1000,
            managed_sessions: t.managed,
            rejected_sessions: t.rejected,
            timeout_sessions: t.timeout,
            silent_timeout_sessions: t.silent_timeout,
            final_timeout_sessions: t.final_timeout,
            regular_terminated_sessions: t.regular,
            forced_terminated_sessions: t.forced,
            relayed_packets: sums.packets,
            relayed_packet_errors: sums.errors,
            relayed_bytes: sums.bytes,
            zero_way_streams: t.zero_way,
            one_way_streams: t.one_way,
            avg_call_duration: if t.ended > 0 {
                t.duration_ms_sum as f64 / t.ended as f64 / 1000.0
            } else {
                0.0
            },
            command_counts: COMMANDS
                .iter()
                .zip(self.command_counts.iter())
                .map(|(k, n)| (k.as_str(), *n))
                .collect(),
            interfaces: self
                .table
                .port_usage()
                .into_iter()
                .map(|(ifc, used)| InterfaceStats {
                    name: ifc.name.clone(),
                    address: ifc.address,
                    min: self.port_range.0,
                    max: self.port_range.1,
                    used: used as u64,
                })
                .collect(),
        }
    }

    pub(crate) fn stats(&self) -> RelayStats {
        let sums = self.sums();
        let t = self.table.totals();
        RelayStats {
            sessions: self.table.len(),
            streams: self.counters.len(),
            packets: sums.packets,
            bytes: sums.bytes,
            errors: sums.errors,
            forwarded: sums.sent,
            commands: self.command_counts.iter().sum(),
            duplicates: self.duplicates,
            timed_out: t.timeout + t.silent_timeout + t.final_timeout,
            foreign_sessions: self.foreign_len(),
            adopted: t.adopted,
            redis: None,
        }
    }

    /// Ends all sessions and stops the workers. Nothing is written to Redis:
    /// the sessions stay there for a standby to take over.
    pub(crate) fn shutdown(&mut self, now_ms: u64) {
        self.replica = None;
        let counters = &self.counters;
        let effects = self.table.clear(now_ms, &|k| snapshot(counters, k));
        self.execute(effects);
        self.flush_wakes();
        if let Some(dp) = self.dataplane.take() {
            dp.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline_relay_dataplane::{Latching, StreamKind};

    fn open(key: u64) -> Effect {
        Effect::Open {
            key: StreamKey(key),
            worker: 0,
            local: SocketAddr::from(([127, 0, 0, 1], 30_000)),
            kind: StreamKind::Rtp,
            standby: false,
        }
    }

    fn configure(key: u64, tos: u8) -> Effect {
        Effect::Configure {
            key: StreamKey(key),
            worker: 0,
            config: StreamConfig {
                endpoint: None,
                latching: Latching::Once,
                strict_source: false,
                sink_rtp: None,
                sink_rtcp: None,
                tos,
                standby: false,
            },
        }
    }

    fn close(key: u64) -> Effect {
        Effect::Close {
            key: StreamKey(key),
            worker: 0,
        }
    }

    #[test]
    fn an_opened_stream_starts_with_its_last_configuration() {
        let merged = merge_configures(vec![
            open(1),
            open(2),
            configure(1, 10),
            configure(2, 20),
            configure(1, 11),
            configure(3, 30),
        ]);
        let tos: Vec<(u64, Option<u8>)> = merged
            .iter()
            .map(|(e, c)| {
                let key = match e {
                    Effect::Open { key, .. }
                    | Effect::Configure { key, .. }
                    | Effect::Close { key, .. } => key.0,
                };
                (key, c.as_ref().map(|c| c.tos))
            })
            .collect();
        // Streams 1 and 2 are added configured; only stream 3's
        // Configure (no Open in the batch) is left.
        assert_eq!(tos, vec![(1, Some(11)), (2, Some(20)), (3, None)]);
        assert!(matches!(
            merged.last(),
            Some((Effect::Configure { .. }, None))
        ));
    }

    #[test]
    fn configures_after_a_close_are_not_merged() {
        let merged = merge_configures(vec![open(1), close(1), configure(1, 5)]);
        assert_eq!(merged.len(), 3);
        assert!(matches!(merged.first(), Some((Effect::Open { .. }, None))));
        assert!(matches!(
            merged.last(),
            Some((Effect::Configure { .. }, None))
        ));
    }
}
