//! Running request handlers on the receive path.
//!
//! Most requests are answered without waiting for anything (a registrar over
//! the memory location store, cached credentials, a stateless reply). For
//! those, a spawned task costs more than the work itself, and every reply
//! sent from a task leaves in a system call of its own. So:
//!
//! * [`spawn_eager`] polls a handler once, right where it is called (inside
//!   the transport's receive callback); only a handler that has to wait is
//!   handed to the runtime.
//! * While the core handles a received batch, what handlers send is
//!   *captured* on the thread ([`Capture`]) and queued on the receive batch's
//!   outbox afterwards, so the replies to a whole `recvmmsg` batch leave in
//!   one `sendmmsg`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use voxline_transaction::{Peer, TxId};

/// Runs `handler` on the current thread until it first has to wait, and
/// hands the rest to the tokio runtime (as `tokio::spawn` would).
///
/// Handlers that never wait (the common case on a node's hot path) finish
/// inside the call, without a task and without leaving the thread; their
/// replies join the current receive batch. Must be called inside a tokio
/// runtime, like `tokio::spawn`.
pub fn spawn_eager<F>(handler: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut handler: Pin<Box<F>> = Box::pin(handler);
    // A future polled with one waker and later with another must wake the
    // latest one (the `Future` contract), so the first poll can use a waker
    // that does nothing: the spawned task polls again at once and registers
    // its own.
    let mut cx = Context::from_waker(Waker::noop());
    if handler.as_mut().poll(&mut cx) == Poll::Pending {
        metrics::counter!("voxline_sip_handlers_spawned_total").increment(1);
        tokio::spawn(handler);
    }
}

/// A send captured while a receive batch is handled.
pub(crate) struct Deferred {
    /// The transaction that sends it (for transport errors), with its shard.
    pub(crate) tx: Option<(usize, TxId)>,
    pub(crate) dest: Peer,
    pub(crate) data: Bytes,
}

thread_local! {
    static CAPTURED: RefCell<Option<Vec<Deferred>>> = const { RefCell::new(None) };
}

/// Captures the sends made on this thread until it is finished (or dropped,
/// which discards them: only a panic drops it unfinished).
pub(crate) struct Capture {
    /// Whether this capture started the thread's capturing (nested ones
    /// leave it to the outer one).
    outer: bool,
}

impl Capture {
    pub(crate) fn begin() -> Capture {
        let outer = CAPTURED.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(Vec::new());
                true
            } else {
                false
            }
        });
        Capture { outer }
    }

    /// Stops capturing and returns what was captured (nothing for a nested
    /// capture: the outer one returns it).
    pub(crate) fn finish(mut self) -> Vec<Deferred> {
        let taken = if self.outer {
            CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default()
        } else {
            Vec::new()
        };
        self.outer = false;
        taken
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.outer {
            CAPTURED.with(|c| c.borrow_mut().take());
        }
    }
}

/// Queues a send when this thread is capturing (`None`); gives it back
/// to be sent at once otherwise.
pub(crate) fn try_capture(item: Deferred) -> Option<Deferred> {
    CAPTURED.with(|c| match c.borrow_mut().as_mut() {
        Some(queue) => {
            queue.push(item);
            None
        }
        None => Some(item),
    })
}

/// Whether this thread is capturing sends.
#[cfg(test)]
pub(crate) fn capturing() -> bool {
    CAPTURED.with(|c| c.borrow().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(port: u16) -> Deferred {
        Deferred {
            tx: None,
            dest: Peer::udp(([127, 0, 0, 1], port).into()),
            data: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn captures_only_inside_and_nested_captures_leave_it_to_the_outer() {
        assert!(try_capture(item(1)).is_some());
        let outer = Capture::begin();
        assert!(capturing());
        assert!(try_capture(item(2)).is_none());
        let inner = Capture::begin();
        assert!(try_capture(item(3)).is_none());
        assert!(inner.finish().is_empty());
        assert!(capturing());
        let got = outer.finish();
        assert_eq!(
            got.iter().map(|d| d.dest.addr.port()).collect::<Vec<_>>(),
            [2, 3]
        );
        assert!(!capturing());
        assert!(try_capture(item(4)).is_some());
    }

    #[test]
    fn a_dropped_capture_stops_capturing() {
        {
            let _c = Capture::begin();
            assert!(try_capture(item(1)).is_none());
        }
        assert!(!capturing());
    }

    #[tokio::test]
    async fn handlers_that_do_not_wait_finish_inside_the_call() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        spawn_eager(async move {
            d.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        // One that waits is finished by the runtime.
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<u32>();
        spawn_eager(async move {
            let v = go_rx.await.unwrap_or(0);
            let _ = tx.send(v);
        });
        go_tx.send(7).unwrap();
        assert_eq!(rx.recv().await, Some(7));
    }
}
