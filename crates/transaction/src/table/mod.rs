//! The transaction table: matches messages to transactions, drives their
//! state machines and timers, and queues what the I/O layer must send.

mod incoming;
mod index;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::client::{CancelRequest, ClientTx};
use crate::config::TableConfig;
use crate::deadlines::DeadlineQueue;
use crate::event::{
    CancelOutcome, ClientState, ClientTxId, ServerState, ServerTxId, TransactionError, Transmit,
    TxEvent, TxId, TxRef,
};
use crate::key::{self, KeyRule};
use crate::message::{Peer, SipMessage, StartLine};
use crate::output::Output;
use crate::server::ServerTx;
use crate::shard::ShardRouter;
use crate::timer::{MIN_SHRINK_CAPACITY, SLOTS, Timer, TimerSet};
use index::KeyIndex;

/// Counters for metrics. All are totals since the table was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Server transactions created.
    pub server_created: u64,
    /// Client transactions created.
    pub client_created: u64,
    /// Messages absorbed inside the layer (retransmissions, hop-by-hop ACKs).
    pub absorbed: u64,
    /// Responses that matched no client transaction.
    pub stray_responses: u64,
    /// Requests refused because the table was full.
    pub refused: u64,
    /// Messages without the fields transactions are matched on.
    pub malformed: u64,
    /// Transactions that timed out ([`TxEvent::Timeout`]).
    pub timeouts: u64,
    /// Transport errors reported by the I/O layer.
    pub transport_errors: u64,
}

#[derive(Debug)]
enum Tx<M: SipMessage> {
    Client(ClientTx<M>),
    Server(ServerTx<M>),
}

impl<M: SipMessage> Tx<M> {
    fn id(&self, r: TxRef) -> TxId {
        match self {
            Tx::Client(_) => TxId::Client(ClientTxId(r)),
            Tx::Server(_) => TxId::Server(ServerTxId(r)),
        }
    }

    fn timers(&self) -> &TimerSet {
        match self {
            Tx::Client(c) => &c.timers,
            Tx::Server(s) => &s.timers,
        }
    }

    fn timers_mut(&mut self) -> &mut TimerSet {
        match self {
            Tx::Client(c) => &mut c.timers,
            Tx::Server(s) => &mut s.timers,
        }
    }

    fn is_invite(&self) -> bool {
        match self {
            Tx::Client(c) => c.invite,
            Tx::Server(s) => s.invite,
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Tx::Client(c) => c.state == ClientState::Terminated,
            Tx::Server(s) => s.state == ServerState::Terminated,
        }
    }
}

#[derive(Debug)]
struct Slot<M: SipMessage> {
    generation: u32,
    /// Boxed: a transaction holds whole messages (several KiB), and the
    /// slot vector keeps its peak length for the generations; free slots
    /// must cost a few bytes, not a transaction's size.
    tx: Option<Box<Tx<M>>>,
}

/// A transaction table: one shard of the transaction layer.
///
/// Sans-IO and single-threaded: the I/O layer feeds it received messages
/// ([`handle_incoming`](Self::handle_incoming)), the transaction user's
/// requests and responses ([`send_request`](Self::send_request),
/// [`send_response`](Self::send_response)) and the time
/// ([`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout)), and drains
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event)
/// after each call. The table never reads a clock: every `now` comes from
/// the caller and must not go backwards.
///
/// For several shards, give each its index and a clone of one
/// [`ShardRouter`] ([`TransactionTable::with_shard`]) and route each received
/// message to `router.shard_of(&msg.info()?)`; or use
/// [`ShardedTable`](crate::ShardedTable), which does that for one owner.
#[derive(Debug)]
pub struct TransactionTable<M: SipMessage> {
    config: TableConfig,
    shard: u32,
    router: ShardRouter,
    slots: Vec<Slot<M>>,
    free: Vec<u32>,
    server_index: KeyIndex,
    client_index: KeyIndex,
    deadlines: DeadlineQueue,
    transmits: VecDeque<Transmit<M>>,
    events: VecDeque<TxEvent>,
    scratch: Vec<u8>,
    stats: TableStats,
    server_count: usize,
    client_count: usize,
}

impl<M: SipMessage> TransactionTable<M> {
    /// A table that is the only shard.
    #[must_use]
    pub fn new(config: TableConfig) -> Self {
        Self::with_shard(config, ShardRouter::new(1), 0)
    }

