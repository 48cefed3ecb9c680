//! The receive pipeline and the transaction shards.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use voxline_overload::{Admission, AdmissionState};
use voxline_sip::{
    FramedMessage, Limits, Message, Method, ParseError, RequestRef, Role, ValidationPolicy,
    error_response, validate_request, validate_response,
};
use voxline_transaction::{
    ClientTxId, Incoming, Peer, ServerTxId, ShardRouter, SipMessage, TableConfig, TransactionTable,
    TxId,
};
use voxline_transport::CounterSet;
use voxline_transport::{ListenSpec, Outbox, Packet, Receiver, TransportError, TransportHandle};

use crate::ServerConfig;
use crate::client::{ClientEvent, ClientEvents, ClientSink, OutgoingRequest};
use crate::eager::{self, Capture, Deferred};
use crate::identity::LocalIdentity;
use crate::overload::{self, Protection, Queued, SourceAction};
use crate::request::ServerRequest;
use crate::routing::response_peer;
use crate::service::SipService;
use crate::shard::{Output, Shard};
use crate::stateless_tag::StatelessTags;

/// Methods the node implements (the Allow header of its OPTIONS answers).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, MESSAGE, SUBSCRIBE, NOTIFY, REFER";

/// Why the core refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The transports could not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The transaction layer refused.
    #[error("transaction layer: {0}")]
    Transaction(#[from] voxline_transaction::TransactionError),
    /// A response built by a service does not parse.
    #[error("response does not parse: {0}")]
    BadResponse(ParseError),
    /// A message could not be edited.
    #[error("cannot edit message: {0}")]
    Edit(voxline_sip::EditError),
    /// The core is not attached to its transports yet, or stopped.
    #[error("the SIP core is not running")]
    NotRunning,
}

/// The SIP core shared by the transports, the timer tasks and the services.
pub struct Core {
    shards: Vec<Shard>,
    router: ShardRouter,
    service: Arc<dyn SipService>,
    transport: OnceLock<TransportHandle>,
    identity: OnceLock<LocalIdentity>,
    base_identity: LocalIdentity,
    limits: Limits,
    supported: Vec<String>,
    supported_refs: Vec<&'static str>,
    server_header: String,
    epoch: Instant,
    next_shard: AtomicUsize,
    stopped: AtomicBool,
    draining: AtomicBool,
    tags: StatelessTags,
    protection: Option<Protection>,
}

