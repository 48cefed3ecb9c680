//! Destination health: the active / probing / inactive state machine fed
//! by probe results and request outcomes, without I/O.
//!
//! * `active`: healthy, receives traffic.
//! * `probing`: a probe or a request failed (or the destination is coming
//!   back): it receives traffic only when no active destination can take
//!   the request, and is probed; `up_threshold` consecutive successes make
//!   it active, `down_threshold` consecutive failures inactive.
//! * `inactive`: down, receives no traffic; still probed, and the first
//!   success makes it probing (or active when `up_threshold` is 1).
//!
//! Destinations start active, so an edge serves from its first second;
//! the first probe goes out at once.

use serde::Serialize;

/// The state of one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Up.
    Active,
    /// Suspect or recovering: used only when no active destination is left.
    Probing,
    /// Down: not used.
    Inactive,
}

impl State {
    /// `active`, `probing` or `inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Probing => "probing",
            State::Inactive => "inactive",
        }
    }

    /// All states, for metrics.
    pub const ALL: [State; 3] = [State::Active, State::Probing, State::Inactive];
}

/// Thresholds of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failures that make a destination inactive.
    pub down: u32,
    /// Consecutive successes that make a probing destination active.
    pub up: u32,
}

/// The health of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    state: State,
    failures: u32,
    successes: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Active,
            failures: 0,
            successes: 0,
        }
    }
}

impl Health {
    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A probe was answered, or a request got a response other than 503.
    /// Returns the new state when it changed.
    pub fn on_success(&mut self, t: Thresholds) -> Option<State> {
        self.failures = 0;
        self.successes = self.successes.saturating_add(1);
        let next = match self.state {
            State::Active => State::Active,
            State::Probing | State::Inactive if self.successes >= t.up.max(1) => State::Active,
            State::Probing | State::Inactive => State::Probing,
        };
        self.set(next)
    }

    /// A probe or a request got no answer (timeout, transport error).
    /// Returns the new state when it changed.
    pub fn on_failure(&mut self, t: Thresholds) -> Option<State> {
        self.successes = 0;
        self.failures = self.failures.saturating_add(1);
        let next = if self.failures >= t.down.max(1) {
            State::Inactive
        } else {
            match self.state {
                State::Active | State::Probing => State::Probing,
                State::Inactive => State::Inactive,
            }
        };
        self.set(next)
    }

    fn set(&mut self, next: State) -> Option<State> {
        if next == self.state {
            return None;
        }
        self.state = next;
        if next == State::Active {
            self.successes = 0;
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { down: 3, up: 2 };

    #[test]
    fn failures_go_through_probing_to_inactive() {
        let mut h = Health::default();
        assert_eq!(h.state(), State::Active);
        assert_eq!(h.on_failure(T), Some(State::Probing));
        assert_eq!(h.on_failure(T), None);
        assert_eq!(h.failures(), 2);
        assert_eq!(h.on_failure(T), Some(State::Inactive));
        assert_eq!(h.on_failure(T), None);
    }

    #[test]
    fn recovery_needs_up_threshold_successes() {
        let mut h = Health::default();
        for _ in 0..3 {
            h.on_failure(T);
        }
        assert_eq!(h.on_success(T), Some(State::Probing));
        assert_eq!(h.on_success(T), Some(State::Active));
        assert_eq!(h.on_success(T), None);
    }

    #[test]
    fn a_failure_resets_the_recovery() {
        let mut h = Health::default();
        for _ in 0..3 {
            h.on_failure(T);
        }
        h.on_success(T);
        assert_eq!(h.state(), State::Probing);
        assert_eq!(h.on_failure(T), None, "still probing after one failure");
        assert_eq!(h.on_success(T), None);
        assert_eq!(h.on_success(T), Some(State::Active));
    }

    #[test]
    fn thresholds_of_one_switch_at_once() {
        let t = Thresholds { down: 1, up: 1 };
        let mut h = Health::default();
        assert_eq!(h.on_failure(t), Some(State::Inactive));
        assert_eq!(h.on_success(t), Some(State::Active));
    }

    #[test]
    fn a_suspect_that_answers_is_active_again() {
        let mut h = Health::default();
        h.on_failure(T);
        assert_eq!(h.state(), State::Probing);
        assert_eq!(h.on_success(T), None);
        assert_eq!(h.on_success(T), Some(State::Active));
    }
}
