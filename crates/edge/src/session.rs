//! One request forwarded by the edge: serial attempts over the planned
//! destinations with failover ([`crate::failover`]), Path and Record-Route,
//! CANCEL, Timer C, and NAT keep-alive learning from REGISTER answers.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use voxline_proxy::forward::{ForwardEdits, forwarded_request};
use voxline_proxy::loops::loop_hash;
use voxline_proxy::routing::RouteInfo;
use voxline_server::{ClientEvent, Core, ServerRequest};
use voxline_sip::{Message, Method, reason_phrase};
use voxline_transaction::{ClientTxId, Peer, TransportKind};

use crate::Inner;
use crate::failover::{Action, Event, Failover};
use crate::flow::Flow;
use crate::keepalive::registered_expiry;

/// One destination to try.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    /// Where to send.
    pub peer: Peer,
    /// The dispatcher destination (set, index), for health accounting.
    pub dest: Option<(usize, usize)>,
}

/// Everything a forwarded request needs besides the request itself.
pub(crate) struct Plan {
    pub route: RouteInfo,
    pub attempts: Vec<Attempt>,
    /// Record-Route with the token of this client flow.
    pub record_route: Option<Flow>,
    /// Path (REGISTER) with the token of this client flow.
    pub path: Option<Flow>,
    /// Learn keep-alives for this flow from the REGISTER answer.
    pub keepalive: Option<Flow>,
}

/// `<sip:token@addr[;transport=x];lr>`: one of the edge's own URIs.
fn own_uri_at(token: &str, addr: &str, transport: TransportKind) -> String {
    match transport {
        TransportKind::Udp => format!("<sip:{token}@{addr};lr>"),
        t => format!(
            "<sip:{token}@{addr};transport={};lr>",
            t.via_token().to_ascii_lowercase()
        ),
    }
}

/// The edge's URI for messages to `peer` (the listener they leave from).
fn own_uri(core: &Core, token: &str, peer: &Peer) -> String {
    own_uri_at(token, &core.sent_by(peer), peer.transport)
}

/// Record-Route values for a request that came from `incoming` and goes
/// to `outgoing`: one, or two when it changes listener or transport (the
/// incoming side first, as `forwarded_request` wants).
fn record_route_values(core: &Core, token: &str, incoming: &Peer, outgoing: &Peer) -> Vec<String> {
    let out_addr = core.sent_by(outgoing);
    let out = own_uri_at(token, &out_addr, outgoing.transport);
    match incoming.local {
        Some(l) if l.to_string() != out_addr || incoming.transport != outgoing.transport => {
            vec![own_uri_at(token, &l.to_string(), incoming.transport), out]
        }
        _ => vec![out],
    }
}

struct Session {
    inner: Arc<Inner>,
    req: ServerRequest,
    plan: Plan,
    failover: Failover,
    index: usize,
    current: Option<(u64, ClientTxId)>,
    next_tag: u64,
    sink: mpsc::UnboundedSender<(u64, ClientEvent)>,
    is_invite: bool,
    loop_hash: u32,
    silence_deadline: Option<Instant>,
    timer_c: Option<Instant>,
    final_sent: bool,
}

