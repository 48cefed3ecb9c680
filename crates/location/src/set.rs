//! The sans-IO heart of the store: what one REGISTER, one replicated change
//! or the passing of time does to the bindings of one address-of-record.
//! Both backends load an AOR's bindings, call these functions and store the
//! result.

use std::cmp::Ordering;

use serde::Deserialize;

use crate::binding::{Binding, Contacts, FIELD_MAX, USER_AGENT_MAX, Update, binding_key_of};
use crate::change::{ChangeKind, ChangeOrigin, LocationChange, RemoveReason, Version};
use crate::error::{InvalidInput, LocationError};
use crate::time::Timestamp;
use crate::uri::ContactKey;

/// What to do when a REGISTER would exceed the per-AOR contact limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaxContactsPolicy {
    /// Refuse the REGISTER ([`LocationError::TooManyContacts`]).
    #[default]
    Refuse,
    /// Accept it and drop the least recently registered other bindings.
    DropOldest,
}

/// Per-AOR limits applied by [`apply_update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum live bindings per AOR; 0 = unlimited.
    pub max_contacts: usize,
    /// What to do above the limit.
    pub policy: MaxContactsPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_contacts: 0,
            policy: MaxContactsPolicy::Refuse,
        }
    }
}

/// Most tombstones kept per AOR (the oldest are dropped beyond it).
pub const TOMBSTONES_MAX: usize = 16;

/// Everything stored for one AOR: its bindings and the tombstones of
/// recently removed ones (so a late, older replicated write cannot bring a
/// removed binding back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingSet {
    /// Bindings (possibly past expiry until the next expiry run).
    pub bindings: Vec<Binding>,
    /// Removed bindings' identities and removal versions.
    pub tombstones: Vec<Tombstone>,
}

/// A removed binding: kept until `until` (the removed binding's expiry), after
/// which no older write for it could still be live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// [`Binding::key`] of the removed binding.
    pub key: String,
    /// Version of the removal.
    pub version: Version,
    /// Dropped after this instant.
    pub until: Timestamp,
}

impl BindingSet {
    /// A set of live bindings without tombstones.
    pub fn from_bindings(bindings: Vec<Binding>) -> Self {
        BindingSet {
            bindings,
            tombstones: Vec::new(),
        }
    }

    /// No bindings and no tombstones: nothing to store.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty() && self.tombstones.is_empty()
    }

    pub(crate) fn bury(&mut self, key: String, version: Version, until: Timestamp, now: Timestamp) {
        if until <= now {
            return;
        }
        self.tombstones.retain(|t| t.key != key);
        self.tombstones.push(Tombstone {
            key,
            version,
            until,
        });
        if self.tombstones.len() > TOMBSTONES_MAX {
            self.tombstones
                .sort_by_key(|t| std::cmp::Reverse(t.version.at));
            self.tombstones.truncate(TOMBSTONES_MAX);
        }
    }

    fn unbury(&mut self, key: &str) {
        self.tombstones.retain(|t| t.key != key);
    }

    /// Earliest instant at which something in the set is due (a binding's
    /// expiry or a tombstone's end).
    pub fn next_due(&self) -> Option<Timestamp> {
        let b = self.bindings.iter().map(|b| b.expires);
        b.chain(self.tombstones.iter().map(|t| t.until)).min()
    }

    /// Latest such instant: the set can be dropped entirely after it.
    pub fn last_due(&self) -> Option<Timestamp> {
        let b = self.bindings.iter().map(|b| b.expires);
        b.chain(self.tombstones.iter().map(|t| t.until)).max()
    }
}

