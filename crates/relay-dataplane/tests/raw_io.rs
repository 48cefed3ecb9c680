//! Raw I/O specifics over real sockets: each worker reads its partition of
//! the range, streams outside it are served by their own sockets, the
//! headers written are right (addresses, TOS, UDP checksum), and a datagram
//! too large for one packet leaves through the stream's socket in fragments.
//!
//! Needs CAP_NET_RAW; without it the tests return early, unless
//! `VOXLINE_REQUIRE_RAW` is set, as the test script does when it runs as
//! root. The MTU test also needs a network namespace of its own
//! (CAP_SYS_ADMIN); where the sandbox refuses one it says so and returns.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{pair, raw_permitted, recv_with_tos};
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use voxline_relay_dataplane::*;

/// Datagrams sent through raw sockets, once it reaches `n` (it is counted
/// after the batch is sent, so after the receiver may have it), or what it
/// is after 5 s.
fn raw_sent_reaching(dp: &Dataplane, n: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let sent = dp.raw_stats().sent.load(Ordering::Relaxed);
        if sent >= n || Instant::now() > end {
            return sent;
        }
        std::thread::yield_now();
    }
}

/// The raw sockets of every test here read every datagram to the range:
/// one test's burst would overflow another's queues. One at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn raw_io() -> ForwardingIo {
    ForwardingIo::Raw {
        port_min: 1024,
        port_max: 65535,
    }
}

/// An even (RTP) port in partition `index` of `count`.
fn bind_in(index: usize, count: usize) -> UdpSocket {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        if port.is_multiple_of(2) && raw_partition(port, count) == index {
            return s;
        }
    }
}

fn rtp(seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.resize(len, 0xd5);
    p
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    setsockopt(&c, sockopt::IpRecvTos, &true).unwrap();
    c
}

/// The UDP checksum of a datagram as a raw socket reads it (IPv4 header
/// first), summed 16 bits at a time: 0xffff when it is right.
fn checksum_sum(packet: &[u8]) -> u16 {
    let ihl = usize::from(packet[0] & 0xf) * 4;
    let udp = &packet[ihl..];
    let mut words: Vec<u32> = vec![17, udp.len() as u32];
    for pair in packet[12..20].chunks(2).chain(udp.chunks(2)) {
        let hi = u32::from(pair[0]) << 8;
        words.push(hi | pair.get(1).map_or(0, |&b| u32::from(b)));
    }
    let mut sum: u32 = words.iter().sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[test]
fn workers_read_their_partition_and_other_ports_use_their_sockets() {
    if !raw_permitted() {
        return;
    }
    let _serial = one_at_a_time();
    let dp = Dataplane::start(DataplaneConfig {
        workers: 2,
        streams_hint: 8,
        io: raw_io(),
    })
    .unwrap();
    // A capture of what arrives at the receivers, headers included.
    // (A std socket reads a raw socket's datagrams like any other.)
    let capture: UdpSocket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
        .unwrap()
        .into();
    capture
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| (client(), client())).unzip();
    // Worker 0 and worker 1 with ports of their partitions (raw), and
    // worker 0 with ports of partition 1 (served by the stream sockets).
    let layout = [(0, 0), (1, 1), (0, 1)];
    let mut to = Vec::new();
    for (i, &(worker, part)) in layout.iter().enumerate() {
        let (a, b) = (bind_in(part, 2), bind_in(part, 2));
        to.push((a.local_addr().unwrap(), b.local_addr().unwrap()));
        let keys = (10 * i as u64 + 1, 10 * i as u64 + 2);
        pair(&dp, worker, keys, a, b, receivers[i].local_addr().unwrap());
    }
    for (i, (a, b)) in to.iter().enumerate() {
        senders[i].send_to(&rtp(i as u16, 172), *a).unwrap();
        let (data, from, tos) = recv_with_tos(&receivers[i]);
        assert_eq!(data, rtp(i as u16, 172), "pair {i}");
        assert_eq!(from, *b, "pair {i}: sent from the sink stream's port");
        assert_eq!(tos, Some(184), "pair {i}");
        // And back, to the latched sender.
        receivers[i].send_to(&rtp(100, 60), *b).unwrap();
        let (data, from, tos) = recv_with_tos(&senders[i]);
        assert_eq!(
            (data, from, tos),
            (rtp(100, 60), *a, Some(184)),
            "pair {i} back"
        );
    }
    assert_eq!(
        raw_sent_reaching(&dp, 4),
        4,
        "the first two pairs both ways through raw I/O, the third not"
    );
    // The headers the relay wrote carry a right UDP checksum.
    let mut buf = [0u8; 2048];
    let mut checked = 0;
    while checked < 2 {
        let n = capture.recv(&mut buf).unwrap();
        let pkt = &buf[..n];
        let src_port = u16::from_be_bytes([pkt[20], pkt[21]]);
        if src_port == to[0].1.port() || src_port == to[1].1.port() {
            assert_eq!(checksum_sum(pkt), 0xffff, "UDP checksum of {pkt:02x?}");
            assert_eq!(pkt[1], 184);
            assert_eq!(&pkt[12..16], &Ipv4Addr::LOCALHOST.octets());
            checked += 1;
        }
    }
    dp.shutdown();
}

