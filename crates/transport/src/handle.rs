//! Starting the transports and sending through them.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::batch::SendBatch;
use crate::tcp::TcpTable;
use crate::{ListenSpec, Receiver, Target, TransportConfig, TransportError, TransportKind, udp};

struct UdpListener {
    local: SocketAddr,
    /// The socket used for sends that do not come from a receive callback.
    socket: Arc<UdpSocket>,
}

struct Inner {
    udp: Vec<UdpListener>,
    tcp: TcpTable,
}

/// A cloneable handle for sending messages from anywhere in the node.
#[derive(Clone)]
pub struct TransportHandle {
    inner: Arc<Inner>,
}

/// The running transports of a node: its listeners and their tasks.
pub struct Transports {
    handle: TransportHandle,
    locals: Vec<ListenSpec>,
    tasks: Vec<JoinHandle<()>>,
}

impl Transports {
    /// Binds every listener in `config` and starts receiving; received
    /// messages go to `receiver`. Must be called inside a tokio runtime.
    pub async fn start(
        config: TransportConfig,
        receiver: Arc<dyn Receiver>,
    ) -> Result<Self, TransportError> {
        let workers = if config.udp_workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.udp_workers
        };
        let mut udp_sockets = Vec::new();
        let mut udp = Vec::new();
        let mut tcp_listeners = Vec::new();
        let mut locals = Vec::new();
        for spec in &config.listen {
            let bind_err = |source| TransportError::Bind {
                transport: spec.transport,
                address: spec.address,
                source,
            };
            match spec.transport {
                TransportKind::Udp => {
                    let sockets = udp::bind(spec.address, workers, &config).map_err(bind_err)?;
                    let Some(first) = sockets.first().map(|w| w.main.clone()) else {
                        continue;
                    };
                    let local = first.local_addr().map_err(bind_err)?;
                    udp.push(UdpListener {
                        local,
                        socket: first,
                    });
                    locals.push(ListenSpec {
                        transport: TransportKind::Udp,
                        address: local,
                    });
                    udp_sockets.extend(sockets);
                }
                TransportKind::Tcp => {
                    let listener = crate::tcp::bind(spec.address).map_err(bind_err)?;
                    let local = listener.local_addr().map_err(bind_err)?;
                    locals.push(ListenSpec {
                        transport: TransportKind::Tcp,
                        address: local,
                    });
                    tcp_listeners.push(listener);
                }
                other => return Err(TransportError::Unsupported(other)),
            }
        }
        let tcp = TcpTable::new(&config, receiver.clone());
        let handle = TransportHandle {
            inner: Arc::new(Inner { udp, tcp }),
        };
        let mut tasks = Vec::new();
        for socket in udp_sockets {
            tasks.push(tokio::spawn(udp::run_worker(
                socket,
                receiver.clone(),
                handle.clone(),
            )));
        }
        for listener in tcp_listeners {
            tasks.push(tokio::spawn(crate::tcp::run_listener(
                listener,
                handle.clone(),
            )));
        }
        Ok(Transports {
            handle,
            locals,
            tasks,
        })
    }

    /// A handle for sending.
    pub fn handle(&self) -> TransportHandle {
        self.handle.clone()
    }

    /// The bound listeners (ports resolved when 0 was asked for).
    pub fn local_addrs(&self) -> &[ListenSpec] {
        &self.locals
    }

    /// Stops receiving and closes every connection.
    pub fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.handle.inner.tcp.close_all();
    }
}

impl TransportHandle {
    /// Sends `data` to `target` without waiting. UDP datagrams leave at once
    /// (or from a task when the socket buffer is full); stream messages are
    /// queued on the target's connection, which is opened first if needed.
    pub fn send(&self, target: &Target, data: Bytes) -> Result<(), TransportError> {
        match target.transport {
            TransportKind::Udp => self.send_udp(target, data),
            TransportKind::Tcp => self.inner.tcp.send(self, target, data),
            other => Err(TransportError::Unsupported(other)),
        }
    }

