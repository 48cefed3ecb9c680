//! One forwarding worker: an edge-triggered epoll loop over its streams'
//! sockets.
//!
//! Per wake-up the worker applies queued commands, then drains every ready
//! socket (one `recvmmsg` per socket and [`BATCH`] datagrams; a socket that
//! filled the batch is read again, at most [`MAX_BATCHES_PER_TURN`] times per
//! turn so one flooded port cannot starve the others, and is revisited on the
//! next turn). Each received batch leaves through its sink's socket with one
//! `sendmmsg` per sink.

use std::collections::HashMap;
use std::io::IoSlice;
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage, recvmmsg, sendmmsg};

use crate::rtp::{PacketClass, classify, first_report_block};
use crate::{
    BATCH, Latching, StandbyHook, StreamCommand, StreamConfig, StreamCounters, StreamKey,
    StreamKind,
};

const WAKE_TOKEN: u64 = u64::MAX;
const BUF_SIZE: usize = 2048;
/// Full batches read from one socket per turn before the others get theirs.
const MAX_BATCHES_PER_TURN: usize = 4;
/// Longest sleep in `epoll_wait`: commands queued without a wake-up (and the
/// stop flag) are seen within this.
const IDLE_WAIT_MS: u16 = 100;

type KeyMap = HashMap<StreamKey, usize, foldhash::fast::RandomState>;

struct Stream {
    key: StreamKey,
    socket: UdpSocket,
    kind: StreamKind,
    v6: bool,
    counters: Arc<StreamCounters>,
    config: StreamConfig,
    /// Current destination (configured, or latched).
    endpoint: Option<SocketAddr>,
    latched: bool,
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
}