/// Check an AOR and update before touching any state.
pub fn validate(aor: &str, update: &Update) -> Result<(), InvalidInput> {
    if aor.is_empty() {
        return Err(InvalidInput::EmptyAor);
    }
    if aor.len() > 1024 {
        return Err(InvalidInput::TooLong("aor"));
    }
    if update.call_id.len() > FIELD_MAX {
        return Err(InvalidInput::TooLong("call-id"));
    }
    if update.path.len() > 64 || update.path.iter().any(|p| p.len() > FIELD_MAX) {
        return Err(InvalidInput::TooLong("path"));
    }
    if let Contacts::List(list) = &update.contacts {
        if list.len() > 1024 {
            return Err(InvalidInput::TooLong("contact list"));
        }
        for c in list {
            if c.uri.trim().is_empty() {
                return Err(InvalidInput::EmptyContact);
            }
            if c.uri.len() > FIELD_MAX
                || c.params.len() > FIELD_MAX
                || c.instance.as_ref().is_some_and(|i| i.len() > FIELD_MAX)
            {
                return Err(InvalidInput::TooLong("contact"));
            }
            if c.q > 1000 {
                return Err(InvalidInput::QOutOfRange);
            }
        }
    }
    Ok(())
}

fn truncate_user_agent(ua: &str) -> String {
    if ua.len() <= USER_AGENT_MAX {
        return ua.to_owned();
    }
    let mut end = USER_AGENT_MAX;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua.get(..end).unwrap_or_default().to_owned()
}

fn local(aor: &str, key: String, kind: ChangeKind) -> LocationChange {
    LocationChange {
        aor: aor.to_owned(),
        key,
        kind,
        origin: ChangeOrigin::Local,
    }
}

fn removal(aor: &str, b: &Binding, version: Version, reason: RemoveReason) -> LocationChange {
    local(aor, b.key(), ChangeKind::Remove { version, reason })
}

/// Remove bindings whose expiry is at or before `now` (and tombstones that
/// ended); report the bindings.
pub fn expire_due(aor: &str, set: &mut BindingSet, now: Timestamp) -> Vec<LocationChange> {
    let mut changes = Vec::new();
    set.tombstones.retain(|t| t.until > now);
    set.bindings.retain(|b| {
        if b.is_live(now) {
            true
        } else {
            changes.push(removal(aor, b, Version::of(b), RemoveReason::Expired));
            false
        }
    });
    changes
}

