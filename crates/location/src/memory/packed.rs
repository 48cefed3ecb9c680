//! Compact in-memory representation: one heap allocation per AOR holding the
//! AOR string, its expiry-timer slot and its encoded bindings; and a timer
//! wheel keyed by second whose buckets are packed AOR strings.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use crate::codec::{self, Reader};
use crate::error::LocationError;
use crate::set::BindingSet;

thread_local! {
    /// The encoding buffer of [`PackedAor::new`].
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest scratch buffer kept between encodings (an AOR with many
/// bindings does not pin its buffer).
const SCRATCH_KEEP: usize = 16 * 1024;

/// `[varint aor_len][aor][u32 LE timer second][encoded binding set]`.
#[derive(Debug, Clone)]
pub(crate) struct PackedAor(Box<[u8]>);

impl PackedAor {
    /// Pack `aor` with its bindings and timer slot (0 = none).
    pub(crate) fn new(aor: &str, timer: u32, set: &BindingSet) -> Self {
        // Encoded in a reused buffer, then copied into one allocation of
        // exactly the right size.
        SCRATCH.with_borrow_mut(|out| {
            out.clear();
            codec::put_str(out, aor);
            out.extend_from_slice(&timer.to_le_bytes());
            codec::encode_set_into(out, set);
            let packed = PackedAor(Box::from(out.as_slice()));
            if out.capacity() > SCRATCH_KEEP {
                *out = Vec::new();
            }
            packed
        })
    }

    /// Pack `aor` with an already encoded (and validated) binding set.
    pub(crate) fn from_encoded(aor: &str, timer: u32, set: &[u8]) -> Self {
        let mut out = Vec::with_capacity(aor.len() + 6 + set.len());
        codec::put_str(&mut out, aor);
        out.extend_from_slice(&timer.to_le_bytes());
        out.extend_from_slice(set);
        PackedAor(out.into_boxed_slice())
    }

    /// Number of bindings (header only).
    pub(crate) fn binding_count(&self) -> u64 {
        codec::set_len(self.set_bytes()).unwrap_or(0)
    }

    /// The three parts, the AOR as bytes: it was a `&str` when packed, and
    /// the table hashes and compares it as bytes, so that lookups do not
    /// check its UTF-8 again (they did, several times per update).
    fn split(&self) -> (&[u8], u32, &[u8]) {
        let mut r = Reader::new(&self.0);
        // Built only by `new`, so these cannot fail; fall back to empty.
        let aor = r.str_bytes().unwrap_or_default();
        let timer = r
            .bytes(4)
            .ok()
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        (aor, timer, r.rest())
    }

    /// The address-of-record.
    pub(crate) fn aor(&self) -> &str {
        std::str::from_utf8(self.split().0).unwrap_or_default()
    }

    /// Second at which this AOR's valid timer entry fires (0 = none).
    pub(crate) fn timer(&self) -> u32 {
        self.split().1
    }

    /// The encoded binding set.
    pub(crate) fn set_bytes(&self) -> &[u8] {
        self.split().2
    }

    /// Decoded bindings and tombstones.
    pub(crate) fn bindings(&self) -> Result<BindingSet, LocationError> {
        codec::decode_set(self.set_bytes())
    }
}

/// Hashed and compared by the AOR's bytes: look an AOR up with
/// `aor.as_bytes()` (a `str` hashes differently).
impl Hash for PackedAor {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.split().0.hash(state);
    }
}

impl PartialEq for PackedAor {
    fn eq(&self, other: &Self) -> bool {
        self.split().0 == other.split().0
    }
}

impl Eq for PackedAor {}

impl Borrow<[u8]> for PackedAor {
    fn borrow(&self) -> &[u8] {
        self.split().0
    }
}

/// Expiry timer: second → packed AORs due then. An AOR has at most one
/// valid entry (the one equal to its [`PackedAor::timer`]); others are stale
/// and skipped when they fire.
#[derive(Debug, Default)]
pub(crate) struct Wheel {
    buckets: BTreeMap<u32, Vec<u8>>,
}

impl Wheel {
    pub(crate) fn schedule(&mut self, second: u32, aor: &str) {
        codec::put_str(self.buckets.entry(second).or_default(), aor);
    }

    /// Remove and return every bucket due at or before `second`.
    pub(crate) fn take_due(&mut self, second: u32) -> Vec<(u32, Vec<u8>)> {
        let later = self.buckets.split_off(&second.saturating_add(1));
        let due = std::mem::replace(&mut self.buckets, later);
        due.into_iter().collect()
    }

    /// Iterate the AORs packed in one bucket.
    pub(crate) fn aors(bucket: &[u8]) -> impl Iterator<Item = &str> {
        let mut r = Reader::new(bucket);
        std::iter::from_fn(move || if r.is_empty() { None } else { r.str().ok() })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.values().map(|b| Wheel::aors(b).count()).sum()
    }
}

/// The wheel second for an expiry: the first whole second at or after it.
pub(crate) fn timer_second(expires_ms: u64) -> u32 {
    u32::try_from(expires_ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn packed_aor_is_found_by_its_bytes_and_round_trips() {
        let b = crate::codec::tests_support::sample(1);
        let set = BindingSet::from_bindings(vec![b]);
        let p = PackedAor::new("u1@example.com", 77, &set);
        assert_eq!(p.aor(), "u1@example.com");
        assert_eq!(p.timer(), 77);
        assert_eq!(p.bindings().unwrap(), set);
        let mut set: HashSet<PackedAor> = HashSet::new();
        set.insert(p);
        assert!(set.contains("u1@example.com".as_bytes()));
        assert!(!set.contains("u2@example.com".as_bytes()));
    }

    #[test]
    fn wheel_returns_due_buckets_only() {
        let mut w = Wheel::default();
        w.schedule(10, "a@x");
        w.schedule(10, "b@x");
        w.schedule(12, "c@x");
        let due = w.take_due(11);
        assert_eq!(due.len(), 1);
        let names: Vec<&str> = Wheel::aors(&due[0].1).collect();
        assert_eq!(names, ["a@x", "b@x"]);
        assert_eq!(w.len(), 1);
        assert_eq!(timer_second(10_001), 11);
        assert_eq!(timer_second(10_000), 10);
    }
}
