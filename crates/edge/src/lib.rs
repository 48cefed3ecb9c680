//! The edge role: the public SIP entry in front of registrar/proxy nodes.
//!
//! * **Dispatching** ([`dispatcher`]): requests from clients go to a
//!   dispatcher set, chosen per algorithm (hash over the AOR, following
//!   `[partitions]`; hash over the Call-ID; round robin; weighted). The
//!   edge forwards statefully and fails over to the next destination on a
//!   timeout, a 503, a transport error or silence beyond
//!   `failover_timeout_ms` ([`failover`]): serial forking at the edge.
//! * **Health** ([`health`]): destinations are probed with OPTIONS; their
//!   state (active / probing / inactive) is in the admin API and metrics.
//! * **Path and Record-Route** ([`flow`], [`route`]): REGISTER gets a Path
//!   entry and dialog-creating requests a Record-Route entry whose user
//!   part is a signed token of the client's flow (its address as seen
//!   after NAT, transport, our listener). Requests that come back through
//!   that entry go to the client over the same flow.
//! * **NAT keep-alives** ([`keepalive`]): flows of registered clients
//!   behind NAT (or all) get an OPTIONS or CRLFCRLF every interval.
//!
//! The edge keeps no registration or dialog state: everything it needs to
//! route a request back is in the request's Route set, so an edge restart
//! loses nothing but keep-alive schedules (rebuilt by the next REGISTERs).

pub mod config;
pub mod dispatcher;
pub mod failover;
pub mod flow;
pub mod health;
pub mod keepalive;
pub mod route;
mod session;

pub use config::{
    Algorithm, DestinationConfig, DispatcherConfig, EdgeConfig, KeepaliveMethod, KeepaliveTargets,
    SetConfig,
};
pub use dispatcher::{DestinationView, Dispatcher, DispatcherError, Key, SetView};
pub use flow::{Flow, FlowSigner};
pub use health::State;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use voxline_partition::PartitionMap;
use voxline_proxy::loops;
use voxline_proxy::resolve::Resolver;
use voxline_proxy::routing::{creates_dialog, preprocess};
use voxline_server::{ClientEvent, Core, ServerRequest};
use voxline_sip::{Host, Message, Method, RequestBuilder, Uri, check_max_forwards};
use voxline_transaction::{Peer, TransportKind};

use crate::keepalive::{KeepaliveTable, wants_keepalive};
use crate::route::{Next, next_hop, popped_flow};
use crate::session::{Attempt, Plan};

