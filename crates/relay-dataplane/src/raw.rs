//! Raw-socket I/O for [`crate::ForwardingIo::Raw`]: the kernel filter that
//! picks a worker's datagrams, the IPv4/UDP headers read from received
//! datagrams and written on sent ones, and the sockets with their batch
//! buffers.
//!
//! A received datagram arrives with its IPv4 header. The outgoing headers
//! (20 bytes of IPv4, 8 of UDP) are written just before the payload, over
//! the received headers, so the payload is never copied: a received header
//! is at least 28 bytes long.

use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use crate::RAW_BATCH;

/// Receive buffer size: a jumbo frame. Larger datagrams are dropped and
/// counted as errors of their stream.
const RAW_BUF: usize = crate::MAX_DATAGRAM;
/// Receive buffer of the raw socket: it holds every stream's backlog.
const RAW_RCVBUF: usize = 8 << 20;
/// IPv4 + UDP header length written on sent datagrams.
pub(crate) const HEADERS: usize = 28;
/// IP protocol number of UDP.
const UDP: u8 = 17;
/// IPPROTO_RAW: a send-only raw socket whose datagrams carry their header.
const IPPROTO_RAW: i32 = 255;

/// The worker (of `workers`) whose raw socket takes datagrams to `port`:
/// an RTP port and its RTCP port (`p`, `p + 1`, `p` even) go to the same one.
/// The control plane allocates a session's ports from its worker's partition.
pub fn raw_partition(port: u16, workers: usize) -> usize {
    usize::from(port >> 1) % workers.max(1)
}

/// A classic BPF program that accepts UDP-in-IPv4 datagrams (as a raw
/// IPPROTO_UDP socket sees them, from the IPv4 header on) whose destination
/// port is even (an RTP port: RTCP ports carry a datagram every few
/// seconds and are served by their sockets, which saves them the socket
/// filter a stream served through raw I/O needs), in `min..=max` and in
/// partition `index` of `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFilter {
    min: u16,
    max: u16,
    index: usize,
    count: usize,
}

/// A filter that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The range is empty.
    #[error("empty port range {0}..={1}")]
    EmptyRange(u16, u16),
    /// The partition index is not below the partition count.
    #[error("partition {0} of {1}")]
    NoPartition(usize, usize),
}

// Classic BPF opcodes (linux/filter.h).
const LD_H_ABS: u16 = 0x28;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const JGE_K: u16 = 0x35;
const JGT_K: u16 = 0x25;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RSH_K: u16 = 0x74;
const MOD_K: u16 = 0x94;
const RET_K: u16 = 0x06;

impl RawFilter {
    /// The filter for partition `index` of `count` of `min..=max`.
    pub fn new(min: u16, max: u16, index: usize, count: usize) -> Result<RawFilter, FilterError> {
        if min > max {
            return Err(FilterError::EmptyRange(min, max));
        }
        if index >= count.max(1) {
            return Err(FilterError::NoPartition(index, count));
        }
        Ok(RawFilter {
            min,
            max,
            index,
            count: count.max(1),
        })
    }

    /// The program. Fragments (which the kernel reassembles before raw
    /// delivery, so never seen in practice) and datagrams to odd ports or
    /// outside the range or partition are refused.
    pub fn program(&self) -> Vec<Insn> {
        let partitioned = self.count > 1;
        let accept = if partitioned { 10 } else { 7 };
        // Jumps count the instructions skipped after the jump.
        let to_refuse = |at: usize| u8::try_from(accept - at).unwrap_or(0);
        let mut prog = vec![
            // Fragment offset or more-fragments set: refuse.
            Insn::new(LD_H_ABS, 0, 0, 6),
            Insn::new(JSET_K, to_refuse(1), 0, 0x3fff),
            // X = IPv4 header length; A = destination port.
            Insn::new(LDX_B_MSH, 0, 0, 0),
            Insn::new(LD_H_IND, 0, 0, 2),
            Insn::new(JSET_K, to_refuse(4), 0, 1),
            Insn::new(JGE_K, 0, to_refuse(5), u32::from(self.min)),
            Insn::new(JGT_K, to_refuse(6), 0, u32::from(self.max)),
        ];
        if partitioned {
            prog.push(Insn::new(RSH_K, 0, 0, 1));
            prog.push(Insn::new(MOD_K, 0, 0, self.count as u32));
            prog.push(Insn::new(JEQ_K, 0, to_refuse(9), self.index as u32));
        }
        prog.push(Insn::new(RET_K, 0, 0, 0xffff));
        prog.push(Insn::new(RET_K, 0, 0, 0));
        prog
    }