    /// Shard `index` of the shards `router` routes over.
    #[must_use]
    pub fn with_shard(config: TableConfig, router: ShardRouter, index: usize) -> Self {
        Self {
            config,
            shard: u32::try_from(index).unwrap_or(u32::MAX),
            router,
            slots: Vec::new(),
            free: Vec::new(),
            server_index: KeyIndex::new(),
            client_index: KeyIndex::new(),
            deadlines: DeadlineQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::with_capacity(256),
            stats: TableStats::default(),
            server_count: 0,
            client_count: 0,
        }
    }

    fn tx_ref(&self, slot: u32) -> TxRef {
        let generation = self.slots.get(slot as usize).map_or(0, |s| s.generation);
        TxRef {
            shard: self.shard,
            slot,
            generation,
        }
    }

    fn server(&self, r: TxRef) -> Option<&ServerTx<M>> {
        match self.live(r)? {
            Tx::Server(s) => Some(s),
            Tx::Client(_) => None,
        }
    }

    fn client(&self, r: TxRef) -> Option<&ClientTx<M>> {
        match self.live(r)? {
            Tx::Client(c) => Some(c),
            Tx::Server(_) => None,
        }
    }

    fn live(&self, r: TxRef) -> Option<&Tx<M>> {
        if r.shard != self.shard {
            return None;
        }
        let slot = self.slots.get(r.slot as usize)?;
        if slot.generation != r.generation {
            return None;
        }
        slot.tx.as_deref()
    }

