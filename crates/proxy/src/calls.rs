//! Call control around proxying (issue "media-anchored calls"): dialogs,
//! media anchoring on a relay, and a record of every call attempt.
//!
//! The proxy calls the hooks here at fixed points (pingora style): an
//! initial INVITE before it is forwarded, SDP-carrying responses and ACKs,
//! in-dialog requests, and the end of each attempt. Media relays and call
//! records are behind small traits ([`MediaAnchor`], [`CallRecorder`]) so
//! the proxy does not depend on how they are implemented (a Voxline relay or
//! rtpengine; SQL or anything else).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use voxline_dialog::{
    DialogConfig, DialogInfo, DialogTable, Ended, Hangup, Leg, LimitExceeded, NewCall, Teardown,
};
use voxline_ng::reply::CallStats;
use voxline_server::{ClientEvent, Core};
use voxline_sip::{HeaderName, Message, Method, RequestBuilder, SipUri, Uri};
use voxline_transaction::{Peer, TransportKind};

/// The `voxline_dialogs` gauges, registered once (a labelled `gauge!` looks
/// its key up in the recorder's registry on every call, four times a call).
/// Created on first use, after the node has installed its recorder.
struct DialogGauges {
    early: metrics::Gauge,
    confirmed: metrics::Gauge,
}

static DIALOGS: LazyLock<DialogGauges> = LazyLock::new(|| DialogGauges {
    early: metrics::gauge!("voxline_dialogs", "state" => "early"),
    confirmed: metrics::gauge!("voxline_dialogs", "state" => "confirmed"),
});

/// A boxed future, for the object-safe hook traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a relay could not anchor a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFailure(pub String);

/// What the relay reported about a call's media when it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaReport {
    /// The relay that carried it (its ng address).
    pub relay: String,
    /// The relay's statistics of the call (ng `delete` reply).
    pub stats: CallStats,
}

/// One SDP to anchor.
#[derive(Debug, Clone)]
pub struct SdpExchange<'a> {
    /// Call-ID.
    pub call_id: &'a str,
    /// Tag of the party that sent the SDP offer.
    pub from_tag: &'a str,
    /// Tag of the other party (answers only).
    pub to_tag: Option<&'a str>,
    /// Via branch of the request (offers).
    pub via_branch: Option<&'a str>,
    /// The SDP.
    pub sdp: &'a str,
    /// Where the SIP message came from.
    pub source: SocketAddr,
}

/// A media relay (set) that anchors calls: ng `offer`/`answer`/`delete`.
pub trait MediaAnchor: Send + Sync + 'static {
    /// Rewrites an SDP offer; returns the new SDP and the relay used.
    fn offer<'a>(
        &'a self,
        x: SdpExchange<'a>,
    ) -> BoxFuture<'a, Result<(String, String), MediaFailure>>;
    /// Rewrites an SDP answer (same relay as the offer).
    fn answer<'a>(&'a self, x: SdpExchange<'a>) -> BoxFuture<'a, Result<String, MediaFailure>>;
    /// Ends the call's media; returns its totals when the relay reports them.
    fn delete<'a>(
        &'a self,
        call_id: &'a str,
        from_tag: &'a str,
    ) -> BoxFuture<'a, Option<MediaReport>>;
    /// Whether media still flows for the call (`None`: cannot tell).
    fn media_active<'a>(
        &'a self,
        call_id: &'a str,
        from_tag: &'a str,
    ) -> BoxFuture<'a, Option<bool>>;
}

