//! Helpers shared by the relay's integration tests.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

pub mod cut;

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use voxline_relay::{InterfaceConfig, Relay, RelayConfig, RelayHandle};

/// Starts a relay on free loopback ports with the given media port range.
pub async fn start_relay(
    port_min: u16,
    port_max: u16,
    tweak: impl FnOnce(&mut RelayConfig),
) -> RelayHandle {
    let mut config = RelayConfig {
        ng_udp: "127.0.0.1:0".parse().unwrap(),
        ng_tcp: Some("127.0.0.1:0".parse().unwrap()),
        interfaces: vec![InterfaceConfig {
            name: "default".into(),
            address: "127.0.0.1".parse().unwrap(),
            advertised_address: None,
        }],
        port_min,
        port_max,
        port_quarantine_secs: 1,
        workers: 2,
        ..RelayConfig::default()
    };
    tweak(&mut config);
    Relay::start(config).await.unwrap()
}

/// A media endpoint: a UDP socket that reads the TOS byte of what it gets.
pub struct Endpoint {
    pub socket: UdpSocket,
}

impl Endpoint {
    pub fn new() -> Endpoint {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        setsockopt(&socket, sockopt::IpRecvTos, &true).unwrap();
        Endpoint { socket }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub fn send(&self, data: &[u8], to: SocketAddr) {
        self.socket.send_to(data, to).unwrap();
    }

    /// Receives one datagram: (payload, source, TOS).
    pub fn recv(&self) -> (Vec<u8>, SocketAddr, u8) {
        let mut buf = [0u8; 2048];
        let mut cmsg = nix::cmsg_space!(u8);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<SockaddrStorage>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .expect("no packet within 3 s");
        let mut tos = 0;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::Ipv4Tos(t) = c {
                tos = t;
            }
        }
        let sa = msg.address.unwrap();
        let from = SocketAddr::from(std::net::SocketAddrV4::from(*sa.as_sockaddr_in().unwrap()));
        let n = msg.bytes;
        (buf[..n].to_vec(), from, tos)
    }

    pub fn expect_nothing(&self, within: Duration) {
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 2048];
        assert!(
            self.socket.recv_from(&mut buf).is_err(),
            "unexpected packet"
        );
        self.socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
    }
}

/// A 172-byte RTP packet (12-byte header + 160 bytes of PCMU).
pub fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00, 0, 0, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.resize(172, 0xff);
    p
}

/// SDP of an endpoint receiving RTP at `addr`.
pub fn sdp(addr: SocketAddr, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}",
        ip = addr.ip(),
        port = addr.port()
    )
}

/// The relay address given in an SDP (c= and first m= port).
pub fn media_addr(sdp: &str) -> SocketAddr {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

/// Polls `f` until true or panics after `secs`, naming the caller's line.
#[track_caller]
pub fn eventually(secs: u64, f: impl FnMut() -> bool) -> impl std::future::Future<Output = ()> {
    eventually_explained(secs, f, String::new)
}

/// [`eventually`], and a failure also prints what `explain` says then (the
/// state a rare failure needs to be understood).
#[track_caller]
pub fn eventually_explained(
    secs: u64,
    mut f: impl FnMut() -> bool,
    mut explain: impl FnMut() -> String,
) -> impl std::future::Future<Output = ()> {
    let caller = std::panic::Location::caller();
    async move {
        let end = Instant::now() + Duration::from_secs(secs);
        while !f() {
            if Instant::now() >= end {
                panic!(
                    "condition at {caller} not met within {secs} s; {}",
                    explain()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
