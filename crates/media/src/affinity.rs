//! Which relay each call uses: a bounded Call-ID → relay map whose entries
//! expire (a TTL refreshed by every command, shortened to a grace period
//! by `delete`). Sans-IO: every method takes `now`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug)]
struct Entry {
    relay: usize,
    key: (Instant, u64),
}

/// The bounded, expiring Call-ID → relay index map.
#[derive(Debug)]
pub struct CallAffinity {
    entries: HashMap<Arc<str>, Entry>,
    by_expiry: BTreeMap<(Instant, u64), Arc<str>>,
    per_relay: Vec<usize>,
    max: usize,
    seq: u64,
    evicted: u64,
}

impl CallAffinity {
    /// A map for `relays` relays holding at most `max` calls.
    pub fn new(relays: usize, max: usize) -> CallAffinity {
        CallAffinity {
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            per_relay: vec![0; relays],
            max: max.max(1),
            seq: 0,
            evicted: 0,
        }
    }

    /// The relay of `call_id`, if remembered and not expired at `now`.
    pub fn get(&self, call_id: &str, now: Instant) -> Option<usize> {
        self.entries
            .get(call_id)
            .filter(|e| e.key.0 > now)
            .map(|e| e.relay)
    }

    /// Remembers that `call_id` uses `relay` until `expires`; returns true
    /// if the call was not remembered on that relay before.
    pub fn bind(&mut self, call_id: &str, relay: usize, expires: Instant, now: Instant) -> bool {
        self.expire(now);
        self.seq += 1;
        let key = (expires, self.seq);
        if let Some(e) = self.entries.get_mut(call_id) {
            let name = self.by_expiry.remove(&e.key);
            let fresh = e.relay != relay;
            if fresh {
                dec(&mut self.per_relay, e.relay);
                inc(&mut self.per_relay, relay);
            }
            e.relay = relay;
            e.key = key;
            if let Some(name) = name {
                self.by_expiry.insert(key, name);
            }
            return fresh;
        }
        while self.entries.len() >= self.max {
            if !self.evict_first() {
                break;
            }
            self.evicted += 1;
        }
        let name: Arc<str> = Arc::from(call_id);
        self.by_expiry.insert(key, name.clone());
        self.entries.insert(name, Entry { relay, key });
        inc(&mut self.per_relay, relay);
        true
    }

    /// Changes when `call_id` is forgotten (no-op if unknown).
    pub fn set_expiry(&mut self, call_id: &str, expires: Instant) {
        self.seq += 1;
        let key = (expires, self.seq);
        if let Some(e) = self.entries.get_mut(call_id)
            && let Some(name) = self.by_expiry.remove(&e.key)
        {
            e.key = key;
            self.by_expiry.insert(key, name);
        }
    }

    /// Forgets every call expired at `now`.
    pub fn expire(&mut self, now: Instant) {
        while self
            .by_expiry
            .first_key_value()
            .is_some_and(|(k, _)| k.0 <= now)
        {
            self.evict_first();
        }
    }

    fn evict_first(&mut self) -> bool {
        let Some((_, name)) = self.by_expiry.pop_first() else {
            return false;
        };
        if let Some(e) = self.entries.remove(&name) {
            dec(&mut self.per_relay, e.relay);
        }
        true
    }

    /// Calls remembered (including expired ones not yet purged).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no call is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Calls remembered on `relay`.
    pub fn calls_on(&self, relay: usize) -> usize {
        self.per_relay.get(relay).copied().unwrap_or(0)
    }

    /// Calls forgotten because the map was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

fn inc(v: &mut [usize], i: usize) {
    if let Some(n) = v.get_mut(i) {
        *n += 1;
    }
}

fn dec(v: &mut [usize], i: usize) {
    if let Some(n) = v.get_mut(i) {
        *n = n.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn remembers_until_expiry() {
        let t0 = Instant::now();
        let mut m = CallAffinity::new(2, 10);
        assert!(m.bind("a", 1, t0 + 10 * S, t0));
        assert!(!m.bind("a", 1, t0 + 20 * S, t0));
        assert_eq!(m.get("a", t0 + 15 * S), Some(1));
        assert_eq!(m.calls_on(1), 1);
        m.set_expiry("a", t0 + 2 * S);
        assert_eq!(m.get("a", t0 + S), Some(1));
        assert_eq!(m.get("a", t0 + 2 * S), None);
        m.expire(t0 + 3 * S);
        assert!(m.is_empty());
        assert_eq!(m.calls_on(1), 0);
    }

    #[test]
    fn moving_a_call_counts_it_on_the_new_relay() {
        let t0 = Instant::now();
        let mut m = CallAffinity::new(2, 10);
        m.bind("a", 0, t0 + S, t0);
        assert!(m.bind("a", 1, t0 + S, t0));
        assert_eq!((m.calls_on(0), m.calls_on(1)), (0, 1));
    }

    #[test]
    fn full_map_forgets_the_call_closest_to_expiry() {
        let t0 = Instant::now();
        let mut m = CallAffinity::new(1, 3);
        m.bind("long", 0, t0 + 100 * S, t0);
        m.bind("deleted", 0, t0 + 5 * S, t0);
        m.bind("mid", 0, t0 + 50 * S, t0);
        m.bind("new", 0, t0 + 100 * S, t0);
        assert_eq!(m.len(), 3);
        assert_eq!(m.get("deleted", t0), None);
        assert_eq!(m.get("long", t0), Some(0));
        assert_eq!(m.evicted(), 1);
        assert_eq!(m.calls_on(0), 3);
    }

    #[test]
    fn bounded_under_churn() {
        let t0 = Instant::now();
        let mut m = CallAffinity::new(1, 100);
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            m.bind(&format!("c{i}"), 0, now + 50 * S, now);
            assert!(m.len() <= 100);
        }
        assert_eq!(m.by_expiry.len(), m.entries.len());
    }
}
