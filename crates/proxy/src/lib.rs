//! The proxy role: a stateful, forking SIP proxy (RFC 3261 §16).
//!
//! For each request the proxy validates (Max-Forwards, loops), processes
//! the Route set (loose routing, strict-router compatibility), challenges
//! requests from local subscribers, picks targets (the registered contacts
//! of a local user, or the Request-URI / next Route resolved per RFC 3263)
//! and forks: in parallel within the best q group, serially across groups.
//! [`session`] drives the branches; [`fork`] decides which response wins.

pub mod answers;
pub mod calls;
pub mod config;
pub mod fork;
pub mod forward;
pub mod loops;
pub mod resolve;
pub mod routing;
pub mod session;

pub use config::ProxyConfig;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use voxline_location::{Binding, LocationStore, Timestamp};
use voxline_server::{Core, ServerRequest};
use voxline_sip::{Host, Message, Method, Uri, Via, check_max_forwards};
use voxline_sip_auth::{AuthOutcome, SipAuth, answer_store_error};
use voxline_transaction::{Peer, TransportKind};

use crate::calls::{CallControl, Refusal};
use crate::resolve::Resolver;
use crate::routing::{RouteInfo, creates_dialog, preprocess};
use crate::session::{CallRole, Hop, Plan, Target};

impl ProxyConfig {
    pub(crate) fn timer_c(&self) -> Duration {
        Duration::from_secs(self.timer_c_secs.max(1))
    }

    pub(crate) fn serial_fork_timeout(&self) -> Duration {
        Duration::from_secs(self.serial_fork_timeout_secs.max(1))
    }
}

/// State shared by every proxied request.
pub struct Inner {
    pub(crate) config: ProxyConfig,
    location: Option<LocationStore>,
    auth: Option<SipAuth>,
    pub(crate) resolver: Resolver,
    pub(crate) calls: Option<Arc<CallControl>>,
    /// 2xx answers forwarded with rewritten SDP, for their retransmissions.
    pub(crate) answers: answers::RewrittenAnswers,
}

/// The proxy of a node.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

/// Whether a Via names one of our listeners.
pub(crate) fn identity_of_via(via: &Via<'_>, is_ours: &impl Fn(&str, Option<u16>) -> bool) -> bool {
    is_ours(via.host_str.trim_matches(['[', ']']), via.port)
}

impl Proxy {
    /// A proxy; `location` serves local users, `auth` challenges local
    /// subscribers (required when `config.authenticate`).
    pub fn new(
        config: ProxyConfig,
        location: Option<LocationStore>,
        auth: Option<SipAuth>,
    ) -> Self {
        Self::with_calls(config, location, auth, None)
    }

    /// A proxy with call control (dialogs, media anchoring, call records).
    pub fn with_calls(
        config: ProxyConfig,
        location: Option<LocationStore>,
        auth: Option<SipAuth>,
        calls: Option<Arc<CallControl>>,
    ) -> Self {
        let resolver = Resolver::new(config.dns, Duration::from_millis(config.dns_timeout_ms));
        Proxy {
            inner: Arc::new(Inner {
                config,
                location,
                auth,
                resolver,
                calls,
                answers: answers::RewrittenAnswers::default(),
            }),
        }
    }

    /// Call control, when configured.
    pub fn calls(&self) -> Option<&Arc<CallControl>> {
        self.inner.calls.as_ref()
    }

