//! The calling side: flows of client transactions driven by replies and an explicit clock.
//!
//! A flow is one scenario instance (an OPTIONS, a REGISTER with its optional challenge, or
//! a whole zero-length call: INVITE, ACK, BYE). Flows live in preallocated slots; the slot
//! index, the flow generation and the transaction number are written with fixed widths into
//! the Via branch (`z9hG4bK<slot>.<flow>.<txn>`) and the Call-ID, so a reply is matched to
//! its flow by parsing digits, without any lookup table. Retransmissions follow RFC 3261
//! Timer A (INVITE, doubling from T1 until a provisional reply) and Timer E (non-INVITE,
//! doubling up to T2, T2 after a provisional reply); a transaction without final reply
//! after the timeout (Timer B/F, 64·T1) fails the flow. No I/O happens here: datagrams go
//! to an [`Outbox`].

use crate::digest::{self, Algorithm, Challenge, Credentials};
use crate::message::{self, Message};
use crate::outbox::{Leg, Outbox};
use crate::stats::Stats;
use crate::template::{Field, Template, TemplateError, Values, audio_sdp, parse_decimal, sdp_tail};
use crate::timers::Timers;
use crate::writer::{Writer, WriterFull};
use std::net::SocketAddr;

/// What each flow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// OPTIONS → 200.
    Options,
    /// REGISTER → 200 (a 401 is answered when a password is configured).
    Register,
    /// REGISTER → 401 → REGISTER with Authorization → 200.
    RegisterAuth,
    /// INVITE → 1xx → 200 → ACK → BYE → 200 (a 407 is answered when a password is set).
    Call,
}

impl Scenario {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Options => "options",
            Scenario::Register => "register",
            Scenario::RegisterAuth => "register-auth",
            Scenario::Call => "call",
        }
    }
}

/// RFC 3261 timer values, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// T1, the first retransmission interval (500 ms).
    pub t1_us: u64,
    /// T2, the cap for non-INVITE retransmission intervals (4 s).
    pub t2_us: u64,
    /// Transaction timeout, Timer B/F (64·T1 = 32 s).
    pub timeout_us: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            t1_us: 500_000,
            t2_us: 4_000_000,
            timeout_us: 32_000_000,
        }
    }
}

/// Configuration of one calling side.
#[derive(Debug, Clone)]
pub struct UacConfig {
    /// The scenario.
    pub scenario: Scenario,
    /// SIP domain used in URIs and as the registrar.
    pub domain: String,
    /// Local address written into Via and Contact.
    pub local: SocketAddr,
    /// User name prefix (`u` for callers, `c` for callees); the name is prefix + 8 digits.
    pub user_prefix: String,
    /// First user number.
    pub first_user: u32,
    /// Number of distinct users (flows cycle through them).
    pub users: u32,
    /// First callee number (call scenario).
    pub first_callee: u32,
    /// Number of callees (call scenario).
    pub callees: u32,
    /// Expires of REGISTER.
    pub expires: u32,
    /// Password, or a pattern where `{user}` stands for the user name. `None`: challenges fail.
    pub password: Option<String>,
    /// Preferred digest algorithm.
    pub algorithm: Algorithm,
    /// Timer values.
    pub timing: Timing,
    /// Maximum number of flows outstanding at once.
    pub slots: u32,
    /// Identifies the run in Call-IDs.
    pub run_id: u32,
    /// Socket the requests leave from.
    pub leg: Leg,
}

/// Options of the call scenario beyond plain zero-length calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The INVITE carries an SDP offer (one audio stream, PCMU, at the caller socket's
    /// address), so that a media-anchoring proxy sends its relay an offer (and, with the
    /// callee's SDP answer, an answer and, on BYE, a delete).
    pub sdp: bool,
    /// Calls are held: a flow completes when its 2xx is ACKed and sends no BYE, so the
    /// dialogs stay confirmed on the server.
    pub hold: bool,
    /// Remember the media address of each 2xx's SDP answer (see [`Uac::media`]).
    pub record_media: bool,
}

