//! Nonce-count replay protection: a bounded, sharded table of
//! nonce → highest `nc` seen.
//!
//! A nonce enters the table the first time it is used with valid
//! credentials. Each later use must carry a greater `nc`. When a shard is
//! full, its oldest entries (in order of first use) are evicted and the
//! shard remembers the newest issue time it evicted (its *watermark*): a
//! nonce not in the table but issued at or before the watermark may have
//! been evicted, so it is reported [`NcVerdict::Forgotten`] and the caller
//! answers `stale=true`, making the client re-challenge without asking its
//! user. Entries past the nonce lifetime are dropped as they are met.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use crate::nonce::NonceInfo;

const SHARDS: usize = 32;
/// The smallest accepted table size (one entry per shard).
pub const MIN_CAPACITY: usize = SHARDS;

/// The verdict on one use of a nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NcVerdict {
    /// `nc` is greater than any seen before for this nonce; recorded.
    Accepted,
    /// `nc` is not greater than the highest seen: a replay.
    Replayed,
    /// The nonce may have been evicted; treat as stale.
    Forgotten,
}

/// Hashes a nonce id: ids are random (and reach the table only after
/// their nonce's signature was checked), so a fast mix of the one word is
/// enough; SipHash would cost more than the rest of the lookup.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // splitmix64's finaliser: every output bit depends on every input bit.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

#[derive(Default)]
struct Shard {
    highest_nc: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    /// (id, issued_ms) in order of first use.
    order: VecDeque<(u64, u64)>,
    watermark_ms: Option<u64>,
}

impl Shard {
    fn drop_front(&mut self) -> Option<u64> {
        let (id, issued_ms) = self.order.pop_front()?;
        self.highest_nc.remove(&id);
        Some(issued_ms)
    }
}

/// The table. Shared by all workers of a node (`&self` methods).
pub struct NonceCountTable {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
}

