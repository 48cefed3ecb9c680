//! One code path that drives every part of the crate over arbitrary bytes.
//! The fuzz target and the corpus replay test both call it, so CI replays
//! the fuzz corpus without cargo-fuzz. It panics only when an invariant is
//! broken (e.g. an edited message no longer frames).

use bytes::{Bytes, BytesMut};

use crate::builder::{RequestBuilder, ResponseBuilder};
use crate::framed::FramedMessage;
use crate::header_name::HeaderName;
use crate::limits::Limits;
use crate::message::Message;
use crate::stream::StreamFramer;
use crate::validate::{
    ValidationPolicy, check_max_forwards, error_response, validate_request, validate_response,
};

/// Frames `data` as a datagram and as a stream, reads every typed value,
/// validates, edits and re-parses. For fuzzing and corpus replay.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let peeked = crate::peek::peek_ack_to_tag(data);
    let framed = FramedMessage::frame(bytes.clone(), &Limits::DEFAULT);
    match Message::parse(bytes) {
        Ok(msg) => {
            match framed {
                Ok(f) => exercise_framed(&f, &msg),
                Err(e) => panic!("frames as a message, not alone: {e:?}"),
            }
            // The shortcut reads the To tag the full parse reads, when
            // the message has one To header.
            if let Some(tag) = peeked
                && msg.headers_named(HeaderName::To).count() == 1
            {
                assert_eq!(msg.to_tag(), Some(tag), "peeked To tag differs");
            }
            exercise_message(&msg)
        }
        Err(e) => {
            assert!(framed.is_err(), "framed alone but not as a message");
            if let Some(resp) = error_response(data, &e, Some("fz")) {
                let r = Message::parse(resp);
                assert!(r.is_ok(), "error response does not frame: {r:?}");
            }
        }
    }
    exercise_stream(data);
}

/// A datagram only framed reads and answers as its message does.
fn exercise_framed(f: &FramedMessage, msg: &Message) {
    assert_eq!(f.is_request(), msg.is_request());
    assert_eq!(f.method_str(), msg.method_str());
    assert_eq!(f.request_uri_str(), msg.request_uri_str());
    assert_eq!(f.as_bytes(), msg.as_bytes());
    assert_eq!(f.from_tag(), msg.from_tag());
    assert_eq!(f.to_tag(), msg.to_tag());
    assert_eq!(f.call_id(), msg.call_id());
    assert_eq!(f.top_via_branch(), msg.top_via_branch());
    assert_eq!(f.top_via(), msg.top_via());
    // The tag shortcut (no `tag` letters, no parse) changes no answer.
    for name in [HeaderName::From, HeaderName::To] {
        if let Some(value) = msg.header(name) {
            let parsed = crate::name_addr::header_params(value)
                .and_then(|p| p.get("tag"))
                .filter(|t| !t.is_empty());
            assert_eq!(crate::message::tag_in(value), parsed, "tag of {value:?}");
        }
    }
    if msg.is_request() {
        for status in [100, 503] {
            assert_eq!(
                ResponseBuilder::new(f, status, "R").to_tag("vx1").build(),
                ResponseBuilder::new(msg, status, "R").to_tag("vx1").build(),
                "answers differ"
            );
        }
    }
}

