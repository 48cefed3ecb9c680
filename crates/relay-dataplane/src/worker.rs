//! One forwarding worker: an edge-triggered epoll loop over its streams'
//! sockets.
//!
//! Per wake-up the worker applies queued commands, then drains every ready
//! socket (one `recvmmsg` per socket and [`BATCH`] datagrams; a socket that
//! filled the batch is read again, at most [`MAX_BATCHES_PER_TURN`] times per
//! turn so one flooded port cannot starve the others, and is revisited on the
//! next turn). Each received batch leaves through its sink's socket with one
//! `sendmmsg` per sink.
//!
//! With raw I/O ([`crate::ForwardingIo::Raw`]) the worker's IPv4 streams in
//! its partition are not polled: their datagrams come in batches from the
//! worker's raw socket, are routed to their stream by destination address
//! and port, and leave in batches through the raw sending socket.

use std::collections::HashMap;
use std::io::IoSlice;
use std::io::IoSliceMut;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::socket::{
    MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage, recvmmsg, sendmmsg, sendto,
};

use crate::raw::{RawIo, RawSockets};
use crate::rtp::{PacketClass, classify, first_report_block};
use crate::{
    BATCH, Latching, StandbyHook, StreamCommand, StreamConfig, StreamCounters, StreamKey,
    StreamKind,
};

mod raw_path;

const WAKE_TOKEN: u64 = u64::MAX;
const RAW_TOKEN: u64 = u64::MAX - 1;
const BUF_SIZE: usize = crate::MAX_DATAGRAM;
/// Full batches read from one socket per turn before the others get theirs.
const MAX_BATCHES_PER_TURN: usize = 4;
/// Datagrams asked for by the first `recvmmsg` on a readable socket.
const FIRST_READ: usize = 4;
/// Longest sleep in `epoll_wait`: commands queued without a wake-up (and the
/// stop flag) are seen within this.
const IDLE_WAIT_MS: u16 = 100;

type KeyMap = HashMap<StreamKey, usize, foldhash::fast::RandomState>;
/// Raw I/O: the stream slot of each local address and port.
type RouteMap = HashMap<SocketAddrV4, u32, foldhash::fast::RandomState>;

/// No slot (a sink not resolved, or not there).
const NO_SLOT: u32 = u32::MAX;

/// The fields read per packet come first, in the first cache line of the
/// (64-byte aligned) stream: a 50-pps stream is rarely still in cache when
/// its next packet comes, so every line touched per packet is a miss.
#[repr(C, align(64))]
struct Stream {
    /// Current destination (configured, or latched).
    endpoint: Option<SocketAddr>,
    counters: Arc<StreamCounters>,
    /// Slots of `config.sink_rtp` / `config.sink_rtcp`, resolved through
    /// the key map at worker epoch `sinks_epoch` (valid while no command
    /// has been applied since).
    sink_rtp: u32,
    sink_rtcp: u32,
    sinks_epoch: u32,
    socket: UdpSocket,
    /// The bound IPv4 address and port, if one raw headers can carry
    /// (specified address): sinks with one are sent to through raw I/O.
    local_v4: Option<SocketAddrV4>,
    kind: StreamKind,
    v6: bool,
    /// Served by the raw socket. Its own socket is polled until its first
    /// datagram, then told to drop what it receives (`sealed`).
    raw: bool,
    sealed: bool,
    latched: bool,
    /// Copies of `config.latching`, `config.strict_source`, `config.standby`.
    latching: Latching,
    strict_source: bool,
    standby: bool,
    // Cold: read on commands only.
    key: StreamKey,
    config: StreamConfig,
    /// The standby hook has been called since the stream became standby.
    reported: bool,
    /// The TOS byte set on the socket (None: not set yet).
    tos: Option<u8>,
}

pub(crate) struct Worker {
    index: usize,
    rx: mpsc::Receiver<StreamCommand>,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    epoll: Epoll,
    slots: Vec<Option<Stream>>,
    free: Vec<usize>,
    by_key: KeyMap,
    bufs: Box<[[u8; BUF_SIZE]; BATCH]>,
    /// Receive headers per address family: the kernel takes each header's
    /// name length as the room for the source address and `MultiHeaders`
    /// keeps the length of the previous datagram, so headers shared between
    /// IPv4 and IPv6 sockets would truncate IPv6 sources after IPv4 ones.
    recv_hdrs_v4: MultiHeaders<SockaddrStorage>,
    recv_hdrs_v6: MultiHeaders<SockaddrStorage>,
    send_hdrs: MultiHeaders<SockaddrStorage>,
    dests: Box<[Option<SockaddrStorage>; BATCH]>,
    lens: [usize; BATCH],
    srcs: [Option<SocketAddr>; BATCH],
    /// Sockets that still had data when their turn ended.
    backlog: Vec<usize>,
    hook: Option<StandbyHook>,
    /// Bumped by every applied command; cached sink slots of another epoch
    /// are resolved again.
    epoch: u32,
    /// Raw I/O, when configured.
    raw: Option<RawWorker>,
}

