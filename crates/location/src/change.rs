//! The change feed: every binding written or removed becomes a
//! [`LocationChange`], which a replicator ships to a peer site and applies
//! there with `apply_replicated` (idempotent, older changes ignored).

use std::cmp::Ordering;

use crate::binding::Binding;
use crate::time::Timestamp;

/// One binding written or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationChange {
    /// Address-of-record.
    pub aor: String,
    /// Identity of the binding inside the AOR ([`Binding::key`]).
    pub key: String,
    /// Write or removal.
    pub kind: ChangeKind,
    /// Whether the change was made here or applied from a peer.
    pub origin: ChangeOrigin,
}

/// What happened to the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The binding was created or refreshed; the full new value.
    Upsert(Box<Binding>),
    /// The binding was removed.
    Remove {
        /// Version of the removal: Call-ID/CSeq of the request that removed
        /// it (for expiry or admin removal, the binding's own), and when.
        version: Version,
        /// Why.
        reason: RemoveReason,
    },
}

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOrigin {
    /// Made by a REGISTER, expiry or admin action on this node.
    Local,
    /// Applied from a peer through `apply_replicated`.
    Replicated,
}

/// Why a binding was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// `expires=0` or `*`.
    Unregistered,
    /// Same contact/instance re-registered with a new Call-ID, which replaced
    /// the old binding (the new value follows as an upsert).
    Replaced,
    /// Its expiry time passed.
    Expired,
    /// Dropped to make room (max-contacts policy `drop-oldest`).
    Dropped,
    /// Removed by an administrator (`remove_aor`).
    Admin,
}

/// The order of writes to one binding: within one Call-ID by CSeq, across
/// Call-IDs by time (then CSeq and Call-ID, so every site picks the same
/// winner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Call-ID of the request.
    pub call_id: String,
    /// CSeq of the request.
    pub cseq: u32,
    /// When it was applied.
    pub at: Timestamp,
}

impl Version {
    /// The version of a stored binding.
    pub fn of(b: &Binding) -> Self {
        Version {
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            at: b.registered_at,
        }
    }

    /// Total order used for replication.
    pub fn compare(&self, other: &Version) -> Ordering {
        if self.call_id == other.call_id {
            self.cseq.cmp(&other.cseq).then(self.at.cmp(&other.at))
        } else {
            self.at
                .cmp(&other.at)
                .then(self.cseq.cmp(&other.cseq))
                .then_with(|| self.call_id.cmp(&other.call_id))
        }
    }
}

impl LocationChange {
    /// The version this change carries.
    pub fn version(&self) -> Version {
        match &self.kind {
            ChangeKind::Upsert(b) => Version::of(b),
            ChangeKind::Remove { version, .. } => version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(call_id: &str, cseq: u32, at: u64) -> Version {
        Version {
            call_id: call_id.into(),
            cseq,
            at: Timestamp::from_millis(at),
        }
    }

    #[test]
    fn same_call_id_orders_by_cseq_even_against_clock() {
        assert_eq!(v("a", 2, 100).compare(&v("a", 3, 50)), Ordering::Less);
        assert_eq!(v("a", 3, 100).compare(&v("a", 3, 100)), Ordering::Equal);
    }

    #[test]
    fn different_call_id_orders_by_time() {
        assert_eq!(v("a", 900, 100).compare(&v("b", 1, 200)), Ordering::Less);
        assert_eq!(v("b", 1, 200).compare(&v("a", 900, 100)), Ordering::Greater);
        // Deterministic tie-break.
        assert_eq!(v("a", 1, 100).compare(&v("b", 1, 100)), Ordering::Less);
    }
}
