//! Batched datagram I/O: one `recvmmsg`/`sendmmsg` system call moves up to
//! [`BATCH`] datagrams.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use nix::cmsg_space;
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage, recvmmsg, sendmmsg,
};
use nix::sys::time::TimeSpec;

/// Datagrams moved per system call.
pub const BATCH: usize = 32;

/// Largest UDP payload we accept.
pub const MAX_DATAGRAM: usize = 65_535;

/// Bytes between the starts of two receive buffers: room for the largest
/// datagram (and one byte more, to see truncation) plus nine cache lines.
/// Buffers a power of two apart would begin in the same cache sets, so the
/// first lines of 32 datagrams, the only ones a SIP message usually fills,
/// would evict each other between the kernel's copy and ours; nine lines
/// apart they spread over every set.
const RECV_STRIDE: usize = MAX_DATAGRAM + 1 + 9 * 64;

/// Reusable receive buffers and headers for one socket.
pub struct RecvBatch {
    /// [`BATCH`] buffers, [`RECV_STRIDE`] bytes apart, in one allocation.
    slab: Box<[u8]>,
    lengths: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
    truncated: [bool; BATCH],
    stamps: [Option<SystemTime>; BATCH],
    count: usize,
}

impl RecvBatch {
    /// Allocates the buffers once; nothing is allocated per receive.
    pub fn new() -> Self {
        RecvBatch {
            slab: vec![0u8; BATCH * RECV_STRIDE].into_boxed_slice(),
            lengths: [0; BATCH],
            sources: [None; BATCH],
            truncated: [false; BATCH],
            stamps: [None; BATCH],
            count: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking. Returns how many
    /// arrived; `WouldBlock` when none was waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = Vec::with_capacity(BATCH);
        for chunk in self.slab.chunks_exact_mut(RECV_STRIDE) {
            let (buf, _gap) = chunk.split_at_mut(MAX_DATAGRAM + 1);
            slices.push([IoSliceMut::new(buf)]);
        }
        // The headers hold raw pointers (not `Send`), so they live only for
        // the call; that keeps the batch usable from any runtime thread.
        // Room for one kernel receive timestamp (SO_TIMESTAMPNS) each.
        let mut headers =
            MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(cmsg_space!(TimeSpec)));
        let results = recvmmsg(
            fd,
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        let mut n = 0;
        for msg in results {
            self.lengths[n] = msg.bytes;
            self.truncated[n] = msg.bytes > MAX_DATAGRAM || msg.flags.contains(MsgFlags::MSG_TRUNC);
            self.sources[n] = msg.address.as_ref().and_then(to_socket_addr);
            self.stamps[n] = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::ScmTimestampns(ts) => Some(
                        SystemTime::UNIX_EPOCH
                            + Duration::new(
                                u64::try_from(ts.tv_sec()).unwrap_or(0),
                                u32::try_from(ts.tv_nsec()).unwrap_or(0),
                            ),
                    ),
                    _ => None,
                })
            });
            n += 1;
        }
        self.count = n;
        Ok(n)
    }

    /// The `i`th datagram of the last receive: its source and a copy of its
    /// bytes (the only allocation per datagram), or `None` when it was
    /// truncated or had no source address.
    pub fn take(&self, i: usize) -> Option<(SocketAddr, Bytes)> {
        if i >= self.count || self.truncated[i] {
            return None;
        }
        let src = self.sources[i]?;
        let len = self.lengths[i].min(MAX_DATAGRAM);
        let data = self.slab.get(i * RECV_STRIDE..i * RECV_STRIDE + len)?;
        Some((src, Bytes::copy_from_slice(data)))
    }
}

