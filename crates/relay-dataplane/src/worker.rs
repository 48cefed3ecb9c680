//! One forwarding worker: an epoll loop over its streams' sockets.

use std::collections::HashMap;
use std::io::IoSlice;
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
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

struct Stream {
    key: StreamKey,
    socket: UdpSocket,
    kind: StreamKind,
    counters: Arc<StreamCounters>,
    config: StreamConfig,
    /// Current destination (configured, or latched).
    endpoint: Option<SocketAddr>,
    latched: bool,
    /// The standby hook has been called since the stream became standby.
    reported: bool,
}

pub(crate) struct Worker {
    index: usize,
    rx: mpsc::Receiver<StreamCommand>,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    epoll: Epoll,
    slots: Vec<Option<Stream>>,
    free: Vec<usize>,
    by_key: HashMap<StreamKey, usize>,
    bufs: Box<[[u8; BUF_SIZE]; BATCH]>,
    recv_hdrs: MultiHeaders<SockaddrStorage>,
    send_hdrs: MultiHeaders<SockaddrStorage>,
    lens: [usize; BATCH],
    srcs: [Option<SocketAddr>; BATCH],
    hook: Option<StandbyHook>,
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
            by_key: HashMap::with_capacity(capacity),
            bufs: Box::new([[0u8; BUF_SIZE]; BATCH]),
            recv_hdrs: MultiHeaders::preallocate(BATCH, None),
            send_hdrs: MultiHeaders::preallocate(BATCH, None),
            lens: [0; BATCH],
            srcs: [None; BATCH],
            hook,
        })
    }

    pub(crate) fn run(&mut self) {
        let mut events = [EpollEvent::empty(); 64];
        loop {
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(100u16)) {
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
                    kind,
                    counters,
                    config,
                } => self.add(key, socket, kind, counters, config),
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
        kind: StreamKind,
        counters: Arc<StreamCounters>,
        config: StreamConfig,
    ) {
        // Callers normally hand over non-blocking sockets; make sure.
        if let Err(e) = socket.set_nonblocking(true) {
            tracing::warn!(error = %e, "set_nonblocking failed");
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let token = slot as u64;
        if let Err(e) = self
            .epoll
            .add(socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
        {
            tracing::warn!(error = %e, "epoll add failed");
            self.free.push(slot);
            return;
        }
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = Some(Stream {
                key,
                socket,
                kind,
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
            });
        }
        self.by_key.insert(key, slot);
        self.configure(slot, config);
    }

    fn configure(&mut self, slot: usize, config: StreamConfig) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        if s.config.tos != config.tos || s.config.endpoint.is_none() {
            set_tos(&s.socket, config.tos);
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

    fn on_readable(&mut self, slot: usize, now_ms: u64) {
        // 1. Receive a batch.
        let received = {
            let Some(Some(stream)) = self.slots.get(slot) else {
                return;
            };
            let fd = stream.socket.as_raw_fd();
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                self.bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
            match recvmmsg(
                fd,
                &mut self.recv_hdrs,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => {
                    let mut n = 0;
                    for (i, r) in results.enumerate() {
                        if let (Some(len), Some(src)) = (self.lens.get_mut(i), self.srcs.get_mut(i))
                        {
                            *len = r.bytes;
                            *src = r.address.and_then(|a: SockaddrStorage| to_socket_addr(&a));
                            n = i + 1;
                        }
                    }
                    n
                }
                Err(_) => 0,
            }
        };
        if received == 0 {
            return;
        }
        if self.standby_traffic(slot, received) {
            return;
        }
        // 2. Source policy, classification, counters; pick sends.
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
                c.packets.fetch_add(packets, Ordering::Relaxed);
                c.bytes.fetch_add(bytes, Ordering::Relaxed);
                c.last_packet_ms.store(now_ms, Ordering::Relaxed);
            }
            if errors > 0 {
                c.errors.fetch_add(errors, Ordering::Relaxed);
            }
            (s.config.sink_rtp, s.config.sink_rtcp)
        };
        // 3. Forward through the sinks.
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
        s.counters
            .standby_packets
            .fetch_add(received as u64, Ordering::Relaxed);
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
        let fd = out.socket.as_raw_fd();
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|k| {
            let len = self.lens.get(k).copied().unwrap_or(0).min(BUF_SIZE);
            [IoSlice::new(
                self.bufs.get(k).map_or(&[][..], |b| &b[..len]),
            )]
        });
        let addrs: [Option<SockaddrStorage>; BATCH] = [Some(dest); BATCH];
        let slices = which.iter().filter_map(|&k| iovs.get(k));
        let sent = match sendmmsg(
            fd,
            &mut self.send_hdrs,
            slices,
            addrs,
            [],
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(r) => r.count(),
            Err(_) => 0,
        };
        out.counters.sent.fetch_add(sent as u64, Ordering::Relaxed);
        if sent < which.len() {
            out.counters
                .errors
                .fetch_add((which.len() - sent) as u64, Ordering::Relaxed);
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

fn set_tos(socket: &UdpSocket, tos: u8) {
    let sock = socket2::SockRef::from(socket);
    let r = match socket.local_addr() {
        Ok(SocketAddr::V6(_)) => sock.set_tclass_v6(u32::from(tos)),
        _ => sock.set_tos_v4(u32::from(tos)),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, tos, "setting TOS failed");
    }
}
