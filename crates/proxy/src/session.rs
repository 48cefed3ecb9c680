//! One proxied request: its branches, their client transactions, Timer C,
//! CANCEL, serial and parallel forking and the final response (§16.6-16.10).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use voxline_server::{ClientEvent, ServerRequest};
use voxline_sip::{Message, reason_phrase};
use voxline_transaction::{ClientTxId, Peer, TransportKind};

use crate::Inner;
use crate::fork::ResponseContext;
use crate::forward::{ForwardEdits, forwarded_request};
use crate::loops::loop_hash;
use crate::routing::RouteInfo;

/// Where one branch goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The Request-URI to send (None: keep the received one).
    pub request_uri: Option<String>,
    /// Route values to preload (Path of a registration).
    pub preloaded: Vec<String>,
    /// The next hop: a URI to resolve, or a fixed address (NAT binding).
    pub hop: Hop,
    /// Preference: branches with the same q fork in parallel, lower q later.
    pub q: u16,
}

/// The next hop of a branch.
#[derive(Debug, Clone)]
pub enum Hop {
    /// Resolve this URI (RFC 3263).
    Uri(String),
    /// Send to this address (the source of a registration behind NAT).
    Peer(Peer),
}

/// The request-wide facts every branch shares.
pub struct Plan {
    /// Route processing of the received request.
    pub route: RouteInfo,
    /// Add Record-Route.
    pub record_route: bool,
    /// Targets grouped by q, best group first.
    pub groups: Vec<Vec<Target>>,
    /// A replacement body for every branch (the anchored SDP offer).
    pub body: Option<String>,
    /// What call control does with the responses.
    pub call: CallRole,
}

/// How the request relates to call control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRole {
    /// Not tracked (no call control, or a request outside calls).
    None,
    /// An initial INVITE with a dialog being set up.
    Initial,
    /// An in-dialog request (re-INVITE/UPDATE responses carry SDP answers).
    InDialog,
}

struct Branch {
    target: Target,
    /// Where the current attempt went.
    peer: Option<Peer>,
    /// Remaining addresses to fail over to (RFC 3263 §4.3).
    fallback: Vec<Peer>,
    tx: Option<ClientTxId>,
    /// Timer C deadline (INVITE only).
    timer_c: Option<Instant>,
    /// Boxed: most branches never keep one, and the session holds its
    /// branches for the transactions' lifetime.
    final_response: Option<Box<Message>>,
    got_provisional: bool,
}

/// Drives one proxied request to its end.
pub async fn run(inner: Arc<Inner>, req: ServerRequest, plan: Plan) {
    let mut s = Session::new(inner, req, plan);
    s.drive().await;
}

struct Session {
    inner: Arc<Inner>,
    req: ServerRequest,
    route: RouteInfo,
    record_route: bool,
    groups: std::vec::IntoIter<Vec<Target>>,
    body: Option<String>,
    call: CallRole,
    ctx: ResponseContext,
    branches: Vec<Branch>,
    /// Client transaction tag → branch index.
    tags: HashMap<u64, usize>,
    next_tag: u64,
    live_txs: usize,
    sink: mpsc::UnboundedSender<(u64, ClientEvent)>,
    events: mpsc::UnboundedReceiver<(u64, ClientEvent)>,
    is_invite: bool,
    loop_hash: u32,
    cancelled: bool,
    group_deadline: Option<Instant>,
    final_sent: bool,
}

impl Session {
    fn new(inner: Arc<Inner>, req: ServerRequest, plan: Plan) -> Self {
        let (sink, events) = mpsc::unbounded_channel();
        let is_invite = req.message().method_str() == Some("INVITE");
        let loop_hash = loop_hash(req.message());
        Session {
            inner,
            req,
            route: plan.route,
            record_route: plan.record_route,
            groups: plan.groups.into_iter(),
            body: plan.body,
            call: plan.call,
            ctx: ResponseContext::new(),
            branches: Vec::new(),
            tags: HashMap::new(),
            next_tag: 0,
            live_txs: 0,
            sink,
            events,
            is_invite,
            loop_hash,
            cancelled: false,
            group_deadline: None,
            final_sent: false,
        }
    }

