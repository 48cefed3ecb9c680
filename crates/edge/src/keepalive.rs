//! NAT keep-alives: which client flows are registered through the edge and
//! when each is due for its next keep-alive, without I/O. Times are
//! milliseconds on a clock the caller chooses.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use voxline_sip::{Contact, Message};
use voxline_transaction::Peer;

use crate::config::KeepaliveTargets;
use crate::flow::Flow;

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires_at: u64,
    next_due: u64,
}

/// Registered flows and their keep-alive schedule.
#[derive(Debug)]
pub struct KeepaliveTable {
    flows: HashMap<Flow, Entry>,
    queue: BinaryHeap<Reverse<(u64, FlowKey)>>,
    interval_ms: u64,
    max_flows: usize,
}

/// A heap-orderable copy of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey(u8, std::net::SocketAddr, std::net::SocketAddr);

impl FlowKey {
    fn of(f: &Flow) -> Self {
        FlowKey(f.transport as u8, f.remote, f.local)
    }
}

impl KeepaliveTable {
    /// A table sending every `interval_ms`, keeping at most `max_flows`.
    pub fn new(interval_ms: u64, max_flows: usize) -> Self {
        KeepaliveTable {
            flows: HashMap::new(),
            queue: BinaryHeap::new(),
            interval_ms: interval_ms.max(1),
            max_flows,
        }
    }

    /// Flows kept.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is kept.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// A REGISTER from `flow` was accepted for `expires_secs` (0: removed).
    pub fn on_registered(&mut self, flow: Flow, expires_secs: u32, now: u64) {
        if expires_secs == 0 {
            self.flows.remove(&flow);
            return;
        }
        let expires_at = now.saturating_add(u64::from(expires_secs) * 1000);
        if let Some(e) = self.flows.get_mut(&flow) {
            e.expires_at = expires_at;
            return;
        }
        if self.flows.len() >= self.max_flows {
            return;
        }
        let next_due = now.saturating_add(self.interval_ms);
        self.flows.insert(
            flow,
            Entry {
                expires_at,
                next_due,
            },
        );
        self.queue.push(Reverse((next_due, FlowKey::of(&flow))));
    }

    /// The flows due for a keep-alive at `now` (each is rescheduled);
    /// expired ones are dropped.
    pub fn due(&mut self, now: u64) -> Vec<Flow> {
        let mut out = Vec::new();
        while let Some(Reverse((due, key))) = self.queue.peek().copied() {
            if due > now {
                break;
            }
            self.queue.pop();
            let flow = Flow {
                transport: transport_of(key.0),
                remote: key.1,
                local: key.2,
            };
            let Some(e) = self.flows.get_mut(&flow) else {
                continue;
            };
            if e.next_due != due {
                continue;
            }
            if e.expires_at <= now {
                self.flows.remove(&flow);
                continue;
            }
            e.next_due = now.saturating_add(self.interval_ms);
            self.queue.push(Reverse((e.next_due, key)));
            out.push(flow);
        }
        out
    }

    /// When the next keep-alive is due.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((d, _))| *d)
    }
}

fn transport_of(code: u8) -> voxline_transaction::TransportKind {
    use voxline_transaction::TransportKind as T;
    [T::Udp, T::Tcp, T::Tls, T::Sctp, T::Ws, T::Wss]
        .into_iter()
        .find(|t| *t as u8 == code)
        .unwrap_or(T::Udp)
}

/// Whether a client that sent `register` from `peer` gets keep-alives.
pub fn wants_keepalive(targets: KeepaliveTargets, register: &Message, peer: &Peer) -> bool {
    match targets {
        KeepaliveTargets::All => true,
        KeepaliveTargets::Nated => voxline_registrar::request::behind_nat(register, peer),
    }
}

/// How long the registrar kept the contacts of `request` according to its
/// 2xx `response`: the largest `expires` among them, 0 when they are gone,
/// `None` for a query (no Contact in the request).
pub fn registered_expiry(request: &Message, response: &Message) -> Option<u32> {
    let mut mine: Vec<String> = Vec::new();
    for c in request.contacts().flatten() {
        match c {
            Contact::Wildcard => return Some(0),
            Contact::Address(na) => mine.push(na.uri.as_str().to_owned()),
        }
    }
    if mine.is_empty() {
        return None;
    }
    let mut best = 0;
    for c in response.contacts().flatten() {
        let Contact::Address(na) = c else { continue };
        if mine.iter().any(|m| m == na.uri.as_str())
            && let Some(Ok(e)) = na.expires()
        {
            best = best.max(e);
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use voxline_transaction::TransportKind;

    use super::*;

    fn flow(port: u16) -> Flow {
        Flow {
            transport: TransportKind::Udp,
            remote: format!("198.51.100.7:{port}").parse().unwrap(),
            local: "192.0.2.1:5060".parse().unwrap(),
        }
    }

    #[test]
    fn schedule_refresh_expiry_and_removal() {
        let mut t = KeepaliveTable::new(1000, 10);
        t.on_registered(flow(1), 5, 0);
        t.on_registered(flow(2), 60, 500);
        assert_eq!(t.next_due(), Some(1000));
        assert!(t.due(999).is_empty());
        assert_eq!(t.due(1000), [flow(1)]);
        assert_eq!(t.due(1500), [flow(2)]);
        // Refreshing keeps one schedule.
        t.on_registered(flow(1), 5, 1600);
        assert_eq!(t.due(2000), [flow(1)]);
        assert_eq!(t.len(), 2);
        // flow(1) expires at 6600.
        assert_eq!(t.due(7000), [flow(2)]);
        assert_eq!(t.len(), 1);
        t.on_registered(flow(2), 0, 7100);
        assert!(t.is_empty());
        assert!(t.due(20_000).is_empty());
    }

    #[test]
    fn bounded() {
        let mut t = KeepaliveTable::new(1000, 2);
        for p in 1..=3 {
            t.on_registered(flow(p), 60, 0);
        }
        assert_eq!(t.len(), 2);
    }

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    #[test]
    fn expiry_from_the_registrar_answer() {
        let req = msg(
            "REGISTER sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:a@x>\nCall-ID: c\nCSeq: 1 REGISTER\nContact: <sip:a@10.0.0.5:5060>\nContent-Length: 0\n\n",
        );
        let ok = msg(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:a@x>;tag=2\nCall-ID: c\nCSeq: 1 REGISTER\nContact: <sip:a@10.0.0.9:5060>;expires=3600\nContact: <sip:a@10.0.0.5:5060>;expires=120\nContent-Length: 0\n\n",
        );
        assert_eq!(registered_expiry(&req, &ok), Some(120));
        let gone = msg(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:a@x>;tag=2\nCall-ID: c\nCSeq: 1 REGISTER\nContent-Length: 0\n\n",
        );
        assert_eq!(registered_expiry(&req, &gone), Some(0));
        let query = msg(
            "REGISTER sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:a@x>\nCall-ID: c\nCSeq: 1 REGISTER\nContent-Length: 0\n\n",
        );
        assert_eq!(registered_expiry(&query, &ok), None);
        // The client is behind NAT: its Contact names a private address.
        let peer = Peer::udp("198.51.100.7:40000".parse().unwrap());
        assert!(wants_keepalive(KeepaliveTargets::Nated, &req, &peer));
        let direct = Peer::udp("10.0.0.5:5060".parse().unwrap());
        assert!(!wants_keepalive(KeepaliveTargets::Nated, &req, &direct));
        assert!(wants_keepalive(KeepaliveTargets::All, &req, &direct));
    }
}
