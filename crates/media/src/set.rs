//! The relay set without I/O: which relay a command goes to, which relays
//! are in service, when they are probed, and their counters. Every method
//! takes an explicit `now`; [`crate::MediaControl`] does the talking.
//!
//! - A new call goes to a relay in service chosen by smooth weighted
//!   round-robin (over `n` new calls, each relay gets `n × weight / total`,
//!   evenly interleaved); a relay of weight 0 gets no new calls.
//! - A known call goes to its relay ([`CallAffinity`]), in service or not.
//! - A relay that fails in a way that warrants failover (no reply, `load
//!   limit`, `Ran out of ports`, `Parallel session limit reached`, socket
//!   error) is marked down: no new calls for `disable`, then it is pinged
//!   every `disable` until it answers. Relays in service are pinged every
//!   `ping_interval`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use voxline_ng::client::NgError;

use crate::affinity::CallAffinity;
use crate::config::{MediaConfig, RelayEntry};

/// Timers of a relay set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetTiming {
    /// How long a failing relay gets no new calls before it is pinged.
    pub disable: Duration,
    /// How often relays in service are pinged (`None`: never).
    pub ping_interval: Option<Duration>,
    /// How long a call's relay is remembered after its last command.
    pub call_ttl: Duration,
    /// How long a call's relay is remembered after `delete`.
    pub delete_grace: Duration,
}

impl SetTiming {
    /// The timers of `[media]`.
    pub fn from_config(c: &MediaConfig) -> SetTiming {
        SetTiming {
            disable: Duration::from_secs(c.disable_secs.max(1)),
            ping_interval: (c.ping_interval_secs > 0)
                .then(|| Duration::from_secs(c.ping_interval_secs)),
            call_ttl: Duration::from_secs(c.call_ttl_secs.max(1)),
            delete_grace: Duration::from_secs(c.delete_grace_secs),
        }
    }
}

/// A relay of the set, as handed to the proxy with each rewritten SDP (for
/// the CDR and later commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RelayRef {
    /// Position in the configured set.
    pub index: usize,
    /// Its ng address.
    pub address: SocketAddr,
}

/// What went wrong in one exchange with a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// No reply after every retransmission.
    Timeout,
    /// `Parallel session limit reached`.
    SessionLimit,
    /// `Ran out of ports`.
    OutOfPorts,
    /// `result: load limit`.
    LoadLimit,
    /// The local socket failed.
    Transport,
    /// `result: error` for any other reason (about the call, not the relay).
    Remote,
    /// An undecodable reply.
    Malformed,
}

impl FailureKind {
    /// Classifies a client error.
    pub fn of(e: &NgError) -> FailureKind {
        match e {
            NgError::Timeout { .. } => FailureKind::Timeout,
            NgError::SessionLimit => FailureKind::SessionLimit,
            NgError::OutOfPorts => FailureKind::OutOfPorts,
            NgError::LoadLimit(_) => FailureKind::LoadLimit,
            NgError::Io(_) => FailureKind::Transport,
            NgError::Remote(_) => FailureKind::Remote,
            NgError::MalformedReply(_) => FailureKind::Malformed,
        }
    }

    /// Whether the next relay is tried and this one marked down.
    pub fn fails_over(self) -> bool {
        !matches!(self, FailureKind::Remote | FailureKind::Malformed)
    }

    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::SessionLimit => "session-limit",
            FailureKind::OutOfPorts => "out-of-ports",
            FailureKind::LoadLimit => "load-limit",
            FailureKind::Transport => "transport",
            FailureKind::Remote => "remote",
            FailureKind::Malformed => "malformed",
        }
    }
}

/// What a successful command did to a call's relay binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// `offer`/`answer`/`query`: remember the call on this relay.
    Session,
    /// `delete` of the whole call: forget it after the grace period.
    DeletedCall,
    /// `delete` of one branch: the call goes on.
    DeletedBranch,
}

