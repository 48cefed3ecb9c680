//! The Redis I/O of replication: one RESP3 `ConnectionManager` (reconnects
//! by itself, resubscribes automatically) shared by three tasks:
//!
//! - the writer drains session writes from the control plane into a map
//!   coalesced per call and flushes it in pipelines; while Redis is down
//!   the map holds the latest state of each changed session (bounded by the
//!   number of sessions), and nothing waits for it;
//! - the heartbeat writes `<prefix>:hb:<id>` every interval with the
//!   timeout as TTL, and the relay's info record now and then;
//! - the follower reads keyspace notifications (and subscription
//!   confirmations, which mark every (re)connection: check
//!   `notify-keyspace-events`, write the info, resend every own session,
//!   `SCAN` everything under the prefix), feeds the control plane, runs the
//!   heartbeat timer and carries out takeovers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use voxline_relay_dataplane::{StreamKey, unix_ms};

use super::LinkStatus;
use super::keys::{KeyEvent, KeyKind, KeySpace, notifications_sufficient};
use super::record::{RECORD_VERSION, RelayInfo};
use crate::config::RedisConfig;
use crate::control::{Control, TakenOver, Trigger, WriteOp};
use crate::server::with_control;

/// Calls fetched per `MGET`.
const FETCH_CHUNK: usize = 256;
/// Writes per pipeline.
const WRITE_CHUNK: usize = 512;
/// How long a takeover lock is held.
const LOCK_MS: u64 = 10_000;
/// How often the info record is written again.
const INFO_PERIOD_MS: u64 = 1000;
/// Pause before a failed reconcile is tried again.
const RECONCILE_RETRY: Duration = Duration::from_millis(500);
/// Shortest silence of this relay's own heartbeat notifications, while its
/// heartbeat writes succeed, after which the subscription is made again.
const DEAF_AFTER_MIN: Duration = Duration::from_secs(2);

/// Everything the link needs from the relay.
pub(crate) struct LinkParts {
    pub config: RedisConfig,
    pub control: Arc<Mutex<Control>>,
    pub writes_tx: UnboundedSender<WriteOp>,
    pub writes_rx: UnboundedReceiver<WriteOp>,
    pub takeovers_rx: UnboundedReceiver<TakenOver>,
    pub hook_rx: UnboundedReceiver<StreamKey>,
    pub ng_udp: SocketAddr,
    pub ng_tcp: Option<SocketAddr>,
    pub ng_queue_per_source: usize,
    pub shutdown: watch::Receiver<bool>,
}

/// The running link.
#[derive(Debug)]
pub(crate) struct Link {
    /// Shared state for stats.
    pub status: Arc<LinkStatus>,
    tasks: Vec<JoinHandle<()>>,
}

impl Link {
    /// Waits for the tasks (after the shutdown signal): the writer makes a
    /// last flush.
    pub(crate) async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The addresses this relay serves, published in its info record.
#[derive(Debug, Clone)]
struct Served {
    ng_udp: Vec<SocketAddr>,
    ng_tcp: Vec<SocketAddr>,
    started_ms: u64,
}

struct Shared {
    conn: ConnectionManager,
    keys: KeySpace,
    config: RedisConfig,
    timeout: Duration,
    status: Arc<LinkStatus>,
    control: Arc<Mutex<Control>>,
    served: Mutex<Served>,
}

impl Shared {
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, LinkError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(r) => r.map_err(LinkError::Redis),
            Err(_) => Err(LinkError::Timeout),
        }
    }

    fn info(&self) -> Option<String> {
        let served = self.served.lock().ok()?.clone();
        let interfaces = with_control(&self.control, |c| c.interfaces()).unwrap_or_default();
        RelayInfo {
            v: RECORD_VERSION,
            id: self.config.relay_id.clone(),
            ng_udp: served.ng_udp,
            ng_tcp: served.ng_tcp,
            interfaces,
            started_ms: served.started_ms,
        }
        .encode()
        .ok()
    }

    async fn publish_info(&self) {
        let Some(info) = self.info() else { return };
        let ttl = self
            .config
            .heartbeat_timeout_ms
            .saturating_mul(10)
            .max(5000);
        let cmd = redis::cmd("SET")
            .arg(self.keys.relay(&self.config.relay_id))
            .arg(info)
            .arg("PX")
            .arg(ttl)
            .to_owned();
        if let Err(e) = self.query::<()>(&cmd).await {
            tracing::debug!(error = %e, "relay info not written");
        }
    }
}