/// Adds `n` to a counter only this worker writes (no locked instruction).
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        rx: mpsc::Receiver<StreamCommand>,
        wake: Arc<EventFd>,
        stop: Arc<AtomicBool>,
        capacity: usize,
        hook: Option<StandbyHook>,
    ) -> std::io::Result<Worker> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
        )?;
        Ok(Worker {
            index,
            rx,
            wake,
            stop,
            epoll,
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            by_key: KeyMap::with_capacity_and_hasher(capacity, Default::default()),
            bufs: Box::new([[0u8; BUF_SIZE]; BATCH]),
            recv_hdrs_v4: MultiHeaders::preallocate(BATCH, None),
            recv_hdrs_v6: MultiHeaders::preallocate(BATCH, None),
            send_hdrs: MultiHeaders::preallocate(BATCH, None),
            dests: Box::new([None; BATCH]),
            lens: [0; BATCH],
            srcs: [None; BATCH],
            backlog: Vec::new(),
            hook,
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
                } else if let Ok(slot) = usize::try_from(token) {
                    self.on_readable(slot, now_ms);
                }
            }
        }
    }

    fn drain_commands(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                StreamCommand::Add {
                    key,
                    socket,
                    local,
                    kind,
                    counters,
                    config,
                } => self.add(key, socket, local.is_ipv6(), kind, counters, config),
                StreamCommand::Configure { key, config } => {
                    if let Some(&slot) = self.by_key.get(&key) {
                        self.configure(slot, config);
                    }
                }
                StreamCommand::Remove { key } => {
                    if let Some(slot) = self.by_key.remove(&key) {
                        if let Some(Some(s)) = self.slots.get(slot) {
                            let _ = self.epoll.delete(s.socket.as_fd());
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
        v6: bool,
        kind: StreamKind,
        counters: Arc<StreamCounters>,
        config: StreamConfig,
    ) {
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
                key,
                socket,
                kind,
                v6,
                counters,
                config: StreamConfig {
                    endpoint: None,
                    latching: Latching::Off,
                    strict_source: false,
                    sink_rtp: None,
                    sink_rtcp: None,
                    tos: 0,
                    standby: false,
                },
                endpoint: None,
                latched: false,
                reported: false,
                tos: None,
            });
        }
        self.configure(slot, config);
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
        s.config = config;
    }

    /// Drains a readable socket (edge-triggered: until `recvmmsg` comes back
    /// short), or leaves it in the backlog after a few full batches.
    fn on_readable(&mut self, slot: usize, now_ms: u64) {
        for _ in 0..MAX_BATCHES_PER_TURN {
            let received = self.receive(slot);
            if received == 0 {
                return;
            }
            if !self.standby_traffic(slot, received) {
                self.relay_batch(slot, received, now_ms);
            }
            if received < BATCH {
                return;
            }
        }
        self.backlog.push(slot);
    }

    /// One `recvmmsg` into the batch buffers; the number of datagrams.
    fn receive(&mut self, slot: usize) -> usize {
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
        match recvmmsg(fd, hdrs, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
            Ok(results) => {
                let mut n = 0;
                for (r, (len, src)) in results.zip(self.lens.iter_mut().zip(self.srcs.iter_mut())) {
                    *len = r.bytes;
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
        let (sink_rtp, sink_rtcp) = {
            let Some(Some(s)) = self.slots.get_mut(slot) else {
                return;
            };
            let (mut packets, mut bytes, mut errors) = (0u64, 0u64, 0u64);
            for i in 0..received {
                let len = self.lens.get(i).copied().unwrap_or(0).min(BUF_SIZE);
                let Some(src) = self.srcs.get(i).copied().flatten() else {
                    errors += 1;
                    continue;
                };
                let data = self.bufs.get(i).map_or(&[][..], |b| &b[..len]);
                let class = match (s.kind, classify(data)) {
                    (_, PacketClass::Invalid) => PacketClass::Invalid,
                    (StreamKind::Rtcp, _) => PacketClass::Rtcp,
                    (StreamKind::Rtp, c) => c,
                };
                if class == PacketClass::Invalid {
                    errors += 1;
                    continue;
                }
                // Source policy.
                if Some(src) != s.endpoint {
                    let may_latch = match s.config.latching {
                        Latching::Off => false,
                        Latching::Once => !s.latched,
                        Latching::Always => true,
                    };
                    if may_latch {
                        s.endpoint = Some(src);
                        s.latched = true;
                        if let Ok(mut g) = s.counters.latched.lock() {
                            *g = Some(src);
                        }
                    } else if s.config.strict_source {
                        errors += 1;
                        continue;
                    }
                } else if !s.latched && s.config.latching != Latching::Off {
                    s.latched = true;
                    if let Ok(mut g) = s.counters.latched.lock() {
                        *g = Some(src);
                    }
                }
                packets += 1;
                bytes += len as u64;
                if class == PacketClass::Rtcp {
                    if let Some(rb) = first_report_block(data) {
                        let c = &s.counters;
                        c.rtcp_fraction_lost
                            .store(u32::from(rb.fraction_lost), Ordering::Relaxed);
                        c.rtcp_packets_lost
                            .store(i64::from(rb.packets_lost), Ordering::Relaxed);
                        c.rtcp_jitter.store(rb.jitter, Ordering::Relaxed);
                        c.rtcp_seen.store(true, Ordering::Relaxed);
                    }
                    if let Some(slot) = to_rtcp.get_mut(n_rtcp) {
                        *slot = i;
                        n_rtcp += 1;
                    }
                } else if let Some(slot) = to_rtp.get_mut(n_rtp) {
                    *slot = i;
                    n_rtp += 1;
                }
            }
            let c = &s.counters;
            if packets > 0 {
                bump(&c.packets, packets);
                bump(&c.bytes, bytes);
                c.last_packet_ms.store(now_ms, Ordering::Relaxed);
            }
            if errors > 0 {
                bump(&c.errors, errors);
            }
            (s.config.sink_rtp, s.config.sink_rtcp)
        };
        if n_rtp > 0 {
            self.forward(sink_rtp, &to_rtp[..n_rtp]);
        }
        if n_rtcp > 0 {
            self.forward(sink_rtcp, &to_rtcp[..n_rtcp]);
        }
    }

    /// Counts and drops a batch received on a standby stream, calling the
    /// hook on the first one. True if the stream is in standby.
    fn standby_traffic(&mut self, slot: usize, received: usize) -> bool {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return false;
        };
        if !s.config.standby {
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

    fn forward(&mut self, sink: Option<StreamKey>, which: &[usize]) {
        // One map lookup per batch; sinks may be added after their sources.
        let Some(&slot) = sink.as_ref().and_then(|k| self.by_key.get(k)) else {
            return;
        };
        let Some(Some(out)) = self.slots.get(slot) else {
            return;
        };
        let Some(endpoint) = out.endpoint else {
            return;
        };
        if endpoint.ip().is_unspecified() || endpoint.port() == 0 {
            return;
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
        bump(&out.counters.sent, sent as u64);
        if sent < n {
            bump(&out.counters.errors, (n - sent) as u64);
        }
    }
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
