//! The media relay's forwarding plane.
//!
//! Streams (one bound UDP socket each: an RTP or an RTCP port) are handed to
//! worker threads; all streams of one session go to the same worker, so a
//! packet is received and re-sent by one thread without locks. Each worker
//! runs an edge-triggered epoll loop; a readable socket is drained with
//! `recvmmsg` calls of up to [`BATCH`] datagrams and each batch leaves through
//! its sink socket with one `sendmmsg`, straight from the receive buffers (no
//! allocation, no copy).
//!
//! Per packet a worker: classifies RTP/RTCP (short or non-RTP datagrams are
//! dropped and counted as errors), applies the source policy (latching,
//! strict source), counts packets/bytes/last-packet time, parses RTCP SR/RR
//! report blocks for loss and jitter, and forwards. The IP TOS/DSCP byte is a
//! socket option, set when a stream is added and again only when it changes,
//! so every packet sent carries it without a per-packet control message.
//!
//! With [`ForwardingIo::Raw`] a worker reads its IPv4 streams' datagrams
//! from one raw socket instead of one socket per port, and sends them through
//! one raw socket, both in batches across all streams: one `recvmmsg` and one
//! `sendmmsg` per batch instead of a wake-up, a receive and a send per
//! datagram at 50 packets/s per stream. See [`ForwardingIo`].
//!
//! The control plane drives workers through [`Dataplane::send`] with
//! [`StreamCommand`]s (a channel per worker plus an eventfd wake-up) and
//! reads [`StreamCounters`] (atomics written only by the owning worker).

mod raw;
mod rtp;
#[cfg(feature = "test-util")]
pub mod test_util;
mod worker;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

pub use raw::{FilterError, Insn, RawFilter, raw_partition, udp_checksum_v4, write_headers};
pub use rtp::{PacketClass, ReportBlock, classify, first_report_block};

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: usize = 32;

/// Largest datagram relayed (a jumbo frame's payload); larger ones are
/// dropped and counted as errors of the stream that received them.
pub const MAX_DATAGRAM: usize = 9216;

/// `N` zeroed receive buffers, allocated on the heap directly (an array
/// this large built on a thread's stack first could overflow it).
pub(crate) fn zeroed_buffers<const N: usize>() -> Box<[[u8; MAX_DATAGRAM]; N]> {
    let v = vec![[0u8; MAX_DATAGRAM]; N].into_boxed_slice();
    match v.try_into() {
        Ok(b) => b,
        Err(_) => unreachable!("a boxed slice of N buffers converts to an array of N"),
    }
}

/// Identifies a stream; chosen by the control plane, unique per relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(pub u64);

/// Whether the port carries RTP or RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// RTP port (also accepts RTCP multiplexed on it).
    Rtp,
    /// RTCP port.
    Rtcp,
}

/// How the destination follows the source of received packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latching {
    /// Never: always send to the configured endpoint.
    Off,
    /// The first packet's source becomes the endpoint (symmetric RTP).
    Once,
    /// Every change of source moves the endpoint (`media handover`).
    Always,
}

/// Forwarding configuration of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Where packets sent out of this stream's socket go (from the SDP).
    pub endpoint: Option<SocketAddr>,
    /// Source policy.
    pub latching: Latching,
    /// Drop packets not coming from the (latched or configured) endpoint.
    pub strict_source: bool,
    /// Stream whose socket forwards RTP received here.
    pub sink_rtp: Option<StreamKey>,
    /// Stream whose socket forwards RTCP received here.
    pub sink_rtcp: Option<StreamKey>,
    /// IP TOS byte for packets sent from this socket.
    pub tos: u8,
    /// Standby stream (a session another relay owns, kept for takeover):
    /// packets received here are counted in
    /// [`StreamCounters::standby_packets`], reported once through the
    /// [`StandbyHook`] and dropped, never forwarded.
    pub standby: bool,
}

