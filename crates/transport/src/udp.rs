//! UDP listeners: `SO_REUSEPORT` sockets, each drained by one task in
//! `recvmmsg` batches; replies leave in `sendmmsg` batches. Optionally two
//! sockets per worker, steered by class in the kernel ([`crate::steer`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::batch::{RecvBatch, SendBatch};
use crate::handle::{Outbox, TransportHandle};
use crate::{Packet, Peer, Receiver, TransportConfig, TransportKind};

/// The sockets one UDP worker drains.
pub(crate) struct WorkerSockets {
    /// Everything (or, with priority steering, the bulk class).
    pub(crate) main: Arc<UdpSocket>,
    /// With priority steering: in-dialog requests, responses and pings,
    /// read before each batch of `main`.
    pub(crate) priority: Option<Arc<UdpSocket>>,
}

/// Binds `workers` sockets on `address` sharing the port with `SO_REUSEPORT`
/// (the kernel spreads senders over them by 4-tuple hash); with
/// `cfg.udp_priority_queue`, two per worker, steered by class (see
/// [`crate::steer`]). Port 0 is resolved by the first bind and reused by the
/// others.
pub(crate) fn bind(
    address: SocketAddr,
    workers: usize,
    cfg: &TransportConfig,
) -> io::Result<Vec<WorkerSockets>> {
    let workers = workers.max(1);
    let count = if cfg.udp_priority_queue {
        2 * workers
    } else {
        workers
    };
    let mut sockets = Vec::with_capacity(count);
    let mut addr = address;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        // The kernel caps these at net.core.[rw]mem_max; best effort.
        let _ = socket.set_recv_buffer_size(cfg.udp_recv_buffer);
        let _ = socket.set_send_buffer_size(cfg.udp_send_buffer);
        socket.set_nonblocking(true)?;
        // Kernel receive times: how long datagrams waited in the queue is
        // the SIP core's overload signal.
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        socket.bind(&addr.into())?;
        let std_socket: std::net::UdpSocket = socket.into();
        addr = std_socket.local_addr()?;
        sockets.push(std_socket);
    }
    if cfg.udp_priority_queue
        && let Some(first) = sockets.first()
    {
        crate::steer::attach(first, workers)?;
    }
    let mut tokio_sockets = Vec::with_capacity(count);
    for s in sockets {
        tokio_sockets.push(Arc::new(UdpSocket::from_std(s)?));
    }
    if !cfg.udp_priority_queue {
        return Ok(tokio_sockets
            .into_iter()
            .map(|main| WorkerSockets {
                main,
                priority: None,
            })
            .collect());
    }
    // Group order: the priority sockets first, then the bulk ones.
    let bulk = tokio_sockets.split_off(workers);
    Ok(tokio_sockets
        .into_iter()
        .zip(bulk)
        .map(|(priority, main)| WorkerSockets {
            main,
            priority: Some(priority),
        })
        .collect())
}

/// Priority batches read at most before each bulk batch (so a flood of
/// "priority" datagrams cannot starve everything else).
const PRIORITY_BATCHES: usize = 8;

/// Receives, hands every datagram to the receiver, flushes the replies it
/// queued, and repeats, until the socket fails for good. With a priority
/// socket, it is drained before every batch of the main one.
pub(crate) async fn run_worker(
    sockets: WorkerSockets,
    receiver: Arc<dyn Receiver>,
    handle: TransportHandle,
) {
    let WorkerSockets { main, priority } = sockets;
    let local = match main.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "udp socket has no local address; worker stops");
            return;
        }
    };
    let mut w = Worker {
        receiver,
        handle,
        local,
        inbound: RecvBatch::new(),
        outbound: SendBatch::new(),
    };
    loop {
        let ready = match &priority {
            Some(p) => tokio::select! {
                biased;
                r = p.readable() => r,
                r = main.readable() => r,
            },
            None => main.readable().await,
        };
        if let Err(e) = ready {
            tracing::error!(%local, error = %e, "udp socket failed; worker stops");
            return;
        }
        loop {
            if let Some(p) = &priority {
                for _ in 0..PRIORITY_BATCHES {
                    if !w.batch(p).await {
                        break;
                    }
                }
            }
            if !w.batch(&main).await {
                break;
            }
            // Reading never waits while datagrams keep coming: let the
            // runtime's other tasks (timers, handlers that went pending,
            // the relay's ng server, the CDR writer) run between batches,
            // or a saturated socket starves them on a one-thread runtime.
            tokio::task::yield_now().await;
        }
    }
}

struct Worker {
    receiver: Arc<dyn Receiver>,
    handle: TransportHandle,
    local: SocketAddr,
    inbound: RecvBatch,
    outbound: SendBatch,
}