/// Why the edge cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The dispatcher sets are unusable.
    #[error(transparent)]
    Dispatcher(#[from] DispatcherError),
    /// `[edge] set` or `register_set` names no set.
    #[error("dispatcher set {0:?} is not defined in [dispatcher]")]
    UnknownSet(String),
    /// The flow secret file cannot be read or written.
    #[error("edge flow secret {path}: {source}")]
    Secret {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Shared state of the edge.
pub(crate) struct Inner {
    config: EdgeConfig,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) signer: FlowSigner,
    resolver: Resolver,
    set: usize,
    register_set: usize,
    inside: Vec<Peer>,
    keepalives: Mutex<KeepaliveTable>,
    epoch: Instant,
    pub(crate) failover_timeout: Duration,
    pub(crate) timer_c: Duration,
    probe_interval: Duration,
    probe_timeout: Duration,
    probe_ok_codes: Vec<u16>,
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn learn_keepalive(&self, flow: Flow, expires: u32) {
        if self.config.keepalive_interval_secs == 0 {
            return;
        }
        let now = self.now_ms();
        let mut t = self.keepalives.lock().unwrap_or_else(|e| e.into_inner());
        t.on_registered(flow, expires, now);
        metrics::gauge!("voxline_edge_keepalive_flows").set(t.len() as f64);
    }
}

/// The edge of a node. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

/// The admin view of the edge (`GET /api/v1/dispatcher`).
#[derive(Debug, Clone, Serialize)]
pub struct EdgeView {
    /// The set for requests from clients.
    pub set: String,
    /// The set for REGISTER.
    pub register_set: String,
    /// Every set with its destinations' states.
    pub sets: Vec<SetView>,
    /// Client flows that get NAT keep-alives.
    pub keepalive_flows: usize,
}

/// The background tasks of an edge (probing, keep-alives); stopped when dropped.
pub struct EdgeTasks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for EdgeTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The flow secret: the configured one, or the one kept in
/// `<data_dir>/edge-flow-secret` (created on first use).
pub fn flow_secret(config: &EdgeConfig, data_dir: &Path) -> Result<Vec<u8>, EdgeError> {
    if let Some(s) = &config.flow_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join("edge-flow-secret");
    let err = |source| EdgeError::Secret {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 16 => Ok(s.trim().as_bytes().to_vec()),
        Ok(_) | Err(_) => {
            let secret = hex::encode(rand::random::<[u8; 32]>());
            std::fs::write(&path, &secret).map_err(err)?;
            Ok(secret.into_bytes())
        }
    }
}

impl Edge {
    /// An edge over the sets of `dispatcher`; `hash-aor` sets follow
    /// `partitions`; `secret` signs flow tokens.
    pub fn new(
        config: EdgeConfig,
        dispatcher: &DispatcherConfig,
        partitions: Option<&PartitionMap>,
        secret: &[u8],
    ) -> Result<Self, EdgeError> {
        let d = Dispatcher::new(dispatcher, partitions)?;
        let set = d
            .set_index(&config.set)
            .ok_or_else(|| EdgeError::UnknownSet(config.set.clone()))?;
        let register_set = d
            .set_index(config.register_set())
            .ok_or_else(|| EdgeError::UnknownSet(config.register_set().to_owned()))?;
        let inside = d
            .sets()
            .iter()
            .flat_map(|s| s.plan.destinations.iter().map(|x| x.peer))
            .collect();
        let interval_ms = config.keepalive_interval_secs.saturating_mul(1000);
        Ok(Edge {
            inner: Arc::new(Inner {
                failover_timeout: Duration::from_millis(config.failover_timeout_ms.max(1)),
                timer_c: Duration::from_secs(config.timer_c_secs.max(1)),
                keepalives: Mutex::new(KeepaliveTable::new(
                    interval_ms,
                    config.keepalive_max_flows,
                )),
                config,
                dispatcher: d,
                signer: FlowSigner::new(secret),
                resolver: Resolver::new(false, Duration::from_secs(1)),
                set,
                register_set,
                inside,
                epoch: Instant::now(),
                probe_interval: Duration::from_millis(dispatcher.probe_interval_ms),
                probe_timeout: Duration::from_millis(dispatcher.probe_timeout_ms.max(1)),
                probe_ok_codes: dispatcher.probe_ok_codes.clone(),
            }),
        })
    }

    /// The dispatcher (health, selection).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    /// Starts probing and keep-alives on `core`.
    pub fn start(&self, core: Arc<Core>) -> EdgeTasks {
        let mut tasks = Vec::new();
        if !self.inner.probe_interval.is_zero() {
            tasks.push(tokio::spawn(probe_loop(self.inner.clone(), core.clone())));
        }
        if self.inner.config.keepalive_interval_secs > 0 {
            tasks.push(tokio::spawn(keepalive_loop(self.inner.clone(), core)));
        }
        EdgeTasks { tasks }
    }

    /// The admin view.
    pub fn view(&self) -> EdgeView {
        let set_name = |i: usize| {
            self.inner
                .dispatcher
                .set(i)
                .map(|s| s.plan.name.clone())
                .unwrap_or_default()
        };
        EdgeView {
            set: set_name(self.inner.set),
            register_set: set_name(self.inner.register_set),
            sets: self.inner.dispatcher.view(),
            keepalive_flows: self
                .inner
                .keepalives
                .lock()
                .map(|t| t.len())
                .unwrap_or_default(),
        }
    }

    /// Whether `peer` is one of the dispatcher destinations (a request
    /// from inside): same IP, and for UDP the same port.
    fn is_inside(&self, peer: &Peer) -> bool {
        self.inner.inside.iter().any(|d| {
            d.addr.ip() == peer.addr.ip()
                && (peer.transport != TransportKind::Udp || d.addr.port() == peer.addr.port())
        })
    }

    /// Routes one request (not ACK, not CANCEL) and answers it.
    pub async fn handle(&self, req: ServerRequest) {
        let msg = req.message();
        let core = req.core().clone();
        if let Err(r) = check_max_forwards(msg) {
            let _ = req.send(r.response(msg, Some(req.to_tag())));
            return;
        }
        let route = match preprocess(msg, |u| core.identity().is_self(u)) {
            Ok(r) => r,
            Err(bad) => {
                let _ = req.send(req.response(400, bad.0).build());
                return;
            }
        };
        // In-dialog requests and calls to registered users pass the edge
        // twice with the same Request-URI (client → proxy → edge → client),
        // routed by our own Route entries: loop detection applies only to
        // requests the edge routes by itself. Max-Forwards ends any other loop.
        if route.pop_routes == 0
            && loops::is_loop(msg, |host, port| is_our_listener(&core, host, port))
        {
            metrics::counter!("voxline_edge_loops_total").increment(1);
            let _ = req.send(req.response(482, "Loop Detected").build());
            return;
        }
        let inner = &self.inner;
        let flow = popped_flow(msg, &route, &inner.signer);
        let from_inside = self.is_inside(req.peer());
        let method = msg.method();
        let is_register = method == Some(Method::Register);
        let dialog = inner.config.record_route
            && msg.to_tag().is_none()
            && method.as_ref().is_some_and(|m| creates_dialog(m.as_str()));
        let client = Flow::of(req.peer());
        let mut plan = Plan {
            route,
            attempts: Vec::new(),
            record_route: None,
            path: None,
            keepalive: None,
        };
        let direction = match next_hop(&plan.route, flow, from_inside) {
            Next::Flow(f) => {
                plan.attempts.push(Attempt {
                    peer: f.peer(),
                    dest: None,
                });
                plan.record_route = dialog.then_some(f);
                "to-client"
            }
            Next::Route(uri) => {
                plan.attempts = self.resolve(&uri).await;
                plan.record_route = (dialog && !from_inside).then_some(client);
                "route"
            }
            Next::RequestUri => {
                let uri = plan.route.request_uri.clone();
                plan.attempts = self.resolve(&uri).await;
                "request-uri"
            }
            Next::Dispatch => {
                let s = if is_register {
                    inner.register_set
                } else {
                    inner.set
                };
                let aor = if is_register {
                    voxline_registrar::request::address_of_record(msg)
                        .ok()
                        .map(|(u, d)| format!("{u}@{d}"))
                } else {
                    aor_of_request_uri(&plan.route.request_uri)
                };
                let key = Key {
                    aor: aor.as_deref(),
                    call_id: msg.call_id().unwrap_or(""),
                };
                plan.attempts = inner
                    .dispatcher
                    .order(s, &key)
                    .into_iter()
                    .filter_map(|i| {
                        inner.dispatcher.destination(s, i).map(|d| Attempt {
                            peer: d.peer,
                            dest: Some((s, i)),
                        })
                    })
                    .collect();
                plan.record_route = dialog.then_some(client);
                if is_register {
                    plan.path = Some(client);
                    plan.keepalive = (inner.config.keepalive_interval_secs > 0
                        && wants_keepalive(inner.config.keepalive_targets, msg, req.peer()))
                    .then_some(client);
                }
                "dispatch"
            }
        };
        metrics::counter!("voxline_edge_requests_total", "direction" => direction).increment(1);
        if plan.attempts.is_empty() {
            metrics::counter!("voxline_edge_no_destination_total").increment(1);
            let retry = rand::random_range(5..=15u32).to_string();
            let _ = req.send(
                req.response(503, "Service Unavailable - no destination available")
                    .header("Retry-After", &retry)
                    .build(),
            );
            return;
        }
        session::run(self.inner.clone(), req, plan).await;
    }

    /// The addresses of a Route or Request-URI (IP literals; no DNS at the edge).
    async fn resolve(&self, uri: &str) -> Vec<Attempt> {
        match self.inner.resolver.resolve(uri).await {
            Ok(peers) => peers
                .into_iter()
                .map(|peer| Attempt { peer, dest: None })
                .collect(),
            Err(e) => {
                tracing::debug!(%uri, error = %e, "edge: next hop does not resolve");
                Vec::new()
            }
        }
    }

    /// Forwards an ACK for a 2xx statelessly along its Route set (or to the
    /// client flow our Record-Route names).
    pub fn handle_ack(&self, core: &Core, ack: &Message, peer: &Peer) {
        let Ok(route) = preprocess(ack, |u| core.identity().is_self(u)) else {
            return;
        };
        let flow = popped_flow(ack, &route, &self.inner.signer);
        let target = match next_hop(&route, flow, self.is_inside(peer)) {
            Next::Flow(f) => f.peer(),
            Next::Route(uri) => match literal_peer(&uri) {
                Some(p) => p,
                None => return,
            },
            Next::RequestUri | Next::Dispatch => match literal_peer(&route.request_uri) {
                Some(p) => p,
                None => return,
            },
        };
        // The same ACK retransmitted gets the same branch.
        let seed = ack.top_via().ok().and_then(|v| v.branch).unwrap_or("");
        let via = format!(
            "SIP/2.0/{} {};branch=z9hG4bKvxa{:016x}",
            target.transport.via_token(),
            core.sent_by(&target),
            fnv(seed)
        );
        let Ok(bytes) = voxline_proxy::forward::forwarded_request(
            ack,
            &voxline_proxy::forward::ForwardEdits {
                route: &route,
                request_uri: None,
                preloaded: &[],
                via: &via,
                record_route: &[],
                body: None,
            },
        ) else {
            return;
        };
        let _ = core.send_stateless_to(&target, bytes);
    }

    /// A response without a transaction: a 2xx to INVITE retransmitted
    /// after its transaction ended goes on along the Vias; anything else
    /// (late answers after a failover, answers to keep-alives) is dropped.
    pub fn handle_stray_response(&self, core: &Core, resp: &Message) {
        let is_invite_2xx = resp.status().is_some_and(|s| (200..300).contains(&s))
            && resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        if !is_invite_2xx {
            return;
        }
        let mut vias = resp.vias();
        let Some(Ok(top)) = vias.next() else { return };
        if !is_our_listener(core, top.host_str.trim_matches(['[', ']']), top.port) {
            return;
        }
        let Some(Ok(next)) = vias.next() else { return };
        let Some(ip) = next.received_ip().or_else(|| next.host.ip()) else {
            return;
        };
        let port = match next.rport {
            Some(Some(p)) => p,
            _ => next.port.unwrap_or(5060),
        };
        let transport = TransportKind::parse(next.transport).unwrap_or(TransportKind::Udp);
        let dest = Peer::new(SocketAddr::new(ip, port), transport);
        let mut out = BytesMut::new();
        if resp.edit().pop_via().write_to(&mut out).is_ok() {
            let _ = core.send_stateless_to(&dest, out.freeze());
        }
    }
}

/// `user@domain` of a Request-URI with a user part (domain lower-cased).
fn aor_of_request_uri(uri: &str) -> Option<String> {
    match Uri::parse(uri) {
        Ok(Uri::Sip(u)) => {
            let user = u.user_decoded()?;
            Some(format!(
                "{user}@{}",
                u.host_str.trim_matches(['[', ']']).to_ascii_lowercase()
            ))
        }
        _ => None,
    }
}

fn literal_peer(uri: &str) -> Option<Peer> {
    match Uri::parse(uri) {
        Ok(Uri::Sip(u)) => match voxline_proxy::resolve::plan(&u) {
            voxline_proxy::resolve::Plan::Literal(p) => Some(p),
            voxline_proxy::resolve::Plan::Name { .. } => None,
        },
        _ => None,
    }
}

fn is_our_listener(core: &Core, host: &str, port: Option<u16>) -> bool {
    let Some(ip) = Host::parse(host).and_then(|h| h.ip()) else {
        return false;
    };
    let port = port.unwrap_or(5060);
    core.identity()
        .listeners()
        .iter()
        .any(|l| l.ip() == ip && l.port() == port)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Probes every destination every interval.
async fn probe_loop(inner: Arc<Inner>, core: Arc<Core>) {
    let mut tick = tokio::time::interval(inner.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (s, set) in inner.dispatcher.sets().iter().enumerate() {
            for i in 0..set.plan.destinations.len() {
                tokio::spawn(probe_one(inner.clone(), core.clone(), s, i));
            }
        }
    }
}

async fn probe_one(inner: Arc<Inner>, core: Arc<Core>, s: usize, i: usize) {
    let Some(dest) = inner.dispatcher.destination(s, i).cloned() else {
        return;
    };
    let set_name = inner
        .dispatcher
        .set(s)
        .map(|x| x.plan.name.clone())
        .unwrap_or_default();
    let prepared = core.prepare_request(&dest.peer, None);
    let from = format!(
        "<sip:dispatcher@{}>;tag={:016x}",
        core.sent_by(&dest.peer),
        rand::random::<u64>()
    );
    let to = format!("<{}>", dest.uri);
    let call_id = format!("{:032x}@probe", rand::random::<u128>());
    let request: Bytes = RequestBuilder::new(Method::Options, &dest.uri)
        .via(&prepared.via)
        .from(&from)
        .to(&to)
        .call_id(&call_id)
        .cseq(1)
        .header("Content-Length", "0")
        .build();
    let ok = match core.send_request_alone(&prepared, request, dest.peer) {
        Ok((id, mut events)) => {
            let answer = tokio::time::timeout(inner.probe_timeout, async {
                while let Some((_, ev)) = events.recv().await {
                    match ev {
                        ClientEvent::Response(r) => match r.status() {
                            Some(s) if s >= 200 => return Some(s),
                            _ => {}
                        },
                        ClientEvent::Timeout | ClientEvent::TransportError => return None,
                        ClientEvent::Terminated => return None,
                    }
                }
                None
            })
            .await;
            match answer {
                Ok(Some(status)) => {
                    (200..300).contains(&status) || inner.probe_ok_codes.contains(&status)
                }
                Ok(None) => false,
                Err(_) => {
                    let _ = core.terminate_request(id);
                    false
                }
            }
        }
        Err(e) => {
            tracing::debug!(dest = %dest.name, error = %e, "probe not sent");
            false
        }
    };
    metrics::counter!(
        "voxline_dispatcher_probes_total",
        "set" => set_name,
        "destination" => dest.name.clone(),
        "result" => if ok { "ok" } else { "failed" },
    )
    .increment(1);
    if ok {
        inner.dispatcher.success(s, i);
    } else {
        inner.dispatcher.failure(s, i);
    }
}

/// Sends NAT keep-alives when they are due.
async fn keepalive_loop(inner: Arc<Inner>, core: Arc<Core>) {
    loop {
        let due = {
            let mut t = inner.keepalives.lock().unwrap_or_else(|e| e.into_inner());
            let due = t.due(inner.now_ms());
            metrics::gauge!("voxline_edge_keepalive_flows").set(t.len() as f64);
            due
        };
        for flow in due {
            let peer = flow.peer();
            let bytes = match inner.config.keepalive_method {
                KeepaliveMethod::Crlf => Bytes::from_static(b"\r\n\r\n"),
                KeepaliveMethod::Options => keepalive_options(&core, &peer),
            };
            match core.send_stateless_to(&peer, bytes) {
                Ok(()) => metrics::counter!("voxline_edge_keepalives_sent_total").increment(1),
                Err(e) => tracing::debug!(dest = %peer.addr, error = %e, "keep-alive not sent"),
            }
        }
        let wait = {
            let t = inner.keepalives.lock().unwrap_or_else(|e| e.into_inner());
            t.next_due()
                .map_or(1000, |d| d.saturating_sub(inner.now_ms()))
                .clamp(10, 1000)
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

fn keepalive_options(core: &Core, peer: &Peer) -> Bytes {
    let sent_by = core.sent_by(peer);
    let via = format!(
        "SIP/2.0/{} {sent_by};branch=z9hG4bKvxk{:016x};rport",
        peer.transport.via_token(),
        rand::random::<u64>()
    );
    let uri = format!("sip:{}", peer.addr);
    let from = format!(
        "<sip:keepalive@{sent_by}>;tag={:016x}",
        rand::random::<u64>()
    );
    let to = format!("<{uri}>");
    let call_id = format!("{:032x}@keepalive", rand::random::<u128>());
    RequestBuilder::new(Method::Options, &uri)
        .via(&via)
        .from(&from)
        .to(&to)
        .call_id(&call_id)
        .cseq(1)
        .header("Content-Length", "0")
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_of_uris() {
        assert_eq!(
            aor_of_request_uri("sip:Bob@Example.COM;user=phone").as_deref(),
            Some("Bob@example.com")
        );
        assert_eq!(aor_of_request_uri("sip:example.com"), None);
        assert_eq!(aor_of_request_uri("tel:+4930123"), None);
    }

    #[test]
    fn secret_is_kept_in_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("vx-edge-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = EdgeConfig::default();
        let a = flow_secret(&c, &dir).unwrap();
        let b = flow_secret(&c, &dir).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 32);
        let given = EdgeConfig {
            flow_secret: Some("0123456789abcdef".into()),
            ..EdgeConfig::default()
        };
        assert_eq!(flow_secret(&given, &dir).unwrap(), b"0123456789abcdef");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
