//! Transaction timers and the per-transaction timer set (the table's
//! queue of their deadlines is in `deadlines`).

use std::time::Instant;

/// A transaction timer (RFC 3261 §17 Table 4, RFC 6026), plus the two the
/// layer adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE request retransmit (client, unreliable transports).
    A,
    /// INVITE client transaction timeout.
    B,
    /// Wait time for response retransmits (INVITE client, Completed).
    D,
    /// Non-INVITE request retransmit (client, unreliable transports).
    E,
    /// Non-INVITE client transaction timeout.
    F,
    /// INVITE final response retransmit (server, unreliable transports).
    G,
    /// Wait time for the ACK (INVITE server, Completed).
    H,
    /// Wait time for ACK retransmits (INVITE server, Confirmed).
    I,
    /// Wait time for request retransmits (non-INVITE server, Completed).
    J,
    /// Wait time for response retransmits (non-INVITE client, Completed).
    K,
    /// RFC 6026: wait time for INVITE retransmits (server, Accepted).
    L,
    /// RFC 6026: wait time for 2xx retransmits (client, Accepted).
    M,
    /// Send 100 (Trying) if the transaction user has not responded
    /// (RFC 3261 §17.2.1).
    Trying,
    /// The layer's safety net: the longest a transaction waits for a final
    /// response (see [`TimerConfig`](crate::TimerConfig)).
    Lifetime,
}

/// How many timers a transaction can have running at once.
pub(crate) const SLOTS: usize = 5;

/// Capacity below which a sparse table or queue is not shrunk after a peak
/// (the transaction key indexes, the deadline heap).
pub(crate) const MIN_SHRINK_CAPACITY: usize = 4096;

impl Timer {
    /// Timers that can never run at the same time share a slot.
    pub(crate) fn slot(self) -> usize {
        match self {
            Timer::A | Timer::E | Timer::G => 0,
            Timer::B | Timer::F | Timer::H => 1,
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => 2,
            Timer::Trying => 3,
            Timer::Lifetime => 4,
        }
    }
}

/// A deadline as nanoseconds since a process-wide epoch: 8 bytes where an
/// `Instant` takes 16. A transaction keeps five, and a lingering one is
/// small enough to sit in the allocator's 256-byte class, apart from the
/// long-lived dialog records of the 320-byte class (sharing pages with
/// them, freed transactions left those pages a third full after a burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tick(u64);

/// The epoch of [`Tick`]s: a day before first use where the clock allows
/// (instants from shortly before first use stay exact).
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(std::time::Duration::from_secs(86_400))
            .unwrap_or(now)
    })
}

impl Tick {
    fn of(at: Instant) -> Tick {
        let nanos = at.saturating_duration_since(epoch()).as_nanos();
        Tick(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn instant(self) -> Instant {
        epoch() + std::time::Duration::from_nanos(self.0)
    }
}

/// A retransmission interval in microseconds (4 bytes where a `Duration`
/// takes 16; up to 71 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Interval(u32);

impl Interval {
    pub(crate) fn of(d: std::time::Duration) -> Interval {
        Interval(u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
    }

    pub(crate) fn get(self) -> std::time::Duration {
        std::time::Duration::from_micros(u64::from(self.0))
    }

    pub(crate) fn doubled(self) -> Interval {
        Interval(self.0.saturating_mul(2))
    }
}

/// The timers one transaction has running. Changes are marked dirty so the
/// table pushes only new deadlines onto its queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerSet {
    slots: [Option<(Timer, Tick)>; SLOTS],
    dirty: u8,
}

impl TimerSet {
    /// Starts (or restarts) `timer` to fire at `at`.
    pub(crate) fn start(&mut self, timer: Timer, at: Instant) {
        let slot = timer.slot();
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = Some((timer, Tick::of(at)));
            self.dirty |= 1 << slot;
        }
    }

    /// Stops `timer` if it is running.
    pub(crate) fn stop(&mut self, timer: Timer) {
        if let Some(entry) = self.slots.get_mut(timer.slot())
            && matches!(entry, Some((t, _)) if *t == timer)
        {
            *entry = None;
        }
    }

    /// Stops every timer.
    pub(crate) fn stop_all(&mut self) {
        self.slots = [None; SLOTS];
        self.dirty = 0;
    }

    /// Whether `timer` is running with deadline `at` (a queue entry for it
    /// is still valid).
    pub(crate) fn is_armed(&self, timer: Timer, at: Instant) -> bool {
        self.slots.get(timer.slot()).copied().flatten() == Some((timer, Tick::of(at)))
    }

    /// Disarms `timer` if it is armed at `at`; returns whether it was.
    pub(crate) fn take(&mut self, timer: Timer, at: Instant) -> bool {
        if self.is_armed(timer, at) {
            if let Some(entry) = self.slots.get_mut(timer.slot()) {
                *entry = None;
            }
            true
        } else {
            false
        }
    }

    /// The deadline of `timer`, if it is running.
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match self.slots.get(timer.slot()).copied().flatten() {
            Some((t, at)) if t == timer => Some(at.instant()),
            _ => None,
        }
    }

    /// Returns the newly started timers since the last call and clears the
    /// dirty marks.
    pub(crate) fn drain_started(&mut self) -> impl Iterator<Item = (Timer, Instant)> + use<> {
        let dirty = self.dirty;
        self.dirty = 0;
        let slots = self.slots;
        (0..SLOTS).filter_map(move |i| {
            if dirty & (1 << i) != 0 {
                slots
                    .get(i)
                    .copied()
                    .flatten()
                    .map(|(t, at)| (t, at.instant()))
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_that_coexist_use_distinct_slots() {
        // Every pair that RFC 3261 runs at the same time must not share a slot.
        let together = [
            (Timer::A, Timer::B),
            (Timer::E, Timer::F),
            (Timer::G, Timer::H),
            (Timer::Trying, Timer::Lifetime),
            (Timer::A, Timer::Lifetime),
            (Timer::D, Timer::Lifetime),
        ];
        for (a, b) in together {
            assert_ne!(a.slot(), b.slot(), "{a:?} and {b:?}");
        }
    }

    #[test]
    fn restarting_a_timer_invalidates_the_old_deadline() {
        let t0 = Instant::now();
        let mut set = TimerSet::default();
        set.start(Timer::A, t0);
        assert!(set.is_armed(Timer::A, t0));
        set.start(Timer::A, t0 + Duration::from_secs(1));
        assert!(!set.is_armed(Timer::A, t0));
        assert_eq!(set.deadline(Timer::A), Some(t0 + Duration::from_secs(1)));
        set.stop(Timer::E); // another timer of the slot: no effect
        assert!(set.deadline(Timer::A).is_some());
        set.stop(Timer::A);
        assert_eq!(set.deadline(Timer::A), None);
    }

    #[test]
    fn drain_started_reports_each_change_once() {
        let t0 = Instant::now();
        let mut set = TimerSet::default();
        set.start(Timer::A, t0);
        set.start(Timer::B, t0);
        assert_eq!(set.drain_started().count(), 2);
        assert_eq!(set.drain_started().count(), 0);
        assert!(set.take(Timer::A, t0));
        assert!(!set.take(Timer::A, t0));
    }
}
