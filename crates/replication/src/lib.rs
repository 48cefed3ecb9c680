//! Active-active sites: each registrar node streams the location changes
//! made through it (new, refreshed and removed bindings) to every peer site,
//! where they are applied with `LocationStore::apply_replicated`.
//!
//! * [`journal`] — the bounded, coalescing outbound journal (sans-IO).
//! * [`link`] — the per-peer link state machine: journal batches, full
//!   resync pages, heartbeats, backoff, operator block (sans-IO).
//! * [`wire`] — the batch format; [`auth`] — HMAC signing of requests.
//! * [`inbound`] — checks and applies a peer's batch.
//! * [`http`] — the replication listener's routes and the peer client.
//! * [`Replication`] — wires it together for a node: a feed task (store
//!   change feed → journal), one driver task per peer, the listener, and a
//!   metrics task.
//!
//! The link is fully asynchronous: a REGISTER never waits for a peer. A
//! dead peer costs at most the journal's bound in memory; when the journal
//! had to drop entries the peer had not received, the peer gets a full
//! resync (a paged listing of the local store) once it is back.
//!
//! ```no_run
//! # async fn demo(store: voxline_location::LocationStore) -> Result<(), Box<dyn std::error::Error>> {
//! use voxline_replication::{PeerConfig, Replication, ReplicationConfig};
//! let config = ReplicationConfig {
//!     site: "fra".into(),
//!     listen: "10.0.0.1:7700".parse().unwrap(),
//!     secret: Some("a long shared secret".into()),
//!     peers: vec![PeerConfig { name: "ber".into(), addresses: vec!["10.1.0.1:7700".into()] }],
//!     ..ReplicationConfig::default()
//! };
//! let replication = Replication::start(&config, "fra-1", store).await?;
//! println!("{}", serde_json::to_string(&replication.status()).unwrap());
//! replication.set_blocked("ber", true)?; // cut the link (maintenance, tests)
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod http;
pub mod inbound;
pub mod journal;
pub mod link;
pub mod wire;

pub use config::{PeerConfig, ReplicationConfig, SecretError};
pub use inbound::InboundStatus;
pub use link::{LinkState, LinkStatus};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use voxline_location::codec::encode_change;
use voxline_location::{
    ChangeKind, ChangeOrigin, LocationChange, LocationStore, Page, RemoveReason, Timestamp,
};

use crate::auth::Key;
use crate::http::PeerClient;
use crate::inbound::Inbound;
use crate::journal::Journal;
use crate::link::{Link, LinkSettings, Next, Sent};
use crate::wire::encode_records;

/// Why replication cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The shared secret is unusable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The MAC refused the key.
    #[error("the replication secret cannot key HMAC-SHA256")]
    Key,
    /// The listener cannot bind.
    #[error("cannot listen for replication on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The named peer is not configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no replication peer named {0:?}")]
pub struct UnknownPeer(pub String);

/// The journal as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalStatus {
    /// Changes held for peers that are behind.
    pub entries: usize,
    /// Approximate bytes held.
    pub bytes: usize,
    /// Bound on `entries`.
    pub max_entries: usize,
    /// Last sequence number.
    pub last_seq: u64,
    /// Writes dropped because the journal was full (recovered by resync).
    pub evicted_upserts: u64,
    /// Removals dropped because the journal was full.
    pub evicted_removals: u64,
    /// Times the store's change feed overflowed before the journal read it.
    pub feed_overflows: u64,
}

/// Everything the admin API shows about replication.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// This site.
    pub site: String,
    /// This node.
    pub node: String,
    /// The replication listener.
    pub listen: String,
    /// The outbound journal.
    pub journal: JournalStatus,
    /// Links to the peer sites.
    pub peers: Vec<LinkStatus>,
    /// What arrived from each peer site.
    pub inbound: Vec<InboundStatus>,
}

struct LinkSlot {
    link: Mutex<Link>,
    wake: Notify,
}

