//! One dialog as the table keeps it: fixed-size fields inline and every
//! string in one buffer.
//!
//! A dialog lives as long as its call — hours for some, and a node holds
//! hundreds of thousands — while its twenty-odd strings (Call-ID, tags,
//! the two legs' URIs, route sets, From and To) are written once and read
//! only when the call ends or is listed. Kept as separate `String`s they
//! cost an allocation and a 24-byte header each; packed, a dialog is two
//! allocations: the record and its string buffer.

use std::net::SocketAddr;

use crate::{DialogInfo, DialogState, Leg, NewCall};

/// The strings of a record, by position in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    CallId,
    FromTag,
    ToTag,
    Caller,
    Callee,
    Transport,
    Relay,
    Subscriber,
    Domain,
    CallerUri,
    CallerRoutes,
    CallerTransport,
    CallerFrom,
    CallerTo,
    CalleeUri,
    CalleeRoutes,
    CalleeTransport,
    CalleeFrom,
    CalleeTo,
}

const FIELDS: usize = Field::CalleeTo as usize + 1;

/// The caller's leg fields, in [`Leg`] order (request URI, routes,
/// transport, From, To).
const CALLER_LEG: [Field; 5] = [
    Field::CallerUri,
    Field::CallerRoutes,
    Field::CallerTransport,
    Field::CallerFrom,
    Field::CallerTo,
];
const CALLEE_LEG: [Field; 5] = [
    Field::CalleeUri,
    Field::CalleeRoutes,
    Field::CalleeTransport,
    Field::CalleeFrom,
    Field::CalleeTo,
];

/// Route values of a leg are stored one per line: a header value has no
/// line break once parsed.
const ROUTE_SEPARATOR: char = '\n';

/// Every string of a record in one buffer: field `i` is
/// `buf[ends[i - 1]..ends[i]]`, and is absent (an `Option` that is `None`)
/// when bit `i` of `present` is clear.
#[derive(Debug)]
struct Strings {
    buf: Box<str>,
    ends: [u32; FIELDS],
    present: u32,
}

impl Strings {
    fn build(values: &[Option<&str>; FIELDS]) -> Strings {
        let len: usize = values.iter().flatten().map(|v| v.len()).sum();
        let mut buf = String::with_capacity(len);
        let mut ends = [0u32; FIELDS];
        let mut present = 0u32;
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                buf.push_str(v);
                present |= 1 << i;
            }
            // A dialog's strings come from one SIP message each (64 KiB at
            // most), so the sum stays far below 4 GiB.
            ends[i] = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        }
        Strings {
            buf: buf.into_boxed_str(),
            ends,
            present,
        }
    }

    fn get(&self, f: Field) -> Option<&str> {
        self.at(f as usize)
    }

    fn at(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.buf.get(start..self.ends[i] as usize)
    }

    fn text(&self, f: Field) -> &str {
        self.get(f).unwrap_or("")
    }

    fn all(&self) -> [Option<&str>; FIELDS] {
        std::array::from_fn(|i| self.at(i))
    }

    /// The same strings with some replaced.
    fn with(&self, changes: &[(Field, Option<&str>)]) -> Strings {
        let mut values = self.all();
        for (f, v) in changes {
            values[*f as usize] = *v;
        }
        Strings::build(&values)
    }
}

/// The first hop and CSeq of a leg (its strings are in the buffer).
#[derive(Debug, Clone, Copy)]
struct Hop {
    next_hop: SocketAddr,
    cseq: u32,
}

/// One dialog.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) id: u64,
    pub(super) state: DialogState,
    pub(super) started_ms: u64,
    pub(super) answered_ms: Option<u64>,
    pub(super) last_activity_ms: u64,
    /// Max-duration or ringing deadline, Unix ms.
    pub(super) deadline: u64,
    pub(super) last_media_check: u64,
    /// Highest CSeq seen from the caller and from the callee.
    pub(super) caller_cseq: u32,
    pub(super) callee_cseq: u32,
    source: SocketAddr,
    caller_hop: Hop,
    /// Present once the call is answered.
    callee_hop: Option<Hop>,
    strings: Strings,
}

