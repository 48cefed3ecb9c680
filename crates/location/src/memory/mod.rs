//! The memory backend: a sharded map of packed AOR entries with an expiry
//! wheel per shard, optionally persisted to a data directory (append log +
//! snapshots, see [`journal`]).

pub mod journal;
mod packed;

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::binding::{Binding, Update};
use crate::change::{ChangeKind, ChangeOrigin, LocationChange, RemoveReason, Version};
use crate::error::{ConfigError, InvalidInput, LocationError};
use crate::set::{self, BindingSet, Limits, ReplicaOutcome};
use crate::store::{Applied, Counts, Page};
use crate::time::Timestamp;
use journal::{FsyncPolicy, Journal, RecoveryStats};
use packed::{PackedAor, Wheel, timer_second};

/// Settings of a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// Number of shards (power of two, 1..=4096).
    pub shards: usize,
    /// Per-AOR contact limit.
    pub limits: Limits,
    /// Data directory for the log and snapshots; `None` = not persisted.
    pub data_dir: Option<PathBuf>,
    /// fsync policy of the log.
    pub fsync: FsyncPolicy,
    /// Capacity of the change feed channel (slow subscribers lag beyond it).
    pub feed_capacity: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            shards: 64,
            limits: Limits::default(),
            data_dir: None,
            fsync: FsyncPolicy::Never,
            feed_capacity: 65_536,
        }
    }
}

#[derive(Default)]
struct Shard {
    entries: HashSet<PackedAor, foldhash::fast::RandomState>,
    wheel: Wheel,
    aors: u64,
    bindings: u64,
}

impl Shard {
    /// Keep the AOR/binding counters in step with a replaced set.
    fn account(&mut self, before: u64, after: &BindingSet) {
        self.account_counts(before, after.bindings.len() as u64);
    }

    fn account_counts(&mut self, b: u64, a: u64) {
        self.bindings = self.bindings + a - b.min(self.bindings + a);
        match (b > 0, a > 0) {
            (false, true) => self.aors += 1,
            (true, false) => self.aors = self.aors.saturating_sub(1),
            _ => {}
        }
    }
}

thread_local! {
    /// The buffer a log record is framed in before its write.
    static RECORD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest record buffer kept between writes.
const RECORD_KEEP: usize = 16 * 1024;

/// In-memory location store: O(1) per operation in the number of AORs.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    mask: u64,
    hasher: foldhash::fast::RandomState,
    limits: Limits,
    journal: Option<Journal>,
    feed: broadcast::Sender<LocationChange>,
    recovery: RecoveryStats,
    /// Until when (Unix ms) batches write their records one by one, after
    /// a failed group write: while the disk fails, each REGISTER is refused
    /// on its own instead of every batch's answers being withheld.
    batches_off_until_ms: std::sync::atomic::AtomicU64,
}

/// How long batches write record by record after a failed group write.
const BATCHES_OFF_MS: u64 = 10_000;

impl MemoryStore {
    /// Open the store; with a data directory, recover its state (dropping
    /// bindings expired at `now`) and compact it into a fresh snapshot.
    pub fn open(options: MemoryOptions, now: Timestamp) -> Result<Self, LocationError> {
        let n = options.shards;
        if !n.is_power_of_two() || n > 4096 {
            return Err(ConfigError::Shards(n).into());
        }
        let shards: Box<[Mutex<Shard>]> = (0..n).map(|_| Mutex::new(Shard::default())).collect();
        let (feed, _) = broadcast::channel(options.feed_capacity.max(1));
        let mut store = MemoryStore {
            shards,
            mask: (n - 1) as u64,
            hasher: foldhash::fast::RandomState::default(),
            limits: options.limits,
            journal: None,
            batches_off_until_ms: std::sync::atomic::AtomicU64::new(0),
            feed,
            recovery: RecoveryStats::default(),
        };
        if let Some(dir) = &options.data_dir {
            let mut corrupt = 0u64;
            let (journal, stats) = Journal::open(dir, options.fsync, |aor, set_bytes| {
                if store.restore(aor, set_bytes, now).is_err() {
                    corrupt += 1;
                }
            })?;
            if corrupt > 0 {
                tracing::warn!(corrupt, "location recovery skipped undecodable AOR records");
            }
            tracing::info!(
                snapshot_records = stats.snapshot_records,
                log_records = stats.log_records,
                torn_segments = stats.torn_segments,
                "location store recovered from {}",
                dir.display()
            );
            store.arm_timers();
            store.journal = Some(journal);
            store.recovery = stats;
            store.snapshot()?;
        }
        Ok(store)
    }

