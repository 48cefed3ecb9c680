//! RFC 3261 §18.2.1/§18.2.2 and RFC 3581: where responses go.

use std::net::{IpAddr, SocketAddr};

use voxline_sip::{Host, RequestRef, Via};
use voxline_transaction::Peer;

/// The `received` and `rport` values a proxy writes into the top Via of a
/// request it received from `peer` (RFC 3261 §18.2.1, RFC 3581 §4):
/// `received` when the sent-by host is not the source address (or rport was
/// asked for), `rport` filled in with the source port when present empty.
pub(crate) fn via_received(via: &Via<'_>, peer: &Peer) -> (Option<IpAddr>, Option<u16>) {
    let source = peer.addr.ip();
    let wants_rport = matches!(via.rport, Some(None));
    let same_host = match via.host {
        Host::Ipv4(_) | Host::Ipv6(_) => via.host.ip() == Some(source),
        _ => false,
    };
    let received = (!same_host || wants_rport).then_some(source);
    let rport = wants_rport.then_some(peer.addr.port());
    (received, rport)
}

/// Where the responses to `request`, received from `peer`, are sent
/// (RFC 3261 §18.2.2, RFC 3581 §4): back over the same connection for
/// reliable transports; for UDP to the source IP, and to the source port
/// when the client asked for `rport`, else to the sent-by port.
pub fn response_peer<'a>(request: impl Into<RequestRef<'a>>, peer: &Peer) -> Peer {
    if peer.transport.is_reliable() {
        return *peer;
    }
    let Ok(via) = request.into().top_via() else {
        return *peer;
    };
    let port = if via.rport.is_some() {
        peer.addr.port()
    } else {
        via.port.unwrap_or(5060)
    };
    Peer {
        addr: SocketAddr::new(peer.addr.ip(), port),
        ..*peer
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use voxline_sip::Message;
    use voxline_transaction::TransportKind;

    use super::*;

    fn req(via: &str) -> Message {
        Message::parse(Bytes::from(format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    fn udp(addr: &str) -> Peer {
        Peer::udp(addr.parse().unwrap())
    }

    #[test]
    fn received_and_rport() {
        let m = req("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport");
        let via = m.top_via().unwrap();
        let p = udp("198.51.100.7:40000");
        assert_eq!(
            via_received(&via, &p),
            (Some("198.51.100.7".parse().unwrap()), Some(40000))
        );
        assert_eq!(
            response_peer(&m, &p).addr,
            "198.51.100.7:40000".parse().unwrap()
        );
    }

    #[test]
    fn no_rport_goes_to_sent_by_port() {
        let m = req("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1");
        let via = m.top_via().unwrap();
        let p = udp("198.51.100.7:40000");
        assert_eq!(
            via_received(&via, &p),
            (Some("198.51.100.7".parse().unwrap()), None)
        );
        assert_eq!(
            response_peer(&m, &p).addr,
            "198.51.100.7:5070".parse().unwrap()
        );
        // Same host, no rport: nothing to add.
        let p = udp("10.0.0.1:5070");
        assert_eq!(via_received(&via, &p), (None, None));
        // Host names always get received.
        let m = req("SIP/2.0/UDP pc.example.com;branch=z9hG4bK1");
        let via = m.top_via().unwrap();
        assert_eq!(via_received(&via, &p).0, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(response_peer(&m, &p).addr, "10.0.0.1:5060".parse().unwrap());
    }

    #[test]
    fn reliable_transports_answer_on_the_connection() {
        let m = req("SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1");
        let p = Peer::new("198.51.100.7:40000".parse().unwrap(), TransportKind::Tcp);
        assert_eq!(response_peer(&m, &p), p);
    }
}