struct Shared {
    site: String,
    node: String,
    listen: SocketAddr,
    journal: Mutex<Journal>,
    links: Vec<Arc<LinkSlot>>,
    inbound: Arc<Inbound>,
    feed_overflows: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn slot(&self, peer: &str) -> Result<&Arc<LinkSlot>, UnknownPeer> {
        self.links
            .iter()
            .find(|s| lock(&s.link).peer() == peer)
            .ok_or_else(|| UnknownPeer(peer.to_owned()))
    }

    fn wake_all(&self) {
        for s in &self.links {
            s.wake.notify_one();
        }
    }

    /// Drop journal entries every peer has.
    fn trim(&self) {
        let min = self.links.iter().map(|s| lock(&s.link).acked()).min();
        if let Some(min) = min {
            lock(&self.journal).trim(min);
        }
    }

    fn status(&self) -> Status {
        let now = Instant::now();
        let now_ms = Timestamp::now().as_millis();
        let journal = lock(&self.journal);
        let peers = self
            .links
            .iter()
            .map(|s| lock(&s.link).status(&journal, now, now_ms))
            .collect();
        let ev = journal.evictions();
        Status {
            site: self.site.clone(),
            node: self.node.clone(),
            listen: self.listen.to_string(),
            journal: JournalStatus {
                entries: journal.len(),
                bytes: journal.bytes(),
                max_entries: journal.max_entries(),
                last_seq: journal.last_seq(),
                evicted_upserts: ev.upserts,
                evicted_removals: ev.removals,
                feed_overflows: self
                    .feed_overflows
                    .load(std::sync::atomic::Ordering::Relaxed),
            },
            peers,
            inbound: self.inbound.status(),
        }
    }
}

/// Replication running in a node (see the crate documentation).
pub struct Replication {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Replication {
    /// Subscribe to `store`'s change feed, bind the replication listener
    /// and start the links to the peers. Call it before the node takes
    /// traffic, so that no change is made before the feed is read.
    pub async fn start(
        config: &ReplicationConfig,
        node: &str,
        store: LocationStore,
    ) -> Result<Replication, ReplicationError> {
        let feed = store.subscribe();
        let secret = config.load_secret()?;
        let key = Key::new(&secret).ok_or(ReplicationError::Key)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ReplicationError::Bind {
                address: config.listen,
                source,
            })?;
        let listen = listener
            .local_addr()
            .map_err(|source| ReplicationError::Bind {
                address: config.listen,
                source,
            })?;
        let peer_names: Vec<String> = config.peers.iter().map(|p| p.name.clone()).collect();
        let inbound = Arc::new(Inbound::new(
            &config.site,
            node,
            key.clone(),
            store.clone(),
            &peer_names,
            config.apply_lanes,
            config.max_clock_skew_secs.saturating_mul(1000),
        ));
        let settings = LinkSettings {
            batch_max: config.batch_max.max(1),
            retry_min: Duration::from_millis(config.retry_min_ms.max(1)),
            retry_max: Duration::from_millis(config.retry_max_ms.max(config.retry_min_ms)),
            heartbeat: Duration::from_millis(config.heartbeat_ms.max(1)),
        };
        let links: Vec<Arc<LinkSlot>> = config
            .peers
            .iter()
            .map(|p| {
                Arc::new(LinkSlot {
                    link: Mutex::new(Link::new(&p.name, settings, config.resync_on_start)),
                    wake: Notify::new(),
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            site: config.site.clone(),
            node: node.to_owned(),
            listen,
            journal: Mutex::new(Journal::new(config.journal_max_entries)),
            links,
            inbound: Arc::clone(&inbound),
            feed_overflows: std::sync::atomic::AtomicU64::new(0),
        });
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(follow_feed(Arc::clone(&shared), feed)));
        let app = http::router(inbound);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "replication listener failed");
            }
        }));
        for (peer, slot) in config.peers.iter().zip(&shared.links) {
            let client = PeerClient::new(
                peer.addresses.clone(),
                Duration::from_millis(config.request_timeout_ms.max(1)),
                &config.site,
                node,
                key.clone(),
            );
            tasks.push(tokio::spawn(drive(
                Arc::clone(&shared),
                Arc::clone(slot),
                client,
                store.clone(),
                config.resync_page.max(1),
            )));
        }
        tasks.push(tokio::spawn(export_metrics(Arc::clone(&shared))));
        Ok(Replication { shared, tasks })
    }

    /// The bound replication listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// Journal, links and inbound counters.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Cut (`true`) or restore the link with `peer`, both ways: nothing is
    /// sent to it and its requests are refused (503), so it keeps its
    /// changes too. Changes made meanwhile are delivered after the heal.
    pub fn set_blocked(&self, peer: &str, blocked: bool) -> Result<(), UnknownPeer> {
        let slot = self.shared.slot(peer)?;
        lock(&slot.link).set_blocked(blocked);
        self.shared.inbound.set_blocked(peer, blocked);
        slot.wake.notify_one();
        tracing::info!(
            peer,
            blocked,
            "replication link {}",
            if blocked {
                "cut by operator"
            } else {
                "restored by operator"
            }
        );
        Ok(())
    }

    /// Send everything to `peer` again (full resync).
    pub fn resync(&self, peer: &str) -> Result<(), UnknownPeer> {
        let slot = self.shared.slot(peer)?;
        lock(&slot.link).request_resync();
        slot.wake.notify_one();
        Ok(())
    }

    /// Stop every task.
    pub fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Only changes made here are sent; expiry happens on every site by
