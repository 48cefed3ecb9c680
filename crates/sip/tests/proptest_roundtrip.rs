//! Property tests: generated messages survive build → parse with every
//! value intact, and splice edits re-parse to what was asked.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use voxline_sip::{HeaderName, Message, Method, RequestBuilder, ResponseBuilder};

#[derive(Clone, Debug)]
struct Model {
    method: Method,
    user: String,
    host: String,
    port: Option<u16>,
    vias: Vec<(String, u16, String)>,
    routes: Vec<String>,
    display: Option<String>,
    from_tag: String,
    call_id: String,
    cseq: u32,
    max_forwards: u8,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,15}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
        (0u8..=255, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Register),
        Just(Method::Options),
        Just(Method::Bye),
        Just(Method::Message),
        "[A-Z][A-Z_-]{2,10}".prop_map(|m| Method::parse(&m).unwrap()),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    (
        (
            method(),
            "[a-z0-9+][a-z0-9._+-]{0,12}",
            host(),
            proptest::option::of(1u16..),
        ),
        proptest::collection::vec((host(), 1u16.., "[A-Za-z0-9.-]{1,20}"), 1..4),
        proptest::collection::vec(host(), 0..3),
        (
            proptest::option::of("[ -~&&[^\"\\\\]]{0,8}(\\\\\"|\\\\\\\\)?[ -~&&[^\"\\\\]]{0,8}"),
            token(),
        ),
        (token(), 0u32..=0x7fff_ffff, any::<u8>()),
        proptest::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[!-~][ -~]{0,30}[!-~]"), 0..4),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(
            |(
                (method, user, host, port),
                vias,
                routes,
                (display, from_tag),
                (call_id, cseq, max_forwards),
                extra,
                body,
            )| Model {
                method,
                user,
                host,
                port,
                vias: vias
                    .into_iter()
                    .map(|(h, p, b)| (h, p, format!("z9hG4bK{b}")))
                    .collect(),
                routes: routes
                    .into_iter()
                    .map(|h| format!("<sip:{h};lr>"))
                    .collect(),
                display,
                from_tag,
                call_id,
                cseq,
                max_forwards,
                extra,
                body,
            },
        )
}

fn build(m: &Model) -> Bytes {
    let uri = match m.port {
        Some(p) => format!("sip:{}@{}:{p}", m.user, m.host),
        None => format!("sip:{}@{}", m.user, m.host),
    };
    let vias: Vec<String> = m
        .vias
        .iter()
        .map(|(h, p, b)| format!("SIP/2.0/UDP {h}:{p};branch={b}"))
        .collect();
    let from = match &m.display {
        Some(d) => format!("\"{d}\" <sip:alice@example.com>;tag={}", m.from_tag),
        None => format!("<sip:alice@example.com>;tag={}", m.from_tag),
    };
    let mut b = RequestBuilder::new(m.method.clone(), &uri)
        .from(&from)
        .to("<sip:bob@example.com>")
        .call_id(&m.call_id)
        .cseq(m.cseq)
        .max_forwards(m.max_forwards);
    for v in &vias {
        b = b.via(v);
    }
    for r in &m.routes {
        b = b.route(r);
    }
    for (n, v) in &m.extra {
        b = b.header(n, v);
    }
    if !m.body.is_empty() {
        b = b.body("application/octet-stream", &m.body);
    }
    b.build()
}

