//! The Redis backend (standalone via `ConnectionManager`, or Redis Cluster).
//!
//! Data model: one string key per AOR, `<prefix>:{<aor>}` (hash-tagged, so
//! everything about an AOR lives on one cluster slot), holding the encoded
//! binding set ([`crate::codec`]). Writes are optimistic: read the value, run
//! the shared sans-IO core ([`crate::set`]) on it, and store the result with
//! a Lua compare-and-set that succeeds only if the value is unchanged — so
//! each REGISTER is atomic per AOR across any number of nodes. The key
//! expires (`PXAT`) a grace period after its latest binding; expired
//! bindings inside it are filtered on read and removed on write. Sixteen
//! sorted sets `<prefix>:exp:{N}` index each AOR's earliest expiry so that
//! [`RedisStore::expire`] visits only due AORs and reports their removals.
//!
//! Every command runs under a short timeout; connection failures and
//! timeouts surface as [`LocationError::Unavailable`], are counted in
//! `voxline_location_errors_total` and logged once per outage.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, RedisError, Script, Value};
use tokio::sync::{Mutex, broadcast};

use crate::binding::{Binding, Update};
use crate::change::{ChangeOrigin, LocationChange};
use crate::codec;
use crate::error::{ConfigError, InvalidInput, LocationError, Unreachable};
use crate::memory::admin_removals;
use crate::set::{self, BindingSet, Limits, ReplicaOutcome};
use crate::store::{Applied, Counts, Page};
use crate::time::Timestamp;

const CAS_ATTEMPTS: usize = 32;
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;
/// Writers to the same AOR through one store queue on one of these stripes,
/// so compare-and-set only races between nodes.
const WRITE_STRIPES: usize = 1024;
const INDEX_BUCKETS: u32 = 16;
const EXPIRE_BATCH: usize = 1000;

/// Settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Connection URLs: one for standalone, seed nodes for Cluster.
    pub nodes: Vec<String>,
    /// Use Redis Cluster.
    pub cluster: bool,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Per-operation timeout; beyond it the operation is `Unavailable`.
    pub command_timeout: Duration,
    /// Per-AOR contact limit.
    pub limits: Limits,
    /// How long an AOR key outlives its latest binding, so `expire` can
    /// still report the removal before Redis drops the key itself.
    pub expiry_grace: Duration,
    /// Capacity of the change feed channel.
    pub feed_capacity: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            nodes: vec!["redis://127.0.0.1:6379".into()],
            cluster: false,
            key_prefix: "vxl:loc".into(),
            command_timeout: Duration::from_millis(500),
            limits: Limits::default(),
            expiry_grace: Duration::from_secs(30),
            feed_capacity: 65_536,
        }
    }
}

enum Conn {
    Standalone(ConnectionManager),
    Cluster(Box<ClusterConn>),
}

struct ClusterConn {
    client: ClusterClient,
    conn: Mutex<Option<ClusterConnection>>,
}

enum Handle {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Location store in Redis.
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    timeout: Duration,
    grace_ms: u64,
    limits: Limits,
    cas: Script,
    feed: broadcast::Sender<LocationChange>,
    /// Reachability as last seen: [`UNKNOWN`], [`UP`] or [`DOWN`].
    state: AtomicU8,
    stripes: Box<[Mutex<()>]>,
}

enum Exec<'a> {
    Cmd(&'a Cmd),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl Exec<'_> {
    async fn run<T: FromRedisValue, C: ConnectionLike + Send>(
        &self,
        c: &mut C,
    ) -> redis::RedisResult<T> {
        match self {
            Exec::Cmd(cmd) => cmd.query_async(c).await,
            Exec::Script(inv) => inv.invoke_async(c).await,
        }
    }
}

/// A random delay growing with the attempt number (up to ~10 ms).
fn jitter_us(attempt: usize) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let random = std::hash::RandomState::new().build_hasher().finish();
    let cap = 100u64 << attempt.min(7);
    random % cap
}