#[test]
fn a_datagram_larger_than_one_packet_leaves_through_the_stream_socket() {
    if !raw_permitted() {
        return;
    }
    let _serial = one_at_a_time();
    // A network namespace of this thread's own, whose loopback carries at
    // most 1400 bytes per packet; the workers and `ip` started from this
    // thread live in it.
    let run = std::thread::spawn(|| {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            eprintln!("no network namespace ({e}): test skipped");
            return;
        }
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up", "mtu", "1400"])
            .status()
            .unwrap();
        assert!(up.success(), "ip link set lo up mtu 1400");
        let dp = Dataplane::start(DataplaneConfig {
            workers: 1,
            streams_hint: 4,
            io: raw_io(),
        })
        .unwrap();
        let (sender, receiver) = (client(), client());
        let (a, b) = (bind_in(0, 1), bind_in(0, 1));
        let (to_a, from_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        pair(&dp, 0, (1, 2), a, b, receiver.local_addr().unwrap());
        // Too large for one packet: the raw send is refused (EMSGSIZE) and
        // the sink's socket sends it in fragments.
        sender.send_to(&rtp(1, 3000), to_a).unwrap();
        let (data, from, tos) = recv_with_tos(&receiver);
        assert_eq!((data.len(), from, tos), (3000, from_b, Some(184)));
        assert_eq!(data, rtp(1, 3000));
        // A small one still goes through raw I/O.
        sender.send_to(&rtp(2, 172), to_a).unwrap();
        let (data, _, _) = recv_with_tos(&receiver);
        assert_eq!(data, rtp(2, 172));
        assert_eq!(raw_sent_reaching(&dp, 1), 1);
        dp.shutdown();
    });
    run.join().unwrap();
}

/// Datagrams dropped by the kernel's per-CPU input backlogs so far (the
/// second column of `/proc/net/softnet_stat`, hexadecimal).
fn softnet_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum()
}

#[test]
fn a_worker_that_falls_behind_shows_its_losses_in_raw_drops() {
    if !raw_permitted() {
        return;
    }
    let _serial = one_at_a_time();
    // The standby hook runs on the worker's thread: held here, it stalls
    // the worker for real while a burst arrives.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let hook: StandbyHook = std::sync::Arc::new(move |_| {
        let _ = entered_tx.send(());
        let _ = release_rx.lock().unwrap().recv();
    });
    let dp = Dataplane::start_with_hook(
        DataplaneConfig {
            workers: 1,
            streams_hint: 4,
            io: raw_io(),
        },
        Some(hook),
    )
    .unwrap();
    assert_eq!(dp.raw_drops(), Some(0));
    let standby = bind_in(0, 1);
    let standby_addr = standby.local_addr().unwrap();
    dp.send(
        0,
        StreamCommand::Add {
            key: StreamKey(9),
            local: standby_addr,
            socket: standby,
            kind: StreamKind::Rtp,
            counters: std::sync::Arc::default(),
            config: StreamConfig::idle(true),
        },
    )
    .unwrap();
    let (sender, receiver) = (client(), client());
    let (a, b) = (bind_in(0, 1), bind_in(0, 1));
    let to_a = a.local_addr().unwrap();
    let ca = pair(&dp, 0, (1, 2), a, b, receiver.local_addr().unwrap());
    sender.send_to(&rtp(0, 172), standby_addr).unwrap();
    entered_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    // More than any raw socket queue holds (rmem_max is a few MiB at most).
    let burst: u64 = 20_000;
    let backlog_drops = softnet_drops();
    for seq in 0..burst {
        sender.send_to(&rtp(seq as u16, 1000), to_a).unwrap();
    }
    release_tx.send(()).unwrap();
    // Every datagram is either taken by the stream or counted as dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    let accounted =
        || ca.snapshot().packets + dp.raw_drops().unwrap() + (softnet_drops() - backlog_drops);
    while accounted() < burst {
        assert!(
            Instant::now() < deadline,
            "{} of {burst} accounted for",
            accounted()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(accounted(), burst);
    let drops = dp.raw_drops().unwrap();
    assert!(drops > 0, "the stalled worker's queue overflowed");
    eprintln!("{drops} of {burst} dropped at the raw socket");
    dp.shutdown();
}
