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