fn is_unreachable(e: &RedisError) -> bool {
    use redis::ErrorKind;
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::Server(_) if e.is_cluster_error())
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound | ErrorKind::Io
        )
        || e.code()
            .is_some_and(|c| matches!(c, "CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "LOADING"))
}

impl RedisStore {
    /// Create the store without waiting for Redis (connections are made on
    /// first use and re-made automatically).
    pub fn new(options: RedisOptions) -> Result<Self, LocationError> {
        let timeout = options.command_timeout;
        let conn = if options.cluster {
            let client = ClusterClientBuilder::new(options.nodes.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()
                .map_err(ConfigError::RedisUrl)?;
            Conn::Cluster(Box::new(ClusterConn {
                client,
                conn: Mutex::new(None),
            }))
        } else {
            let url = options.nodes.first().cloned().unwrap_or_default();
            let client = redis::Client::open(url).map_err(ConfigError::RedisUrl)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(200));
            let manager = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(ConfigError::RedisUrl)?;
            Conn::Standalone(manager)
        };
        let (feed, _) = broadcast::channel(options.feed_capacity.max(1));
        Ok(RedisStore {
            conn,
            prefix: options.key_prefix,
            timeout,
            grace_ms: u64::try_from(options.expiry_grace.as_millis()).unwrap_or(u64::MAX),
            limits: options.limits,
            cas: Script::new(include_str!("cas.lua")),
            feed,
            state: AtomicU8::new(UNKNOWN),
            stripes: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    fn key(&self, aor: &str) -> String {
        format!("{}:{{{}}}", self.prefix, aor)
    }

    fn aor_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix('}')
    }

    fn index_key_for(&self, bucket: u32) -> String {
        format!("{}:exp:{{{}}}", self.prefix, bucket)
    }

    fn index_key(&self, aor: &str) -> String {
        self.index_key_for(crc32fast::hash(aor.as_bytes()) % INDEX_BUCKETS)
    }

    async fn handle(&self) -> redis::RedisResult<Handle> {
        match &self.conn {
            Conn::Standalone(m) => Ok(Handle::Standalone(m.clone())),
            Conn::Cluster(c) => {
                let (client, conn) = (&c.client, &c.conn);
                let mut slot = conn.lock().await;
                if let Some(c) = slot.as_ref() {
                    return Ok(Handle::Cluster(c.clone()));
                }
                let c = client.get_async_connection().await?;
                *slot = Some(c.clone());
                Ok(Handle::Cluster(c))
            }
        }
    }

    fn failed(&self, op: &'static str, err: LocationError) -> LocationError {
        let kind = match &err {
            LocationError::Unavailable(Unreachable::Timeout(_)) => "timeout",
            LocationError::Unavailable(_) => "unavailable",
            LocationError::Contention => "contention",
            LocationError::Corrupt(_) => "corrupt",
            _ => "backend",
        };
        metrics::counter!("voxline_location_errors_total", "backend" => "redis", "op" => op, "kind" => kind)
            .increment(1);
        if matches!(err, LocationError::Unavailable(_)) {
            metrics::gauge!("voxline_location_redis_up").set(0.0);
            if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
                tracing::error!(error = %err, op, "location store: Redis unreachable; REGISTERs will fail until it is back");
            }
        } else {
            tracing::warn!(error = %err, op, "location store: Redis operation failed");
        }
        err
    }

    fn succeeded(&self) {
        if self.state.swap(UP, Ordering::Relaxed) != UP {
            metrics::gauge!("voxline_location_redis_up").set(1.0);
            tracing::info!("location store: Redis reachable");
        }
    }

    async fn exec<T: FromRedisValue>(
        &self,
        op: &'static str,
        what: Exec<'_>,
    ) -> Result<T, LocationError> {
        // Plain commands here are all idempotent: one that failed on a
        // dropped connection (e.g. the first use after a Redis restart) is
        // sent once more on the re-made connection. The compare-and-set
        // script is never resent: its reply may have been the part lost.
        let idempotent = matches!(what, Exec::Cmd(_));
        let fut = async {
            let mut resent = false;
            loop {
                let result = match self.handle().await {
                    Ok(Handle::Standalone(mut c)) => what.run(&mut c).await,
                    Ok(Handle::Cluster(mut c)) => what.run(&mut c).await,
                    Err(e) => Err(e),
                };
                match result {
                    Err(e)
                        if idempotent
                            && !resent
                            && (e.is_connection_dropped() || e.is_io_error()) =>
                    {
                        tracing::debug!(error = %e, op, "location store: resending after a dropped connection");
                        resent = true;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Ok(v)
            }
            Ok(Err(e)) if is_unreachable(&e) => {
                Err(self.failed(op, LocationError::Unavailable(Unreachable::Connection(e))))
            }
            Ok(Err(e)) => Err(self.failed(op, LocationError::Backend(e))),
            Err(_) => Err(self.failed(
                op,
                LocationError::Unavailable(Unreachable::Timeout(self.timeout)),
            )),
        }
    }

    async fn get_raw(&self, op: &'static str, key: &str) -> Result<Vec<u8>, LocationError> {
        let v: Option<Vec<u8>> = self.exec(op, Exec::Cmd(redis::cmd("GET").arg(key))).await?;
        Ok(v.unwrap_or_default())
    }

    fn decode(&self, op: &'static str, raw: &[u8]) -> Result<BindingSet, LocationError> {
        if raw.is_empty() {
            return Ok(BindingSet::default());
        }
        codec::decode_set(raw).map_err(|e| self.failed(op, e))
    }

    /// Read-modify-CAS loop on one AOR. `f` returns its result and whether
    /// the bindings must be written; it may run more than once.
    async fn modify<R>(
        &self,
        op: &'static str,
        aor: &str,
        now: Timestamp,
        mut f: impl FnMut(&mut BindingSet) -> Result<(R, bool), LocationError>,
    ) -> Result<(BindingSet, R), LocationError> {
        let key = self.key(aor);
        let stripe = crc32fast::hash(aor.as_bytes()) as usize % WRITE_STRIPES;
        let _serialized = match self.stripes.get(stripe) {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        let mut current = self.get_raw(op, &key).await?;
        for attempt in 0..CAS_ATTEMPTS {
            if attempt > 2 {
                // Another node keeps winning: back off a little, randomly.
                tokio::time::sleep(Duration::from_micros(jitter_us(attempt))).await;
            }
            let mut bindings = self.decode(op, &current)?;
            let (r, write) = f(&mut bindings)?;
            if !write {
                return Ok((bindings, r));
            }
            let new = if bindings.is_empty() {
                Vec::new()
            } else {
                codec::encode_set(&bindings)
            };
            let pxat = bindings
                .last_due()
                .map_or(now.as_millis(), |t| t.as_millis())
                .saturating_add(self.grace_ms);
            let mut inv = self.cas.key(&key);
            inv.arg(&current[..]).arg(&new[..]).arg(pxat);
            let reply: Value = self.exec(op, Exec::Script(&inv)).await?;
            match reply {
                Value::Int(1) => {
                    self.reindex(op, aor, &bindings).await;
                    return Ok((bindings, r));
                }
                Value::Array(items) => match items.into_iter().next() {
                    Some(Value::BulkString(b)) => current = b,
                    Some(Value::SimpleString(s)) => current = s.into_bytes(),
                    _ => current = Vec::new(),
                },
                _ => return Err(self.failed(op, LocationError::Corrupt("unexpected CAS reply"))),
            }
        }
        Err(self.failed(op, LocationError::Contention))
    }

    /// Keep the expiry index in step (best effort: a missed update only
    /// delays an expiry report; Redis still drops the key by its TTL).
    async fn reindex(&self, op: &'static str, aor: &str, set: &BindingSet) {
        let idx = self.index_key(aor);
        let mut cmd;
        match set.next_due() {
            Some(t) => {
                cmd = redis::cmd("ZADD");
                cmd.arg(&idx).arg(t.as_millis()).arg(aor);
            }
            None => {
                cmd = redis::cmd("ZREM");
                cmd.arg(&idx).arg(aor);
            }
        }
        let r: Result<Value, _> = self.exec(op, Exec::Cmd(&cmd)).await;
        if let Err(e) = r {
            tracing::debug!(error = %e, aor, "location expiry index not updated");
        }
    }

    fn publish(&self, changes: &[LocationChange]) {
        if self.feed.receiver_count() > 0 {
            for c in changes {
                let _ = self.feed.send(c.clone());
            }
        }
    }

    /// Apply one REGISTER atomically (see [`set::apply_update`]).
    pub async fn apply(
        &self,
        aor: &str,
        update: &Update,
        now: Timestamp,
    ) -> Result<Applied, LocationError> {
        set::validate(aor, update)?;
        let limits = self.limits;
        let (bindings, changes) = self
            .modify("apply", aor, now, |b| {
                let changes = set::apply_update(aor, b, update, now, limits)?;
                let write = !changes.is_empty();
                Ok((changes, write))
            })
            .await?;
        self.publish(&changes);
        Ok(Applied {
            bindings: set::live_sorted(&bindings.bindings, now),
            changes,
        })
    }

    /// Live bindings of `aor`, best first (one GET).
    pub async fn lookup(&self, aor: &str, now: Timestamp) -> Result<Vec<Binding>, LocationError> {
        let raw = self.get_raw("lookup", &self.key(aor)).await?;
        Ok(set::live_sorted(
            &self.decode("lookup", &raw)?.bindings,
            now,
        ))
    }

    /// Remove every binding of `aor`.
    pub async fn remove_aor(
        &self,
        aor: &str,
        now: Timestamp,
    ) -> Result<Vec<LocationChange>, LocationError> {
        if aor.is_empty() {
            return Err(InvalidInput::EmptyAor.into());
        }
        let (_, changes) = self
            .modify("remove_aor", aor, now, |b| {
                let changes = admin_removals(aor, b, now);
                let write = !changes.is_empty();
                Ok((changes, write))
            })
            .await?;
        self.publish(&changes);
        Ok(changes)
    }

    /// Apply a change from a peer site (idempotent; older changes ignored).
    pub async fn apply_replicated(
        &self,
        change: &LocationChange,
        now: Timestamp,
    ) -> Result<bool, LocationError> {
        let (_, applied) = self
            .modify("apply_replicated", &change.aor, now, |b| {
                let outcome = set::apply_replicated(b, change, now);
                Ok((
                    outcome == ReplicaOutcome::Applied,
                    outcome != ReplicaOutcome::Ignored,
                ))
            })
            .await?;
        if applied {
            let mut c = change.clone();
            c.origin = ChangeOrigin::Replicated;
            self.publish(std::slice::from_ref(&c));
        }
        Ok(applied)
    }

    /// Remove bindings due at `now` (visiting only AORs the index says are
    /// due) and report them. Safe to run on several nodes at once: the CAS
    /// lets exactly one of them report each removal.
    pub async fn expire(&self, now: Timestamp) -> Result<Vec<LocationChange>, LocationError> {
        let mut changes = Vec::new();
        for bucket in 0..INDEX_BUCKETS {
            let idx = self.index_key_for(bucket);
            let due: Vec<String> = self
                .exec(
                    "expire",
                    Exec::Cmd(
                        redis::cmd("ZRANGEBYSCORE")
                            .arg(&idx)
                            .arg("-inf")
                            .arg(now.as_millis())
                            .arg("LIMIT")
                            .arg(0)
                            .arg(EXPIRE_BATCH),
                    ),
                )
                .await?;
            for aor in due {
                let (bindings, removed) = self
                    .modify("expire", &aor, now, |b| {
                        let removed = set::expire_due(&aor, b, now);
                        let write = !removed.is_empty();
                        Ok((removed, write))
                    })
                    .await?;
                if removed.is_empty() {
                    // Nothing due after all (refreshed, or the key is gone):
                    // fix the index entry.
                    self.reindex("expire", &aor, &bindings).await;
                }
                changes.extend(removed);
            }
        }
        self.publish(&changes);
        Ok(changes)
    }

    /// The primaries to scan: `None` = the standalone server.
    async fn scan_targets(&self) -> Result<Vec<Option<(String, u16)>>, LocationError> {
        if matches!(self.conn, Conn::Standalone(_)) {
            return Ok(vec![None]);
        }
        let nodes: String = self
            .exec(
                "scan",
                Exec::Cmd(&redis::cmd("CLUSTER").arg("NODES").clone()),
            )
            .await?;
        let mut out: Vec<(String, u16)> = nodes
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let addr = f.nth(1)?;
                let flags = f.next()?;
                if !flags.split(',').any(|x| x == "master") || flags.contains("fail") {
                    return None;
                }
                let hostport = addr.split('@').next()?;
                let (host, port) = hostport.rsplit_once(':')?;
                Some((host.to_owned(), port.parse().ok()?))
            })
            .collect();
        out.sort();
        Ok(out.into_iter().map(Some).collect())
    }

    async fn scan_page(
        &self,
        target: &Option<(String, u16)>,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<String>), LocationError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:{{*", self.prefix))
            .arg("COUNT")
            .arg(count);
        let fut = async {
            match (self.handle().await?, target) {
                (Handle::Cluster(mut c), Some((host, port))) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    });
                    let v = c.route_command(cmd, routing).await?;
                    Ok(<(u64, Vec<String>)>::from_redis_value(v)?)
                }
                (Handle::Standalone(mut c), _) => cmd.query_async(&mut c).await,
                (Handle::Cluster(mut c), None) => cmd.query_async(&mut c).await,
            }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_unreachable(&e) => Err(self.failed(
                "scan",
                LocationError::Unavailable(Unreachable::Connection(e)),
            )),
            Ok(Err(e)) => Err(self.failed("scan", LocationError::Backend(e))),
            Err(_) => Err(self.failed(
                "scan",
                LocationError::Unavailable(Unreachable::Timeout(self.timeout)),
            )),
        }
    }

    /// Count AORs and live bindings by scanning every key (admin use).
    pub async fn count(&self, now: Timestamp) -> Result<Counts, LocationError> {
        let mut counts = Counts::default();
        let mut cursor = None;
        loop {
            let page = self.list(cursor.as_deref(), 500, now).await?;
            for (_, b) in &page.entries {
                if !b.is_empty() {
                    counts.aors += 1;
                    counts.bindings += b.len() as u64;
                }
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => return Ok(counts),
            }
        }
    }

    /// One page of AORs. The cursor is `<node index>:<scan cursor>`; a page
    /// may hold somewhat more or fewer than `limit` entries (SCAN semantics),
    /// and AORs whose bindings all expired are skipped.
    pub async fn list(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page, LocationError> {
        let targets = self.scan_targets().await?;
        let (mut node, mut scan) = match cursor {
            None => (0usize, 0u64),
            Some(c) => {
                let (n, s) = c
                    .split_once(':')
                    .ok_or(LocationError::Corrupt("bad page cursor"))?;
                (
                    n.parse()
                        .map_err(|_| LocationError::Corrupt("bad page cursor"))?,
                    s.parse()
                        .map_err(|_| LocationError::Corrupt("bad page cursor"))?,
                )
            }
        };
        let limit = limit.max(1);
        let mut entries = Vec::new();
        while let Some(target) = targets.get(node) {
            let (next, keys) = self.scan_page(target, scan, limit).await?;
            for key in keys {
                let Some(aor) = self.aor_of(&key) else {
                    continue;
                };
                let raw = self.get_raw("list", &key).await?;
                let live = set::live_sorted(&self.decode("list", &raw)?.bindings, now);
                if !live.is_empty() {
                    entries.push((aor.to_owned(), live));
                }
            }
            if next == 0 {
                node += 1;
                scan = 0;
            } else {
                scan = next;
            }
            if entries.len() >= limit {
                break;
            }
        }
        let next = (node < targets.len()).then(|| format!("{node}:{scan}"));
        Ok(Page { entries, next })
    }

    /// Subscribe to changes made through this handle.
    pub fn subscribe(&self) -> broadcast::Receiver<LocationChange> {
        self.feed.subscribe()
    }
}
