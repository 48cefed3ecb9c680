//! Tests of the splice editor.

use super::*;
use bytes::Bytes;

const REQ: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa;rport, SIP/2.0/TCP p1.example.com;branch=z9hG4bKb\r\n\
v: SIP/2.0/UDP p0.example.com;branch=z9hG4bKc\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n\
Record-Route: <sip:p0.example.com;lr>\r\n\
Max-Forwards: 10\r\n\
From: <sip:a@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: edit-1\r\n\
CSeq: 1 INVITE\r\n\
X-Drop: me\r\n\
Content-Type: text/plain\r\n\
Content-Length: 5\r\n\
\r\n\
hello";

fn msg(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

fn apply(m: &Message, f: impl FnOnce(&mut Editor<'_>)) -> Message {
    let mut e = m.edit();
    f(&mut e);
    let mut out = BytesMut::new();
    e.write_to(&mut out).unwrap();
    Message::parse(out.freeze()).unwrap()
}

fn branches(m: &Message) -> Vec<String> {
    m.vias()
        .map(|v| v.unwrap().branch.unwrap().to_string())
        .collect()
}

fn routes(m: &Message) -> Vec<String> {
    m.routes()
        .map(|r| r.unwrap().uri.as_str().to_string())
        .collect()
}

#[test]
fn no_edits_is_byte_identical() {
    let m = msg(REQ);
    assert_eq!(apply(&m, |_| {}).as_bytes(), REQ.as_bytes());
}

#[test]
fn push_and_pop_via() {
    let m = msg(REQ);
    let f = apply(&m, |e| {
        e.push_via("SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKnew")
            .push_via("SIP/2.0/UDP 203.0.113.2;branch=z9hG4bKtop");
    });
    assert_eq!(
        branches(&f),
        [
            "z9hG4bKtop",
            "z9hG4bKnew",
            "z9hG4bKa",
            "z9hG4bKb",
            "z9hG4bKc"
        ]
    );
    let f = apply(&m, |e| {
        e.pop_via();
    });
    assert_eq!(branches(&f), ["z9hG4bKb", "z9hG4bKc"]);
    let f = apply(&m, |e| {
        e.pop_via().pop_via();
    });
    assert_eq!(branches(&f), ["z9hG4bKc"]);
    assert!(!String::from_utf8_lossy(f.as_bytes()).contains("Via: \r\n"));
    let f = apply(&m, |e| {
        e.pop_via().pop_via().pop_via();
    });
    assert_eq!(f.count(HeaderName::Via), 0);
    let mut e = m.edit();
    e.pop_via().pop_via().pop_via().pop_via();
    assert_eq!(
        e.to_bytes(),
        Err(EditError::NothingToRemove(HeaderName::Via))
    );
}

#[test]
fn routes_and_strict_routing() {
    let m = msg(REQ);
    let f = apply(&m, |e| {
        e.pop_route();
    });
    assert_eq!(
        routes(&f),
        ["sip:p2.example.com;lr", "sip:p3.example.com;lr"]
    );
    let f = apply(&m, |e| {
        e.last_route_to_request_uri();
    });
    assert_eq!(f.request_uri_str(), Some("sip:p3.example.com;lr"));
    assert_eq!(
        routes(&f),
        ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    );
    let one = msg("BYE sip:a@b SIP/2.0\r\nRoute: <sip:x;lr>, <sip:y>\r\nl: 0\r\n\r\n");
    let f = apply(&one, |e| {
        e.last_route_to_request_uri();
    });
    assert_eq!(f.request_uri_str(), Some("sip:y"));
    assert_eq!(routes(&f), ["sip:x;lr"]);
}

#[test]
fn record_route_path_ruri_max_forwards() {
    let m = msg(REQ);
    let f = apply(&m, |e| {
        e.add_record_route("<sip:203.0.113.1;lr>")
            .add_path("<sip:edge.example.com;lr>")
            .set_request_uri("sip:bob@192.0.2.77:5070")
            .decrement_max_forwards();
    });
    let rr: Vec<_> = f
        .record_routes()
        .map(|r| r.unwrap().uri.as_str().to_string())
        .collect();
    assert_eq!(rr, ["sip:203.0.113.1;lr", "sip:p0.example.com;lr"]);
    assert_eq!(f.paths().count(), 1);
    assert_eq!(f.request_uri_str(), Some("sip:bob@192.0.2.77:5070"));
    assert_eq!(f.max_forwards(), Ok(9));
    let none = msg("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n");
    let f = apply(&none, |e| {
        e.decrement_max_forwards();
    });
    assert_eq!(f.max_forwards(), Ok(70));
    let zero = msg("OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 0\r\n\r\n");
    assert_eq!(
        zero.edit().decrement_max_forwards().to_bytes(),
        Err(EditError::MaxForwardsExhausted)
    );
    let resp = msg("SIP/2.0 200 OK\r\nl: 0\r\n\r\n");
    assert_eq!(
        resp.edit().set_request_uri("sip:x").to_bytes(),
        Err(EditError::NotARequest)
    );
}

#[test]
fn received_and_rport() {
    let m = msg(REQ);
    let f = apply(&m, |e| {
        e.set_via_received(Some("198.51.100.7"), Some(40000));
    });
    let v = f.top_via().unwrap();
    assert_eq!(v.received, Some("198.51.100.7"));
    assert_eq!(v.rport, Some(Some(40000)));
    assert_eq!(branches(&f), ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]);
    // Replacing existing values; rport is not added when absent.
    let m2 = msg(
        "OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;received=1.1.1.1;rport=1;branch=z9hG4bKx\r\nl: 0\r\n\r\n",
    );
    let f = apply(&m2, |e| {
        e.set_via_received(Some("2.2.2.2"), Some(2));
    });
    let v = f.top_via().unwrap();
    assert_eq!(
        (v.received, v.rport, v.branch),
        (Some("2.2.2.2"), Some(Some(2)), Some("z9hG4bKx"))
    );
    let m3 = msg("OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nl: 0\r\n\r\n");
    let f = apply(&m3, |e| {
        e.set_via_received(None, Some(5));
    });
    assert_eq!(f.top_via().unwrap().rport, None);
}

#[test]
fn headers_and_body() {
    let m = msg(REQ);
    let f = apply(&m, |e| {
        e.remove_header_by_name("x-drop")
            .add_header("X-New", "1")
            .replace_header("Call-ID", "edit-2");
    });
    assert_eq!(f.header_by_name("X-Drop"), None);
    assert_eq!(f.header_by_name("X-New"), Some("1"));
    assert_eq!(f.call_id(), Ok("edit-2"));
    assert_eq!(f.count(HeaderName::CallId), 1);
    assert_eq!(f.body(), b"hello");
    let f = apply(&m, |e| {
        e.set_body(Some("application/sdp"), b"v=0\r\n");
    });
    assert_eq!(f.body(), b"v=0\r\n");
    assert_eq!(f.content_length(), Ok(5));
    assert_eq!(f.header(HeaderName::ContentType), Some("application/sdp"));
    assert_eq!(f.count(HeaderName::ContentType), 1);
    let f = apply(&m, |e| {
        e.set_body(None, b"");
    });
    assert_eq!((f.body(), f.content_length()), (&b""[..], Ok(0)));
    let udp = msg("OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\nbody");
    let f = apply(&udp, |e| {
        e.ensure_content_length();
    });
    assert_eq!(f.content_length(), Ok(4));
    assert_eq!(f.body(), b"body");
}

#[test]
fn conflicting_edits_are_reported() {
    let m = msg(REQ);
    let mut e = m.edit();
    e.remove_header(HeaderName::Via).pop_via();
    assert_eq!(e.to_bytes(), Err(EditError::Conflict));
}

#[test]
fn reusable_output_buffer() {
    let m = msg(REQ);
    let mut out = BytesMut::with_capacity(4096);
    for _ in 0..3 {
        m.edit()
            .push_via("SIP/2.0/UDP x;branch=z9hG4bKr")
            .write_to(&mut out)
            .unwrap();
        let first = out.split().freeze();
        assert_eq!(Message::parse(first).unwrap().vias().count(), 4);
    }
}

/// `to_message` must give exactly what framing the edited bytes gives.
fn assert_same_as_reframed(m: &Message, f: impl Fn(&mut Editor<'_>)) {
    let mut e = m.edit();
    f(&mut e);
    let fast = e.to_message().unwrap();
    let slow = Message::parse(e.to_bytes().unwrap()).unwrap();
    assert_eq!(fast.as_bytes(), slow.as_bytes());
    assert_eq!(fast.frame(), slow.frame());
    assert_eq!(fast.top_via().unwrap(), slow.top_via().unwrap());
}

#[test]
fn to_message_shifts_the_index_like_reframing() {
    let m = msg(REQ);
    assert_same_as_reframed(&m, |e| {
        e.set_via_received(Some("198.51.100.7"), Some(40000));
    });
    assert_same_as_reframed(&m, |e| {
        e.set_via_received(Some("2001:db8::1"), None);
    });
    assert_same_as_reframed(&m, |e| {
        e.set_via_received(None, Some(7));
    });
    // Header lines added or removed: framed anew, same result.
    assert_same_as_reframed(&m, |e| {
        e.set_via_received(Some("198.51.100.7"), Some(40000))
            .pop_route()
            .add_record_route("<sip:p9.example.com;lr>")
            .decrement_max_forwards();
    });
    // Leading CRLFs, a received to replace, a response.
    let m = msg(
        "\r\n\r\nREGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;received=192.0.2.1;branch=z9hG4bK1;rport=1\r\nTo: <sip:a@example.com>\r\nFrom: <sip:a@example.com>;tag=x\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n",
    );
    assert_same_as_reframed(&m, |e| {
        e.set_via_received(Some("198.51.100.200"), Some(65535));
    });
    let m = msg(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport\r\nTo: <sip:a@example.com>;tag=y\r\nFrom: <sip:a@example.com>;tag=x\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n",
    );
    assert_same_as_reframed(&m, |e| {
        e.set_via_received(Some("192.0.2.1"), Some(5060));
    });
}

#[test]
fn to_message_over_the_rfc4475_messages() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/rfc4475");
    let mut edited = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "dat") {
            continue;
        }
        let Ok(m) = Message::parse(Bytes::from(std::fs::read(&path).unwrap())) else {
            continue;
        };
        if m.top_via().is_err() {
            continue;
        }
        let mut e = m.edit();
        e.set_via_received(Some("198.51.100.7"), Some(40000));
        let (Ok(fast), Ok(bytes)) = (e.to_message(), e.to_bytes()) else {
            continue;
        };
        let slow = Message::parse(bytes).unwrap();
        assert_eq!(fast.frame(), slow.frame(), "{}", path.display());
        edited += 1;
    }
    assert!(edited > 20, "only {edited} messages edited");
}

