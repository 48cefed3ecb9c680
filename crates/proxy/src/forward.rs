//! Building a forwarded request (RFC 3261 §16.6 steps 1-8) by splicing
//! edits into the received bytes.

use bytes::{Bytes, BytesMut};
use voxline_sip::{EditError, Message};

use crate::routing::{RouteInfo, is_loose};

/// Everything that changes between the received and the forwarded request.
/// (The received request's `received`/`rport` stamp, which the core noted
/// on it, goes into the copy with every edit: [`Message::edit`].)
#[derive(Debug)]
pub struct ForwardEdits<'a> {
    /// Route processing of the received request.
    pub route: &'a RouteInfo,
    /// A new Request-URI (a registered contact), or `None` to keep it.
    pub request_uri: Option<&'a str>,
    /// Route values to add for this target (a binding's Path), in order.
    pub preloaded: &'a [String],
    /// Our Via value for this branch.
    pub via: &'a str,
    /// Record-Route values, bottom first (incoming side, then outgoing).
    pub record_route: &'a [String],
    /// A new body (SDP rewritten by the media relay), or `None` to keep it.
    pub body: Option<&'a [u8]>,
}

/// Writes the forwarded request.
pub fn forwarded_request(msg: &Message, e: &ForwardEdits<'_>) -> Result<Bytes, EditError> {
    let old_ruri = format!("<{}>", e.route.request_uri);
    let mut ed = msg.edit();
    if e.route.strict_previous {
        ed.last_route_to_request_uri();
    }
    for _ in 0..e.route.pop_routes {
        ed.pop_route();
    }
    if let Some(uri) = e.request_uri {
        ed.set_request_uri(uri);
    }
    for r in e.preloaded {
        ed.add_header("Route", r);
    }
    // The next hop is a strict router (§16.6 step 7): it wants its URI as
    // the Request-URI and the real target at the end of the Route set.
    if e.preloaded.is_empty()
        && let Some(next) = e.route.next_route()
        && !is_loose(next)
    {
        ed.pop_route();
        ed.set_request_uri(next);
        ed.add_header("Route", &old_ruri);
    }
    for rr in e.record_route {
        ed.add_record_route(rr);
    }
    ed.decrement_max_forwards();
    ed.push_via(e.via);
    if let Some(body) = e.body {
        ed.set_body(None, body);
    }
    ed.ensure_content_length();
    let mut out = BytesMut::with_capacity(msg.as_bytes().len() + 256);
    ed.write_to(&mut out)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::preprocess;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa;rport
Max-Forwards: 70
Route: <sip:10.0.0.1;lr>
From: <sip:alice@example.com>;tag=f
To: <sip:bob@example.com>
Call-ID: c
CSeq: 1 INVITE
Content-Length: 0

";

    #[test]
    fn forwarding_to_a_registered_contact_with_path() {
        let m = msg(INVITE).with_received(voxline_sip::ReceivedStamp::new(
            Some("198.51.100.7".parse().unwrap()),
            Some(40000),
        ));
        let route = preprocess(&m, |u| u.host_str == "10.0.0.1").unwrap();
        let rr = ["<sip:10.0.0.1;lr>".to_owned()];
        let path = ["<sip:edge.example.com;lr>".to_owned()];
        let out = forwarded_request(
            &m,
            &ForwardEdits {
                route: &route,
                request_uri: Some("sip:bob@198.51.100.20:5062"),
                preloaded: &path,
                via: "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKvx0.1",
                record_route: &rr,
                body: None,
            },
        )
        .unwrap();
        let f = Message::parse(out).unwrap();
        assert_eq!(f.request_uri_str(), Some("sip:bob@198.51.100.20:5062"));
        assert_eq!(f.max_forwards(), Ok(69));
        let vias: Vec<_> = f
            .vias()
            .map(|v| v.unwrap().branch.unwrap().to_owned())
            .collect();
        assert_eq!(vias, ["z9hG4bKvx0.1", "z9hG4bKa"]);
        let second = f.vias().nth(1).unwrap().unwrap();
        assert_eq!(second.received, Some("198.51.100.7"));
        assert_eq!(second.rport, Some(Some(40000)));
        let routes: Vec<_> = f
            .routes()
            .map(|r| r.unwrap().uri.as_str().to_owned())
            .collect();
        assert_eq!(
            routes,
            ["sip:edge.example.com;lr"],
            "our Route popped, Path preloaded"
        );
        assert_eq!(f.record_routes().count(), 1);
    }

    #[test]
    fn strict_next_hop_gets_the_request_uri() {
        let m = msg(&INVITE.replace(
            "Route: <sip:10.0.0.1;lr>",
            "Route: <sip:strict.example.net>",
        ));
        let route = preprocess(&m, |u| u.host_str == "10.0.0.1").unwrap();
        let out = forwarded_request(
            &m,
            &ForwardEdits {
                route: &route,
                request_uri: None,
                preloaded: &[],
                via: "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKvx0.2",
                record_route: &[],
                body: None,
            },
        )
        .unwrap();
        let f = Message::parse(out).unwrap();
        assert_eq!(f.request_uri_str(), Some("sip:strict.example.net"));
        let routes: Vec<_> = f
            .routes()
            .map(|r| r.unwrap().uri.as_str().to_owned())
            .collect();
        assert_eq!(routes, ["sip:bob@example.com"]);
    }
}
