//! Bounded cache of recent replies by cookie, so that a retransmitted command
//! (same cookie) gets the same reply instead of being executed twice.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Replies keyed by `K` (typically source address + cookie), bounded in
/// entries and age. Time is passed in explicitly (milliseconds, any epoch).
#[derive(Debug)]
pub struct CookieCache<K> {
    entries: HashMap<K, (u64, Vec<u8>)>,
    order: VecDeque<(K, u64)>,
    capacity: usize,
    ttl_ms: u64,
}

impl<K: Hash + Eq + Clone> CookieCache<K> {
    /// A cache of at most `capacity` replies, each kept at most `ttl_ms`.
    pub fn new(capacity: usize, ttl_ms: u64) -> Self {
        CookieCache {
            entries: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            ttl_ms,
        }
    }

    /// The cached reply for `key`, if still fresh.
    pub fn get(&mut self, key: &K, now_ms: u64) -> Option<&[u8]> {
        self.expire(now_ms);
        self.entries.get(key).map(|(_, r)| r.as_slice())
    }

    /// Stores `reply` for `key`, evicting the oldest entry when full.
    pub fn insert(&mut self, key: K, reply: Vec<u8>, now_ms: u64) {
        self.expire(now_ms);
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some((old, at)) => {
                    if self.entries.get(&old).is_some_and(|(t, _)| *t == at) {
                        self.entries.remove(&old);
                    }
                }
                None => break,
            }
        }
        self.order.push_back((key.clone(), now_ms));
        self.entries.insert(key, (now_ms, reply));
    }

    /// Number of cached replies.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some((key, at)) = self.order.front() {
            if now_ms.saturating_sub(*at) < self.ttl_ms {
                break;
            }
            if self.entries.get(key).is_some_and(|(t, _)| t == at) {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn caches_and_expires() {
        let mut c = CookieCache::new(2, 1000);
        c.insert("a", b"ra".to_vec(), 0);
        assert_eq!(c.get(&"a", 500), Some(&b"ra"[..]));
        assert_eq!(c.get(&"a", 1000), None);
        c.insert("b", b"rb".to_vec(), 1000);
        c.insert("c", b"rc".to_vec(), 1001);
        c.insert("d", b"rd".to_vec(), 1002);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"b", 1002), None);
        assert_eq!(c.get(&"d", 1002), Some(&b"rd"[..]));
    }

    #[test]
    fn reinsert_same_key_keeps_newest() {
        let mut c = CookieCache::new(10, 100);
        c.insert(1, b"x".to_vec(), 0);
        c.insert(1, b"y".to_vec(), 50);
        assert_eq!(c.get(&1, 120), Some(&b"y"[..]));
        assert_eq!(c.get(&1, 150), None);
    }
}