fn leg_values<'a>(leg: &'a Leg, routes: &'a str) -> [Option<&'a str>; 5] {
    [
        Some(leg.request_uri.as_str()),
        Some(routes),
        Some(leg.transport.as_str()),
        Some(leg.from.as_str()),
        Some(leg.to.as_str()),
    ]
}

fn joined_routes(leg: &Leg) -> String {
    let mut s = String::new();
    for (i, r) in leg.routes.iter().enumerate() {
        if i > 0 {
            s.push(ROUTE_SEPARATOR);
        }
        s.push_str(r);
    }
    s
}

impl Record {
    pub(super) fn new(call: &NewCall, id: u64, now: u64, deadline: u64) -> Record {
        let routes = joined_routes(&call.caller_leg);
        let mut values: [Option<&str>; FIELDS] = [None; FIELDS];
        values[Field::CallId as usize] = Some(&call.call_id);
        values[Field::FromTag as usize] = Some(&call.from_tag);
        values[Field::Caller as usize] = Some(&call.caller);
        values[Field::Callee as usize] = Some(&call.callee);
        values[Field::Transport as usize] = Some(&call.transport);
        values[Field::Subscriber as usize] = call.subscriber.as_deref();
        values[Field::Domain as usize] = call.domain.as_deref();
        for (f, v) in CALLER_LEG.iter().zip(leg_values(&call.caller_leg, &routes)) {
            values[*f as usize] = v;
        }
        Record {
            id,
            state: DialogState::Early,
            started_ms: now,
            answered_ms: None,
            last_activity_ms: now,
            deadline,
            last_media_check: now,
            caller_cseq: call.cseq,
            callee_cseq: 0,
            source: call.source,
            caller_hop: Hop {
                next_hop: call.caller_leg.next_hop,
                cseq: call.caller_leg.cseq,
            },
            callee_hop: None,
            strings: Strings::build(&values),
        }
    }

    pub(super) fn call_id(&self) -> &str {
        self.strings.text(Field::CallId)
    }

    pub(super) fn caller_tag(&self) -> &str {
        self.strings.text(Field::FromTag)
    }

    pub(super) fn to_tag(&self) -> Option<&str> {
        self.strings.get(Field::ToTag)
    }

    pub(super) fn subscriber(&self) -> Option<&str> {
        self.strings.get(Field::Subscriber)
    }

    pub(super) fn domain(&self) -> Option<&str> {
        self.strings.get(Field::Domain)
    }

    /// Whether this dialog is the one of `call_id` with tag `tag` on the
    /// caller's side.
    pub(super) fn is(&self, call_id: &str, from_tag: &str) -> bool {
        self.call_id() == call_id && self.caller_tag() == from_tag
    }

    pub(super) fn set_relay(&mut self, relay: &str) {
        self.strings = self.strings.with(&[(Field::Relay, Some(relay))]);
    }

    pub(super) fn set_caller_leg(&mut self, leg: &Leg) {
        let routes = joined_routes(leg);
        let changes: Vec<(Field, Option<&str>)> = CALLER_LEG
            .iter()
            .copied()
            .zip(leg_values(leg, &routes))
            .collect();
        self.strings = self.strings.with(&changes);
        self.caller_hop = Hop {
            next_hop: leg.next_hop,
            cseq: leg.cseq,
        };
    }

    /// The callee answered with tag `to_tag`.
    pub(super) fn confirm(&mut self, to_tag: &str, leg: &Leg, now: u64) {
        let routes = joined_routes(leg);
        let mut changes: Vec<(Field, Option<&str>)> = CALLEE_LEG
            .iter()
            .copied()
            .zip(leg_values(leg, &routes))
            .collect();
        changes.push((Field::ToTag, Some(to_tag)));
        self.strings = self.strings.with(&changes);
        self.callee_hop = Some(Hop {
            next_hop: leg.next_hop,
            cseq: leg.cseq,
        });
        self.state = DialogState::Confirmed;
        self.answered_ms = Some(now);
        self.last_activity_ms = now;
    }