impl Worker {
    /// Reads and handles one batch from `socket`; `false` when nothing was
    /// waiting.
    async fn batch(&mut self, socket: &UdpSocket) -> bool {
        let fd = socket.as_raw_fd();
        loop {
            let started = self
                .receiver
                .wants_batch_cost()
                .then(|| (crate::thread_cpu_time(), std::time::Instant::now()));
            match socket.try_io(Interest::READABLE, || self.inbound.recv(fd)) {
                Ok(n) => {
                    crate::counter_once!("voxline_transport_udp_batches_total").increment(1);
                    self.receiver.batch_begin();
                    self.handle_batch(n);
                    if !self.receiver.batch_commit() {
                        let withheld = self.outbound.clear();
                        metrics::counter!("voxline_transport_dropped_total", "reason" => "withheld")
                            .increment(withheld as u64);
                    }
                    flush(socket, &mut self.outbound).await;
                    if let Some((cpu, wall)) = started {
                        // A flush that waited may resume on another thread:
                        // the batch cannot have cost more than it lasted.
                        let cpu = crate::thread_cpu_time()
                            .saturating_sub(cpu)
                            .min(wall.elapsed());
                        self.receiver.on_batch_end(n, cpu);
                    }
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors from earlier sends surface here (e.g.
                    // ECONNREFUSED); they concern one peer, not the socket.
                    tracing::debug!(local = %self.local, error = %e, "udp receive error");
                    metrics::counter!("voxline_transport_udp_errors_total").increment(1);
                }
            }
        }
    }

    fn handle_batch(&mut self, n: usize) {
        let read_at = crate::ReadTime::now();
        let mut taken = 0u64;
        for i in 0..n {
            let Some((remote, data)) = self.inbound.take(i) else {
                metrics::counter!("voxline_transport_dropped_total", "reason" => "oversize")
                    .increment(1);
                continue;
            };
            taken += 1;
            let packet = Packet {
                data,
                peer: Peer {
                    transport: TransportKind::Udp,
                    addr: remote,
                    local: Some(self.local),
                    connection: None,
                },
                parsed: None,
                received_at: self.inbound.received_at(i),
                read_at,
            };
            let mut out = Outbox::new(&mut self.outbound, self.local, &self.handle);
            self.receiver.on_packet(packet, &mut out);
        }
        crate::counter_once!("voxline_transport_received_total", "transport" => "udp")
            .increment(taken);
    }
}

/// Sends everything queued in `batch`, waiting for socket space as needed.
pub(crate) async fn flush(socket: &UdpSocket, batch: &mut SendBatch) {
    let fd = socket.as_raw_fd();
    while !batch.is_empty() {
        match socket.try_io(Interest::WRITABLE, || batch.flush(fd)) {
            Ok(stats) => {
                crate::counter_once!("voxline_transport_sent_total", "transport" => "udp")
                    .increment(stats.sent as u64);
                if stats.dropped > 0 {
                    metrics::counter!("voxline_transport_dropped_total", "reason" => "send_error")
                        .increment(stats.dropped as u64);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "udp send failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(priority: bool) -> TransportConfig {
        TransportConfig {
            udp_priority_queue: priority,
            ..TransportConfig::default()
        }
    }

    /// Reads whatever is queued on `s` right now (straight from the
    /// kernel, without waiting for the runtime's readiness events).
    fn queued(s: &UdpSocket) -> Vec<String> {
        use nix::sys::socket::{MsgFlags, recv};
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = recv(s.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got
    }

    #[tokio::test]
    async fn the_kernel_steers_in_dialog_traffic_to_the_priority_sockets() {
        for workers in [1, 3] {
            let group = bind("127.0.0.1:0".parse().unwrap(), workers, &config(true)).unwrap();
            assert_eq!(group.len(), workers);
            let addr = group[0].main.local_addr().unwrap();
            let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let sent = [
                "REGISTER sip:example.com SIP/2.0\r\n",
                "BYE sip:a@192.0.2.1 SIP/2.0\r\n",
                "INVITE sip:a@example.com SIP/2.0\r\n",
                "SIP/2.0 200 OK\r\n",
                "ACK sip:a@192.0.2.1 SIP/2.0\r\n",
                "\r\n\r\n",
                "SUBSCRIBE sip:a@example.com SIP/2.0\r\n",
                "CANCEL sip:a@example.com SIP/2.0\r\n",
            ];
            for m in sent {
                client.send_to(m.as_bytes(), addr).unwrap();
            }
            let mut priority = Vec::new();
            let mut bulk = Vec::new();
            for w in &group {
                priority.extend(queued(w.priority.as_ref().unwrap()));
                bulk.extend(queued(&w.main));
            }
            priority.sort();
            bulk.sort();
            let mut want_priority: Vec<String> = sent
                .iter()
                .filter(|m| crate::steer::is_priority(m.as_bytes()))
                .map(|m| m.to_string())
                .collect();
            want_priority.sort();
            assert_eq!(priority, want_priority, "{workers} workers");
            assert_eq!(
                bulk,
                [
                    "INVITE sip:a@example.com SIP/2.0\r\n",
                    "REGISTER sip:example.com SIP/2.0\r\n",
                    "SUBSCRIBE sip:a@example.com SIP/2.0\r\n"
                ],
                "{workers} workers"
            );
        }
    }

    #[tokio::test]
    async fn without_steering_one_socket_per_worker() {
        let group = bind("127.0.0.1:0".parse().unwrap(), 2, &config(false)).unwrap();
        assert_eq!(group.len(), 2);
        assert!(group.iter().all(|w| w.priority.is_none()));
    }
}
