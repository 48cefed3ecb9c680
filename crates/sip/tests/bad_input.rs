//! Hostile input never panics and gets a typed error, and a 400 when a
//! response can be addressed.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use voxline_sip::{
    HeaderName, Limits, Message, ParseError, StreamEvent, StreamFramer, ValidationPolicy,
    error_response, validate_request,
};

const HEAD: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKbad\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: bad@x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n";

fn parse(s: &[u8]) -> Result<Message, ParseError> {
    Message::parse(Bytes::copy_from_slice(s))
}

#[test]
fn malformed_datagram() {
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"\xff\xfe\xfd",
        b"INVITE",
        b"SIP/2.0",
        b" \r\n",
        b":",
        b"\r\n\r\n\r\n",
    ] {
        assert!(parse(junk).is_err(), "{junk:?}");
        voxline_sip::exercise(junk);
    }
}

#[test]
fn half_message() {
    let full = format!("{HEAD}Content-Length: 10\r\n\r\n0123456789");
    for cut in 0..full.len() {
        let _ = parse(&full.as_bytes()[..cut]);
        let mut f = StreamFramer::new(Limits::default());
        f.push(&full.as_bytes()[..cut]);
        assert_eq!(f.next_event(), Ok(None), "cut {cut}");
    }
    // A datagram cut inside the body: Content-Length lies, answered with 400.
    let cut = &full.as_bytes()[..full.len() - 3];
    let err = parse(cut).unwrap_err();
    assert_eq!(
        err,
        ParseError::BodyTruncated {
            declared: 10,
            available: 7
        }
    );
    let resp = parse(&error_response(cut, &err, Some("t")).unwrap()).unwrap();
    assert_eq!(resp.status(), Some(400));
}

#[test]
fn header_of_64_kib() {
    let big = format!(
        "{HEAD}X-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert!(matches!(
        parse(big.as_bytes()),
        Err(ParseError::TooLarge { .. })
    ));
    let mut f = StreamFramer::new(Limits::default());
    f.push(big.as_bytes());
    assert!(matches!(f.next_event(), Err(ParseError::TooLarge { .. })));
    // Within a larger limit it frames fine.
    let lim = Limits {
        max_message_size: 128 * 1024,
        ..Limits::default()
    };
    let m = Message::parse_with(Bytes::from(big), &lim).unwrap();
    assert_eq!(m.header_by_name("x-big").map(str::len), Some(64 * 1024));
}

#[test]
fn nul_bytes() {
    let m = format!("{HEAD}X-Nul: a\0b\r\nContent-Length: 0\r\n\r\n");
    let msg = parse(m.as_bytes()).unwrap();
    // Framed (the line structure is intact) but refused: TEXT has no NUL.
    assert_eq!(msg.header_by_name("X-Nul"), Some("a\0b"));
    let r = validate_request(&msg, &ValidationPolicy::default()).unwrap_err();
    assert_eq!(
        (r.status, r.reason),
        (400, "Bad Request - Control character in header")
    );
    let m = format!("{HEAD}Call-ID\0: x\r\n\r\n");
    assert_eq!(
        parse(m.as_bytes()),
        Err(ParseError::MalformedHeaderLine { line: 8 })
    );
    let m = format!("{HEAD}Content-Length: 0\r\n\r\n").replace("sip:bob@", "sip:b\0b@");
    let msg = parse(m.as_bytes()).unwrap();
    assert_eq!(
        validate_request(&msg, &ValidationPolicy::default())
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn negative_and_lying_content_length() {
    for (cl, body, err) in [
        ("-1", "", ParseError::InvalidContentLength),
        ("1e3", "", ParseError::InvalidContentLength),
        (
            "99999999999999999999999999",
            "",
            ParseError::InvalidContentLength,
        ),
        (
            "50",
            "short",
            ParseError::BodyTruncated {
                declared: 50,
                available: 5,
            },
        ),
    ] {
        let m = format!("{HEAD}Content-Length: {cl}\r\n\r\n{body}");
        assert_eq!(parse(m.as_bytes()), Err(err.clone()), "{cl}");
        let resp = error_response(m.as_bytes(), &err, Some("t")).unwrap();
        assert_eq!(parse(&resp).unwrap().status(), Some(400));
    }
    let m = format!("{HEAD}Content-Length: 2\r\n\r\nabcdef");
    assert_eq!(parse(m.as_bytes()).unwrap().body(), b"ab");
}

#[test]
fn a_thousand_vias() {
    // One Via per line: more lines than the header limit.
    let mut m = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
    for i in 0..1000 {
        m.push_str(&format!("Via: SIP/2.0/UDP h{i};branch=z9hG4bK{i}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    assert_eq!(
        parse(m.as_bytes()),
        Err(ParseError::TooManyHeaders { limit: 256 })
    );
    // A thousand values in one line: frames, every value reads.
    let vias: Vec<String> = (0..1000)
        .map(|i| format!("SIP/2.0/UDP h{i};branch=z9hG4bK{i}"))
        .collect();
    let m = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: {}\r\nContent-Length: 0\r\n\r\n",
        vias.join(",")
    );
    let msg = parse(m.as_bytes()).unwrap();
    assert_eq!(msg.vias().filter(Result::is_ok).count(), 1000);
    assert_eq!(msg.headers_named(HeaderName::Via).count(), 1000);
    voxline_sip::exercise(m.as_bytes());
}

#[test]
fn invalid_utf8() {
    let m = format!("{HEAD}Subject: caf\u{e9}\r\nContent-Length: 0\r\n\r\n").into_bytes();
    assert!(parse(&m).is_ok());
    let mut bad = m.clone();
    let pos = bad.iter().position(|&b| b == 0xc3).unwrap();
    bad[pos] = 0xff;
    assert_eq!(parse(&bad), Err(ParseError::InvalidUtf8));
    let resp = error_response(&bad, &ParseError::InvalidUtf8, Some("t")).unwrap();
    let resp = parse(&resp).unwrap();
    assert_eq!(resp.reason(), Some("Bad Request - Invalid UTF-8"));
    // Invalid UTF-8 in the body is fine.
    let m = format!("{HEAD}Content-Length: 2\r\n\r\n").into_bytes();
    let mut with_body = m.clone();
    with_body.extend_from_slice(b"\xff\xfe");
    assert_eq!(parse(&with_body).unwrap().body(), b"\xff\xfe");
}

#[test]
fn stream_garbage_is_fatal_but_does_not_panic() {
    let mut f = StreamFramer::new(Limits::default());
    f.push(b"\x00\x00\x00\r\n\r\n");
    assert!(f.next_event().is_err());
    let mut f = StreamFramer::new(Limits::default());
    let m = format!("{HEAD}Content-Length: 0\r\n\r\n");
    for _ in 0..100 {
        f.push(m.as_bytes());
    }
    let mut n = 0;
    while let Some(ev) = f.next_event().unwrap() {
        assert!(matches!(ev, StreamEvent::Message(_)));
        n += 1;
    }
    assert_eq!(n, 100);
}
