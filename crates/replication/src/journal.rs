//! The outbound journal: the local location changes peers have not all
//! received yet, numbered in the order they happened.
//!
//! * **Coalescing**: one entry per binding. A newer change to a binding
//!   replaces the older entry (and takes a new sequence number), so a
//!   refresh storm during an outage costs one entry per binding, not one per
//!   REGISTER, and a peer that catches up gets only the latest state.
//! * **Bounded**: beyond `max_entries` the oldest entry is dropped —
//!   preferably a write, because writes are recovered by a full resync (a
//!   listing of the store) while removals are not; a dropped removal is
//!   counted. Every peer that had not received a dropped entry needs a full
//!   resync ([`Journal::lost_below`]).
//! * **Trimmed** once every peer has acknowledged a prefix.
//!
//! Pure data structure: no I/O, no clock (callers pass times in).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use voxline_location::codec::encode_change;
use voxline_location::{ChangeKind, LocationChange};

/// One journal entry.
#[derive(Debug, Clone)]
struct Entry {
    /// The change, encoded for the wire.
    record: Bytes,
    /// When it was recorded, ms since the Unix epoch.
    at_ms: u64,
    /// Identity of the binding (for coalescing).
    id: Arc<str>,
    /// A removal (kept in preference to writes when the journal is full).
    removal: bool,
}

/// Counters of entries lost to the size bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Writes dropped (recovered by a full resync).
    pub upserts: u64,
    /// Removals dropped (a peer keeps such a binding until it expires).
    pub removals: u64,
}

/// The outbound journal (see the module documentation).
#[derive(Debug)]
pub struct Journal {
    max_entries: usize,
    next_seq: u64,
    entries: BTreeMap<u64, Entry>,
    by_binding: HashMap<Arc<str>, u64>,
    upserts: BTreeSet<u64>,
    lost_below: u64,
    bytes: usize,
    evictions: Evictions,
}

/// A run of journal records for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slice {
    /// Encoded changes, oldest first.
    pub records: Vec<Bytes>,
    /// Once delivered, the peer has everything up to this sequence number.
    pub upto: u64,
}

fn binding_id(change: &LocationChange) -> Arc<str> {
    // Length-prefixed so that no AOR/key pair can collide with another.
    Arc::from(format!("{}:{}{}", change.aor.len(), change.aor, change.key))
}

impl Journal {
    /// An empty journal holding at most `max_entries` changes (at least 1).
    pub fn new(max_entries: usize) -> Self {
        Journal {
            max_entries: max_entries.max(1),
            next_seq: 1,
            entries: BTreeMap::new(),
            by_binding: HashMap::new(),
            upserts: BTreeSet::new(),
            lost_below: 0,
            bytes: 0,
            evictions: Evictions::default(),
        }
    }

