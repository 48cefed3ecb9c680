//! One transaction shard: its table, the listeners of its transactions and
//! its timer task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, oneshot};
use voxline_sip::Message;
use voxline_transaction::{ClientTxId, ServerTxId, TransactionTable, Transmit, TxEvent, TxId};

use crate::client::{ClientEvent, ClientSink, listener_closed};

/// Everything a shard guards with its lock.
pub(crate) struct ShardState {
    pub(crate) table: TransactionTable<Message>,
    /// Who hears about each client transaction.
    pub(crate) clients: HashMap<ClientTxId, (u64, ClientSink)>,
    /// Who hears about a CANCEL of each INVITE server transaction.
    pub(crate) cancels: HashMap<ServerTxId, oneshot::Sender<Message>>,
}

/// What an operation on the table produced, taken out of the lock.
#[derive(Default)]
pub(crate) struct Output {
    pub(crate) transmits: Vec<Transmit<Message>>,
    pub(crate) deadline: Option<Instant>,
}

pub(crate) struct Shard {
    state: Mutex<ShardState>,
    /// Wakes the timer task when an earlier deadline appears.
    pub(crate) wake: Notify,
    /// The deadline the timer task sleeps until, as nanoseconds since the
    /// core's epoch (`u64::MAX`: none).
    armed: AtomicU64,
    /// `voxline_sip_transactions{shard}`, registered on first use (after
    /// the metrics recorder is installed), not looked up per timer pass.
    pub(crate) size_gauge: std::sync::OnceLock<metrics::Gauge>,
}

impl Shard {
    pub(crate) fn new(table: TransactionTable<Message>) -> Self {
        Shard {
            state: Mutex::new(ShardState {
                table,
                clients: HashMap::new(),
                cancels: HashMap::new(),
            }),
            wake: Notify::new(),
            armed: AtomicU64::new(u64::MAX),
            size_gauge: std::sync::OnceLock::new(),
        }
    }

    /// Locks the shard. The state stays consistent across a panic in a
    /// caller (every update is a single table call), so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the deadline the timer task is about to sleep until.
    pub(crate) fn arm(&self, deadline: Option<Instant>, epoch: Instant) {
        self.armed.store(nanos(deadline, epoch), Ordering::Release);
    }

    /// Wakes the timer task if `deadline` is earlier than what it sleeps for.
    pub(crate) fn maybe_wake(&self, deadline: Option<Instant>, epoch: Instant) {
        let new = nanos(deadline, epoch);
        if new < self.armed.load(Ordering::Acquire) {
            self.armed.store(new, Ordering::Release);
            self.wake.notify_one();
        }
    }
}

fn nanos(deadline: Option<Instant>, epoch: Instant) -> u64 {
    deadline.map_or(u64::MAX, |d| {
        u64::try_from(d.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    })
}

impl ShardState {
    /// Drains transmits and events after a table operation: events go to
    /// their listeners here; transmits are returned to be sent unlocked.
    pub(crate) fn drain(&mut self) -> Output {
        let mut out = Output::default();
        while let Some(t) = self.table.poll_transmit() {
            out.transmits.push(t);
        }
        while let Some(event) = self.table.poll_event() {
            self.dispatch(event);
        }
        out.deadline = self.table.poll_timeout();
        out
    }

    fn dispatch(&mut self, event: TxEvent) {
        match event {
            TxEvent::Timeout {
                id: TxId::Client(id),
                ..
            } => self.notify(id, ClientEvent::Timeout),
            TxEvent::TransportError {
                id: TxId::Client(id),
            } => self.notify(id, ClientEvent::TransportError),
            TxEvent::Terminated {
                id: TxId::Client(id),
            } => {
                if let Some((tag, tx)) = self.clients.remove(&id) {
                    let _ = tx.send((tag, ClientEvent::Terminated));
                }
            }
            TxEvent::Terminated {
                id: TxId::Server(id),
            } => {
                self.cancels.remove(&id);
            }
            TxEvent::Timeout {
                id: TxId::Server(id),
                timer,
            } => {
                tracing::debug!(?id, ?timer, "server transaction timed out");
                metrics::counter!("voxline_sip_server_timeouts_total").increment(1);
            }
            TxEvent::TransportError {
                id: TxId::Server(id),
            } => {
                tracing::debug!(?id, "response could not be sent");
            }
            TxEvent::CancelSent { invite, .. } => {
                tracing::trace!(?invite, "pending CANCEL sent");
            }
        }
    }

    fn notify(&mut self, id: ClientTxId, event: ClientEvent) {
        match self.clients.get(&id) {
            Some((tag, tx)) => {
                if tx.send((*tag, event)).is_err() {
                    self.clients.remove(&id);
                    listener_closed(id);
                }
            }
            None => listener_closed(id),
        }
    }
}