/// A failed Redis exchange.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error(transparent)]
    Redis(redis::RedisError),
    #[error("Redis command timed out")]
    Timeout,
}

/// Connects (lazily: the relay starts even if Redis is down) and spawns the
/// writer, heartbeat and follower tasks.
pub(crate) fn start(parts: LinkParts) -> Result<Link, redis::RedisError> {
    let cfg = parts.config;
    let info = cfg.url.as_str().into_connection_info()?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let db = settings.db();
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let timeout = Duration::from_millis(cfg.command_timeout_ms);
    let (push_tx, push_rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(200))
        .set_push_sender(push_tx)
        .set_automatic_resubscription();
    let conn = ConnectionManager::new_lazy_with_config(client, manager_config)?;
    let status = Arc::new(LinkStatus::new(&cfg.relay_id));
    status.set_notifications(None);
    status.set_connected(false);
    let shared = Arc::new(Shared {
        conn,
        keys: KeySpace::new(&cfg.key_prefix, db),
        timeout,
        status: status.clone(),
        control: parts.control.clone(),
        served: Mutex::new(Served {
            ng_udp: vec![parts.ng_udp],
            ng_tcp: parts.ng_tcp.into_iter().collect(),
            started_ms: unix_ms(),
        }),
        config: cfg,
    });
    let tasks = vec![
        tokio::spawn(run_writer(
            shared.clone(),
            parts.writes_rx,
            parts.shutdown.clone(),
        )),
        tokio::spawn(run_heartbeat(shared.clone(), parts.shutdown.clone())),
        tokio::spawn(
            Follower {
                shared,
                writes: parts.writes_tx,
                per_source: parts.ng_queue_per_source,
                shutdown: parts.shutdown,
                servers: Vec::new(),
                reconcile_retry: None,
                heard_self: Instant::now(),
                unheard_resubscriptions: 0,
                up_since: None,
            }
            .run(push_rx, parts.takeovers_rx, parts.hook_rx),
        ),
    ];
    Ok(Link { status, tasks })
}

/// Drains session writes, coalesces them per call, flushes pipelines.
async fn run_writer(
    shared: Arc<Shared>,
    mut rx: UnboundedReceiver<WriteOp>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pending: std::collections::HashMap<String, Option<String>> =
        std::collections::HashMap::new();
    let ttl = shared.config.key_ttl_secs;
    let mut open = true;
    loop {
        if pending.is_empty() {
            tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => { pending.insert(op.call_id, op.value); }
                    None => open = false,
                },
                _ = shutdown.changed() => open = false,
            }
        }
        while let Ok(op) = rx.try_recv() {
            pending.insert(op.call_id, op.value);
        }
        if !open || *shutdown.borrow() {
            break;
        }
        if pending.is_empty() {
            continue;
        }
        let batch: Vec<(String, Option<String>)> = {
            let keys: Vec<String> = pending.keys().take(WRITE_CHUNK).cloned().collect();
            keys.into_iter()
                .filter_map(|k| pending.remove_entry(&k))
                .collect()
        };
        shared.status.set_pending(pending.len() + batch.len());
        if flush(&shared, &batch, ttl).await.is_err() {
            shared.status.write_failed();
            shared.status.set_connected(false);
            for (k, v) in batch {
                // A newer state queued meanwhile wins.
                pending.entry(k).or_insert(v);
            }
            shared.status.set_pending(pending.len());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.changed() => break,
            }
            continue;
        }
        shared.status.set_pending(pending.len());
    }
    // Last chance: everything pending, bounded by the command timeout.
    while let Ok(op) = rx.try_recv() {
        pending.insert(op.call_id, op.value);
    }
    let batch: Vec<(String, Option<String>)> = pending.into_iter().collect();
    if !batch.is_empty() && flush(&shared, &batch, ttl).await.is_err() {
        tracing::warn!(
            sessions = batch.len(),
            "session writes lost at shutdown (Redis unreachable)"
        );
    }
}

