//! Forwarding over real loopback sockets: latching, strict source, invalid
//! packets, RTCP report parsing and the TOS byte on sent packets, with each
//! forwarding I/O (raw I/O needs CAP_NET_RAW: without it those runs are
//! skipped, unless `VOXLINE_REQUIRE_RAW` is set, as the test script does
//! when it runs as root).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{pair, recv_with_tos};
use nix::sys::socket::{setsockopt, sockopt};
use voxline_relay_dataplane::*;

fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// The forwarding I/O models to test: sockets, and raw I/O over every
/// port when this process may open raw sockets.
fn ios() -> Vec<ForwardingIo> {
    let raw = ForwardingIo::Raw {
        port_min: 1024,
        port_max: 65535,
    };
    let permitted = common::raw_permitted();
    if permitted {
        vec![ForwardingIo::Sockets, raw]
    } else {
        vec![ForwardingIo::Sockets]
    }
}

/// An even (RTP) relay port in partition `index` of `count` (raw I/O: the
/// worker that reads it).
fn relay_port(index: usize, count: usize) -> UdpSocket {
    loop {
        let s = bind();
        let port = s.local_addr().unwrap().port();
        if port.is_multiple_of(2) && raw_partition(port, count) == index {
            return s;
        }
    }
}

/// Datagrams sent through raw sockets so far.
fn raw_sent(dp: &Dataplane) -> u64 {
    dp.raw_stats().sent.load(Ordering::Relaxed)
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.resize(172, 0xd5);
    p
}

fn wait_for(mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < end, "condition not reached in 5 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn forwards_both_ways_with_latching_tos_and_counters() {
    for io in ios() {
        forwards_both_ways(io);
    }
}

fn forwards_both_ways(io: ForwardingIo) {
    let dp = Dataplane::start(DataplaneConfig {
        workers: 2,
        streams_hint: 16,
        io,
    })
    .unwrap();
    let (port_a, port_b) = (relay_port(0, 2), relay_port(0, 2));
    let (addr_a, addr_b) = (port_a.local_addr().unwrap(), port_b.local_addr().unwrap());
    let (client_a, client_b) = (bind(), bind());
    for c in [&client_a, &client_b] {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        setsockopt(c, sockopt::IpRecvTos, &true).unwrap();
    }
    let (ca, cb) = (
        Arc::new(StreamCounters::default()),
        Arc::new(StreamCounters::default()),
    );
    let (ka, kb) = (StreamKey(1), StreamKey(2));
    // A's advertised endpoint is wrong (as behind NAT); latching fixes it.
    let cfg_a = StreamConfig {
        endpoint: Some("127.0.0.1:9".parse().unwrap()),
        latching: Latching::Once,
        strict_source: false,
        sink_rtp: Some(kb),
        sink_rtcp: Some(kb),
        tos: 184,
        standby: false,
    };
    let cfg_b = StreamConfig {
        endpoint: Some(client_b.local_addr().unwrap()),
        latching: Latching::Off,
        strict_source: true,
        sink_rtp: Some(ka),
        sink_rtcp: Some(ka),
        tos: 184,
        standby: false,
    };
    dp.send(
        0,
        StreamCommand::Add {
            key: ka,
            local: port_a.local_addr().unwrap(),
            socket: port_a,
            kind: StreamKind::Rtp,
            counters: ca.clone(),
            config: cfg_a,
        },
    )
    .unwrap();
    dp.send(
        0,
        StreamCommand::Add {
            key: kb,
            local: port_b.local_addr().unwrap(),
            socket: port_b,
            kind: StreamKind::Rtp,
            counters: cb.clone(),
            config: cfg_b,
        },
    )
    .unwrap();

    // A → relay → B, sent from B's port with TOS 184.
    client_a.send_to(&rtp(1), addr_a).unwrap();
    let (data, from, tos) = recv_with_tos(&client_b);
    assert_eq!(data, rtp(1));
    assert_eq!(from, addr_b);
    assert_eq!(tos, Some(184));
    // B → relay → A at its latched address (not the advertised :9).
    client_b.send_to(&rtp(2), addr_b).unwrap();
    let (data, from, tos) = recv_with_tos(&client_a);
    assert_eq!(data, rtp(2));
    assert_eq!(from, addr_a);
    assert_eq!(tos, Some(184));
    assert_eq!(ca.snapshot().latched, Some(client_a.local_addr().unwrap()));
    // Nothing stays queued on A's port: read by the worker (sockets), or
    // dropped there once its socket was sealed at its first datagram (raw
    // I/O: the raw socket has the copies).
    for seq in 10..20 {
        client_a.send_to(&rtp(seq), addr_a).unwrap();
        assert_eq!(recv_with_tos(&client_b).0, rtp(seq));
    }
    assert_eq!(common::udp_queued(addr_a), Some(0));

    // Strict source on B: a stranger is dropped and counted.
    let stranger = bind();
    stranger.send_to(&rtp(3), addr_b).unwrap();
    // Invalid packets on A are dropped and counted.
    client_a.send_to(b"short", addr_a).unwrap();
    client_a.send_to(&[0u8; 40], addr_a).unwrap();
    wait_for(|| cb.snapshot().errors == 1 && ca.snapshot().errors == 2);

    // RTCP multiplexed on the RTP port: parsed and forwarded.
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 7];
    rr.extend_from_slice(&((10u32 << 24) | 42).to_be_bytes());
    rr.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 0]);
    client_b.send_to(&rr, addr_b).unwrap();
    let (data, _, _) = recv_with_tos(&client_a);
    assert_eq!(data, rr);
    let snap = cb.snapshot();
    let report = snap.rtcp.unwrap();
    assert_eq!(
        (report.fraction_lost, report.packets_lost, report.jitter),
        (10, 42, 99)
    );
    assert_eq!(ca.snapshot().packets, 11);
    assert_eq!(snap.packets, 2);
    assert_eq!(snap.bytes, 172 + 32);
    assert!(snap.last_packet_ms > 0);

    // Removing a stream stops forwarding into it.
    dp.send(0, StreamCommand::Remove { key: ka }).unwrap();
    // Applied once the socket is closed (its port can be bound again).
    wait_for(|| UdpSocket::bind(addr_a).is_ok());
    client_b.send_to(&rtp(4), addr_b).unwrap();
    wait_for(|| cb.snapshot().packets == 3);
    client_a
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        client_a.recv_from(&mut buf).is_err(),
        "nothing may arrive after removal"
    );
    if io != ForwardingIo::Sockets {
        // Counted once the batch is sent, after the receiver may have it.
        wait_for(|| raw_sent(&dp) == 13);
    }
    dp.shutdown();
}

