//! ng servers over UDP and TCP, and the timer task.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use voxline_ng::frame::{StreamFrame, split_stream};
use voxline_relay_dataplane::unix_ms;

use crate::control::Control;
use crate::fairness::FairQueue;

pub(crate) fn with_control<T>(
    control: &Mutex<Control>,
    f: impl FnOnce(&mut Control) -> T,
) -> Option<T> {
    match control.lock() {
        Ok(mut c) => Some(f(&mut c)),
        Err(poisoned) => Some(f(&mut poisoned.into_inner())),
    }
}

type Queue = FairQueue<std::net::IpAddr, (SocketAddr, Vec<u8>)>;

/// Serves ng over UDP on a dedicated OS thread: it drains the socket with
/// batched `recvmmsg` into per-source bounded queues (a flooding source
/// overflows only its own queue), then executes a few queued commands taking
/// sources round-robin, and goes back to reading.
///
/// The socket leaves tokio's reactor first: registered there, every
/// datagram would also wake a runtime thread for nothing (two context
/// switches per ng command on a relay pinned to one core). The socket is
/// closed when the thread ends.
pub(crate) async fn run_udp(
    socket: UdpSocket,
    control: Arc<Mutex<Control>>,
    per_source: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let thread = match socket.into_std() {
        Ok(std_socket) => {
            let stop = shutdown.clone();
            std::thread::Builder::new()
                .name("ng-udp".into())
                .spawn(move || serve_udp(std_socket.into(), &control, per_source, &stop))
                .ok()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot take the ng socket out of the runtime");
            None
        }
    };
    let _ = shutdown.changed().await;
    if let Some(t) = thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
}

const READ_BATCH: usize = 16;
/// Datagrams read before executing queued commands.
const READ_BURST: usize = 256;
/// Commands executed before reading again.
const EXEC_BURST: usize = 32;

fn serve_udp(
    fd: std::os::fd::OwnedFd,
    control: &Mutex<Control>,
    per_source: usize,
    stop: &watch::Receiver<bool>,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    let sender = std::net::UdpSocket::from(match fd.try_clone() {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot clone the ng socket");
            return;
        }
    });
    let mut queue: Queue = FairQueue::new(per_source);
    let mut bufs = vec![vec![0u8; 65_536]; READ_BATCH];
    let mut hdrs: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(READ_BATCH, None);
    let mut send_hdrs: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(EXEC_BURST, None);
    let mut replies: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(EXEC_BURST);
    // Also ends when the handle is dropped without a shutdown.
    while !*stop.borrow() && stop.has_changed().is_ok() {
        let timeout = if queue.is_empty() {
            PollTimeout::from(200u16)
        } else {
            PollTimeout::ZERO
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let readable = match poll(&mut fds, timeout) {
            Ok(n) => n > 0,
            Err(nix::errno::Errno::EINTR) => false,
            Err(e) => {
                tracing::error!(error = %e, "ng poll failed");
                return;
            }
        };
        let mut read = 0;
        while readable && read < READ_BURST {
            let mut got: [(usize, Option<SocketAddr>); READ_BATCH] = [(0, None); READ_BATCH];
            let mut n = 0;
            {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                if let Ok(results) = recvmmsg(
                    fd.as_raw_fd(),
                    &mut hdrs,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    for (slot, r) in got.iter_mut().zip(results) {
                        let src = r.address.and_then(|a: SockaddrStorage| {
                            a.as_sockaddr_in()
                                .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                                .or_else(|| {
                                    a.as_sockaddr_in6().map(|v6| {
                                        SocketAddr::from(std::net::SocketAddrV6::from(*v6))
                                    })
                                })
                        });
                        *slot = (r.bytes, src);
                        n += 1;
                    }
                }
            }
            for (i, (len, src)) in got.iter().take(n).enumerate() {
                let Some(src) = src else { continue };
                let payload = bufs
                    .get(i)
                    .and_then(|b| b.get(..*len))
                    .unwrap_or_default()
                    .to_vec();
                if !queue.push(src.ip(), (*src, payload)) {
                    metrics::counter!("voxline_relay_ng_dropped_total").increment(1);
                }
            }
            read += n;
            if n < READ_BATCH {
                break;
            }
        }
        if queue.is_empty() {
            continue;
        }
        {
            let mut c = match control.lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            for _ in 0..EXEC_BURST {
                let Some((_, (src, msg))) = queue.pop() else {
                    break;
                };
                if let Some(reply) = c.handle_message(&msg, src, unix_ms()) {
                    replies.push((src, reply));
                }
            }
            // One worker wake-up per burst.
            c.flush_wakes();
        }
        send_replies(&sender, &mut send_hdrs, &mut replies);
    }
}

/// Sends the replies of a burst with one `sendmmsg` (outside the control
/// lock); what the kernel does not take at once goes out one by one.
fn send_replies(
    sender: &std::net::UdpSocket,
    hdrs: &mut nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    replies: &mut Vec<(SocketAddr, Vec<u8>)>,
) {
    use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmmsg};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    let mut sent = 0;
    if replies.len() > 1 {
        let iovs: Vec<[IoSlice<'_>; 1]> = replies.iter().map(|(_, r)| [IoSlice::new(r)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = replies
            .iter()
            .map(|(a, _)| Some(SockaddrStorage::from(*a)))
            .collect();
        if let Ok(r) = sendmmsg(
            sender.as_raw_fd(),
            hdrs,
            iovs.iter(),
            &addrs,
            [],
            MsgFlags::MSG_DONTWAIT,
        ) {
            sent = r.count();
        }
    }
    for (src, reply) in replies.iter().skip(sent) {
        if let Err(e) = sender.send_to(reply, *src) {
            tracing::debug!(error = %e, %src, "ng reply send failed");
        }
    }
    replies.clear();
}

/// Accepts ng TCP connections.
pub(crate) async fn run_tcp(
    listener: TcpListener,
    control: Arc<Mutex<Control>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let control = control.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move { serve_tcp(stream, peer, control, shutdown).await });
                }
                Err(e) => tracing::debug!(error = %e, "ng accept failed"),
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve_tcp(
    mut stream: TcpStream,
    peer: SocketAddr,
    control: Arc<Mutex<Control>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16_384];
    loop {
        // Answer every complete message in the buffer.
        loop {
            match split_stream(&buf) {
                Ok(StreamFrame::Incomplete) => break,
                Ok(StreamFrame::Complete {
                    message_len,
                    consumed,
                }) => {
                    let msg = buf.get(..message_len).unwrap_or_default().to_vec();
                    buf.drain(..consumed.min(buf.len()));
                    let reply = with_control(&control, |c| {
                        let r = c.handle_message(&msg, peer, unix_ms());
                        c.flush_wakes();
                        r
                    })
                    .flatten();
                    if let Some(reply) = reply
                        && stream.write_all(&reply).await.is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "closing ng TCP connection on bad framing");
                    let reply = format!(
                        "- d6:result5:error12:error-reason{}:{}e",
                        e.to_string().len(),
                        e
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    return;
                }
            }
        }
        tokio::select! {
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs the session timers.
pub(crate) async fn run_timer(
    control: Arc<Mutex<Control>>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                with_control(&control, |c| c.tick(unix_ms()));
            }
            _ = shutdown.changed() => return,
        }
    }
}