async fn flush(
    shared: &Shared,
    batch: &[(String, Option<String>)],
    ttl: u64,
) -> Result<(), LinkError> {
    let mut pipe = redis::pipe();
    for (call_id, value) in batch {
        let key = shared.keys.call(call_id);
        match value {
            Some(v) => pipe.cmd("SET").arg(key).arg(v).arg("EX").arg(ttl).ignore(),
            None => pipe.cmd("DEL").arg(key).ignore(),
        };
    }
    let mut conn = shared.conn.clone();
    match tokio::time::timeout(shared.timeout, pipe.query_async::<()>(&mut conn)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "session write failed");
            Err(LinkError::Redis(e))
        }
        Err(_) => Err(LinkError::Timeout),
    }
}

/// Writes the heartbeat every interval (and the info record now and then).
async fn run_heartbeat(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(shared.config.heartbeat_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let key = shared.keys.heartbeat(&shared.config.relay_id);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let cmd = redis::cmd("SET")
            .arg(&key)
            .arg(unix_ms())
            .arg("PX")
            .arg(shared.config.heartbeat_timeout_ms)
            .to_owned();
        match shared.query::<()>(&cmd).await {
            Ok(()) => shared.status.set_connected(true),
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat not written");
                shared.status.set_connected(false);
            }
        }
        n = n.wrapping_add(1);
        let every = (INFO_PERIOD_MS / shared.config.heartbeat_interval_ms.max(1)).max(1);
        if n.is_multiple_of(every) {
            shared.publish_info().await;
        }
    }
}

struct Follower {
    shared: Arc<Shared>,
    writes: UnboundedSender<WriteOp>,
    per_source: usize,
    shutdown: watch::Receiver<bool>,
    servers: Vec<JoinHandle<()>>,
    /// A reconcile failed: when to try again.
    reconcile_retry: Option<Instant>,
    /// When a notification of this relay's own heartbeat (or a
    /// subscription's confirmation) came last.
    heard_self: Instant,
    /// Subscriptions made again for want of those since one came last.
    unheard_resubscriptions: u32,
    /// Since when Redis has taken this relay's writes without a break
    /// (as seen by the timer).
    up_since: Option<Instant>,
}

