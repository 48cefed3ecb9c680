//! Round-robin queueing of ng commands per source, so one flooding source
//! cannot starve the others: each source has a bounded queue and sources
//! are served in turn.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Per-source bounded FIFOs served round-robin.
#[derive(Debug)]
pub struct FairQueue<K, T> {
    queues: HashMap<K, VecDeque<T>>,
    order: VecDeque<K>,
    per_source: usize,
    len: usize,
    dropped: u64,
}

impl<K: Hash + Eq + Clone, T> FairQueue<K, T> {
    /// At most `per_source` items wait per source.
    pub fn new(per_source: usize) -> Self {
        FairQueue {
            queues: HashMap::new(),
            order: VecDeque::new(),
            per_source: per_source.max(1),
            len: 0,
            dropped: 0,
        }
    }

    /// Queues `item` from `source`; returns false (and counts a drop) if that
    /// source's queue is full.
    pub fn push(&mut self, source: K, item: T) -> bool {
        let q = self.queues.entry(source.clone()).or_default();
        if q.len() >= self.per_source {
            self.dropped += 1;
            return false;
        }
        if q.is_empty() {
            self.order.push_back(source);
        }
        q.push_back(item);
        self.len += 1;
        true
    }

    /// Next item, taking sources in turn.
    pub fn pop(&mut self) -> Option<(K, T)> {
        let source = self.order.pop_front()?;
        let q = self.queues.get_mut(&source)?;
        let item = q.pop_front()?;
        self.len -= 1;
        if q.is_empty() {
            self.queues.remove(&source);
        } else {
            self.order.push_back(source.clone());
        }
        Some((source, item))
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Items refused because their source's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flood_does_not_starve_others() {
        let mut q = FairQueue::new(100);
        for i in 0..1000 {
            q.push("flood", i);
        }
        q.push("kamailio-1", 1);
        q.push("kamailio-2", 2);
        assert_eq!(q.dropped(), 900);
        let first: Vec<_> = (0..3).map(|_| q.pop().unwrap().0).collect();
        assert_eq!(first, vec!["flood", "kamailio-1", "kamailio-2"]);
        assert_eq!(q.len(), 99);
        while q.pop().is_some() {}
        assert!(q.is_empty());
    }

    #[test]
    fn keeps_fifo_order_per_source() {
        let mut q = FairQueue::new(10);
        q.push(1, "a");
        q.push(1, "b");
        q.push(2, "x");
        assert_eq!(q.pop(), Some((1, "a")));
        assert_eq!(q.pop(), Some((2, "x")));
        assert_eq!(q.pop(), Some((1, "b")));
        assert_eq!(q.pop(), None);
    }
}
