//! TCP: listeners, framed connections and the connection table.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::handle::{Outbox, TransportHandle};
use crate::{
    ConnId, Packet, Peer, Receiver, Target, TransportConfig, TransportError, TransportKind,
};
use voxline_sip::{Limits, StreamEvent, StreamFramer};

/// The RFC 5626 §4.4.1 keep-alive pong.
const PONG: &[u8] = b"\r\n";

/// Binds a TCP listener with a generous backlog.
pub(crate) fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

struct Conn {
    tx: mpsc::Sender<Bytes>,
    remote: SocketAddr,
}

#[derive(Default)]
struct Table {
    conns: HashMap<ConnId, Conn>,
    by_remote: HashMap<SocketAddr, ConnId>,
}

/// Every open TCP connection of the node.
pub(crate) struct TcpTable {
    table: Mutex<Table>,
    receiver: Arc<dyn Receiver>,
    next_id: AtomicU64,
    open: AtomicUsize,
    max_connections: usize,
    max_message_size: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    send_queue: usize,
    listen_addrs: Mutex<Vec<SocketAddr>>,
}

impl TcpTable {
    pub(crate) fn new(cfg: &TransportConfig, receiver: Arc<dyn Receiver>) -> Self {
        TcpTable {
            table: Mutex::new(Table::default()),
            receiver,
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            max_connections: cfg.tcp_max_connections,
            max_message_size: cfg.max_message_size,
            idle_timeout: cfg.tcp_idle_timeout,
            connect_timeout: cfg.tcp_connect_timeout,
            send_queue: cfg.tcp_send_queue.max(1),
            listen_addrs: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // (every update is a single insert/remove), so poisoning is ignored.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a connection slot, or says why not.
    fn reserve(&self) -> Result<(), TransportError> {
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("voxline_transport_tcp_refused_total").increment(1);
            return Err(TransportError::ConnectionLimit(self.max_connections));
        }
        metrics::gauge!("voxline_transport_tcp_connections").set((prev + 1) as f64);
        Ok(())
    }

    fn register(&self, remote: SocketAddr) -> (ConnId, mpsc::Receiver<Bytes>) {
        let id = ConnId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(self.send_queue);
        let mut t = self.lock();
        t.conns.insert(id, Conn { tx, remote });
        t.by_remote.insert(remote, id);
        (id, rx)
    }

    fn unregister(&self, id: ConnId) {
        let mut t = self.lock();
        if let Some(conn) = t.conns.remove(&id) {
            if t.by_remote.get(&conn.remote) == Some(&id) {
                t.by_remote.remove(&conn.remote);
            }
            let now = self.open.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
            metrics::gauge!("voxline_transport_tcp_connections").set(now as f64);
        }
    }

    /// The sender of the connection `target` names, or of any connection
    /// to its remote address.
    fn sender_for(&self, target: &Target) -> Option<mpsc::Sender<Bytes>> {
        let t = self.lock();
        target
            .connection
            .and_then(|id| t.conns.get(&id))
            .or_else(|| t.by_remote.get(&target.addr).and_then(|id| t.conns.get(id)))
            .map(|c| c.tx.clone())
    }

    pub(crate) fn send(
        &self,
        handle: &TransportHandle,
        target: &Target,
        data: Bytes,
    ) -> Result<(), TransportError> {
        if let Some(tx) = self.sender_for(target) {
            return tx.try_send(data).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TransportError::QueueFull(target.addr),
                mpsc::error::TrySendError::Closed(_) => {
                    TransportError::ConnectionClosed(target.connection.unwrap_or(ConnId(0)))
                }
            });
        }
        self.connect(handle, target.addr, data, None)
    }

    pub(crate) async fn send_checked(
        &self,
        handle: &TransportHandle,
        target: &Target,
        data: Bytes,
    ) -> Result<(), TransportError> {
        if self.sender_for(target).is_some() {
            return self.send(handle, target, data);
        }
        let (done_tx, done_rx) = oneshot::channel();
        self.connect(handle, target.addr, data, Some(done_tx))?;
        match done_rx.await {
            Ok(result) => result,
            Err(_) => Err(TransportError::ConnectionClosed(ConnId(0))),
        }
    }

    /// Opens a connection to `remote` in the background with `first` queued;
    /// it goes out once the connection is established.
    fn connect(
        &self,
        handle: &TransportHandle,
        remote: SocketAddr,
        first: Bytes,
        done: Option<oneshot::Sender<Result<(), TransportError>>>,
    ) -> Result<(), TransportError> {
        self.reserve()?;
        let (id, rx) = self.register(remote);
        // Queue before the connect task can fail and close the queue.
        let queued = self
            .lock()
            .conns
            .get(&id)
            .map(|c| c.tx.try_send(first).is_ok());
        if queued != Some(true) {
            self.unregister(id);
            return Err(TransportError::QueueFull(remote));
        }
        let handle = handle.clone();
        let timeout = self.connect_timeout;
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(timeout, TcpStream::connect(remote)).await {
                Ok(Ok(s)) => s,
                Ok(Err(source)) => {
                    tracing::debug!(%remote, error = %source, "tcp connect failed");
                    handle.tcp().unregister(id);
                    if let Some(done) = done {
                        let _ = done.send(Err(TransportError::Connect {
                            address: remote,
                            source,
                        }));
                    }
                    return;
                }
                Err(_) => {
                    handle.tcp().unregister(id);
                    if let Some(done) = done {
                        let source = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                        let _ = done.send(Err(TransportError::Connect {
                            address: remote,
                            source,
                        }));
                    }
                    return;
                }
            };
            if let Some(done) = done {
                let _ = done.send(Ok(()));
            }
            run_connection(handle, stream, id, rx).await;
        });
        Ok(())
    }

    /// The listening address to advertise for messages sent over TCP to `target`.
    pub(crate) fn listen_addr_for(&self, target: &Target) -> Option<SocketAddr> {
        let addrs = self.listen_addrs.lock().unwrap_or_else(|p| p.into_inner());
        target.local.filter(|l| addrs.contains(l)).or_else(|| {
            addrs
                .iter()
                .copied()
                .find(|a| a.is_ipv4() == target.addr.is_ipv4())
        })
    }

    pub(crate) fn close_all(&self) {
        let mut t = self.lock();
        t.conns.clear();
        t.by_remote.clear();
    }
}

