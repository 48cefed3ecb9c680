//! The trivial forwarders: the ceilings for the relay's two I/O patterns.
//! No sessions, no checks, no counters beyond a total.
//!
//! [`run`]: one thread, one epoll, `2N` sockets in pairs; a batch received
//! on one socket of a pair (one `recvmmsg`) leaves from the other socket
//! (one `sendmmsg`) to the address that last sent to that other socket.
//! [`run_raw`]: the same pairs through two raw sockets.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use anyhow::Context;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

const BATCH: usize = 32;

/// One `recvmmsg` into `bufs`: the number of datagrams (their lengths in
/// `lens`) and the source of the last one.
fn receive<S: nix::sys::socket::SockaddrLike + Copy>(
    fd: std::os::fd::RawFd,
    hdrs: &mut MultiHeaders<S>,
    bufs: &mut [[u8; 2048]],
    lens: &mut [usize],
    flags: MsgFlags,
) -> (usize, Option<S>) {
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
        .iter_mut()
        .map(|b| [IoSliceMut::new(&mut b[..])])
        .collect();
    let (mut got, mut from) = (0, None);
    if let Ok(res) = recvmmsg(fd, hdrs, iovs.iter_mut(), flags, None) {
        for (r, len) in res.zip(lens.iter_mut()) {
            *len = r.bytes;
            from = r.address;
            got += 1;
        }
    }
    (got, from)
}

/// Writes the port list whole, then renames it: a reader never sees a
/// partial list.
fn publish_ports(list: &str, ports_file: &std::path::Path) -> anyhow::Result<()> {
    let tmp = ports_file.with_extension("tmp");
    std::fs::write(&tmp, list).context("writing the ports file")?;
    std::fs::rename(&tmp, ports_file).context("renaming the ports file")?;
    Ok(())
}

