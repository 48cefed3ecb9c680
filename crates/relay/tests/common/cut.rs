//! A TCP forwarder that can be cut and restored: a Redis outage for one
//! client (the server and its data and settings stay).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards `listen` → `upstream` until cut.
pub struct Cuttable {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
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
        };
        c.serve(listener);
        c
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let t = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
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
