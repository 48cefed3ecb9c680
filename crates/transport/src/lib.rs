//! SIP transports: the I/O edge of a Voxline node.
//!
//! This crate moves SIP messages as bytes between sockets and the SIP core;
//! it does not interpret them beyond framing.
//!
//! * UDP: one socket per worker on the same address with `SO_REUSEPORT`, large
//!   kernel buffers, `recvmmsg`/`sendmmsg` batches, and one allocation per
//!   datagram (its own buffer). Replies produced while a batch is handled go
//!   out in one `sendmmsg` call from the socket the request came in on.
//! * TCP: framing by Content-Length across reads and several messages per
//!   read, CRLF keep-alives (RFC 5626 §4.4.1), message size and connection
//!   limits, idle timeout, replies over the connection the request came on,
//!   and connection reuse for requests to the same target.
//!
//! The SIP core plugs in as a [`Receiver`]; it sends through an [`Outbox`]
//! (inside a receive callback) or a [`TransportHandle`] (anywhere else).

mod batch;
pub mod counter;
mod handle;
mod peer;
pub mod steer;
mod tcp;
mod udp;

pub use batch::{BATCH, MAX_DATAGRAM};
pub use counter::CounterSet;
pub use handle::{Outbox, TransportHandle, Transports};
pub use peer::{ConnId, Peer, Target, TransportKind, reply_target};

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

/// One SIP message as received: a whole datagram, or one framed message
/// from a stream.
#[derive(Debug, Clone)]
pub struct Packet {
    /// The message bytes.
    pub data: Bytes,
    /// Where it came from and on which listener.
    pub peer: Peer,
    /// The message, when framing already parsed it (streams); datagrams
    /// are parsed by the receiver.
    pub parsed: Option<voxline_sip::Message>,
    /// When the kernel received it (datagrams; `None` for streams): the
    /// time it waited in the receive queue is an overload signal.
    pub received_at: Option<std::time::SystemTime>,
    /// When it was read: one pair of clock reads per receive batch, which
    /// its datagrams share.
    pub read_at: ReadTime,
}

/// When a receive batch (or a stream message) was read, on both clocks.
#[derive(Debug, Clone, Copy)]
pub struct ReadTime {
    /// For deadlines and rates.
    pub mono: std::time::Instant,
    /// For the kernel's receive timestamps ([`Packet::received_at`]).
    pub wall: std::time::SystemTime,
}

impl ReadTime {
    /// Now.
    pub fn now() -> ReadTime {
        ReadTime {
            mono: std::time::Instant::now(),
            wall: std::time::SystemTime::now(),
        }
    }

    /// How long a datagram received at `received_at` waited before it was
    /// read (zero if the clock went back).
    pub fn waited_since(&self, received_at: std::time::SystemTime) -> Duration {
        self.wall
            .duration_since(received_at)
            .unwrap_or(Duration::ZERO)
    }
}

/// The SIP core's side of the transport: called for every received message.
///
/// Called on transport worker tasks; it must not block. Work that waits
/// (database, DNS, Redis) is spawned by the receiver itself.
pub trait Receiver: Send + Sync + 'static {
    /// Handles one received message; replies may be queued on `out`.
    fn on_packet(&self, packet: Packet, out: &mut Outbox<'_>);

    /// A UDP receive batch starts: what its handling queues on the outbox
    /// leaves together after [`batch_commit`](Receiver::batch_commit).
    fn batch_begin(&self) {}

    /// A UDP receive batch was handled and its outbox is about to be sent:
    /// `false` withholds the whole outbox (the batch's answers depended on
    /// work that failed; clients send again, as after a lost datagram).
    fn batch_commit(&self) -> bool {
        true
    }

    /// Whether the next UDP receive batch should be timed: when `true`,
    /// the worker reads its thread's CPU clock around the batch (receive,
    /// handling, send) and reports it with [`on_batch_end`]. Checked once
    /// per batch, so it must be cheap.
    ///
    /// [`on_batch_end`]: Receiver::on_batch_end
    fn wants_batch_cost(&self) -> bool {
        false
    }

    /// The CPU time one timed UDP batch of `datagrams` took on its thread,
    /// system calls included: what the kernel's receive and send paths
    /// cost, which no clock around a single message sees.
    fn on_batch_end(&self, datagrams: usize, cpu: Duration) {
        let _ = (datagrams, cpu);
    }
}

/// CPU time the calling thread has used so far (user and system).
pub fn thread_cpu_time() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// A socket to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    /// Transport protocol.
    pub transport: TransportKind,
    /// Local address (port 0 picks a free port; see [`Transports::local_addrs`]).
    pub address: SocketAddr,
}

/// Transport tuning; every field has an operator-friendly default.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Listening sockets.
    pub listen: Vec<ListenSpec>,
    /// UDP sockets (and receive tasks) per UDP listener; 0 = one per CPU.
    pub udp_workers: usize,
    /// Requested kernel receive buffer per UDP socket, bytes.
    pub udp_recv_buffer: usize,
    /// Requested kernel send buffer per UDP socket, bytes.
    pub udp_send_buffer: usize,
    /// Largest message accepted on a stream, bytes.
    pub max_message_size: usize,
    /// Most TCP connections open at once (in and out).
    pub tcp_max_connections: usize,
    /// A TCP connection without traffic for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Time allowed to establish an outgoing TCP connection.
    pub tcp_connect_timeout: Duration,
    /// Messages queued per TCP connection before sends fail.
    pub tcp_send_queue: usize,
    /// Two UDP sockets per worker, steered by class in the kernel: in-dialog
    /// requests, responses and pings are read before anything else, and an
    /// overflowing queue drops only new requests ([`steer`]).
    pub udp_priority_queue: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            listen: Vec::new(),
            udp_workers: 0,
            udp_recv_buffer: 4 << 20,
            udp_send_buffer: 4 << 20,
            max_message_size: 65_535,
            tcp_max_connections: 10_000,
            tcp_idle_timeout: Duration::from_secs(600),
            tcp_connect_timeout: Duration::from_secs(5),
            tcp_send_queue: 1024,
            udp_priority_queue: false,
        }
    }
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Binding a listening socket failed.
    #[error("cannot listen on {transport} {address}: {source}")]
    Bind {
        /// Transport of the listener.
        transport: TransportKind,
        /// Address asked for.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No listener can send to this target (e.g. IPv6 target, only IPv4 listeners).
    #[error("no {transport} listener can reach {address}")]
    NoRoute {
        /// Transport wanted.
        transport: TransportKind,
        /// Destination.
        address: SocketAddr,
    },
    /// The connection the message was meant for is gone.
    #[error("connection {0} is closed")]
    ConnectionClosed(ConnId),
    /// The per-connection send queue is full.
    #[error("send queue to {0} is full")]
    QueueFull(SocketAddr),
    /// Too many connections are open.
    #[error("connection limit ({0}) reached")]
    ConnectionLimit(usize),
    /// Connecting failed or timed out.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// Destination.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The transport is not supported yet.
    #[error("transport {0} is not supported")]
    Unsupported(TransportKind),
    /// A send on a socket failed.
    #[error("send to {address} failed: {source}")]
    Send {
        /// Destination.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}