/// Largest request a slot keeps for retransmission.
pub const REQUEST_MAX: usize = 1400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Options,
    Register,
    Invite,
    Bye,
}

#[derive(Debug, Default)]
struct Slot {
    active: bool,
    flow: u32,
    txn: u16,
    method: Option<Method>,
    cseq: u8,
    authed: bool,
    waiting: bool,
    proceeding: bool,
    retrans_us: u64,
    user: u32,
    peer: u32,
    started_us: u64,
    request: Vec<u8>,
    request_len: usize,
    ack: Vec<u8>,
    ack_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    Retransmit,
    Timeout,
}

#[derive(Debug, Clone, Copy)]
struct TimerRef {
    slot: u32,
    flow: u32,
    txn: u16,
    kind: TimerKind,
}

/// Parses a branch written by this generator into (slot, flow, transaction).
pub fn parse_branch(branch: &[u8]) -> Option<(u32, u32, u16)> {
    let rest = branch.strip_prefix(b"z9hG4bK")?;
    if rest.len() != 8 + 1 + 10 + 1 + 4 || rest.get(8) != Some(&b'.') || rest.get(19) != Some(&b'.')
    {
        return None;
    }
    let slot = u32::try_from(parse_decimal(rest.get(..8)?)?).ok()?;
    let flow = u32::try_from(parse_decimal(rest.get(9..19)?)?).ok()?;
    let txn = u16::try_from(parse_decimal(rest.get(20..24)?)?).ok()?;
    Some((slot, flow, txn))
}

/// Parses a Call-ID written by this generator into (slot, flow).
pub fn parse_call_id(call_id: &[u8]) -> Option<(u32, u32)> {
    if call_id.get(8) != Some(&b'.') || call_id.get(19) != Some(&b'.') {
        return None;
    }
    let slot = u32::try_from(parse_decimal(call_id.get(..8)?)?).ok()?;
    let flow = u32::try_from(parse_decimal(call_id.get(9..19)?)?).ok()?;
    Some((slot, flow))
}

/// The calling side of a run.
#[derive(Debug)]
pub struct Uac {
    cfg: UacConfig,
    initial: Template,
    slots: Vec<Slot>,
    free: Vec<u32>,
    timers: Timers<TimerRef>,
    next_user: u64,
    outstanding: usize,
    local: String,
    call_id_suffix: String,
    tail: Vec<u8>,
    options: CallOptions,
    /// With [`CallOptions::record_media`]: (slot, flow, media address of the 2xx's SDP)
    /// of every answered call, in answer order.
    pub media: Vec<(u32, u32, SocketAddr)>,
    /// Counters and latencies.
    pub stats: Stats,
}

impl Uac {
    /// Builds the calling side and compiles its request template.
    pub fn new(cfg: UacConfig) -> Result<Uac, TemplateError> {
        let local = cfg.local.to_string();
        let call_id_suffix = format!(".{:08x}@loadgen", cfg.run_id);
        let d = &cfg.domain;
        let p = &cfg.user_prefix;
        let via =
            format!("Via: SIP/2.0/UDP {local};branch=z9hG4bK{{slot}}.{{flow}}.{{txn}};rport\r\n");
        let common = format!(
            "Max-Forwards: 70\r\nFrom: <sip:{p}{{user}}@{d}>;tag={{slot}}.{{flow}}\r\nCall-ID: {{slot}}.{{flow}}{call_id_suffix}\r\n"
        );
        let text = match cfg.scenario {
            Scenario::Options => format!(
                "OPTIONS sip:{d} SIP/2.0\r\n{via}{common}To: <sip:{d}>\r\nCSeq: {{cseq}} OPTIONS\r\nContact: <sip:{p}{{user}}@{local}>\r\nUser-Agent: voxline-loadgen\r\n"
            ),
            Scenario::Register | Scenario::RegisterAuth => format!(
                "REGISTER sip:{d} SIP/2.0\r\n{via}{common}To: <sip:{p}{{user}}@{d}>\r\nCSeq: {{cseq}} REGISTER\r\nContact: <sip:{p}{{user}}@{local}>\r\nExpires: {}\r\nUser-Agent: voxline-loadgen\r\n",
                cfg.expires
            ),
            Scenario::Call => format!(
                "INVITE sip:c{{peer}}@{d} SIP/2.0\r\n{via}{common}To: <sip:c{{peer}}@{d}>\r\nCSeq: {{cseq}} INVITE\r\nContact: <sip:{p}{{user}}@{local}>\r\nUser-Agent: voxline-loadgen\r\n"
            ),
        };
        let initial = Template::compile(&text)?;
        let n = cfg.slots.max(1);
        let slots = (0..n).map(|_| Slot::default()).collect();
        let free = (0..n).rev().collect();
        Ok(Uac {
            cfg,
            initial,
            slots,
            free,
            timers: Timers::new(),
            next_user: 0,
            outstanding: 0,
            local,
            call_id_suffix,
            tail: b"Content-Length: 0\r\n\r\n".to_vec(),
            options: CallOptions::default(),
            media: Vec::new(),
            stats: Stats::new(),
        })
    }

