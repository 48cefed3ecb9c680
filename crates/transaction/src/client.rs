//! Client transactions: the INVITE machine (RFC 3261 §17.1.1 with RFC 6026's
//! Accepted state) and the non-INVITE machine (§17.1.2).

use std::sync::Arc;
use std::time::Duration;

use crate::event::{Absorbed, ClientState, TxEvent};
use crate::message::{Peer, SipMessage};
use crate::output::Output;
use crate::timer::{Interval, Timer, TimerSet};

/// Whether a response goes up to the transaction user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    ToTu,
    Absorbed(Absorbed),
}

/// A CANCEL the transaction user asked for (RFC 3261 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelRequest {
    None,
    /// Asked for before any provisional response: send on the first one.
    Pending,
    Sent,
}

/// One client transaction.
#[derive(Debug)]
pub(crate) struct ClientTx<M: SipMessage> {
    pub(crate) invite: bool,
    pub(crate) state: ClientState,
    /// The request, until the final response: retransmitted, and the
    /// source of the ACK for a non-2xx and of a CANCEL. Boxed and dropped
    /// then, because the transaction lingers (Timers D, K, M) without
    /// needing it.
    pub(crate) request: Option<Box<M>>,
    pub(crate) dest: Peer,
    pub(crate) timers: TimerSet,
    pub(crate) cancel: CancelRequest,
    pub(crate) key: Arc<[u8]>,
    /// The current Timer A/E interval.
    interval: Interval,
    /// The ACK for the non-2xx final response, resent on retransmissions,
    /// in its wire form.
    ack: Option<M::Wire>,
}