/// Where call records go (one per call attempt, written when it ends).
pub trait CallRecorder: Send + Sync + 'static {
    /// Records one ended call attempt.
    fn record(&self, ended: &Ended, media: Option<&MediaReport>);

    /// Writes out everything recorded so far (node shutdown).
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Dialogs, media and records of one proxy.
pub struct CallControl {
    dialogs: DialogTable,
    media: Option<Arc<dyn MediaAnchor>>,
    recorder: Option<Arc<dyn CallRecorder>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether a message carries an SDP body.
pub fn sdp_of(msg: &Message) -> Option<&str> {
    let body = msg.body();
    if body.is_empty() {
        return None;
    }
    let is_sdp = msg
        .content_type()
        .map(|ct| ct.is("application", "sdp"))
        .unwrap_or(false);
    if !is_sdp {
        return None;
    }
    std::str::from_utf8(body).ok()
}

impl CallControl {
    /// Call control with the given parts (each optional).
    pub fn new(
        config: DialogConfig,
        media: Option<Arc<dyn MediaAnchor>>,
        recorder: Option<Arc<dyn CallRecorder>>,
    ) -> Self {
        CallControl {
            dialogs: DialogTable::new(config),
            media,
            recorder,
        }
    }

    /// The dialog table (admin listing, metrics).
    pub fn dialogs(&self) -> &DialogTable {
        &self.dialogs
    }

    /// Whether calls are anchored on a relay.
    pub fn anchors_media(&self) -> bool {
        self.media.is_some()
    }

    /// An initial INVITE: admits it (limits), starts its dialog and anchors
    /// its SDP offer. Returns the SDP to forward, if rewritten.
    pub async fn begin(
        &self,
        msg: &Message,
        peer: &Peer,
        subscriber: Option<String>,
    ) -> Result<Option<String>, Refusal> {
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        let from_tag = msg.from_tag().unwrap_or_default().to_owned();
        let caller = aor_of(msg.from().ok().and_then(|f| f.uri.as_sip().map(sip_aor)));
        let callee = aor_of(msg.request_uri().ok().and_then(|u| u.as_sip().map(sip_aor)));
        let domain = subscriber
            .as_ref()
            .and_then(|s| s.split_once('@').map(|(_, d)| d.to_owned()));
        let caller_leg = Leg {
            request_uri: contact_uri(msg).unwrap_or_default(),
            routes: Vec::new(),
            next_hop: peer.addr,
            transport: peer.transport.to_string(),
            from: msg.header(HeaderName::To).unwrap_or_default().to_owned(),
            to: msg.header(HeaderName::From).unwrap_or_default().to_owned(),
            cseq: 0,
        };
        let call = NewCall {
            call_id: call_id.clone(),
            from_tag: from_tag.clone(),
            caller,
            callee,
            source: peer.addr,
            transport: peer.transport.to_string(),
            subscriber,
            domain,
            cseq: msg.cseq().map(|c| c.seq).unwrap_or(0),
            caller_leg,
        };
        self.dialogs.begin(call, now_ms()).map_err(Refusal::Limit)?;
        DIALOGS.early.increment(1.0);
        let (Some(media), Some(sdp)) = (&self.media, sdp_of(msg)) else {
            return Ok(None);
        };
        let branch = msg.top_via().ok().and_then(|v| v.branch.map(str::to_owned));
        let x = SdpExchange {
            call_id: &call_id,
            from_tag: &from_tag,
            to_tag: None,
            via_branch: branch.as_deref(),
            sdp,
            source: peer.addr,
        };
        match media.offer(x).await {
            Ok((sdp, relay)) => {
                self.dialogs.set_relay(&call_id, &from_tag, &relay);
                Ok(Some(sdp))
            }
            Err(e) => {
                tracing::warn!(error = %e.0, %call_id, "no relay could anchor the call");
                self.fail(
                    msg,
                    503,
                    "Service Unavailable",
                    Hangup::Proxy("no-relay".into()),
                )
                .await;
                Err(Refusal::NoRelay)
            }
        }
    }