/// Accepts connections until the listener fails.
pub(crate) async fn run_listener(listener: TcpListener, handle: TransportHandle) {
    if let Ok(local) = listener.local_addr() {
        handle
            .tcp()
            .listen_addrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(local);
    }
    let mut last_limit_log: Option<Instant> = None;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let table = handle.tcp();
        if table.reserve().is_err() {
            if last_limit_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    %remote,
                    limit = table.max_connections,
                    "tcp connection limit reached; refusing new connections (transport.tcp_max_connections)"
                );
                last_limit_log = Some(Instant::now());
            }
            drop(stream);
            continue;
        }
        let (id, rx) = table.register(remote);
        tokio::spawn(run_connection(handle.clone(), stream, id, rx));
    }
}

/// Runs one connection: a writer task draining the send queue, and the
/// reader framing messages for the receiver, until either side ends or the
/// connection idles out.
async fn run_connection(
    handle: TransportHandle,
    stream: TcpStream,
    id: ConnId,
    rx: mpsc::Receiver<Bytes>,
) {
    let _ = stream.set_nodelay(true);
    let (remote, local) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(r), Ok(l)) => (r, l),
        _ => {
            handle.tcp().unregister(id);
            return;
        }
    };
    let activity = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (reader, writer) = stream.into_split();
    let writer_task = tokio::spawn(write_loop(writer, rx, activity.clone(), started));
    let peer = Peer {
        transport: TransportKind::Tcp,
        addr: remote,
        local: Some(local),
        connection: Some(id),
    };
    if let Err(reason) = read_loop(&handle, reader, peer, &activity, started).await {
        tracing::debug!(%remote, conn = %id, %reason, "tcp connection closed");
    }
    // Dropping the table entry closes the queue; the writer sends what is
    // still queued (e.g. a 400 for a broken stream) and shuts down.
    handle.tcp().unregister(id);
    if tokio::time::timeout(Duration::from_secs(2), writer_task)
        .await
        .is_err()
    {
        tracing::debug!(%remote, conn = %id, "tcp writer did not drain in time");
    }
}

async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    activity: Arc<AtomicU64>,
    started: Instant,
) {
    while let Some(data) = rx.recv().await {
        if writer.write_all(&data).await.is_err() {
            return;
        }
        activity.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        crate::counter_once!("voxline_transport_sent_total", "transport" => "tcp").increment(1);
    }
    let _ = writer.shutdown().await;
}

async fn read_loop(
    handle: &TransportHandle,
    mut reader: OwnedReadHalf,
    peer: Peer,
    activity: &AtomicU64,
    started: Instant,
) -> Result<(), String> {
    let table = handle.tcp();
    let Some(local) = peer.local else {
        return Err("connection without a local address".into());
    };
    let mut framer = StreamFramer::new(Limits {
        max_message_size: table.max_message_size,
        ..Limits::DEFAULT
    });
    let idle = table.idle_timeout;
    loop {
        let buf = framer.buffer_mut();
        buf.reserve(16 * 1024);
        let read = tokio::time::timeout(idle, reader.read_buf(buf)).await;
        match read {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                if started.elapsed().saturating_sub(last) >= idle {
                    return Err("idle timeout".into());
                }
                continue;
            }
        }
        activity.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        loop {
            match framer.next_event() {
                Ok(Some(StreamEvent::Message(msg))) => {
                    crate::counter_once!("voxline_transport_received_total", "transport" => "tcp")
                        .increment(1);
                    let mut out = Outbox::unbatched(local, handle);
                    let packet = Packet {
                        data: msg.to_bytes(),
                        peer,
                        parsed: Some(msg),
                        received_at: None,
                        read_at: crate::ReadTime::now(),
                    };
                    table.receiver.on_packet(packet, &mut out);
                }
                Ok(Some(StreamEvent::KeepAlivePing)) => {
                    let _ =
                        handle.send(&crate::peer::reply_target(&peer), Bytes::from_static(PONG));
                }
                Ok(Some(StreamEvent::KeepAlivePong)) => {}
                Ok(None) => break,
                Err(e) => {
                    metrics::counter!("voxline_transport_dropped_total", "reason" => "framing")
                        .increment(1);
                    if matches!(e, voxline_sip::ParseError::TooLarge { .. }) {
                        tracing::warn!(remote = %peer.addr, limit = table.max_message_size,
                            "tcp message exceeds max_message_size; closing connection");
                    }
                    // Answer 400 when the head is readable, then close: the
                    // stream cannot be framed any further.
                    if let Some(reply) = voxline_sip::error_response(framer.buffered(), &e, None) {
                        let _ = handle.send(&crate::peer::reply_target(&peer), reply);
                    }
                    return Err(e.to_string());
                }
            }
        }
    }
}