/// One relay's state and counters, for the admin API and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayStatus {
    /// Position in the set.
    pub index: usize,
    /// ng address.
    pub address: SocketAddr,
    /// Configured weight.
    pub weight: u32,
    /// In service (gets new calls).
    pub up: bool,
    /// Down: milliseconds until the next ping.
    pub retry_in_ms: Option<u64>,
    /// Calls currently bound to it.
    pub calls: usize,
    /// Calls that started on it.
    pub sessions_started: u64,
    /// Commands it answered.
    pub commands: u64,
    /// Commands and pings that failed.
    pub failures: u64,
    /// Times it was marked down.
    pub marked_down: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// How long ago the last failure happened, ms.
    pub last_error_ago_ms: Option<u64>,
}

#[derive(Debug)]
struct Relay {
    address: SocketAddr,
    weight: u32,
    /// Smooth weighted round-robin state.
    current: i64,
    /// `None`: in service.
    down_until: Option<Instant>,
    next_probe: Option<Instant>,
    probing: bool,
    sessions_started: u64,
    commands: u64,
    failures: u64,
    marked_down: u64,
    last_error: Option<(String, Instant)>,
}

/// The relays of a set with their health and the calls bound to them.
#[derive(Debug)]
pub struct RelaySet {
    relays: Vec<Relay>,
    calls: CallAffinity,
    timing: SetTiming,
}

impl RelaySet {
    /// A set of `relays`, all in service at `now`, remembering at most
    /// `max_calls` calls.
    pub fn new(relays: &[RelayEntry], timing: SetTiming, max_calls: usize, now: Instant) -> Self {
        RelaySet {
            relays: relays
                .iter()
                .map(|r| Relay {
                    address: r.address,
                    weight: r.weight,
                    current: 0,
                    down_until: None,
                    next_probe: timing.ping_interval.map(|i| now + i),
                    probing: false,
                    sessions_started: 0,
                    commands: 0,
                    failures: 0,
                    marked_down: 0,
                    last_error: None,
                })
                .collect(),
            calls: CallAffinity::new(relays.len(), max_calls),
            timing,
        }
    }

    /// Number of relays.
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// Whether the set has no relay.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// The relay at `index`.
    pub fn relay(&self, index: usize) -> Option<RelayRef> {
        self.relays.get(index).map(|r| RelayRef {
            index,
            address: r.address,
        })
    }

    /// Whether the relay at `index` is in service.
    pub fn is_up(&self, index: usize) -> bool {
        self.relays
            .get(index)
            .is_some_and(|r| r.down_until.is_none())
    }

    /// The relay `call_id` is bound to.
    pub fn relay_of(&self, call_id: &str, now: Instant) -> Option<RelayRef> {
        self.calls
            .get(call_id, now)
            .and_then(|index| self.relay(index))
    }

    /// Where an `offer` goes next, after the relays in `tried` failed: the
    /// call's own relay first (in service or not), then a relay in service
    /// by weight. `None`: no relay left.
    pub fn next_for_offer(
        &mut self,
        call_id: &str,
        tried: &[usize],
        now: Instant,
    ) -> Option<RelayRef> {
        if let Some(index) = self.calls.get(call_id, now)
            && !tried.contains(&index)
        {
            return self.relay(index);
        }
        self.pick_new(tried).and_then(|i| self.relay(i))
    }

    /// Relays to ask about a call nobody remembers: in service first, then
    /// the others, in set order.
    pub fn search_order(&self) -> Vec<RelayRef> {
        let (up, down): (Vec<usize>, Vec<usize>) =
            (0..self.relays.len()).partition(|&i| self.is_up(i));
        up.into_iter()
            .chain(down)
            .filter_map(|i| self.relay(i))
            .collect()
    }

    fn pick_new(&mut self, tried: &[usize]) -> Option<usize> {
        let eligible = |(i, r): &(usize, &mut Relay)| {
            r.down_until.is_none() && r.weight > 0 && !tried.contains(i)
        };
        let total: i64 = self
            .relays
            .iter_mut()
            .enumerate()
            .filter(eligible)
            .map(|(_, r)| i64::from(r.weight))
            .sum();
        let mut best: Option<(usize, i64)> = None;
        for (i, r) in self.relays.iter_mut().enumerate().filter(eligible) {
            r.current += i64::from(r.weight);
            if best.is_none_or(|(_, c)| r.current > c) {
                best = Some((i, r.current));
            }
        }
        let (i, _) = best?;
        if let Some(r) = self.relays.get_mut(i) {
            r.current -= total;
        }
        Some(i)
    }

