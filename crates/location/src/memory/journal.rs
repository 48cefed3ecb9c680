//! Persistence for the memory backend: an append-only log of AOR states plus
//! periodic snapshots, in one data directory.
//!
//! Every record is `[u32 LE length][u32 LE crc32][payload]` with payload
//! `[varint aor_len][aor][encoded binding set]` — the whole state of one AOR
//! after a change (an empty set removes it), so replay is idempotent and the
//! last record of an AOR wins. A record is handed to the kernel with one
//! `write(2)` before the operation returns (in a batch: before the batch's
//! answers leave), so `kill -9` loses nothing that was acknowledged; `fsync`
//! follows the [`FsyncPolicy`]. A write that failed may have left part of a
//! record, after which recovery reads nothing more of that segment: the next
//! write goes to a new segment.
//!
//! Group commit: a thread that handles a batch of requests and sends their
//! answers together afterwards ([`Journal::begin_batch`]) has its records
//! kept in one buffer, shared with every thread so that records reach the
//! file in the order the changes were made, and written with one `write(2)`
//! by [`Journal::commit_batch`] before the answers leave. A record written
//! at once goes after whatever is buffered.
//!
//! Files: `location-<N>.log` (log segment N) and `location-<N>.snap` (the
//! whole state as of the start of segment N). Recovery loads the newest
//! snapshot S and replays segments ≥ S in order, stopping at the first torn
//! or corrupt record of each segment.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::codec::{self, Reader};

const SNAP_MAGIC: &[u8; 8] = b"VXLSNAP1";
const MAX_RECORD: u32 = 64 << 20;

/// When the log is flushed to stable storage with `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// Never fsync the log: survives a process crash (`kill -9`), not a
    /// power loss or kernel crash.
    #[default]
    Never,
    /// fsync every `fsync_interval_ms` (from the maintenance task).
    Interval,
    /// fsync after every record, before the operation returns.
    Always,
}

struct Segment {
    file: File,
    number: u64,
    dirty: bool,
    /// Records of batches not committed yet, in the order of the changes.
    pending: Vec<u8>,
    /// A write failed: the segment may end in part of a record.
    torn: bool,
}

/// The open log of a data directory.
pub(crate) struct Journal {
    dir: PathBuf,
    policy: FsyncPolicy,
    segment: Mutex<Segment>,
    snapshotting: Mutex<()>,
    /// Failed writes of buffered records: a batch that saw this change
    /// since it began may have lost records.
    failures: AtomicU64,
    /// Tests: the disk is full (writes go to `/dev/full`, no new segment).
    #[cfg(test)]
    full_disk: std::sync::atomic::AtomicBool,
}

thread_local! {
    /// The journal this thread's batch defers its records to (by address),
    /// and its failure count when the batch began.
    static BATCH: Cell<Option<(usize, u64)>> = const { Cell::new(None) };
}

fn file_number(name: &str, ext: &str) -> Option<u64> {
    name.strip_prefix("location-")?
        .strip_suffix(ext)?
        .parse()
        .ok()
}

fn log_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("location-{n:016}.log"))
}

fn snap_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("location-{n:016}.snap"))
}

/// Frame one record: header and payload in one buffer (one write).
pub(crate) fn frame(aor: &str, set: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    codec::put_str(out, aor);
    out.extend_from_slice(set);
    let payload = out.get(start + 8..).unwrap_or_default();
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    if let Some(h) = out.get_mut(start..start + 8) {
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Read framed records until EOF or the first bad one; returns how many
/// were good and whether the stream ended cleanly.
fn read_records(mut r: impl Read, mut apply: impl FnMut(&str, &[u8])) -> (u64, bool) {
    let mut count = 0;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        match read_full(&mut r, &mut header) {
            Ok(0) => return (count, true),
            Ok(8) => {}
            _ => return (count, false),
        }
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        if len > MAX_RECORD {
            return (count, false);
        }
        payload.resize(len as usize, 0);
        if read_full(&mut r, &mut payload).ok() != Some(payload.len()) {
            return (count, false);
        }
        if crc32fast::hash(&payload) != crc {
            return (count, false);
        }
        let mut rd = Reader::new(&payload);
        match rd.str() {
            Ok(aor) => apply(aor, rd.rest()),
            Err(_) => return (count, false),
        }
        count += 1;
    }
}

/// Like `read_exact` but reports how much was read before EOF.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What recovery found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Records loaded from the snapshot.
    pub snapshot_records: u64,
    /// Log records replayed.
    pub log_records: u64,
    /// Log segments that ended in a torn or corrupt record.
    pub torn_segments: u64,
}