impl Core {
    pub(crate) fn new(config: &ServerConfig, service: Arc<dyn SipService>) -> Arc<Self> {
        let count = if config.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.shards
        };
        let router = ShardRouter::new(count);
        let table_config = TableConfig {
            timers: config.timers.trying(config.trying),
            max_transactions: (config.max_transactions / count).max(1),
        };
        let shards = (0..count)
            .map(|i| {
                Shard::new(TransactionTable::with_shard(
                    table_config,
                    router.clone(),
                    i,
                ))
            })
            .collect();
        // Option tags live as long as the process; leak them once so the
        // validation policy can borrow them without a lock.
        let supported_refs = config
            .supported
            .iter()
            .map(|s| &*Box::leak(s.clone().into_boxed_str()))
            .collect();
        Arc::new(Core {
            shards,
            router,
            service,
            transport: OnceLock::new(),
            identity: OnceLock::new(),
            base_identity: config.identity.clone(),
            limits: Limits {
                max_message_size: config.transport.max_message_size,
                ..Limits::DEFAULT
            },
            supported: config.supported.clone(),
            supported_refs,
            server_header: config.server_header.clone(),
            epoch: Instant::now(),
            next_shard: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            tags: StatelessTags::new(),
            protection: Protection::new(&config.overload, Instant::now()),
        })
    }

    /// Connects the core to its running transports and starts the timers.
    pub(crate) fn attach(self: &Arc<Self>, handle: TransportHandle, locals: &[ListenSpec]) {
        let _ = self.transport.set(handle);
        let _ = self.identity.set(
            self.base_identity
                .clone()
                .with_listeners(locals.iter().map(|l| l.address)),
        );
        for i in 0..self.shards.len() {
            tokio::spawn(run_timers(self.clone(), i));
        }
        if self.protection.is_some() {
            let core = self.clone();
            tokio::spawn(async move {
                if let Some(p) = &core.protection {
                    overload::run_monitor(p, || core.stopped.load(Ordering::Acquire)).await;
                }
            });
        }
    }

    /// Overload control's state (`None` when it is off).
    pub fn overload_state(&self) -> Option<AdmissionState> {
        self.protection.as_ref().and_then(Protection::state)
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        for s in &self.shards {
            s.wake.notify_one();
        }
    }

    /// Drain mode: new out-of-dialog requests (and OPTIONS pings, so load
    /// balancers take the node out) get 503; dialogs in progress go on.
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
        tracing::warn!(draining = on, "drain mode changed");
        metrics::gauge!("voxline_draining").set(if on { 1.0 } else { 0.0 });
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Who this node is (domains, names, listeners).
    pub fn identity(&self) -> &LocalIdentity {
        self.identity.get().unwrap_or(&self.base_identity)
    }

    /// The transport handle (for stateless sends).
    pub fn transport(&self) -> Option<&TransportHandle> {
        self.transport.get()
    }

    /// The value of the Server / User-Agent header.
    pub fn server_header(&self) -> &str {
        &self.server_header
    }

    /// Option tags the node supports.
    pub fn supported(&self) -> &[String] {
        &self.supported
    }

    /// Live transactions across all shards (a gauge).
    pub fn transaction_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().table.len()).sum()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    // ----- receive path -------------------------------------------------

    /// The shard of a received message's transaction. With one shard the
    /// key is not read here (the table reads it and reports malformed ones).
    fn shard_for(&self, msg: &Message) -> Result<usize, voxline_transaction::MessageError> {
        if self.shards.len() == 1 {
            return Ok(0);
        }
        msg.info().map(|info| self.router.shard_of(&info))
    }

    fn on_request(self: &Arc<Self>, mut msg: Message, peer: Peer, out: &mut Outbox<'_>) {
        let method = msg.method();
        if method == Some(Method::Ack) && msg.to_tag().is_some_and(|t| self.tags.is_ours(t)) {
            // Before validation: it is dropped either way. Most such ACKs
            // end before framing (`on_packet`); this is the rest (a folded
            // To header, a stream).
            self.absorb_stateless_ack(&peer, None);
            return;
        }
        if let Some(m) = &method {
            REQUESTS.increment(m.label_index(), m.label());
        }
        let policy = ValidationPolicy {
            role: Role::Proxy,
            supported: &self.supported_refs,
            ..ValidationPolicy::default()
        };
        if let Err(rejection) = validate_request(&msg, &policy) {
            metrics::counter!("voxline_sip_rejected_total", "status" => rejection.status.to_string()).increment(1);
            if method != Some(Method::Ack) {
                let reply = rejection.response(&msg, Some(&self.stateless_tag(&msg)));
                self.send_stateless(out, &response_peer(&msg, &peer), reply);
            }
            return;
        }
        stamp_received(&mut msg, &peer);
        if self.draining.load(Ordering::Relaxed) && refused_while_draining(&msg) {
            metrics::counter!("voxline_sip_drain_rejected_total").increment(1);
            let retry = rand::random_range(10..=60u32).to_string();
            let reply =
                voxline_sip::ResponseBuilder::new(&msg, 503, "Service Unavailable - draining")
                    .to_tag(&self.stateless_tag(&msg))
                    .header("Retry-After", &retry)
                    .build();
            self.send_stateless(out, &response_peer(&msg, &peer), reply);
            return;
        }
        if method == Some(Method::Options) && self.is_for_me(&msg) {
            self.answer_options(&msg, &peer, out);
            return;
        }
        if method != Some(Method::Ack)
            && method != Some(Method::Cancel)
            && self.service.stateless(self, &msg)
        {
            voxline_transport::counter_once!("voxline_sip_stateless_requests_total").increment(1);
            self.service
                .on_request(ServerRequest::new(self.clone(), None, msg, peer));
            return;
        }
        let info_shard = match self.shard_for(&msg) {
            Ok(shard) => shard,
            Err(e) => {
                if method != Some(Method::Ack) {
                    let reply = self.stateless_response(&msg, 400, &format!("Bad Request - {e}"));
                    self.send_stateless(out, &response_peer(&msg, &peer), reply);
                }
                return;
            }
        };
        let from = response_peer(&msg, &peer);
        let now = self.now();
        let shard = &self.shards[info_shard];
        let mut state = shard.lock();
        let incoming = state.table.handle_incoming(now, msg, from);
        let mut cancel_for = None;
        if let Incoming::Cancel { id, invite, .. } = &incoming {
            let status = if invite.is_some() { 200 } else { 481 };
            if let Some(reply) = state
                .table
                .request(voxline_transaction::TxId::Server(*id))
                .map(|req| req.build_response(status))
            {
                let _ = state.table.send_response(now, *id, reply);
            }
            if let Some(invite) = invite {
                match state.cancels.remove(invite) {
                    Some(watch) => cancel_for = Some(watch),
                    None => {
                        // Nobody handles the CANCEL: end the INVITE with 487.
                        if let Some(reply) = state
                            .table
                            .request(voxline_transaction::TxId::Server(*invite))
                            .map(|req| req.build_response(487))
                        {
                            let _ = state.table.send_response(now, *invite, reply);
                        }
                    }
                }
            }
        }
        let output = state.drain();
        drop(state);
        self.finish(info_shard, output);
        match incoming {
            Incoming::Request { id, request } => {
                self.service
                    .on_request(ServerRequest::new(self.clone(), Some(id), request, peer));
            }
            Incoming::Cancel { request, .. } => {
                if let Some(watch) = cancel_for {
                    let _ = watch.send(request);
                }
            }
            Incoming::Ack { request, .. } => self.service.on_ack(self, request, peer),
            Incoming::Refused { request } => {
                metrics::counter!("voxline_sip_overload_rejected_total").increment(1);
                let retry = rand::random_range(5..=15u32).to_string();
                let reply = voxline_sip::ResponseBuilder::new(&request, 503, "Service Unavailable")
                    .to_tag(&self.stateless_tag(&request))
                    .header("Retry-After", &retry)
                    .build();
                self.send_stateless(out, &from, reply);
            }
            Incoming::Malformed { message, error } => {
                if message.method() != Some(Method::Ack) {
                    let reply =
                        self.stateless_response(&message, 400, &format!("Bad Request - {error}"));
                    self.send_stateless(out, &from, reply);
                }
            }
            Incoming::Absorbed(_) => {
                voxline_transport::counter_once!("voxline_sip_retransmissions_absorbed_total")
                    .increment(1);
            }
            Incoming::Response { .. } | Incoming::Stray(_) => {}
        }
    }

    fn on_response(self: &Arc<Self>, msg: Message, peer: Peer) {
        if let Some(status) = msg.status() {
            RESPONSES_RECEIVED.increment(class_index(status), status_class(status));
        }
        if validate_response(&msg).is_err() {
            metrics::counter!("voxline_sip_dropped_total", "reason" => "bad_response").increment(1);
            return;
        }
        let shard_index = match self.shard_for(&msg) {
            Ok(shard) => shard,
            Err(_) => {
                metrics::counter!("voxline_sip_dropped_total", "reason" => "bad_response")
                    .increment(1);
                return;
            }
        };
        let now = self.now();
        let shard = &self.shards[shard_index];
        let mut state = shard.lock();
        let incoming = state.table.handle_incoming(now, msg, peer);
        let mut stray = None;
        match incoming {
            Incoming::Response { id, response } => {
                let undelivered = match state.clients.get(&id) {
                    Some((tag, tx)) => {
                        match tx.send((*tag, ClientEvent::Response(Box::new(response)))) {
                            Ok(()) => None,
                            Err(returned) => {
                                state.clients.remove(&id);
                                match returned.0 {
                                    (_, ClientEvent::Response(response)) => Some(*response),
                                    _ => None,
                                }
                            }
                        }
                    }
                    None => Some(response),
                };
                if let Some(response) = undelivered
                    && response.status().is_some_and(|s| (200..300).contains(&s))
                {
                    // The handler has left (it had nothing more to add): a
                    // retransmitted or forked 2xx passes through statelessly
                    // (RFC 3261 §16.7 step 10).
                    stray = Some(response);
                }
            }
            Incoming::Stray(response) => stray = Some(response),
            _ => {}
        }
        let output = state.drain();
        drop(state);
        self.finish(shard_index, output);
        if let Some(response) = stray {
            self.service.on_stray_response(self, response, peer);
        }
    }

    /// Whether a request is addressed to this node itself (not to a user):
    /// a SIP Request-URI without user part naming one of our hosts, or one
    /// of our domains without a port (`OPTIONS sip:example.com` asks the
    /// domain's server, wherever DNS SRV put it).
    fn is_for_me(&self, msg: &Message) -> bool {
        match msg.request_uri() {
            Ok(uri) => uri.as_sip().is_some_and(|u| {
                let identity = self.identity();
                u.user.is_none()
                    && (identity.is_self(u)
                        || (u.port.is_none() && identity.is_local_domain(u.host_str)))
            }),
            Err(_) => false,
        }
    }

    /// The stateless answer to an OPTIONS addressed to the node (RFC 3261
    /// §11.2): capabilities, no transaction (a retransmission gets the same
    /// answer again).
    fn answer_options(&self, msg: &Message, peer: &Peer, out: &mut Outbox<'_>) {
        let tag = self.stateless_tag(msg);
        let supported = self.supported.join(", ");
        let reply = voxline_sip::ResponseBuilder::new(msg, 200, "OK")
            .to_tag(&tag)
            .header("Allow", ALLOW)
            .header("Accept", "application/sdp")
            .header("Supported", &supported)
            .header("Server", &self.server_header)
            .build();
        voxline_transport::counter_once!("voxline_sip_options_answered_total").increment(1);
        self.send_stateless(out, &response_peer(msg, peer), reply);
    }

    /// Ends the ACK to a final response this node gave statelessly (a 503
    /// under overload, a 420...): the ACK of a non-2xx is hop by hop (RFC
    /// 3261 §17.1.1.3) and must not be routed on to a callee that never saw
    /// the INVITE. Under overload there is one per refused INVITE, so it
    /// is refusal work; its handling started at `started` (when known).
    fn absorb_stateless_ack(&self, peer: &Peer, started: Option<Instant>) {
        voxline_transport::counter_once!("voxline_sip_stateless_acks_absorbed_total").increment(1);
        if let Some(p) = &self.protection {
            p.charge_refusal(peer, started);
        }
    }

    /// A To tag derived from the request, so retransmissions of a request
    /// answered statelessly get the same tag.
    fn stateless_tag<'a>(&self, request: impl Into<RequestRef<'a>>) -> String {
        self.tags.tag_for(request)
    }

    fn stateless_response(&self, msg: &Message, status: u16, reason: &str) -> Bytes {
        let tag = self.stateless_tag(msg);
        voxline_sip::ResponseBuilder::new(msg, status, reason)
            .to_tag(&tag)
            .header("Server", &self.server_header)
            .build()
    }

    /// The stateless 503 of overload protection (no validation, no
    /// transaction: it must be cheap).
    fn reject_overloaded(
        &self,
        request: RequestRef<'_>,
        peer: &Peer,
        retry_after: u32,
        out: &mut Outbox<'_>,
    ) {
        let mut digits = [0u8; 10];
        let retry = decimal(retry_after, &mut digits);
        let target = response_peer(request, peer);
        let reply = voxline_sip::ResponseBuilder::new(request, 503, "Service Unavailable")
            .to_tag(&self.stateless_tag(request))
            .header("Retry-After", retry)
            .build();
        self.send_stateless(out, &target, reply);
    }

    /// Overload admission of a received message: `true` when it was a
    /// request overload control refused (with a stateless 503).
    fn refused_overloaded(
        &self,
        p: &Protection,
        request: RequestRef<'_>,
        peer: &Peer,
        waited: Option<Duration>,
        now: Instant,
        out: &mut Outbox<'_>,
    ) -> bool {
        if request.method_str().is_none() {
            return false;
        }
        let Admission::Reject { retry_after } = p.admit(request, waited, now) else {
            return false;
        };
        voxline_transport::counter_once!("voxline_overload_rejected_total", "reason" => "overload")
            .increment(1);
        self.reject_overloaded(request, peer, retry_after, out);
        p.charge_refusal(peer, Some(now));
        true
    }

    fn send_stateless(&self, out: &mut Outbox<'_>, target: &Peer, data: Bytes) {
        voxline_transport::counter_once!("voxline_sip_responses_sent_total", "kind" => "stateless")
            .increment(1);
        if let Err(e) = out.send(target, data) {
            tracing::debug!(dest = %target.addr, error = %e, "stateless reply not sent");
        }
    }

    // ----- transactions from services -----------------------------------

    /// Sends a final or provisional response on a server transaction.
    pub(crate) fn send_response(&self, id: ServerTxId, msg: Message) -> Result<(), ServerError> {
        if let Some(status) = msg.status() {
            RESPONSES_SENT.increment(class_index(status), status_class(status));
        }
        let is_final = msg.status().is_some_and(|s| s >= 200);
        let shard = self.shards.get(id.shard()).ok_or(ServerError::NotRunning)?;
        let mut state = shard.lock();
        let result = state.table.send_response(self.now(), id, msg);
        if is_final && result.is_ok() {
            // A CANCEL after the final response changes nothing (RFC 3261
            // §9.2): the watch need not live as long as the transaction.
            state.cancels.remove(&id);
        }
        let output = state.drain();
        drop(state);
        self.finish(id.shard(), output);
        result.map_err(ServerError::from)
    }

    /// Registers interest in a CANCEL for the INVITE server transaction `id`.
    pub(crate) fn watch_cancel(&self, id: ServerTxId) -> oneshot::Receiver<Message> {
        let (tx, rx) = oneshot::channel();
        if let Some(shard) = self.shards.get(id.shard()) {
            shard.lock().cancels.insert(id, tx);
        }
        rx
    }

    /// Picks a shard for a new client transaction and makes its branch and
    /// the node's Via for `target`. `loop_hash` (8 hex digits in the
    /// branch) lets a proxy recognise its own requests coming back.
    pub fn prepare_request(&self, target: &Peer, loop_hash: Option<u32>) -> OutgoingRequest {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        // Written digit by digit: this runs for every forwarded request,
        // and the formatting machinery cost more than the rest of it.
        let mut unique = String::with_capacity(20);
        let random = rand::random::<u64>();
        match loop_hash {
            Some(h) => {
                push_hex(&mut unique, u64::from(h), 8);
                push_hex(&mut unique, random, 12);
            }
            None => push_hex(&mut unique, random, 16),
        }
        let branch = self.router.branch(shard, unique);
        let sent_by = self.sent_by(target);
        let token = target.transport.via_token();
        let mut via = String::with_capacity(32 + token.len() + sent_by.len() + branch.len());
        for part in [
            "SIP/2.0/", token, " ", &sent_by, ";branch=", &branch, ";rport",
        ] {
            via.push_str(part);
        }
        OutgoingRequest { shard, branch, via }
    }

    /// The `host:port` this node writes into Via/Record-Route for messages
    /// sent to `target` (the listener they leave from).
    pub fn sent_by(&self, target: &Peer) -> String {
        let Some(addr) = self.transport.get().and_then(|t| t.local_addr_for(target)) else {
            return "0.0.0.0".to_owned();
        };
        // A node has a listener or two: the last one's text is kept per
        // thread instead of formatting the address for every request.
        thread_local! {
            static LAST: std::cell::RefCell<Option<(std::net::SocketAddr, String)>> =
                const { std::cell::RefCell::new(None) };
        }
        LAST.with_borrow_mut(|last| match last {
            Some((a, text)) if *a == addr => text.clone(),
            _ => {
                let text = addr.to_string();
                *last = Some((addr, text.clone()));
                text
            }
        })
    }

    /// Starts a client transaction for `request` (which must carry
    /// `prepared.via` on top) towards `target`. Its events go to `sink`,
    /// tagged with `tag`.
    pub fn send_request(
        &self,
        prepared: &OutgoingRequest,
        request: Bytes,
        target: Peer,
        tag: u64,
        sink: ClientSink,
    ) -> Result<ClientTxId, ServerError> {
        let msg = Message::parse(request).map_err(ServerError::BadResponse)?;
        if let Some(m) = msg.method() {
            REQUESTS_SENT.increment(m.label_index(), m.label());
        }
        let shard = self
            .shards
            .get(prepared.shard)
            .ok_or(ServerError::NotRunning)?;
        let mut state = shard.lock();
        let id = state.table.send_request(self.now(), msg, target)?;
        state.clients.insert(id, (tag, sink));
        let output = state.drain();
        drop(state);
        self.finish(prepared.shard, output);
        Ok(id)
    }

    /// Client transaction `id`'s handler has left. A transaction that
    /// still absorbs retransmissions (a non-2xx final answered by its ACK)
    /// lives on without the handler's channel. An INVITE accepted by a 2xx
    /// ends now: its only remaining task (RFC 6026 Timer M, 32 s) is to
    /// pass further 2xx up, and with the handler gone they pass through
    /// statelessly with or without it (RFC 3261 §16.7 step 10).
    pub fn release_client(&self, id: ClientTxId) {
        let Some(shard) = self.shards.get(id.shard()) else {
            return;
        };
        let mut state = shard.lock();
        state.clients.remove(&id);
        if state.table.client_state(id) == Some(voxline_transaction::ClientState::Accepted) {
            let _ = state.table.terminate(self.now(), id.into());
            let output = state.drain();
            drop(state);
            self.finish(id.shard(), output);
        }
    }

    /// [`send_request`](Self::send_request) with a channel of its own.
    pub fn send_request_alone(
        &self,
        prepared: &OutgoingRequest,
        request: Bytes,
        target: Peer,
    ) -> Result<(ClientTxId, ClientEvents), ServerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.send_request(prepared, request, target, 0, tx)?;
        Ok((id, rx))
    }

    /// Cancels a pending INVITE client transaction (RFC 3261 §9.1): the
    /// CANCEL goes out once a provisional response has arrived.
    pub fn cancel_request(&self, id: ClientTxId) -> Result<(), ServerError> {
        let shard = self.shards.get(id.shard()).ok_or(ServerError::NotRunning)?;
        let mut state = shard.lock();
        let result = state.table.cancel_client(self.now(), id);
        let output = state.drain();
        drop(state);
        self.finish(id.shard(), output);
        result.map(|_| ()).map_err(ServerError::from)
    }

    /// Abandons a client transaction (Timer C without a provisional, §16.8).
    pub fn terminate_request(&self, id: ClientTxId) -> Result<(), ServerError> {
        let shard = self.shards.get(id.shard()).ok_or(ServerError::NotRunning)?;
        let mut state = shard.lock();
        let result = state.table.terminate(self.now(), id.into());
        let output = state.drain();
        drop(state);
        self.finish(id.shard(), output);
        result.map_err(ServerError::from)
    }

    /// Sends the response of a request handled statelessly, where RFC 3261
    /// §18.2.2 says (no transaction keeps it).
    pub(crate) fn send_stateless_reply(
        &self,
        request: &Message,
        peer: &Peer,
        response: Bytes,
    ) -> Result<(), ServerError> {
        voxline_transport::counter_once!("voxline_sip_responses_sent_total", "kind" => "stateless")
            .increment(1);
        self.send_stateless_to(&response_peer(request, peer), response)
    }

    /// Sends bytes outside any transaction (ACK for 2xx, stateless forwarding).
    pub fn send_stateless_to(&self, target: &Peer, data: Bytes) -> Result<(), ServerError> {
        let t = self.transport.get().ok_or(ServerError::NotRunning)?;
        let item = Deferred {
            tx: None,
            dest: *target,
            data,
        };
        match eager::try_capture(item) {
            None => Ok(()),
            Some(item) => t.send(&item.dest, item.data).map_err(ServerError::from),
        }
    }

    /// Sends what a table operation produced and re-arms the shard's timer.
    fn finish(&self, shard_index: usize, output: Output) {
        let Some(shard) = self.shards.get(shard_index) else {
            return;
        };
        shard.maybe_wake(output.deadline, self.epoch);
        if output.transmits.is_empty() {
            return;
        }
        let Some(transport) = self.transport.get() else {
            return;
        };
        let mut failed = Vec::new();
        for t in output.transmits {
            let item = Deferred {
                tx: Some((shard_index, t.tx)),
                dest: t.dest,
                data: t.msg.to_bytes(),
            };
            // Inside a receive batch, the send joins the batch's replies.
            let Some(item) = eager::try_capture(item) else {
                continue;
            };
            if let Err(e) = transport.send(&item.dest, item.data) {
                tracing::debug!(dest = %item.dest.addr, error = %e, "transaction transmit failed");
                failed.push(t.tx);
            }
        }
        self.transport_failed(shard_index, failed);
    }

    /// Reports sends that failed to their transactions.
    fn transport_failed(&self, shard_index: usize, failed: Vec<TxId>) {
        if failed.is_empty() {
            return;
        }
        let Some(shard) = self.shards.get(shard_index) else {
            return;
        };
        let mut state = shard.lock();
        for tx in failed {
            let _ = state.table.transport_error(self.now(), tx);
        }
        let output = state.drain();
        drop(state);
        // Transport errors produce events, not transmits; no recursion needed.
        shard.maybe_wake(output.deadline, self.epoch);
    }

    /// Queues what was captured while a received message was handled on
    /// the receive batch's outbox.
    fn flush_captured(&self, captured: Vec<Deferred>, out: &mut Outbox<'_>) {
        for item in captured {
            if let Err(e) = out.send(&item.dest, item.data) {
                tracing::debug!(dest = %item.dest.addr, error = %e, "transmit failed");
                if let Some((shard, tx)) = item.tx {
                    self.transport_failed(shard, vec![tx]);
                }
            }
        }
    }

    /// Fires due timers of one shard.
    fn fire_timers(&self, shard_index: usize) -> Option<Instant> {
        let shard = self.shards.get(shard_index)?;
        let mut state = shard.lock();
        state.table.handle_timeout(self.now());
        let output = state.drain();
        let deadline = output.deadline;
        shard
            .size_gauge
            .get_or_init(
                || metrics::gauge!("voxline_sip_transactions", "shard" => shard_index.to_string()),
            )
            .set(state.table.len() as f64);
        drop(state);
        self.finish(shard_index, output);
        deadline
    }
}