#[test]
fn media_handover_follows_new_source() {
    for io in ios() {
        media_handover(io);
    }
}

fn media_handover(io: ForwardingIo) {
    let dp = Dataplane::start(DataplaneConfig {
        workers: 1,
        streams_hint: 0,
        io,
    })
    .unwrap();
    let (port_a, port_b) = (relay_port(0, 1), relay_port(0, 1));
    let (addr_a, addr_b) = (port_a.local_addr().unwrap(), port_b.local_addr().unwrap());
    let (a1, a2, b) = (bind(), bind(), bind());
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    a2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (ka, kb) = (StreamKey(10), StreamKey(11));
    let ca = Arc::new(StreamCounters::default());
    let mk = |endpoint, latching, sink| StreamConfig {
        endpoint,
        latching,
        strict_source: false,
        sink_rtp: Some(sink),
        sink_rtcp: Some(sink),
        tos: 0,
        standby: false,
    };
    dp.send(
        0,
        StreamCommand::Add {
            key: ka,
            local: port_a.local_addr().unwrap(),
            socket: port_a,
            kind: StreamKind::Rtp,
            counters: ca.clone(),
            config: mk(None, Latching::Always, kb),
        },
    )
    .unwrap();
    dp.send(
        0,
        StreamCommand::Add {
            key: kb,
            local: port_b.local_addr().unwrap(),
            socket: port_b,
            kind: StreamKind::Rtp,
            counters: Arc::default(),
            config: mk(Some(b.local_addr().unwrap()), Latching::Off, ka),
        },
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    a1.send_to(&rtp(1), addr_a).unwrap();
    b.recv_from(&mut buf).unwrap();
    a2.send_to(&rtp(2), addr_a).unwrap();
    b.recv_from(&mut buf).unwrap();
    b.send_to(&rtp(3), addr_b).unwrap();
    let (n, from) = a2.recv_from(&mut buf).unwrap();
    assert_eq!((n, from), (172, addr_a));
    assert_eq!(ca.snapshot().latched, Some(a2.local_addr().unwrap()));
}

#[test]
fn standby_stream_drops_reports_once_and_forwards_after_activation() {
    for io in ios() {
        standby_then_active(io);
    }
}

fn standby_then_active(io: ForwardingIo) {
    let (hook_tx, hook_rx) = std::sync::mpsc::channel();
    let hook: voxline_relay_dataplane::StandbyHook = Arc::new(move |k: StreamKey| {
        let _ = hook_tx.send(k);
    });
    let dp = Dataplane::start_with_hook(
        DataplaneConfig {
            workers: 1,
            streams_hint: 4,
            io,
        },
        Some(hook),
    )
    .unwrap();
    let (port_a, port_b) = (relay_port(0, 1), relay_port(0, 1));
    let addr_a = port_a.local_addr().unwrap();
    let (a, b) = (bind(), bind());
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (ka, kb) = (StreamKey(20), StreamKey(21));
    let ca = Arc::new(StreamCounters::default());
    let cfg = |endpoint, sink, standby| StreamConfig {
        endpoint,
        latching: Latching::Once,
        strict_source: false,
        sink_rtp: Some(sink),
        sink_rtcp: Some(sink),
        tos: 0,
        standby,
    };
    let b_addr = Some(b.local_addr().unwrap());
    dp.send(
        0,
        StreamCommand::Add {
            key: ka,
            local: port_a.local_addr().unwrap(),
            socket: port_a,
            kind: StreamKind::Rtp,
            counters: ca.clone(),
            config: cfg(None, kb, true),
        },
    )
    .unwrap();
    dp.send(
        0,
        StreamCommand::Add {
            key: kb,
            local: port_b.local_addr().unwrap(),
            socket: port_b,
            kind: StreamKind::Rtp,
            counters: Arc::default(),
            config: cfg(b_addr, ka, true),
        },
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    for seq in 0..3 {
        a.send_to(&rtp(seq), addr_a).unwrap();
    }
    assert_eq!(
        hook_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        ka,
        "the first standby packet is reported"
    );
    wait_for(|| ca.standby_packets.load(Ordering::Relaxed) == 3);
    assert!(b.recv_from(&mut buf).is_err(), "standby never forwards");
    assert!(
        hook_rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "reported once"
    );
    assert_eq!(ca.snapshot().packets, 0);
    // Activation: the same sockets forward from now on.
    dp.send(
        0,
        StreamCommand::Configure {
            key: ka,
            config: cfg(None, kb, false),
        },
    )
    .unwrap();
    dp.send(
        0,
        StreamCommand::Configure {
            key: kb,
            config: cfg(b_addr, ka, false),
        },
    )
    .unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    wait_for(|| {
        a.send_to(&rtp(9), addr_a).unwrap();
        b.recv_from(&mut buf).is_ok()
    });
    assert!(ca.snapshot().packets >= 1);
    dp.shutdown();
}

#[test]
fn ipv6_sources_after_ipv4_ones_are_read_whole() {
    for io in ios() {
        ipv4_then_ipv6(io);
    }
}

/// With raw I/O the IPv4 pair goes through the raw sockets and the IPv6
/// pair through its own sockets, on one worker.
fn ipv4_then_ipv6(io: ForwardingIo) {
    let dp = Dataplane::start(DataplaneConfig {
        workers: 1,
        streams_hint: 8,
        io,
    })
    .unwrap();
    let bind6 = || UdpSocket::bind("[::1]:0").unwrap();
    let (a4, b4) = (bind(), bind());
    let (a6, b6) = (bind6(), bind6());
    for c in [&b4, &a6, &b6] {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let (p4a, p4b, p6a, p6b) = (relay_port(0, 1), relay_port(0, 1), bind6(), bind6());
    let (addr4, addr6) = (p4a.local_addr().unwrap(), p6a.local_addr().unwrap());
    pair(&dp, 0, (1, 2), p4a, p4b, b4.local_addr().unwrap());
    let c6 = pair(&dp, 0, (3, 4), p6a, p6b, b6.local_addr().unwrap());
    let mut buf = [0u8; 2048];
    // An IPv4 datagram first, then an IPv6 one through the same worker.
    a4.send_to(&rtp(1), addr4).unwrap();
    assert_eq!(b4.recv_from(&mut buf).unwrap().0, 172);
    a6.send_to(&rtp(2), addr6).unwrap();
    assert_eq!(b6.recv_from(&mut buf).unwrap().0, 172);
    assert_eq!(c6.snapshot().latched, Some(a6.local_addr().unwrap()));
    if io != ForwardingIo::Sockets {
        wait_for(|| raw_sent(&dp) >= 1);
        assert_eq!(raw_sent(&dp), 1, "only the IPv4 datagram");
    }
    dp.shutdown();
}

/// Sockets only: with raw I/O what arrives before a stream is added is not
/// routed (the raw socket reads it at once), as for a closed port.
#[test]
fn a_burst_larger_than_a_turn_is_forwarded_whole() {
    let dp = Dataplane::start(DataplaneConfig {
        workers: 1,
        streams_hint: 4,
        io: ForwardingIo::Sockets,
    })
    .unwrap();
    let (a, b) = (bind(), bind());
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (port_a, port_b) = (bind(), bind());
    let addr_a = port_a.local_addr().unwrap();
    // Queued before the stream exists: the worker finds more than its
    // per-turn budget (4 batches of 32) waiting on one socket and must come
    // back for the rest without another packet arriving.
    let burst = 150;
    for seq in 0..burst {
        a.send_to(&rtp(seq), addr_a).unwrap();
    }
    let ca = pair(&dp, 0, (1, 2), port_a, port_b, b.local_addr().unwrap());
    let mut buf = [0u8; 2048];
    for _ in 0..burst {
        assert_eq!(b.recv_from(&mut buf).unwrap().0, 172);
    }
    assert_eq!(ca.snapshot().packets, u64::from(burst));
    dp.shutdown();
}