    /// The program as `setsockopt(SO_ATTACH_FILTER)` takes it.
    fn sock_filter(&self) -> Vec<SockFilter> {
        self.program()
            .iter()
            .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
            .collect()
    }
}

/// One classic BPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Instructions skipped when the condition holds.
    pub jt: u8,
    /// Instructions skipped when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

impl Insn {
    const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }
}

/// The addresses and payload of a received UDP-in-IPv4 datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Datagram {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// Offset of the UDP payload in the buffer.
    pub payload: usize,
    /// End of the UDP payload (the UDP length, not the buffer's).
    pub end: usize,
    /// The datagram is longer than what was read (the buffer was too
    /// small): only its headers are there.
    pub truncated: bool,
}

/// Reads the headers of a datagram as a raw IPPROTO_UDP socket returns it;
/// `None` for anything that is not a whole UDP-in-IPv4 datagram.
pub(crate) fn parse(buf: &[u8]) -> Option<Datagram> {
    let first = *buf.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || buf.len() < ihl + 8 || buf.get(9) != Some(&UDP) {
        return None;
    }
    let ip = |o: usize| {
        buf.get(o..o + 4)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    let be16 = |o: usize| buf.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (src, dst) = (ip(12)?, ip(16)?);
    let (sport, dport, udp_len) = (be16(ihl)?, be16(ihl + 2)?, usize::from(be16(ihl + 4)?));
    let end = ihl + udp_len;
    if udp_len < 8 {
        return None;
    }
    Some(Datagram {
        src: SocketAddrV4::new(src, sport),
        dst: SocketAddrV4::new(dst, dport),
        payload: ihl + 8,
        end,
        truncated: end > buf.len(),
    })
}

/// The UDP checksum of `udp` (header with a zero checksum field, then
/// payload) between `src` and `dst`; 0 is sent as 0xffff (RFC 768).
pub fn udp_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut sum: u64 = u64::from(UDP) + udp.len() as u64;
    for a in [src.octets(), dst.octets()] {
        sum += u64::from(u32::from_be_bytes(a));
    }
    let mut words = udp.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    sum += u64::from(u32::from_be_bytes(tail));
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xffff,
        c => c,
    }
}

/// Writes IPv4 and UDP headers for `buf[payload..end]` into
/// `buf[payload - 28..payload]`: from `src` to `dst` with `tos`, don't
/// fragment, TTL 64. Returns where the headers start; the kernel fills in
/// the identifier and the header checksum (for a raw IPPROTO_RAW send).
/// `None` if the room is not there.
pub fn write_headers(
    buf: &mut [u8],
    payload: usize,
    end: usize,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    tos: u8,
) -> Option<usize> {
    let start = payload.checked_sub(HEADERS)?;
    let udp_len = u16::try_from(end.checked_sub(payload)? + 8).ok()?;
    let total = u16::try_from(usize::from(udp_len) + 20).ok()?;
    let head = buf.get_mut(start..payload)?;
    head[0] = 0x45;
    head[1] = tos;
    head[2..4].copy_from_slice(&total.to_be_bytes());
    // Identifier 0, don't fragment: the kernel skips choosing an identifier.
    head[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
    head[8] = 64;
    head[9] = UDP;
    head[10..12].copy_from_slice(&[0, 0]);
    head[12..16].copy_from_slice(&src.ip().octets());
    head[16..20].copy_from_slice(&dst.ip().octets());
    head[20..22].copy_from_slice(&src.port().to_be_bytes());
    head[22..24].copy_from_slice(&dst.port().to_be_bytes());
    head[24..26].copy_from_slice(&udp_len.to_be_bytes());
    head[26..28].copy_from_slice(&[0, 0]);
    let udp = buf.get(start + 20..end)?;
    let sum = udp_checksum_v4(*src.ip(), *dst.ip(), udp);
    buf.get_mut(start + 26..start + 28)?
        .copy_from_slice(&sum.to_be_bytes());
    Some(start)
}

/// A worker's two raw sockets, opened on the starting thread (so a missing
/// privilege is reported by `Dataplane::start`).
#[derive(Debug)]
pub(crate) struct RawSockets {
    rx: Socket,
    tx: Socket,
    /// The receiving socket's inode: its line in `/proc/net/raw`.
    pub rx_inode: u64,
}

impl RawSockets {
    /// Opens the receiving socket with `filter` and the sending socket.
    pub(crate) fn open(filter: &RawFilter) -> std::io::Result<RawSockets> {
        let rx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))?;
        rx.attach_filter(&filter.sock_filter())?;
        rx.set_nonblocking(true)?;
        // Up to rmem_max; as much as is allowed.
        let _ = rx.set_recv_buffer_size(RAW_RCVBUF);
        let tx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))?;
        tx.set_nonblocking(true)?;
        // fstat of a duplicate (closed again at once) gives the inode.
        let dup: std::os::fd::OwnedFd = rx.try_clone()?.into();
        let rx_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::File::from(dup).metadata()?);
        Ok(RawSockets { rx, tx, rx_inode })
    }
}