impl Follower {
    async fn run(
        mut self,
        mut pushes: UnboundedReceiver<PushInfo>,
        mut takeovers: UnboundedReceiver<TakenOver>,
        mut hooks: UnboundedReceiver<StreamKey>,
    ) {
        let pattern = self.shared.keys.notification_pattern();
        let mut shutdown = self.shutdown.clone();
        // The first subscription; later ones are made by the manager.
        loop {
            let mut conn = self.shared.conn.clone();
            match tokio::time::timeout(self.shared.timeout, conn.psubscribe(&pattern)).await {
                Ok(Ok(())) => {
                    self.heard_self = Instant::now();
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot subscribe to Redis keyspace notifications; retrying")
                }
                Err(_) => tracing::warn!("Redis subscription timed out; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
        let period = (self.shared.config.heartbeat_interval_ms / 4).clamp(5, 100);
        let mut poll = tokio::time::interval(Duration::from_millis(period));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(key) = hooks.recv() => self.media_arrived(key).await,
                Some(done) = takeovers.recv() => self.complete(done).await,
                _ = poll.tick() => {
                    if self.reconcile_retry.is_some_and(|t| Instant::now() >= t) {
                        self.try_reconcile().await;
                    }
                    self.check_subscription(&pattern).await;
                    let now = unix_ms();
                    let dead = with_control(&self.shared.control, |c| c.poll_standby(now)).unwrap_or_default();
                    for (relay, trigger) in dead {
                        self.takeover_dead(&relay, trigger).await;
                    }
                }
                Some(first) = pushes.recv() => {
                    let mut batch = vec![first];
                    while let Ok(p) = pushes.try_recv() {
                        batch.push(p);
                    }
                    self.on_pushes(batch).await;
                }
            }
        }
        for s in self.servers.drain(..) {
            let _ = s.await;
        }
    }

    async fn on_pushes(&mut self, batch: Vec<PushInfo>) {
        let now = unix_ms();
        let mut calls: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut relays: Vec<String> = Vec::new();
        let mut connected = false;
        for p in batch {
            match p.kind {
                PushKind::PSubscribe => {
                    connected = true;
                    self.heard_self = Instant::now();
                }
                PushKind::Disconnection => {
                    self.shared.status.set_connected(false);
                }
                PushKind::PMessage => {
                    let (Some(channel), Some(event)) = (bytes(p.data.get(1)), bytes(p.data.get(2)))
                    else {
                        continue;
                    };
                    let Some(kind) = self.shared.keys.classify_channel(channel) else {
                        continue;
                    };
                    let event = KeyEvent::parse(event);
                    if event == KeyEvent::Other {
                        continue;
                    }
                    match kind {
                        KeyKind::Call(id) => {
                            if seen.insert(id.clone()) {
                                calls.push(id);
                            }
                        }
                        KeyKind::Heartbeat(relay) => {
                            let alive = event == KeyEvent::Set;
                            if alive && relay == self.shared.config.relay_id {
                                self.heard_self = Instant::now();
                                if std::mem::take(&mut self.unheard_resubscriptions) > 0 {
                                    tracing::info!("keyspace notifications heard again");
                                }
                            }
                            with_control(&self.shared.control, |c| {
                                c.on_heartbeat(&relay, alive, now)
                            });
                        }
                        KeyKind::Relay(relay) => relays.push(relay),
                        KeyKind::Lock(_) => {}
                    }
                }
                _ => {}
            }
        }
        if connected {
            // A (re)connection: everything is read afresh.
            self.on_connected().await;
            return;
        }
        if !self.fetch_calls(calls).await && self.reconcile_retry.is_none() {
            self.reconcile_retry = Some(Instant::now() + RECONCILE_RETRY);
        }
        for relay in relays {
            self.fetch_relay(&relay).await;
        }
    }

    /// Makes the subscription again when it was lost without the
    /// connection. This relay's heartbeat write is a keyspace notification
    /// back to it every interval; when the writes succeed but none has come
    /// back for a while, the connection is up and the subscription is not:
    /// Redis dropped it and kept the connection (a proxy in front of Redis
    /// that failed over), or the client library's resubscription after a
    /// reconnect never reached Redis (the library ignores its failure). The
    /// standby would stay deaf — no sessions followed, no takeover — for as
    /// long as the connection lasts. The new subscription's confirmation
    /// brings a full reconcile ([`Self::on_connected`]).
    ///
    /// The silence counts only while Redis takes the writes: after an
    /// outage, the client library's own subscription gets its time. Each
    /// subscription that brings nothing back doubles the wait before the
    /// next (up to 32 times): with notifications off where the relay cannot
    /// read Redis's config, it does not reconcile every few seconds.
    async fn check_subscription(&mut self, pattern: &str) {
        let status = &self.shared.status;
        if !status.connected() {
            self.up_since = None;
            return;
        }
        let up_since = *self.up_since.get_or_insert_with(Instant::now);
        if status.notifications_off() {
            return;
        }
        let interval = Duration::from_millis(self.shared.config.heartbeat_interval_ms);
        let timeout = Duration::from_millis(self.shared.config.heartbeat_timeout_ms);
        let deaf_after = (4 * timeout).max(8 * interval).max(DEAF_AFTER_MIN)
            * (1 << self.unheard_resubscriptions.min(5));
        let silent = self.heard_self.elapsed().min(up_since.elapsed());
        if silent < deaf_after {
            return;
        }
        // Tried once per silence of `deaf_after`; said once until heard.
        self.heard_self = Instant::now();
        let silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX);
        self.unheard_resubscriptions = self.unheard_resubscriptions.saturating_add(1);
        if self.unheard_resubscriptions > 1 {
            tracing::debug!(
                silent_ms,
                "still no keyspace notification of our own heartbeat: subscribing again"
            );
        } else {
            tracing::warn!(
                silent_ms,
                "no keyspace notification of this relay's own heartbeat although Redis takes its writes: subscribing again"
            );
        }
        self.shared.status.resubscribed();
        let mut conn = self.shared.conn.clone();
        match tokio::time::timeout(self.shared.timeout, conn.psubscribe(pattern)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "subscribing again failed; retrying"),
            Err(_) => tracing::warn!("subscribing again timed out; retrying"),
        }
    }

    /// Reads calls' records and hands them to the control plane; false if
    /// Redis did not answer.
    async fn fetch_calls(&self, calls: Vec<String>) -> bool {
        for chunk in calls.chunks(FETCH_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.shared.keys.call(id)).collect();
            let cmd = redis::cmd("MGET").arg(&keys).to_owned();
            let values: Vec<Option<Vec<u8>>> = match self.shared.query(&cmd).await {
                Ok(v) => v,
                Err(e) => {
                    // Read again by a reconcile.
                    tracing::debug!(error = %e, "session records not read");
                    return false;
                }
            };
            let now = unix_ms();
            with_control(&self.shared.control, |c| {
                for (id, v) in chunk.iter().zip(values.iter()) {
                    c.on_call_record(id, v.as_deref(), now);
                }
                c.flush_wakes();
            });
        }
        true
    }

    async fn fetch_relay(&self, relay: &str) {
        if relay == self.shared.config.relay_id {
            return;
        }
        let cmd = redis::cmd("GET")
            .arg(self.shared.keys.relay(relay))
            .to_owned();
        let Ok(v) = self.shared.query::<Option<Vec<u8>>>(&cmd).await else {
            return;
        };
        let info = v.and_then(|b| RelayInfo::decode(&b).ok());
        let now = unix_ms();
        with_control(&self.shared.control, |c| c.on_relay_info(relay, info, now));
    }

    /// After every (re)subscription.
    async fn on_connected(&mut self) {
        tracing::info!("subscribed to Redis keyspace notifications");
        self.check_notifications().await;
        self.shared.publish_info().await;
        let now = unix_ms();
        let own = with_control(&self.shared.control, |c| c.own_records(now)).unwrap_or_default();
        for op in own {
            let _ = self.writes.send(op);
        }
        self.try_reconcile().await;
    }

    /// Reconciles; on failure tries again after a pause (from the timer).
    async fn try_reconcile(&mut self) {
        match self.reconcile().await {
            Ok(()) => self.reconcile_retry = None,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile with Redis failed; retrying");
                self.reconcile_retry = Some(Instant::now() + RECONCILE_RETRY);
            }
        }
    }

    async fn check_notifications(&self) {
        let cmd = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .to_owned();
        match self.shared.query::<Value>(&cmd).await {
            Ok(v) => {
                let flags = config_value(&v).unwrap_or_default();
                let ok = notifications_sufficient(&flags);
                self.shared.status.set_notifications(Some(ok));
                if ok {
                    tracing::info!(notify_keyspace_events = %flags, "Redis keyspace notifications on");
                } else {
                    tracing::error!(
                        notify_keyspace_events = %flags,
                        "Redis notify-keyspace-events is off or incomplete: standby relays cannot follow sessions \
                         and will not take over; set `notify-keyspace-events AKE` in redis.conf \
                         (or CONFIG SET notify-keyspace-events AKE)"
                    );
                }
            }
            Err(e) => {
                self.shared.status.set_notifications(None);
                tracing::warn!(error = %e, "cannot read Redis notify-keyspace-events (CONFIG GET refused?); standbys need it set to AKE");
            }
        }
    }

    /// `SCAN`s every key under the prefix and hands the complete state to
    /// the control plane.
    async fn reconcile(&self) -> Result<(), LinkError> {
        let mut cursor: u64 = 0;
        let (mut calls, mut heartbeats, mut relays) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            let cmd = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.shared.keys.scan_pattern())
                .arg("COUNT")
                .arg(1000)
                .to_owned();
            let (next, keys): (u64, Vec<Vec<u8>>) = self.shared.query(&cmd).await?;
            for k in keys {
                match self.shared.keys.classify(&k) {
                    Some(KeyKind::Call(id)) => calls.push(id),
                    Some(KeyKind::Heartbeat(r)) => heartbeats.push(r),
                    Some(KeyKind::Relay(r)) => relays.push(r),
                    _ => {}
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        calls.sort_unstable();
        calls.dedup();
        let mut records = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(FETCH_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.shared.keys.call(id)).collect();
            let cmd = redis::cmd("MGET").arg(&keys).to_owned();
            let values: Vec<Option<Vec<u8>>> = self.shared.query(&cmd).await?;
            for (id, v) in chunk.iter().zip(values) {
                if let Some(v) = v {
                    records.push((id.clone(), v));
                }
            }
        }
        for r in &relays {
            self.fetch_relay(r).await;
        }
        let now = unix_ms();
        with_control(&self.shared.control, |c| {
            for r in &heartbeats {
                c.on_heartbeat(r, true, now);
            }
            c.reconcile(records, now);
        });
        self.shared.status.set_connected(true);
        Ok(())
    }

    async fn media_arrived(&mut self, key: StreamKey) {
        let now = unix_ms();
        let done = with_control(&self.shared.control, |c| {
            let owner = c.owner_of_stream(key)?;
            Some(c.takeover(&owner, Trigger::Media, now))
        })
        .flatten();
        if let Some(done) = done {
            self.complete(done).await;
        }
    }

    /// Triggered by the heartbeat (or a free ng address): lock, bind the ng
    /// address (proving it free), take over.
    async fn takeover_dead(&mut self, relay: &str, trigger: Trigger) {
        if !with_control(&self.shared.control, |c| c.has_standby_of(relay)).unwrap_or(false) {
            return;
        }
        let lock = redis::cmd("SET")
            .arg(self.shared.keys.lock(relay))
            .arg(&self.shared.config.relay_id)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_MS)
            .to_owned();
        match self.shared.query::<Option<String>>(&lock).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::info!(relay, "another standby is taking this relay over");
                return;
            }
            Err(e) => {
                tracing::warn!(relay, error = %e, "takeover lock not taken; retrying");
                return;
            }
        }
        let info = with_control(&self.shared.control, |c| c.relay_info(relay)).flatten();
        let ng = match bind_ng(info.as_ref()) {
            Ok(ng) => ng,
            Err(addr) => {
                tracing::warn!(relay, %addr, "relay still holds its ng address: not taking over");
                let del = redis::cmd("DEL")
                    .arg(self.shared.keys.lock(relay))
                    .to_owned();
                let _ = self.shared.query::<()>(&del).await;
                return;
            }
        };
        let now = unix_ms();
        let Some(done) = with_control(&self.shared.control, |c| c.takeover(relay, trigger, now))
        else {
            return;
        };
        self.finish(done, ng).await;
    }

    /// Media- or signalling-triggered: the sessions are already ours; bind
    /// the ng addresses where possible.
    async fn complete(&mut self, done: TakenOver) {
        let ng = match bind_ng(done.info.as_ref()) {
            Ok(ng) => ng,
            Err(addr) => {
                tracing::warn!(relay = %done.relay, %addr, "ng address still in use: sessions taken over, ng address not");
                NgSockets::default()
            }
        };
        self.finish(done, ng).await;
    }

    async fn finish(&mut self, done: TakenOver, ng: NgSockets) {
        let control = self.shared.control.clone();
        let (mut udp, mut tcp) = (Vec::new(), Vec::new());
        for s in ng.udp {
            if let Ok(a) = s.local_addr() {
                udp.push(a);
            }
            self.servers.push(tokio::spawn(crate::server::run_udp(
                s,
                control.clone(),
                self.per_source,
                self.shutdown.clone(),
            )));
        }
        for l in ng.tcp {
            if let Ok(a) = l.local_addr() {
                tcp.push(a);
            }
            self.servers.push(tokio::spawn(crate::server::run_tcp(
                l,
                control.clone(),
                self.shutdown.clone(),
            )));
        }
        if let Ok(mut s) = self.shared.served.lock() {
            s.ng_udp.extend(udp.iter().copied());
            s.ng_tcp.extend(tcp.iter().copied());
        }
        self.shared.status.took_over(super::Takeover {
            relay: done.relay.clone(),
            trigger: done.trigger.as_str(),
            sessions: done.sessions,
        });
        self.shared.publish_info().await;
        let del = redis::cmd("DEL")
            .arg(self.shared.keys.relay(&done.relay))
            .arg(self.shared.keys.heartbeat(&done.relay))
            .to_owned();
        let _ = self.shared.query::<()>(&del).await;
        tracing::warn!(
            relay = %done.relay,
            trigger = done.trigger.as_str(),
            sessions = done.sessions,
            unbound_sockets = done.unbound,
            ng_udp = ?udp,
            ng_tcp = ?tcp,
            "takeover complete"
        );
    }
}