impl Journal {
    /// Open (creating) `dir`, feed every recovered AOR state to `apply` in
    /// order, and start a new log segment.
    pub(crate) fn open(
        dir: &Path,
        policy: FsyncPolicy,
        mut apply: impl FnMut(&str, &[u8]),
    ) -> io::Result<(Journal, RecoveryStats)> {
        fs::create_dir_all(dir)?;
        let mut snaps = Vec::new();
        let mut logs = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = file_number(&name, ".snap") {
                snaps.push(n);
            } else if let Some(n) = file_number(&name, ".log") {
                logs.push(n);
            }
        }
        snaps.sort_unstable();
        logs.sort_unstable();
        let mut stats = RecoveryStats::default();
        let mut base = 0;
        for &n in snaps.iter().rev() {
            let mut r = BufReader::with_capacity(1 << 20, File::open(snap_path(dir, n))?);
            let mut magic = [0u8; 8];
            if read_full(&mut r, &mut magic)? != 8 || &magic != SNAP_MAGIC {
                tracing::warn!(
                    snapshot = n,
                    "location snapshot has a bad header, trying an older one"
                );
                continue;
            }
            let (count, clean) = read_records(r, &mut apply);
            if !clean {
                tracing::warn!(
                    snapshot = n,
                    count,
                    "location snapshot ends in a corrupt record"
                );
            }
            stats.snapshot_records = count;
            base = n;
            break;
        }
        for &n in logs.iter().filter(|&&n| n >= base) {
            let r = BufReader::with_capacity(1 << 20, File::open(log_path(dir, n))?);
            let (count, clean) = read_records(r, &mut apply);
            stats.log_records += count;
            if !clean {
                stats.torn_segments += 1;
                tracing::warn!(
                    segment = n,
                    count,
                    "location log segment ends in a torn record; later bytes ignored"
                );
            }
        }
        let next = snaps.iter().chain(logs.iter()).copied().max().unwrap_or(0) + 1;
        let file = open_segment(dir, next)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            policy,
            segment: Mutex::new(Segment {
                file,
                number: next,
                dirty: false,
                pending: Vec::new(),
                torn: false,
            }),
            snapshotting: Mutex::new(()),
            failures: AtomicU64::new(0),
            #[cfg(test)]
            full_disk: Default::default(),
        };
        Ok((journal, stats))
    }

    /// Append one framed record (from [`frame`]): buffered inside a batch
    /// of this thread, else written at once, after anything buffered.
    pub(crate) fn append(&self, record: &[u8]) -> io::Result<()> {
        let mut seg = self.segment.lock().unwrap_or_else(|e| e.into_inner());
        if BATCH.get().is_some_and(|(journal, _)| journal == self.id()) {
            seg.pending.extend_from_slice(record);
            return Ok(());
        }
        self.write_pending(&mut seg)?;
        self.write(&mut seg, record)
    }

    /// Writes `bytes` whole to the segment (a new one after a failed
    /// write), then fsyncs or marks it dirty.
    fn write(&self, seg: &mut Segment, bytes: &[u8]) -> io::Result<()> {
        if seg.torn && self.can_start_segment() {
            let next = seg.number + 1;
            let file = open_segment(&self.dir, next)?;
            let old = std::mem::replace(&mut seg.file, file);
            if seg.dirty && self.policy != FsyncPolicy::Never {
                // What the old segment holds before its torn end stays.
                let _ = old.sync_data();
            }
            seg.number = next;
            seg.dirty = false;
            seg.torn = false;
        }
        let written = seg.file.write_all(bytes);
        seg.torn = written.is_err();
        written?;
        self.written(seg)
    }

    /// Makes every later write fail as on a full disk (`/dev/full`).
    #[cfg(test)]
    pub(crate) fn fail_writes(&self) {
        let full = OpenOptions::new().write(true).open("/dev/full");
        if let Ok(f) = full {
            self.segment.lock().unwrap_or_else(|e| e.into_inner()).file = f;
            self.full_disk.store(true, Ordering::Release);
        }
    }

    /// Whether a new segment can be started (not on the tests' full disk).
    fn can_start_segment(&self) -> bool {
        #[cfg(test)]
        if self.full_disk.load(Ordering::Acquire) {
            return false;
        }
        true
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Records made on this thread from now on are buffered until
    /// [`commit_batch`](Self::commit_batch).
    pub(crate) fn begin_batch(&self) {
        BATCH.set(Some((self.id(), self.failures.load(Ordering::Acquire))));
    }

    /// Ends this thread's batch: writes every buffered record (this
    /// thread's and others') with one write. `Err` when that write failed,
    /// or an earlier one since the batch began (which may have carried
    /// this batch's records): what the batch answered must not be sent.
    pub(crate) fn commit_batch(&self) -> io::Result<()> {
        let Some((journal, failures)) = BATCH.take() else {
            return Ok(());
        };
        if journal != self.id() {
            BATCH.set(Some((journal, failures)));
            return Ok(());
        }
        let mut seg = self.segment.lock().unwrap_or_else(|e| e.into_inner());
        self.write_pending(&mut seg)?;
        if self.failures.load(Ordering::Acquire) != failures {
            return Err(io::Error::other(
                "a location log write that held this batch's records failed",
            ));
        }
        Ok(())
    }

    /// Writes the buffered records; on failure they are dropped and the
    /// failure counted (a partly written buffer cannot be resumed: the log
    /// is read up to its first torn record).
    fn write_pending(&self, seg: &mut Segment) -> io::Result<()> {
        if seg.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut seg.pending);
        let written = self.write(seg, &pending);
        // The buffer's allocation is kept for the next batch.
        seg.pending = pending;
        seg.pending.clear();
        if let Err(e) = written {
            self.failures.fetch_add(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    /// After a write: fsync under `always`, else mark the segment dirty.
    fn written(&self, seg: &mut Segment) -> io::Result<()> {
        if self.policy == FsyncPolicy::Always {
            seg.file.sync_data()?;
        } else {
            seg.dirty = true;
        }
        Ok(())
    }

    /// fsync the current segment if anything was written since the last sync.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let file = {
            let mut seg = self.segment.lock().unwrap_or_else(|e| e.into_inner());
            if !seg.dirty {
                return Ok(());
            }
            seg.dirty = false;
            seg.file.try_clone()?
        };
        file.sync_data()
    }

    /// The configured fsync policy.
    pub(crate) fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Write a snapshot: start a new segment N, let `dump` write every AOR
    /// state (taken after the switch), then atomically publish it and delete
    /// older files. `dump` calls its argument with framed records.
    pub(crate) fn snapshot(
        &self,
        dump: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>,
    ) -> io::Result<u64> {
        let _one = self.snapshotting.lock().unwrap_or_else(|e| e.into_inner());
        let number = {
            let mut seg = self.segment.lock().unwrap_or_else(|e| e.into_inner());
            // Buffered records belong before the switch (the snapshot is
            // taken after it and holds them anyway).
            self.write_pending(&mut seg)?;
            let next = seg.number + 1;
            let file = open_segment(&self.dir, next)?;
            let old = std::mem::replace(&mut seg.file, file);
            seg.number = next;
            if seg.dirty && self.policy != FsyncPolicy::Never {
                old.sync_data()?;
            }
            seg.dirty = false;
            next
        };
        let tmp = self.dir.join(format!("location-{number:016}.snap.tmp"));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(SNAP_MAGIC)?;
        dump(&mut |record: &[u8]| w.write_all(record))?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, snap_path(&self.dir, number))?;
        File::open(&self.dir)?.sync_all()?;
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            let old = file_number(&name, ".snap").or_else(|| file_number(&name, ".log"));
            if old.is_some_and(|n| n < number) {
                fs::remove_file(self.dir.join(name.as_ref()))?;
            }
        }
        Ok(number)
    }
}

