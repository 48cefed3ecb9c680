//! Server transactions: the INVITE machine (RFC 3261 §17.2.1 with RFC 6026's
//! Accepted state) and the non-INVITE machine (§17.2.2).

use std::sync::Arc;
use std::time::Duration;

use crate::config::TryingPolicy;
use crate::event::{Absorbed, ServerState, TransactionError, TxEvent};
use crate::key::KeyRule;
use crate::message::{Peer, SipMessage};
use crate::output::Output;
use crate::timer::{Interval, Timer, TimerSet};

/// What happens to an ACK that matched an INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckDelivery {
    /// The ACK for a 2xx in the Accepted state: up to the TU.
    ToTu,
    Absorbed(Absorbed),
}

/// One server transaction.
#[derive(Debug)]
pub(crate) struct ServerTx<M: SipMessage> {
    pub(crate) invite: bool,
    pub(crate) state: ServerState,
    /// The request, until the final response: the TU builds its
    /// responses (and the core a 487 after a CANCEL) from it. Boxed and
    /// dropped then, because a transaction lingers 32 s after its final
    /// response (Timers J and L) and never needs the request again.
    pub(crate) request: Option<Box<M>>,
    pub(crate) peer: Peer,
    pub(crate) timers: TimerSet,
    pub(crate) key: Arc<[u8]>,
    pub(crate) rule: KeyRule,
    /// RFC 2543 matching only: the To tag of the final response, which an
    /// ACK must carry to match (§17.2.3).
    pub(crate) final_to_tag: Option<Box<str>>,
    /// The current Timer G interval.
    interval: Interval,
    /// The most recent response, resent on request retransmissions, in
    /// its wire form. Dropped once a 2xx moves the transaction to Accepted
    /// (where retransmissions are absorbed): an accepted INVITE lingers 32 s
    /// per call and should not hold a response it never resends.
    last_response: Option<M::Wire>,
}

impl<M: SipMessage> ServerTx<M> {
    /// Creates the transaction for a received request: Proceeding (INVITE,
    /// with 100 Trying per the policy) or Trying (non-INVITE).
    pub(crate) fn start(
        request: M,
        invite: bool,
        peer: Peer,
        key: Arc<[u8]>,
        rule: KeyRule,
        out: &mut Output<'_, M>,
    ) -> Self {
        let mut tx = Self {
            invite,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            request: Some(Box::new(request)),
            peer,
            timers: TimerSet::default(),
            key,
            rule,
            final_to_tag: None,
            interval: Interval::of(out.config.first_interval()),
            last_response: None,
        };
        let now = out.now;
        if invite {
            match out.config.trying {
                TryingPolicy::Immediate => tx.send_trying(out),
                TryingPolicy::After(delay) => tx.timers.start(Timer::Trying, now + delay),
                TryingPolicy::Never => {}
            }
            tx.timers
                .start(Timer::Lifetime, now + out.config.max_invite_lifetime);
        } else {
            tx.timers
                .start(Timer::Lifetime, now + out.config.max_non_invite_lifetime);
        }
        tx
    }

    /// A retransmission of the request arrived.
    pub(crate) fn on_retransmission(&mut self, out: &mut Output<'_, M>) -> Absorbed {
        match self.state {
            // §17.2.1/§17.2.2: resend the most recent response, if any.
            ServerState::Proceeding | ServerState::Completed => {
                self.resend(out);
            }
            // Trying: no response yet. Confirmed: absorbed silently.
            // Accepted (RFC 6026): absorbed; the TU retransmits its 2xx.
            ServerState::Trying
            | ServerState::Confirmed
            | ServerState::Accepted
            | ServerState::Terminated => {}
        }
        Absorbed::RequestRetransmission
    }