    /// Record a local change made at `at_ms`; returns its sequence number.
    pub fn push(&mut self, change: &LocationChange, at_ms: u64) -> u64 {
        let id = binding_id(change);
        if let Some(old) = self.by_binding.get(&id).copied() {
            self.remove(old);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let removal = matches!(change.kind, ChangeKind::Remove { .. });
        let record = Bytes::from(encode_change(change));
        self.bytes += record.len() + id.len();
        self.by_binding.insert(Arc::clone(&id), seq);
        if !removal {
            self.upserts.insert(seq);
        }
        self.entries.insert(
            seq,
            Entry {
                record,
                at_ms,
                id,
                removal,
            },
        );
        while self.entries.len() > self.max_entries {
            self.evict();
        }
        seq
    }

    /// Record that changes were missed (the change feed overflowed): every
    /// peer that has not acknowledged past this point needs a full resync.
    pub fn mark_lost(&mut self) {
        self.lost_below = self.next_seq;
        self.next_seq += 1;
    }

    fn evict(&mut self) {
        let victim = self
            .upserts
            .first()
            .copied()
            .or_else(|| self.entries.first_key_value().map(|(s, _)| *s));
        let Some(seq) = victim else { return };
        if let Some(e) = self.remove(seq) {
            if e.removal {
                self.evictions.removals += 1;
            } else {
                self.evictions.upserts += 1;
            }
            self.lost_below = self.lost_below.max(seq);
        }
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let e = self.entries.remove(&seq)?;
        self.upserts.remove(&seq);
        if self.by_binding.get(&e.id) == Some(&seq) {
            self.by_binding.remove(&e.id);
        }
        self.bytes = self.bytes.saturating_sub(e.record.len() + e.id.len());
        Some(e)
    }

    /// Up to `max` records after sequence number `acked`, oldest first. When
    /// nothing is pending, `upto` is the last sequence number handed out
    /// (everything up to it is delivered or superseded).
    pub fn slice_after(&self, acked: u64, max: usize) -> Slice {
        let mut records = Vec::new();
        let mut upto = acked;
        for (seq, e) in self.entries.range(acked.saturating_add(1)..).take(max) {
            records.push(e.record.clone());
            upto = *seq;
        }
        if records.is_empty() {
            upto = upto.max(self.last_seq());
        }
        Slice { records, upto }
    }

    /// Whether any entry follows `acked`.
    pub fn has_after(&self, acked: u64) -> bool {
        self.entries
            .range(acked.saturating_add(1)..)
            .next()
            .is_some()
    }

    /// Entries after `acked` (O(entries)).
    pub fn count_after(&self, acked: u64) -> usize {
        self.entries.range(acked.saturating_add(1)..).count()
    }

    /// When the oldest entry after `acked` was recorded.
    pub fn oldest_after(&self, acked: u64) -> Option<u64> {
        self.entries
            .range(acked.saturating_add(1)..)
            .next()
            .map(|(_, e)| e.at_ms)
    }

    /// Drop entries every peer has (sequence numbers up to `upto`).
    pub fn trim(&mut self, upto: u64) {
        while let Some((&seq, _)) = self.entries.first_key_value() {
            if seq > upto {
                break;
            }
            self.remove(seq);
        }
    }

    /// The last sequence number handed out (0 before the first change).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The highest sequence number that was dropped or missed (0: none). A
    /// peer that acknowledged less and was not resynchronised after it must
    /// be.
    pub fn lost_below(&self) -> u64 {
        self.lost_below
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries dropped because the journal was full.
    pub fn evictions(&self) -> Evictions {
        self.evictions
    }

    /// The configured bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline_location::codec::decode_change;
    use voxline_location::{
        Binding, ChangeOrigin, RemoveReason, Source, Timestamp, Transport, Version,
    };

    fn binding(contact: &str, cseq: u32) -> Binding {
        Binding {
            contact: contact.into(),
            expires: Timestamp::from_secs(2_000_000_000),
            q: 1000,
            call_id: "c1".into(),
            cseq,
            source: Source {
                transport: Transport::Udp,
                remote: "192.0.2.1:5060".parse().unwrap(),
                local: "192.0.2.9:5060".parse().unwrap(),
            },
            path: vec![],
            instance: None,
            reg_id: None,
            params: String::new(),
            user_agent: None,
            registered_at: Timestamp::from_secs(1_900_000_000),
            nat: false,
        }
    }

    fn upsert(aor: &str, contact: &str, cseq: u32) -> LocationChange {
        let b = binding(contact, cseq);
        LocationChange {
            aor: aor.into(),
            key: b.key(),
            kind: ChangeKind::Upsert(Box::new(b)),
            origin: ChangeOrigin::Local,
        }
    }

    fn removal(aor: &str, contact: &str, cseq: u32) -> LocationChange {
        let b = binding(contact, cseq);
        LocationChange {
            aor: aor.into(),
            key: b.key(),
            kind: ChangeKind::Remove {
                version: Version::of(&b),
                reason: RemoveReason::Unregistered,
            },
            origin: ChangeOrigin::Local,
        }
    }

    fn decoded(s: &Slice) -> Vec<LocationChange> {
        s.records
            .iter()
            .map(|r| decode_change(r).unwrap())
            .collect()
    }

    #[test]
    fn changes_come_out_in_order_after_the_acknowledged_point() {
        let mut j = Journal::new(100);
        assert_eq!(j.push(&upsert("a@x", "sip:a@192.0.2.1", 1), 10), 1);
        assert_eq!(j.push(&upsert("b@x", "sip:b@192.0.2.2", 1), 11), 2);
        assert_eq!(j.push(&removal("c@x", "sip:c@192.0.2.3", 1), 12), 3);
        let all = j.slice_after(0, 10);
        assert_eq!(all.upto, 3);
        let aors: Vec<_> = decoded(&all).into_iter().map(|c| c.aor).collect();
        assert_eq!(aors, ["a@x", "b@x", "c@x"]);
        let tail = j.slice_after(1, 1);
        assert_eq!((decoded(&tail)[0].aor.as_str(), tail.upto), ("b@x", 2));
        assert_eq!(j.oldest_after(1), Some(11));
        assert_eq!(j.count_after(1), 2);
        assert!(j.has_after(2) && !j.has_after(3));
        assert_eq!(
            j.slice_after(3, 10),
            Slice {
                records: vec![],
                upto: 3
            }
        );
    }

    #[test]
    fn a_newer_change_to_the_same_binding_replaces_the_older_entry() {
        let mut j = Journal::new(100);
        j.push(&upsert("a@x", "sip:a@192.0.2.1", 1), 10);
        j.push(&upsert("b@x", "sip:b@192.0.2.2", 1), 11);
        j.push(&upsert("a@x", "sip:a@192.0.2.1", 2), 12);
        j.push(&removal("a@x", "sip:a@192.0.2.1", 3), 13);
        assert_eq!(j.len(), 2);
        let s = j.slice_after(0, 10);
        let out = decoded(&s);
        assert_eq!(out[0].aor, "b@x");
        assert!(matches!(out[1].kind, ChangeKind::Remove { .. }));
        assert_eq!(s.upto, 4);
        // A peer that had the first write still gets the removal.
        assert_eq!(j.slice_after(1, 10).records.len(), 2);
        assert_eq!(j.lost_below(), 0, "coalescing loses nothing");
    }

    #[test]
    fn when_full_writes_are_dropped_before_removals() {
        let mut j = Journal::new(3);
        j.push(&removal("r@x", "sip:r@192.0.2.1", 1), 1); // seq 1
        j.push(&upsert("a@x", "sip:a@192.0.2.1", 1), 2); // seq 2
        j.push(&upsert("b@x", "sip:b@192.0.2.1", 1), 3); // seq 3
        j.push(&upsert("c@x", "sip:c@192.0.2.1", 1), 4); // seq 4 evicts 2
        assert_eq!(j.len(), 3);
        assert_eq!(j.lost_below(), 2);
        assert_eq!(
            j.evictions(),
            Evictions {
                upserts: 1,
                removals: 0
            }
        );
        let aors: Vec<_> = decoded(&j.slice_after(0, 10))
            .into_iter()
            .map(|c| c.aor)
            .collect();
        assert_eq!(aors, ["r@x", "b@x", "c@x"]);
        // Only removals left: the oldest removal goes.
        let mut r = Journal::new(2);
        r.push(&removal("a@x", "sip:a@192.0.2.1", 1), 1);
        r.push(&removal("b@x", "sip:b@192.0.2.1", 1), 1);
        r.push(&removal("c@x", "sip:c@192.0.2.1", 1), 1);
        assert_eq!(
            r.evictions(),
            Evictions {
                upserts: 0,
                removals: 1
            }
        );
        assert_eq!(r.lost_below(), 1);
    }

    #[test]
    fn trimming_and_byte_accounting() {
        let mut j = Journal::new(100);
        for i in 0..10 {
            j.push(&upsert(&format!("u{i}@x"), "sip:u@192.0.2.1", 1), i);
        }
        let full = j.bytes();
        assert!(full > 10 * 50, "{full}");
        j.trim(4);
        assert_eq!(j.len(), 6);
        assert_eq!(j.slice_after(0, 100).records.len(), 6);
        j.trim(100);
        assert!(j.is_empty());
        assert_eq!(j.bytes(), 0);
        assert_eq!(j.last_seq(), 10);
    }

    #[test]
    fn a_missed_change_reserves_a_hole_every_peer_must_pass_by_resync() {
        let mut j = Journal::new(100);
        j.push(&upsert("a@x", "sip:a@192.0.2.1", 1), 1);
        j.mark_lost();
        assert_eq!(j.lost_below(), 2);
        assert_eq!(j.push(&upsert("b@x", "sip:b@192.0.2.1", 1), 1), 3);
        // A peer that had seq 1 still has to resync: 2 > 1.
        assert!(j.lost_below() > 1);
    }
}
