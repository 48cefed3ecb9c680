//! A TCP forwarder that can be cut and restored: a Redis outage for one
//! client (the server and its data and settings stay). It forwards whole
//! RESP commands, so that it can also slip a command of its own in on a
//! client's behalf (Redis dropping that client's subscription, say).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Forwards `listen` → `upstream` until cut.
pub struct Cuttable {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Commands sent to Redis on every forwarded connection, as if its
    /// client had sent them.
    inject: broadcast::Sender<Vec<u8>>,
}

impl Cuttable {
    /// Listens on a free loopback port below the kernel's ephemeral range
    /// (32768 and up by default). While the port is cut, clients keep
    /// reconnecting to it; a port the kernel also hands out as a source
    /// port can be given to one of those attempts, which then connects to
    /// itself (a TCP self-connect) and holds the port, so that the
    /// listener cannot come back.
    pub async fn start(upstream: SocketAddr) -> Cuttable {
        let offset = u16::try_from(std::process::id() % 4000).unwrap();
        let mut listener = None;
        for i in 0..8000u16 {
            let port = 20000 + (offset + i) % 8000;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
                listener = Some(l);
                break;
            }
        }
        let listener = listener.expect("a free port in 20000..28000");
        let addr = listener.local_addr().unwrap();
        let c = Cuttable {
            addr,
            upstream,
            tasks: Arc::default(),
            inject: broadcast::channel(8).0,
        };
        c.serve(listener);
        c
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Redis URL (database 0) through this link.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Sends `command` (RESP) to Redis on every connection forwarded now,
    /// as if its client had sent it, between two of the client's commands;
    /// Redis's answer goes to the client. Returns on how many connections.
    pub fn inject(&self, command: &[u8]) -> usize {
        self.inject.send(command.to_vec()).unwrap_or(0)
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks, inject) = (self.upstream, self.tasks.clone(), self.inject.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let injected = inject.subscribe();
                let t = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let down = tokio::io::copy(&mut server_rx, &mut client_tx);
                    let up = forward_commands(&mut client_rx, &mut server_tx, injected);
                    tokio::select! {
                        _ = down => {}
                        _ = up => {}
                    }
                });
                tasks.lock().unwrap().push(t);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the listener and every connection, and returns once they are
    /// gone. An aborted task only stops at its next poll: a forwarding
    /// task already running could still pass on what a client sends just
    /// after the cut, and an accept running as the cut is made could add a
    /// connection after the list was taken. So the tasks are awaited, and
    /// the list taken again until nothing new appeared.
    pub async fn cut(&self) {
        loop {
            let tasks: Vec<JoinHandle<()>> = self.tasks.lock().unwrap().drain(..).collect();
            if tasks.is_empty() {
                return;
            }
            for t in &tasks {
                t.abort();
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }

    /// Listens again on the same port (once the old listener is gone).
    pub async fn restore(&self) {
        for _ in 0..200 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("cannot listen on {} again", self.addr);
    }
}

/// Copies a client's RESP commands to Redis one whole command at a time,
/// and the injected ones between them.
async fn forward_commands(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    mut injected: broadcast::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        tokio::select! {
            n = from.read(&mut chunk) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(len) = command_len(&buf) {
                    let command: Vec<u8> = buf.drain(..len).collect();
                    to.write_all(&command).await?;
                }
            }
            Ok(command) = injected.recv(), if buf.is_empty() => to.write_all(&command).await?,
        }
    }
}

/// The length of the complete RESP command (an array of bulk strings) at
/// the start of `buf`, if it is all there.
fn command_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(buf.get(at + 1..end)?)
            .ok()?
            .parse()
            .ok()?;
        Some((n, end + 2))
    }
    let (items, mut at) = line(buf, 0)?;
    for _ in 0..items {
        let (len, start) = line(buf, at)?;
        at = start + len + 2;
        if buf.len() < at {
            return None;
        }
    }
    Some(at)
}