/// Apply one REGISTER to the bindings of `aor` (RFC 3261 §10.3 steps 6–8,
/// RFC 5626 instance matching). On error `bindings` is left unchanged and the
/// whole request is refused. Expired bindings found on the way are removed
/// and reported too.
pub fn apply_update(
    aor: &str,
    set: &mut BindingSet,
    update: &Update,
    now: Timestamp,
    limits: Limits,
) -> Result<Vec<LocationChange>, LocationError> {
    validate(aor, update)?;
    let mut work = set.clone();
    let mut changes = expire_due(aor, &mut work, now);
    let before = work.bindings.len();
    let mut next = std::mem::take(&mut work.bindings);
    let req_version = Version {
        call_id: update.call_id.clone(),
        cseq: update.cseq,
        at: now,
    };
    let stale = |b: &Binding| b.call_id == update.call_id && b.cseq >= update.cseq;
    match &update.contacts {
        Contacts::RemoveAll => {
            if let Some(b) = next.iter().find(|b| stale(b)) {
                return Err(LocationError::OutOfOrder {
                    cseq: update.cseq,
                    stored_cseq: b.cseq,
                });
            }
            for b in next.drain(..) {
                changes.push(removal(
                    aor,
                    &b,
                    req_version.clone(),
                    RemoveReason::Unregistered,
                ));
            }
        }
        Contacts::List(list) => {
            // Bindings written by this request: a repeated contact in the same
            // REGISTER is not an out-of-order request.
            let mut touched: Vec<bool> = vec![false; next.len()];
            let user_agent = update.user_agent.as_deref().map(truncate_user_agent);
            for c in list {
                let key = ContactKey::parse(&c.uri);
                let found = next
                    .iter()
                    .position(|b| b.matches(&c.uri, &key, c.instance.as_deref(), c.reg_id));
                if let Some(i) = found {
                    let already = touched.get(i).copied().unwrap_or(false);
                    if let Some(old) = next.get(i).filter(|b| !already && stale(b)) {
                        return Err(LocationError::OutOfOrder {
                            cseq: update.cseq,
                            stored_cseq: old.cseq,
                        });
                    }
                }
                if c.expires == 0 {
                    if let Some(i) = found {
                        let old = next.remove(i);
                        touched.remove(i);
                        changes.push(removal(
                            aor,
                            &old,
                            req_version.clone(),
                            RemoveReason::Unregistered,
                        ));
                    }
                    continue;
                }
                let binding = Binding {
                    contact: c.uri.clone(),
                    expires: now.add_secs(u64::from(c.expires)),
                    q: c.q,
                    call_id: update.call_id.clone(),
                    cseq: update.cseq,
                    source: update.source,
                    path: update.path.clone(),
                    instance: c.instance.clone(),
                    reg_id: c.reg_id,
                    params: c.params.clone(),
                    user_agent: user_agent.clone(),
                    registered_at: now,
                    nat: update.nat,
                };
                let new_key = binding_key_of(&key, c.instance.as_deref(), c.reg_id);
                match found.and_then(|i| next.get_mut(i).map(|slot| (i, slot))) {
                    Some((i, slot)) => {
                        let old = std::mem::replace(slot, binding.clone());
                        if let Some(t) = touched.get_mut(i) {
                            *t = true;
                        }
                        // The key is made of these three: a refresh written
                        // as before keeps it without computing it again.
                        let same_key = old.contact == binding.contact
                            && old.instance == binding.instance
                            && old.reg_id == binding.reg_id;
                        if !same_key && old.key() != new_key {
                            changes.push(removal(
                                aor,
                                &old,
                                req_version.clone(),
                                RemoveReason::Replaced,
                            ));
                        }
                    }
                    None => {
                        next.push(binding.clone());
                        touched.push(true);
                    }
                }
                // One upsert per binding and request: a repeated contact
                // replaces the earlier write (both carry the same version).
                changes
                    .retain(|ch| !(ch.key == new_key && matches!(ch.kind, ChangeKind::Upsert(_))));
                changes.push(local(aor, new_key, ChangeKind::Upsert(Box::new(binding))));
            }
            enforce_limit(
                aor,
                &mut next,
                &touched,
                before,
                limits,
                &req_version,
                &mut changes,
            )?;
        }
    }
    work.bindings = next;
    // Tombstones: removed bindings are buried until their old expiry,
    // written ones are unburied.
    for c in &changes {
        match &c.kind {
            ChangeKind::Upsert(_) => work.unbury(&c.key),
            ChangeKind::Remove {
                version,
                reason: RemoveReason::Unregistered | RemoveReason::Replaced | RemoveReason::Dropped,
            } => {
                let until = set
                    .bindings
                    .iter()
                    .filter(|b| b.key() == c.key)
                    .map(|b| b.expires)
                    .max()
                    .unwrap_or(now);
                if !work.bindings.iter().any(|b| b.key() == c.key) {
                    work.bury(c.key.clone(), version.clone(), until, now);
                }
            }
            ChangeKind::Remove { .. } => {}
        }
    }
    *set = work;
    Ok(changes)
}