impl RecvBatch {
    /// When the kernel received the `i`th datagram of the last receive
    /// (`None` without `SO_TIMESTAMPNS` on the socket).
    pub fn received_at(&self, i: usize) -> Option<SystemTime> {
        if i >= self.count {
            return None;
        }
        self.stamps.get(i).copied().flatten()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// Datagrams waiting to be sent from one socket.
pub struct SendBatch {
    queue: Vec<(SocketAddr, Bytes)>,
}

impl SendBatch {
    /// An empty queue with headers for [`BATCH`] datagrams per call.
    pub fn new() -> Self {
        SendBatch {
            queue: Vec::with_capacity(BATCH),
        }
    }

    /// Queues a datagram.
    pub fn push(&mut self, dest: SocketAddr, data: Bytes) {
        self.queue.push((dest, data));
    }

    /// Drops everything queued; returns how many datagrams that was.
    pub fn clear(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        n
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends as much of the queue as the socket takes now. Datagrams the
    /// kernel refuses individually (unreachable destination and the like) are
    /// dropped and counted in the returned `dropped`. Returns `WouldBlock`
    /// when the socket buffer is full and something is still queued.
    pub fn flush(&mut self, fd: RawFd) -> io::Result<FlushStats> {
        let mut stats = FlushStats::default();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        while !self.queue.is_empty() {
            let take = self.queue.len().min(BATCH);
            let slices: Vec<[IoSlice<'_>; 1]> = self.queue[..take]
                .iter()
                .map(|(_, d)| [IoSlice::new(d)])
                .collect();
            let addrs: Vec<Option<SockaddrStorage>> = self.queue[..take]
                .iter()
                .map(|(a, _)| Some(SockaddrStorage::from(*a)))
                .collect();
            let sent = match sendmmsg(
                fd,
                &mut headers,
                slices.iter(),
                &addrs,
                [],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(results) => results.count(),
                Err(Errno::EAGAIN) => {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    // The first datagram of the batch failed on its own
                    // (e.g. EHOSTUNREACH, EMSGSIZE): drop it, go on.
                    stats.dropped += 1;
                    1
                }
            };
            let sent = sent.max(1).min(self.queue.len());
            stats.sent += sent;
            self.queue.drain(..sent);
        }
        Ok(stats)
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// What one [`SendBatch::flush`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Datagrams handed to the kernel.
    pub sent: usize,
    /// Datagrams dropped because the kernel refused them.
    pub dropped: usize,
}

fn to_socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    if let Some(v6) = s.as_sockaddr_in6() {
        return Some(SocketAddr::V6(SocketAddrV6::new(
            v6.ip(),
            v6.port(),
            v6.flowinfo(),
            v6.scope_id(),
        )));
    }
    let _ = s.family();
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batch_round_trip_over_loopback() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let mut out = SendBatch::new();
        for i in 0..50u8 {
            out.push(b_addr, Bytes::from(vec![i; 10 + i as usize]));
        }
        let stats = out.flush(a.as_raw_fd()).unwrap();
        assert_eq!(stats.sent, 50);
        assert!(out.is_empty());

        let mut inb = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 50 {
            let n = inb.recv(b.as_raw_fd()).unwrap();
            assert!(n <= BATCH);
            for i in 0..n {
                let (src, data) = inb.take(i).unwrap();
                assert_eq!(src, a.local_addr().unwrap());
                got.push(data);
            }
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.len(), 10 + i);
            assert!(d.iter().all(|&x| x as usize == i));
        }
        // Without SO_TIMESTAMPNS there is no receive time.
        assert_eq!(inb.received_at(0), None);
        // Nothing more waiting: WouldBlock, not a hang.
        assert_eq!(
            inb.recv(b.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn kernel_receive_times_with_so_timestampns() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&b, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
            .unwrap();
        let before = SystemTime::now();
        a.send_to(b"stamped", b.local_addr().unwrap()).unwrap();
        let mut inb = RecvBatch::new();
        let n = loop {
            match inb.recv(b.as_raw_fd()) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(n, 1);
        let at = inb.received_at(0).unwrap();
        let after = SystemTime::now();
        assert!(
            at >= before - Duration::from_millis(1) && at <= after,
            "{at:?}"
        );
        assert_eq!(inb.received_at(1), None);
    }

    #[test]
    fn the_largest_datagrams_arrive_whole_beside_small_ones() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&b, nix::sys::socket::sockopt::RcvBuf, &(1 << 20)).unwrap();
        let b_addr = b.local_addr().unwrap();
        // Loopback UDP carries at most 65,507 bytes over IPv4.
        let big = 65_507;
        let sizes = [big, 3, big, 500, big];
        for (i, &len) in sizes.iter().enumerate() {
            a.send_to(&vec![i as u8 + 1; len], b_addr).unwrap();
        }
        let mut inb = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < sizes.len() {
            match inb.recv(b.as_raw_fd()) {
                Ok(n) => got.extend((0..n).map(|i| inb.take(i).unwrap().1)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        for (i, (d, &len)) in got.iter().zip(&sizes).enumerate() {
            assert_eq!(d.len(), len, "datagram {i}");
            assert!(d.iter().all(|&x| x == i as u8 + 1), "datagram {i}");
        }
    }
}