fn open_segment(dir: &Path, n: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir, n))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// Default interval between fsyncs under [`FsyncPolicy::Interval`].
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn recover(dir: &Path) -> (HashMap<String, Vec<u8>>, RecoveryStats) {
        let mut map = HashMap::new();
        let (_j, stats) = Journal::open(dir, FsyncPolicy::Never, |aor, set| {
            map.insert(aor.to_owned(), set.to_vec());
        })
        .unwrap();
        (map, stats)
    }

    fn rec(aor: &str, set: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        frame(aor, set, &mut v);
        v
    }

    #[test]
    fn log_replays_in_order_and_last_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = Journal::open(dir.path(), FsyncPolicy::Always, |_, _| {}).unwrap();
            j.append(&rec("a@x", b"1")).unwrap();
            j.append(&rec("b@x", b"2")).unwrap();
            j.append(&rec("a@x", b"3")).unwrap();
        }
        let (map, stats) = recover(dir.path());
        assert_eq!(map["a@x"], b"3");
        assert_eq!(map["b@x"], b"2");
        assert_eq!(stats.log_records, 3);
        assert_eq!(stats.torn_segments, 0);
    }

    #[test]
    fn torn_and_corrupt_tails_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), FsyncPolicy::Never, |_, _| {}).unwrap();
        j.append(&rec("a@x", b"1")).unwrap();
        let full = rec("b@x", b"22222");
        j.append(&full[..full.len() - 2]).unwrap();
        drop(j);
        let (map, stats) = recover(dir.path());
        assert_eq!(map.len(), 1);
        assert_eq!(stats.torn_segments, 1);

        // A flipped bit fails the crc.
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), FsyncPolicy::Never, |_, _| {}).unwrap();
        let mut bad = rec("c@x", b"3");
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        j.append(&rec("a@x", b"1")).unwrap();
        j.append(&bad).unwrap();
        drop(j);
        let (map, stats) = recover(dir.path());
        assert!(map.contains_key("a@x") && !map.contains_key("c@x"));
        assert_eq!(stats.torn_segments, 1);
    }

    #[test]
    fn snapshot_compacts_and_later_log_applies_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), FsyncPolicy::Interval, |_, _| {}).unwrap();
        for i in 0..10 {
            j.append(&rec(&format!("u{i}@x"), b"old")).unwrap();
        }
        j.sync().unwrap();
        j.snapshot(|emit| {
            for i in 0..10 {
                emit(&rec(&format!("u{i}@x"), b"snap"))?;
            }
            Ok(())
        })
        .unwrap();
        j.append(&rec("u3@x", b"new")).unwrap();
        drop(j);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.iter().filter(|n| n.ends_with(".snap")).count(),
            1,
            "{names:?}"
        );
        assert_eq!(
            names.iter().filter(|n| n.ends_with(".log")).count(),
            1,
            "{names:?}"
        );
        let (map, stats) = recover(dir.path());
        assert_eq!(map.len(), 10);
        assert_eq!(map["u3@x"], b"new");
        assert_eq!(map["u4@x"], b"snap");
        assert_eq!(stats.snapshot_records, 10);
    }

    /// Records in the current segment file, in order.
    fn logged(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut logs: Vec<u64> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| file_number(&e.unwrap().file_name().to_string_lossy(), ".log"))
            .collect();
        logs.sort_unstable();
        for n in logs {
            read_records(File::open(log_path(dir, n)).unwrap(), |aor, set| {
                out.push((aor.to_owned(), set.to_vec()))
            });
        }
        out
    }

    #[test]
    fn a_batch_writes_its_records_at_commit_in_the_order_of_the_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), FsyncPolicy::Never, |_, _| {}).unwrap();
        j.begin_batch();
        j.append(&rec("a@x", b"1")).unwrap();
        j.append(&rec("b@x", b"2")).unwrap();
        assert!(
            logged(dir.path()).is_empty(),
            "nothing written before the commit"
        );
        // Another thread writes at once: what the batch buffered goes first.
        std::thread::scope(|s| {
            s.spawn(|| j.append(&rec("a@x", b"3")).unwrap());
        });
        j.append(&rec("c@x", b"4")).unwrap();
        let order = |v: Vec<(String, Vec<u8>)>| -> Vec<String> {
            v.into_iter()
                .map(|(a, s)| format!("{a}={}", String::from_utf8(s).unwrap()))
                .collect()
        };
        assert_eq!(order(logged(dir.path())), ["a@x=1", "b@x=2", "a@x=3"]);
        j.commit_batch().unwrap();
        assert_eq!(
            order(logged(dir.path())),
            ["a@x=1", "b@x=2", "a@x=3", "c@x=4"]
        );
        // After the commit, records are written at once again.
        j.append(&rec("d@x", b"5")).unwrap();
        assert_eq!(logged(dir.path()).len(), 5);
        // A commit without a batch does nothing.
        j.commit_batch().unwrap();
    }

    #[test]
    fn a_failed_group_write_fails_every_batch_it_may_have_carried() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), FsyncPolicy::Never, |_, _| {}).unwrap();
        // A disk that is full (a real device that refuses every write).
        j.fail_writes();
        j.begin_batch();
        j.append(&rec("a@x", b"1")).unwrap();
        // Another thread's batch, begun before the failure, whose record
        // the failed write carried: its commit finds nothing left to write
        // and must fail too.
        let (begun_tx, begun_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let jr = &j;
        std::thread::scope(|s| {
            let other = s.spawn(move || {
                jr.begin_batch();
                jr.append(&rec("b@x", b"2")).unwrap();
                begun_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                jr.commit_batch()
            });
            begun_rx.recv().unwrap();
            assert!(j.commit_batch().is_err(), "the write failed");
            go_tx.send(()).unwrap();
            assert!(other.join().unwrap().is_err(), "its records went with it");
        });
        // Space again: the next write starts a new segment (the failed one
        // may end in part of a record), and a batch begun after the
        // failure is judged on its own write.
        j.full_disk.store(false, Ordering::Release);
        j.begin_batch();
        j.append(&rec("c@x", b"3")).unwrap();
        j.commit_batch().unwrap();
        assert_eq!(logged(dir.path()).len(), 1);
        // Written at once, a failure is the caller's error as before.
        j.fail_writes();
        assert!(j.append(&rec("d@x", b"4")).is_err());
    }

    #[test]
    fn after_a_torn_write_the_log_goes_on_in_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |aor: &str| {
            let mut v = Vec::new();
            frame(aor, b"1", &mut v);
            v
        };
        {
            let (j, _) = Journal::open(dir.path(), FsyncPolicy::Never, |_, _| {}).unwrap();
            j.append(&rec("a@x")).unwrap();
            // A write that stops half way, as on a disk that fills up.
            let half = rec("b@x");
            let mut seg = j.segment.lock().unwrap();
            seg.file.write_all(&half[..half.len() / 2]).unwrap();
            seg.torn = true;
            drop(seg);
            j.append(&rec("c@x")).unwrap();
        }
        let mut seen = Vec::new();
        let (_j, stats) = Journal::open(dir.path(), FsyncPolicy::Never, |aor, _| {
            seen.push(aor.to_owned())
        })
        .unwrap();
        // In the torn segment `c@x` would have been lost behind the half record.
        assert_eq!(seen, ["a@x", "c@x"]);
        assert_eq!(stats.torn_segments, 1);
    }
}