/// The transports' view of the core.
pub(crate) struct CoreReceiver(pub(crate) Arc<Core>);

impl Receiver for CoreReceiver {
    fn on_packet(&self, packet: Packet, out: &mut Outbox<'_>) {
        let core = &self.0;
        let Packet {
            data,
            peer,
            parsed,
            received_at,
            read_at,
        } = packet;
        // Overload protection first: it must cost less than the work it
        // saves.
        let guard = core.protection.as_ref().map(|p| (p, read_at.mono));
        let mut waited = None;
        if let Some((p, now)) = guard {
            match p.observe(&data, received_at, read_at) {
                Queued::Kept(w) => waited = w,
                Queued::Stale => return,
            }
            match p.check_source(&data, &peer, now) {
                SourceAction::Pass => {}
                SourceAction::Drop => return,
                SourceAction::Reject(retry_after) => {
                    if let Ok(request) = FramedMessage::frame(data, &core.limits)
                        && request.is_request()
                        && request.method_str() != Some("ACK")
                    {
                        metrics::counter!("voxline_overload_rejected_total", "reason" => "banned")
                            .increment(1);
                        core.reject_overloaded((&request).into(), &peer, retry_after, out);
                    }
                    return;
                }
            }
        }
        // The ACK to a stateless answer (one per refused INVITE under
        // overload) ends here, read from its To tag without framing it.
        if parsed.is_none()
            && let Some(tag) = voxline_sip::peek_ack_to_tag(&data)
            && core.tags.is_ours(tag)
        {
            core.absorb_stateless_ack(&peer, guard.map(|(_, now)| now));
            return;
        }
        let msg = match parsed {
            Some(m) => {
                if let Some((p, now)) = guard
                    && core.refused_overloaded(p, (&m).into(), &peer, waited, now, out)
                {
                    return;
                }
                m
            }
            None => match FramedMessage::frame(data.clone(), &core.limits) {
                Ok(framed) => {
                    // A datagram is sorted, and refused, while only framed:
                    // a refused request never becomes a message.
                    if let Some((p, now)) = guard
                        && core.refused_overloaded(p, (&framed).into(), &peer, waited, now, out)
                    {
                        return;
                    }
                    framed.into_message()
                }
                Err(e) => {
                    metrics::counter!("voxline_sip_dropped_total", "reason" => "unparseable")
                        .increment(1);
                    if let Some(reply) = error_response(&data, &e, None) {
                        let _ = out.send(&peer, reply);
                    }
                    return;
                }
            },
        };
        // What the handlers send while this message is handled leaves with
        // the batch's other replies.
        let capture = Capture::begin();
        if msg.is_request() {
            core.on_request(msg, peer, out);
        } else {
            core.on_response(msg, peer);
        }
        core.flush_captured(capture.finish(), out);
    }