#[derive(Default)]
struct NgSockets {
    udp: Vec<tokio::net::UdpSocket>,
    tcp: Vec<tokio::net::TcpListener>,
}

/// Binds a dead relay's ng addresses. `Err(addr)` if one is still in use
/// (the relay, or someone, still holds it).
fn bind_ng(info: Option<&RelayInfo>) -> Result<NgSockets, SocketAddr> {
    let mut out = NgSockets::default();
    let Some(info) = info else {
        return Ok(out);
    };
    for &addr in &info.ng_udp {
        if addr.ip().is_unspecified() {
            continue;
        }
        match crate::bind_ng_udp(addr, true) {
            Ok(s) => out.udp.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(addr),
            Err(e) => tracing::warn!(%addr, error = %e, "cannot bind a taken-over ng address"),
        }
    }
    for &addr in &info.ng_tcp {
        if addr.ip().is_unspecified() {
            continue;
        }
        match crate::bind_ng_tcp(addr, true) {
            Ok(l) => out.tcp.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(addr),
            Err(e) => tracing::warn!(%addr, error = %e, "cannot bind a taken-over ng address"),
        }
    }
    Ok(out)
}

fn bytes(v: Option<&Value>) -> Option<&[u8]> {
    match v? {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The value of a one-parameter `CONFIG GET` reply (RESP3 map or RESP2
/// array).
fn config_value(v: &Value) -> Option<String> {
    let pair: (&Value, &Value) = match v {
        Value::Map(m) => m.first().map(|(k, v)| (k, v))?,
        Value::Array(a) => (a.first()?, a.get(1)?),
        _ => return None,
    };
    bytes(Some(pair.1)).map(|b| String::from_utf8_lossy(b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_get_replies_in_both_protocols() {
        let name = Value::BulkString(b"notify-keyspace-events".to_vec());
        let val = Value::BulkString(b"AKE".to_vec());
        assert_eq!(
            config_value(&Value::Map(vec![(name.clone(), val.clone())])).as_deref(),
            Some("AKE")
        );
        assert_eq!(
            config_value(&Value::Array(vec![name, val])).as_deref(),
            Some("AKE")
        );
        assert_eq!(config_value(&Value::Array(vec![])), None);
        assert_eq!(config_value(&Value::Nil), None);
    }
}
