//! A small sharded read cache for subscriber lookups, sans-IO (the caller
//! passes `now`). Caches misses too: unknown users hit the cache exactly
//! like known ones, and floods of them do not reach the database.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::digest::StoredCredentials;

const SHARDS: usize = 16;

struct Entry {
    value: Option<StoredCredentials>,
    expires: Instant,
}

/// Keys are hashed with foldhash, seeded per process and per map like the location
/// store's address-of-record index: SipHash (std's default), twice per lookup for the
/// shard and the map, was ~2 % of an MD5 digest flow's CPU.
type Hasher = foldhash::fast::RandomState;

type Shard = HashMap<Box<str>, Entry, Hasher>;

/// The cache: `(username, domain)` → stored credentials or "no such user".
pub(crate) struct CredentialCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: Hasher,
    ttl: Duration,
    shard_capacity: usize,
}

/// A lookup result from the cache.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cached {
    /// Not cached (or expired).
    Miss,
    /// Cached: the subscriber, or `None` if known not to exist.
    Hit(Option<StoredCredentials>),
}

/// `len(user):user:domain`, unambiguous whatever the user contains.
fn key(username: &str, domain: &str) -> String {
    let mut key = String::with_capacity(username.len() + domain.len() + 8);
    write_key(&mut key, username, domain);
    key
}

fn write_key(key: &mut String, username: &str, domain: &str) {
    let mut digits = [0u8; 20];
    let mut n = username.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for &d in digits.get(i..).unwrap_or_default() {
        key.push(char::from(d));
    }
    key.push(':');
    key.push_str(username);
    key.push(':');
    key.push_str(domain);
}

thread_local! {
    /// The key of a lookup, built without an allocation per lookup.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl CredentialCache {
    /// A cache of about `capacity` entries kept `ttl`.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> CredentialCache {
        CredentialCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(Hasher::default())))
                .collect(),
            hasher: Hasher::default(),
            ttl,
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        // Each shard's map hashes with a seed of its own, so the keys of one
        // shard stay spread inside it. The modulo keeps the index inside the slice.
        let shard = &self.shards[(self.hasher.hash_one(key) % self.shards.len() as u64) as usize];
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// About how many entries the cache holds.
    pub(crate) fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    pub(crate) fn get(&self, username: &str, domain: &str, now: Instant) -> Cached {
        KEY.with_borrow_mut(|key| {
            key.clear();
            write_key(key, username, domain);
            let shard = self.shard(key);
            let found = match shard.get(key.as_str()) {
                Some(entry) if entry.expires > now => Cached::Hit(entry.value),
                _ => Cached::Miss,
            };
            drop(shard);
            if key.capacity() > 1024 {
                *key = String::new();
            }
            found
        })
    }

    pub(crate) fn insert(
        &self,
        username: &str,
        domain: &str,
        value: Option<StoredCredentials>,
        now: Instant,
    ) {
        let key = key(username, domain);
        let mut shard = self.shard(&key);
        if shard.len() >= self.shard_capacity && !shard.contains_key(key.as_str()) {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.shard_capacity {
                // Still full of live entries: drop an arbitrary one.
                let victim = shard.keys().next().cloned();
                if let Some(victim) = victim {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            key.into_boxed_str(),
            Entry {
                value,
                expires: now + self.ttl,
            },
        );
    }

    pub(crate) fn invalidate(&self, username: &str, domain: &str) {
        let key = key(username, domain);
        self.shard(&key).remove(key.as_str());
    }

    /// Drops everything (used after list-changing operations whose keys
    /// are not known, and in tests).
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(p: &str) -> StoredCredentials {
        StoredCredentials::from_password("u", "d", p)
    }

    #[test]
    fn keys_are_length_prefixed() {
        assert_eq!(key("alice", "localhost"), "5:alice:localhost");
        assert_eq!(key("", "d"), "0::d");
        assert_eq!(
            key(&"u".repeat(123), "d"),
            format!("123:{}:d", "u".repeat(123))
        );
        assert_ne!(key("a:b", "c"), key("a", "b:c"));
    }

    #[test]
    fn hit_until_ttl_then_miss() {
        let c = CredentialCache::new(Duration::from_secs(5), 100);
        let t = Instant::now();
        assert_eq!(c.get("alice", "localhost", t), Cached::Miss);
        c.insert("alice", "localhost", Some(creds("a")), t);
        c.insert("nobody", "localhost", None, t);
        assert_eq!(
            c.get("alice", "localhost", t + Duration::from_secs(4)),
            Cached::Hit(Some(creds("a")))
        );
        assert_eq!(c.get("nobody", "localhost", t), Cached::Hit(None));
        assert_eq!(c.get("Alice", "localhost", t), Cached::Miss);
        assert_eq!(
            c.get("alice", "localhost", t + Duration::from_secs(5)),
            Cached::Miss
        );
        c.invalidate("nobody", "localhost");
        assert_eq!(c.get("nobody", "localhost", t), Cached::Miss);
    }

    #[test]
    fn keys_are_unambiguous() {
        let c = CredentialCache::new(Duration::from_secs(5), 100);
        let t = Instant::now();
        c.insert("a:b", "c", Some(creds("1")), t);
        assert_eq!(c.get("a", "b:c", t), Cached::Miss);
    }

    #[test]
    fn bounded() {
        let c = CredentialCache::new(Duration::from_secs(5), 64);
        let t = Instant::now();
        for i in 0..1000 {
            c.insert(&format!("user{i}"), "d", None, t);
        }
        assert!(c.len() <= 64, "{}", c.len());
        let later = t + Duration::from_secs(10);
        c.insert("fresh", "d", None, later);
        assert!(c.len() <= 64, "{}", c.len());
        assert_eq!(c.get("fresh", "d", later), Cached::Hit(None));
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