    /// Sets the call options (call scenario only; other scenarios ignore them).
    pub fn set_call_options(&mut self, options: CallOptions) {
        if self.cfg.scenario != Scenario::Call {
            return;
        }
        self.options = options;
        if options.sdp {
            self.tail = sdp_tail(&audio_sdp(self.cfg.local, self.cfg.run_id));
        }
    }

    /// Flows currently open.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Earliest timer deadline (µs).
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    fn initial_method(&self) -> Method {
        match self.cfg.scenario {
            Scenario::Options => Method::Options,
            Scenario::Register | Scenario::RegisterAuth => Method::Register,
            Scenario::Call => Method::Invite,
        }
    }

    /// Begins one flow. Returns false (and counts it as blocked) when no slot is free.
    pub fn start_flow(&mut self, now_us: u64, out: &mut Outbox) -> bool {
        let Some(idx) = self.free.pop() else {
            self.stats.counters.flows_blocked += 1;
            return false;
        };
        let users = u64::from(self.cfg.users.max(1));
        let callees = u64::from(self.cfg.callees.max(1));
        let method = self.initial_method();
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return false;
        };
        slot.active = true;
        slot.flow = slot.flow.wrapping_add(1);
        slot.txn = 0;
        slot.method = Some(method);
        slot.cseq = 1;
        slot.authed = false;
        slot.ack_len = 0;
        slot.user = self.cfg.first_user + (self.next_user % users) as u32;
        slot.peer = self.cfg.first_callee + (self.next_user % callees) as u32;
        slot.started_us = now_us;
        self.next_user += 1;
        self.outstanding += 1;
        self.stats.counters.flows_started += 1;
        self.send_initial(idx, now_us, None, out);
        true
    }

    fn values(&self, idx: u32) -> Values {
        let s = self.slot(idx);
        Values::default()
            .with(Field::Slot, u64::from(idx))
            .with(Field::Flow, u64::from(s.map_or(0, |s| s.flow)))
            .with(Field::Txn, u64::from(s.map_or(0, |s| s.txn)))
            .with(Field::User, u64::from(s.map_or(0, |s| s.user)))
            .with(Field::Peer, u64::from(s.map_or(0, |s| s.peer)))
            .with(Field::CSeq, u64::from(s.map_or(1, |s| s.cseq)))
    }

    fn slot(&self, idx: u32) -> Option<&Slot> {
        self.slots.get(idx as usize)
    }

    /// Sends the scenario's initial request (again with credentials when `auth` is given)
    /// as a new transaction of the slot's flow.
    fn send_initial(
        &mut self,
        idx: u32,
        now_us: u64,
        auth: Option<(&Challenge<'_>, bool)>,
        out: &mut Outbox,
    ) {
        let Some(s) = self.slots.get_mut(idx as usize) else {
            return;
        };
        s.txn = s.txn.wrapping_add(1) % 10_000;
        let (user, peer, flow) = (s.user, s.peer, s.flow);
        let mut auth_buf = [0u8; 1024];
        let mut auth_len = 0;
        if let Some((ch, proxy)) = auth {
            match self.write_auth(&mut auth_buf, user, peer, idx, flow, ch, proxy) {
                Ok(n) => auth_len = n,
                Err(_) => {
                    self.finish(idx, now_us, Outcome::Failed);
                    return;
                }
            }
        }
        let values = self.values(idx);
        let extra: &[&[u8]] = if auth_len > 0 {
            &[&auth_buf[..auth_len]]
        } else {
            &[]
        };
        let Some(s) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if s.request.len() < REQUEST_MAX {
            s.request.resize(REQUEST_MAX, 0);
        }
        match self
            .initial
            .render_with_tail(&values, extra, &self.tail, &mut s.request)
        {
            Ok(n) => s.request_len = n,
            Err(_) => {
                self.finish(idx, now_us, Outcome::Failed);
                return;
            }
        }
        out.push_bytes(self.cfg.leg, &s.request[..s.request_len]);
        self.stats.counters.requests_sent += 1;
        self.arm_transaction(idx, now_us);
    }

    fn arm_transaction(&mut self, idx: u32, now_us: u64) {
        let t1 = self.cfg.timing.t1_us;
        let timeout = self.cfg.timing.timeout_us;
        let Some(s) = self.slots.get_mut(idx as usize) else {
            return;
        };
        s.waiting = true;
        s.proceeding = false;
        s.retrans_us = t1;
        let r = TimerRef {
            slot: idx,
            flow: s.flow,
            txn: s.txn,
            kind: TimerKind::Retransmit,
        };
        self.timers.arm(now_us, t1, r);
        self.timers.arm(
            now_us,
            timeout,
            TimerRef {
                kind: TimerKind::Timeout,
                ..r
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn write_auth(
        &self,
        buf: &mut [u8],
        user: u32,
        peer: u32,
        idx: u32,
        flow: u32,
        ch: &Challenge<'_>,
        proxy: bool,
    ) -> Result<usize, WriterFull> {
        let prefix = self.cfg.user_prefix.as_bytes();
        let mut name_buf = [0u8; 64];
        let mut name = Writer::new(&mut name_buf);
        name.put(prefix)?;
        name.put_padded(u64::from(user), 8)?;
        let mut pw_buf = [0u8; 256];
        let mut pw = Writer::new(&mut pw_buf);
        let pattern = self.cfg.password.as_deref().unwrap_or("").as_bytes();
        for part in pattern.split_inclusive(|&b| b == b'}') {
            if let Some(before) = part.strip_suffix(b"{user}") {
                pw.put(before)?;
                pw.put(name.written())?;
            } else {
                pw.put(part)?;
            }
        }
        let mut uri_buf = [0u8; 256];
        let mut uri = Writer::new(&mut uri_buf);
        let method: &[u8] = match self.initial_method() {
            Method::Invite => {
                uri.put(b"sip:c")?;
                uri.put_padded(u64::from(peer), 8)?;
                uri.put(b"@")?;
                uri.put(self.cfg.domain.as_bytes())?;
                b"INVITE"
            }
            Method::Options => {
                uri.put(b"sip:")?;
                uri.put(self.cfg.domain.as_bytes())?;
                b"OPTIONS"
            }
            Method::Register | Method::Bye => {
                uri.put(b"sip:")?;
                uri.put(self.cfg.domain.as_bytes())?;
                b"REGISTER"
            }
        };
        let mut cnonce_buf = [0u8; 18];
        let mut cnonce = Writer::new(&mut cnonce_buf);
        cnonce.put_padded(u64::from(idx), 8)?;
        cnonce.put_padded(u64::from(flow), 10)?;
        let cr = Credentials {
            username: name.written(),
            password: pw.written(),
            method,
            uri: uri.written(),
            cnonce: cnonce.written(),
            nc: 1,
        };
        let mut w = Writer::new(buf);
        digest::write_authorization(&mut w, proxy, ch, &cr)?;
        Ok(w.len())
    }

    /// Handles one datagram received on this side's socket.
    pub fn on_datagram(&mut self, now_us: u64, data: &[u8], out: &mut Outbox) {
        match message::parse(data) {
            Ok(m) if m.status().is_some() => self.on_response(now_us, &m, out),
            Ok(_) => self.stats.counters.unmatched += 1,
            Err(_) => self.stats.counters.parse_errors += 1,
        }
    }

    /// Handles one parsed response.
    pub fn on_response(&mut self, now_us: u64, m: &Message<'_>, out: &mut Outbox) {
        let Some(code) = m.status() else {
            return;
        };
        self.stats.counters.reply(code);
        let Some((idx, flow, txn)) = parse_branch(m.branch) else {
            self.stats.counters.unmatched += 1;
            return;
        };
        let Some(s) = self.slots.get(idx as usize) else {
            self.stats.counters.unmatched += 1;
            return;
        };
        if !s.active || s.flow != flow {
            self.stats.counters.duplicate_replies += 1;
            // A held call's 2xx retransmitted (its ACK was lost): ACK it again.
            if self.options.hold
                && s.flow == flow
                && (200..300).contains(&code)
                && m.cseq_method == b"INVITE"
                && s.ack_len > 0
            {
                out.push_bytes(self.cfg.leg, &s.ack[..s.ack_len]);
                self.stats.counters.retransmissions += 1;
            }
            return;
        }
        if s.txn != txn || !s.waiting {
            // A retransmitted final response (or a late provisional one). A 2xx to INVITE
            // retransmitted by the callee is answered with the ACK again.
            self.stats.counters.duplicate_replies += 1;
            if (200..300).contains(&code) && m.cseq_method == b"INVITE" && s.ack_len > 0 {
                out.push_bytes(self.cfg.leg, &s.ack[..s.ack_len]);
                self.stats.counters.retransmissions += 1;
            }
            return;
        }
        let method = s.method;
        let authed = s.authed;
        match (method, code) {
            (Some(Method::Invite), 100..=199) => {
                if let Some(s) = self.slots.get_mut(idx as usize) {
                    s.proceeding = true;
                }
            }
            (_, 100..=199) => {
                let t2 = self.cfg.timing.t2_us;
                if let Some(s) = self.slots.get_mut(idx as usize) {
                    s.proceeding = true;
                    s.retrans_us = t2;
                }
            }
            (Some(Method::Invite), 200..=299) => self.answered(idx, now_us, m, out),
            (Some(_), 200..=299) => self.finish(idx, now_us, Outcome::Completed),
            (Some(meth), 401 | 407) if !authed && self.cfg.password.is_some() => {
                let challenge = digest::choose(
                    m.challenges.as_slice().iter().map(|&sp| m.slice(sp)),
                    self.cfg.algorithm,
                );
                if meth == Method::Invite {
                    self.send_failure_ack(idx, m, out);
                }
                match challenge {
                    Some(ch) => {
                        self.stats.counters.challenges_answered += 1;
                        if let Some(s) = self.slots.get_mut(idx as usize) {
                            s.authed = true;
                            s.cseq = s.cseq.saturating_add(1);
                        }
                        self.send_initial(idx, now_us, Some((&ch, code == 407)), out);
                    }
                    None => self.finish(idx, now_us, Outcome::Failed),
                }
            }
            (meth, _) => {
                if meth == Some(Method::Invite) {
                    self.send_failure_ack(idx, m, out);
                }
                self.finish(idx, now_us, Outcome::Failed);
            }
        }
    }

    /// ACK for a non-2xx final response to INVITE (same branch, RFC 3261 §17.1.1.3).
    fn send_failure_ack(&mut self, idx: u32, m: &Message<'_>, out: &mut Outbox) {
        let Some(s) = self.slots.get(idx as usize) else {
            return;
        };
        let (flow, txn, user, peer, cseq) = (s.flow, s.txn, s.user, s.peer, s.cseq);
        let leg = self.cfg.leg;
        let r = out.push(leg, |buf| -> Result<usize, WriterFull> {
            let mut w = Writer::new(buf);
            w.put(b"ACK sip:c")?;
            w.put_padded(u64::from(peer), 8)?;
            w.put(b"@")?;
            w.put(self.cfg.domain.as_bytes())?;
            w.put(b" SIP/2.0\r\n")?;
            self.write_dialog_headers(&mut w, idx, flow, txn, user, &[], m.to, b"ACK", cseq)?;
            Ok(w.len())
        });
        if r.is_ok() {
            self.stats.counters.requests_sent += 1;
        }
    }

    /// The 2xx to INVITE: ACK it along the route set to the remote target, then send BYE.
    fn answered(&mut self, idx: u32, now_us: u64, m: &Message<'_>, out: &mut Outbox) {
        let Some(s) = self.slots.get(idx as usize) else {
            return;
        };
        let (flow, txn, user, cseq) = (s.flow, s.txn, s.user, s.cseq);
        // The UAC's route set is the Record-Route list in reverse order (RFC 3261 §12.1.2).
        let mut routes: [&[u8]; message::MAX_REPEATED] = [&[]; message::MAX_REPEATED];
        let rr = m.record_routes.as_slice();
        for (dst, &sp) in routes.iter_mut().zip(rr.iter().rev()) {
            *dst = m.slice(sp);
        }
        let routes = &routes[..rr.len().min(message::MAX_REPEATED)];
        let target = if m.contact_uri.is_empty() {
            None
        } else {
            Some(m.contact_uri)
        };
        let Some(target) = target else {
            self.finish(idx, now_us, Outcome::Failed);
            return;
        };
        if self.options.record_media
            && let Some(addr) = message::sdp_audio_addr(m.body())
        {
            self.media.push((idx, flow, addr));
        }
        let ack_txn = (txn + 1) % 10_000;
        let bye_txn = (txn + 2) % 10_000;
        let mut ack = [0u8; REQUEST_MAX];
        let mut bye = [0u8; REQUEST_MAX];
        let built = (|| -> Result<(usize, usize), WriterFull> {
            let mut w = Writer::new(&mut ack);
            w.put(b"ACK ")?;
            w.put(target)?;
            w.put(b" SIP/2.0\r\n")?;
            self.write_dialog_headers(
                &mut w, idx, flow, ack_txn, user, routes, m.to, b"ACK", cseq,
            )?;
            let a = w.len();
            let mut w = Writer::new(&mut bye);
            w.put(b"BYE ")?;
            w.put(target)?;
            w.put(b" SIP/2.0\r\n")?;
            self.write_dialog_headers(
                &mut w,
                idx,
                flow,
                bye_txn,
                user,
                routes,
                m.to,
                b"BYE",
                cseq.saturating_add(1),
            )?;
            Ok((a, w.len()))
        })();
        let Ok((ack_len, bye_len)) = built else {
            self.finish(idx, now_us, Outcome::Failed);
            return;
        };
        let leg = self.cfg.leg;
        let Some(s) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if s.ack.len() < REQUEST_MAX {
            s.ack.resize(REQUEST_MAX, 0);
        }
        if s.request.len() < REQUEST_MAX {
            s.request.resize(REQUEST_MAX, 0);
        }
        s.ack[..ack_len].copy_from_slice(&ack[..ack_len]);
        s.ack_len = ack_len;
        if self.options.hold {
            out.push_bytes(leg, &s.ack[..ack_len]);
            self.stats.counters.requests_sent += 1;
            self.finish(idx, now_us, Outcome::Completed);
            return;
        }
        s.request[..bye_len].copy_from_slice(&bye[..bye_len]);
        s.request_len = bye_len;
        s.method = Some(Method::Bye);
        s.txn = bye_txn;
        s.cseq = s.cseq.saturating_add(1);
        out.push_bytes(leg, &s.ack[..ack_len]);
        out.push_bytes(leg, &s.request[..bye_len]);
        self.stats.counters.requests_sent += 2;
        self.arm_transaction(idx, now_us);
    }

    #[allow(clippy::too_many_arguments)]
    fn write_dialog_headers(
        &self,
        w: &mut Writer<'_>,
        idx: u32,
        flow: u32,
        txn: u16,
        user: u32,
        routes: &[&[u8]],
        to: &[u8],
        method: &[u8],
        cseq: u8,
    ) -> Result<(), WriterFull> {
        w.put(b"Via: SIP/2.0/UDP ")?;
        w.put(self.local.as_bytes())?;
        w.put(b";branch=z9hG4bK")?;
        w.put_padded(u64::from(idx), 8)?;
        w.put(b".")?;
        w.put_padded(u64::from(flow), 10)?;
        w.put(b".")?;
        w.put_padded(u64::from(txn), 4)?;
        w.put(b";rport\r\n")?;
        if !routes.is_empty() {
            w.put(b"Route: ")?;
            for (i, r) in routes.iter().enumerate() {
                if i > 0 {
                    w.put(b", ")?;
                }
                w.put(r)?;
            }
            w.put(b"\r\n")?;
        }
        w.put(b"Max-Forwards: 70\r\nFrom: <sip:")?;
        w.put(self.cfg.user_prefix.as_bytes())?;
        w.put_padded(u64::from(user), 8)?;
        w.put(b"@")?;
        w.put(self.cfg.domain.as_bytes())?;
        w.put(b">;tag=")?;
        w.put_padded(u64::from(idx), 8)?;
        w.put(b".")?;
        w.put_padded(u64::from(flow), 10)?;
        w.put(b"\r\nTo: ")?;
        w.put(to)?;
        w.put(b"\r\nCall-ID: ")?;
        w.put_padded(u64::from(idx), 8)?;
        w.put(b".")?;
        w.put_padded(u64::from(flow), 10)?;
        w.put(self.call_id_suffix.as_bytes())?;
        w.put(b"\r\nCSeq: ")?;
        w.put_u64(u64::from(cseq))?;
        w.put(b" ")?;
        w.put(method)?;
        w.put(b"\r\nContent-Length: 0\r\n\r\n")
    }

    /// Fires due timers: retransmissions and transaction timeouts.
    pub fn on_timers(&mut self, now_us: u64, out: &mut Outbox) {
        let t2 = self.cfg.timing.t2_us;
        while let Some(a) = self.timers.pop_due(now_us) {
            let r = a.payload;
            let Some(s) = self.slots.get_mut(r.slot as usize) else {
                continue;
            };
            if !s.active || s.flow != r.flow || s.txn != r.txn || !s.waiting {
                continue;
            }
            match r.kind {
                TimerKind::Retransmit => {
                    let invite = s.method == Some(Method::Invite);
                    if invite && s.proceeding {
                        continue;
                    }
                    out.push_bytes(self.cfg.leg, &s.request[..s.request_len]);
                    self.stats.counters.retransmissions += 1;
                    let next = if invite {
                        s.retrans_us.saturating_mul(2)
                    } else if s.proceeding {
                        t2
                    } else {
                        s.retrans_us.saturating_mul(2).min(t2)
                    };
                    s.retrans_us = next;
                    self.timers.arm(now_us, next, r);
                }
                TimerKind::Timeout => self.finish(r.slot, now_us, Outcome::TimedOut),
            }
        }
    }

    fn finish(&mut self, idx: u32, now_us: u64, outcome: Outcome) {
        let Some(s) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if !s.active {
            return;
        }
        s.active = false;
        s.waiting = false;
        let started = s.started_us;
        self.free.push(idx);
        self.outstanding = self.outstanding.saturating_sub(1);
        let c = &mut self.stats.counters;
        match outcome {
            Outcome::Completed => {
                c.flows_completed += 1;
                self.stats.record_latency(now_us.saturating_sub(started));
            }
            Outcome::Failed => {
                c.flows_failed += 1;
                self.stats
                    .record_failed_latency(now_us.saturating_sub(started));
            }
            Outcome::TimedOut => c.flows_timed_out += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Failed,
    TimedOut,
}

#[cfg(test)]
mod tests;
