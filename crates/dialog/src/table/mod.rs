//! The dialog table: sharded by Call-ID, with a deadline index per shard.

mod record;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;
use serde::Serialize;

use crate::{
    DialogConfig, DialogInfo, DialogState, Ended, Hangup, LimitExceeded, NewCall, Teardown,
};
use record::Record;

const SHARDS: usize = 16;

/// One side of a dialog, as the proxy needs it to send a request (BYE)
/// towards that side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leg {
    /// Request-URI: the remote target (that side's Contact).
    pub request_uri: String,
    /// Route values, in order.
    pub routes: Vec<String>,
    /// Where to send it (first hop).
    pub next_hop: SocketAddr,
    /// Transport to the first hop.
    pub transport: String,
    /// From header value (the other party, with its tag).
    pub from: String,
    /// To header value (this party, with its tag).
    pub to: String,
    /// CSeq number for a request the proxy sends on this leg: above every
    /// CSeq this party has received from the other side (filled in when
    /// the proxy ends the dialog).
    pub cseq: u32,
}

/// The dialogs whose Call-ID hashes to one shard.
#[derive(Default)]
struct Shard {
    /// Keyed by (Call-ID, caller's From tag), which the records hold
    /// themselves: the table stores no copy of the key.
    dialogs: HashTable<Box<Record>>,
    /// (deadline ms, id, key hash): the hash finds the record again.
    deadlines: BTreeSet<(u64, u64, u64)>,
}

impl Shard {
    fn get_mut(&mut self, hash: u64, call_id: &str, from_tag: &str) -> Option<&mut Record> {
        self.dialogs
            .find_mut(hash, |r| r.is(call_id, from_tag))
            .map(|b| &mut **b)
    }

    fn contains(&self, hash: u64, call_id: &str, from_tag: &str) -> bool {
        self.dialogs
            .find(hash, |r| r.is(call_id, from_tag))
            .is_some()
    }

    fn remove(&mut self, hash: u64, call_id: &str, from_tag: &str) -> Option<Box<Record>> {
        let d = self
            .dialogs
            .find_entry(hash, |r| r.is(call_id, from_tag))
            .ok()?
            .remove()
            .0;
        self.deadlines.remove(&(d.deadline, d.id, hash));
        Some(d)
    }

    fn insert(&mut self, hash: u64, d: Box<Record>, hasher: &RandomState) {
        self.deadlines.insert((d.deadline, d.id, hash));
        self.dialogs
            .insert_unique(hash, d, |r| key_hash(hasher, r.call_id(), r.caller_tag()));
    }
}

fn key_hash(hasher: &RandomState, call_id: &str, from_tag: &str) -> u64 {
    hasher.hash_one((call_id, from_tag))
}

#[derive(Default)]
struct Counts {
    subscribers: HashMap<String, u32>,
    domains: HashMap<String, u32>,
    early: usize,
    confirmed: usize,
}

