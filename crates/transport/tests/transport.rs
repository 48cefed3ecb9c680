//! End-to-end transport tests over real loopback sockets.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use voxline_transport::{
    ListenSpec, Outbox, Packet, Receiver, Target, TransportConfig, TransportKind, Transports,
    reply_target,
};

/// Records every packet and answers each with "ACK <n>" where n is its length.
struct Echo {
    seen: mpsc::UnboundedSender<Packet>,
}

impl Receiver for Echo {
    fn on_packet(&self, packet: Packet, out: &mut Outbox<'_>) {
        let reply = format!(
            "SIP/2.0 200 OK\r\nX-Len: {}\r\nContent-Length: 0\r\n\r\n",
            packet.data.len()
        );
        let _ = out.send(&reply_target(&packet.peer), Bytes::from(reply));
        let _ = self.seen.send(packet);
    }
}

fn message(i: usize) -> String {
    let body = "x".repeat(i % 7);
    format!(
        "OPTIONS sip:node@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK{i}\r\n\
Call-ID: c{i}\r\nCSeq: {i} OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn start(config: TransportConfig) -> (Transports, mpsc::UnboundedReceiver<Packet>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let t = Transports::start(config, Arc::new(Echo { seen: tx }))
        .await
        .expect("start transports");
    (t, rx)
}

fn listen(kind: TransportKind, addr: &str) -> ListenSpec {
    ListenSpec {
        transport: kind,
        address: addr.parse().unwrap(),
    }
}

fn local(t: &Transports, kind: TransportKind) -> SocketAddr {
    t.local_addrs()
        .iter()
        .find(|l| l.transport == kind)
        .unwrap()
        .address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_are_delivered_and_answered_in_batches() {
    let (t, mut seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Udp, "127.0.0.1:0")],
        udp_workers: 2,
        ..TransportConfig::default()
    })
    .await;
    let server = local(&t, TransportKind::Udp);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..200 {
        client.send_to(message(i).as_bytes(), server).await.unwrap();
    }
    let mut buf = vec![0u8; 2048];
    for _ in 0..200 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("reply")
            .unwrap();
        assert_eq!(from, server, "replies leave from the listening address");
        assert!(buf[..n].starts_with(b"SIP/2.0 200 OK"));
    }
    let first = seen.recv().await.unwrap();
    assert_eq!(first.peer.transport, TransportKind::Udp);
    assert_eq!(first.peer.addr, client.local_addr().unwrap());
    assert_eq!(first.peer.local, Some(server));
    // The kernel's receive time comes along (the overload signal).
    let received = first.received_at.expect("kernel receive timestamp");
    let waited = std::time::SystemTime::now()
        .duration_since(received)
        .expect("received in the past");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    t.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_with_priority_steering_serves_both_classes() {
    let (t, mut seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Udp, "127.0.0.1:0")],
        udp_workers: 2,
        udp_priority_queue: true,
        ..TransportConfig::default()
    })
    .await;
    let server = local(&t, TransportKind::Udp);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..100 {
        let m = message(i);
        // Half in the bulk class (REGISTER), half priority (OPTIONS).
        let m = if i % 2 == 0 {
            m.replacen("OPTIONS", "REGISTER", 1)
        } else {
            m
        };
        client.send_to(m.as_bytes(), server).await.unwrap();
    }
    let mut buf = vec![0u8; 2048];
    for _ in 0..100 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("reply")
            .unwrap();
        assert_eq!(from, server, "replies leave from the listening address");
        assert!(buf[..n].starts_with(b"SIP/2.0 200 OK"));
    }
    let mut registers = 0;
    for _ in 0..100 {
        let p = seen.recv().await.unwrap();
        assert_eq!(p.peer.local, Some(server));
        registers += usize::from(p.data.starts_with(b"REGISTER"));
    }
    assert_eq!(registers, 50);
    t.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_over_ipv6_loopback() {
    let Ok(probe) = std::net::UdpSocket::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback on this host");
        return;
    };
    drop(probe);
    let (t, _seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Udp, "[::1]:0")],
        ..TransportConfig::default()
    })
    .await;
    let server = local(&t, TransportKind::Udp);
    let client = UdpSocket::bind("[::1]:0").await.unwrap();
    client.send_to(message(1).as_bytes(), server).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK"));
}

