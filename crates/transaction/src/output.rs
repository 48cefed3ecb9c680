//! The sink a state machine writes its transmits and events into.

use std::collections::VecDeque;
use std::time::Instant;

use crate::config::TimerConfig;
use crate::event::{Transmit, TxEvent, TxId};
use crate::message::Peer;

/// Everything a transaction needs from its table while handling one input.
pub(crate) struct Output<'a, M> {
    /// The time of the input.
    pub(crate) now: Instant,
    /// Timer values.
    pub(crate) config: &'a TimerConfig,
    /// The id of the transaction being driven.
    pub(crate) id: TxId,
    pub(crate) transmits: &'a mut VecDeque<Transmit<M>>,
    pub(crate) events: &'a mut VecDeque<TxEvent>,
    /// The table's timeout counter.
    pub(crate) timeouts: &'a mut u64,
}

impl<M> Output<'_, M> {
    /// Queues `msg` for transmission to `dest`.
    pub(crate) fn send(&mut self, dest: Peer, msg: M) {
        self.transmits.push_back(Transmit {
            dest,
            msg,
            tx: self.id,
        });
    }

    /// Queues an event for the transaction user.
    pub(crate) fn event(&mut self, event: TxEvent) {
        if matches!(event, TxEvent::Timeout { .. }) {
            *self.timeouts += 1;
        }
        self.events.push_back(event);
    }
}
