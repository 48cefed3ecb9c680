//! Session replication through Redis and relay takeover.
//!
//! Every change of a session is written as a [`SessionRecord`] under
//! `<prefix>:call:<call-id>` (coalesced per call, pipelined, never blocking
//! the ng thread or the forwarding workers). Every relay writes a heartbeat
//! key with a short TTL and an info record with its ng and media addresses.
//! Standby relays subscribe to keyspace notifications under the prefix and
//! keep the sessions of the relays they follow as standby sessions, their
//! sockets bound where possible. A followed relay whose heartbeat stops (or
//! whose standby socket receives media, or whose session an ng command
//! names) is taken over: its ng addresses and media sockets are bound here
//! and its sessions become this relay's, written back as such.
//!
//! The pieces: [`keys`] (names and notifications), [`record`] (what is
//! stored), [`liveness`] (sans-IO heartbeat verdicts) and the I/O in
//! `link` (connection, writer, heartbeat, follower, takeover procedure).

pub mod keys;
mod link;
pub mod liveness;
pub mod record;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

pub use keys::{KeyEvent, KeyKind, KeySpace, notifications_sufficient};
pub(crate) use link::{Link, LinkParts, start};
pub use liveness::{Liveness, Verdict};
pub use record::{RECORD_VERSION, RecordError, RelayInfo, SessionRecord};

/// Replication state for stats and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisStatus {
    /// This relay's id.
    pub relay_id: String,
    /// The last Redis command succeeded.
    pub connected: bool,
    /// Whether Redis has `notify-keyspace-events` set so that standbys can
    /// follow sessions; `None` until checked (or if `CONFIG GET` is not
    /// allowed).
    pub keyspace_notifications: Option<bool>,
    /// Session writes waiting for Redis.
    pub pending_writes: usize,
    /// Failed write batches, ever.
    pub write_errors: u64,
    /// Subscriptions made again because this relay's own heartbeat
    /// notifications stopped while Redis took its writes, ever.
    pub resubscriptions: u64,
    /// Relays taken over, in order.
    pub taken_over: Vec<Takeover>,
}

/// One takeover done by this relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// The relay taken over.
    pub relay: String,
    /// What set it off: `heartbeat` (timeout), `address` (missed heartbeat
    /// and its ng address free here), `media` (packets on a standby
    /// socket), `signalling` (an ng command for one of its sessions).
    pub trigger: &'static str,
    /// Sessions adopted.
    pub sessions: usize,
}

/// Shared, lock-free (mostly) view of the link's state.
#[derive(Debug, Default)]
pub(crate) struct LinkStatus {
    relay_id: String,
    connected: AtomicBool,
    /// 0 unknown, 1 sufficient, 2 off.
    notifications: AtomicU8,
    pending: AtomicUsize,
    write_errors: AtomicU64,
    resubscriptions: AtomicU64,
    taken_over: Mutex<Vec<Takeover>>,
}

impl LinkStatus {
    pub(crate) fn new(relay_id: &str) -> LinkStatus {
        LinkStatus {
            relay_id: relay_id.to_owned(),
            ..LinkStatus::default()
        }
    }

    pub(crate) fn set_connected(&self, up: bool) {
        let was = self.connected.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("Redis reachable");
            } else {
                tracing::warn!("Redis unreachable: sessions are queued, media keeps flowing");
            }
        }
        metrics::gauge!("voxline_relay_redis_connected").set(if up { 1.0 } else { 0.0 });
    }

    /// Whether Redis answered the last heartbeat write or reconcile (false
    /// after a failed write or a lost connection).
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether Redis said its keyspace notifications are off.
    pub(crate) fn notifications_off(&self) -> bool {
        self.notifications.load(Ordering::Relaxed) == 2
    }

    pub(crate) fn set_notifications(&self, ok: Option<bool>) {
        let (v, g) = match ok {
            None => (0, -1.0),
            Some(true) => (1, 1.0),
            Some(false) => (2, 0.0),
        };
        self.notifications.store(v, Ordering::Relaxed);
        metrics::gauge!("voxline_relay_redis_keyspace_notifications").set(g);
    }

    pub(crate) fn set_pending(&self, n: usize) {
        self.pending.store(n, Ordering::Relaxed);
        metrics::gauge!("voxline_relay_redis_pending_writes").set(n as f64);
    }

    pub(crate) fn write_failed(&self) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("voxline_relay_redis_write_errors_total").increment(1);
    }

    pub(crate) fn resubscribed(&self) {
        self.resubscriptions.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("voxline_relay_redis_resubscriptions_total").increment(1);
    }

    pub(crate) fn took_over(&self, t: Takeover) {
        if let Ok(mut v) = self.taken_over.lock() {
            v.push(t);
        }
    }

    /// A copy for reporting.
    pub(crate) fn snapshot(&self) -> RedisStatus {
        RedisStatus {
            relay_id: self.relay_id.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            keyspace_notifications: match self.notifications.load(Ordering::Relaxed) {
                1 => Some(true),
                2 => Some(false),
                _ => None,
            },
            pending_writes: self.pending.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            resubscriptions: self.resubscriptions.load(Ordering::Relaxed),
            taken_over: self
                .taken_over
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default(),
        }
    }
}