    fn batch_begin(&self) {
        self.0.service.batch_begin();
    }

    fn batch_commit(&self) -> bool {
        self.0.service.batch_commit()
    }

    fn wants_batch_cost(&self) -> bool {
        self.0
            .protection
            .as_ref()
            .is_some_and(Protection::wants_batch_cost)
    }

    fn on_batch_end(&self, datagrams: usize, cpu: Duration) {
        if let Some(p) = &self.0.protection {
            p.batch_end(datagrams, cpu);
        }
    }
}

/// What drain mode refuses: requests that would start something new. ACK,
/// CANCEL and in-dialog requests (To tag present) still pass.
fn refused_while_draining(msg: &Message) -> bool {
    !matches!(msg.method(), Some(Method::Ack | Method::Cancel)) && msg.to_tag().is_none()
}

/// Notes the `received`/`rport` values of a received request's top Via
/// (RFC 3261 §18.2.1, RFC 3581 §4): every response and every forwarded
/// copy writes them ([`voxline_sip::ReceivedStamp`]); the request's bytes
/// stay as received.
fn stamp_received(msg: &mut Message, peer: &Peer) {
    let (received, rport) = match msg.top_via() {
        Ok(via) => crate::routing::via_received(&via, peer),
        Err(_) => return,
    };
    let stamp = voxline_sip::ReceivedStamp::new(received, rport);
    msg.set_received(stamp);
}

