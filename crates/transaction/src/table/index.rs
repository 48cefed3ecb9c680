//! The key → slot indexes of a transaction table.
//!
//! A table at a carrier's rates holds a million transactions (RFC 6026
//! keeps an answered INVITE's server transaction 32 s, a non-INVITE one
//! lingers as long), and a hash map grows by rebuilding itself whole. With
//! the keys hashed again on the way, that rebuild read every key from the
//! heap: 168 ms at about 920,000 keys (`longest_insert_while_growing`),
//! during which the node read no datagram and the kernel dropped what
//! overflowed its receive buffer. So:
//!
//! * every entry keeps its key's hash, and a rebuild moves entries without
//!   reading their keys;
//! * the index is split into [`PARTS`] tables by hash, so one rebuild moves
//!   a sixteenth of the entries.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;

/// Tables an index is split into.
pub(crate) const PARTS: usize = 16;

/// Transaction keys (the bytes [`crate::key`] writes) to slots.
#[derive(Debug)]
pub(crate) struct KeyIndex {
    hasher: RandomState,
    parts: [HashTable<Entry>; PARTS],
}

#[derive(Debug)]
struct Entry {
    hash: u64,
    key: Arc<[u8]>,
    slot: u32,
}

impl KeyIndex {
    pub(crate) fn new() -> KeyIndex {
        KeyIndex {
            hasher: RandomState::new(),
            parts: std::array::from_fn(|_| HashTable::new()),
        }
    }

    /// The hash of `key` and the table it lives in. The table is chosen by
    /// bits the tables themselves do not use (they take the low bits for
    /// the bucket and the top seven for the tag).
    fn locate(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, (hash >> 32) as usize % PARTS)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<u32> {
        let (hash, part) = self.locate(key);
        self.parts
            .get(part)?
            .find(hash, |e| e.hash == hash && *e.key == *key)
            .map(|e| e.slot)
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Points `key` at `slot`; returns the slot it pointed at before.
    pub(crate) fn insert(&mut self, key: Arc<[u8]>, slot: u32) -> Option<u32> {
        let (hash, part) = self.locate(&key);
        let table = self.parts.get_mut(part)?;
        match table.entry(hash, |e| e.hash == hash && *e.key == *key, |e| e.hash) {
            TableEntry::Occupied(mut found) => {
                Some(std::mem::replace(&mut found.get_mut().slot, slot))
            }
            TableEntry::Vacant(free) => {
                free.insert(Entry { hash, key, slot });
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<u32> {
        let (hash, part) = self.locate(key);
        let table = self.parts.get_mut(part)?;
        let found = table
            .find_entry(hash, |e| e.hash == hash && *e.key == *key)
            .ok()?;
        let (entry, _) = found.remove();
        Some(entry.slot)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.parts.iter().map(HashTable::len).sum()
    }

    /// Gives back memory after a peak: a table at most a quarter full
    /// shrinks to twice its length, once it holds more than `floor` places
    /// (amortised: a table is rebuilt only after its length fell by half
    /// or more).
    pub(crate) fn shrink_sparse(&mut self, floor: usize) {
        let floor = floor / PARTS;
        for table in &mut self.parts {
            if table.capacity() > floor && table.len() * 4 < table.capacity() {
                table.shrink_to(table.len() * 2, |e| e.hash);
            }
        }
    }

    /// Places allocated in all tables.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.parts.iter().map(HashTable::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Arc<[u8]> {
        Arc::from(format!("z9hG4bK{i:08x}\0INVITE").into_bytes())
    }

    #[test]
    fn keys_map_to_slots_like_a_map() {
        let mut index = KeyIndex::new();
        let mut model = std::collections::HashMap::new();
        for i in 0..5_000u32 {
            assert_eq!(index.insert(key(i), i), model.insert(key(i), i));
        }
        // Re-pointing a key keeps one entry.
        assert_eq!(index.insert(key(7), 70), model.insert(key(7), 70));
        for i in (0..5_000u32).step_by(3) {
            assert_eq!(index.remove(&key(i)), model.remove(&key(i)));
        }
        assert_eq!(index.remove(&key(0)), None);
        assert_eq!(index.len(), model.len());
        for i in 0..5_100u32 {
            assert_eq!(index.get(&key(i)), model.get(&key(i)).copied(), "{i}");
            assert_eq!(index.contains(&key(i)), model.contains_key(&key(i)));
        }
        // The split is used: no table holds everything.
        assert!(index.parts.iter().all(|t| t.len() < model.len() / 4));
    }

    /// The longest single insert while an index grows to a million keys,
    /// against a hash map keyed the way the table was before. A
    /// measurement, not a check: `cargo test --release -p
    /// voxline-transaction --lib longest_insert -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run by hand in release"]
    fn longest_insert_while_growing() {
        use std::time::{Duration, Instant};
        let keys: Vec<Arc<[u8]>> = (0..1_000_000u32)
            .map(|i| Arc::from(format!("z9hG4bK-{i:016x}-127.0.0.1:5071\0INVITE").into_bytes()))
            .collect();
        let mut map: std::collections::HashMap<Arc<[u8]>, u32, RandomState> =
            std::collections::HashMap::with_hasher(RandomState::new());
        let mut index = KeyIndex::new();
        let (mut map_worst, mut index_worst) = (Duration::ZERO, Duration::ZERO);
        for (i, k) in (0u32..).zip(&keys) {
            let t = Instant::now();
            map.insert(Arc::clone(k), i);
            map_worst = map_worst.max(t.elapsed());
            let t = Instant::now();
            index.insert(Arc::clone(k), i);
            index_worst = index_worst.max(t.elapsed());
        }
        eprintln!(
            "longest insert up to {} keys: hash map {map_worst:?}, key index {index_worst:?}",
            keys.len()
        );
    }

    #[test]
    fn a_sparse_index_gives_memory_back() {
        let mut index = KeyIndex::new();
        for i in 0..40_000u32 {
            index.insert(key(i), i);
        }
        let peak = index.capacity();
        for i in 0..39_000u32 {
            index.remove(&key(i));
        }
        index.shrink_sparse(0);
        assert!(
            index.capacity() * 8 < peak,
            "{} of {peak}",
            index.capacity()
        );
        for i in 39_000..40_000u32 {
            assert_eq!(index.get(&key(i)), Some(i));
        }
    }
}