    fn leg(&self, fields: &[Field; 5], hop: Hop) -> Leg {
        let s = &self.strings;
        let routes = s.text(fields[1]);
        Leg {
            request_uri: s.text(fields[0]).to_owned(),
            routes: if routes.is_empty() {
                Vec::new()
            } else {
                routes.split(ROUTE_SEPARATOR).map(str::to_owned).collect()
            },
            next_hop: hop.next_hop,
            transport: s.text(fields[2]).to_owned(),
            from: s.text(fields[3]).to_owned(),
            to: s.text(fields[4]).to_owned(),
            cseq: hop.cseq,
        }
    }

    pub(super) fn caller_leg(&self) -> Leg {
        self.leg(&CALLER_LEG, self.caller_hop)
    }

    pub(super) fn callee_leg(&self) -> Option<Leg> {
        self.callee_hop.map(|hop| self.leg(&CALLEE_LEG, hop))
    }

    /// The snapshot the admin API and CDRs see.
    pub(super) fn info(&self) -> DialogInfo {
        let s = &self.strings;
        DialogInfo {
            id: self.id,
            call_id: s.text(Field::CallId).to_owned(),
            from_tag: s.text(Field::FromTag).to_owned(),
            to_tag: s.get(Field::ToTag).map(str::to_owned),
            state: self.state,
            caller: s.text(Field::Caller).to_owned(),
            callee: s.text(Field::Callee).to_owned(),
            source: self.source.to_string(),
            transport: s.text(Field::Transport).to_owned(),
            started_ms: self.started_ms,
            answered_ms: self.answered_ms,
            last_activity_ms: self.last_activity_ms,
            relay: s.get(Field::Relay).map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(routes: &[&str]) -> Leg {
        Leg {
            request_uri: "sip:bob@192.0.2.1:5070".into(),
            routes: routes.iter().map(|r| (*r).to_owned()).collect(),
            next_hop: "192.0.2.1:5070".parse().unwrap(),
            transport: "tcp".into(),
            from: "<sip:alice@example.com>;tag=a".into(),
            to: "<sip:bob@example.com>;tag=b".into(),
            cseq: 7,
        }
    }

    fn call() -> NewCall {
        NewCall {
            call_id: "c1@host".into(),
            from_tag: "ft".into(),
            caller: "alice@example.com".into(),
            callee: "bob@example.com".into(),
            source: "192.0.2.9:5062".parse().unwrap(),
            transport: "udp".into(),
            subscriber: None,
            domain: Some("example.com".into()),
            cseq: 10,
            caller_leg: leg(&[]),
        }
    }

    #[test]
    fn strings_and_absent_fields_read_back() {
        let r = Record::new(&call(), 3, 1_000, 9_000);
        assert!(r.is("c1@host", "ft"));
        assert!(!r.is("c1@host", "f"));
        assert_eq!(r.to_tag(), None);
        assert_eq!(r.subscriber(), None);
        assert_eq!(r.domain(), Some("example.com"));
        assert_eq!(r.caller_leg(), leg(&[]));
        assert_eq!(r.callee_leg(), None);
        let info = r.info();
        assert_eq!(info.source, "192.0.2.9:5062");
        assert_eq!(info.relay, None);
        assert_eq!(info.state, DialogState::Early);
    }

    #[test]
    fn empty_strings_are_present_not_absent() {
        let mut c = call();
        c.subscriber = Some(String::new());
        let r = Record::new(&c, 1, 0, 0);
        assert_eq!(r.subscriber(), Some(""));
    }

    #[test]
    fn updates_keep_the_other_fields() {
        let mut r = Record::new(&call(), 3, 1_000, 9_000);
        r.set_relay("relay-a");
        let callee = leg(&["<sip:p1;lr>", "<sip:p2;lr>"]);
        r.confirm("tt", &callee, 2_000);
        let caller = leg(&["<sip:edge;lr>"]);
        r.set_caller_leg(&caller);
        assert_eq!(r.callee_leg(), Some(callee));
        assert_eq!(r.caller_leg(), caller);
        let info = r.info();
        assert_eq!(info.to_tag.as_deref(), Some("tt"));
        assert_eq!(info.relay.as_deref(), Some("relay-a"));
        assert_eq!(info.call_id, "c1@host");
        assert_eq!(info.answered_ms, Some(2_000));
        assert_eq!(info.state, DialogState::Confirmed);
    }
}
