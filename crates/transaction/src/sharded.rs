//! A set of shards driven by one owner.

use std::time::Instant;

use crate::config::TableConfig;
use crate::event::{
    CancelOutcome, ClientTxId, Incoming, ServerTxId, TransactionError, Transmit, TxEvent, TxId,
};
use crate::message::{Peer, SipMessage};
use crate::shard::ShardRouter;
use crate::table::{TableStats, TransactionTable};

/// Several [`TransactionTable`] shards behind the single-table API, for an
/// I/O layer that drives them from one task (or for tests). An I/O layer
/// with one worker per shard uses the shards directly instead: each worker
/// owns `TransactionTable::with_shard(config, router.clone(), i)` and
/// messages are handed to worker `router.shard_of(&info)`.
#[derive(Debug)]
pub struct ShardedTable<M: SipMessage> {
    router: ShardRouter,
    shards: Vec<TransactionTable<M>>,
}

impl<M: SipMessage> ShardedTable<M> {
    /// `count` shards (at least one) sharing `config`;
    /// `config.max_transactions` is the total, split evenly over the shards.
    #[must_use]
    pub fn new(config: TableConfig, count: usize) -> Self {
        let router = ShardRouter::new(count);
        let n = router.shard_count();
        let per_shard = TableConfig {
            max_transactions: config.max_transactions.div_ceil(n),
            ..config
        };
        let shards = (0..n)
            .map(|i| TransactionTable::with_shard(per_shard, router.clone(), i))
            .collect();
        Self { router, shards }
    }

    /// The router that places messages on shards.
    #[must_use]
    pub fn router(&self) -> &ShardRouter {
        &self.router
    }

    /// Shard `index`.
    #[must_use]
    pub fn shard(&self, index: usize) -> Option<&TransactionTable<M>> {
        self.shards.get(index)
    }

    /// See [`TransactionTable::handle_incoming`]. Routes by
    /// [`ShardRouter::shard_of`]; a message without matchable fields goes
    /// to shard 0, which reports it as malformed.
    pub fn handle_incoming(&mut self, now: Instant, msg: M, from: Peer) -> Incoming<M> {
        let index = msg.info().map_or(0, |info| self.router.shard_of(&info));
        match self.shards.get_mut(index) {
            Some(shard) => shard.handle_incoming(now, msg, from),
            None => Incoming::Stray(msg),
        }
    }

    /// See [`TransactionTable::send_request`]: placed on the shard its branch
    /// routes to, so any branch works.
    ///
    /// # Errors
    ///
    /// As [`TransactionTable::send_request`].
    pub fn send_request(
        &mut self,
        now: Instant,
        request: M,
        dest: Peer,
    ) -> Result<ClientTxId, TransactionError> {
        let info = request.info()?;
        let branch = info.via.branch.ok_or(TransactionError::MissingBranch)?;
        let index = self.router.client_shard(branch);
        self.shard_mut(index)?.send_request(now, request, dest)
    }

    /// See [`TransactionTable::send_response`].
    ///
    /// # Errors
    ///
    /// As [`TransactionTable::send_response`].
    pub fn send_response(
        &mut self,
        now: Instant,
        id: ServerTxId,
        response: M,
    ) -> Result<(), TransactionError> {
        self.shard_mut(id.shard())?.send_response(now, id, response)
    }

    /// See [`TransactionTable::cancel_client`].
    ///
    /// # Errors
    ///
    /// As [`TransactionTable::cancel_client`].
    pub fn cancel_client(
        &mut self,
        now: Instant,
        id: ClientTxId,
    ) -> Result<CancelOutcome, TransactionError> {
        self.shard_mut(id.shard())?.cancel_client(now, id)
    }

    /// See [`TransactionTable::transport_error`].
    ///
    /// # Errors
    ///
    /// As [`TransactionTable::transport_error`].
    pub fn transport_error(&mut self, now: Instant, id: TxId) -> Result<(), TransactionError> {
        self.shard_mut(id.shard())?.transport_error(now, id)
    }

    /// See [`TransactionTable::terminate`].
    ///
    /// # Errors
    ///
    /// As [`TransactionTable::terminate`].
    pub fn terminate(&mut self, now: Instant, id: TxId) -> Result<(), TransactionError> {
        self.shard_mut(id.shard())?.terminate(now, id)
    }

    /// Fires due timers on every shard.
    pub fn handle_timeout(&mut self, now: Instant) {
        for shard in &mut self.shards {
            shard.handle_timeout(now);
        }
    }

    /// The earliest deadline over all shards.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.shards
            .iter_mut()
            .filter_map(TransactionTable::poll_timeout)
            .min()
    }

    /// The next message to send, from any shard.
    pub fn poll_transmit(&mut self) -> Option<Transmit<M>> {
        self.shards
            .iter_mut()
            .find_map(TransactionTable::poll_transmit)
    }

    /// The next event, from any shard.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.shards
            .iter_mut()
            .find_map(TransactionTable::poll_event)
    }

    /// Live transactions over all shards.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(TransactionTable::len).sum()
    }

    /// Whether no shard holds a transaction.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(TransactionTable::is_empty)
    }

    /// Counters summed over all shards.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        self.shards
            .iter()
            .fold(TableStats::default(), |mut sum, shard| {
                let s = shard.stats();
                sum.server_created += s.server_created;
                sum.client_created += s.client_created;
                sum.absorbed += s.absorbed;
                sum.stray_responses += s.stray_responses;
                sum.refused += s.refused;
                sum.malformed += s.malformed;
                sum.timeouts += s.timeouts;
                sum.transport_errors += s.transport_errors;
                sum
            })
    }

    fn shard_mut(&mut self, index: usize) -> Result<&mut TransactionTable<M>, TransactionError> {
        self.shards
            .get_mut(index)
            .ok_or(TransactionError::UnknownTransaction)
    }
}