    /// An ACK matched this INVITE transaction.
    pub(crate) fn on_ack(&mut self, out: &mut Output<'_, M>) -> AckDelivery {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                self.linger(Timer::I, out.config.timer_i, out);
                AckDelivery::Absorbed(Absorbed::AckForNonSuccess)
            }
            ServerState::Confirmed => AckDelivery::Absorbed(Absorbed::AckForNonSuccess),
            ServerState::Accepted => AckDelivery::ToTu,
            ServerState::Trying | ServerState::Proceeding | ServerState::Terminated => {
                AckDelivery::Absorbed(Absorbed::EarlyAck)
            }
        }
    }

    /// The TU sends `response` (status `status`, already checked to be
    /// 100..=699) on this transaction.
    pub(crate) fn send_response(
        &mut self,
        status: u16,
        response: M,
        out: &mut Output<'_, M>,
    ) -> Result<(), TransactionError> {
        let invalid = TransactionError::InvalidState {
            state: self.state,
            status,
        };
        let now = out.now;
        match (self.invite, self.state, status) {
            (true, ServerState::Proceeding, 100..=199)
            | (false, ServerState::Trying | ServerState::Proceeding, 100..=199) => {
                self.state = ServerState::Proceeding;
                self.timers.stop(Timer::Trying);
                out.send(self.peer, response.clone());
                self.last_response = Some(response.to_wire());
            }
            (true, ServerState::Proceeding, 200..=299) => {
                self.state = ServerState::Accepted;
                self.stop_waiting();
                out.send(self.peer, response);
                self.last_response = None;
                self.request = None;
                self.timers.start(Timer::L, now + out.config.timer_l);
            }
            // RFC 6026 §8.7: the TU's 2xx retransmissions pass through.
            (true, ServerState::Accepted, 200..=299) => out.send(self.peer, response),
            (true, ServerState::Proceeding, _) => {
                self.state = ServerState::Completed;
                self.stop_waiting();
                out.send(self.peer, response.clone());
                self.last_response = Some(response.to_wire());
                self.request = None;
                if !self.peer.is_reliable() {
                    self.interval = Interval::of(out.config.first_interval());
                    self.timers.start(Timer::G, now + self.interval.get());
                }
                self.timers.start(Timer::H, now + out.config.timer_h);
            }
            (false, ServerState::Trying | ServerState::Proceeding, _) => {
                self.state = ServerState::Completed;
                self.stop_waiting();
                out.send(self.peer, response.clone());
                self.last_response = Some(response.to_wire());
                self.request = None;
                self.linger(Timer::J, out.config.timer_j, out);
            }
            _ => return Err(invalid),
        }
        Ok(())
    }

    /// A timer of this transaction fired.
    pub(crate) fn on_timer(&mut self, timer: Timer, out: &mut Output<'_, M>) {
        match (timer, self.state) {
            (Timer::Trying, ServerState::Proceeding) if self.last_response.is_none() => {
                self.send_trying(out)
            }
            (Timer::G, ServerState::Completed) => {
                self.resend(out);
                self.interval = self
                    .interval
                    .doubled()
                    .min(Interval::of(out.config.cap_interval()));
                self.timers.start(Timer::G, out.now + self.interval.get());
            }
            (Timer::H, ServerState::Completed)
            | (Timer::Lifetime, ServerState::Trying | ServerState::Proceeding) => {
                out.event(TxEvent::Timeout { id: out.id, timer });
                self.terminate();
            }
            (Timer::I, ServerState::Confirmed)
            | (Timer::J, ServerState::Completed)
            | (Timer::L, ServerState::Accepted) => {
                self.terminate();
            }
            _ => {}
        }
    }

    /// The I/O layer failed to send for this transaction. In the Accepted
    /// state the TU owns 2xx reliability, so the transaction stays (RFC 6026
    /// Figure 4); otherwise it terminates.
    pub(crate) fn on_transport_error(&mut self, out: &mut Output<'_, M>) {
        out.event(TxEvent::TransportError { id: out.id });
        if self.state != ServerState::Accepted {
            self.terminate();
        }
    }

    pub(crate) fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.timers.stop_all();
    }

    fn send_trying(&mut self, out: &mut Output<'_, M>) {
        let Some(request) = &self.request else {
            return;
        };
        let trying = request.build_response(100);
        out.send(self.peer, trying.clone());
        self.last_response = Some(trying.to_wire());
    }

    fn resend(&self, out: &mut Output<'_, M>) {
        if let Some(response) = self.last_response.as_ref().and_then(M::from_wire) {
            out.send(self.peer, response);
        }
    }

    fn stop_waiting(&mut self) {
        self.timers.stop(Timer::Trying);
        self.timers.stop(Timer::Lifetime);
    }

    /// Waits `duration` on unreliable transports, or terminates at once on
    /// reliable ones (Timers I and J are zero there).
    fn linger(&mut self, timer: Timer, duration: Duration, out: &Output<'_, M>) {
        if self.peer.is_reliable() || duration.is_zero() {
            self.terminate();
        } else {
            self.timers.start(timer, out.now + duration);
        }
    }
}
