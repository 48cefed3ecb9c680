//! The table's deadline queue: lanes of deadlines in FIFO order, plus a
//! heap for the rest, with lazy deletion.
//!
//! Most timers run for a fixed, configured time (B, D, F, H, I, J, K, L, M,
//! the 100 Trying delay, the lifetime bounds), so the deadlines of one such
//! timer are queued in the order they fall due: a FIFO lane per timer gives
//! O(1) pushes and pops where a binary heap of a million lingering
//! transactions paid O(log n) cache misses for each. The retransmission
//! timers (A, E, G) start at T1 and double: their first deadlines are in
//! order too, and a doubled one that falls due before its lane's last entry
//! goes to a small heap, as does any deadline that would break its lane's
//! order (a caller whose clock went back).
//!
//! Stopping a timer leaves its entry queued; the owner checks validity when
//! the entry surfaces ([`TimerSet::is_armed`](crate::timer::TimerSet)).
//! Stale entries at a lane's front are trimmed as new ones are pushed, so a
//! lane of long, usually stopped timers (the 300 s INVITE lifetime bound)
//! stays short. Equal deadlines pop in insertion order.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use crate::timer::{MIN_SHRINK_CAPACITY, Timer};

/// One pending deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    seq: u64,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) timer: Timer,
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// FIFO lanes: one per timer, the lifetime bound split by INVITE and
/// non-INVITE (different durations).
const LANES: usize = 15;

/// The lane of `timer`.
fn lane_of(timer: Timer, invite: bool) -> usize {
    match timer {
        Timer::B => 0,
        Timer::D => 1,
        Timer::F => 2,
        Timer::H => 3,
        Timer::I => 4,
        Timer::J => 5,
        Timer::K => 6,
        Timer::L => 7,
        Timer::M => 8,
        Timer::Trying => 9,
        Timer::Lifetime if invite => 10,
        Timer::Lifetime => 11,
        Timer::A => 12,
        Timer::E => 13,
        Timer::G => 14,
    }
}

/// Where the earliest deadline is.
#[derive(Debug, Clone, Copy)]
enum Source {
    Lane(usize),
    Heap,
}

/// The deadlines of a table.
#[derive(Debug, Default)]
pub(crate) struct DeadlineQueue {
    lanes: [VecDeque<Deadline>; LANES],
    heap: BinaryHeap<Reverse<Deadline>>,
    seq: u64,
}

impl DeadlineQueue {
    /// Queues `timer` of the transaction in `slot`/`generation` (an INVITE
    /// transaction when `invite`) to fire at `at`. Returns its lane, for
    /// [`trim`](Self::trim).
    pub(crate) fn push(
        &mut self,
        at: Instant,
        slot: u32,
        generation: u32,
        timer: Timer,
        invite: bool,
    ) -> Option<usize> {
        self.seq = self.seq.wrapping_add(1);
        let d = Deadline {
            at,
            seq: self.seq,
            slot,
            generation,
            timer,
        };
        let i = lane_of(timer, invite);
        if let Some(lane) = self.lanes.get_mut(i)
            && lane.back().is_none_or(|b| b.at <= at)
        {
            lane.push_back(d);
            return Some(i);
        }
        self.heap.push(Reverse(d));
        None
    }

    fn earliest(&self) -> Option<(Source, &Deadline)> {
        let mut best = self.heap.peek().map(|Reverse(d)| (Source::Heap, d));
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(d) = lane.front()
                && best.is_none_or(|(_, b)| d < b)
            {
                best = Some((Source::Lane(i), d));
            }
        }
        best
    }

    /// The earliest entry, valid or not.
    pub(crate) fn peek(&self) -> Option<&Deadline> {
        self.earliest().map(|(_, d)| d)
    }

    /// Removes the earliest entry. After a peak, a lane or heap that is at
    /// most a quarter full gives half its capacity back.
    pub(crate) fn pop(&mut self) -> Option<Deadline> {
        let (source, _) = self.earliest()?;
        match source {
            Source::Heap => {
                let d = self.heap.pop().map(|Reverse(d)| d);
                let (len, cap) = (self.heap.len(), self.heap.capacity());
                if cap > MIN_SHRINK_CAPACITY && len * 4 < cap {
                    self.heap.shrink_to(len * 2);
                }
                d
            }
            Source::Lane(i) => {
                let lane = self.lanes.get_mut(i)?;
                let d = lane.pop_front();
                shrink_sparse(lane);
                d
            }
        }
    }

    /// Pops up to two entries from the front of `lane` for which `stale`
    /// is true: called per push, it keeps lanes of mostly stopped timers
    /// from growing to their full duration's worth.
    pub(crate) fn trim(&mut self, lane: usize, mut stale: impl FnMut(&Deadline) -> bool) {
        let Some(lane) = self.lanes.get_mut(lane) else {
            return;
        };
        for _ in 0..2 {
            match lane.front() {
                Some(d) if stale(d) => {
                    lane.pop_front();
                }
                _ => break,
            }
        }
        shrink_sparse(lane);
    }

    /// Number of entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len() + self.lanes.iter().map(VecDeque::len).sum::<usize>()
    }

    /// Drops every entry for which `keep` is false.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Deadline) -> bool) {
        self.heap.retain(|Reverse(d)| keep(d));
        for lane in &mut self.lanes {
            lane.retain(&mut keep);
            shrink_sparse(lane);
        }
    }
}

fn shrink_sparse(lane: &mut VecDeque<Deadline>) {
    let (len, cap) = (lane.len(), lane.capacity());
    if cap > MIN_SHRINK_CAPACITY && len * 4 < cap {
        lane.shrink_to(len * 2);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn queue_pops_in_deadline_then_insertion_order() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = DeadlineQueue::default();
        q.push(t0 + s(2), 0, 0, Timer::B, true);
        q.push(t0, 1, 0, Timer::A, true);
        q.push(t0, 2, 0, Timer::E, false);
        q.push(t0 + s(1), 3, 0, Timer::L, true);
        q.push(t0, 4, 0, Timer::L, true);
        q.push(t0 + s(3), 5, 0, Timer::Lifetime, true);
        q.push(t0 + s(1), 6, 0, Timer::Lifetime, false);
        assert_eq!(q.len(), 7);
        let order: Vec<u32> = std::iter::from_fn(|| q.pop()).map(|d| d.slot).collect();
        // Slot 4's L came after slot 3's in its lane but falls due first:
        // it went to the heap and still pops in time.
        assert_eq!(order, [1, 2, 4, 3, 6, 0, 5]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn trimming_drops_stale_fronts_only() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::default();
        let mut lane = None;
        for slot in 0..5 {
            lane = q.push(
                t0 + Duration::from_secs(300),
                slot,
                0,
                Timer::Lifetime,
                true,
            );
        }
        let lane = lane.unwrap();
        // Slots 0, 1 and 3 stopped their timers: the front two go, slot 2
        // stops the trimming, slot 3 waits for its turn.
        q.trim(lane, |d| [0, 1, 3].contains(&d.slot));
        assert_eq!(q.len(), 3);
        assert_eq!(q.peek().unwrap().slot, 2);
        q.retain(|d| d.slot != 3);
        let order: Vec<u32> = std::iter::from_fn(|| q.pop()).map(|d| d.slot).collect();
        assert_eq!(order, [2, 4]);
    }
}