/// itself (the binding's absolute expiry travels with it).
fn wanted(change: &LocationChange) -> bool {
    change.origin == ChangeOrigin::Local
        && !matches!(
            change.kind,
            ChangeKind::Remove {
                reason: RemoveReason::Expired,
                ..
            }
        )
}

/// What the feed delivered.
enum Fed {
    Change(LocationChange),
    Missed(u64),
    Closed,
    Empty,
}

fn record(shared: &Shared, journal: &mut Journal, fed: Fed, now_ms: u64) -> bool {
    match fed {
        Fed::Change(c) => {
            if wanted(&c) {
                journal.push(&c, now_ms);
            }
            true
        }
        Fed::Missed(n) => {
            journal.mark_lost();
            shared
                .feed_overflows
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                missed = n,
                "location change feed overflowed; peers get a full resync"
            );
            true
        }
        Fed::Closed | Fed::Empty => false,
    }
}

async fn follow_feed(shared: Arc<Shared>, mut feed: broadcast::Receiver<LocationChange>) {
    use broadcast::error::{RecvError, TryRecvError};
    loop {
        let first = match feed.recv().await {
            Ok(c) => Fed::Change(c),
            Err(RecvError::Lagged(n)) => Fed::Missed(n),
            Err(RecvError::Closed) => return,
        };
        {
            let now_ms = Timestamp::now().as_millis();
            let mut journal = lock(&shared.journal);
            record(&shared, &mut journal, first, now_ms);
            // Take what is already queued under the same lock.
            for _ in 0..4096 {
                let fed = match feed.try_recv() {
                    Ok(c) => Fed::Change(c),
                    Err(TryRecvError::Lagged(n)) => Fed::Missed(n),
                    Err(TryRecvError::Closed) => Fed::Closed,
                    Err(TryRecvError::Empty) => Fed::Empty,
                };
                if !record(&shared, &mut journal, fed, now_ms) {
                    break;
                }
            }
        }
        shared.wake_all();
    }
}

/// The changes of one listing page: every live binding as a write.
fn page_records(page: &Page) -> Vec<Bytes> {
    let mut out = Vec::new();
    for (aor, bindings) in &page.entries {
        for b in bindings {
            let change = LocationChange {
                aor: aor.clone(),
                key: b.key(),
                kind: ChangeKind::Upsert(Box::new(b.clone())),
                origin: ChangeOrigin::Local,
            };
            out.push(Bytes::from(encode_change(&change)));
        }
    }
    out
}

