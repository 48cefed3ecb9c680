//! The backend chosen by configuration, behind one async API.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::binding::{Binding, Update};
use crate::change::LocationChange;
use crate::config::{BackendKind, LocationConfig};
use crate::error::LocationError;
use crate::memory::{MemoryOptions, MemoryStore};
use crate::redis_store::{RedisOptions, RedisStore};
use crate::set::Limits;
use crate::time::Timestamp;

/// Result of one REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Every live binding of the AOR after the update, best first (for the
    /// 200 OK Contact list).
    pub bindings: Vec<Binding>,
    /// What changed (also sent to subscribers).
    pub changes: Vec<LocationChange>,
}

/// Size of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Addresses-of-record with at least one binding.
    pub aors: u64,
    /// Bindings.
    pub bindings: u64,
}

/// One page of an admin listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// AORs with their live bindings (best first).
    pub entries: Vec<(String, Vec<Binding>)>,
    /// Cursor for the next page; `None` when the listing is complete.
    pub next: Option<String>,
}

/// The location store: memory or Redis, chosen by [`LocationConfig::backend`].
/// Cheap to clone (shared handle).
#[derive(Clone)]
pub enum LocationStore {
    /// In-process sharded map, optionally persisted.
    Memory(Arc<MemoryStore>),
    /// Redis standalone or Cluster.
    Redis(Arc<RedisStore>),
}

impl LocationStore {
    /// Starts a batch of changes on this thread whose log records are
    /// written together by [`commit_batch`](Self::commit_batch) (memory
    /// backend with a data directory; nothing for the others). See
    /// [`MemoryStore::begin_batch`].
    pub fn begin_batch(&self) {
        if let LocationStore::Memory(m) = self {
            m.begin_batch();
        }
    }

    /// Ends this thread's batch ([`MemoryStore::commit_batch`]): `Err`
    /// means the batch's answers must not be sent.
    pub fn commit_batch(&self) -> Result<(), LocationError> {
        match self {
            LocationStore::Memory(m) => m.commit_batch(),
            LocationStore::Redis(_) => Ok(()),
        }
    }

    /// Open the backend described by `config`. For memory with a data
    /// directory this recovers the persisted state (blocking file I/O).
    /// For Redis it does not wait for the server: operations fail with
    /// [`LocationError::Unavailable`] until it is reachable.
    pub async fn open(config: &LocationConfig) -> Result<Self, LocationError> {
        let limits = Limits {
            max_contacts: config.max_contacts,
            policy: config.max_contacts_policy,
        };
        match config.backend_kind()? {
            BackendKind::Memory => {
                let options = MemoryOptions {
                    shards: config.shards,
                    limits,
                    data_dir: config.data_dir.clone(),
                    fsync: config.fsync,
                    ..MemoryOptions::default()
                };
                let store = tokio::task::spawn_blocking(move || {
                    MemoryStore::open(options, Timestamp::now())
                })
                .await
                .map_err(|e| LocationError::Io(std::io::Error::other(e)))??;
                Ok(LocationStore::Memory(Arc::new(store)))
            }
            BackendKind::Redis { nodes, cluster } => {
                let options = RedisOptions {
                    nodes,
                    cluster,
                    key_prefix: config.redis_key_prefix.clone(),
                    command_timeout: Duration::from_millis(config.redis_timeout_ms),
                    limits,
                    ..RedisOptions::default()
                };
                Ok(LocationStore::Redis(Arc::new(RedisStore::new(options)?)))
            }
        }
    }

    /// Apply one REGISTER to `aor` atomically.
    pub async fn apply(
        &self,
        aor: &str,
        update: &Update,
        now: Timestamp,
    ) -> Result<Applied, LocationError> {
        match self {
            LocationStore::Memory(m) => m.apply(aor, update, now),
            // Boxed: the memory path, which never waits, then builds a
            // future of a few words instead of one sized for a Redis
            // round trip (the registrar's REGISTER handler is boxed whole).
            LocationStore::Redis(r) => Box::pin(r.apply(aor, update, now)).await,
        }
    }

