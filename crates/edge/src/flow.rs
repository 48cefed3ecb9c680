//! Flow tokens: the client connection a Path or Record-Route entry stands
//! for, written into the user part of the edge's URI and signed, so that
//! requests routed back to the edge reach the client through the NAT
//! binding or connection its REGISTER or INVITE came over (the idea of
//! RFC 5626 §5.2 flow tokens).
//!
//! Format: `vxf`, a transport letter, the remote and the local address in
//! hex, a dot and 16 hex digits of HMAC-SHA-256 over the rest. A token
//! that does not verify is ignored, so a forged Route cannot make the edge
//! send to an address of the sender's choosing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use voxline_transaction::{Peer, TransportKind};

const PREFIX: &str = "vxf";
const MAC_HEX: usize = 16;

/// A client flow: how the edge reaches one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Transport.
    pub transport: TransportKind,
    /// The client's address as the edge sees it (after NAT).
    pub remote: SocketAddr,
    /// The edge's listener the client talks to.
    pub local: SocketAddr,
}

impl Flow {
    /// The flow a request arrived on.
    pub fn of(peer: &Peer) -> Flow {
        Flow {
            transport: peer.transport,
            remote: peer.addr,
            local: peer
                .local
                .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
        }
    }

    /// Where to send to reach the client.
    pub fn peer(&self) -> Peer {
        Peer {
            addr: self.remote,
            transport: self.transport,
            connection: None,
            local: (!self.local.ip().is_unspecified()).then_some(self.local),
        }
    }
}

/// Signs and checks flow tokens with the edge's secret.
#[derive(Clone)]
pub struct FlowSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for FlowSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSigner(<secret>)")
    }
}

fn transport_letter(t: TransportKind) -> char {
    match t {
        TransportKind::Udp => 'u',
        TransportKind::Tcp => 't',
        TransportKind::Tls => 's',
        TransportKind::Sctp => 'c',
        TransportKind::Ws => 'w',
        TransportKind::Wss => 'x',
    }
}

fn letter_transport(c: u8) -> Option<TransportKind> {
    Some(match c {
        b'u' => TransportKind::Udp,
        b't' => TransportKind::Tcp,
        b's' => TransportKind::Tls,
        b'c' => TransportKind::Sctp,
        b'w' => TransportKind::Ws,
        b'x' => TransportKind::Wss,
        _ => return None,
    })
}

fn push_addr(out: &mut String, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(v4) => {
            out.push('4');
            out.push_str(&hex::encode(v4.octets()));
        }
        IpAddr::V6(v6) => {
            out.push('6');
            out.push_str(&hex::encode(v6.octets()));
        }
    }
    out.push_str(&format!("{:04x}", a.port()));
}

fn read_addr(s: &str) -> Option<(SocketAddr, &str)> {
    let (family, rest) = s.split_at_checked(1)?;
    let len = match family {
        "4" => 8,
        "6" => 32,
        _ => return None,
    };
    let (ip_hex, rest) = rest.split_at_checked(len)?;
    let (port_hex, rest) = rest.split_at_checked(4)?;
    let bytes = hex::decode(ip_hex).ok()?;
    let ip = match family {
        "4" => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
    };
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    Some((SocketAddr::new(ip, port), rest))
}

impl FlowSigner {
    /// A signer with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        FlowSigner {
            key: secret.to_vec(),
        }
    }

    fn mac(&self, body: &str) -> String {
        // HMAC accepts keys of any length.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(body.as_bytes());
        let tag = mac.finalize().into_bytes();
        hex::encode(tag.get(..MAC_HEX / 2).unwrap_or_default())
    }

    /// The token for `flow` (a URI user part: letters, digits and a dot).
    pub fn encode(&self, flow: &Flow) -> String {
        let mut body = String::with_capacity(64);
        body.push_str(PREFIX);
        body.push(transport_letter(flow.transport));
        push_addr(&mut body, flow.remote);
        push_addr(&mut body, flow.local);
        let mac = self.mac(&body);
        body.push('.');
        body.push_str(&mac);
        body
    }

    /// The flow of a token, if it is one of ours and its signature holds.
    pub fn decode(&self, token: &str) -> Option<Flow> {
        let (body, mac) = token.rsplit_once('.')?;
        let rest = body.strip_prefix(PREFIX)?;
        let transport = letter_transport(*rest.as_bytes().first()?)?;
        let (remote, rest) = read_addr(rest.get(1..)?)?;
        let (local, rest) = read_addr(rest)?;
        if !rest.is_empty() || mac.len() != MAC_HEX {
            return None;
        }
        let expected = self.mac(body);
        // Constant-time comparison.
        let diff = expected
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0 && !expected.is_empty()).then_some(Flow {
            transport,
            remote,
            local,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(remote: &str, t: TransportKind) -> Flow {
        Flow {
            transport: t,
            remote: remote.parse().unwrap(),
            local: "192.0.2.1:5060".parse().unwrap(),
        }
    }

    #[test]
    fn round_trip_v4_and_v6() {
        let s = FlowSigner::new(b"0123456789abcdef");
        for f in [
            flow("198.51.100.7:40000", TransportKind::Udp),
            flow("[2001:db8::7]:5062", TransportKind::Tcp),
        ] {
            let t = s.encode(&f);
            assert!(
                t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'),
                "{t}"
            );
            assert_eq!(s.decode(&t), Some(f));
        }
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let s = FlowSigner::new(b"0123456789abcdef");
        let other = FlowSigner::new(b"fedcba9876543210");
        let f = flow("198.51.100.7:40000", TransportKind::Udp);
        let t = s.encode(&f);
        assert_eq!(other.decode(&t), None);
        // Change the address, keep the signature.
        let forged = t.replacen("c633", "c634", 1);
        assert_ne!(forged, t);
        assert_eq!(s.decode(&forged), None);
        for junk in [
            "",
            "alice",
            "vxf",
            "vxfu4.",
            "vxfz4c6336407.0000000000000000",
            &t[..t.len() - 1],
        ] {
            assert_eq!(s.decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn peer_of_a_flow() {
        let f = Flow::of(&Peer {
            addr: "198.51.100.7:40000".parse().unwrap(),
            transport: TransportKind::Udp,
            connection: None,
            local: Some("192.0.2.1:5060".parse().unwrap()),
        });
        let p = f.peer();
        assert_eq!(p.addr, f.remote);
        assert_eq!(p.local, Some(f.local));
        let unbound = Flow::of(&Peer::udp("198.51.100.7:1".parse().unwrap()));
        assert_eq!(unbound.peer().local, None);
    }
}
