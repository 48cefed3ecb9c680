//! UDP datagrams sent from outside a receive batch (a call's task
//! forwarding a 180 or a 200, a timer retransmitting), handed to the worker
//! that owns the listener's socket so that they leave together in one
//! `sendmmsg` instead of one `sendto` each.
//!
//! One `sendto` per datagram also meant one wake-up of the receiver per
//! datagram: at a proxy's capacity they took 6.7 % of its core. The worker
//! sends what is queued as soon as it is woken, or after the receive batch
//! it is handling, so a datagram waits at most one batch.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::batch::SendBatch;

/// The queue between the senders and the worker of one UDP socket.
#[derive(Debug)]
pub(crate) struct DeferredSends {
    queue: Mutex<Vec<(SocketAddr, Bytes)>>,
    /// Something is queued (read without the lock after every batch).
    queued: AtomicBool,
    /// A worker sends what is queued; cleared when it stops.
    open: AtomicBool,
    wake: Notify,
}

impl DeferredSends {
    pub(crate) fn new() -> DeferredSends {
        DeferredSends {
            queue: Mutex::new(Vec::new()),
            queued: AtomicBool::new(false),
            open: AtomicBool::new(true),
            wake: Notify::new(),
        }
    }

    /// Queues `data` for `dest` and wakes the worker; gives the datagram
    /// back when no worker sends any more (the caller sends it itself).
    pub(crate) fn push(&self, dest: SocketAddr, data: Bytes) -> Result<(), Bytes> {
        if !self.open.load(Ordering::Acquire) {
            return Err(data);
        }
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let first = queue.is_empty();
        queue.push((dest, data));
        drop(queue);
        if first {
            self.queued.store(true, Ordering::Release);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Moves everything queued into `batch`; `false` when nothing was.
    pub(crate) fn take_into(&self, batch: &mut SendBatch) -> bool {
        if !self.queued.swap(false, Ordering::AcqRel) {
            return false;
        }
        let taken = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let any = !taken.is_empty();
        for (dest, data) in taken {
            batch.push(dest, data);
        }
        any
    }

    /// Resolves when something may have been queued since the last call.
    pub(crate) async fn queued(&self) {
        self.wake.notified().await;
    }

    /// The worker stops: later sends are the callers' own; what is queued
    /// is returned to be sent once more directly.
    pub(crate) fn close(&self) -> Vec<(SocketAddr, Bytes)> {
        self.open.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn queued_datagrams_wake_the_worker_and_leave_in_order() {
        let d = DeferredSends::new();
        let mut batch = SendBatch::new();
        assert!(!d.take_into(&mut batch));
        d.push(addr(1), Bytes::from_static(b"a")).unwrap();
        d.push(addr(2), Bytes::from_static(b"b")).unwrap();
        // The wake-up was stored: waiting now returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), d.queued())
            .await
            .unwrap();
        assert!(d.take_into(&mut batch));
        assert!(!d.take_into(&mut batch));
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SendBatch::new();
        d.push(sink.local_addr().unwrap(), Bytes::from_static(b"one"))
            .unwrap();
        d.push(sink.local_addr().unwrap(), Bytes::from_static(b"two"))
            .unwrap();
        assert!(d.take_into(&mut batch));
        use std::os::fd::AsRawFd;
        assert_eq!(batch.flush(socket.as_raw_fd()).unwrap().sent, 2);
        let mut buf = [0u8; 16];
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }

    #[test]
    fn a_closed_queue_gives_datagrams_back() {
        let d = DeferredSends::new();
        d.push(addr(1), Bytes::from_static(b"left")).unwrap();
        let left = d.close();
        assert_eq!(left.len(), 1);
        assert_eq!(
            d.push(addr(2), Bytes::from_static(b"late")),
            Err(Bytes::from_static(b"late"))
        );
    }
}