/// Binds `2 * sessions` free ports on `ip`, writes them (one per line, in
/// pair order) to `ports_file`, then forwards forever.
pub fn run(
    ip: std::net::IpAddr,
    sessions: usize,
    ports_file: &std::path::Path,
) -> anyhow::Result<()> {
    let mut socks = Vec::with_capacity(sessions * 2);
    let mut list = String::new();
    for _ in 0..sessions * 2 {
        let s = UdpSocket::bind(SocketAddr::new(ip, 0)).context("bind")?;
        s.set_nonblocking(true)?;
        list.push_str(&format!("{}\n", s.local_addr()?.port()));
        socks.push(s);
    }
    publish_ports(&list, ports_file)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, s) in socks.iter().enumerate() {
        epoll.add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let mut learned: Vec<Option<SockaddrStorage>> = vec![None; socks.len()];
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut rh: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    let mut sh: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    let mut events = vec![EpollEvent::empty(); 256];
    println!("ready");
    loop {
        let n = epoll.wait(&mut events, EpollTimeout::from(1000u16))?;
        for ev in events.iter().take(n) {
            let i = ev.data() as usize;
            let Some(sock) = socks.get(i) else { continue };
            let (got, from) = receive(
                sock.as_raw_fd(),
                &mut rh,
                &mut bufs,
                &mut lens,
                MsgFlags::MSG_DONTWAIT,
            );
            if got > 0 {
                learned[i] = from;
            }
            let peer = i ^ 1;
            let (Some(dest), Some(out)) = (learned[peer], socks.get(peer)) else {
                continue;
            };
            if got == 0 {
                continue;
            }
            let iovs: Vec<[IoSlice<'_>; 1]> = (0..got)
                .map(|k| [IoSlice::new(&bufs[k][..lens[k]])])
                .collect();
            let addrs = vec![Some(dest); got];
            let _ = sendmmsg(
                out.as_raw_fd(),
                &mut sh,
                iovs.iter(),
                &addrs,
                [],
                MsgFlags::MSG_DONTWAIT,
            );
        }
    }
}

/// The trivial forwarder with the relay's raw I/O pattern (the ceiling for
/// `io = "raw"`): `2N` consecutive ports from `base` are bound only to hold
/// them (a socket filter drops what they receive); one raw socket, whose
/// kernel filter takes the range, reads datagrams in batches; each leaves
/// with rewritten headers (from the paired port to the address that last
/// sent to it) through one raw socket, one `sendmmsg` per batch.
pub fn run_raw(base: u16, sessions: usize, ports_file: &std::path::Path) -> anyhow::Result<()> {
    use socket2::{Domain, Protocol, SockFilter, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddrV4};
    const RAW_BATCH: usize = 64;
    let n = sessions * 2;
    let last = u16::try_from(usize::from(base) + n - 1).context("range beyond port 65535")?;
    let mut socks = Vec::with_capacity(n);
    let mut list = String::new();
    for port in base..=last {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
        s.attach_filter(&[SockFilter::new(0x06, 0, 0, 0)])?;
        s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())
            .with_context(|| format!("bind 127.0.0.1:{port}"))?;
        list.push_str(&format!("{port}\n"));
        socks.push(s);
    }
    let rx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).context("raw socket")?;
    // X = IPv4 header length; A = destination port; accept base..=last.
    rx.attach_filter(&[
        SockFilter::new(0xb1, 0, 0, 0),
        SockFilter::new(0x48, 0, 0, 2),
        SockFilter::new(0x35, 0, 2, u32::from(base)),
        SockFilter::new(0x25, 1, 0, u32::from(last)),
        SockFilter::new(0x06, 0, 0, 0xffff),
        SockFilter::new(0x06, 0, 0, 0),
    ])?;
    let _ = rx.set_recv_buffer_size(8 << 20);
    let tx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
    publish_ports(&list, ports_file)?;
    let mut learned: Vec<Option<SocketAddrV4>> = vec![None; n];
    let mut bufs = vec![[0u8; 2048]; RAW_BATCH];
    let mut lens = [0usize; RAW_BATCH];
    let mut spans = [(0usize, 0usize); RAW_BATCH];
    let mut rh: MultiHeaders<()> = MultiHeaders::preallocate(RAW_BATCH, None);
    let mut sh: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(RAW_BATCH, None);
    let mut dests: Vec<Option<SockaddrStorage>> = vec![None; RAW_BATCH];
    let mut out: Vec<usize> = Vec::with_capacity(RAW_BATCH);
    println!("ready");
    loop {
        let (got, _) = receive(
            rx.as_raw_fd(),
            &mut rh,
            &mut bufs,
            &mut lens,
            MsgFlags::MSG_WAITFORONE,
        );
        out.clear();
        for (k, b) in bufs.iter_mut().enumerate().take(got) {
            let len = lens[k];
            let ihl = usize::from(b[0] & 0xf) * 4;
            if len < ihl + 8 || ihl < 20 {
                continue;
            }
            let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            let Some(i) = port(ihl + 2).checked_sub(base).map(usize::from) else {
                continue;
            };
            let src = SocketAddrV4::new(Ipv4Addr::new(b[12], b[13], b[14], b[15]), port(ihl));
            let (Some(slot), Some(peer)) = (learned.get_mut(i), base.checked_add((i ^ 1) as u16))
            else {
                continue;
            };
            *slot = Some(src);
            let Some(Some(to)) = learned.get(i ^ 1).copied() else {
                continue;
            };
            // New headers just before the payload, as the relay writes them.
            let from = SocketAddrV4::new(Ipv4Addr::LOCALHOST, peer);
            let Some(start) =
                voxline_relay_dataplane::write_headers(b, ihl + 8, len, from, to, 184)
            else {
                continue;
            };
            spans[k] = (start, len);
            dests[out.len()] = Some(SockaddrStorage::from(SocketAddrV4::new(*to.ip(), 0)));
            out.push(k);
        }
        if out.is_empty() {
            continue;
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = out
            .iter()
            .map(|&k| [IoSlice::new(&bufs[k][spans[k].0..spans[k].1])])
            .collect();
        let _ = sendmmsg(
            tx.as_raw_fd(),
            &mut sh,
            iovs.iter(),
            &dests[..out.len()],
            [],
            MsgFlags::MSG_DONTWAIT,
        );
    }
}