async fn read_replies(stream: &mut TcpStream, count: usize) -> String {
    let mut all = String::new();
    let mut buf = vec![0u8; 4096];
    while all.matches("SIP/2.0 200 OK").count() < count {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("tcp reply in time")
            .unwrap();
        assert!(n > 0, "connection closed early; got {all:?}");
        all.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_frames_split_and_coalesced_messages_and_replies_on_the_same_connection() {
    let (t, mut seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportConfig::default()
    })
    .await;
    let server = local(&t, TransportKind::Tcp);
    let mut stream = TcpStream::connect(server).await.unwrap();
    // Ten messages in one write, then one message split byte by byte.
    let mut batch = String::new();
    for i in 0..10 {
        batch.push_str(&message(i));
    }
    stream.write_all(batch.as_bytes()).await.unwrap();
    let split = message(10);
    for b in split.as_bytes() {
        stream.write_all(&[*b]).await.unwrap();
    }
    let replies = read_replies(&mut stream, 11).await;
    assert_eq!(replies.matches("SIP/2.0 200 OK").count(), 11);
    let mut lens = Vec::new();
    for _ in 0..11 {
        let p = seen.recv().await.unwrap();
        assert_eq!(p.peer.transport, TransportKind::Tcp);
        assert!(p.peer.connection.is_some());
        assert!(
            p.parsed.is_some(),
            "stream framing hands over the parsed message"
        );
        lens.push(p.data.len());
    }
    assert_eq!(lens[10], split.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_keepalive_ping_gets_pong() {
    let (t, _seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(local(&t, TransportKind::Tcp))
        .await
        .unwrap();
    stream.write_all(b"\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bad_framing_gets_400_and_close() {
    let (t, _seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(local(&t, TransportKind::Tcp))
        .await
        .unwrap();
    let bad = message(1).replace("Content-Length: 1", "Content-Length: -5");
    stream.write_all(bad.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("server closes the connection")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("SIP/2.0 400"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_oversize_message_closes_connection() {
    let (t, _seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        max_message_size: 4096,
        ..TransportConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(local(&t, TransportKind::Tcp))
        .await
        .unwrap();
    let huge = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nX-Junk: {}\r\n",
        "y".repeat(64 * 1024)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut all = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all)).await;
    assert!(res.is_ok(), "connection must be closed, not left hanging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_limit_refuses_extra_connections() {
    let (t, _seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        tcp_max_connections: 2,
        ..TransportConfig::default()
    })
    .await;
    let server = local(&t, TransportKind::Tcp);
    let mut a = TcpStream::connect(server).await.unwrap();
    let mut b = TcpStream::connect(server).await.unwrap();
    // Both admitted connections work.
    a.write_all(message(1).as_bytes()).await.unwrap();
    read_replies(&mut a, 1).await;
    b.write_all(message(2).as_bytes()).await.unwrap();
    read_replies(&mut b, 1).await;
    // The third is accepted by the kernel and closed by the node.
    let mut c = TcpStream::connect(server).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("refused connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_connection_is_closed() {
    let (t, _seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        tcp_idle_timeout: Duration::from_millis(300),
        ..TransportConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(local(&t, TransportKind::Tcp))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("idle connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_tcp_connections_are_reused() {
    // A plain TCP server that counts connections and records what arrives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = listener.local_addr().unwrap();
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let conn_tx = conn_tx.clone();
            tokio::spawn(async move {
                let mut all = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                    if all.windows(4).filter(|w| w == b"c2\r\n").count() == 1 {
                        break;
                    }
                }
                let _ = conn_tx.send(all);
            });
        }
    });
    let (t, _seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportConfig::default()
    })
    .await;
    let h = t.handle();
    let target = Target::new(dest, TransportKind::Tcp);
    h.send_checked(&target, Bytes::from(message(1)))
        .await
        .unwrap();
    h.send(&target, Bytes::from(message(2))).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), conn_rx.recv())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.contains("Call-ID: c1") && text.contains("Call-ID: c2"),
        "both on one connection: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_reported() {
    let (t, _seen) = start(TransportConfig {
        listen: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportConfig::default()
    })
    .await;
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = t
        .handle()
        .send_checked(
            &Target::new(closed, TransportKind::Tcp),
            Bytes::from(message(1)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// Answers like [`Echo`] and wants every batch timed.
struct Timed {
    datagrams: std::sync::atomic::AtomicUsize,
    cpu_ns: std::sync::atomic::AtomicU64,
    done: mpsc::UnboundedSender<usize>,
}

impl Receiver for Timed {
    fn on_packet(&self, packet: Packet, out: &mut Outbox<'_>) {
        let _ = out.send(
            &reply_target(&packet.peer),
            Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
        );
    }

    fn wants_batch_cost(&self) -> bool {
        true
    }

    fn on_batch_end(&self, datagrams: usize, cpu: Duration) {
        use std::sync::atomic::Ordering;
        self.cpu_ns
            .fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
        let total = self.datagrams.fetch_add(datagrams, Ordering::Relaxed) + datagrams;
        let _ = self.done.send(total);
    }
}

#[tokio::test]
async fn timed_udp_batches_report_their_datagrams_and_cpu() {
    let (done, mut totals) = mpsc::unbounded_channel();
    let timed = Arc::new(Timed {
        datagrams: Default::default(),
        cpu_ns: Default::default(),
        done,
    });
    let t = Transports::start(
        TransportConfig {
            listen: vec![listen(TransportKind::Udp, "127.0.0.1:0")],
            udp_workers: 1,
            ..TransportConfig::default()
        },
        timed.clone(),
    )
    .await
    .expect("start transports");
    let server = local(&t, TransportKind::Udp);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..50 {
        client.send_to(message(i).as_bytes(), server).await.unwrap();
    }
    // Every datagram is counted in exactly one timed batch.
    loop {
        let total = tokio::time::timeout(Duration::from_secs(5), totals.recv())
            .await
            .expect("a timed batch")
            .unwrap();
        assert!(total <= 50, "{total}");
        if total == 50 {
            break;
        }
    }
    // Receiving, handling and answering 50 datagrams takes CPU time.
    let cpu = timed.cpu_ns.load(std::sync::atomic::Ordering::Relaxed);
    assert!(cpu > 0, "{cpu}");
    t.shutdown();
}

/// Echoes every datagram, and withholds the answers of any batch that held
/// one saying `withhold`; reports each batch's commit.
struct Withholding {
    withhold: std::sync::atomic::AtomicBool,
    committed: mpsc::UnboundedSender<bool>,
}

impl Receiver for Withholding {
    fn on_packet(&self, packet: Packet, out: &mut Outbox<'_>) {
        if packet.data.as_ref() == b"withhold" {
            self.withhold
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = out.send(&reply_target(&packet.peer), packet.data);
    }

    fn batch_begin(&self) {
        self.withhold
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn batch_commit(&self) -> bool {
        let ok = !self.withhold.load(std::sync::atomic::Ordering::Relaxed);
        let _ = self.committed.send(ok);
        ok
    }
}

#[tokio::test]
async fn a_batch_whose_commit_fails_sends_none_of_its_answers() {
    let (committed, mut commits) = mpsc::unbounded_channel();
    let t = Transports::start(
        TransportConfig {
            listen: vec![listen(TransportKind::Udp, "127.0.0.1:0")],
            udp_workers: 1,
            ..TransportConfig::default()
        },
        Arc::new(Withholding {
            withhold: Default::default(),
            committed,
        }),
    )
    .await
    .expect("start transports");
    let server = local(&t, TransportKind::Udp);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let commit = async |commits: &mut mpsc::UnboundedReceiver<bool>| {
        tokio::time::timeout(Duration::from_secs(5), commits.recv())
            .await
            .expect("a batch committed")
            .unwrap()
    };
    client.send_to(b"withhold", server).await.unwrap();
    assert!(!commit(&mut commits).await, "the batch was withheld");
    // The next batch's answer is the first to arrive: nothing of the
    // withheld one went out before it.
    client.send_to(b"next", server).await.unwrap();
    assert!(commit(&mut commits).await);
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(&buf[..n], b"next");
    t.shutdown();
}
