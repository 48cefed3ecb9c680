//! ng servers over UDP and TCP, and the timer task.

use std::net::SocketAddr;
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
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, src)) => {
                    let pushed = lock_queue(&queue).push(src.ip(), (src, buf.get(..n).unwrap_or_default().to_vec()));
                    if pushed {
                        ready.notify_one();
                    } else {
                        metrics::counter!("voxline_relay_ng_dropped_total").increment(1);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "ng recv error"),
            },
            _ = shutdown.changed() => break,
        }
    }
    let _ = executor.await;
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
