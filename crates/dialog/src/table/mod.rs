//! The dialog table: sharded by Call-ID, with a deadline index per shard.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::{
    DialogConfig, DialogInfo, DialogState, Ended, Hangup, LimitExceeded, NewCall, Teardown,
};

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

struct Dialog {
    info: DialogInfo,
    subscriber: Option<String>,
    domain: Option<String>,
    caller_leg: Leg,
    callee_leg: Option<Leg>,
    caller_cseq: u32,
    callee_cseq: u32,
    deadline: u64,
    last_media_check: u64,
}

#[derive(Default)]
struct Shard {
    dialogs: HashMap<(String, String), Dialog>,
    /// (deadline ms, id) → key.
    deadlines: BTreeSet<(u64, u64)>,
    by_id: HashMap<u64, (String, String)>,
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
        let key = (call.call_id.clone(), call.from_tag.clone());
        let dialog = Dialog {
            info: DialogInfo {
                id,
                call_id: call.call_id,
                from_tag: call.from_tag,
                to_tag: None,
                state: DialogState::Early,
                caller: call.caller,
                callee: call.callee,
                source: call.source.to_string(),
                transport: call.transport,
                started_ms: now,
                answered_ms: None,
                last_activity_ms: now,
                relay: None,
            },
            subscriber: call.subscriber,
            domain: call.domain,
            caller_leg: call.caller_leg,
            callee_leg: None,
            caller_cseq: call.cseq,
            callee_cseq: 0,
            deadline,
            last_media_check: now,
        };
        let mut shard = lock(self.shard(&key.0));
        if let Some(old) = shard.dialogs.remove(&key) {
            // A retried INVITE with the same Call-ID and tag replaces it.
            shard.deadlines.remove(&(old.deadline, old.info.id));
            shard.by_id.remove(&old.info.id);
            drop(shard);
            self.release(&old);
            shard = lock(self.shard(&key.0));
        }
        shard.deadlines.insert((deadline, id));
        shard.by_id.insert(id, key.clone());
        shard.dialogs.insert(key, dialog);
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
        let mut shard = lock(self.shard(call_id));
        if let Some(d) = shard
            .dialogs
            .get_mut(&(call_id.to_owned(), from_tag.to_owned()))
        {
            d.info.relay = Some(relay.to_owned());
        }
    }

    /// Replaces the caller's leg (known completely only once the 2xx gives
    /// the callee's tag and the Record-Route set).
    pub fn update_caller_leg(&self, call_id: &str, from_tag: &str, leg: Leg) {
        let mut shard = lock(self.shard(call_id));
        if let Some(d) = shard
            .dialogs
            .get_mut(&(call_id.to_owned(), from_tag.to_owned()))
        {
            d.caller_leg = leg;
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
        let key = (call_id.to_owned(), from_tag.to_owned());
        let mut shard = lock(self.shard(call_id));
        let Some(d) = shard.dialogs.get_mut(&key) else {
            return false;
        };
        if d.info.state == DialogState::Confirmed {
            return d.info.to_tag.as_deref() == Some(to_tag);
        }
        d.info.state = DialogState::Confirmed;
        d.info.to_tag = Some(to_tag.to_owned());
        d.info.answered_ms = Some(now);
        d.info.last_activity_ms = now;
        d.callee_leg = Some(callee_leg);
        let old = (d.deadline, d.info.id);
        d.deadline = if self.config.max_duration_secs == 0 {
            u64::MAX
        } else {
            now + self.config.max_duration_secs * 1000
        };
        let new = (d.deadline, d.info.id);
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
        let d = self.remove(&(call_id.to_owned(), from_tag.to_owned()))?;
        if d.info.state == DialogState::Confirmed {
            // A late failure of an answered call cannot happen; keep it.
            self.reinsert(d);
            return None;
        }
        Some(self.finish(d, status, reason, hangup, now))
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
        let (key, from_caller) = find_key(&shard, call_id, from_tag, to_tag)?;
        let d = shard.dialogs.get_mut(&key)?;
        d.info.last_activity_ms = now;
        if from_caller {
            d.caller_cseq = d.caller_cseq.max(cseq);
        } else {
            d.callee_cseq = d.callee_cseq.max(cseq);
        }
        Some((d.info.clone(), from_caller))
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
        let key = {
            let shard = lock(self.shard(call_id));
            find_key(&shard, call_id, from_tag, to_tag)?.0
        };
        let d = self.remove(&key)?;
        let hangup = if hangup_by_caller {
            Hangup::Caller
        } else {
            Hangup::Callee
        };
        Some(self.finish(d, 200, "OK", hangup, now))
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
        let d = self.remove(&(call_id.to_owned(), from_tag.to_owned()))?;
        Some(self.teardown_of(d, reason, now))
    }

    fn teardown_of(&self, d: Dialog, reason: &str, now: u64) -> Teardown {
        let caller = with_cseq(d.caller_leg.clone(), d.callee_cseq);
        let callee = d.callee_leg.clone().map(|l| with_cseq(l, d.caller_cseq));
        let answered = d.info.state == DialogState::Confirmed;
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
            while let Some(&(deadline, id)) = s.deadlines.iter().next() {
                if deadline > now {
                    break;
                }
                s.deadlines.remove(&(deadline, id));
                if let Some(key) = s.by_id.remove(&id)
                    && let Some(d) = s.dialogs.remove(&key)
                {
                    due.push(d);
                }
            }
        }
        due.into_iter()
            .map(|d| {
                let reason = if d.info.state == DialogState::Confirmed {
                    "max-duration"
                } else {
                    "ringing-timeout"
                };
                self.teardown_of(d, reason, now)
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
            for d in s.dialogs.values_mut() {
                if d.info.state == DialogState::Confirmed
                    && d.info.last_activity_ms + window <= now
                    && d.last_media_check + window <= now
                {
                    d.last_media_check = now;
                    out.push(d.info.clone());
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
            .flat_map(|s| {
                lock(s)
                    .dialogs
                    .values()
                    .map(|d| d.info.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by_key(|d| d.started_ms);
        out
    }

    /// (early, confirmed) dialogs.
    pub fn counts(&self) -> (usize, usize) {
        let c = lock(&self.counts);
        (c.early, c.confirmed)
    }

    fn remove(&self, key: &(String, String)) -> Option<Dialog> {
        let mut shard = lock(self.shard(&key.0));
        let d = shard.dialogs.remove(key)?;
        shard.deadlines.remove(&(d.deadline, d.info.id));
        shard.by_id.remove(&d.info.id);
        Some(d)
    }

    fn reinsert(&self, d: Dialog) {
        let key = (d.info.call_id.clone(), d.info.from_tag.clone());
        let mut shard = lock(self.shard(&key.0));
        shard.deadlines.insert((d.deadline, d.info.id));
        shard.by_id.insert(d.info.id, key.clone());
        shard.dialogs.insert(key, d);
    }

    fn release(&self, d: &Dialog) {
        let mut counts = lock(&self.counts);
        if let Some(s) = &d.subscriber
            && let Some(n) = counts.subscribers.get_mut(s)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.subscribers.remove(s);
            }
        }
        if let Some(dom) = &d.domain
            && let Some(n) = counts.domains.get_mut(dom)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.domains.remove(dom);
            }
        }
        match d.info.state {
            DialogState::Early => counts.early = counts.early.saturating_sub(1),
            DialogState::Confirmed => counts.confirmed = counts.confirmed.saturating_sub(1),
            DialogState::Terminated => {}
        }
    }

    fn finish(&self, d: Dialog, status: u16, reason: &str, hangup: Hangup, now: u64) -> Ended {
        self.release(&d);
        let mut info = d.info;
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

/// The dialog a request belongs to and whether the caller sent it.
fn find_key(
    shard: &Shard,
    call_id: &str,
    from_tag: Option<&str>,
    to_tag: Option<&str>,
) -> Option<((String, String), bool)> {
    if let Some(f) = from_tag {
        let k = (call_id.to_owned(), f.to_owned());
        if shard.dialogs.contains_key(&k) {
            return Some((k, true));
        }
    }
    if let Some(t) = to_tag {
        let k = (call_id.to_owned(), t.to_owned());
        if shard.dialogs.contains_key(&k) {
            return Some((k, false));
        }
    }
    None
}

/// The leg with the CSeq a new request on it must carry: above anything
/// the other side has sent (the receiving UA checks remote CSeq order).
fn with_cseq(mut leg: Leg, seen: u32) -> Leg {
    leg.cseq = seen.saturating_add(1).max(1);
    leg
}

#[cfg(test)]
mod tests;