impl StreamConfig {
    /// A stream that forwards nothing yet: no endpoint, no sinks, no latching,
    /// TOS 0 (what a stream is between being opened and configured).
    pub fn idle(standby: bool) -> StreamConfig {
        StreamConfig {
            endpoint: None,
            latching: Latching::Off,
            strict_source: false,
            sink_rtp: None,
            sink_rtcp: None,
            tos: 0,
            standby,
        }
    }
}

/// Counters of one stream, written by its worker, read by anyone.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Packets received and accepted.
    pub packets: AtomicU64,
    /// Bytes received and accepted.
    pub bytes: AtomicU64,
    /// Packets dropped: invalid, wrong source, send failure.
    pub errors: AtomicU64,
    /// Wall-clock time of the last accepted packet, ms since the epoch (0 = never).
    pub last_packet_ms: AtomicU64,
    /// Packets received here and forwarded (out of the sink stream's
    /// socket).
    pub sent: AtomicU64,
    /// Last RTCP report block seen here: fraction lost.
    pub rtcp_fraction_lost: AtomicU32,
    /// Last RTCP report block seen here: cumulative lost.
    pub rtcp_packets_lost: AtomicI64,
    /// Last RTCP report block seen here: jitter.
    pub rtcp_jitter: AtomicU32,
    /// An RTCP report block has been seen.
    pub rtcp_seen: AtomicBool,
    /// The endpoint learnt by latching (set rarely, on a latch event).
    pub latched: Mutex<Option<SocketAddr>>,
    /// Packets received while the stream was in standby (dropped).
    pub standby_packets: AtomicU64,
}

impl StreamCounters {
    /// Just packets, bytes, errors and sent (atomics only, no lock): for
    /// periodic totals over many streams.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_packet_ms: self.last_packet_ms.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            rtcp: self.rtcp_seen.load(Ordering::Relaxed).then(|| ReportBlock {
                ssrc: 0,
                fraction_lost: self.rtcp_fraction_lost.load(Ordering::Relaxed) as u8,
                packets_lost: self.rtcp_packets_lost.load(Ordering::Relaxed) as i32,
                jitter: self.rtcp_jitter.load(Ordering::Relaxed),
            }),
            latched: self.latched.lock().ok().and_then(|g| *g),
        }
    }
}

/// Plain copy of [`StreamCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Packets received and accepted.
    pub packets: u64,
    /// Bytes received and accepted.
    pub bytes: u64,
    /// Packets dropped.
    pub errors: u64,
    /// Last accepted packet, ms since the epoch (0 = never).
    pub last_packet_ms: u64,
    /// Packets received here and forwarded.
    pub sent: u64,
    /// Last RTCP report block (SSRC not kept).
    pub rtcp: Option<ReportBlock>,
    /// Latched endpoint.
    pub latched: Option<SocketAddr>,
}

/// Commands from the control plane to a worker.
#[derive(Debug)]
pub enum StreamCommand {
    /// Start serving a bound socket.
    Add {
        /// The stream's key.
        key: StreamKey,
        /// Bound socket. Blocking or not: the worker only uses
        /// `MSG_DONTWAIT` calls on it.
        socket: UdpSocket,
        /// The address `socket` is bound to (its family chooses the TOS
        /// option; saves a `getsockname` per stream).
        local: SocketAddr,
        /// RTP or RTCP port.
        kind: StreamKind,
        /// Shared counters.
        counters: Arc<StreamCounters>,
        /// Initial configuration.
        config: StreamConfig,
    },
    /// Change a stream's configuration; a changed endpoint resets latching.
    Configure {
        /// The stream's key.
        key: StreamKey,
        /// New configuration.
        config: StreamConfig,
    },
    /// Stop serving and close the socket.
    Remove {
        /// The stream's key.
        key: StreamKey,
    },
}

