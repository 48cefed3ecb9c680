//! Helpers shared by the forwarding tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
use voxline_relay_dataplane::{
    Dataplane, Latching, StreamCommand, StreamConfig, StreamCounters, StreamKey, StreamKind,
};

/// One datagram with its source and TOS byte (the socket has
/// `IP_RECVTOS` set).
pub fn recv_with_tos(sock: &UdpSocket) -> (Vec<u8>, SocketAddr, Option<u8>) {
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!(u8);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut tos = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::Ipv4Tos(t) = c {
            tos = Some(t);
        }
    }
    let from = SocketAddr::from(std::net::SocketAddrV4::from(
        *msg.address.unwrap().as_sockaddr_in().unwrap(),
    ));
    let n = msg.bytes;
    (buf[..n].to_vec(), from, tos)
}

pub use voxline_relay_dataplane::test_util::raw_permitted;

/// Two RTP streams forwarding to each other on `worker`, TOS 184: `a`
/// latching (its counters are returned), `b` sending to `b_endpoint`. The
/// sink `b` is added first: what is already queued on `a` finds it there.
pub fn pair(
    dp: &Dataplane,
    worker: usize,
    keys: (u64, u64),
    a: UdpSocket,
    b: UdpSocket,
    b_endpoint: SocketAddr,
) -> Arc<StreamCounters> {
    let (ka, kb) = (StreamKey(keys.0), StreamKey(keys.1));
    let ca = Arc::new(StreamCounters::default());
    let cfg = |endpoint, latching, sink| StreamConfig {
        endpoint,
        latching,
        strict_source: false,
        sink_rtp: Some(sink),
        sink_rtcp: Some(sink),
        tos: 184,
        standby: false,
    };
    for (key, sock, counters, config) in [
        (
            kb,
            b,
            Arc::default(),
            cfg(Some(b_endpoint), Latching::Off, ka),
        ),
        (ka, a, ca.clone(), cfg(None, Latching::Once, kb)),
    ] {
        dp.send(
            worker,
            StreamCommand::Add {
                key,
                local: sock.local_addr().unwrap(),
                socket: sock,
                kind: StreamKind::Rtp,
                counters,
                config,
            },
        )
        .unwrap();
    }
    ca
}

/// The bytes queued on the IPv4 UDP socket bound to `addr`, from
/// `/proc/net/udp` (`None`: no such socket).
pub fn udp_queued(addr: SocketAddr) -> Option<u64> {
    let SocketAddr::V4(a) = addr else {
        return None;
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(a.ip().octets()),
        a.port()
    );
    std::fs::read_to_string("/proc/net/udp")
        .ok()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) != Some(&local.as_str()) {
                return None;
            }
            let (_, rx) = fields.get(4)?.split_once(':')?;
            u64::from_str_radix(rx, 16).ok()
        })
}