fn enforce_limit(
    aor: &str,
    next: &mut Vec<Binding>,
    touched: &[bool],
    before: usize,
    limits: Limits,
    req_version: &Version,
    changes: &mut Vec<LocationChange>,
) -> Result<(), LocationError> {
    let max = limits.max_contacts;
    if max == 0 || next.len() <= max {
        return Ok(());
    }
    match limits.policy {
        MaxContactsPolicy::Refuse => {
            // A refresh in an AOR that is over a (lowered) limit is still
            // accepted; only growth is refused.
            if next.len() > before {
                return Err(LocationError::TooManyContacts { limit: max });
            }
        }
        MaxContactsPolicy::DropOldest => {
            // Oldest untouched first, then oldest of this request.
            let mut order: Vec<usize> = (0..next.len()).collect();
            order.sort_by(|&a, &b| {
                let ta = touched.get(a).copied().unwrap_or(false);
                let tb = touched.get(b).copied().unwrap_or(false);
                let ra = next.get(a).map(|x| x.registered_at);
                let rb = next.get(b).map(|x| x.registered_at);
                ta.cmp(&tb).then(ra.cmp(&rb))
            });
            let mut drop: Vec<usize> = order.into_iter().take(next.len() - max).collect();
            drop.sort_unstable_by(|a, b| b.cmp(a));
            for i in drop {
                if i < next.len() {
                    let old = next.remove(i);
                    changes.push(removal(
                        aor,
                        &old,
                        req_version.clone(),
                        RemoveReason::Dropped,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What [`apply_replicated`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaOutcome {
    /// The change was newer and is now reflected in the bindings.
    Applied,
    /// Not newer than what is stored: nothing changed.
    Ignored,
    /// A removal of an unknown binding: only remembered as a tombstone
    /// (the set must still be written).
    Remembered,
}

/// Apply a change from a peer site: idempotent, and a change that is not
/// newer than what is stored (binding or tombstone) is ignored.
pub fn apply_replicated(
    set: &mut BindingSet,
    change: &LocationChange,
    now: Timestamp,
) -> ReplicaOutcome {
    use ReplicaOutcome::{Applied, Ignored, Remembered};
    let version = change.version();
    let existing = set.bindings.iter().position(|b| b.key() == change.key);
    let buried = set
        .tombstones
        .iter()
        .find(|t| t.key == change.key)
        .map(|t| t.version.clone());
    match (&change.kind, existing) {
        (ChangeKind::Upsert(new), Some(i)) => {
            let newer = set
                .bindings
                .get(i)
                .is_some_and(|old| version.compare(&Version::of(old)) == Ordering::Greater);
            if !newer {
                return Ignored;
            }
            if new.is_live(now) {
                if let Some(slot) = set.bindings.get_mut(i) {
                    *slot = Binding::clone(new);
                }
            } else {
                set.bindings.remove(i);
            }
            Applied
        }
        (ChangeKind::Upsert(new), None) => {
            let after_removal = buried.is_none_or(|t| version.compare(&t) == Ordering::Greater);
            if new.is_live(now) && after_removal {
                set.unbury(&change.key);
                set.bindings.push(Binding::clone(new));
                Applied
            } else {
                Ignored
            }
        }
        (ChangeKind::Remove { .. }, Some(i)) => {
            let Some(old) = set.bindings.get(i) else {
                return Ignored;
            };
            if version.compare(&Version::of(old)) == Ordering::Less {
                return Ignored;
            }
            let until = old.expires;
            set.bindings.remove(i);
            set.bury(change.key.clone(), version, until, now);
            Applied
        }
        (ChangeKind::Remove { .. }, None) => {
            // Remember the removal so an older upsert arriving later is
            // ignored (kept for a while: the removed binding's expiry is
            // unknown here).
            if buried.is_some_and(|t| version.compare(&t) != Ordering::Greater) {
                return Ignored;
            }
            set.bury(
                change.key.clone(),
                version,
                now.add_secs(REPLICATED_TOMBSTONE_SECS),
                now,
            );
            Remembered
        }
    }
}

/// How long a tombstone for a replicated removal of an unknown binding is
/// kept.
pub const REPLICATED_TOMBSTONE_SECS: u64 = 3600;

/// Live bindings in lookup order: q descending, then most recently
/// registered first, then by contact for a stable order.
pub fn live_sorted(bindings: &[Binding], now: Timestamp) -> Vec<Binding> {
    let out: Vec<Binding> = bindings
        .iter()
        .filter(|b| b.is_live(now))
        .cloned()
        .collect();
    sort_for_lookup(out)
}

/// [`live_sorted`] of owned bindings, without copying them.
pub fn into_live_sorted(mut bindings: Vec<Binding>, now: Timestamp) -> Vec<Binding> {
    bindings.retain(|b| b.is_live(now));
    sort_for_lookup(bindings)
}

fn sort_for_lookup(mut out: Vec<Binding>) -> Vec<Binding> {
    if out.len() > 1 {
        out.sort_by(|a, b| {
            b.q.cmp(&a.q)
                .then(b.registered_at.cmp(&a.registered_at))
                .then_with(|| a.contact.cmp(&b.contact))
        });
    }
    out
}

#[cfg(test)]
#[path = "set_tests.rs"]
mod tests;