impl std::fmt::Debug for NonceCountTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceCountTable")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl NonceCountTable {
    /// A table holding about `capacity` nonces (at least [`MIN_CAPACITY`]).
    pub fn new(capacity: usize) -> NonceCountTable {
        let shard_capacity = capacity.max(MIN_CAPACITY).div_ceil(SHARDS);
        NonceCountTable {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity,
        }
    }

    /// The number of nonces it holds at most.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * SHARDS
    }

    /// The number of nonces it holds now.
    pub fn len(&self) -> usize {
        (0..SHARDS)
            .map(|i| self.lock(i as u64).highest_nc.len())
            .sum()
    }

    /// Whether it holds no nonce.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self, id: u64) -> MutexGuard<'_, Shard> {
        // The modulo keeps the index inside the slice.
        let shard = &self.shards[(id % self.shards.len() as u64) as usize];
        // A poisoned shard only means another thread panicked mid-update of
        // plain integers; the data is still usable.
        shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the use of `nonce` with `nc`. `expired_before_ms` is the
    /// issue time before which nonces are past their lifetime (now minus
    /// lifetime); such entries are dropped on the way.
    pub fn check_and_record(&self, nonce: NonceInfo, nc: u32, expired_before_ms: u64) -> NcVerdict {
        let mut shard = self.lock(nonce.id);
        while shard
            .order
            .front()
            .is_some_and(|&(_, issued)| issued < expired_before_ms)
        {
            shard.drop_front();
        }
        if let Some(highest) = shard.highest_nc.get_mut(&nonce.id) {
            if nc <= *highest {
                return NcVerdict::Replayed;
            }
            *highest = nc;
            return NcVerdict::Accepted;
        }
        if shard.watermark_ms.is_some_and(|w| nonce.issued_ms <= w) {
            return NcVerdict::Forgotten;
        }
        while shard.highest_nc.len() >= self.shard_capacity {
            let Some(evicted) = shard.drop_front() else {
                break;
            };
            shard.watermark_ms = Some(shard.watermark_ms.map_or(evicted, |w| w.max(evicted)));
        }
        shard.highest_nc.insert(nonce.id, nc);
        shard.order.push_back((nonce.id, nonce.issued_ms));
        NcVerdict::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(id: u64, issued_ms: u64) -> NonceInfo {
        NonceInfo { id, issued_ms }
    }

    #[test]
    fn nc_must_increase() {
        let t = NonceCountTable::new(1000);
        let n = nonce(5, 100);
        assert_eq!(t.check_and_record(n, 1, 0), NcVerdict::Accepted);
        assert_eq!(t.check_and_record(n, 1, 0), NcVerdict::Replayed);
        assert_eq!(t.check_and_record(n, 2, 0), NcVerdict::Accepted);
        assert_eq!(t.check_and_record(n, 5, 0), NcVerdict::Accepted);
        assert_eq!(t.check_and_record(n, 3, 0), NcVerdict::Replayed);
        // A nonce first seen with nc > 1 (used on another node) is accepted.
        assert_eq!(t.check_and_record(nonce(6, 100), 7, 0), NcVerdict::Accepted);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn bounded_and_evicted_nonces_are_forgotten() {
        let t = NonceCountTable::new(MIN_CAPACITY);
        assert_eq!(t.capacity(), MIN_CAPACITY);
        // All ids in shard 0: one entry fits.
        let a = nonce(0, 100);
        let b = nonce(SHARDS as u64, 200);
        let c = nonce(2 * SHARDS as u64, 150);
        let d = nonce(3 * SHARDS as u64, 300);
        assert_eq!(t.check_and_record(a, 1, 0), NcVerdict::Accepted);
        assert_eq!(t.check_and_record(b, 1, 0), NcVerdict::Accepted);
        assert_eq!(t.len(), 1);
        // `a` was evicted: reusing it is stale, not a fresh first use.
        assert_eq!(t.check_and_record(a, 2, 0), NcVerdict::Forgotten);
        // Never seen but issued before the watermark: also stale.
        assert_eq!(
            t.check_and_record(nonce(4 * SHARDS as u64, 90), 1, 0),
            NcVerdict::Forgotten
        );
        // Issued after the watermark: a genuine first use.
        assert_eq!(t.check_and_record(c, 1, 0), NcVerdict::Accepted);
        assert_eq!(t.check_and_record(d, 1, 0), NcVerdict::Accepted);
        assert_eq!(t.len(), 1);
        // Other shards are unaffected.
        assert_eq!(t.check_and_record(nonce(1, 50), 1, 0), NcVerdict::Accepted);
    }

    #[test]
    fn expired_entries_are_dropped_without_raising_the_watermark() {
        let t = NonceCountTable::new(MIN_CAPACITY * 4);
        for i in 0..4 {
            assert_eq!(
                t.check_and_record(nonce(i * SHARDS as u64, 100 + i), 1, 0),
                NcVerdict::Accepted
            );
        }
        assert_eq!(t.len(), 4);
        // Time passes: everything issued before 1000 is expired.
        assert_eq!(
            t.check_and_record(nonce(99 * SHARDS as u64, 1000), 1, 1000),
            NcVerdict::Accepted
        );
        assert_eq!(t.len(), 1);
        // An unseen nonce issued at 900 is not "forgotten" (no eviction
        // happened); the lifetime check in front of the table rejects it.
        assert_eq!(
            t.check_and_record(nonce(98 * SHARDS as u64, 900), 1, 0),
            NcVerdict::Accepted
        );
    }

    #[test]
    fn concurrent_use_is_consistent() {
        let t = std::sync::Arc::new(NonceCountTable::new(10_000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (1..=100u32)
                        .filter(|&nc| {
                            t.check_and_record(nonce(77, 1), nc, 0) == NcVerdict::Accepted
                        })
                        .count()
                })
            })
            .collect();
        let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // Accepted values form one strictly increasing sequence.
        assert!((1..=100).contains(&accepted), "{accepted}");
        assert_eq!(
            t.check_and_record(nonce(77, 1), 100, 0),
            NcVerdict::Replayed
        );
    }
}