    /// Routes one request (not REGISTER for our domains, which is the
    /// registrar's) and answers it.
    ///
    /// It takes the proxy by value (a clone is one `Arc`), so that its
    /// future owns everything it uses and can be spawned as it is.
    pub async fn handle(self, req: ServerRequest) {
        let msg = req.message();
        let core = req.core().clone();
        if let Err(r) = check_max_forwards(msg) {
            let _ = req.send(r.response(msg, Some(req.to_tag())));
            return;
        }
        if loops::is_loop(msg, |host, port| is_our_listener(&core, host, port)) {
            metrics::counter!("voxline_proxy_loops_total").increment(1);
            let _ = req.send(req.response(482, "Loop Detected").build());
            return;
        }
        let route = match preprocess(msg, |u| core.identity().is_self(u)) {
            Ok(r) => r,
            Err(bad) => {
                let _ = req.send(req.response(400, bad.0).build());
                return;
            }
        };
        let in_dialog = msg.to_tag().is_some();
        let method = msg.method();
        let mut subscriber = None;
        if self.needs_auth(&core, msg, in_dialog) {
            let realm = from_domain(msg).unwrap_or_default();
            let from_user = from_user(msg).unwrap_or_default();
            let Some(auth) = &self.inner.auth else {
                let _ = req.send(
                    req.response(500, "Server Internal Error - authentication not configured")
                        .build(),
                );
                return;
            };
            match auth.check(&req, &realm).await {
                AuthOutcome::Answered => return,
                AuthOutcome::Accepted(who) => {
                    if who.username != from_user {
                        let _ = req.send(
                            req.response(403, "Forbidden - From does not match the credentials")
                                .build(),
                        );
                        return;
                    }
                    subscriber = Some(format!(
                        "{}@{}",
                        who.username,
                        who.realm.to_ascii_lowercase()
                    ));
                }
            }
        }
        let groups = match self.targets(&req, &route, in_dialog).await {
            Ok(g) => g,
            Err(()) => return,
        };
        let (body, call) = match (&self.inner.calls, &method) {
            (Some(calls), Some(Method::Invite)) if !in_dialog => {
                match calls.begin(msg, req.peer(), subscriber).await {
                    Ok(body) => (body, CallRole::Initial),
                    Err(Refusal::Limit(l)) => {
                        let _ = req.send(req.response(l.status, l.reason).build());
                        return;
                    }
                    Err(Refusal::NoRelay) => {
                        let _ = req.send(
                            req.response(503, "Service Unavailable - no media relay")
                                .header("Retry-After", "5")
                                .build(),
                        );
                        return;
                    }
                }
            }
            (Some(calls), Some(_)) if in_dialog => {
                (calls.in_dialog(msg, req.peer()).await, CallRole::InDialog)
            }
            _ => (None, CallRole::None),
        };
        let record_route = self.inner.config.record_route
            && !in_dialog
            && method.as_ref().is_some_and(|m| creates_dialog(m.as_str()));
        metrics::counter!("voxline_proxy_requests_total").increment(1);
        // The session outlives this handler by the transactions' lifetime
        // (32 s after a 2xx on UDP): it runs as a task of its own, so what
        // stays resident per call is the session, not the handler's
        // authentication and lookup states as well.
        voxline_server::spawn_eager(session::run(
            self.inner.clone(),
            req,
            Plan {
                route,
                record_route,
                groups,
                body,
                call,
            },
        ));
    }

    /// Local subscribers are challenged for requests outside a dialog
    /// (never ACK, CANCEL or in-dialog requests).
    fn needs_auth(&self, core: &Core, msg: &Message, in_dialog: bool) -> bool {
        if !self.inner.config.authenticate || in_dialog {
            return false;
        }
        if matches!(msg.method(), Some(Method::Ack | Method::Cancel)) {
            return false;
        }
        from_domain(msg).is_some_and(|d| core.identity().is_local_domain(&d))
    }

