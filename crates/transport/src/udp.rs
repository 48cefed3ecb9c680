//! UDP listeners: `SO_REUSEPORT` sockets, each drained by one task in
//! `recvmmsg` batches; replies leave in `sendmmsg` batches.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::batch::{RecvBatch, SendBatch};
use crate::handle::{Outbox, TransportHandle};
use crate::{Packet, Peer, Receiver, TransportConfig, TransportKind};

/// Binds `workers` sockets on `address` sharing the port with `SO_REUSEPORT`
/// (the kernel spreads senders over them by 4-tuple hash). Port 0 is
/// resolved by the first bind and reused by the others.
pub(crate) fn bind(
    address: SocketAddr,
    workers: usize,
    cfg: &TransportConfig,
) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(workers);
    let mut addr = address;
    for _ in 0..workers.max(1) {
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
        socket.bind(&addr.into())?;
        let std_socket: std::net::UdpSocket = socket.into();
        addr = std_socket.local_addr()?;
        sockets.push(UdpSocket::from_std(std_socket)?);
    }
    Ok(sockets)
}

/// Receives, hands every datagram to the receiver, flushes the replies it
/// queued, and repeats, until the socket fails for good.
pub(crate) async fn run_worker(
    socket: Arc<UdpSocket>,
    receiver: Arc<dyn Receiver>,
    handle: TransportHandle,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "udp socket has no local address; worker stops");
            return;
        }
    };
    let fd = socket.as_raw_fd();
    let mut inbound = RecvBatch::new();
    let mut outbound = SendBatch::new();
    loop {
        if let Err(e) = socket.readable().await {
            tracing::error!(%local, error = %e, "udp socket failed; worker stops");
            return;
        }
        loop {
            match socket.try_io(Interest::READABLE, || inbound.recv(fd)) {
                Ok(n) => {
                    metrics::counter!("voxline_transport_udp_batches_total").increment(1);
                    for i in 0..n {
                        let Some((remote, data)) = inbound.take(i) else {
                            metrics::counter!("voxline_transport_dropped_total", "reason" => "oversize").increment(1);
                            continue;
                        };
                        metrics::counter!("voxline_transport_received_total", "transport" => "udp")
                            .increment(1);
                        let packet = Packet {
                            data,
                            peer: Peer {
                                transport: TransportKind::Udp,
                                addr: remote,
                                local: Some(local),
                                connection: None,
                            },
                            parsed: None,
                        };
                        let mut out = Outbox::new(&mut outbound, local, &handle);
                        receiver.on_packet(packet, &mut out);
                    }
                    flush(&socket, &mut outbound).await;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors from earlier sends surface here (e.g.
                    // ECONNREFUSED); they concern one peer, not the socket.
                    tracing::debug!(%local, error = %e, "udp receive error");
                    metrics::counter!("voxline_transport_udp_errors_total").increment(1);
                }
            }
        }
    }
}

/// Sends everything queued in `batch`, waiting for socket space as needed.
pub(crate) async fn flush(socket: &UdpSocket, batch: &mut SendBatch) {
    let fd = socket.as_raw_fd();
    while !batch.is_empty() {
        match socket.try_io(Interest::WRITABLE, || batch.flush(fd)) {
            Ok(stats) => {
                metrics::counter!("voxline_transport_sent_total", "transport" => "udp")
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
