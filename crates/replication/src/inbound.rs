//! The receiving side: checks a peer's request (known site, signature,
//! clock), decodes the batch and applies every change to the local store
//! with `apply_replicated` (idempotent; older changes are ignored; applied
//! changes are marked replicated, so they are not sent back out).
//!
//! Changes are applied in lanes by address-of-record, so one AOR's changes
//! keep their order while different AORs proceed concurrently.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use voxline_location::{LocationChange, LocationError, LocationStore, Timestamp};

use crate::auth::{AuthError, Key, Signed};
use crate::wire::{BatchReply, CHANGES_PATH, WireError, decode_batch};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// Not from a configured peer site.
    #[error("site {0:?} is not a configured peer")]
    UnknownSite(String),
    /// Not authentic.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An operator cut the link with this site.
    #[error("replication with site {0:?} is blocked by an operator")]
    Blocked(String),
    /// The batch cannot be read.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The local store refused a change (unreachable Redis, say): the
    /// sender retries the whole batch later.
    #[error("local location store: {0}")]
    Store(#[from] LocationError),
}

impl InboundError {
    /// The HTTP status that reports it.
    pub fn status(&self) -> u16 {
        match self {
            InboundError::UnknownSite(_) => 403,
            InboundError::Auth(_) => 401,
            InboundError::Blocked(_) | InboundError::Store(_) => 503,
            InboundError::Wire(_) => 400,
        }
    }
}

/// What a request claims about its sender (from the headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Site name.
    pub site: String,
    /// Node name.
    pub node: String,
    /// Signing time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Hex MAC.
    pub mac: String,
}

/// Counters for one sending site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InboundStatus {
    /// Sending site.
    pub site: String,
    /// Node that sent the last request.
    pub last_node: String,
    /// Requests accepted.
    pub requests: u64,
    /// Changes applied.
    pub applied: u64,
    /// Changes ignored (not newer).
    pub ignored: u64,
    /// Records that did not decode.
    pub rejected: u64,
    /// Requests refused (signature, clock, blocked, store).
    pub refused: u64,
    /// Since the last accepted request, ms.
    pub last_seen_ms_ago: Option<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    status: InboundStatus,
    last_seen: Option<Instant>,
}

/// The receiving side of a node.
pub struct Inbound {
    site: String,
    node: String,
    key: Key,
    store: LocationStore,
    lanes: usize,
    max_skew_ms: u64,
    peers: Mutex<HashMap<String, Counters>>,
    blocked: Mutex<Vec<String>>,
}

impl Inbound {
    /// Receive for `site`/`node` from `peers`, applying to `store`.
    pub fn new(
        site: &str,
        node: &str,
        key: Key,
        store: LocationStore,
        peers: &[String],
        lanes: usize,
        max_skew_ms: u64,
    ) -> Self {
        Inbound {
            site: site.to_owned(),
            node: node.to_owned(),
            key,
            store,
            lanes: lanes.max(1),
            max_skew_ms,
            peers: Mutex::new(
                peers
                    .iter()
                    .map(|p| {
                        let counters = Counters {
                            status: InboundStatus {
                                site: p.clone(),
                                ..InboundStatus::default()
                            },
                            last_seen: None,
                        };
                        (p.clone(), counters)
                    })
                    .collect(),
            ),
            blocked: Mutex::new(Vec::new()),
        }
    }

    /// Refuse (`true`) or accept requests from `site` again.
    pub fn set_blocked(&self, site: &str, blocked: bool) {
        let mut b = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        b.retain(|s| s != site);
        if blocked {
            b.push(site.to_owned());
        }
    }