    /// The branches for a request, grouped by q, or the request was answered
    /// (`Err`).
    async fn targets(
        &self,
        req: &ServerRequest,
        route: &RouteInfo,
        in_dialog: bool,
    ) -> Result<Vec<Vec<Target>>, ()> {
        if let Some(next) = route.next_route() {
            return Ok(vec![vec![Target {
                request_uri: None,
                preloaded: Vec::new(),
                hop: Hop::Uri(next.to_owned()),
                q: 1000,
            }]]);
        }
        let ruri_text = route.request_uri.clone();
        let ruri = Uri::parse(&ruri_text);
        let local_user = match &ruri {
            Ok(Uri::Sip(u)) if !in_dialog && req.core().identity().is_local_domain(u.host_str) => {
                u.user_decoded().map(|user| {
                    (
                        user.into_owned(),
                        u.host_str.trim_matches(['[', ']']).to_ascii_lowercase(),
                    )
                })
            }
            _ => None,
        };
        let rewritten = route.strict_previous.then(|| ruri_text.clone());
        match local_user {
            Some((user, domain)) => self.location_targets(req, &user, &domain).await,
            None => {
                if let Ok(Uri::Sip(u)) = &ruri
                    && u.user.is_none()
                    && req.core().identity().is_self(u)
                {
                    // Addressed to the proxy itself, for no one in particular.
                    let _ = req.send(req.response(404, "Not Found").build());
                    return Err(());
                }
                Ok(vec![vec![Target {
                    request_uri: rewritten,
                    preloaded: Vec::new(),
                    hop: Hop::Uri(ruri_text),
                    q: 1000,
                }]])
            }
        }
    }

    async fn location_targets(
        &self,
        req: &ServerRequest,
        user: &str,
        domain: &str,
    ) -> Result<Vec<Vec<Target>>, ()> {
        let aor = format!("{user}@{domain}");
        let bindings = match &self.inner.location {
            Some(store) => match store.lookup(&aor, Timestamp::now()).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "location lookup failed; answering 503");
                    let _ = req.send(
                        req.response(503, "Service Unavailable - location store unreachable")
                            .header("Retry-After", "10")
                            .build(),
                    );
                    return Err(());
                }
            },
            None => Vec::new(),
        };
        if bindings.is_empty() {
            let known = match &self.inner.auth {
                Some(auth) => match auth.exists(user, domain).await {
                    Ok(k) => k,
                    Err(e) => {
                        answer_store_error(req, &e);
                        return Err(());
                    }
                },
                None => true,
            };
            let (status, reason) = if known {
                (480, "Temporarily Unavailable")
            } else {
                (404, "Not Found")
            };
            metrics::counter!("voxline_proxy_lookup_failures_total", "status" => status.to_string()).increment(1);
            let _ = req.send(req.response(status, reason).build());
            return Err(());
        }
        // Bindings come best q first; group equal q values.
        let mut groups: Vec<Vec<Target>> = Vec::new();
        for b in &bindings {
            let t = binding_target(b);
            match groups.last_mut() {
                Some(g) if g.first().is_some_and(|f| f.q == t.q) => g.push(t),
                _ => groups.push(vec![t]),
            }
        }
        Ok(groups)
    }

    /// Routes an ACK for a 2xx (no transaction, RFC 3261 §16.11 statelessly).
    pub fn handle_ack(&self, core: &Arc<Core>, ack: &Message, peer: &Peer) {
        if let Some(calls) = &self.inner.calls
            && calls.anchors_media()
            && calls::sdp_of(ack).is_some()
        {
            // The answer to a late offer: anchor it before passing it on.
            let (proxy, core, ack, peer, calls) = (
                self.clone(),
                core.clone(),
                ack.clone(),
                *peer,
                calls.clone(),
            );
            tokio::spawn(async move {
                let body = calls.ack(&ack, peer.addr).await;
                proxy.forward_ack(&core, &ack, body.as_deref().map(str::as_bytes));
            });
            return;
        }
        self.forward_ack(core, ack, None);
    }

    fn forward_ack(&self, core: &Core, ack: &Message, body: Option<&[u8]>) {
        if self.inner.calls.is_some() {
            self.inner.answers.acknowledged(ack, Instant::now());
        }
        let Ok(route) = preprocess(ack, |u| core.identity().is_self(u)) else {
            return;
        };
        let hop = route
            .next_route()
            .map(str::to_owned)
            .unwrap_or_else(|| route.request_uri.clone());
        let Ok(Uri::Sip(sip)) = Uri::parse(&hop) else {
            return;
        };
        // ACKs go to literal addresses in practice (contact or our peers'
        // Record-Route); do not block on DNS here.
        let resolve::Plan::Literal(target) = resolve::plan(&sip) else {
            tracing::debug!(%hop, "ACK next hop is a name; dropped");
            return;
        };
        // The same ACK retransmitted gets the same branch (stateless proxy).
        let branch_seed = ack.top_via().ok().and_then(|v| v.branch).unwrap_or("");
        let via = format!(
            "SIP/2.0/{} {};branch=z9hG4bKsl{:016x}",
            target.transport.via_token(),
            core.sent_by(&target),
            stable_hash(branch_seed)
        );
        let Ok(bytes) = forward::forwarded_request(
            ack,
            &forward::ForwardEdits {
                route: &route,
                request_uri: None,
                preloaded: &[],
                via: &via,
                record_route: &[],
                body,
            },
        ) else {
            return;
        };
        let _ = core.send_stateless_to(&target, bytes);
    }

    /// Forwards a response that matches no transaction (a retransmitted 2xx)
    /// when its top Via is ours (RFC 3261 §16.11).
    pub fn handle_stray_response(&self, core: &Core, resp: &Message) {
        let mut vias = resp.vias();
        let Some(Ok(top)) = vias.next() else { return };
        if !identity_of_via(&top, &|h, p| is_our_listener(core, h, p)) {
            return;
        }
        let Some(Ok(next)) = vias.next() else { return };
        let Some(dest) = via_destination(&next) else {
            return;
        };
        if let Some(bytes) = self.inner.answers.resend(resp, Instant::now()) {
            // Its first copy went up with the SDP rewritten for the relay.
            metrics::counter!("voxline_proxy_answers_resent_total").increment(1);
            let _ = core.send_stateless_to(&dest, bytes);
            return;
        }
        let mut out = BytesMut::new();
        if resp.edit().pop_via().write_to(&mut out).is_ok() {
            let _ = core.send_stateless_to(&dest, out.freeze());
        }
    }
}