fn exercise_message(msg: &Message) {
    let _ = (
        msg.method(),
        msg.request_uri(),
        msg.version(),
        msg.status(),
        msg.reason(),
    );
    for (name, raw_name, value) in msg.headers() {
        let _ = (name, raw_name.len(), value.len());
    }
    for name in HeaderName::ALL {
        let _ = msg.headers_named(*name).count();
    }
    let _ = msg.top_via();
    for v in msg.vias().flatten() {
        let _ = (
            v.has_rfc3261_branch(),
            v.received_ip(),
            v.port_or_default(),
            v.transport_kind(),
        );
    }
    let _ = (msg.call_id(), msg.cseq(), msg.from_tag(), msg.to_tag());
    for a in [msg.from(), msg.to()].into_iter().flatten() {
        let _ = (a.display_name_decoded(), a.tag());
        if let Some(u) = a.uri.as_sip() {
            let _ = (
                u.user_decoded(),
                u.params_decoded().count(),
                u.headers_decoded().count(),
            );
        }
    }
    for c in msg.contacts().flatten() {
        if let Some(a) = c.address() {
            let _ = (a.q(), a.expires());
        }
    }
    let _ = (
        msg.routes().count(),
        msg.record_routes().count(),
        msg.paths().count(),
    );
    let _ = (
        msg.max_forwards(),
        msg.expires(),
        msg.min_expires(),
        msg.content_length(),
    );
    let _ = (
        msg.content_type(),
        msg.accept().count(),
        msg.retry_after().map(|r| r.duration()),
    );
    for a in msg.authorization().chain(msg.www_authenticate()).flatten() {
        let _ = (
            a.username(),
            a.realm(),
            a.nonce(),
            a.uri(),
            a.response(),
            a.qop(),
            a.nc(),
            a.stale(),
        );
    }
    let _ = (
        msg.supported().count(),
        msg.require().count(),
        msg.allow().count(),
    );
    let _ = msg.body().len();

    if msg.is_request() {
        let policy = ValidationPolicy {
            supported: &["path", "outbound"],
            ..ValidationPolicy::default()
        };
        if let Err(rej) = validate_request(msg, &policy) {
            let resp = rej.response(msg, Some("fz"));
            assert!(Message::parse(resp).is_ok(), "rejection does not frame");
        }
        let _ = check_max_forwards(msg);
        let resp = ResponseBuilder::new(msg, 200, "OK").to_tag("fz").build();
        assert!(Message::parse(resp).is_ok(), "response does not frame");
        if let Ok(c) = RequestBuilder::cancel(msg) {
            assert!(Message::parse(c.build()).is_ok(), "CANCEL does not frame");
        }

        let mut out = BytesMut::new();
        let branch = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz";
        let r = msg
            .edit()
            .push_via(branch)
            .set_via_received(Some("198.51.100.1"), Some(5062))
            .add_record_route("<sip:192.0.2.1;lr>")
            .decrement_max_forwards()
            .ensure_content_length()
            .write_to(&mut out);
        if r.is_ok() {
            let fwd = Message::parse(out.split().freeze());
            let fwd = match fwd {
                Ok(f) => f,
                Err(e) => panic!("edited request does not frame: {e}"),
            };
            assert_eq!(
                fwd.top_via().ok().and_then(|v| v.branch),
                Some("z9hG4bKfuzz")
            );
        }
        if msg.has(HeaderName::Route) {
            let r = msg.edit().pop_route().write_to(&mut out);
            if r.is_ok() {
                assert!(
                    Message::parse(out.split().freeze()).is_ok(),
                    "route pop does not frame"
                );
            }
        }
        let r = msg
            .edit()
            .set_body(Some("text/plain"), b"fuzz")
            .write_to(&mut out);
        if r.is_ok() {
            let m = Message::parse(out.split().freeze());
            assert!(
                m.as_ref().is_ok_and(|m| m.body() == b"fuzz"),
                "body edit: {m:?}"
            );
        }
    } else {
        let _ = validate_response(msg);
        let mut out = BytesMut::new();
        if msg.edit().pop_via().write_to(&mut out).is_ok() {
            let before = msg.headers_named(HeaderName::Via).count();
            let after =
                Message::parse(out.freeze()).map(|m| m.headers_named(HeaderName::Via).count());
            assert_eq!(after, Ok(before - 1), "pop_via");
        }
    }
}

fn exercise_stream(data: &[u8]) {
    let limits = Limits {
        max_message_size: 4096,
        max_headers: 64,
    };
    let mut framer = StreamFramer::new(limits);
    let mid = data.len() / 2;
    for chunk in [
        data.get(..mid).unwrap_or_default(),
        data.get(mid..).unwrap_or_default(),
    ] {
        framer.push(chunk);
        for _ in 0..1000 {
            match framer.next_event() {
                Ok(Some(crate::stream::StreamEvent::Message(m))) => {
                    let _ = (m.call_id(), m.top_via(), m.cseq());
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}
