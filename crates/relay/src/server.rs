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

fn with_control<T>(control: &Mutex<Control>, f: impl FnOnce(&mut Control) -> T) -> Option<T> {
    match control.lock() {
        Ok(mut c) => Some(f(&mut c)),
        Err(poisoned) => Some(f(&mut poisoned.into_inner())),
    }
}

type Queue = Mutex<FairQueue<std::net::IpAddr, (SocketAddr, Vec<u8>)>>;

fn lock_queue(
    q: &Queue,
) -> std::sync::MutexGuard<'_, FairQueue<std::net::IpAddr, (SocketAddr, Vec<u8>)>> {
    match q.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Serves ng over UDP. A reader task drains the socket as fast as it can
/// into per-source bounded queues (a flooding source overflows only its own
/// queue); a second task executes commands taking sources round-robin.
pub(crate) async fn run_udp(
    socket: UdpSocket,
    control: Arc<Mutex<Control>>,
    per_source: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let queue: Arc<Queue> = Arc::new(Mutex::new(FairQueue::new(per_source)));
    let ready = Arc::new(tokio::sync::Notify::new());
    let executor = {
        let (socket, queue, ready) = (socket.clone(), queue.clone(), ready.clone());
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = lock_queue(&queue).pop();
                match next {
                    Some((_, (src, msg))) => {
                        let reply =
                            with_control(&control, |c| c.handle_message(&msg, src, unix_ms()))
                                .flatten();
                        if let Some(reply) = reply
                            && let Err(e) = socket.send_to(&reply, src).await
                        {
                            tracing::debug!(error = %e, %src, "ng reply send failed");
                        }
                    }
                    None => {
                        tokio::select! {
                            _ = ready.notified() => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            }
        })
    };
    // The reader is an OS thread doing batched recvmmsg: it must drain the
    // socket faster than any single source can fill it.
    let reader = match socket.as_ref().as_fd().try_clone_to_owned() {
        Ok(fd) => {
            let (queue, ready, stop) = (queue.clone(), ready.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("ng-reader".into())
                .spawn(move || read_loop(fd, &queue, &ready, &stop))
                .ok()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot clone the ng socket");
            None
        }
    };
    let _ = shutdown.changed().await;
    ready.notify_one();
    let _ = executor.await;
    if let Some(r) = reader {
        let _ = tokio::task::spawn_blocking(move || r.join()).await;
    }
}

const READ_BATCH: usize = 16;

fn read_loop(
    fd: std::os::fd::OwnedFd,
    queue: &Queue,
    ready: &tokio::sync::Notify,
    stop: &watch::Receiver<bool>,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    let mut bufs = vec![vec![0u8; 65_536]; READ_BATCH];
    let mut hdrs: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(READ_BATCH, None);
    while !*stop.borrow() {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "ng poll failed");
                return;
            }
        }
        let mut got: Vec<(usize, SocketAddr, usize)> = Vec::with_capacity(READ_BATCH);
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
                for (i, r) in results.enumerate() {
                    let src = r.address.and_then(|a: SockaddrStorage| {
                        a.as_sockaddr_in()
                            .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                            .or_else(|| {
                                a.as_sockaddr_in6()
                                    .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                            })
                    });
                    if let Some(src) = src {
                        got.push((i, src, r.bytes));
                    }
                }
            }
        }
        // Copy payloads now that the buffers are no longer borrowed.
        let mut q = lock_queue(queue);
        for (i, src, n) in got {
            let payload = bufs
                .get(i)
                .and_then(|b| b.get(..n))
                .unwrap_or_default()
                .to_vec();
            if !q.push(src.ip(), (src, payload)) {
                metrics::counter!("voxline_relay_ng_dropped_total").increment(1);
            }
        }
        drop(q);
        ready.notify_one();
    }
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
                    let reply = with_control(&control, |c| c.handle_message(&msg, peer, unix_ms()))
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