    /// Starts a client transaction for `request` (any method but ACK) and
    /// sends it to `dest`; responses arrive as
    /// [`Incoming::Response`](crate::Incoming::Response).
    ///
    /// The request's top Via must carry the branch to match responses by,
    /// and with several shards that branch must route to this shard (make
    /// it with [`ShardRouter::branch`]).
    ///
    /// # Errors
    ///
    /// [`TransactionError`] if the message is not a request with a branch,
    /// is an ACK, belongs to another shard, duplicates a live client
    /// transaction, or the table is full.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: M,
        dest: Peer,
    ) -> Result<ClientTxId, TransactionError> {
        self.start_client(now, request, dest, false)
    }

    fn start_client(
        &mut self,
        now: Instant,
        msg: M,
        dest: Peer,
        bypass_limit: bool,
    ) -> Result<ClientTxId, TransactionError> {
        let info = msg.info()?;
        let StartLine::Request { method, .. } = info.start else {
            return Err(TransactionError::NotARequest);
        };
        if method == "ACK" {
            return Err(TransactionError::AckNotATransaction);
        }
        let branch = info.via.branch.ok_or(TransactionError::MissingBranch)?;
        let expected = self.router.client_shard(branch);
        if u32::try_from(expected).ok() != Some(self.shard) {
            return Err(TransactionError::WrongShard { expected });
        }
        if !bypass_limit && self.is_full() {
            return Err(TransactionError::TableFull);
        }
        key::client_key(&mut self.scratch, branch, info.cseq.method);
        if self.client_index.contains(self.scratch.as_slice()) {
            return Err(TransactionError::DuplicateTransaction);
        }
        let invite = method == "INVITE";
        let key: Arc<[u8]> = Arc::from(self.scratch.as_slice());
        let r = self.insert(now, false, |out| {
            Tx::Client(ClientTx::start(msg, invite, dest, Arc::clone(&key), out))
        });
        self.client_index.insert(key, r.slot);
        self.client_count += 1;
        self.stats.client_created += 1;
        self.settle(r);
        Ok(ClientTxId(r))
    }

    /// Sends `response` on server transaction `id`: provisional responses
    /// any number of times before the final one, one final response, and
    /// (RFC 6026) 2xx retransmissions while the INVITE transaction is
    /// Accepted.
    ///
    /// # Errors
    ///
    /// [`TransactionError::UnknownTransaction`] for a terminated
    /// transaction, [`TransactionError::InvalidState`] for a response the
    /// state does not allow, and errors for a message that is not a valid
    /// response.
    pub fn send_response(
        &mut self,
        now: Instant,
        id: ServerTxId,
        response: M,
    ) -> Result<(), TransactionError> {
        let info = response.info()?;
        let status = info.status().ok_or(TransactionError::NotAResponse)?;
        if !(100..=699).contains(&status) {
            return Err(TransactionError::InvalidStatus(status));
        }
        let tx = self
            .server(id.0)
            .ok_or(TransactionError::UnknownTransaction)?;
        let to_tag = if tx.rule == KeyRule::Rfc2543 && status >= 200 {
            info.to_tag.map(Box::<str>::from)
        } else {
            None
        };
        self.drive(now, id.0, |tx, out| match tx {
            Tx::Server(s) => {
                s.send_response(status, response, out)?;
                if status >= 200 && s.rule == KeyRule::Rfc2543 {
                    s.final_to_tag = to_tag;
                }
                Ok(())
            }
            Tx::Client(_) => Err(TransactionError::UnknownTransaction),
        })
        .unwrap_or(Err(TransactionError::UnknownTransaction))
    }

    /// Asks for a CANCEL of INVITE client transaction `id` (RFC 3261 §9.1),
    /// e.g. when a proxy's Timer C fires after a provisional response or
    /// another branch answered. The CANCEL is its own client transaction to
    /// the INVITE's destination; it is not counted against the table limit.
    ///
    /// # Errors
    ///
    /// [`TransactionError::NotCancellable`] if `id` is not an INVITE client
    /// transaction still waiting for a final response, or was already
    /// cancelled; [`TransactionError::UnknownTransaction`] if it terminated.
    pub fn cancel_client(
        &mut self,
        now: Instant,
        id: ClientTxId,
    ) -> Result<CancelOutcome, TransactionError> {
        let step = self
            .drive(now, id.0, |tx, _| match tx {
                Tx::Client(c) if c.invite && c.cancel == CancelRequest::None => match c.state {
                    ClientState::Calling => {
                        c.cancel = CancelRequest::Pending;
                        Ok(None)
                    }
                    ClientState::Proceeding => {
                        c.cancel = CancelRequest::Sent;
                        Ok(c.build_cancel())
                    }
                    _ => Err(TransactionError::NotCancellable),
                },
                Tx::Client(c) if c.invite && c.cancel == CancelRequest::Pending => Ok(None),
                _ => Err(TransactionError::NotCancellable),
            })
            .ok_or(TransactionError::UnknownTransaction)??;
        match step {
            None => Ok(CancelOutcome::Pending),
            Some((cancel, dest)) => self
                .start_client(now, cancel, dest, true)
                .map(CancelOutcome::Sent),
        }
    }

    /// The I/O layer could not send a message of transaction `id`
    /// (RFC 3261 §17.1.4, §17.2.4): reports [`TxEvent::TransportError`] and
    /// terminates the transaction (except an INVITE server transaction in
    /// the Accepted state, whose 2xx reliability is the TU's).
    ///
    /// # Errors
    ///
    /// [`TransactionError::UnknownTransaction`] if `id` is not live.
    pub fn transport_error(&mut self, now: Instant, id: TxId) -> Result<(), TransactionError> {
        self.stats.transport_errors += 1;
        self.drive(now, id.tx_ref(), |tx, out| match tx {
            Tx::Client(c) => c.on_transport_error(out),
            Tx::Server(s) => s.on_transport_error(out),
        })
        .ok_or(TransactionError::UnknownTransaction)
    }

    /// Destroys transaction `id` at once, without sending anything (e.g. a
    /// proxy abandoning an INVITE client transaction without a provisional
    /// response when its Timer C fires, RFC 3261 §16.8). Reports
    /// [`TxEvent::Terminated`].
    ///
    /// # Errors
    ///
    /// [`TransactionError::UnknownTransaction`] if `id` is not live.
    pub fn terminate(&mut self, now: Instant, id: TxId) -> Result<(), TransactionError> {
        self.drive(now, id.tx_ref(), |tx, _| match tx {
            Tx::Client(c) => c.terminate(),
            Tx::Server(s) => s.terminate(),
        })
        .ok_or(TransactionError::UnknownTransaction)
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&due) = self.deadlines.peek() {
            if due.at > now {
                break;
            }
            self.deadlines.pop();
            let r = TxRef {
                shard: self.shard,
                slot: due.slot,
                generation: due.generation,
            };
            self.drive(now, r, |tx, out| {
                if tx.timers_mut().take(due.timer, due.at) {
                    match tx {
                        Tx::Client(c) => c.on_timer(due.timer, out),
                        Tx::Server(s) => s.on_timer(due.timer, out),
                    }
                }
            });
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) must be
    /// called, or `None` when no timer runs. Amortised O(1): cancelled
    /// timers are skipped lazily.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&due) = self.deadlines.peek() {
            if armed(&self.slots, &due) {
                return Some(due.at);
            }
            self.deadlines.pop();
        }
        None
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<M>> {
        self.transmits.pop_front()
    }

    /// The next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// Number of live transactions (a metric).
    #[must_use]
    pub fn len(&self) -> usize {
        self.server_count + self.client_count
    }

    /// Whether the table holds no transaction.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of live server transactions.
    #[must_use]
    pub fn server_len(&self) -> usize {
        self.server_count
    }

    /// Number of live client transactions.
    #[must_use]
    pub fn client_len(&self) -> usize {
        self.client_count
    }

    /// The most transactions the table holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.config.max_transactions
    }

    /// This table's shard index.
    #[must_use]
    pub fn shard_index(&self) -> usize {
        self.shard as usize
    }

    /// The router this shard belongs to.
    #[must_use]
    pub fn router(&self) -> &ShardRouter {
        &self.router
    }

    /// Counters since creation.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// The state of server transaction `id`, or `None` once terminated.
    #[must_use]
    pub fn server_state(&self, id: ServerTxId) -> Option<ServerState> {
        self.server(id.0).map(|s| s.state)
    }

    /// The state of client transaction `id`, or `None` once terminated.
    #[must_use]
    pub fn client_state(&self, id: ClientTxId) -> Option<ClientState> {
        self.client(id.0).map(|c| c.state)
    }

    /// The request that created transaction `id`, while the transaction
    /// holds it: until its final response.
    #[must_use]
    pub fn request(&self, id: TxId) -> Option<&M> {
        match self.live(id.tx_ref())? {
            Tx::Client(c) => c.request.as_deref(),
            Tx::Server(s) => s.request.as_deref(),
        }
    }

    /// When `timer` of transaction `id` fires, if it is running.
    #[must_use]
    pub fn deadline(&self, id: TxId, timer: Timer) -> Option<Instant> {
        self.live(id.tx_ref())?.timers().deadline(timer)
    }

    fn is_full(&self) -> bool {
        self.len() >= self.config.max_transactions
    }

    /// Allocates a slot and builds the transaction in it. The caller
    /// indexes the key and calls [`settle`](Self::settle).
    fn insert(
        &mut self,
        now: Instant,
        server: bool,
        make: impl FnOnce(&mut Output<'_, M>) -> Tx<M>,
    ) -> TxRef {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    tx: None,
                });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let r = self.tx_ref(slot);
        let id = if server {
            TxId::Server(ServerTxId(r))
        } else {
            TxId::Client(ClientTxId(r))
        };
        let mut out = Output {
            now,
            config: &self.config.timers,
            id,
            transmits: &mut self.transmits,
            events: &mut self.events,
            timeouts: &mut self.stats.timeouts,
        };
        let tx = make(&mut out);
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.tx = Some(Box::new(tx));
        }
        r
    }

    /// Runs `f` on live transaction `r`, then queues its new timers and
    /// destroys it if it terminated. `None` if `r` is not live.
    fn drive<R>(
        &mut self,
        now: Instant,
        r: TxRef,
        f: impl FnOnce(&mut Tx<M>, &mut Output<'_, M>) -> R,
    ) -> Option<R> {
        if r.shard != self.shard {
            return None;
        }
        let slot = self.slots.get_mut(r.slot as usize)?;
        if slot.generation != r.generation {
            return None;
        }
        let tx = slot.tx.as_deref_mut()?;
        let mut out = Output {
            now,
            config: &self.config.timers,
            id: tx.id(r),
            transmits: &mut self.transmits,
            events: &mut self.events,
            timeouts: &mut self.stats.timeouts,
        };
        let result = f(tx, &mut out);
        self.settle(r);
        Some(result)
    }

    /// Queues transaction `r`'s newly started timers, or destroys it if it
    /// terminated.
    fn settle(&mut self, r: TxRef) {
        let Some(slot) = self.slots.get_mut(r.slot as usize) else {
            return;
        };
        let Some(tx) = slot.tx.as_deref_mut() else {
            return;
        };
        if !tx.is_terminated() {
            let invite = tx.is_invite();
            let mut lanes = [None; SLOTS];
            for ((timer, at), lane) in tx.timers_mut().drain_started().zip(&mut lanes) {
                *lane = self.deadlines.push(at, r.slot, r.generation, timer, invite);
            }
            // One push, one trim: stopped timers leave their lanes as fast
            // as new ones arrive.
            let slots = &self.slots;
            for lane in lanes.into_iter().flatten() {
                self.deadlines.trim(lane, |d| !armed(slots, d));
            }
            return;
        }
        let id = tx.id(r);
        if let Some(tx) = slot.tx.take() {
            match *tx {
                Tx::Client(c) => {
                    self.client_index.remove(&c.key);
                    self.client_count -= 1;
                }
                Tx::Server(s) => {
                    self.server_index.remove(&s.key);
                    self.server_count -= 1;
                }
            }
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(r.slot);
        self.events.push_back(TxEvent::Terminated { id });
        self.compact_deadlines();
        self.shrink_sparse_indexes();
    }

    /// Gives back the key indexes' memory after a peak: once a map is at
    /// most a quarter full it shrinks to twice its length (amortised: a
    /// map is rebuilt only after its length fell by half or more).
    fn shrink_sparse_indexes(&mut self) {
        self.server_index.shrink_sparse(MIN_SHRINK_CAPACITY);
        self.client_index.shrink_sparse(MIN_SHRINK_CAPACITY);
    }

    /// Drops cancelled deadlines once the queue holds more than two per
    /// live transaction, so lazy deletion cannot grow it without bound.
    /// Trimming at each push keeps lanes short in the usual case; this is
    /// for the rest (a stopped timer queued behind a running one).
    /// Amortised: after a compaction the queue must grow by the live count
    /// again before the next one.
    fn compact_deadlines(&mut self) {
        let live = self.len();
        if self.deadlines.len() <= 1024 + 2 * live {
            return;
        }
        let slots = &self.slots;
        self.deadlines.retain(|d| armed(slots, d));
    }
}

/// Whether deadline `d` is still that of a running timer.
fn armed<M: SipMessage>(slots: &[Slot<M>], d: &crate::deadlines::Deadline) -> bool {
    slots
        .get(d.slot as usize)
        .filter(|s| s.generation == d.generation)
        .and_then(|s| s.tx.as_deref())
        .is_some_and(|tx| tx.timers().is_armed(d.timer, d.at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::TestMessage;

    #[test]
    fn cancelled_deadlines_are_compacted() {
        let mut table = TransactionTable::new(TableConfig::default());
        let t0 = Instant::now();
        let peer = Peer::udp("127.0.0.1:5060".parse().unwrap());
        let ids: Vec<_> = (0..5000)
            .map(|i| {
                let request = TestMessage::request("INVITE", &format!("z9hG4bK{i}"));
                let id = table.send_request(t0, request.clone(), peer).unwrap();
                table.handle_incoming(t0, request.build_response(200), peer);
                id
            })
            .collect();
        // M running; A, B and the lifetime bound stopped, and trimmed from
        // their lanes as new ones came (untrimmed: 20,000 entries).
        assert!(table.deadlines.len() < 6_000, "{}", table.deadlines.len());
        for id in ids {
            table.terminate(t0, id.into()).unwrap();
        }
        assert!(table.is_empty());
        assert!(table.deadlines.len() <= 1024, "{}", table.deadlines.len());
        assert_eq!(table.poll_timeout(), None);
        assert_eq!(table.deadlines.len(), 0);
    }

    #[test]
    fn lingering_transactions_hold_no_request() {
        let mut table = TransactionTable::new(TableConfig::default());
        let t0 = Instant::now();
        let peer = Peer::udp("127.0.0.1:5060".parse().unwrap());
        for (method, status) in [("INVITE", 200), ("INVITE", 486), ("BYE", 200)] {
            // Client side: held while waiting, gone with the final response.
            let request = TestMessage::request(method, &format!("z9hG4bKc{method}{status}"));
            let id = table.send_request(t0, request.clone(), peer).unwrap();
            assert!(table.request(id.into()).is_some());
            table.handle_incoming(t0, request.build_response(180), peer);
            assert!(table.request(id.into()).is_some(), "{method} {status}");
            table.handle_incoming(t0, request.build_response(status), peer);
            assert!(table.client_state(id).is_some(), "still lingering");
            assert!(table.request(id.into()).is_none(), "{method} {status}");

            // Server side: held until the final response.
            let request = TestMessage::request(method, &format!("z9hG4bKs{method}{status}"));
            let crate::Incoming::Request { id, .. } =
                table.handle_incoming(t0, request.clone(), peer)
            else {
                panic!("not a new request");
            };
            table
                .send_response(t0, id, request.build_response(180))
                .unwrap();
            assert!(table.request(id.into()).is_some(), "{method} {status}");
            table
                .send_response(t0, id, request.build_response(status))
                .unwrap();
            assert!(table.server_state(id).is_some(), "still lingering");
            assert!(table.request(id.into()).is_none(), "{method} {status}");
        }
    }
}

#[cfg(test)]
mod layout {
    /// A lingering transaction must stay in the allocator's 256-byte class
    /// (see `timer::Tick`).
    #[test]
    fn a_transaction_fits_in_256_bytes() {
        let size = std::mem::size_of::<super::Tx<voxline_sip::Message>>();
        assert!(size <= 256, "{size}");
    }
}