async fn run_timers(core: Arc<Core>, shard_index: usize) {
    let Some(shard) = core.shards.get(shard_index) else {
        return;
    };
    loop {
        if core.stopped.load(Ordering::Acquire) {
            return;
        }
        let deadline = core.fire_timers(shard_index);
        shard.arm(deadline, core.epoch);
        match deadline {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(d)) => {}
                    _ = shard.wake.notified() => {}
                }
            }
            None => shard.wake.notified().await,
        }
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

static REQUESTS: CounterSet<{ Method::LABELS.len() }> =
    CounterSet::new("voxline_sip_requests_total", "method");
static REQUESTS_SENT: CounterSet<{ Method::LABELS.len() }> =
    CounterSet::new("voxline_sip_requests_sent_total", "method");
static RESPONSES_SENT: CounterSet<6> = CounterSet::new("voxline_sip_responses_sent_total", "class");
static RESPONSES_RECEIVED: CounterSet<6> =
    CounterSet::new("voxline_sip_responses_received_total", "class");

/// The position of [`status_class`]'s value among its six.
fn class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 6) - 1)
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

/// Appends the low `digits` hex digits of `value` (lower case).
fn push_hex(out: &mut String, value: u64, digits: u32) {
    for i in (0..digits).rev() {
        let d = (value >> (4 * i)) & 0xf;
        out.push(char::from_digit(d as u32, 16).unwrap_or('0'));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_digits_are_the_low_ones_zero_padded() {
        let mut s = String::new();
        super::push_hex(&mut s, 0xab, 4);
        super::push_hex(&mut s, 0x1234_5678_9abc_def0, 12);
        assert_eq!(s, "00ab56789abcdef0");
    }
}
