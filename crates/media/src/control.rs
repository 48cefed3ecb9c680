//! [`MediaControl`]: the proxy's media facade. It turns what the proxy
//! knows into ng commands ([`MediaPolicy`]), sends them to the right relay
//! of the [`RelaySet`] over [`NgClient`]s, fails over, and pings relays in
//! the background.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use voxline_ng::client::{DeleteReply, NgError, OfferReply};
use voxline_ng::command::{DeleteRequest, MediaRequest, QueryRequest};
use voxline_ng::reply::{CALL_NOT_FOUND, CallStats, UNKNOWN_CALL_ID};
use voxline_relay::client::NgClient;

use crate::config::MediaConfig;
use crate::error::MediaError;
use crate::policy::{AnswerParams, DeleteParams, MediaPolicy, OfferParams};
use crate::set::{FailureKind, RelayRef, RelaySet, RelayStatus, SetTiming, Success};

/// Drives a relay set for the proxy. Cheap to share behind an `Arc`; every
/// method takes `&self`. Dropping it stops the background pings.
#[derive(Debug)]
pub struct MediaControl {
    inner: Arc<Inner>,
    prober: tokio::task::JoinHandle<()>,
}

impl Drop for MediaControl {
    fn drop(&mut self) {
        self.prober.abort();
    }
}

#[derive(Debug)]
struct Inner {
    policy: MediaPolicy,
    clients: Vec<NgClient>,
    labels: Vec<String>,
    set: Mutex<RelaySet>,
    /// Wakes the prober when a relay is marked down.
    wake: Notify,
    /// In service, per relay.
    health: watch::Sender<Vec<bool>>,
}

/// A command that goes to a call's own relay.
enum Command<'a> {
    Answer(&'a MediaRequest),
    Delete(&'a DeleteRequest),
    Query(&'a QueryRequest),
}

enum Reply {
    Sdp(OfferReply),
    Deleted(DeleteReply),
    Stats(CallStats),
}

impl Command<'_> {
    fn name(&self) -> &'static str {
        match self {
            Command::Answer(_) => "answer",
            Command::Delete(_) => "delete",
            Command::Query(_) => "query",
        }
    }
}

impl MediaControl {
    /// Opens one ng client per relay of `config` (or for `local_relay`, the
    /// node's own relay, if `[media] relays` is empty) and starts the
    /// background pings. Needs a tokio runtime.
    pub async fn start(
        config: &MediaConfig,
        local_relay: Option<SocketAddr>,
    ) -> Result<MediaControl, MediaError> {
        let relays = config.effective_relays(local_relay);
        if relays.is_empty() {
            return Err(MediaError::NoRelays);
        }
        let policy = config.retransmit_policy();
        let mut clients = Vec::with_capacity(relays.len());
        for r in &relays {
            let client = NgClient::connect(r.address, policy)
                .await
                .map_err(|source| MediaError::Client {
                    relay: r.address,
                    source,
                })?;
            clients.push(client);
        }
        let labels: Vec<String> = relays.iter().map(|r| r.address.to_string()).collect();
        for l in &labels {
            metrics::gauge!("voxline_media_relay_up", "relay" => l.clone()).set(1.0);
        }
        let inner = Arc::new(Inner {
            policy: MediaPolicy::from_config(config),
            clients,
            labels,
            set: Mutex::new(RelaySet::new(
                &relays,
                SetTiming::from_config(config),
                config.max_calls,
                Instant::now(),
            )),
            wake: Notify::new(),
            health: watch::Sender::new(vec![true; relays.len()]),
        });
        let prober = tokio::spawn(run_prober(inner.clone()));
        Ok(MediaControl { inner, prober })
    }

    /// Sends an SDP offer to the call's relay, or for a new call to a relay
    /// chosen by weight, failing over to the next relay on no reply, `load
    /// limit`, `Ran out of ports` or `Parallel session limit reached`.
    /// Returns the rewritten SDP and the relay that now carries the call.
    pub async fn offer(&self, p: &OfferParams) -> Result<(String, RelayRef), MediaError> {
        let req = self.inner.policy.offer_request(p);
        let mut tried = Vec::new();
        let mut last: Option<(RelayRef, NgError)> = None;
        loop {
            let next = self
                .inner
                .set()
                .next_for_offer(&p.call_id, &tried, Instant::now());
            let Some(relay) = next else { break };
            tried.push(relay.index);
            let Some(client) = self.inner.clients.get(relay.index) else {
                break;
            };
            match client.offer(&req).await {
                Ok(reply) => {
                    let started =
                        self.inner
                            .succeeded(relay, "offer", &p.call_id, Success::Session);
                    if started {
                        metrics::counter!("voxline_media_sessions_started_total",
                            "relay" => self.inner.label(relay))
                        .increment(1);
                    }
                    if let Some(w) = &reply.warning {
                        tracing::debug!(call_id = %p.call_id, relay = %relay.address, warning = %w, "offer warning");
                    }
                    return Ok((reply.sdp, relay));
                }
                Err(e) => {
                    let kind = self.inner.failed(relay, "offer", &e);
                    if !kind.fails_over() {
                        return Err(MediaError::Relay {
                            relay: relay.address,
                            source: e,
                        });
                    }
                    metrics::counter!("voxline_media_failovers_total",
                        "relay" => self.inner.label(relay), "reason" => kind.as_str())
                    .increment(1);
                    tracing::warn!(call_id = %p.call_id, relay = %relay.address, error = %e,
                        "offer failed; trying the next relay");
                    last = Some((relay, e));
                }
            }
        }
        Err(match last {
            Some((relay, source)) => MediaError::Exhausted {
                relay: relay.address,
                source,
            },
            None if self.inner.clients.is_empty() => MediaError::NoRelays,
            None => MediaError::NoRelayInService,
        })
    }