    fn is_blocked(&self, site: &str) -> bool {
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|s| s == site)
    }

    fn count(&self, site: &str, f: impl FnOnce(&mut Counters)) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = peers.get_mut(site) {
            f(c);
        }
    }

    /// Check and apply one request.
    pub async fn receive(
        &self,
        sender: &Sender,
        body: &[u8],
        now: Timestamp,
    ) -> Result<BatchReply, InboundError> {
        let result = self.receive_inner(sender, body, now).await;
        match &result {
            Ok(reply) => {
                metrics::counter!("voxline_replication_received_total", "site" => sender.site.clone(), "result" => "applied").increment(reply.applied);
                metrics::counter!("voxline_replication_received_total", "site" => sender.site.clone(), "result" => "ignored").increment(reply.ignored);
                metrics::counter!("voxline_replication_received_total", "site" => sender.site.clone(), "result" => "rejected").increment(reply.rejected);
                self.count(&sender.site, |c| {
                    c.status.requests += 1;
                    c.status.applied += reply.applied;
                    c.status.ignored += reply.ignored;
                    c.status.rejected += reply.rejected;
                    c.status.last_node.clone_from(&sender.node);
                    c.last_seen = Some(Instant::now());
                });
            }
            Err(e) => {
                let reason = match e {
                    InboundError::UnknownSite(_) => "unknown_site",
                    InboundError::Auth(_) => "auth",
                    InboundError::Blocked(_) => "blocked",
                    InboundError::Wire(_) => "malformed",
                    InboundError::Store(_) => "store",
                };
                metrics::counter!("voxline_replication_refused_total", "reason" => reason)
                    .increment(1);
                self.count(&sender.site, |c| c.status.refused += 1);
            }
        }
        result
    }

    async fn receive_inner(
        &self,
        sender: &Sender,
        body: &[u8],
        now: Timestamp,
    ) -> Result<BatchReply, InboundError> {
        let known = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&sender.site);
        if !known {
            return Err(InboundError::UnknownSite(sender.site.clone()));
        }
        let signed = Signed {
            site: &sender.site,
            node: &sender.node,
            time_ms: sender.time_ms,
            path: CHANGES_PATH,
        };
        self.key.verify(
            &signed,
            body,
            &sender.mac,
            now.as_millis(),
            self.max_skew_ms,
        )?;
        if self.is_blocked(&sender.site) {
            return Err(InboundError::Blocked(sender.site.clone()));
        }
        let records = decode_batch(body)?;
        let mut reply = BatchReply {
            site: self.site.clone(),
            node: self.node.clone(),
            ..BatchReply::default()
        };
        let mut changes = Vec::with_capacity(records.len());
        for r in records {
            match r {
                Ok(c) => changes.push(c),
                Err(e) => {
                    tracing::warn!(site = %sender.site, error = %e, "replicated record rejected");
                    reply.rejected += 1;
                }
            }
        }
        let (applied, ignored) = self.apply(changes, now).await?;
        reply.applied = applied;
        reply.ignored = ignored;
        Ok(reply)
    }

    /// Apply changes in lanes by AOR; returns (applied, ignored).
    async fn apply(
        &self,
        changes: Vec<LocationChange>,
        now: Timestamp,
    ) -> Result<(u64, u64), LocationError> {
        if changes.len() < 2 * self.lanes || self.lanes == 1 {
            return apply_lane(&self.store, changes, now).await;
        }
        let mut lanes: Vec<Vec<LocationChange>> = vec![Vec::new(); self.lanes];
        for c in changes {
            let i = lane_of(&c.aor, self.lanes);
            if let Some(lane) = lanes.get_mut(i) {
                lane.push(c);
            }
        }
        let mut set = tokio::task::JoinSet::new();
        for lane in lanes.into_iter().filter(|l| !l.is_empty()) {
            let store = self.store.clone();
            set.spawn(async move { apply_lane(&store, lane, now).await });
        }
        let (mut applied, mut ignored) = (0, 0);
        let mut first_error = None;
        while let Some(done) = set.join_next().await {
            match done {
                Ok(Ok((a, i))) => {
                    applied += a;
                    ignored += i;
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(LocationError::Io(std::io::Error::other(e)));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((applied, ignored)),
        }
    }

    /// Counters per sending site, by site name.
    pub fn status(&self) -> Vec<InboundStatus> {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<InboundStatus> = peers
            .values()
            .map(|c| InboundStatus {
                last_seen_ms_ago: c
                    .last_seen
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                ..c.status.clone()
            })
            .collect();
        out.sort_by(|a, b| a.site.cmp(&b.site));
        out
    }
}

fn lane_of(aor: &str, lanes: usize) -> usize {
    // FNV-1a: stable and cheap; only spreads work.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in aor.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % lanes as u64) as usize
}

async fn apply_lane(
    store: &LocationStore,
    changes: Vec<LocationChange>,
    now: Timestamp,
) -> Result<(u64, u64), LocationError> {
    let (mut applied, mut ignored) = (0, 0);
    for c in &changes {
        if store.apply_replicated(c, now).await? {
            applied += 1;
        } else {
            ignored += 1;
        }
    }
    Ok((applied, ignored))
}