/// Top Vias to stamp: (top Via, received, rport).
const STAMP_CASES: [(&str, Option<&str>, Option<u16>); 13] = [
    (
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport",
        Some("192.0.2.7"),
        Some(5099),
    ),
    (
        "SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKa",
        Some("192.0.2.7"),
        Some(5099),
    ),
    (
        "SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKa",
        None,
        Some(7),
    ),
    (
        "SIP/2.0/UDP host.example;branch=z9hG4bKa",
        Some("192.0.2.7"),
        None,
    ),
    (
        "SIP/2.0/UDP host.example;branch=z9hG4bKa;rport",
        Some("2001:db8::9"),
        Some(1),
    ),
    (
        "SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKa;rport;maddr=239.1.1.1;ttl=5",
        Some("192.0.2.7"),
        Some(65535),
    ),
    (
        "SIP/2.0/UDP 10.0.0.1 ; branch = z9hG4bKa ; rport",
        Some("192.0.2.7"),
        Some(5099),
    ),
    (
        "SIP/2.0/UDP a.example;branch=z9hG4bKa;rport, SIP/2.0/UDP b;branch=z9hG4bKb",
        Some("192.0.2.7"),
        Some(5099),
    ),
    ("SIP/2.0/UDP 10.0.0.1:5060", Some("192.0.2.7"), None),
    (
        "SIP/2.0/UDP h;received=1.1.1.1;branch=z9hG4bKx",
        Some("2.2.2.2"),
        None,
    ),
    (
        "SIP/2.0/UDP h;rport=1;branch=z9hG4bKx",
        Some("2.2.2.2"),
        Some(2),
    ),
    (
        "SIP/2.0/UDP h;rport;branch=z9hG4bKx;rport",
        Some("2.2.2.2"),
        Some(2),
    ),
    (
        "SIP/2.0/UDP h;RPORT;branch=z9hG4bKx;Received=3.3.3.3",
        Some("2.2.2.2"),
        Some(2),
    ),
];