/// Failures of the forwarding plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Creating epoll/eventfd or spawning a thread failed.
    #[error("starting relay worker: {0}")]
    Start(#[source] std::io::Error),
    /// The worker index is out of range.
    #[error("no relay worker {0}")]
    NoWorker(usize),
    /// The worker has stopped.
    #[error("relay worker {0} has stopped")]
    WorkerGone(usize),
    /// The raw sockets of [`ForwardingIo::Raw`] could not be opened (they
    /// need `CAP_NET_RAW`).
    #[error("opening raw sockets (needs CAP_NET_RAW)")]
    Raw(#[source] std::io::Error),
}

/// Called by a worker (on its own thread) when the first packet arrives on
/// a standby stream since it was (re)configured as standby: the media of a
/// session this relay holds for another one has arrived here, so the
/// address moved and the control plane should take the session over. Must
/// not block.
pub type StandbyHook = Arc<dyn Fn(StreamKey) + Send + Sync>;

/// How workers read and send datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardingIo {
    /// One socket per port, epoll readiness, a receive and a send per
    /// readable socket. Needs no privilege.
    #[default]
    Sockets,
    /// IPv4 RTP streams (even ports) are read from one raw socket per worker
    /// whose kernel filter takes the UDP datagrams to even ports in
    /// `port_min..=port_max` (of this worker's partition, see
    /// [`raw_partition`]); datagrams of every IPv4 stream are sent through one
    /// raw socket with headers the worker writes (source = the sink stream's
    /// address and port, TOS, UDP checksum): one `recvmmsg` and one
    /// `sendmmsg` per batch of up to [`RAW_BATCH`] datagrams of any streams.
    /// An RTP stream's own socket keeps its port reserved and, from the
    /// stream's first datagram on, drops what it would receive (a socket
    /// filter), so the kernel counts each such datagram in the host's UDP
    /// `InErrors` (not in `RcvbufErrors`).
    /// RTCP ports (a datagram every few seconds; their sockets need no
    /// filter, which costs ~5 µs to attach), IPv6 streams, streams outside
    /// the range or partition and datagrams too large for one unfragmented
    /// packet use the stream sockets. Needs `CAP_NET_RAW`.
    Raw {
        /// Lowest port of the relay's range.
        port_min: u16,
        /// Highest port of the relay's range.
        port_max: u16,
    },
}

/// Datagrams per raw `recvmmsg`/`sendmmsg`.
pub const RAW_BATCH: usize = 64;

/// Data-plane settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Worker threads (at least 1). Pin the process with `taskset` to
    /// choose cores.
    pub workers: usize,
    /// Expected most streams in total (e.g. ports in the range); tables are
    /// reserved up front so they never reallocate (and leave freed copies
    /// in the resident set) while sessions are created. Untouched capacity
    /// costs address space, not memory.
    pub streams_hint: usize,
    /// How workers read and send datagrams.
    pub io: ForwardingIo,
}

struct WorkerHandle {
    tx: mpsc::Sender<StreamCommand>,
    wake: Arc<nix::sys::eventfd::EventFd>,
    thread: Option<JoinHandle<()>>,
}

/// Running forwarding workers.
pub struct Dataplane {
    workers: Vec<WorkerHandle>,
    stop: Arc<AtomicBool>,
    raw_stats: Arc<RawStats>,
    /// Inodes of the workers' raw receiving sockets.
    raw_inodes: Vec<u64>,
}