    /// Live bindings of `aor`: q descending, then most recent first.
    pub async fn lookup(&self, aor: &str, now: Timestamp) -> Result<Vec<Binding>, LocationError> {
        match self {
            LocationStore::Memory(m) => m.lookup(aor, now),
            LocationStore::Redis(r) => Box::pin(r.lookup(aor, now)).await,
        }
    }

    /// Remove every binding of `aor` (admin action).
    pub async fn remove_aor(
        &self,
        aor: &str,
        now: Timestamp,
    ) -> Result<Vec<LocationChange>, LocationError> {
        match self {
            LocationStore::Memory(m) => m.remove_aor(aor, now),
            LocationStore::Redis(r) => r.remove_aor(aor, now).await,
        }
    }

    /// Apply a change from a peer site; `Ok(false)` if it was not newer.
    pub async fn apply_replicated(
        &self,
        change: &LocationChange,
        now: Timestamp,
    ) -> Result<bool, LocationError> {
        match self {
            LocationStore::Memory(m) => m.apply_replicated(change, now),
            LocationStore::Redis(r) => r.apply_replicated(change, now).await,
        }
    }

    /// Remove bindings due at `now` and report them.
    pub async fn expire(&self, now: Timestamp) -> Result<Vec<LocationChange>, LocationError> {
        match self {
            LocationStore::Memory(m) => m.expire(now),
            LocationStore::Redis(r) => r.expire(now).await,
        }
    }

    /// Number of AORs and bindings. Memory: O(shards). Redis: scans every
    /// key (admin use only).
    pub async fn count(&self, now: Timestamp) -> Result<Counts, LocationError> {
        match self {
            LocationStore::Memory(m) => Ok(m.count()),
            LocationStore::Redis(r) => r.count(now).await,
        }
    }

    /// One page of the admin listing.
    pub async fn list(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page, LocationError> {
        match self {
            LocationStore::Memory(m) => m.list(cursor, limit, now),
            LocationStore::Redis(r) => r.list(cursor, limit, now).await,
        }
    }

    /// Subscribe to changes made through this handle (and replicated ones
    /// applied through it).
    pub fn subscribe(&self) -> broadcast::Receiver<LocationChange> {
        match self {
            LocationStore::Memory(m) => m.subscribe(),
            LocationStore::Redis(r) => r.subscribe(),
        }
    }

    /// Run periodic work until the returned task is aborted: `expire` every
    /// `expire_interval`, snapshots and interval fsyncs for memory.
    pub fn spawn_maintenance(&self, config: &LocationConfig) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let expire_every = Duration::from_millis(config.expire_interval_ms.max(10));
        let snapshot_every = Duration::from_secs(config.snapshot_interval_secs.max(1));
        let fsync_every = Duration::from_millis(config.fsync_interval_ms.max(1));
        tokio::spawn(async move {
            let mut expire = tokio::time::interval(expire_every);
            let mut snapshot = tokio::time::interval(snapshot_every);
            let mut fsync = tokio::time::interval(fsync_every);
            expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            snapshot.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            fsync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            snapshot.tick().await; // the first tick is immediate; open() just snapshotted
            loop {
                tokio::select! {
                    _ = expire.tick() => {
                        if let Err(e) = store.expire(Timestamp::now()).await {
                            tracing::warn!(error = %e, "location expiry run failed");
                        }
                    }
                    _ = snapshot.tick() => {
                        if let LocationStore::Memory(m) = &store {
                            let m = Arc::clone(m);
                            match tokio::task::spawn_blocking(move || m.snapshot()).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => tracing::error!(error = %e, "location snapshot failed"),
                                Err(e) => tracing::error!(error = %e, "location snapshot task failed"),
                            }
                        }
                    }
                    _ = fsync.tick() => {
                        if let LocationStore::Memory(m) = &store {
                            let m = Arc::clone(m);
                            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || m.sync()).await {
                                tracing::error!(error = %e, "location log fsync failed");
                            }
                        }
                    }
                }
            }
        })
    }
}
