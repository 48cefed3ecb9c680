//! Where a request received by the edge goes next, without I/O.

use voxline_proxy::routing::RouteInfo;
use voxline_sip::{Message, Uri};

use crate::flow::{Flow, FlowSigner};

/// The next hop of a request at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// One of our Path / Record-Route entries was the last Route: the client
    /// flow it names (the request goes to the client through its NAT
    /// binding or connection; the Request-URI stays).
    Flow(Flow),
    /// The next Route entry (a loose-routing hop: another proxy).
    Route(String),
    /// A new request from a client: to a dispatcher destination.
    Dispatch,
    /// A request from inside (a dispatcher destination) without a Route:
    /// towards its Request-URI.
    RequestUri,
}

/// The flow named by our own Route entries that §16.4 processing removed
/// (the last one that carries a valid token), or by a Request-URI a strict
/// router replaced with our Record-Route.
pub fn popped_flow(msg: &Message, route: &RouteInfo, signer: &FlowSigner) -> Option<Flow> {
    let token_of = |uri: &str| -> Option<Flow> {
        match Uri::parse(uri) {
            Ok(Uri::Sip(u)) => u.user.and_then(|user| signer.decode(user)),
            _ => None,
        }
    };
    let mut found = None;
    for na in msg.routes().take(route.pop_routes).flatten() {
        if let Some(f) = token_of(na.uri.as_str()) {
            found = Some(f);
        }
    }
    if route.strict_previous
        && let Some(f) = msg.request_uri_str().and_then(token_of)
    {
        found = Some(f);
    }
    found
}

/// Decides the next hop.
pub fn next_hop(route: &RouteInfo, flow: Option<Flow>, from_inside: bool) -> Next {
    if let Some(next) = route.next_route() {
        return Next::Route(next.to_owned());
    }
    if let Some(f) = flow {
        return Next::Flow(f);
    }
    if from_inside {
        Next::RequestUri
    } else {
        Next::Dispatch
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use voxline_proxy::routing::preprocess;
    use voxline_transaction::TransportKind;

    use super::*;

    fn signer() -> FlowSigner {
        FlowSigner::new(b"0123456789abcdef")
    }

    fn invite(routes: &[String]) -> Message {
        let routes: String = routes.iter().map(|r| format!("Route: <{r}>\r\n")).collect();
        Message::parse(Bytes::from(format!(
            "INVITE sip:bob@10.0.0.5:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKa\r\n{routes}\
From: <sip:a@x>;tag=f\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    fn me(u: &voxline_sip::SipUri<'_>) -> bool {
        u.host_str == "192.0.2.1"
    }

    #[test]
    fn path_back_to_the_client_flow() {
        let f = Flow {
            transport: TransportKind::Udp,
            remote: "198.51.100.7:40000".parse().unwrap(),
            local: "192.0.2.1:5060".parse().unwrap(),
        };
        let token = signer().encode(&f);
        let m = invite(&[format!("sip:{token}@192.0.2.1;lr")]);
        let r = preprocess(&m, me).unwrap();
        let flow = popped_flow(&m, &r, &signer());
        assert_eq!(flow, Some(f));
        assert_eq!(next_hop(&r, flow, true), Next::Flow(f));
        // Our entry followed by another proxy: loose routing wins.
        let m = invite(&[
            format!("sip:{token}@192.0.2.1;lr"),
            "sip:192.0.2.30;lr".into(),
        ]);
        let r = preprocess(&m, me).unwrap();
        let flow = popped_flow(&m, &r, &signer());
        assert_eq!(
            next_hop(&r, flow, false),
            Next::Route("sip:192.0.2.30;lr".into())
        );
        // A forged token is no flow.
        let m = invite(&[format!("sip:{}x@192.0.2.1;lr", token)]);
        let r = preprocess(&m, me).unwrap();
        assert_eq!(popped_flow(&m, &r, &signer()), None);
        assert_eq!(next_hop(&r, None, false), Next::Dispatch);
        assert_eq!(next_hop(&r, None, true), Next::RequestUri);
    }
}