/// The sum of the `drops` column of `/proc/net/raw`-formatted `table` over
/// the sockets with these inodes: datagrams the kernel dropped because a raw
/// socket's queue was full.
pub(crate) fn drops_in(table: &str, inodes: &[u64]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(9)?.parse().ok()?;
            let drops: u64 = fields.get(12)?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

/// One outgoing datagram of the pending batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing {
    /// Receive buffer it sits in, and its headers' start and end.
    pub buf: usize,
    pub start: usize,
    pub end: usize,
    /// Receiving and sink stream slots (counters; the fallback socket).
    pub from: u32,
    pub sink: u32,
}

/// The raw sockets with their batch buffers (built on the worker's thread:
/// the headers hold pointers).
pub(crate) struct RawIo {
    sockets: RawSockets,
    pub bufs: Box<[[u8; RAW_BUF]; RAW_BATCH]>,
    pub lens: [usize; RAW_BATCH],
    recv_hdrs: MultiHeaders<()>,
    send_hdrs: MultiHeaders<SockaddrStorage>,
    dests: Box<[Option<SockaddrStorage>; RAW_BATCH]>,
    pub out: Vec<Outgoing>,
}

/// What became of a pending batch: per datagram, sent or not (with the
/// error when the kernel refused it).
pub(crate) enum Sent {
    Ok,
    Refused(nix::errno::Errno),
}

impl RawIo {
    pub(crate) fn new(sockets: RawSockets) -> RawIo {
        RawIo {
            sockets,
            bufs: crate::zeroed_buffers(),
            lens: [0; RAW_BATCH],
            recv_hdrs: MultiHeaders::preallocate(RAW_BATCH, None),
            send_hdrs: MultiHeaders::preallocate(RAW_BATCH, None),
            dests: Box::new([None; RAW_BATCH]),
            out: Vec::with_capacity(RAW_BATCH),
        }
    }

    /// The receiving socket (for epoll).
    pub(crate) fn rx(&self) -> &Socket {
        &self.sockets.rx
    }

