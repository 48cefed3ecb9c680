//! The trivial forwarder: the ceiling for this I/O pattern. One thread, one
//! epoll, `2N` sockets in pairs; a batch received on one socket of a pair
//! (one `recvmmsg`) leaves from the other socket (one `sendmmsg`) to the
//! address that last sent to that other socket. No sessions, no checks, no
//! counters beyond a total.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use anyhow::Context;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

const BATCH: usize = 32;

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
    // Written whole, then renamed: a reader never sees a partial list.
    let tmp = ports_file.with_extension("tmp");
    std::fs::write(&tmp, list).context("writing the ports file")?;
    std::fs::rename(&tmp, ports_file).context("renaming the ports file")?;
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
            let mut got = 0;
            {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                if let Ok(res) = recvmmsg(
                    sock.as_raw_fd(),
                    &mut rh,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    for (k, r) in res.enumerate() {
                        lens[k] = r.bytes;
                        learned[i] = r.address;
                        got = k + 1;
                    }
                }
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

/// Prototype: raw-socket I/O. The UDP sockets only reserve the ports (a
/// filter drops all they would receive); one raw IPPROTO_UDP socket with a
/// classic BPF filter reads every datagram to the range in batches, and one
/// IPPROTO_RAW socket sends the rewritten datagrams in batches.
pub fn run_raw(base: u16, sessions: usize, ports_file: &std::path::Path) -> anyhow::Result<()> {
    use socket2::{Domain, Protocol, SockFilter, Socket, Type};
    const RAW_BATCH: usize = 64;
    let n = sessions * 2;
    let max = base as u32 + n as u32 - 1;
    let drop_all = [SockFilter::new(0x06, 0, 0, 0)];
    let mut socks = Vec::with_capacity(n);
    let mut list = String::new();
    for i in 0..n {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
        s.attach_filter(&drop_all)?;
        let port = base + i as u16;
        s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())
            .context("bind")?;
        list.push_str(&format!("{port}\n"));
        socks.push(s);
    }
    let rx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))?;
    // ld [16]; jeq 127.0.0.1; ldh [6]; jset 0x1fff; ldxb 4*([0]&0xf);
    // ldh [x+2]; jge base; jgt max; ret 65535; ret 0
    let filter = [
        SockFilter::new(0x20, 0, 0, 16),
        SockFilter::new(0x15, 0, 7, 0x7f00_0001),
        SockFilter::new(0x28, 0, 0, 6),
        SockFilter::new(0x45, 5, 0, 0x1fff),
        SockFilter::new(0xb1, 0, 0, 0),
        SockFilter::new(0x48, 0, 0, 2),
        SockFilter::new(0x35, 0, 2, base as u32),
        SockFilter::new(0x25, 1, 0, max),
        SockFilter::new(0x06, 0, 0, 0xffff),
        SockFilter::new(0x06, 0, 0, 0),
    ];
    rx.attach_filter(&filter)?;
    rx.set_recv_buffer_size(4 << 20)?;
    let tx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
    let tmp = ports_file.with_extension("tmp");
    std::fs::write(&tmp, list).context("writing the ports file")?;
    std::fs::rename(&tmp, ports_file).context("renaming the ports file")?;
    let mut learned: Vec<Option<([u8; 4], u16)>> = vec![None; n];
    let mut bufs = vec![[0u8; 2048]; RAW_BATCH];
    let mut lens = [0usize; RAW_BATCH];
    let mut rh: MultiHeaders<()> = MultiHeaders::preallocate(RAW_BATCH, None);
    let mut sh: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(RAW_BATCH, None);
    let mut dests: Vec<Option<SockaddrStorage>> = vec![None; RAW_BATCH];
    let mut out: Vec<usize> = Vec::with_capacity(RAW_BATCH);
    println!("ready");
    loop {
        let mut got = 0;
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            if let Ok(res) = recvmmsg(
                rx.as_raw_fd(),
                &mut rh,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                for (k, r) in res.enumerate() {
                    lens[k] = r.bytes;
                    got = k + 1;
                }
            }
        }
        out.clear();
        for k in 0..got {
            let b = &mut bufs[k];
            let len = lens[k];
            let ihl = ((b[0] & 0xf) as usize) * 4;
            if len < ihl + 8 {
                continue;
            }
            let dport = u16::from_be_bytes([b[ihl + 2], b[ihl + 3]]);
            let i = (dport - base) as usize;
            let src = [b[12], b[13], b[14], b[15]];
            let sport = u16::from_be_bytes([b[ihl], b[ihl + 1]]);
            learned[i] = Some((src, sport));
            let peer = i ^ 1;
            let Some((daddr, dport2)) = learned[peer] else { continue };
            // Rewrite: from our peer port to the learned address, 20-byte header.
            let payload = len - ihl - 8;
            let udp_len = (payload + 8) as u16;
            b.copy_within(ihl..len, 20);
            b[0] = 0x45;
            b[1] = 184;
            let tot = (20 + payload + 8) as u16;
            b[2..4].copy_from_slice(&tot.to_be_bytes());
            b[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
            b[8] = 64;
            b[9] = 17;
            b[10] = 0;
            b[11] = 0;
            b[12..16].copy_from_slice(&[127, 0, 0, 1]);
            b[16..20].copy_from_slice(&daddr);
            b[20..22].copy_from_slice(&(base + peer as u16).to_be_bytes());
            b[22..24].copy_from_slice(&dport2.to_be_bytes());
            b[24..26].copy_from_slice(&udp_len.to_be_bytes());
            b[26] = 0;
            b[27] = 0;
            let mut sum: u32 = 17 + udp_len as u32;
            for w in b[12..20].chunks_exact(2) {
                sum += u16::from_be_bytes([w[0], w[1]]) as u32;
            }
            let end = 20 + payload + 8;
            let mut c = b[20..end].chunks_exact(2);
            for w in &mut c {
                sum += u16::from_be_bytes([w[0], w[1]]) as u32;
            }
            if let [x] = c.remainder() {
                sum += (*x as u32) << 8;
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let mut ck = !(sum as u16);
            if ck == 0 {
                ck = 0xffff;
            }
            b[26..28].copy_from_slice(&ck.to_be_bytes());
            lens[k] = end;
            dests[out.len()] = Some(SockaddrStorage::from(std::net::SocketAddrV4::new(
                daddr.into(),
                0,
            )));
            out.push(k);
        }
        if out.is_empty() {
            continue;
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = out
            .iter()
            .map(|&k| [IoSlice::new(&bufs[k][..lens[k]])])
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