    /// Records a reply from `index` for `call_id`; returns true if a call
    /// started on that relay (an offer for a call new to it).
    pub fn succeeded(&mut self, index: usize, call_id: &str, what: Success, now: Instant) -> bool {
        let Some(r) = self.relays.get_mut(index) else {
            return false;
        };
        r.commands += 1;
        match what {
            Success::Session => {
                let fresh = self
                    .calls
                    .bind(call_id, index, now + self.timing.call_ttl, now);
                if fresh && let Some(r) = self.relays.get_mut(index) {
                    r.sessions_started += 1;
                }
                fresh
            }
            Success::DeletedCall => {
                self.calls
                    .set_expiry(call_id, now + self.timing.delete_grace);
                self.calls.expire(now);
                false
            }
            Success::DeletedBranch => false,
        }
    }

    /// Binds `call_id` to `index` without counting a command or a new
    /// session (a call found on a relay after its binding was lost).
    pub fn adopt(&mut self, index: usize, call_id: &str, now: Instant) {
        if index < self.relays.len() {
            self.calls
                .bind(call_id, index, now + self.timing.call_ttl, now);
        }
    }

    /// Forgets `call_id` after the grace period (its delete failed: the
    /// call is over either way).
    pub fn release(&mut self, call_id: &str, now: Instant) {
        self.calls
            .set_expiry(call_id, now + self.timing.delete_grace);
        self.calls.expire(now);
    }

    /// Records a failed exchange with `index`; returns true if the relay
    /// was in service and is now marked down.
    pub fn failed(&mut self, index: usize, error: &NgError, now: Instant) -> bool {
        let kind = FailureKind::of(error);
        let disable = self.timing.disable;
        let Some(r) = self.relays.get_mut(index) else {
            return false;
        };
        r.failures += 1;
        r.last_error = Some((error.to_string(), now));
        if kind.fails_over() && r.down_until.is_none() {
            r.down_until = Some(now + disable);
            r.next_probe = Some(now + disable);
            r.marked_down += 1;
            return true;
        }
        false
    }

    /// Relays whose ping is due at `now`; each is reported once until its
    /// result is given to [`RelaySet::probed`].
    pub fn due_probes(&mut self, now: Instant) -> Vec<RelayRef> {
        let mut due = Vec::new();
        for (index, r) in self.relays.iter_mut().enumerate() {
            if !r.probing && r.next_probe.is_some_and(|t| t <= now) {
                r.probing = true;
                due.push(RelayRef {
                    index,
                    address: r.address,
                });
            }
        }
        due
    }

    /// When the next ping is due.
    pub fn next_probe_at(&self) -> Option<Instant> {
        self.relays
            .iter()
            .filter(|r| !r.probing)
            .filter_map(|r| r.next_probe)
            .min()
    }

    /// Records a ping's outcome; returns `Some(up)` if the relay changed
    /// state.
    pub fn probed(
        &mut self,
        index: usize,
        result: Result<(), &NgError>,
        now: Instant,
    ) -> Option<bool> {
        let was_up = self.is_up(index);
        let timing = self.timing;
        let r = self.relays.get_mut(index)?;
        r.probing = false;
        match result {
            Ok(()) => {
                r.down_until = None;
                r.next_probe = timing.ping_interval.map(|i| now + i);
                (!was_up).then_some(true)
            }
            Err(e) => {
                if was_up {
                    self.failed(index, e, now);
                    return Some(false);
                }
                r.failures += 1;
                r.last_error = Some((e.to_string(), now));
                r.down_until = Some(now + timing.disable);
                r.next_probe = Some(now + timing.disable);
                None
            }
        }
    }

    /// Calls bound to any relay.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Calls forgotten because the binding table was full.
    pub fn calls_evicted(&self) -> u64 {
        self.calls.evicted()
    }