    /// One `recvmmsg` of up to [`RAW_BATCH`] datagrams; their count.
    pub(crate) fn receive(&mut self) -> usize {
        let mut iovs: [[IoSliceMut<'_>; 1]; RAW_BATCH] =
            self.bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
        match recvmmsg(
            self.sockets.rx.as_raw_fd(),
            &mut self.recv_hdrs,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(results) => {
                let mut n = 0;
                for (r, len) in results.zip(self.lens.iter_mut()) {
                    *len = r.bytes;
                    n += 1;
                }
                n
            }
            Err(_) => 0,
        }
    }

    /// Queues buffer `buf`, whose headers were written at `start..end`
    /// towards `dst`.
    pub(crate) fn queue(&mut self, out: Outgoing, dst: SocketAddrV4) {
        if let Some(d) = self.dests.get_mut(self.out.len()) {
            *d = Some(SockaddrStorage::from(SocketAddrV4::new(*dst.ip(), 0)));
            self.out.push(out);
        }
    }

    /// Sends the pending batch (one `sendmmsg` per run of datagrams the
    /// kernel takes) and calls `each` with every datagram's fate, in order.
    pub(crate) fn flush(&mut self, mut each: impl FnMut(&RawIo, Outgoing, Sent)) {
        let n = self.out.len();
        let mut at = 0;
        while at < n {
            let mut iovs: [[IoSlice<'_>; 1]; RAW_BATCH] = [[IoSlice::new(&[])]; RAW_BATCH];
            for (iov, o) in iovs.iter_mut().zip(&self.out[at..]) {
                *iov = [IoSlice::new(queued(&self.bufs, o))];
            }
            let sent = sendmmsg(
                self.sockets.tx.as_raw_fd(),
                &mut self.send_hdrs,
                iovs.get(..n - at).unwrap_or_default(),
                self.dests.get(at..n).unwrap_or_default(),
                [],
                MsgFlags::MSG_DONTWAIT,
            );
            let (took, err) = match sent {
                Ok(r) => (r.count(), None),
                Err(e) => (0, Some(e)),
            };
            for o in self.out.get(at..at + took).unwrap_or_default() {
                each(self, *o, Sent::Ok);
            }
            at += took;
            // The first datagram not taken: the error is its own (sendmmsg
            // reports it when nothing was sent, else on the next call).
            if at < n {
                if let Some(o) = self.out.get(at).copied() {
                    let fate = match err {
                        Some(e) => Sent::Refused(e),
                        None => self.send_one(at),
                    };
                    each(self, o, fate);
                }
                at += 1;
            }
        }
        self.out.clear();
    }

    /// Sends pending datagram `at` alone.
    fn send_one(&self, at: usize) -> Sent {
        let (Some(o), Some(Some(dest))) = (self.out.get(at), self.dests.get(at)) else {
            return Sent::Refused(nix::errno::Errno::EINVAL);
        };
        let data = queued(&self.bufs, o);
        match nix::sys::socket::sendto(
            self.sockets.tx.as_raw_fd(),
            data,
            dest,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(_) => Sent::Ok,
            Err(e) => Sent::Refused(e),
        }
    }
}

/// The bytes (headers and payload) of queued datagram `o`.
fn queued<'a>(bufs: &'a [[u8; RAW_BUF]; RAW_BATCH], o: &Outgoing) -> &'a [u8] {
    bufs.get(o.buf)
        .and_then(|b| b.get(o.start..o.end))
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An IPv4 header (with `ihl` words) + UDP header + payload.
    fn datagram(ihl: u8, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        let hl = usize::from(ihl) * 4;
        let mut b = vec![0u8; hl + 8 + payload.len()];
        b[0] = 0x40 | ihl;
        b[9] = UDP;
        b[12..16].copy_from_slice(&src.ip().octets());
        b[16..20].copy_from_slice(&dst.ip().octets());
        b[hl..hl + 2].copy_from_slice(&src.port().to_be_bytes());
        b[hl + 2..hl + 4].copy_from_slice(&dst.port().to_be_bytes());
        b[hl + 4..hl + 6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        b[hl + 8..].copy_from_slice(payload);
        b
    }

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn drops_are_read_for_own_sockets_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 210: 00000000:0011 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4135798 2 000000006deeb34f 17
 211: 00000000:0011 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4135799 2 000000006deeb350 5
 212: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4135800 2 000000006deeb351 1000
";
        assert_eq!(drops_in(table, &[4135798]), 17);
        assert_eq!(drops_in(table, &[4135798, 4135799]), 22);
        assert_eq!(drops_in(table, &[1]), 0);
        assert_eq!(drops_in("garbage\nmore garbage", &[1]), 0);
    }

    #[test]
    fn parse_reads_addresses_and_payload_with_options() {
        for ihl in [5u8, 6, 15] {
            let b = datagram(ihl, a("10.0.0.1:4000"), a("10.0.0.2:30000"), b"hello");
            let d = parse(&b).unwrap();
            assert_eq!(d.src, a("10.0.0.1:4000"));
            assert_eq!(d.dst, a("10.0.0.2:30000"));
            assert_eq!(&b[d.payload..d.end], b"hello");
        }
    }

    #[test]
    fn parse_refuses_what_is_not_a_whole_udp_datagram() {
        let good = datagram(5, a("10.0.0.1:4000"), a("10.0.0.2:30000"), b"hello");
        assert!(!parse(&good).unwrap().truncated);
        assert!(
            parse(&good[..good.len() - 1]).unwrap().truncated,
            "UDP length beyond the data"
        );
        assert!(parse(&good[..27]).is_none(), "no whole UDP header");
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert!(parse(&v6).is_none());
        let mut short_ihl = good.clone();
        short_ihl[0] = 0x44;
        assert!(parse(&short_ihl).is_none());
        let mut tcp = good.clone();
        tcp[9] = 6;
        assert!(parse(&tcp).is_none());
        let mut tiny = good;
        tiny[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert!(parse(&tiny).is_none(), "UDP length below its header");
        assert!(parse(&[]).is_none());
    }

    #[test]
    fn checksum_matches_a_known_datagram() {
        // 192.168.0.1:1000 -> 192.168.0.2:2000, payload "hi": computed by
        // hand, one's complement of the 16-bit word sum.
        let udp = [0x03, 0xe8, 0x07, 0xd0, 0x00, 0x0a, 0x00, 0x00, b'h', b'i'];
        let words: u32 = [
            0xc0a8, 0x0001, 0xc0a8, 0x0002, 17, 10, 0x03e8, 0x07d0, 0x000a, 0x6869,
        ]
        .iter()
        .sum();
        let folded = (words & 0xffff) + (words >> 16);
        let expect = !(folded as u16);
        let got = udp_checksum_v4(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(192, 168, 0, 2),
            &udp,
        );
        assert_eq!(got, expect);
        // Odd lengths pad with a zero byte; any length verifies to 0xffff.
        for len in 0..40 {
            let mut u = vec![0u8; 8 + len];
            for (i, b) in u.iter_mut().enumerate() {
                *b = (i * 37) as u8;
            }
            u[6] = 0;
            u[7] = 0;
            let (s, d) = (Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(172, 16, 9, 8));
            let c = udp_checksum_v4(s, d, &u);
            u[6..8].copy_from_slice(&c.to_be_bytes());
            // Summing with the checksum in place gives all ones: the
            // function's complement is then 0, sent as 0xffff.
            assert_eq!(udp_checksum_v4(s, d, &u), 0xffff, "length {len}");
        }
    }

    #[test]
    fn headers_are_written_before_the_payload() {
        // With IPv4 options (7 words) the new headers start later; the
        // payload stays where it is.
        for (ihl, start_at, tos) in [(5u8, 0usize, 184u8), (7, 8, 0)] {
            let mut b = datagram(ihl, a("10.0.0.1:4000"), a("10.0.0.2:30000"), b"media");
            let d = parse(&b).unwrap();
            let (from, to) = (a("10.0.0.2:30002"), a("10.0.0.9:5004"));
            let start = write_headers(&mut b, d.payload, d.end, from, to, tos).unwrap();
            assert_eq!(start, start_at);
            let out = parse(&b[start..d.end]).unwrap();
            assert_eq!((out.src, out.dst), (from, to));
            assert_eq!(&b[start..][out.payload..out.end], b"media");
            assert_eq!(b[start + 1], tos);
            assert_eq!(b[start + 6] & 0x40, 0x40, "don't fragment");
        }
        let mut b = datagram(5, a("10.0.0.1:4000"), a("10.0.0.2:30000"), b"media");
        assert!(write_headers(&mut b, 20, 30, a("1.1.1.1:1"), a("1.1.1.1:2"), 0).is_none());
    }

    /// Runs a classic BPF program (the subset `RawFilter` emits) on a packet.
    fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let (mut acc, mut x, mut pc) = (0u32, 0u32, 0usize);
        let h = |o: usize| u32::from(u16::from_be_bytes([pkt[o], pkt[o + 1]]));
        loop {
            let Insn { code, jt, jf, k } = prog[pc];
            pc += 1;
            let jump = |c: bool| if c { usize::from(jt) } else { usize::from(jf) };
            match code {
                LD_H_ABS => acc = h(k as usize),
                LD_H_IND => acc = h(x as usize + k as usize),
                LDX_B_MSH => x = u32::from(pkt[k as usize] & 0xf) * 4,
                JGE_K => pc += jump(acc >= k),
                JGT_K => pc += jump(acc > k),
                JEQ_K => pc += jump(acc == k),
                JSET_K => pc += jump(acc & k != 0),
                RSH_K => acc >>= k,
                MOD_K => acc %= k,
                RET_K => return k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn filter_takes_the_range_and_the_partition() {
        let to = |port: u16| {
            datagram(
                5,
                a("10.0.0.1:4000"),
                SocketAddrV4::new([10, 0, 0, 2].into(), port),
                b"x",
            )
        };
        let one = RawFilter::new(30000, 30009, 0, 1).unwrap().program();
        for (port, taken) in [
            (29998, false),
            (30000, true),
            (30001, false),
            (30008, true),
            (30009, false),
            (30010, false),
            (8, false),
        ] {
            assert_eq!(run(&one, &to(port)) != 0, taken, "port {port}");
        }
        let mut fragment = to(30000);
        fragment[6] = 0x20; // more fragments
        assert_eq!(run(&one, &fragment), 0);
        let with_options = datagram(6, a("10.0.0.1:4000"), a("10.0.0.2:30004"), b"x");
        assert_ne!(run(&one, &with_options), 0);
        for count in [2usize, 3] {
            for port in (30000..30010u16).step_by(2) {
                let owners: Vec<usize> = (0..count)
                    .filter(|&i| {
                        run(
                            &RawFilter::new(30000, 30009, i, count).unwrap().program(),
                            &to(port),
                        ) != 0
                    })
                    .collect();
                assert_eq!(
                    owners,
                    vec![raw_partition(port, count)],
                    "port {port} of {count}"
                );
            }
        }
        assert_eq!(
            raw_partition(30000, 2),
            raw_partition(30001, 2),
            "RTP and RTCP together"
        );
        assert!(RawFilter::new(2, 1, 0, 1).is_err());
        assert!(RawFilter::new(1, 2, 2, 2).is_err());
    }
}