    /// Sends an SDP answer to the relay that took the offer. Returns the
    /// rewritten SDP and that relay.
    pub async fn answer(&self, p: &AnswerParams) -> Result<(String, RelayRef), MediaError> {
        let req = self.inner.policy.answer_request(p);
        let (relay, reply) = self
            .on_call_relay(&p.call_id, Command::Answer(&req), Success::Session)
            .await?;
        match reply {
            Reply::Sdp(r) => Ok((r.sdp, relay)),
            _ => Err(MediaError::UnknownCall(p.call_id.clone())),
        }
    }

    /// Deletes the call (or one branch of it, with `via_branch`) on its
    /// relay; returns the relay's final statistics (see
    /// [`crate::MediaTotals`]). Failures are logged and counted, never
    /// returned: a call ends either way.
    pub async fn delete(&self, p: &DeleteParams<'_>) -> Option<CallStats> {
        let req = DeleteRequest {
            call_id: p.call_id.to_owned(),
            from_tag: Some(p.from_tag.to_owned()),
            to_tag: p.to_tag.map(str::to_owned),
            via_branch: p.via_branch.map(str::to_owned),
            ..DeleteRequest::default()
        };
        let what = if p.via_branch.is_some() {
            Success::DeletedBranch
        } else {
            Success::DeletedCall
        };
        match self
            .on_call_relay(p.call_id, Command::Delete(&req), what)
            .await
        {
            Ok((_, Reply::Deleted(r))) => {
                if let Some(w) = &r.warning {
                    tracing::debug!(call_id = %p.call_id, warning = %w, "delete warning");
                }
                r.stats
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(call_id = %p.call_id, error = %e, "media delete failed");
                if what == Success::DeletedCall {
                    self.inner.set().release(p.call_id, Instant::now());
                }
                None
            }
        }
    }

    /// The call's statistics from its relay (media activity for dialog
    /// inactivity checks, totals for CDRs).
    pub async fn query(&self, call_id: &str) -> Result<CallStats, MediaError> {
        let req = QueryRequest {
            call_id: call_id.to_owned(),
            ..QueryRequest::default()
        };
        match self
            .on_call_relay(call_id, Command::Query(&req), Success::Session)
            .await?
        {
            (_, Reply::Stats(s)) => Ok(s),
            _ => Err(MediaError::UnknownCall(call_id.to_owned())),
        }
    }

    /// The relay a call is bound to.
    pub fn relay_of(&self, call_id: &str) -> Option<RelayRef> {
        self.inner.set().relay_of(call_id, Instant::now())
    }

    /// Every relay's state and counters (for `/api/v1/relays`).
    pub fn relays(&self) -> Vec<RelayStatus> {
        self.inner.set().status(Instant::now())
    }

    /// Calls currently bound to a relay.
    pub fn calls(&self) -> usize {
        self.inner.set().calls()
    }

    /// Whether each relay is in service, updated whenever one is marked
    /// down or comes back (`rx.wait_for(|up| up[0]).await`).
    pub fn watch_health(&self) -> watch::Receiver<Vec<bool>> {
        self.inner.health.subscribe()
    }

    /// Sends `cmd` to the call's relay; a call nobody remembers (its binding
    /// expired or was evicted, or this node restarted) is looked for on
    /// every relay, in service first.
    async fn on_call_relay(
        &self,
        call_id: &str,
        cmd: Command<'_>,
        what: Success,
    ) -> Result<(RelayRef, Reply), MediaError> {
        let known = self.inner.set().relay_of(call_id, Instant::now());
        if let Some(relay) = known {
            return match self.inner.send(relay, &cmd).await {
                Ok(reply) => {
                    self.inner.succeeded(relay, cmd.name(), call_id, what);
                    Ok((relay, reply))
                }
                Err(source) => {
                    self.inner.failed(relay, cmd.name(), &source);
                    Err(MediaError::Relay {
                        relay: relay.address,
                        source,
                    })
                }
            };
        }
        let order = self.inner.set().search_order();
        if order.is_empty() {
            return Err(MediaError::NoRelays);
        }
        for relay in order {
            match self.inner.send(relay, &cmd).await {
                Ok(Reply::Deleted(r))
                    if r.stats.is_none() && r.warning.as_deref() == Some(CALL_NOT_FOUND) => {}
                Ok(reply) => {
                    // Remember where it was, then apply the command's effect.
                    self.inner.set().adopt(relay.index, call_id, Instant::now());
                    self.inner.succeeded(relay, cmd.name(), call_id, what);
                    return Ok((relay, reply));
                }
                Err(NgError::Remote(reason)) if reason == UNKNOWN_CALL_ID => {}
                Err(source) => {
                    let kind = self.inner.failed(relay, cmd.name(), &source);
                    if !kind.fails_over() {
                        return Err(MediaError::Relay {
                            relay: relay.address,
                            source,
                        });
                    }
                }
            }
        }
        Err(MediaError::UnknownCall(call_id.to_owned()))
    }
}