fn unescape(d: &str) -> String {
    let mut out = String::new();
    let mut chars = d.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn build_parse_round_trip(m in model()) {
        let bytes = build(&m);
        let msg = Message::parse(bytes.clone()).unwrap();
        prop_assert_eq!(msg.method(), Some(m.method.clone()));
        let ruri = msg.request_uri().unwrap();
        let sip = ruri.as_sip().unwrap();
        prop_assert_eq!(sip.user, Some(m.user.as_str()));
        prop_assert_eq!(sip.host_str, m.host.as_str());
        prop_assert_eq!(sip.port, m.port);
        let vias: Vec<_> = msg.vias().map(|v| v.unwrap()).collect();
        prop_assert_eq!(vias.len(), m.vias.len());
        for (v, (h, p, b)) in vias.iter().zip(&m.vias) {
            prop_assert_eq!(v.host_str, h.as_str());
            prop_assert_eq!(v.port, Some(*p));
            prop_assert_eq!(v.branch, Some(b.as_str()));
        }
        let from = msg.from().unwrap();
        prop_assert_eq!(from.tag(), Some(m.from_tag.as_str()));
        prop_assert_eq!(from.display_name_decoded().map(|d| d.into_owned()), m.display.as_deref().map(unescape));
        prop_assert_eq!(msg.call_id().unwrap(), m.call_id.as_str());
        let cseq = msg.cseq().unwrap();
        prop_assert_eq!(cseq.seq, m.cseq);
        prop_assert_eq!(cseq.method, m.method.clone());
        prop_assert_eq!(msg.max_forwards(), Ok(m.max_forwards));
        prop_assert_eq!(msg.routes().count(), m.routes.len());
        for (n, v) in &m.extra {
            prop_assert!(msg.header_lines_by_name(n).any(|x| x == v));
        }
        prop_assert_eq!(msg.body(), &m.body[..]);
        // Parse → serialize (no edits) → parse is the identity.
        let again = Message::parse(msg.edit().to_bytes().unwrap()).unwrap();
        prop_assert_eq!(again.as_bytes(), &bytes[..]);
        // A response built from it carries the same dialog identifiers.
        let resp = Message::parse(ResponseBuilder::new(&msg, 200, "OK").to_tag("t").build()).unwrap();
        prop_assert_eq!(resp.call_id().unwrap(), m.call_id.as_str());
        prop_assert_eq!(resp.vias().count(), m.vias.len());
        prop_assert_eq!(resp.to_tag(), Some("t"));
    }

    #[test]
    fn edits_reparse_as_asked(m in model(), rport in 1u16.., new_body in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assume!(m.max_forwards > 0);
        let msg = Message::parse(build(&m)).unwrap();
        let mut out = BytesMut::new();
        let mut e = msg.edit();
        e.push_via("SIP/2.0/TCP 203.0.113.5:5060;branch=z9hG4bKpushed")
            .set_via_received(Some("198.51.100.9"), Some(rport))
            .decrement_max_forwards()
            .add_record_route("<sip:203.0.113.5;lr>")
            .set_body(Some("application/x-test"), &new_body);
        if !m.routes.is_empty() {
            e.pop_route();
        }
        e.write_to(&mut out).unwrap();
        let f = Message::parse(out.freeze()).unwrap();
        let vias: Vec<_> = f.vias().map(|v| v.unwrap()).collect();
        prop_assert_eq!(vias.len(), m.vias.len() + 1);
        prop_assert_eq!(vias[0].branch, Some("z9hG4bKpushed"));
        prop_assert_eq!(vias[1].branch, Some(m.vias[0].2.as_str()));
        prop_assert_eq!(vias[1].received, Some("198.51.100.9"));
        prop_assert_eq!(f.max_forwards(), Ok(m.max_forwards - 1));
        prop_assert_eq!(f.routes().count(), m.routes.len().saturating_sub(1));
        prop_assert_eq!(f.record_routes().count(), 1);
        prop_assert_eq!(f.body(), &new_body[..]);
        prop_assert_eq!(f.content_length(), Ok(new_body.len() as u32));
        prop_assert_eq!(f.call_id().unwrap(), m.call_id.as_str());
        prop_assert_eq!(f.count(HeaderName::ContentType), 1);
        // Popping the pushed Via restores the original Via list.
        let back = Message::parse(f.edit().pop_via().to_bytes().unwrap()).unwrap();
        let branches: Vec<_> = back.vias().map(|v| v.unwrap().branch.unwrap().to_string()).collect();
        let orig: Vec<_> = m.vias.iter().map(|v| v.2.clone()).collect();
        prop_assert_eq!(branches, orig);
    }
}

/// `base` with the bytes at the chosen places overwritten.
fn overwritten(base: &[u8], edits: Vec<(prop::sample::Index, u8)>) -> Vec<u8> {
    let mut data = base.to_vec();
    for (at, byte) in edits {
        let i = at.index(data.len());
        data[i] = byte;
    }
    data
}

const ACK: &[u8] = b"ACK sip:b@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: \"A\" <sip:a@example.com>;tag=f1\r\n\
To: <sip:b@example.com>;tag=vx0123456789abcdef\r\n\
Call-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// The To tag read without framing is the one the full parse reads
    /// (checked inside `exercise`), whatever is changed in the ACK.
    #[test]
    fn peeked_ack_to_tag_agrees_with_the_full_parse(
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(
                b":; \t\r\n<>\"=,Tt\xff".to_vec())),
            1..6,
        )
    ) {
        voxline_sip::exercise(&overwritten(ACK, edits));
    }
}

const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKa1;rport\r\n\
Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb2, SIP/2.0/TCP 192.0.2.8\r\n\
f: \"A;tag=no\" <sip:a@example.com;tag=no>;tag=f1\r\n\
To: <sip:bob@example.com>\r\n\
i: c1@192.0.2.1\r\nCSeq: 1 INVITE\r\nTimestamp: 5\r\nContent-Length: 0\r\n\r\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// An INVITE only framed (what overload protection refuses) reads and
    /// is answered as its message is (checked inside `exercise`), whatever
    /// is changed in it.
    #[test]
    fn a_framed_invite_agrees_with_its_message(
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(
                b":; \t\r\n<>\"=,tagTAG\xff".to_vec())),
            1..6,
        )
    ) {
        voxline_sip::exercise(&overwritten(INVITE, edits));
    }
}