/// What a worker needs for raw I/O.
pub(crate) struct RawSetup {
    pub sockets: RawSockets,
    /// The port range and this worker's partition of it.
    pub port_min: u16,
    pub port_max: u16,
    pub partitions: usize,
    /// Shared totals.
    pub stats: Arc<crate::RawStats>,
}

struct RawWorker {
    io: RawIo,
    routes: RouteMap,
    port_min: u16,
    port_max: u16,
    partitions: usize,
    stats: Arc<crate::RawStats>,
}

/// Adds `n` to a counter only this worker writes (no locked instruction).
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl Stream {
    /// Classification, source policy (latching, strict source) and RTCP
    /// report counters for one received datagram; `None` if it is dropped
    /// (not RTP/RTCP, or from a refused source).
    fn admit(&mut self, src: SocketAddr, data: &[u8]) -> Option<PacketClass> {
        let class = match (self.kind, classify(data)) {
            (_, PacketClass::Invalid) => return None,
            (StreamKind::Rtcp, _) => PacketClass::Rtcp,
            (StreamKind::Rtp, c) => c,
        };
        if Some(src) != self.endpoint {
            let may_latch = match self.latching {
                Latching::Off => false,
                Latching::Once => !self.latched,
                Latching::Always => true,
            };
            if may_latch {
                self.endpoint = Some(src);
                self.latched = true;
                if let Ok(mut g) = self.counters.latched.lock() {
                    *g = Some(src);
                }
            } else if self.strict_source {
                return None;
            }
        } else if !self.latched && self.latching != Latching::Off {
            self.latched = true;
            if let Ok(mut g) = self.counters.latched.lock() {
                *g = Some(src);
            }
        }
        if class == PacketClass::Rtcp
            && let Some(rb) = first_report_block(data)
        {
            let c = &self.counters;
            c.rtcp_fraction_lost
                .store(u32::from(rb.fraction_lost), Ordering::Relaxed);
            c.rtcp_packets_lost
                .store(i64::from(rb.packets_lost), Ordering::Relaxed);
            c.rtcp_jitter.store(rb.jitter, Ordering::Relaxed);
            c.rtcp_seen.store(true, Ordering::Relaxed);
        }
        Some(class)
    }

    /// The RTP and RTCP sink slots. Sinks may be added after their
    /// sources, and slots are reused: resolved again after any command
    /// (a new `epoch`).
    fn sinks(&mut self, epoch: u32, by_key: &KeyMap) -> (u32, u32) {
        if self.sinks_epoch != epoch {
            let resolve = |k: Option<StreamKey>| {
                k.and_then(|k| by_key.get(&k))
                    .and_then(|&i| u32::try_from(i).ok())
                    .unwrap_or(NO_SLOT)
            };
            self.sink_rtp = resolve(self.config.sink_rtp);
            self.sink_rtcp = resolve(self.config.sink_rtcp);
            self.sinks_epoch = epoch;
        }
        (self.sink_rtp, self.sink_rtcp)
    }

    /// Where packets leaving through this stream go, if anywhere.
    fn destination(&self) -> Option<SocketAddr> {
        self.endpoint
            .filter(|e| !e.ip().is_unspecified() && e.port() != 0)
    }
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        rx: mpsc::Receiver<StreamCommand>,
        wake: Arc<EventFd>,
        stop: Arc<AtomicBool>,
        capacity: usize,
        hook: Option<StandbyHook>,
        raw: Option<RawSetup>,
    ) -> std::io::Result<Worker> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
        )?;
        let raw = match raw {
            Some(setup) => {
                let io = RawIo::new(setup.sockets);
                // Level-triggered: what one turn leaves wakes the next.
                epoll.add(
                    io.rx().as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, RAW_TOKEN),
                )?;
                Some(RawWorker {
                    io,
                    routes: RouteMap::with_capacity_and_hasher(capacity, Default::default()),
                    port_min: setup.port_min,
                    port_max: setup.port_max,
                    partitions: setup.partitions,
                    stats: setup.stats,
                })
            }
            None => None,
        };
        Ok(Worker {
            index,
            rx,
            wake,
            stop,
            epoll,
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            by_key: KeyMap::with_capacity_and_hasher(capacity, Default::default()),
            bufs: crate::zeroed_buffers(),
            recv_hdrs_v4: MultiHeaders::preallocate(BATCH, None),
            recv_hdrs_v6: MultiHeaders::preallocate(BATCH, None),
            send_hdrs: MultiHeaders::preallocate(BATCH, None),
            dests: Box::new([None; BATCH]),
            lens: [0; BATCH],
            srcs: [None; BATCH],
            backlog: Vec::new(),
            hook,
            epoch: 0,
            raw,
        })
    }

    pub(crate) fn run(&mut self) {
        let mut events = [EpollEvent::empty(); 256];
        let mut backlog = Vec::new();
        loop {
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let timeout = if self.backlog.is_empty() {
                EpollTimeout::from(IDLE_WAIT_MS)
            } else {
                EpollTimeout::ZERO
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(worker = self.index, error = %e, "epoll_wait failed");
                    break;
                }
            };
            let now_ms = crate::unix_ms();
            // Commands are applied every turn; the eventfd only ends the wait.
            self.drain_commands();
            std::mem::swap(&mut backlog, &mut self.backlog);
            for slot in backlog.drain(..) {
                self.on_readable(slot, now_ms);
            }
            for ev in events.iter().take(n) {
                let token = ev.data();
                if token == WAKE_TOKEN {
                    let _ = self.wake.read();
                } else if token == RAW_TOKEN {
                    self.on_raw_readable(now_ms);
                } else if let Ok(slot) = usize::try_from(token) {
                    self.on_readable(slot, now_ms);
                }
            }
        }
    }

    fn drain_commands(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            self.epoch = self.epoch.wrapping_add(1);
            match cmd {
                StreamCommand::Add {
                    key,
                    socket,
                    local,
                    kind,
                    counters,
                    config,
                } => self.add(key, socket, local, kind, counters, config),
                StreamCommand::Configure { key, config } => {
                    if let Some(&slot) = self.by_key.get(&key) {
                        self.configure(slot, config);
                    }
                }
                StreamCommand::Remove { key } => {
                    if let Some(slot) = self.by_key.remove(&key) {
                        if let Some(Some(s)) = self.slots.get(slot) {
                            if s.raw
                                && let (Some(raw), Some(local)) = (self.raw.as_mut(), s.local_v4)
                            {
                                raw.routes.remove(&local);
                            }
                            if !s.sealed {
                                let _ = self.epoll.delete(s.socket.as_fd());
                            }
                        }
                        if let Some(entry) = self.slots.get_mut(slot) {
                            *entry = None;
                        }
                        self.free.push(slot);
                    }
                }
            }
        }
    }

    fn add(
        &mut self,
        key: StreamKey,
        socket: UdpSocket,
        local: SocketAddr,
        kind: StreamKind,
        counters: Arc<StreamCounters>,
        config: StreamConfig,
    ) {
        let local_v4 = match local {
            SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(a),
            _ => None,
        };
        let raw = local_v4.is_some_and(|a| self.serves_raw(a));
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        // Configured before it is polled: its first packet already sees the
        // stream's settings.
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = Some(Stream {
                endpoint: None,
                counters,
                sink_rtp: NO_SLOT,
                sink_rtcp: NO_SLOT,
                sinks_epoch: self.epoch.wrapping_sub(1),
                socket,
                local_v4,
                kind,
                v6: local.is_ipv6(),
                raw,
                sealed: false,
                latched: false,
                latching: Latching::Off,
                strict_source: false,
                standby: false,
                key,
                config: StreamConfig::idle(false),
                reported: false,
                tos: None,
            });
        }
        self.configure(slot, config);
        if raw
            && let (Some(rw), Some(a), Ok(s)) = (self.raw.as_mut(), local_v4, u32::try_from(slot))
        {
            rw.routes.insert(a, s);
        }
        // Raw-served streams too: polled until their first datagram.
        let registered = match self.slots.get(slot) {
            Some(Some(s)) => self.epoll.add(
                s.socket.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, slot as u64),
            ),
            _ => return,
        };
        if let Err(e) = registered {
            tracing::warn!(error = %e, "epoll add failed");
            if let Some(entry) = self.slots.get_mut(slot) {
                *entry = None;
            }
            self.free.push(slot);
            return;
        }
        self.by_key.insert(key, slot);
    }

    fn configure(&mut self, slot: usize, config: StreamConfig) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        if s.tos != Some(config.tos) && set_tos(&s.socket, s.v6, config.tos) {
            s.tos = Some(config.tos);
        }
        if config.endpoint != s.config.endpoint || !s.latched {
            s.endpoint = config.endpoint;
            s.latched = false;
            if let Ok(mut g) = s.counters.latched.lock() {
                *g = None;
            }
        }
        if !config.standby {
            s.reported = false;
        }
        s.latching = config.latching;
        s.strict_source = config.strict_source;
        s.standby = config.standby;
        s.config = config;
    }

    /// Drains a readable socket (edge-triggered: until `recvmmsg` comes back
    /// short), or leaves it in the backlog after a few full batches. The
    /// first read asks for [`FIRST_READ`] datagrams only: a 50-pps stream
    /// rarely holds more per wake-up, and every slot offered costs a header
    /// to fill.
    fn on_readable(&mut self, slot: usize, now_ms: u64) {
        if matches!(self.slots.get(slot), Some(Some(s)) if s.raw && !s.sealed) {
            self.seal(slot);
            return;
        }
        let mut want = FIRST_READ;
        for _ in 0..MAX_BATCHES_PER_TURN {
            let received = self.receive(slot, want);
            if received == 0 {
                return;
            }
            if !self.standby_traffic(slot, received) {
                self.relay_batch(slot, received, now_ms);
            }
            if received < want {
                return;
            }
            want = BATCH;
        }
        self.backlog.push(slot);
    }

    /// One `recvmmsg` of at most `want` datagrams into the batch buffers;
    /// the number of datagrams.
    fn receive(&mut self, slot: usize, want: usize) -> usize {
        let Some(Some(stream)) = self.slots.get(slot) else {
            return 0;
        };
        let fd = stream.socket.as_raw_fd();
        let hdrs = if stream.v6 {
            &mut self.recv_hdrs_v6
        } else {
            &mut self.recv_hdrs_v4
        };
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            self.bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
        match recvmmsg(
            fd,
            hdrs,
            iovs.iter_mut().take(want),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(results) => {
                let mut n = 0;
                for (r, (len, src)) in results.zip(self.lens.iter_mut().zip(self.srcs.iter_mut())) {
                    // Longer than the buffer: its length 0 makes it
                    // invalid, dropped and counted.
                    *len = if r.flags.contains(MsgFlags::MSG_TRUNC) {
                        0
                    } else {
                        r.bytes
                    };
                    *src = r.address.and_then(|a: SockaddrStorage| to_socket_addr(&a));
                    n += 1;
                }
                n
            }
            Err(_) => 0,
        }
    }

    /// Source policy, classification and counters for a received batch,
    /// then one `sendmmsg` per sink.
    fn relay_batch(&mut self, slot: usize, received: usize, now_ms: u64) {
        let mut to_rtp = [0usize; BATCH];
        let mut to_rtcp = [0usize; BATCH];
        let (mut n_rtp, mut n_rtcp) = (0usize, 0usize);
        let (mut packets, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let (sink_rtp, sink_rtcp) = {
            let Some(Some(s)) = self.slots.get_mut(slot) else {
                return;
            };
            for i in 0..received {
                let len = self.lens.get(i).copied().unwrap_or(0).min(BUF_SIZE);
                let Some(src) = self.srcs.get(i).copied().flatten() else {
                    errors += 1;
                    continue;
                };
                let data = self.bufs.get(i).map_or(&[][..], |b| &b[..len]);
                let Some(class) = s.admit(src, data) else {
                    errors += 1;
                    continue;
                };
                packets += 1;
                bytes += len as u64;
                if class == PacketClass::Rtcp {
                    if let Some(slot) = to_rtcp.get_mut(n_rtcp) {
                        *slot = i;
                        n_rtcp += 1;
                    }
                } else if let Some(slot) = to_rtp.get_mut(n_rtp) {
                    *slot = i;
                    n_rtp += 1;
                }
            }
            // Counted before forwarding: whoever received a packet can
            // read it counted.
            let c = &s.counters;
            if packets > 0 {
                bump(&c.packets, packets);
                bump(&c.bytes, bytes);
                c.last_packet_ms.store(now_ms, Ordering::Relaxed);
            }
            s.sinks(self.epoch, &self.by_key)
        };
        let (mut tried, mut sent) = (0, 0);
        for (sink, which) in [
            (sink_rtp, &to_rtp[..n_rtp]),
            (sink_rtcp, &to_rtcp[..n_rtcp]),
        ] {
            if !which.is_empty() {
                let (t, s) = self.forward(sink, which);
                tried += t;
                sent += s;
            }
        }
        // Counted on the receiving stream (its counters are in cache, the
        // sink's are not): packets it forwarded, and as errors those the
        // kernel refused.
        errors += tried.saturating_sub(sent) as u64;
        let Some(Some(s)) = self.slots.get(slot) else {
            return;
        };
        let c = &s.counters;
        if sent > 0 {
            bump(&c.sent, sent as u64);
        }
        if errors > 0 {
            bump(&c.errors, errors);
        }
    }

    /// Counts and drops a batch received on a standby stream, calling the
    /// hook on the first one. True if the stream is in standby.
    fn standby_traffic(&mut self, slot: usize, received: usize) -> bool {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return false;
        };
        if !s.standby {
            return false;
        }
        bump(&s.counters.standby_packets, received as u64);
        if !s.reported {
            s.reported = true;
            if let Some(hook) = self.hook.as_ref() {
                hook(s.key);
            }
        }
        true
    }

    /// Sends the datagrams `which` out of the sink's socket with one
    /// `sendmmsg`: (datagrams handed to the kernel, datagrams it took);
    /// (0, 0) without a sink or a usable endpoint.
    fn forward(&mut self, sink: u32, which: &[usize]) -> (usize, usize) {
        let Some(Some(out)) = usize::try_from(sink).ok().and_then(|i| self.slots.get(i)) else {
            return (0, 0);
        };
        let Some(endpoint) = out.destination() else {
            return (0, 0);
        };
        // A single datagram (the usual case at 50 packets/s per stream)
        // goes out with `sendto`: `sendmmsg` would also copy a message
        // header and an iovec array in and out of the kernel for it.
        if let [k] = which {
            let len = self.lens.get(*k).copied().unwrap_or(0).min(BUF_SIZE);
            let data = self.bufs.get(*k).map_or(&[][..], |b| &b[..len]);
            return (1, usize::from(send_one(out, endpoint, data)));
        }
        let dest = SockaddrStorage::from(endpoint);
        let n = which.len().min(BATCH);
        let mut iovs: [[IoSlice<'_>; 1]; BATCH] = [[IoSlice::new(&[])]; BATCH];
        for (iov, &k) in iovs.iter_mut().zip(which) {
            let len = self.lens.get(k).copied().unwrap_or(0).min(BUF_SIZE);
            *iov = [IoSlice::new(
                self.bufs.get(k).map_or(&[][..], |b| &b[..len]),
            )];
        }
        let dests = self.dests.get_mut(..n).unwrap_or_default();
        dests.fill(Some(dest));
        let sent = match sendmmsg(
            out.socket.as_raw_fd(),
            &mut self.send_hdrs,
            iovs.get(..n).unwrap_or_default(),
            &*dests,
            [],
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(r) => r.count(),
            Err(_) => 0,
        };
        (n, sent)
    }
}

/// Sends one datagram out of `out`'s socket to `to`; true if the kernel
/// took it.
fn send_one(out: &Stream, to: SocketAddr, data: &[u8]) -> bool {
    let dest = SockaddrStorage::from(to);
    sendto(out.socket.as_raw_fd(), data, &dest, MsgFlags::MSG_DONTWAIT).is_ok()
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)));
    }
    if let Some(v6) = a.as_sockaddr_in6() {
        return Some(SocketAddr::from(std::net::SocketAddrV6::from(*v6)));
    }
    let _ = a.family();
    None
}

/// Sets the IP TOS (IPv4) or traffic class (IPv6) byte; false on failure.
fn set_tos(socket: &UdpSocket, v6: bool, tos: u8) -> bool {
    let sock = socket2::SockRef::from(socket);
    let r = if v6 {
        sock.set_tclass_v6(u32::from(tos))
    } else {
        sock.set_tos_v4(u32::from(tos))
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, tos, "setting TOS failed");
        return false;
    }
    true
}