impl<M: SipMessage> ClientTx<M> {
    /// Creates the transaction, sends the request and starts its timers
    /// (Calling for INVITE: A, B; Trying for non-INVITE: E, F).
    pub(crate) fn start(
        request: M,
        invite: bool,
        dest: Peer,
        key: Arc<[u8]>,
        out: &mut Output<'_, M>,
    ) -> Self {
        let mut tx = Self {
            invite,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            request: None,
            dest,
            timers: TimerSet::default(),
            cancel: CancelRequest::None,
            key,
            interval: Interval::of(out.config.first_interval()),
            ack: None,
        };
        out.send(dest, request.clone());
        tx.request = Some(Box::new(request));
        let now = out.now;
        let retransmit = if invite { Timer::A } else { Timer::E };
        if !dest.is_reliable() {
            tx.timers.start(retransmit, now + tx.interval.get());
        }
        if invite {
            tx.timers.start(Timer::B, now + out.config.timer_b);
            tx.timers
                .start(Timer::Lifetime, now + out.config.max_invite_lifetime);
        } else {
            tx.timers.start(Timer::F, now + out.config.timer_f);
        }
        tx
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(
        &mut self,
        status: u16,
        response: &M,
        out: &mut Output<'_, M>,
    ) -> Delivery {
        if self.invite {
            self.invite_response(status, response, out)
        } else {
            self.non_invite_response(status, out)
        }
    }

    fn invite_response(&mut self, status: u16, response: &M, out: &mut Output<'_, M>) -> Delivery {
        match (self.state, status) {
            (ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                self.timers.stop(Timer::A);
                // Timer B only bounds the Calling state.
                self.timers.stop(Timer::B);
                Delivery::ToTu
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                self.state = ClientState::Accepted;
                self.stop_waiting();
                self.request = None;
                self.timers.start(Timer::M, out.now + out.config.timer_m);
                Delivery::ToTu
            }
            (ClientState::Calling | ClientState::Proceeding, _) => {
                self.state = ClientState::Completed;
                self.stop_waiting();
                if let Some(request) = self.request.take() {
                    let ack = request.build_ack_for(response);
                    out.send(self.dest, ack.clone());
                    self.ack = Some(ack.to_wire());
                }
                self.linger(Timer::D, out.config.timer_d, out);
                Delivery::ToTu
            }
            (ClientState::Completed, 300..) => {
                if let Some(ack) = self.ack.as_ref().and_then(M::from_wire) {
                    out.send(self.dest, ack);
                }
                Delivery::Absorbed(Absorbed::ResponseRetransmission)
            }
            // RFC 6026 §8.4: every 2xx in Accepted goes up (retransmissions
            // and other forks' answers alike); the TU acknowledges them.
            (ClientState::Accepted, 200..=299) => Delivery::ToTu,
            _ => Delivery::Absorbed(Absorbed::LateResponse),
        }
    }

    fn non_invite_response(&mut self, status: u16, out: &mut Output<'_, M>) -> Delivery {
        match (self.state, status) {
            (ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                // Timer E keeps running; on its next firing the interval
                // becomes T2 (§17.1.2.2).
                self.state = ClientState::Proceeding;
                Delivery::ToTu
            }
            (ClientState::Trying | ClientState::Proceeding, _) => {
                self.state = ClientState::Completed;
                self.stop_waiting();
                self.request = None;
                self.linger(Timer::K, out.config.timer_k, out);
                Delivery::ToTu
            }
            _ => Delivery::Absorbed(Absorbed::LateResponse),
        }
    }

    /// A timer of this transaction fired.
    pub(crate) fn on_timer(&mut self, timer: Timer, out: &mut Output<'_, M>) {
        match (timer, self.state) {
            (Timer::A, ClientState::Calling) => {
                self.resend(out);
                self.interval = self.interval.doubled();
                self.timers.start(Timer::A, out.now + self.interval.get());
            }
            (Timer::E, ClientState::Trying) => {
                self.resend(out);
                self.interval = self
                    .interval
                    .doubled()
                    .min(Interval::of(out.config.cap_interval()));
                self.timers.start(Timer::E, out.now + self.interval.get());
            }
            (Timer::E, ClientState::Proceeding) => {
                self.resend(out);
                self.interval = Interval::of(out.config.cap_interval());
                self.timers.start(Timer::E, out.now + self.interval.get());
            }
            (Timer::B, ClientState::Calling)
            | (Timer::F, ClientState::Trying | ClientState::Proceeding)
            | (Timer::Lifetime, ClientState::Calling | ClientState::Proceeding) => {
                out.event(TxEvent::Timeout { id: out.id, timer });
                self.terminate();
            }
            (Timer::D, ClientState::Completed)
            | (Timer::K, ClientState::Completed)
            | (Timer::M, ClientState::Accepted) => self.terminate(),
            // A timer of a state already left: nothing to do.
            _ => {}
        }
    }

    /// The I/O layer failed to send for this transaction.
    pub(crate) fn on_transport_error(&mut self, out: &mut Output<'_, M>) {
        out.event(TxEvent::TransportError { id: out.id });
        self.terminate();
    }

    /// Whether a CANCEL may be sent now (§9.1: only after a provisional
    /// response, and only while no final response has arrived).
    pub(crate) fn cancellable_now(&self) -> bool {
        self.invite && self.state == ClientState::Proceeding
    }

    /// A CANCEL for the request, while it is held.
    pub(crate) fn build_cancel(&self) -> Option<(M, Peer)> {
        Some((self.request.as_deref()?.build_cancel(), self.dest))
    }

    fn resend(&self, out: &mut Output<'_, M>) {
        if let Some(request) = &self.request {
            out.send(self.dest, M::clone(request));
        }
    }

    pub(crate) fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.timers.stop_all();
    }

    fn stop_waiting(&mut self) {
        for timer in [Timer::A, Timer::B, Timer::E, Timer::F, Timer::Lifetime] {
            self.timers.stop(timer);
        }
    }

    /// Enters a wait of `duration` on unreliable transports, or terminates
    /// at once on reliable ones (Timers D and K are zero there).
    fn linger(&mut self, timer: Timer, duration: Duration, out: &Output<'_, M>) {
        if self.dest.is_reliable() || duration.is_zero() {
            self.terminate();
        } else {
            self.timers.start(timer, out.now + duration);
        }
    }
}
