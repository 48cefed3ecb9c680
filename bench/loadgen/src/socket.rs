//! UDP sockets with batched receive and send (recvmmsg/sendmmsg through nix's safe API).

use crate::outbox::{Leg, MAX_DATAGRAM, Outbox};
use nix::sys::socket::{
    MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, setsockopt, sockopt,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per recvmmsg/sendmmsg call.
pub const BATCH: usize = 64;

/// Socket buffer size asked for (the kernel caps it at `net.core.[rw]mem_max` unless the
/// process may force it).
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Sets large send and receive buffers; forcing beyond the sysctl limits is tried first.
pub fn set_buffers(s: &UdpSocket) {
    if setsockopt(s, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(s, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(s, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(s, sockopt::SndBuf, &SOCKET_BUFFER);
    }
}

/// Binds a UDP socket on `bind` (port 0 for any) connected to `target`, so that it can
/// only ever send to the target and only receives from it.
pub fn connected(bind: SocketAddr, target: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(bind)?;
    s.connect(target)?;
    set_buffers(&s);
    Ok(s)
}

/// Receive buffers and headers for one socket, allocated once.
pub struct BatchIo {
    headers: MultiHeaders<SockaddrStorage>,
    buf: Vec<u8>,
    lens: [usize; BATCH],
    addrs: [Option<SockaddrStorage>; BATCH],
    count: usize,
}

impl std::fmt::Debug for BatchIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchIo")
            .field("count", &self.count)
            .finish()
    }
}

impl Default for BatchIo {
    fn default() -> Self {
        BatchIo::new()
    }
}

impl BatchIo {
    /// Preallocates room for [`BATCH`] datagrams of [`MAX_DATAGRAM`] bytes.
    pub fn new() -> BatchIo {
        BatchIo {
            headers: MultiHeaders::preallocate(BATCH, None),
            buf: vec![0u8; BATCH * MAX_DATAGRAM],
            lens: [0; BATCH],
            addrs: [None; BATCH],
            count: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; returns how many (0 when none
    /// is waiting). Errors other than "would block" are returned.
    pub fn recv(&mut self, s: &UdpSocket) -> nix::Result<usize> {
        self.count = 0;
        let mut chunks = self.buf.chunks_exact_mut(MAX_DATAGRAM);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let res = match recvmmsg(
            s.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(r) => r,
            Err(nix::errno::Errno::EAGAIN) => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for (r, (len, addr)) in res.zip(self.lens.iter_mut().zip(self.addrs.iter_mut())) {
            *len = r.bytes.min(MAX_DATAGRAM);
            *addr = r.address;
            n += 1;
        }
        self.count = n;
        Ok(n)
    }

    /// The datagrams of the last [`BatchIo::recv`] with their source addresses.
    pub fn received(&self) -> impl Iterator<Item = (&[u8], Option<SockaddrStorage>)> {
        self.buf
            .chunks_exact(MAX_DATAGRAM)
            .zip(self.lens.iter().zip(self.addrs.iter()))
            .take(self.count)
            .map(|(b, (&len, &addr))| (b.get(..len).unwrap_or(&[]), addr))
    }
}

/// Sends the outbox's datagrams for `leg` on a connected socket, [`BATCH`] per sendmmsg.
/// Returns the number of datagrams that could not be sent (an error reported by the
/// kernel, e.g. ICMP port unreachable on a connected socket).
pub fn send_leg(
    s: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    out: &Outbox,
    leg: Leg,
) -> u64 {
    let mut failed = 0;
    let mut pending = out
        .iter()
        .filter(|(l, _)| *l == leg)
        .map(|(_, b)| b)
        .peekable();
    let addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    while pending.peek().is_some() {
        let mut n = 0;
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|_| match pending.next() {
            Some(b) => {
                n += 1;
                [IoSlice::new(b)]
            }
            None => [IoSlice::new(&[])],
        });
        failed += send_iovs(s, headers, &iovs[..n], &addrs[..n]);
    }
    failed
}

/// Sends the outbox's datagrams, the i-th to `addrs[i]` (unconnected socket), [`BATCH`]
/// per sendmmsg. Datagrams without an address are skipped.
pub fn send_to(
    s: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    out: &Outbox,
    addrs: &[Option<SockaddrStorage>],
) -> u64 {
    let mut failed = 0;
    let mut pending = out
        .iter()
        .zip(addrs.iter())
        .filter(|(_, a)| a.is_some())
        .map(|((_, b), a)| (b, *a))
        .peekable();
    while pending.peek().is_some() {
        let mut batch_addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        let mut n = 0;
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| match pending.next() {
            Some((b, a)) => {
                batch_addrs[i] = a;
                n += 1;
                [IoSlice::new(b)]
            }
            None => [IoSlice::new(&[])],
        });
        failed += send_iovs(s, headers, &iovs[..n], &batch_addrs[..n]);
    }
    failed
}

/// One sendmmsg on a blocking socket: the kernel either takes every datagram or reports
/// an error (after a short count the error is reported by the next call, so a short count
/// is not observable through nix without reading uninitialised headers; it is treated as
/// a full send and the error is counted on the next call).
fn send_iovs(
    s: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    iovs: &[[IoSlice<'_>; 1]],
    addrs: &[Option<SockaddrStorage>],
) -> u64 {
    if iovs.is_empty() {
        return 0;
    }
    let mut attempts = 0;
    loop {
        match sendmmsg(s.as_raw_fd(), headers, iovs, addrs, [], MsgFlags::empty()) {
            Ok(_) => return 0,
            Err(nix::errno::Errno::EINTR) if attempts < 3 => attempts += 1,
            Err(nix::errno::Errno::EAGAIN) if attempts < 100 => {
                attempts += 1;
                std::thread::yield_now();
            }
            Err(_) => return iovs.len() as u64,
        }
    }
}