    async fn drive(&mut self) {
        let mut cancel: Option<oneshot::Receiver<Message>> =
            self.is_invite.then(|| self.req.cancelled());
        self.start_next_group().await;
        loop {
            if self.ctx.complete() && !self.final_sent {
                if !self.ctx.stop_forking() && !self.cancelled && self.start_next_group().await {
                    continue;
                }
                self.send_final();
            }
            if self.final_sent && self.live_txs == 0 {
                return;
            }
            if self.final_sent && self.may_leave() {
                // Closed first, so that the core sees a closed channel for
                // anything that comes later; what is queued is still ours.
                self.events.close();
                while let Ok((tag, ev)) = self.events.try_recv() {
                    Box::pin(self.on_event(tag, ev)).await;
                }
                // The transactions end or linger without the session.
                let core = self.req.core();
                for id in self.branches.iter().filter_map(|b| b.tx) {
                    core.release_client(id);
                }
                return;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                ev = self.events.recv() => match ev {
                    // Boxed: the response path (relay round trip included)
                    // is big and short-lived; the session waits small.
                    Some((tag, ev)) => Box::pin(self.on_event(tag, ev)).await,
                    None => return,
                },
                c = async { cancel.as_mut().expect("guarded").await }, if cancel.is_some() => {
                    cancel = None;
                    if c.is_ok() {
                        self.cancelled = true;
                        self.cancel_pending();
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => self.on_timer(),
            }
        }
    }

    /// Whether the rest of the request's life needs no session, once the
    /// final response is sent: every branch has its final response (their
    /// transactions absorb retransmissions themselves). A late or
    /// retransmitted 2xx then passes through statelessly (the core does that
    /// for a handler that has left), with the bytes first forwarded when its
    /// SDP was rewritten ([`RewrittenAnswers`](crate::answers::RewrittenAnswers)),
    /// so a call does not keep its session for the 32 s its INVITE
    /// transactions linger.
    fn may_leave(&self) -> bool {
        self.ctx.complete()
    }

    /// Starts the next group of targets; false when there is none.
    async fn start_next_group(&mut self) -> bool {
        let Some(group) = self.groups.next() else {
            return false;
        };
        let more = self.groups.len() > 0;
        self.group_deadline =
            more.then(|| Instant::now() + self.inner.config.serial_fork_timeout());
        let width = group.len().min(self.inner.config.max_branches.max(1));
        self.branches.reserve_exact(width);
        for target in group.into_iter().take(width) {
            let i = self.ctx.add_branch();
            self.branches.push(Branch {
                target,
                peer: None,
                fallback: Vec::new(),
                tx: None,
                timer_c: None,
                final_response: None,
                got_provisional: false,
            });
            self.start_branch(i).await;
        }
        true
    }

    async fn start_branch(&mut self, i: usize) {
        let hop = self.branches[i].target.hop.clone();
        let peers = match hop {
            Hop::Peer(p) => vec![p],
            // Boxed: a DNS resolution is a large, short-lived state.
            Hop::Uri(uri) => match Box::pin(self.inner.resolver.resolve(&uri)).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "branch target does not resolve");
                    self.fail_branch(i, 404);
                    return;
                }
            },
        };
        self.branches[i].fallback = peers;
        self.send_to_next_peer(i);
    }

    /// Sends branch `i` to its next address; fails the branch when none is left.
    fn send_to_next_peer(&mut self, i: usize) {
        loop {
            if self.branches[i].fallback.is_empty() {
                self.fail_branch(i, 503);
                return;
            }
            let peer = self.branches[i].fallback.remove(0);
            match self.send_branch(i, peer) {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(dest = %peer.addr, error = %e, "branch send failed; next target")
                }
            }
        }
    }

    fn send_branch(&mut self, i: usize, peer: Peer) -> Result<(), String> {
        let core = self.req.core().clone();
        let prepared = core.prepare_request(&peer, Some(self.loop_hash));
        let rr = if self.record_route {
            self.record_route_values(&peer)
        } else {
            Vec::new()
        };
        let target = &self.branches[i].target;
        let bytes: Bytes = forwarded_request(
            self.req.message(),
            &ForwardEdits {
                route: &self.route,
                request_uri: target.request_uri.as_deref(),
                preloaded: &target.preloaded,
                via: &prepared.via,
                record_route: &rr,
                body: self.body.as_deref().map(str::as_bytes),
            },
        )
        .map_err(|e| e.to_string())?;
        let tag = self.next_tag;
        self.next_tag += 1;
        let id = core
            .send_request(&prepared, bytes, peer, tag, self.sink.clone())
            .map_err(|e| e.to_string())?;
        self.tags.insert(tag, i);
        self.live_txs += 1;
        let b = &mut self.branches[i];
        b.tx = Some(id);
        b.peer = Some(peer);
        if self.is_invite {
            b.timer_c = Some(Instant::now() + self.inner.config.timer_c());
        }
        Ok(())
    }

    /// Record-Route values for a branch to `peer`: one, or two when the
    /// request leaves on another interface or transport than it came in on
    /// (double record-routing), the incoming side first.
    fn record_route_values(&self, peer: &Peer) -> Vec<String> {
        let incoming = self.req.peer();
        let in_addr = incoming.local.map(|a| a.to_string()).unwrap_or_default();
        let out_addr = self.req.core().sent_by(peer);
        let value = |addr: &str, t: TransportKind| match t {
            TransportKind::Udp => format!("<sip:{addr};lr>"),
            other => format!(
                "<sip:{addr};transport={};lr>",
                other.via_token().to_ascii_lowercase()
            ),
        };
        let outgoing = value(&out_addr, peer.transport);
        if in_addr == out_addr && incoming.transport == peer.transport || in_addr.is_empty() {
            vec![outgoing]
        } else {
            vec![value(&in_addr, incoming.transport), outgoing]
        }
    }

    fn fail_branch(&mut self, i: usize, status: u16) {
        self.branches[i].timer_c = None;
        let v = self.ctx.on_failure(i, status);
        if v.cancel_others {
            self.cancel_pending();
        }
    }

    async fn on_event(&mut self, tag: u64, ev: ClientEvent) {
        let Some(&i) = self.tags.get(&tag) else {
            return;
        };
        match ev {
            ClientEvent::Response(resp) => self.on_response(i, *resp).await,
            ClientEvent::Timeout | ClientEvent::TransportError => {
                let status = if matches!(ev, ClientEvent::Timeout) {
                    408
                } else {
                    503
                };
                let retry = !self.branches[i].got_provisional
                    && !self.branches[i].fallback.is_empty()
                    && !self.cancelled
                    && !self.ctx.stop_forking();
                if retry {
                    self.send_to_next_peer(i);
                } else if self.ctx.pending().any(|p| p == i) {
                    self.fail_branch(i, status);
                }
            }
            ClientEvent::Terminated => {
                self.tags.remove(&tag);
                self.live_txs = self.live_txs.saturating_sub(1);
            }
        }
    }

    async fn on_response(&mut self, i: usize, resp: Message) {
        let Some(status) = resp.status() else { return };
        if status < 200 {
            self.branches[i].got_provisional = true;
            if self.is_invite {
                self.branches[i].timer_c = Some(Instant::now() + self.inner.config.timer_c());
            }
        } else {
            self.branches[i].timer_c = None;
        }
        // RFC 3263 failover: a 503 before anything else tries the next address.
        if status == 503
            && !self.branches[i].got_provisional
            && !self.branches[i].fallback.is_empty()
            && !self.cancelled
            && !self.ctx.stop_forking()
        {
            self.send_to_next_peer(i);
            return;
        }
        let verdict = self.ctx.on_response(i, status);
        if verdict.forward && !(self.final_sent && status < 200) {
            let body = self.anchored_body(i, &resp).await;
            let sent =
                voxline_server::forwarded_response(&resp, body.as_deref().map(str::as_bytes))
                    .and_then(|bytes| {
                        if (200..300).contains(&status) && body.is_some() {
                            // Kept before it leaves: the ACK may pass at once.
                            self.inner.answers.keep(
                                &resp,
                                bytes.clone(),
                                std::time::Instant::now(),
                            );
                        }
                        self.req.send(bytes)
                    });
            if let Err(e) = sent {
                tracing::debug!(error = %e, "response not forwarded");
            }
            if status >= 200 {
                self.final_sent = true;
            }
        }
        if verdict.cancel_others {
            self.cancel_pending();
        }
        if (300..700).contains(&status) {
            self.branches[i].final_response = Some(Box::new(resp));
        }
    }

    /// The SDP answer (or late offer) of a response, anchored on the relay.
    async fn anchored_body(&self, i: usize, resp: &Message) -> Option<String> {
        let calls = self.inner.calls.as_ref()?;
        let peer = self.branches.get(i)?.peer?;
        match self.call {
            CallRole::None => None,
            CallRole::Initial => {
                calls
                    .response(self.req.message(), resp, &peer, self.req.core())
                    .await
            }
            CallRole::InDialog => {
                calls
                    .in_dialog_response(self.req.message(), resp, peer.addr)
                    .await
            }
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.group_deadline.is_some_and(|d| d <= now) {
            // Serial forking: this group had its time; move on.
            self.group_deadline = None;
            self.cancel_pending();
        }
        for i in 0..self.branches.len() {
            if self.branches[i].timer_c.is_some_and(|d| d <= now) {
                self.branches[i].timer_c = None;
                let Some(tx) = self.branches[i].tx else {
                    continue;
                };
                if self.ctx.proceeding(i) {
                    // §16.8: CANCEL the branch; its 487 completes it.
                    let _ = self.req.core().cancel_request(tx);
                    // If the CANCEL is never answered, Timer B ends it.
                } else {
                    let _ = self.req.core().terminate_request(tx);
                    self.fail_branch(i, 408);
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.branches
            .iter()
            .filter_map(|b| b.timer_c)
            .chain(self.group_deadline)
            .min()
    }

    fn cancel_pending(&mut self) {
        let pending: Vec<usize> = self.ctx.pending().collect();
        for i in pending {
            if let Some(tx) = self.branches[i].tx {
                if self.is_invite {
                    let _ = self.req.core().cancel_request(tx);
                } else {
                    // Non-INVITE requests cannot be cancelled: stop waiting.
                    let _ = self.req.core().terminate_request(tx);
                    self.ctx.on_failure(i, 487);
                }
            }
        }
    }

    /// Sends the best final response upstream (or 408 if none came).
    fn send_final(&mut self) {
        self.final_sent = true;
        if self.ctx.answered() {
            return;
        }
        let best = self.ctx.best();
        if self.call == CallRole::Initial
            && let Some(calls) = self.inner.calls.clone()
        {
            let status = match best.map(|(_, s)| s) {
                Some(487) if !self.cancelled => 408,
                Some(503) => 500,
                Some(s) => s,
                None => 408,
            };
            let hangup = if self.cancelled {
                voxline_dialog::Hangup::Caller
            } else if status == 408 {
                voxline_dialog::Hangup::Proxy("timeout".into())
            } else {
                voxline_dialog::Hangup::Callee
            };
            let invite = self.req.message().clone();
            tokio::spawn(async move {
                calls
                    .fail(&invite, status, reason_phrase(status), hangup)
                    .await;
            });
        }
        if best.is_some_and(|(_, s)| s == 487) && !self.cancelled {
            // Our own CANCEL (Timer C, serial fork timeout) ended the branch:
            // for the caller the callee did not answer in time.
            let _ = self.req.respond(408);
            return;
        }
        let result = match best
            .and_then(|(i, _)| self.branches[i].final_response.as_ref().map(|r| (i, r)))
        {
            Some((_, resp)) if resp.status() == Some(503) => {
                // §16.7 step 6: a 503 would make the client avoid us too.
                self.req
                    .send(self.req.response(500, "Server Internal Error").build())
            }
            Some((_, resp)) => match self.req.forward_response(resp) {
                Ok(()) => Ok(()),
                Err(e) => {
                    // A broken downstream response (no Via of ours left,
                    // say) must not leave the caller without an answer.
                    tracing::debug!(error = %e, "best response not forwardable; answering with its status");
                    let status = resp.status().unwrap_or(500);
                    self.req
                        .send(self.req.response(status, reason_phrase(status)).build())
                }
            },
            None => {
                let status = best.map_or(408, |(_, s)| s);
                let status = if status == 503 { 500 } else { status };
                if status == 487 && !self.cancelled {
                    self.req.respond(408)
                } else {
                    self.req
                        .send(self.req.response(status, reason_phrase(status)).build())
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "final response not sent");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
