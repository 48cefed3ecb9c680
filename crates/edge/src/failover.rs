//! Serial forking at the edge: what to do with each event of the attempt
//! in progress, without I/O.
//!
//! A request goes to one destination at a time. Before the destination
//! has sent a provisional response, a timeout, a transport error ("no
//! route"), silence beyond the failover timeout, or a 503 moves the request
//! to the next destination; afterwards the destination's answer stands.

/// What happened to the attempt in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A response with this status.
    Response(u16),
    /// The client transaction timed out (Timer B/F).
    Timeout,
    /// The request could not be sent (no route, connection refused).
    TransportError,
    /// No response at all within the failover timeout.
    Silence,
    /// The caller cancelled (INVITE).
    Cancelled,
}

/// What the session does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (100 Trying; a CANCEL is handled by the session).
    Absorb,
    /// Send this provisional response upstream.
    ForwardProvisional,
    /// Send this final response upstream; the request is done.
    ForwardFinal,
    /// Give up on this destination and try the next one; `unhealthy`: count
    /// it as a failure of the destination.
    TryNext {
        /// The destination did not answer.
        unhealthy: bool,
    },
    /// Answer upstream with this status ourselves; the request is done.
    Answer(u16),
}

/// The state of one forwarded request.
#[derive(Debug, Clone, Default)]
pub struct Failover {
    responded: bool,
    proceeding: bool,
    cancelled: bool,
    /// Destinations left after the current one.
    remaining: usize,
}

impl Failover {
    /// A request with `destinations` to try in all.
    pub fn new(destinations: usize) -> Self {
        Failover {
            remaining: destinations.saturating_sub(1),
            ..Failover::default()
        }
    }

    /// Whether the current destination has sent any response (the
    /// failover timer stops then).
    pub fn responded(&self) -> bool {
        self.responded
    }

    /// The next destination starts.
    pub fn next_attempt(&mut self) {
        self.responded = false;
        self.proceeding = false;
        self.remaining = self.remaining.saturating_sub(1);
    }

    fn can_fail_over(&self) -> bool {
        !self.proceeding && !self.cancelled && self.remaining > 0
    }

    /// Decides what `event` means.
    pub fn on(&mut self, event: Event) -> Action {
        match event {
            Event::Response(100) => {
                self.responded = true;
                Action::Absorb
            }
            Event::Response(s) if s < 200 => {
                self.responded = true;
                self.proceeding = true;
                Action::ForwardProvisional
            }
            Event::Response(503) => {
                self.responded = true;
                if self.can_fail_over() {
                    Action::TryNext { unhealthy: false }
                } else {
                    Action::ForwardFinal
                }
            }
            Event::Response(_) => {
                self.responded = true;
                Action::ForwardFinal
            }
            Event::Timeout | Event::TransportError | Event::Silence => {
                if self.can_fail_over() {
                    Action::TryNext { unhealthy: true }
                } else if self.proceeding {
                    Action::Answer(408)
                } else if self.cancelled {
                    Action::Answer(487)
                } else {
                    // Every destination is silent: the service is.
                    Action::Answer(503)
                }
            }
            Event::Cancelled => {
                self.cancelled = true;
                Action::Absorb
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_503_fail_over_until_the_last_destination() {
        let mut f = Failover::new(3);
        assert_eq!(f.on(Event::Silence), Action::TryNext { unhealthy: true });
        f.next_attempt();
        assert_eq!(
            f.on(Event::Response(503)),
            Action::TryNext { unhealthy: false }
        );
        f.next_attempt();
        // The last destination's 503 goes upstream (with its Retry-After).
        assert_eq!(f.on(Event::Response(503)), Action::ForwardFinal);
    }

    #[test]
    fn transport_error_is_no_route() {
        let mut f = Failover::new(2);
        assert_eq!(
            f.on(Event::TransportError),
            Action::TryNext { unhealthy: true }
        );
        f.next_attempt();
        assert_eq!(f.on(Event::TransportError), Action::Answer(503));
    }

    #[test]
    fn a_provisional_commits_to_the_destination() {
        let mut f = Failover::new(3);
        assert_eq!(f.on(Event::Response(100)), Action::Absorb);
        assert!(f.responded());
        assert_eq!(f.on(Event::Response(180)), Action::ForwardProvisional);
        assert_eq!(f.on(Event::Response(503)), Action::ForwardFinal);
        let mut f = Failover::new(3);
        f.on(Event::Response(183));
        assert_eq!(f.on(Event::Timeout), Action::Answer(408));
    }

    #[test]
    fn other_finals_are_final_and_cancel_stops_failover() {
        let mut f = Failover::new(3);
        assert_eq!(f.on(Event::Response(401)), Action::ForwardFinal);
        let mut f = Failover::new(3);
        assert_eq!(f.on(Event::Cancelled), Action::Absorb);
        assert_eq!(f.on(Event::Timeout), Action::Answer(487));
        let mut f = Failover::new(1);
        assert_eq!(f.on(Event::Response(200)), Action::ForwardFinal);
    }
}