/// Totals of the raw sockets over all workers ([`ForwardingIo::Raw`]).
#[derive(Debug, Default)]
pub struct RawStats {
    /// Datagrams read that no stream took (another process's port in the
    /// range, a stream just removed, not UDP in IPv4).
    pub unrouted: AtomicU64,
    /// Datagrams sent through the raw sending sockets.
    pub sent: AtomicU64,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Dataplane {
    /// Starts `config.workers` worker threads.
    pub fn start(config: DataplaneConfig) -> Result<Dataplane, DataplaneError> {
        Self::start_with_hook(config, None)
    }

    /// Starts `config.workers` worker threads; `hook` hears about traffic
    /// on standby streams.
    pub fn start_with_hook(
        config: DataplaneConfig,
        hook: Option<StandbyHook>,
    ) -> Result<Dataplane, DataplaneError> {
        let stop = Arc::new(AtomicBool::new(false));
        let raw_stats = Arc::new(RawStats::default());
        let mut raw_inodes = Vec::new();
        let mut workers = Vec::new();
        let count = config.workers.max(1);
        let per_worker = config.streams_hint / count;
        for i in 0..count {
            let raw = match config.io {
                ForwardingIo::Sockets => None,
                ForwardingIo::Raw { port_min, port_max } => {
                    let filter = RawFilter::new(port_min, port_max, i, count).map_err(|e| {
                        DataplaneError::Raw(std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            e,
                        ))
                    })?;
                    let sockets = raw::RawSockets::open(&filter).map_err(DataplaneError::Raw)?;
                    raw_inodes.push(sockets.rx_inode);
                    Some(worker::RawSetup {
                        sockets,
                        port_min,
                        port_max,
                        partitions: count,
                        stats: raw_stats.clone(),
                    })
                }
            };
            let (tx, rx) = mpsc::channel();
            let wake = Arc::new(
                nix::sys::eventfd::EventFd::from_flags(
                    nix::sys::eventfd::EfdFlags::EFD_NONBLOCK
                        | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
                )
                .map_err(|e| DataplaneError::Start(e.into()))?,
            );
            // The batch headers hold raw pointers (not Send): build the
            // worker on its own thread and report how that went.
            let (ready_tx, ready_rx) = mpsc::channel();
            let (wake2, stop2, hook2) = (wake.clone(), stop.clone(), hook.clone());
            let thread = std::thread::Builder::new()
                .name(format!("relay-worker-{i}"))
                .spawn(move || {
                    match worker::Worker::new(i, rx, wake2, stop2, per_worker, hook2, raw) {
                        Ok(mut w) => {
                            let _ = ready_tx.send(Ok(()));
                            w.run();
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
                .map_err(DataplaneError::Start)?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(DataplaneError::Start(e)),
                Err(_) => {
                    return Err(DataplaneError::Start(std::io::Error::other(
                        "worker thread exited during start",
                    )));
                }
            }
            workers.push(WorkerHandle {
                tx,
                wake,
                thread: Some(thread),
            });
        }
        Ok(Dataplane {
            workers,
            stop,
            raw_stats,
            raw_inodes,
        })
    }

    /// Number of workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Totals of the raw sockets (zero with [`ForwardingIo::Sockets`]).
    pub fn raw_stats(&self) -> &RawStats {
        &self.raw_stats
    }

    /// Datagrams the kernel dropped because a worker's raw socket queue was
    /// full (the worker fell behind), from `/proc/net/raw`; `None` without
    /// raw I/O or when the table cannot be read. With raw I/O these drops
    /// are not in the host's UDP `RcvbufErrors`. Reads a file: for periodic
    /// metrics, not the data path.
    pub fn raw_drops(&self) -> Option<u64> {
        if self.raw_inodes.is_empty() {
            return None;
        }
        let table = std::fs::read_to_string("/proc/net/raw").ok()?;
        Some(raw::drops_in(&table, &self.raw_inodes))
    }

    /// Queues a command for worker `worker` and wakes it.
    pub fn send(&self, worker: usize, cmd: StreamCommand) -> Result<(), DataplaneError> {
        self.queue(worker, cmd)?;
        self.wake(worker)
    }

    /// Queues a command without waking the worker; call [`Dataplane::wake`]
    /// after a batch (one eventfd write per batch instead of per command).
    pub fn queue(&self, worker: usize, cmd: StreamCommand) -> Result<(), DataplaneError> {
        let w = self
            .workers
            .get(worker)
            .ok_or(DataplaneError::NoWorker(worker))?;
        w.tx.send(cmd)
            .map_err(|_| DataplaneError::WorkerGone(worker))
    }

    /// Wakes worker `worker` to apply queued commands.
    pub fn wake(&self, worker: usize) -> Result<(), DataplaneError> {
        let w = self
            .workers
            .get(worker)
            .ok_or(DataplaneError::NoWorker(worker))?;
        let _ = w.wake.write(1);
        Ok(())
    }

    /// Stops all workers and waits for them (sockets are closed).
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Release);
        for w in &self.workers {
            let _ = w.wake.write(1);
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
