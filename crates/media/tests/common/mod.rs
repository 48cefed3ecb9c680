//! Helpers shared by the integration tests: in-process Voxline relays on
//! free loopback ports, media endpoints, SDP.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use voxline_media::{MediaConfig, MediaControl, RelayEntry};
use voxline_relay::{InterfaceConfig, Relay, RelayConfig, RelayHandle};

/// The relay interface facing the access network (offers from there use
/// `direction = ["external", "internal"]`).
pub const EXTERNAL: &str = "127.0.0.2";
/// The relay interface facing the core.
pub const INTERNAL: &str = "127.0.0.1";

/// A Voxline relay with interfaces `internal` and `external`, ng on
/// `ng` (port 0: a free one) and media ports `[port_min, port_max]`.
pub async fn start_relay_at(
    ng: SocketAddr,
    port_min: u16,
    port_max: u16,
    max_sessions: usize,
) -> RelayHandle {
    let config = RelayConfig {
        ng_udp: ng,
        ng_tcp: None,
        interfaces: vec![
            InterfaceConfig {
                name: "internal".into(),
                address: INTERNAL.parse().unwrap(),
                advertised_address: None,
            },
            InterfaceConfig {
                name: "external".into(),
                address: EXTERNAL.parse().unwrap(),
                advertised_address: None,
            },
        ],
        port_min,
        port_max,
        port_quarantine_secs: 1,
        workers: 1,
        max_sessions,
        ..RelayConfig::default()
    };
    Relay::start(config).await.unwrap()
}

/// [`start_relay_at`] on a free ng port.
pub async fn start_relay(port_min: u16, port_max: u16, max_sessions: usize) -> RelayHandle {
    start_relay_at(
        "127.0.0.1:0".parse().unwrap(),
        port_min,
        port_max,
        max_sessions,
    )
    .await
}

/// An address where nothing answers (a port that was free a moment ago).
pub fn silent_address() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `[media]` for `relays` (address, weight) with short timers: 100 ms per
/// datagram, one retransmission, relays down for 1 s, no health pings.
pub fn media_config(relays: &[(SocketAddr, u32)]) -> MediaConfig {
    let text = format!(
        r#"
relays = [{}]
timeout_ms = 100
retries = 1
disable_secs = 1
ping_interval_secs = 0
[[direction]]
source = ["127.0.0.0/8"]
direction = ["external", "internal"]
"#,
        relays
            .iter()
            .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    voxline_config::load("test.toml", &text).unwrap_or_else(|p| panic!("{p}"))
}

/// Starts a [`MediaControl`] over `relays`.
pub async fn media(relays: &[(SocketAddr, u32)]) -> MediaControl {
    MediaControl::start(&media_config(relays), None)
        .await
        .unwrap()
}

/// Relay entries (for configs built in code).
pub fn entries(relays: &[(SocketAddr, u32)]) -> Vec<RelayEntry> {
    relays
        .iter()
        .map(|&(address, weight)| RelayEntry { address, weight })
        .collect()
}

/// The SIP source address of the caller in tests (on the access side).
pub fn sip_source() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

/// A media endpoint on loopback.
pub struct Endpoint {
    pub socket: UdpSocket,
}

impl Endpoint {
    pub fn new() -> Endpoint {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        Endpoint { socket }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Sends `n` RTP packets to `to` and checks `peer` receives each one.
    pub fn send_to_peer(&self, n: u16, to: SocketAddr, peer: &Endpoint) {
        for seq in 0..n {
            let p = rtp(seq);
            self.socket.send_to(&p, to).unwrap();
            let mut buf = [0u8; 2048];
            let (len, _) = peer
                .socket
                .recv_from(&mut buf)
                .expect("no packet within 3 s");
            assert_eq!(&buf[..len], &p[..]);
        }
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
pub fn sdp(addr: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = addr.ip(),
        port = addr.port()
    )
}

/// The media address in an SDP (c= and the first m= port).
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

/// Polls `f` until true or panics after `secs`.
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
