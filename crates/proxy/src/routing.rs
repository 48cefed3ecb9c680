//! Route processing (RFC 3261 §16.4) and the choice of the next hop
//! (§16.5, §16.6 steps 6-7), without I/O.

use voxline_sip::{Message, NameAddr, SipUri, Uri};

/// The routing facts of a received request after §16.4 preprocessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Own Route values at the top to remove (our Record-Route coming back;
    /// two with double record-routing).
    pub pop_routes: usize,
    /// The previous hop was a strict router: the Request-URI is our
    /// Record-Route; it must be replaced with the last Route value.
    pub strict_previous: bool,
    /// The effective Request-URI (after the strict-router fix).
    pub request_uri: String,
    /// The Route values that remain after ours are removed, in order.
    pub remaining: Vec<String>,
}

impl RouteInfo {
    /// The URI of the next Route, if any.
    pub fn next_route(&self) -> Option<&str> {
        self.remaining.first().map(String::as_str)
    }
}

/// Why a request's routing headers cannot be used (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRouting(pub &'static str);

/// §16.4: strict-router fix and removal of our own Route values.
pub fn preprocess(
    msg: &Message,
    is_self: impl Fn(&SipUri<'_>) -> bool,
) -> Result<RouteInfo, BadRouting> {
    let routes: Vec<NameAddr<'_>> = msg
        .routes()
        .collect::<Result<_, _>>()
        .map_err(|_| BadRouting("Bad Request - Malformed Route"))?;
    let ruri = msg
        .request_uri()
        .map_err(|_| BadRouting("Bad Request - Malformed Request-URI"))?;
    let mut uris: Vec<&str> = routes.iter().map(|r| r.uri.as_str()).collect();
    let mut request_uri = ruri.as_str().to_owned();
    let mut strict_previous = false;
    if let Uri::Sip(sip) = &ruri
        && sip.user.is_none()
        && is_self(sip)
        && let Some(last) = uris.pop()
    {
        strict_previous = true;
        request_uri = last.to_owned();
    }
    let mut pop_routes = 0;
    while let Some(first) = uris.get(pop_routes) {
        match Uri::parse(first) {
            Ok(Uri::Sip(u)) if is_self(&u) => pop_routes += 1,
            _ => break,
        }
    }
    Ok(RouteInfo {
        pop_routes,
        strict_previous,
        request_uri,
        remaining: uris[pop_routes..].iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// Whether a route URI is a loose router (`;lr`).
pub fn is_loose(uri: &str) -> bool {
    matches!(Uri::parse(uri), Ok(Uri::Sip(u)) if u.lr())
}

/// Whether `method` creates a dialog when sent outside one (and so gets
/// Record-Route).
pub fn creates_dialog(method: &str) -> bool {
    matches!(method, "INVITE" | "SUBSCRIBE" | "REFER" | "NOTIFY")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn msg(ruri: &str, routes: &[&str]) -> Message {
        let routes: String = routes.iter().map(|r| format!("Route: <{r}>\r\n")).collect();
        Message::parse(Bytes::from(format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n{routes}\
From: <sip:a@x>;tag=f\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    fn me(u: &SipUri<'_>) -> bool {
        u.host_str == "10.0.0.1" && u.port.unwrap_or(5060) == 5060
    }

    #[test]
    fn loose_routing_pops_our_routes() {
        let m = msg(
            "sip:b@192.0.2.50",
            &[
                "sip:10.0.0.1;lr",
                "sip:10.0.0.1:5060;lr;transport=tcp",
                "sip:p2.example.net;lr",
            ],
        );
        let r = preprocess(&m, me).unwrap();
        assert_eq!(r.pop_routes, 2);
        assert!(!r.strict_previous);
        assert_eq!(r.request_uri, "sip:b@192.0.2.50");
        assert_eq!(r.next_route(), Some("sip:p2.example.net;lr"));
    }

    #[test]
    fn strict_router_upstream_is_fixed() {
        // A strict router put our Record-Route into the Request-URI and the
        // remote target at the end of the Route set.
        let m = msg(
            "sip:10.0.0.1;lr",
            &["sip:p2.example.net;lr", "sip:bob@192.0.2.50"],
        );
        let r = preprocess(&m, me).unwrap();
        assert!(r.strict_previous);
        assert_eq!(r.request_uri, "sip:bob@192.0.2.50");
        assert_eq!(r.remaining, ["sip:p2.example.net;lr"]);
    }

    #[test]
    fn no_routes_and_foreign_first_route() {
        let m = msg("sip:b@x", &[]);
        let r = preprocess(&m, me).unwrap();
        assert_eq!((r.pop_routes, r.next_route()), (0, None));
        let m = msg("sip:b@x", &["sip:other.example.net"]);
        let r = preprocess(&m, me).unwrap();
        assert_eq!(r.next_route(), Some("sip:other.example.net"));
        assert!(!is_loose("sip:other.example.net"));
        assert!(is_loose("sip:p2.example.net;lr"));
    }
}