    /// A provisional or 2xx response to an initial INVITE coming back:
    /// anchors the SDP answer (or the late offer) and confirms the dialog on
    /// 2xx. Returns the SDP to forward, if rewritten.
    pub async fn response(
        &self,
        invite: &Message,
        resp: &Message,
        branch_peer: &Peer,
        core: &Core,
    ) -> Option<String> {
        let status = resp.status()?;
        let call_id = invite.call_id().ok()?;
        let from_tag = invite.from_tag()?;
        let to_tag = resp.to_tag();
        if (200..300).contains(&status)
            && let Some(to_tag) = to_tag
        {
            let (caller_leg, callee_leg) = legs(invite, resp, branch_peer, core);
            let first = self
                .dialogs
                .confirm(call_id, from_tag, to_tag, callee_leg, now_ms());
            if first {
                self.dialogs
                    .update_caller_leg(call_id, from_tag, caller_leg);
                DIALOGS.early.decrement(1.0);
                DIALOGS.confirmed.increment(1.0);
            }
        }
        let media = self.media.as_ref()?;
        let sdp = sdp_of(resp)?;
        let to_tag = to_tag?;
        if sdp_of(invite).is_some() {
            media
                .answer(SdpExchange {
                    call_id,
                    from_tag,
                    to_tag: Some(to_tag),
                    via_branch: None,
                    sdp,
                    source: branch_peer.addr,
                })
                .await
                .map_err(|e| tracing::warn!(error = %e.0, %call_id, "relay refused the SDP answer"))
                .ok()
        } else {
            // Late offer: the callee offers in its response, the caller
            // answers in the ACK.
            media
                .offer(SdpExchange {
                    call_id,
                    from_tag: to_tag,
                    to_tag: None,
                    via_branch: None,
                    sdp,
                    source: branch_peer.addr,
                })
                .await
                .map(|(sdp, relay)| {
                    self.dialogs.set_relay(call_id, from_tag, &relay);
                    sdp
                })
                .map_err(|e| tracing::warn!(error = %e.0, %call_id, "relay refused the late offer"))
                .ok()
        }
    }

    /// The call attempt failed with `status` (best final response, CANCEL,
    /// timeout): ends its media and writes its record.
    pub async fn fail(&self, invite: &Message, status: u16, reason: &str, hangup: Hangup) {
        let (Ok(call_id), Some(from_tag)) = (invite.call_id(), invite.from_tag()) else {
            return;
        };
        let Some(ended) = self
            .dialogs
            .fail(call_id, from_tag, status, reason, hangup, now_ms())
        else {
            return;
        };
        DIALOGS.early.decrement(1.0);
        self.close(&ended).await;
    }

    /// An in-dialog request passing through (from either side). A BYE ends
    /// the dialog; an SDP offer (re-INVITE, UPDATE) is anchored again.
    /// Returns the SDP to forward, if rewritten.
    pub async fn in_dialog(&self, msg: &Message, peer: &Peer) -> Option<String> {
        let call_id = msg.call_id().ok()?;
        let cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
        let now = now_ms();
        let (info, from_caller) =
            self.dialogs
                .touch(call_id, msg.from_tag(), msg.to_tag(), cseq, now)?;
        match msg.method()? {
            Method::Bye => {
                if let Some(ended) =
                    self.dialogs
                        .end(call_id, msg.from_tag(), msg.to_tag(), from_caller, now)
                {
                    DIALOGS.confirmed.decrement(1.0);
                    self.close(&ended).await;
                }
                None
            }
            Method::Invite | Method::Update => {
                let media = self.media.as_ref()?;
                let sdp = sdp_of(msg)?;
                let branch = msg.top_via().ok().and_then(|v| v.branch.map(str::to_owned));
                media
                    .offer(SdpExchange {
                        call_id,
                        from_tag: msg.from_tag().unwrap_or(&info.from_tag),
                        to_tag: None,
                        via_branch: branch.as_deref(),
                        sdp,
                        source: peer.addr,
                    })
                    .await
                    .ok()
                    .map(|(sdp, _)| sdp)
            }
            _ => None,
        }
    }

    /// A response to an in-dialog offer (re-INVITE/UPDATE): anchors the answer.
    pub async fn in_dialog_response(
        &self,
        request: &Message,
        resp: &Message,
        source: SocketAddr,
    ) -> Option<String> {
        let media = self.media.as_ref()?;
        if !matches!(request.method()?, Method::Invite | Method::Update)
            || !(100..300).contains(&resp.status()?)
        {
            return None;
        }
        let sdp = sdp_of(resp)?;
        sdp_of(request)?;
        media
            .answer(SdpExchange {
                call_id: request.call_id().ok()?,
                from_tag: request.from_tag()?,
                to_tag: resp.to_tag(),
                via_branch: None,
                sdp,
                source,
            })
            .await
            .ok()
    }