async fn drive(
    shared: Arc<Shared>,
    slot: Arc<LinkSlot>,
    mut client: PeerClient,
    store: LocationStore,
    page_size: usize,
) {
    let peer = lock(&slot.link).peer().to_owned();
    loop {
        let (next, was_resyncing) = {
            let journal = lock(&shared.journal);
            let mut link = lock(&slot.link);
            let before = link.resyncing();
            (link.next(&journal, Instant::now()), before)
        };
        let (sent, body) = match next {
            Next::Wait(until) => {
                match until {
                    Some(t) => {
                        tokio::select! {
                            _ = slot.wake.notified() => {}
                            _ = tokio::time::sleep_until(t.into()) => {}
                        }
                    }
                    None => slot.wake.notified().await,
                }
                continue;
            }
            Next::Heartbeat => (Sent::Heartbeat, encode_records(&[])),
            Next::Journal { records, upto } => (
                Sent::Journal {
                    upto,
                    count: records.len(),
                },
                encode_records(&records),
            ),
            Next::ResyncPage { cursor } => {
                if cursor.is_none() && !was_resyncing {
                    tracing::info!(%peer, "full resync to peer site started");
                }
                match store
                    .list(cursor.as_deref(), page_size, Timestamp::now())
                    .await
                {
                    Ok(page) => {
                        let records = page_records(&page);
                        (
                            Sent::ResyncPage {
                                next: page.next,
                                count: records.len(),
                            },
                            encode_records(&records),
                        )
                    }
                    Err(e) => {
                        lock(&slot.link)
                            .on_failure(format!("local store listing: {e}"), Instant::now());
                        continue;
                    }
                }
            }
        };
        let result = client.send(body).await;
        let now = Instant::now();
        match result {
            Ok(reply) => {
                let (was, done) = {
                    let mut link = lock(&slot.link);
                    let was = link.state();
                    let resyncing = link.resyncing();
                    link.on_success(&sent, &reply, now);
                    (was, resyncing && !link.resyncing())
                };
                if was != LinkState::Up {
                    tracing::info!(%peer, node = %reply.node, "replication link up");
                }
                if done {
                    tracing::info!(%peer, "full resync to peer site complete");
                }
                if matches!(sent, Sent::Journal { .. }) {
                    shared.trim();
                }
            }
            Err(e) => {
                let was = {
                    let mut link = lock(&slot.link);
                    let was = link.state();
                    link.on_failure(e.to_string(), now);
                    was
                };
                if was != LinkState::Down {
                    tracing::warn!(%peer, address = client.address().unwrap_or(""), error = %e, "replication link down; retrying");
                }
            }
        }
    }
}

/// Publish gauges and counters once a second.
async fn export_metrics(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let st = shared.status();
        let j = &st.journal;
        metrics::gauge!("voxline_replication_journal_entries").set(j.entries as f64);
        metrics::gauge!("voxline_replication_journal_bytes").set(j.bytes as f64);
        metrics::counter!("voxline_replication_evicted_total", "kind" => "upsert")
            .absolute(j.evicted_upserts);
        metrics::counter!("voxline_replication_evicted_total", "kind" => "removal")
            .absolute(j.evicted_removals);
        metrics::counter!("voxline_replication_feed_overflows_total").absolute(j.feed_overflows);
        for p in &st.peers {
            let peer = p.peer.clone();
            metrics::gauge!("voxline_replication_lag_seconds", "peer" => peer.clone())
                .set(p.lag_ms as f64 / 1000.0);
            metrics::gauge!("voxline_replication_queue", "peer" => peer.clone())
                .set(p.queue as f64);
            metrics::gauge!("voxline_replication_link_up", "peer" => peer.clone())
                .set(if p.state == LinkState::Up { 1.0 } else { 0.0 });
            metrics::gauge!("voxline_replication_resyncing", "peer" => peer.clone())
                .set(if p.resyncing { 1.0 } else { 0.0 });
            metrics::counter!("voxline_replication_sent_total", "peer" => peer.clone())
                .absolute(p.counters.sent);
            metrics::counter!("voxline_replication_requests_total", "peer" => peer.clone(), "result" => "ok")
                .absolute(p.counters.requests);
            metrics::counter!("voxline_replication_requests_total", "peer" => peer.clone(), "result" => "error")
                .absolute(p.counters.errors);
            metrics::counter!("voxline_replication_resyncs_total", "peer" => peer)
                .absolute(p.counters.resyncs);
        }
    }
}