    /// What [`MemoryStore::open`] recovered.
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.recovery
    }

    fn restore(
        &mut self,
        aor: &str,
        set_bytes: &[u8],
        now: Timestamp,
    ) -> Result<(), LocationError> {
        let scan = crate::codec::scan_set(set_bytes)?;
        let idx = self.shard_index(aor);
        let shard = self
            .shards
            .get_mut(idx)
            .ok_or(LocationError::Corrupt("shard index"))?
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        let before = shard
            .entries
            .take(aor.as_bytes())
            .map_or(0, |old| old.binding_count());
        // Timers are armed once recovery is complete (`arm_timers`).
        match scan.first_due {
            // Common case: nothing expired; keep the bytes as they are.
            Some(first) if first > now.as_millis() => {
                shard.account_counts(before, scan.bindings);
                shard
                    .entries
                    .insert(PackedAor::from_encoded(aor, timer_second(first), set_bytes));
            }
            _ => {
                let mut set = crate::codec::decode_set(set_bytes)?;
                set.bindings.retain(|b| b.is_live(now));
                set.tombstones.retain(|t| t.until > now);
                shard.account_counts(before, set.bindings.len() as u64);
                if let Some(first) = set.next_due() {
                    shard.entries.insert(PackedAor::new(
                        aor,
                        timer_second(first.as_millis()),
                        &set,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Schedule every entry's timer once (after recovery).
    fn arm_timers(&mut self) {
        for m in self.shards.iter_mut() {
            let shard = m.get_mut().unwrap_or_else(|e| e.into_inner());
            let Shard { entries, wheel, .. } = shard;
            for e in entries.iter() {
                wheel.schedule(e.timer(), e.aor());
            }
        }
    }

    fn shard_index(&self, aor: &str) -> usize {
        (self.hasher.hash_one(aor) & self.mask) as usize
    }

    fn shard(&self, aor: &str) -> MutexGuard<'_, Shard> {
        let idx = self.shard_index(aor);
        // `mask` < shards.len(), so the index is always in range.
        self.shards
            .get(idx)
            .or_else(|| self.shards.first())
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_else(|| unreachable_shard())
    }

    fn load(shard: &Shard, aor: &str) -> Result<BindingSet, LocationError> {
        shard
            .entries
            .get(aor.as_bytes())
            .map_or(Ok(BindingSet::default()), PackedAor::bindings)
    }

    /// Persist and store the new set of `aor` (caller holds the lock and
    /// loaded the set, with `before` bindings, under it).
    fn commit(
        &self,
        shard: &mut Shard,
        aor: &str,
        before: u64,
        set: &BindingSet,
    ) -> Result<(), LocationError> {
        let old_timer = shard
            .entries
            .get(aor.as_bytes())
            .map_or(0, PackedAor::timer);
        let earliest = set.next_due().map(|t| timer_second(t.as_millis()));
        let timer = match earliest {
            Some(e) if old_timer == 0 || old_timer > e => e,
            Some(_) => old_timer,
            None => 0,
        };
        let packed = PackedAor::new(aor, timer, set);
        if let Some(j) = &self.journal {
            let written = RECORD.with_borrow_mut(|record| {
                record.clear();
                journal::frame(aor, packed.set_bytes(), record);
                let written = j.append(record);
                if record.capacity() > RECORD_KEEP {
                    *record = Vec::new();
                }
                written
            });
            if let Err(e) = written {
                metrics::counter!("voxline_location_errors_total", "backend" => "memory", "op" => "persist", "kind" => "io")
                    .increment(1);
                tracing::error!(error = %e, aor, "location log write failed; change refused");
                return Err(e.into());
            }
        }
        if timer != 0 && timer != old_timer {
            shard.wheel.schedule(timer, aor);
        }
        shard.account(before, set);
        if set.is_empty() {
            shard.entries.take(aor.as_bytes());
        } else {
            shard.entries.replace(packed);
        }
        Ok(())
    }

    fn publish(&self, changes: &[LocationChange]) {
        if self.feed.receiver_count() > 0 {
            for c in changes {
                let _ = self.feed.send(c.clone());
            }
        }
    }

    /// Apply one REGISTER (see [`set::apply_update`]); persisted before it
    /// returns.
    pub fn apply(
        &self,
        aor: &str,
        update: &Update,
        now: Timestamp,
    ) -> Result<Applied, LocationError> {
        let (set, changes) = {
            let mut shard = self.shard(aor);
            // A decoded copy: `apply_update` leaves it unchanged on error.
            let mut set = Self::load(&shard, aor)?;
            let before = set.bindings.len() as u64;
            let changes = set::apply_update(aor, &mut set, update, now, self.limits)?;
            if !changes.is_empty() {
                self.commit(&mut shard, aor, before, &set)?;
            }
            (set, changes)
        };
        self.publish(&changes);
        Ok(Applied {
            bindings: set::into_live_sorted(set.bindings, now),
            changes,
        })
    }

    /// Live bindings of `aor`, best first.
    pub fn lookup(&self, aor: &str, now: Timestamp) -> Result<Vec<Binding>, LocationError> {
        let shard = self.shard(aor);
        let set = Self::load(&shard, aor)?;
        drop(shard);
        Ok(set::into_live_sorted(set.bindings, now))
    }

    /// Remove every binding of `aor`; returns the removals.
    pub fn remove_aor(
        &self,
        aor: &str,
        now: Timestamp,
    ) -> Result<Vec<LocationChange>, LocationError> {
        if aor.is_empty() {
            return Err(InvalidInput::EmptyAor.into());
        }
        let changes = {
            let mut shard = self.shard(aor);
            let before = Self::load(&shard, aor)?;
            if before.bindings.is_empty() {
                return Ok(Vec::new());
            }
            let mut set = before.clone();
            let changes = admin_removals(aor, &mut set, now);
            self.commit(&mut shard, aor, before.bindings.len() as u64, &set)?;
            changes
        };
        self.publish(&changes);
        Ok(changes)
    }

    /// Apply a change from a peer site (idempotent; older changes ignored).
    pub fn apply_replicated(
        &self,
        change: &LocationChange,
        now: Timestamp,
    ) -> Result<bool, LocationError> {
        let applied = {
            let mut shard = self.shard(&change.aor);
            let before = Self::load(&shard, &change.aor)?;
            let mut set = before.clone();
            let outcome = set::apply_replicated(&mut set, change, now);
            if outcome != ReplicaOutcome::Ignored {
                self.commit(&mut shard, &change.aor, before.bindings.len() as u64, &set)?;
            }
            outcome == ReplicaOutcome::Applied
        };
        if applied {
            let mut c = change.clone();
            c.origin = ChangeOrigin::Replicated;
            self.publish(std::slice::from_ref(&c));
        }
        Ok(applied)
    }

    /// Remove bindings due at `now` (only AORs whose timer is due are
    /// visited) and report them.
    pub fn expire(&self, now: Timestamp) -> Result<Vec<LocationChange>, LocationError> {
        let second = u32::try_from(now.as_secs()).unwrap_or(u32::MAX);
        let mut changes = Vec::new();
        for m in self.shards.iter() {
            let mut guard = m.lock().unwrap_or_else(|e| e.into_inner());
            let shard = &mut *guard;
            for (due, bucket) in shard.wheel.take_due(second) {
                for aor in Wheel::aors(&bucket) {
                    let Some(entry) = shard.entries.get(aor.as_bytes()) else {
                        continue;
                    };
                    if entry.timer() != due {
                        continue; // stale entry: a later timer is valid
                    }
                    let before = entry.bindings()?;
                    let mut set = before.clone();
                    changes.extend(set::expire_due(aor, &mut set, now));
                    shard.entries.take(aor.as_bytes());
                    shard.account(before.bindings.len() as u64, &set);
                    // Expiry is not logged: recovery drops expired bindings.
                    if let Some(first) = set.next_due() {
                        let next = timer_second(first.as_millis());
                        shard.wheel.schedule(next, aor);
                        shard.entries.insert(PackedAor::new(aor, next, &set));
                    }
                }
            }
        }
        self.publish(&changes);
        Ok(changes)
    }

    /// Number of AORs and bindings (bindings past expiry count until the
    /// next [`MemoryStore::expire`]).
    pub fn count(&self) -> Counts {
        let mut c = Counts::default();
        for m in self.shards.iter() {
            let s = m.lock().unwrap_or_else(|e| e.into_inner());
            c.aors += s.aors;
            c.bindings += s.bindings;
        }
        c
    }

    /// One page of AORs for admin listings. `cursor` is `None` for the first
    /// page, then the previous page's `next`.
    pub fn list(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page, LocationError> {
        let (mut idx, mut after) = match cursor {
            None => (0usize, None),
            Some(c) => {
                let (i, a) = c
                    .split_once('/')
                    .ok_or(LocationError::Corrupt("bad page cursor"))?;
                let i = i
                    .parse()
                    .map_err(|_| LocationError::Corrupt("bad page cursor"))?;
                (i, Some(a.to_owned()))
            }
        };
        let limit = limit.max(1);
        let mut entries = Vec::new();
        let mut resume: Option<String> = None;
        while let Some(m) = self.shards.get(idx) {
            let mut aors: Vec<(String, Vec<Binding>)> = {
                let s = m.lock().unwrap_or_else(|e| e.into_inner());
                let mut names: Vec<&PackedAor> = s
                    .entries
                    .iter()
                    .filter(|e| after.as_deref().is_none_or(|a| e.aor() > a))
                    .collect();
                names.sort_unstable_by(|a, b| a.aor().cmp(b.aor()));
                let mut out = Vec::new();
                let mut last = None;
                for e in names {
                    if out.len() == limit - entries.len() {
                        break;
                    }
                    last = Some(e.aor());
                    let live = set::live_sorted(&e.bindings()?.bindings, now);
                    if !live.is_empty() {
                        out.push((e.aor().to_owned(), live));
                    }
                }
                if out.len() == limit - entries.len() {
                    resume = last.map(str::to_owned);
                }
                out
            };
            let full = resume.is_some();
            entries.append(&mut aors);
            if full {
                let last = resume.unwrap_or_default();
                return Ok(Page {
                    entries,
                    next: Some(format!("{idx}/{last}")),
                });
            }
            idx += 1;
            after = None;
        }
        Ok(Page {
            entries,
            next: None,
        })
    }

    /// Subscribe to the change feed.
    pub fn subscribe(&self) -> broadcast::Receiver<LocationChange> {
        self.feed.subscribe()
    }

    /// Write a snapshot and drop older log segments (no-op without a data
    /// directory). Blocking file I/O: call it from a blocking thread.
    pub fn snapshot(&self) -> Result<(), LocationError> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        j.snapshot(|emit| {
            let mut buf = Vec::new();
            for m in self.shards.iter() {
                buf.clear();
                {
                    let s = m.lock().unwrap_or_else(|e| e.into_inner());
                    for e in s.entries.iter() {
                        journal::frame(e.aor(), e.set_bytes(), &mut buf);
                    }
                }
                emit(&buf)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// fsync the log if the policy is `interval` and something was written.
    pub fn sync(&self) -> Result<(), LocationError> {
        if let Some(j) = self
            .journal
            .as_ref()
            .filter(|j| j.policy() == FsyncPolicy::Interval)
        {
            j.sync()?;
        }
        Ok(())
    }

    /// Starts a batch on this thread: until [`commit_batch`](Self::commit_batch)
    /// the log records of its changes are buffered, to be written together
    /// (see [`journal`]). Only for a caller that sends none of the batch's
    /// answers before `commit_batch` succeeds.
    pub fn begin_batch(&self) {
        let off = self
            .batches_off_until_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(j) = &self.journal
            && (off == 0 || crate::time::Timestamp::now().as_millis() >= off)
        {
            j.begin_batch();
        }
    }

    /// Ends this thread's batch: its log records are written. On `Err` the
    /// batch's answers must not be sent (their changes are in memory, not
    /// on disk; clients send again); batches write record by record for a
    /// while, so that a failing disk refuses REGISTERs one by one.
    pub fn commit_batch(&self) -> Result<(), LocationError> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        j.commit_batch().map_err(|e| {
            metrics::counter!("voxline_location_errors_total", "backend" => "memory", "op" => "persist", "kind" => "io")
                .increment(1);
            tracing::error!(error = %e, "location log write of a batch failed; its answers are withheld");
            self.batches_off_until_ms.store(
                crate::time::Timestamp::now().as_millis() + BATCHES_OFF_MS,
                std::sync::atomic::Ordering::Relaxed,
            );
            LocationError::from(e)
        })
    }

    /// Whether the store persists to a data directory.
    pub fn is_persistent(&self) -> bool {
        self.journal.is_some()
    }
}

/// Remove every binding of `set` as an admin action (tombstones keep the
/// removals from being undone by older replicated writes).
pub(crate) fn admin_removals(
    aor: &str,
    set: &mut BindingSet,
    now: Timestamp,
) -> Vec<LocationChange> {
    let mut changes = Vec::new();
    for b in std::mem::take(&mut set.bindings) {
        if !b.is_live(now) {
            continue;
        }
        let version = Version {
            at: now,
            ..Version::of(&b)
        };
        let key = b.key();
        set.bury(key.clone(), version.clone(), b.expires, now);
        changes.push(LocationChange {
            aor: aor.to_owned(),
            key,
            kind: ChangeKind::Remove {
                version,
                reason: RemoveReason::Admin,
            },
            origin: ChangeOrigin::Local,
        });
    }
    changes
}

#[cold]
fn unreachable_shard() -> ! {
    // `open` refuses zero shards, so there is always a first shard.
    panic!("location store has no shards")
}

#[cfg(test)]
mod tests;