    /// An ACK with SDP: the answer to a late offer.
    pub async fn ack(&self, ack: &Message, source: SocketAddr) -> Option<String> {
        let media = self.media.as_ref()?;
        let sdp = sdp_of(ack)?;
        media
            .answer(SdpExchange {
                call_id: ack.call_id().ok()?,
                from_tag: ack.to_tag()?,
                to_tag: ack.from_tag(),
                via_branch: None,
                sdp,
                source,
            })
            .await
            .ok()
    }

    async fn close(&self, ended: &Ended) {
        let totals = match &self.media {
            Some(m) if ended.info.relay.is_some() => {
                m.delete(&ended.info.call_id, &ended.info.from_tag).await
            }
            _ => None,
        };
        metrics::counter!("voxline_calls_total", "status" => status_class(ended.status))
            .increment(1);
        if let Some(r) = &self.recorder {
            r.record(ended, totals.as_ref());
        }
    }

    /// Ends dialogs past their maximum duration and dialogs whose media
    /// stopped, sending BYE on both legs. Runs until the core stops.
    pub async fn run_maintenance(self: Arc<Self>, core: Arc<Core>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            for t in self.dialogs.expired(now) {
                self.tear_down(&core, t).await;
            }
            for info in self.dialogs.quiet(now) {
                let Some(media) = &self.media else { break };
                if info.relay.is_none() {
                    continue;
                }
                if media.media_active(&info.call_id, &info.from_tag).await == Some(false)
                    && let Some(t) =
                        self.dialogs
                            .teardown(&info.call_id, &info.from_tag, "no-media", now_ms())
                {
                    self.tear_down(&core, t).await;
                }
            }
        }
    }

    async fn tear_down(&self, core: &Arc<Core>, t: Teardown) {
        tracing::info!(call_id = %t.ended.info.call_id, reason = ?t.ended.hangup, "ending call");
        if t.callee.is_some() {
            DIALOGS.confirmed.decrement(1.0);
            send_bye(core, &t.ended.info, &t.caller);
            if let Some(callee) = &t.callee {
                send_bye(core, &t.ended.info, callee);
            }
        } else {
            DIALOGS.early.decrement(1.0);
        }
        self.close(&t.ended).await;
    }

    /// Flushes the call records (node shutdown).
    pub async fn shutdown(&self) {
        if let Some(r) = &self.recorder {
            r.flush().await;
        }
    }

    /// The calls in progress (admin API).
    pub fn list(&self) -> Vec<DialogInfo> {
        self.dialogs.list()
    }
}

/// Why [`CallControl::begin`] refused a call (the response was not sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A concurrent-call limit.
    Limit(LimitExceeded),
    /// No relay could anchor the media (answer 503).
    NoRelay,
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

fn sip_aor(u: &SipUri<'_>) -> String {
    match u.user_decoded() {
        Some(user) => format!("{user}@{}", u.host_str.to_ascii_lowercase()),
        None => u.host_str.to_ascii_lowercase(),
    }
}

fn aor_of(a: Option<String>) -> String {
    a.unwrap_or_default()
}

fn contact_uri(msg: &Message) -> Option<String> {
    msg.contacts()
        .flatten()
        .find_map(|c| c.address().map(|a| a.uri.as_str().to_owned()))
}