/// Drives one forwarded request to its end.
pub(crate) async fn run(inner: Arc<Inner>, req: ServerRequest, plan: Plan) {
    let (sink, mut events) = mpsc::unbounded_channel();
    let is_invite = req.message().method() == Some(Method::Invite);
    let mut s = Session {
        failover: Failover::new(plan.attempts.len()),
        loop_hash: loop_hash(req.message()),
        inner,
        req,
        plan,
        index: 0,
        current: None,
        next_tag: 0,
        sink,
        is_invite,
        silence_deadline: None,
        timer_c: None,
        final_sent: false,
    };
    let mut cancel: Option<oneshot::Receiver<Message>> = is_invite.then(|| s.req.cancelled());
    if !s.start_attempt() {
        return;
    }
    loop {
        let deadline = match (s.silence_deadline, s.timer_c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            ev = events.recv() => {
                let Some((tag, ev)) = ev else { return };
                if s.current.map(|(t, _)| t) != Some(tag) {
                    continue;
                }
                if s.on_event(ev) {
                    return;
                }
            }
            c = async {
                match cancel.as_mut() {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                }
            }, if cancel.is_some() => {
                cancel = None;
                if c.is_ok() {
                    s.failover.on(Event::Cancelled);
                    if let Some((_, tx)) = s.current {
                        let _ = s.req.core().cancel_request(tx);
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                if s.on_timer() {
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Sends the request to the current attempt's destination; on a send
    /// failure moves on. Returns false when the request is finished.
    fn start_attempt(&mut self) -> bool {
        loop {
            let Some(attempt) = self.plan.attempts.get(self.index).copied() else {
                self.answer(503);
                return false;
            };
            match self.send(attempt) {
                Ok(()) => return true,
                Err(e) => {
                    tracing::debug!(dest = %attempt.peer.addr, error = %e, "edge: cannot send; next destination");
                    match self.failover.on(Event::TransportError) {
                        Action::TryNext { unhealthy } => self.next(unhealthy, "transport"),
                        Action::Answer(status) => {
                            self.health_failure(attempt);
                            self.answer(status);
                            return false;
                        }
                        _ => return false,
                    }
                }
            }
        }
    }

    fn send(&mut self, attempt: Attempt) -> Result<(), String> {
        let core = self.req.core().clone();
        let signer = &self.inner.signer;
        let prepared = core.prepare_request(&attempt.peer, Some(self.loop_hash));
        let rr = match self.plan.record_route {
            Some(flow) => {
                record_route_values(&core, &signer.encode(&flow), self.req.peer(), &attempt.peer)
            }
            None => Vec::new(),
        };
        let with_path;
        let base: &Message = match self.plan.path {
            Some(flow) => {
                let path = own_uri(&core, &signer.encode(&flow), &attempt.peer);
                let bytes = self
                    .req
                    .message()
                    .edit()
                    .add_path(&path)
                    .to_bytes()
                    .map_err(|e| e.to_string())?;
                with_path = Message::parse(bytes).map_err(|e| e.to_string())?;
                &with_path
            }
            None => self.req.message(),
        };
        let bytes: Bytes = forwarded_request(
            base,
            &ForwardEdits {
                route: &self.plan.route,
                request_uri: None,
                preloaded: &[],
                via: &prepared.via,
                record_route: &rr,
                body: None,
            },
        )
        .map_err(|e| e.to_string())?;
        let tag = self.next_tag;
        self.next_tag += 1;
        let id = core
            .send_request(&prepared, bytes, attempt.peer, tag, self.sink.clone())
            .map_err(|e| e.to_string())?;
        self.current = Some((tag, id));
        self.silence_deadline = Some(Instant::now() + self.inner.failover_timeout);
        self.timer_c = None;
        Ok(())
    }

    fn attempt(&self) -> Option<Attempt> {
        self.plan.attempts.get(self.index).copied()
    }

    fn health_failure(&self, a: Attempt) {
        if let Some((s, i)) = a.dest {
            self.inner.dispatcher.failure(s, i);
        }
    }

    /// Moves to the next destination.
    fn next(&mut self, unhealthy: bool, reason: &'static str) {
        if let Some(a) = self.attempt() {
            if unhealthy {
                self.health_failure(a);
            }
            if let Some((s, _)) = a.dest
                && let Some(set) = self.inner.dispatcher.set(s)
            {
                metrics::counter!("voxline_edge_failovers_total", "set" => set.plan.name.clone(), "reason" => reason).increment(1);
            }
        }
        if let Some((_, tx)) = self.current.take() {
            let _ = self.req.core().terminate_request(tx);
        }
        self.index += 1;
        self.failover.next_attempt();
    }

    /// Handles a client transaction event; true when the session is over.
    fn on_event(&mut self, ev: ClientEvent) -> bool {
        match ev {
            ClientEvent::Response(resp) => self.on_response(*resp),
            ClientEvent::Timeout => self.on_failure(Event::Timeout, "timeout"),
            ClientEvent::TransportError => self.on_failure(Event::TransportError, "transport"),
            ClientEvent::Terminated => {
                self.current = None;
                // A 2xx to INVITE was forwarded and the transaction is gone.
                self.final_sent
            }
        }
    }

    fn on_failure(&mut self, ev: Event, reason: &'static str) -> bool {
        if self.final_sent {
            return false;
        }
        match self.failover.on(ev) {
            Action::TryNext { unhealthy } => {
                self.next(unhealthy, reason);
                !self.start_attempt()
            }
            Action::Answer(status) => {
                if let Some(a) = self.attempt() {
                    self.health_failure(a);
                }
                self.answer(status);
                true
            }
            _ => false,
        }
    }

    fn on_response(&mut self, resp: Message) -> bool {
        let Some(status) = resp.status() else {
            return false;
        };
        if self.final_sent {
            // Further 2xx to INVITE (retransmissions, other forks) go up too.
            if (200..300).contains(&status) {
                let _ = self.req.forward_response(&resp);
            }
            return false;
        }
        if status != 503
            && let Some(Attempt {
                dest: Some((s, i)), ..
            }) = self.attempt()
        {
            self.inner.dispatcher.success(s, i);
        }
        self.silence_deadline = None;
        match self.failover.on(Event::Response(status)) {
            Action::Absorb => false,
            Action::ForwardProvisional => {
                if self.is_invite {
                    self.timer_c = Some(Instant::now() + self.inner.timer_c);
                }
                let _ = self.req.forward_response(&resp);
                false
            }
            Action::ForwardFinal => {
                self.timer_c = None;
                if (200..300).contains(&status)
                    && let Some(flow) = self.plan.keepalive
                    && let Some(expires) = registered_expiry(self.req.message(), &resp)
                {
                    self.inner.learn_keepalive(flow, expires);
                }
                if let Err(e) = self.req.forward_response(&resp) {
                    tracing::debug!(error = %e, "edge: response not forwarded");
                    let _ = self
                        .req
                        .send(self.req.response(status, reason_phrase(status)).build());
                }
                self.final_sent = true;
                // An INVITE's 2xx may be retransmitted or forked: keep
                // forwarding them until the client transaction ends.
                !(self.is_invite && (200..300).contains(&status))
            }
            Action::TryNext { unhealthy } => {
                self.next(unhealthy, "503");
                !self.start_attempt()
            }
            Action::Answer(s) => {
                self.answer(s);
                true
            }
        }
    }

    /// The failover timer or Timer C fired; true when the session is over.
    fn on_timer(&mut self) -> bool {
        let now = Instant::now();
        if self.timer_c.is_some_and(|d| d <= now) {
            self.timer_c = None;
            if let Some((_, tx)) = self.current {
                let _ = self.req.core().cancel_request(tx);
            }
        }
        if self.silence_deadline.is_some_and(|d| d <= now) {
            self.silence_deadline = None;
            if !self.failover.responded() {
                return self.on_failure(Event::Silence, "silence");
            }
        }
        false
    }

    fn answer(&mut self, status: u16) {
        self.final_sent = true;
        if let Some((_, tx)) = self.current.take() {
            let _ = self.req.core().terminate_request(tx);
        }
        let reply = if status == 503 {
            metrics::counter!("voxline_edge_no_destination_total").increment(1);
            let retry = rand::random_range(5..=15u32).to_string();
            self.req
                .response(503, "Service Unavailable - no destination available")
                .header("Retry-After", &retry)
                .build()
        } else {
            self.req.response(status, reason_phrase(status)).build()
        };
        let _ = self.req.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_uris() {
        assert_eq!(
            own_uri_at("vxf1", "192.0.2.1:5060", TransportKind::Udp),
            "<sip:vxf1@192.0.2.1:5060;lr>"
        );
        assert_eq!(
            own_uri_at("vxf1", "[2001:db8::1]:5060", TransportKind::Tcp),
            "<sip:vxf1@[2001:db8::1]:5060;transport=tcp;lr>"
        );
    }
}