impl Inner {
    fn set(&self) -> MutexGuard<'_, RelaySet> {
        match self.set.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn label(&self, relay: RelayRef) -> String {
        self.labels.get(relay.index).cloned().unwrap_or_default()
    }

    async fn send(&self, relay: RelayRef, cmd: &Command<'_>) -> Result<Reply, NgError> {
        let client = self
            .clients
            .get(relay.index)
            .ok_or_else(|| NgError::MalformedReply("no such relay".into()))?;
        Ok(match cmd {
            Command::Answer(r) => Reply::Sdp(client.answer(r).await?),
            Command::Delete(r) => Reply::Deleted(client.delete(r).await?),
            Command::Query(r) => Reply::Stats(client.query(r).await?),
        })
    }

    fn succeeded(
        &self,
        relay: RelayRef,
        command: &'static str,
        call_id: &str,
        what: Success,
    ) -> bool {
        let (started, calls) = {
            let mut set = self.set();
            let started = set.succeeded(relay.index, call_id, what, Instant::now());
            (started, set.calls())
        };
        metrics::counter!("voxline_media_commands_total",
            "relay" => self.label(relay), "command" => command, "result" => "ok")
        .increment(1);
        metrics::gauge!("voxline_media_calls").set(calls as f64);
        started
    }

    fn failed(&self, relay: RelayRef, command: &'static str, e: &NgError) -> FailureKind {
        let kind = FailureKind::of(e);
        let marked_down = self.set().failed(relay.index, e, Instant::now());
        metrics::counter!("voxline_media_commands_total",
            "relay" => self.label(relay), "command" => command, "result" => kind.as_str())
        .increment(1);
        if marked_down {
            self.marked_down(relay, e);
        }
        kind
    }

    fn marked_down(&self, relay: RelayRef, e: &NgError) {
        tracing::warn!(relay = %relay.address, error = %e, "media relay marked down");
        metrics::gauge!("voxline_media_relay_up", "relay" => self.label(relay)).set(0.0);
        self.set_health(relay, false);
        self.wake.notify_one();
    }

    fn set_health(&self, relay: RelayRef, up: bool) {
        self.health.send_modify(|h| {
            if let Some(slot) = h.get_mut(relay.index) {
                *slot = up;
            }
        });
    }

    fn probed(&self, relay: RelayRef, result: Result<(), NgError>) {
        let changed = self
            .set()
            .probed(relay.index, result.as_ref().map(|_| ()), Instant::now());
        match (changed, &result) {
            (Some(true), _) => {
                tracing::info!(relay = %relay.address, "media relay answers ping; back in service");
                metrics::gauge!("voxline_media_relay_up", "relay" => self.label(relay)).set(1.0);
                self.set_health(relay, true);
            }
            (Some(false), Err(e)) => self.marked_down(relay, e),
            _ => {}
        }
        let result_label = match &result {
            Ok(()) => "ok",
            Err(e) => FailureKind::of(e).as_str(),
        };
        metrics::counter!("voxline_media_commands_total",
            "relay" => self.label(relay), "command" => "ping", "result" => result_label)
        .increment(1);
    }
}

/// Pings the relays the set says are due, for as long as the control lives.
async fn run_prober(inner: Arc<Inner>) {
    let mut pings: JoinSet<(RelayRef, Result<(), NgError>)> = JoinSet::new();
    loop {
        let now = Instant::now();
        let (due, next) = {
            let mut set = inner.set();
            (set.due_probes(now), set.next_probe_at())
        };
        for relay in due {
            let inner = inner.clone();
            pings.spawn(async move {
                let result = match inner.clients.get(relay.index) {
                    Some(c) => c.ping().await,
                    None => Err(NgError::MalformedReply("no such relay".into())),
                };
                (relay, result)
            });
        }
        let until = next.unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            Some(done) = pings.join_next(), if !pings.is_empty() => {
                if let Ok((relay, result)) = done {
                    inner.probed(relay, result);
                }
            }
            () = tokio::time::sleep_until(until.into()) => {}
            () = inner.wake.notified() => {}
        }
    }
}