/// The two legs of a dialog confirmed by `resp` (RFC 3261 §12.1): the
/// caller's (for a BYE towards it: its Contact, the Record-Route entries
/// above ours reversed) and the callee's (its Contact, the entries below ours).
fn legs(invite: &Message, resp: &Message, branch_peer: &Peer, core: &Core) -> (Leg, Leg) {
    let rr: Vec<String> = resp
        .record_routes()
        .flatten()
        .map(|r| format!("<{}>", r.uri.as_str()))
        .collect();
    let ours: Vec<bool> = resp
        .record_routes()
        .flatten()
        .map(|r| r.uri.as_sip().is_some_and(|u| core.identity().is_self(u)))
        .collect();
    let first_ours = ours.iter().position(|&o| o);
    let last_ours = ours.iter().rposition(|&o| o);
    let (above, below) = match (first_ours, last_ours) {
        (Some(f), Some(l)) => (rr[..f].to_vec(), rr[l + 1..].to_vec()),
        _ => (Vec::new(), rr.clone()),
    };
    let caller_routes: Vec<String> = above.into_iter().rev().collect();
    let from = invite
        .header(HeaderName::From)
        .unwrap_or_default()
        .to_owned();
    let to = resp.header(HeaderName::To).unwrap_or_default().to_owned();
    let source = invite_source(invite);
    let caller = Leg {
        request_uri: contact_uri(invite).unwrap_or_default(),
        next_hop: first_route_addr(&caller_routes).unwrap_or(source.0),
        transport: source.1,
        routes: caller_routes,
        from: to.clone(),
        to: from.clone(),
        cseq: 0,
    };
    let callee = Leg {
        request_uri: contact_uri(resp).unwrap_or_default(),
        next_hop: first_route_addr(&below).unwrap_or(branch_peer.addr),
        transport: branch_peer.transport.to_string(),
        routes: below,
        from,
        to,
        cseq: 0,
    };
    (caller, callee)
}

/// Where the INVITE came from, per its top Via (received/rport stamped on
/// arrival).
fn invite_source(invite: &Message) -> (SocketAddr, String) {
    let via = invite.top_via().ok();
    let ip = via
        .as_ref()
        .and_then(|v| v.received_ip().or_else(|| v.host.ip()));
    let port = via.as_ref().map(|v| match v.rport {
        Some(Some(p)) => p,
        _ => v.port.unwrap_or(5060),
    });
    let transport = via
        .as_ref()
        .map_or("udp".to_owned(), |v| v.transport.to_ascii_lowercase());
    match (ip, port) {
        (Some(ip), Some(port)) => (SocketAddr::new(ip, port), transport),
        _ => (SocketAddr::from(([0, 0, 0, 0], 0)), transport),
    }
}

fn first_route_addr(routes: &[String]) -> Option<SocketAddr> {
    let first = routes.first()?;
    let inner = first.trim().trim_start_matches('<').trim_end_matches('>');
    let Ok(Uri::Sip(u)) = Uri::parse(inner) else {
        return None;
    };
    Some(SocketAddr::new(u.host.ip()?, u.port.unwrap_or(5060)))
}

/// Sends a BYE on `leg` (fire and forget: the dialog is over for us).
fn send_bye(core: &Arc<Core>, info: &DialogInfo, leg: &Leg) {
    let peer = Peer {
        addr: leg.next_hop,
        transport: TransportKind::parse(&leg.transport).unwrap_or(TransportKind::Udp),
        connection: None,
        local: None,
    };
    if leg.request_uri.is_empty() {
        return;
    }
    let prepared = core.prepare_request(&peer, None);
    let mut b = RequestBuilder::new(Method::Bye, &leg.request_uri)
        .via(&prepared.via)
        .from(&leg.from)
        .to(&leg.to)
        .call_id(&info.call_id)
        .cseq(leg.cseq)
        .max_forwards(70)
        .header("Reason", "SIP;cause=200;text=\"Call ended by the proxy\"");
    for r in &leg.routes {
        b = b.route(r);
    }
    let bytes: Bytes = b.build();
    match core.send_request_alone(&prepared, bytes, peer) {
        Ok((_, mut events)) => {
            // Drain the events so the transaction can finish; nobody waits.
            tokio::spawn(async move {
                while let Some((_, ev)) = events.recv().await {
                    if matches!(ev, ClientEvent::Terminated) {
                        break;
                    }
                }
            });
        }
        Err(e) => tracing::debug!(error = %e, "BYE not sent"),
    }
}
