//! Timers for many flows with few distinct delays (T1, 2·T1, ..., T2, 64·T1).
//!
//! Every delay gets its own FIFO queue; because all entries of one queue were armed with
//! the same delay on a monotonic clock, each queue is sorted by deadline and both arming
//! and firing are O(1). Entries are never cancelled: the owner checks, when one fires,
//! whether it still applies (lazy invalidation by flow generation and transaction number).

use std::collections::VecDeque;

/// One armed timer: its deadline (µs on the engine clock) and the owner's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Armed<T> {
    /// Deadline in microseconds.
    pub deadline: u64,
    /// What the owner needs to act on it.
    pub payload: T,
}

/// A set of FIFO timer queues, one per distinct delay.
#[derive(Debug)]
pub struct Timers<T> {
    queues: Vec<(u64, VecDeque<Armed<T>>)>,
}

impl<T: Copy> Default for Timers<T> {
    fn default() -> Self {
        Timers { queues: Vec::new() }
    }
}

impl<T: Copy> Timers<T> {
    /// An empty timer set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms a timer firing `delay_us` after `now_us`.
    pub fn arm(&mut self, now_us: u64, delay_us: u64, payload: T) {
        let armed = Armed {
            deadline: now_us.saturating_add(delay_us),
            payload,
        };
        if let Some((_, q)) = self.queues.iter_mut().find(|(d, _)| *d == delay_us) {
            q.push_back(armed);
        } else {
            let mut q = VecDeque::with_capacity(1024);
            q.push_back(armed);
            self.queues.push((delay_us, q));
        }
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<u64> {
        self.queues
            .iter()
            .filter_map(|(_, q)| q.front().map(|a| a.deadline))
            .min()
    }

    /// Removes and returns one timer whose deadline is at or before `now_us`, earliest first.
    pub fn pop_due(&mut self, now_us: u64) -> Option<Armed<T>> {
        let (_, q) = self
            .queues
            .iter_mut()
            .filter(|(_, q)| q.front().is_some_and(|a| a.deadline <= now_us))
            .min_by_key(|(_, q)| q.front().map_or(u64::MAX, |a| a.deadline))?;
        q.pop_front()
    }

    /// Number of armed timers (including ones that no longer apply).
    pub fn len(&self) -> usize {
        self.queues.iter().map(|(_, q)| q.len()).sum()
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_across_queues() {
        let mut t = Timers::new();
        t.arm(0, 500, 'a');
        t.arm(100, 2000, 'b');
        t.arm(200, 500, 'c');
        t.arm(300, 100, 'd');
        assert_eq!(t.next_deadline(), Some(400));
        assert_eq!(t.pop_due(399), None);
        let fired: Vec<char> =
            std::iter::from_fn(|| t.pop_due(10_000).map(|a| a.payload)).collect();
        assert_eq!(fired, vec!['d', 'a', 'c', 'b']);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }
}