/// Every dialog of a proxy.
pub struct DialogTable {
    config: DialogConfig,
    shards: Vec<Mutex<Shard>>,
    counts: Mutex<Counts>,
    next_id: AtomicU64,
    hasher: RandomState,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a few map operations that cannot be left half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DialogTable {
    /// An empty table.
    pub fn new(config: DialogConfig) -> Self {
        DialogTable {
            config,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            counts: Mutex::default(),
            next_id: AtomicU64::new(1),
            hasher: RandomState::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DialogConfig {
        &self.config
    }

    fn shard(&self, call_id: &str) -> &Mutex<Shard> {
        let i = (self.hasher.hash_one(call_id) as usize) % SHARDS;
        &self.shards[i]
    }

    fn key_hash(&self, call_id: &str, from_tag: &str) -> u64 {
        key_hash(&self.hasher, call_id, from_tag)
    }

    /// Starts tracking a call attempt, or refuses it over a limit.
    pub fn begin(&self, call: NewCall, now: u64) -> Result<u64, LimitExceeded> {
        {
            let mut counts = lock(&self.counts);
            let limit = |n: u32, max: u32| max > 0 && n >= max;
            if let Some(s) = &call.subscriber
                && limit(
                    counts.subscribers.get(s).copied().unwrap_or(0),
                    self.config.max_calls_per_subscriber,
                )
            {
                return Err(self.limit("concurrent call limit of the subscriber reached"));
            }
            if let Some(d) = &call.domain
                && limit(
                    counts.domains.get(d).copied().unwrap_or(0),
                    self.config.max_calls_per_domain,
                )
            {
                return Err(self.limit("concurrent call limit of the domain reached"));
            }
            if let Some(s) = &call.subscriber {
                *counts.subscribers.entry(s.clone()).or_default() += 1;
            }
            if let Some(d) = &call.domain {
                *counts.domains.entry(d.clone()).or_default() += 1;
            }
            counts.early += 1;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let deadline = now + self.config.max_ringing_secs.max(1) * 1000;
        let dialog = Box::new(Record::new(&call, id, now, deadline));
        let hash = self.key_hash(&call.call_id, &call.from_tag);
        let mut shard = lock(self.shard(&call.call_id));
        if let Some(old) = shard.remove(hash, &call.call_id, &call.from_tag) {
            // A retried INVITE with the same Call-ID and tag replaces it.
            drop(shard);
            self.release(&old);
            shard = lock(self.shard(&call.call_id));
        }
        shard.insert(hash, dialog, &self.hasher);
        Ok(id)
    }

    fn limit(&self, reason: &'static str) -> LimitExceeded {
        LimitExceeded {
            status: self.config.limit_status,
            reason: if self.config.limit_status == 486 {
                "Busy Here - concurrent call limit reached"
            } else {
                reason
            },
        }
    }

    /// Records the relay that anchors the call's media.
    pub fn set_relay(&self, call_id: &str, from_tag: &str, relay: &str) {
        let hash = self.key_hash(call_id, from_tag);
        let mut shard = lock(self.shard(call_id));
        if let Some(d) = shard.get_mut(hash, call_id, from_tag) {
            d.set_relay(relay);
        }
    }

    /// Replaces the caller's leg (known completely only once the 2xx gives
    /// the callee's tag and the Record-Route set).
    pub fn update_caller_leg(&self, call_id: &str, from_tag: &str, leg: Leg) {
        let hash = self.key_hash(call_id, from_tag);
        let mut shard = lock(self.shard(call_id));
        if let Some(d) = shard.get_mut(hash, call_id, from_tag) {
            d.set_caller_leg(&leg);
        }
    }

    /// A 2xx to the initial INVITE: the call is up. Returns false when the
    /// dialog is unknown or already confirmed with another tag (a second
    /// forked 2xx, which the proxy passes on but does not track).
    pub fn confirm(
        &self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        callee_leg: Leg,
        now: u64,
    ) -> bool {
        let hash = self.key_hash(call_id, from_tag);
        let mut shard = lock(self.shard(call_id));
        let Some(d) = shard.get_mut(hash, call_id, from_tag) else {
            return false;
        };
        if d.state == DialogState::Confirmed {
            return d.to_tag() == Some(to_tag);
        }
        d.confirm(to_tag, &callee_leg, now);
        let old = (d.deadline, d.id, hash);
        d.deadline = if self.config.max_duration_secs == 0 {
            u64::MAX
        } else {
            now + self.config.max_duration_secs * 1000
        };
        let new = (d.deadline, d.id, hash);
        shard.deadlines.remove(&old);
        shard.deadlines.insert(new);
        drop(shard);
        let mut counts = lock(&self.counts);
        counts.early = counts.early.saturating_sub(1);
        counts.confirmed += 1;
        true
    }

    /// The call attempt failed (final response ≥ 300, CANCEL, timeout):
    /// forget it and return its record.
    pub fn fail(
        &self,
        call_id: &str,
        from_tag: &str,
        status: u16,
        reason: &str,
        hangup: Hangup,
        now: u64,
    ) -> Option<Ended> {
        let hash = self.key_hash(call_id, from_tag);
        let mut shard = lock(self.shard(call_id));
        let d = shard.get_mut(hash, call_id, from_tag)?;
        if d.state == DialogState::Confirmed {
            // A late failure of an answered call cannot happen; keep it.
            return None;
        }
        let d = shard.remove(hash, call_id, from_tag)?;
        drop(shard);
        Some(self.finish(&d, status, reason, hangup, now))
    }

    /// An in-dialog request from one side: updates activity and CSeq.
    /// Returns the dialog and whether the request came from the caller.
    pub fn touch(
        &self,
        call_id: &str,
        from_tag: Option<&str>,
        to_tag: Option<&str>,
        cseq: u32,
        now: u64,
    ) -> Option<(DialogInfo, bool)> {
        let mut shard = lock(self.shard(call_id));
        let (hash, tag, from_caller) = self.find(&shard, call_id, from_tag, to_tag)?;
        let d = shard.get_mut(hash, call_id, tag)?;
        d.last_activity_ms = now;
        if from_caller {
            d.caller_cseq = d.caller_cseq.max(cseq);
        } else {
            d.callee_cseq = d.callee_cseq.max(cseq);
        }
        Some((d.info(), from_caller))
    }

    /// A BYE (or other ending) of a confirmed dialog from one side.
    pub fn end(
        &self,
        call_id: &str,
        from_tag: Option<&str>,
        to_tag: Option<&str>,
        hangup_by_caller: bool,
        now: u64,
    ) -> Option<Ended> {
        let mut shard = lock(self.shard(call_id));
        let (hash, tag, _) = self.find(&shard, call_id, from_tag, to_tag)?;
        let d = shard.remove(hash, call_id, tag)?;
        drop(shard);
        let hangup = if hangup_by_caller {
            Hangup::Caller
        } else {
            Hangup::Callee
        };
        Some(self.finish(&d, 200, "OK", hangup, now))
    }

    /// Ends a dialog on the proxy's own initiative (max duration, no media,
    /// operator): the legs to send a BYE on, and the record.
    pub fn teardown(
        &self,
        call_id: &str,
        from_tag: &str,
        reason: &str,
        now: u64,
    ) -> Option<Teardown> {
        let hash = self.key_hash(call_id, from_tag);
        let d = lock(self.shard(call_id)).remove(hash, call_id, from_tag)?;
        Some(self.teardown_of(&d, reason, now))
    }

    fn teardown_of(&self, d: &Record, reason: &str, now: u64) -> Teardown {
        let caller = with_cseq(d.caller_leg(), d.callee_cseq);
        let callee = d.callee_leg().map(|l| with_cseq(l, d.caller_cseq));
        let answered = d.state == DialogState::Confirmed;
        let (status, text) = if answered {
            (200, "OK")
        } else {
            (408, "Request Timeout")
        };
        let ended = self.finish(d, status, text, Hangup::Proxy(reason.to_owned()), now);
        Teardown {
            ended,
            caller,
            callee,
        }
    }

    /// Dialogs past their deadline (max duration, or ringing too long).
    pub fn expired(&self, now: u64) -> Vec<Teardown> {
        let mut due = Vec::new();
        for shard in &self.shards {
            let mut s = lock(shard);
            while let Some(&(deadline, id, hash)) = s.deadlines.iter().next() {
                if deadline > now {
                    break;
                }
                s.deadlines.remove(&(deadline, id, hash));
                if let Ok(entry) = s.dialogs.find_entry(hash, |r| r.id == id) {
                    due.push(entry.remove().0);
                }
            }
        }
        due.into_iter()
            .map(|d| {
                let reason = if d.state == DialogState::Confirmed {
                    "max-duration"
                } else {
                    "ringing-timeout"
                };
                self.teardown_of(&d, reason, now)
            })
            .collect()
    }

    /// Confirmed dialogs without in-dialog traffic for the configured time,
    /// not checked since: the proxy asks the relay whether media still flows.
    pub fn quiet(&self, now: u64) -> Vec<DialogInfo> {
        let secs = self.config.inactivity_check_secs;
        if secs == 0 {
            return Vec::new();
        }
        let window = secs * 1000;
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut s = lock(shard);
            for d in s.dialogs.iter_mut() {
                if d.state == DialogState::Confirmed
                    && d.last_activity_ms + window <= now
                    && d.last_media_check + window <= now
                {
                    d.last_media_check = now;
                    out.push(d.info());
                }
            }
        }
        out
    }

    /// All current dialogs (admin listing).
    pub fn list(&self) -> Vec<DialogInfo> {
        let mut out: Vec<DialogInfo> = self
            .shards
            .iter()
            .flat_map(|s| lock(s).dialogs.iter().map(|d| d.info()).collect::<Vec<_>>())
            .collect();
        out.sort_by_key(|d| d.started_ms);
        out
    }

    /// (early, confirmed) dialogs.
    pub fn counts(&self) -> (usize, usize) {
        let c = lock(&self.counts);
        (c.early, c.confirmed)
    }

    /// The dialog a request belongs to: its key hash, the caller's tag,
    /// and whether the caller sent the request.
    fn find<'t>(
        &self,
        shard: &Shard,
        call_id: &str,
        from_tag: Option<&'t str>,
        to_tag: Option<&'t str>,
    ) -> Option<(u64, &'t str, bool)> {
        if let Some(f) = from_tag {
            let hash = self.key_hash(call_id, f);
            if shard.contains(hash, call_id, f) {
                return Some((hash, f, true));
            }
        }
        if let Some(t) = to_tag {
            let hash = self.key_hash(call_id, t);
            if shard.contains(hash, call_id, t) {
                return Some((hash, t, false));
            }
        }
        None
    }

    fn release(&self, d: &Record) {
        let mut counts = lock(&self.counts);
        if let Some(s) = d.subscriber()
            && let Some(n) = counts.subscribers.get_mut(s)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.subscribers.remove(s);
            }
        }
        if let Some(dom) = d.domain()
            && let Some(n) = counts.domains.get_mut(dom)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.domains.remove(dom);
            }
        }
        match d.state {
            DialogState::Early => counts.early = counts.early.saturating_sub(1),
            DialogState::Confirmed => counts.confirmed = counts.confirmed.saturating_sub(1),
            DialogState::Terminated => {}
        }
    }

    fn finish(&self, d: &Record, status: u16, reason: &str, hangup: Hangup, now: u64) -> Ended {
        self.release(d);
        let mut info = d.info();
        info.state = DialogState::Terminated;
        Ended {
            info,
            ended_ms: now,
            status,
            reason: reason.to_owned(),
            hangup,
        }
    }
}

/// The leg with the CSeq a new request on it must carry: above anything
/// the other side has sent (the receiving UA checks remote CSeq order).
fn with_cseq(mut leg: Leg, seen: u32) -> Leg {
    leg.cseq = seen.saturating_add(1).max(1);
    leg
}

#[cfg(test)]
mod tests;