    /// Like [`send`](Self::send), but waits until a new connection is
    /// established, so connection failures are reported to the caller.
    pub async fn send_checked(&self, target: &Target, data: Bytes) -> Result<(), TransportError> {
        match target.transport {
            TransportKind::Udp => self.send_udp(target, data),
            TransportKind::Tcp => self.inner.tcp.send_checked(self, target, data).await,
            other => Err(TransportError::Unsupported(other)),
        }
    }

    /// The UDP listener that sends to `target`: the one named by
    /// `target.local`, else the first of the right address family.
    fn udp_listener(&self, target: &Target) -> Option<&UdpListener> {
        let listeners = &self.inner.udp;
        target
            .local
            .and_then(|l| listeners.iter().find(|u| u.local == l))
            .or_else(|| {
                listeners
                    .iter()
                    .find(|u| u.local.is_ipv4() == target.addr.is_ipv4())
            })
    }

    /// The local address a message to `target` will be sent from, for the
    /// Via and Record-Route the core writes into it.
    pub fn local_addr_for(&self, target: &Target) -> Option<SocketAddr> {
        match target.transport {
            TransportKind::Udp => self.udp_listener(target).map(|u| u.local),
            TransportKind::Tcp => self.inner.tcp.listen_addr_for(target),
            _ => None,
        }
    }

    fn send_udp(&self, target: &Target, data: Bytes) -> Result<(), TransportError> {
        let listener = self.udp_listener(target).ok_or(TransportError::NoRoute {
            transport: TransportKind::Udp,
            address: target.addr,
        })?;
        let remote = target.addr;
        match listener.socket.try_send_to(&data, remote) {
            Ok(_) => {
                crate::counter_once!("voxline_transport_sent_total", "transport" => "udp")
                    .increment(1);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let socket = listener.socket.clone();
                tokio::spawn(async move {
                    if let Err(e) = socket.send_to(&data, remote).await {
                        tracing::debug!(%remote, error = %e, "udp send failed");
                    }
                });
                Ok(())
            }
            Err(source) => Err(TransportError::Send {
                address: remote,
                source,
            }),
        }
    }

    pub(crate) fn tcp(&self) -> &TcpTable {
        &self.inner.tcp
    }
}

/// Where a receive callback puts what it sends. UDP datagrams from the
/// receiving socket are batched into one `sendmmsg` after the receive batch;
/// everything else goes through the [`TransportHandle`].
pub struct Outbox<'a> {
    batch: Option<&'a mut SendBatch>,
    local: SocketAddr,
    handle: &'a TransportHandle,
}

impl<'a> Outbox<'a> {
    pub(crate) fn new(
        batch: &'a mut SendBatch,
        local: SocketAddr,
        handle: &'a TransportHandle,
    ) -> Self {
        Outbox {
            batch: Some(batch),
            local,
            handle,
        }
    }

    /// An outbox for a stream callback: everything goes through the handle.
    pub(crate) fn unbatched(local: SocketAddr, handle: &'a TransportHandle) -> Self {
        Outbox {
            batch: None,
            local,
            handle,
        }
    }

    /// Sends (or queues) `data` to `target`.
    pub fn send(&mut self, target: &Target, data: Bytes) -> Result<(), TransportError> {
        if let Some(batch) = self.batch.as_deref_mut() {
            let same_socket = match target.local {
                Some(l) => l == self.local,
                None => self.local.is_ipv4() == target.addr.is_ipv4(),
            };
            if target.transport == TransportKind::Udp && same_socket {
                batch.push(target.addr, data);
                return Ok(());
            }
        }
        self.handle.send(target, data)
    }

    /// The handle, for sends that outlive the callback (spawned tasks).
    pub fn handle(&self) -> &TransportHandle {
        self.handle
    }
}