#[test]
fn a_stamp_written_by_to_message_parses_as_written() {
    for (via, received, rport) in STAMP_CASES {
        let m = msg(&format!(
            "OPTIONS sip:a SIP/2.0\r\nVia: {via}\r\nFrom: <sip:b>;tag=1\r\nTo: <sip:a>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
        ));
        let f = m
            .edit()
            .set_via_received(received, rport)
            .to_message()
            .unwrap();
        let fresh = Message::parse(Bytes::copy_from_slice(f.as_bytes())).unwrap();
        assert_eq!(f.top_via(), fresh.top_via(), "{via}");
        if received.is_some() {
            assert_eq!(f.top_via().unwrap().received, received, "{via}");
        }
    }
}

fn stamp_case(via: &str) -> Message {
    msg(&format!(
        "OPTIONS sip:a SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP second;branch=z9hG4bK2\r\nFrom: <sip:b>;tag=1\r\nTo: <sip:a>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    ))
}

#[test]
fn a_received_stamp_goes_into_responses_and_forwarded_copies() {
    use crate::{ReceivedStamp, ResponseBuilder};
    for (via, received, rport) in STAMP_CASES {
        let m = stamp_case(via);
        let ip = received.map(|r| r.parse().unwrap());
        let lazy = m.clone().with_received(ReceivedStamp::new(ip, rport));
        // What writing the stamp into the request first gives.
        let eager = m
            .edit()
            .set_via_received(received, rport)
            .to_message()
            .unwrap();
        assert_eq!(
            ResponseBuilder::new(&lazy, 200, "OK").to_tag("t").build(),
            ResponseBuilder::new(&eager, 200, "OK").to_tag("t").build(),
            "{via}"
        );
        let forwarded = |m: &Message| {
            m.edit()
                .push_via("SIP/2.0/UDP proxy;branch=z9hG4bKp")
                .decrement_max_forwards()
                .to_bytes()
                .unwrap()
        };
        assert_eq!(forwarded(&lazy), forwarded(&eager), "{via}");
        // The request itself stays as received.
        assert_eq!(lazy.as_bytes(), m.as_bytes());
        assert_eq!(lazy.top_via(), m.top_via());
    }
    // Without a stamp, a response copies the Vias as received.
    let m = stamp_case("SIP/2.0/UDP h;branch=z9hG4bKx;rport");
    let r = Message::parse(ResponseBuilder::new(&m, 200, "OK").build()).unwrap();
    assert_eq!(r.top_via(), m.top_via());
    assert_eq!(r.vias().count(), 2);
}