/// Where the response for a hop whose Via is `via` goes (§18.2.2).
fn via_destination(via: &Via<'_>) -> Option<Peer> {
    let ip = via.received_ip().or_else(|| via.host.ip())?;
    let port = match via.rport {
        Some(Some(p)) => p,
        _ => via.port.unwrap_or(5060),
    };
    let transport = TransportKind::parse(via.transport).unwrap_or(TransportKind::Udp);
    Some(Peer::new(SocketAddr::new(ip, port), transport))
}

/// The branch for one registered contact: its URI as Request-URI, its
/// Path as pre-loaded route, and the address it registered from when it is
/// behind NAT (or registered over a connection).
fn binding_target(b: &Binding) -> Target {
    let hop = if let Some(first) = b.path.first() {
        Hop::Uri(strip_angles(first).to_owned())
    } else if b.nat || b.source.transport != voxline_location::Transport::Udp {
        Hop::Peer(Peer {
            addr: b.source.remote,
            transport: match b.source.transport {
                voxline_location::Transport::Udp => TransportKind::Udp,
                voxline_location::Transport::Tcp => TransportKind::Tcp,
                voxline_location::Transport::Tls => TransportKind::Tls,
                voxline_location::Transport::Ws => TransportKind::Ws,
                voxline_location::Transport::Wss => TransportKind::Wss,
            },
            connection: None,
            local: Some(b.source.local),
        })
    } else {
        Hop::Uri(b.contact.clone())
    };
    Target {
        request_uri: Some(b.contact.clone()),
        preloaded: b.path.clone(),
        hop,
        q: b.q,
    }
}

fn strip_angles(v: &str) -> &str {
    let v = v.trim();
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    }
}

fn from_domain(msg: &Message) -> Option<String> {
    let from = msg.from().ok()?;
    let sip = from.uri.as_sip()?;
    Some(sip.host_str.trim_matches(['[', ']']).to_ascii_lowercase())
}

fn from_user(msg: &Message) -> Option<String> {
    let from = msg.from().ok()?;
    let sip = from.uri.as_sip()?;
    sip.user_decoded().map(|u| u.into_owned())
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

fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