    /// Every relay's state.
    pub fn status(&self, now: Instant) -> Vec<RelayStatus> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.relays
            .iter()
            .enumerate()
            .map(|(index, r)| RelayStatus {
                index,
                address: r.address,
                weight: r.weight,
                up: r.down_until.is_none(),
                retry_in_ms: r
                    .down_until
                    .and(r.next_probe)
                    .map(|t| ms(t.saturating_duration_since(now))),
                calls: self.calls.calls_on(index),
                sessions_started: r.sessions_started,
                commands: r.commands,
                failures: r.failures,
                marked_down: r.marked_down,
                last_error: r.last_error.as_ref().map(|(e, _)| e.clone()),
                last_error_ago_ms: r
                    .last_error
                    .as_ref()
                    .map(|(_, t)| ms(now.saturating_duration_since(*t))),
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn timing() -> SetTiming {
        SetTiming {
            disable: 10 * S,
            ping_interval: Some(5 * S),
            call_ttl: 100 * S,
            delete_grace: 2 * S,
        }
    }

    fn set(weights: &[u32], now: Instant) -> RelaySet {
        let relays: Vec<RelayEntry> = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| RelayEntry {
                address: SocketAddr::from(([127, 0, 0, 1], 22000 + i as u16)),
                weight,
            })
            .collect();
        RelaySet::new(&relays, timing(), 1000, now)
    }

    fn new_call(s: &mut RelaySet, call: &str, now: Instant) -> usize {
        let r = s.next_for_offer(call, &[], now).unwrap();
        s.succeeded(r.index, call, Success::Session, now);
        r.index
    }

    #[test]
    fn new_calls_follow_the_weights_evenly() {
        let t0 = Instant::now();
        let mut s = set(&[3, 1, 0], t0);
        let picks: Vec<usize> = (0..8)
            .map(|i| new_call(&mut s, &format!("c{i}"), t0))
            .collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 0, 1, 0]);
        let st = s.status(t0);
        assert_eq!(
            st.iter().map(|r| r.sessions_started).collect::<Vec<_>>(),
            [6, 2, 0]
        );
        assert_eq!(st.iter().map(|r| r.calls).collect::<Vec<_>>(), [6, 2, 0]);
    }

    #[test]
    fn a_call_sticks_to_its_relay() {
        let t0 = Instant::now();
        let mut s = set(&[1, 1], t0);
        let first = new_call(&mut s, "a", t0);
        for _ in 0..5 {
            assert_eq!(s.next_for_offer("a", &[], t0).unwrap().index, first);
            assert!(!s.succeeded(first, "a", Success::Session, t0));
        }
        // Even while its relay is down.
        s.failed(first, &NgError::Timeout { attempts: 3 }, t0);
        assert_eq!(s.relay_of("a", t0).unwrap().index, first);
        assert_eq!(s.next_for_offer("a", &[], t0).unwrap().index, first);
        // Failing over moves it.
        let other = s.next_for_offer("a", &[first], t0).unwrap().index;
        assert_ne!(other, first);
        assert!(s.succeeded(other, "a", Success::Session, t0));
        assert_eq!(s.relay_of("a", t0).unwrap().index, other);
        assert_eq!(s.status(t0)[first].calls, 0);
    }

    #[test]
    fn delete_keeps_the_binding_for_the_grace_period() {
        let t0 = Instant::now();
        let mut s = set(&[1], t0);
        new_call(&mut s, "a", t0);
        s.succeeded(0, "a", Success::DeletedBranch, t0);
        assert!(s.relay_of("a", t0 + 50 * S).is_some());
        s.succeeded(0, "a", Success::DeletedCall, t0 + 50 * S);
        assert!(s.relay_of("a", t0 + 51 * S).is_some());
        assert!(s.relay_of("a", t0 + 52 * S).is_none());
        // A delete that failed releases the call the same way.
        new_call(&mut s, "c", t0);
        s.release("c", t0 + 10 * S);
        assert!(s.relay_of("c", t0 + 11 * S).is_some());
        assert!(s.relay_of("c", t0 + 12 * S).is_none());
        // Without delete, the TTL after the last command.
        new_call(&mut s, "b", t0);
        assert!(s.relay_of("b", t0 + 99 * S).is_some());
        assert!(s.relay_of("b", t0 + 100 * S).is_none());
    }

    #[test]
    fn failover_errors_mark_down_others_do_not() {
        let t0 = Instant::now();
        let mut s = set(&[1, 1], t0);
        assert!(!s.failed(0, &NgError::Remote("Unknown call-id".into()), t0));
        assert!(s.is_up(0));
        assert!(s.failed(0, &NgError::SessionLimit, t0));
        assert!(!s.failed(0, &NgError::OutOfPorts, t0), "already down");
        assert!(!s.is_up(0));
        // New calls avoid it.
        for i in 0..4 {
            assert_eq!(new_call(&mut s, &format!("c{i}"), t0), 1);
        }
        let st = &s.status(t0)[0];
        assert_eq!(st.failures, 3);
        assert_eq!(st.marked_down, 1);
        assert_eq!(st.retry_in_ms, Some(10_000));
        assert_eq!(st.last_error.as_deref(), Some("Ran out of ports"));
        // Nothing left once both are down.
        s.failed(1, &NgError::LoadLimit("x".into()), t0);
        assert!(s.next_for_offer("new", &[], t0).is_none());
        assert_eq!(s.search_order().len(), 2);
    }

    #[test]
    fn down_relays_are_pinged_until_they_answer() {
        let t0 = Instant::now();
        let mut s = set(&[1, 1], t0);
        s.failed(0, &NgError::Timeout { attempts: 3 }, t0);
        // Relay 1's health ping at 5 s comes first.
        assert_eq!(s.next_probe_at(), Some(t0 + 5 * S));
        let due = s.due_probes(t0 + 5 * S);
        assert_eq!(due.iter().map(|r| r.index).collect::<Vec<_>>(), [1]);
        assert_eq!(s.next_probe_at(), Some(t0 + 10 * S));
        assert_eq!(s.probed(1, Ok(()), t0 + 5 * S), None);
        assert!(s.due_probes(t0 + 9 * S).is_empty());
        let due = s.due_probes(t0 + 10 * S);
        assert_eq!(due.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1]);
        assert!(s.due_probes(t0 + 10 * S).is_empty(), "reported once");
        // Still silent: down for another period.
        let timeout = NgError::Timeout { attempts: 3 };
        assert_eq!(s.probed(0, Err(&timeout), t0 + 11 * S), None);
        assert!(!s.is_up(0));
        assert_eq!(s.status(t0 + 11 * S)[0].retry_in_ms, Some(10_000));
        s.probed(1, Ok(()), t0 + 10 * S);
        let due = s.due_probes(t0 + 21 * S);
        assert!(due.iter().any(|r| r.index == 0));
        assert_eq!(s.probed(0, Ok(()), t0 + 21 * S), Some(true));
        assert!(s.is_up(0));
        assert_eq!(s.status(t0 + 21 * S)[0].retry_in_ms, None);
        // A relay in service that stops answering pings goes down.
        let due = s.due_probes(t0 + 26 * S);
        assert!(due.iter().any(|r| r.index == 0));
        assert_eq!(s.probed(0, Err(&timeout), t0 + 26 * S), Some(false));
        assert!(!s.is_up(0));
    }

    #[test]
    fn without_health_pings_only_down_relays_are_probed() {
        let t0 = Instant::now();
        let relays = [RelayEntry {
            address: SocketAddr::from(([127, 0, 0, 1], 1)),
            weight: 1,
        }];
        let mut s = RelaySet::new(
            &relays,
            SetTiming {
                ping_interval: None,
                ..timing()
            },
            10,
            t0,
        );
        assert_eq!(s.next_probe_at(), None);
        s.failed(0, &NgError::Timeout { attempts: 1 }, t0);
        assert_eq!(s.next_probe_at(), Some(t0 + 10 * S));
        s.due_probes(t0 + 10 * S);
        s.probed(0, Ok(()), t0 + 10 * S);
        assert_eq!(s.next_probe_at(), None);
    }
}
