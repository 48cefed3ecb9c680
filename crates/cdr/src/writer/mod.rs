//! [`CdrWriter`]: the handle the proxy records call attempts with.
//!
//! `record` never blocks and never loses a record: it goes through a
//! bounded queue (overflowing into memory when full) to a writer task that
//! inserts in batches. While the database is unavailable the task appends
//! batches to the spool file (fsync'ed) and retries with a doubling
//! backoff; once the database answers again the spool is replayed into it
//! (inserts skip ids already stored) and truncated. `shutdown` flushes the
//! queue to the database or the spool.

mod task;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::CdrConfig;
use crate::error::{CdrError, ConfigError};
use crate::record::CdrRecord;
use crate::spool::Spool;
use crate::store::StoreOptions;

/// How a writer works; usually [`WriterOptions::from_config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// The database (`sqlite://…`, `postgres://…`, `mysql://…`).
    pub db_url: String,
    /// Pool size and operation timeout.
    pub store: StoreOptions,
    /// The spool file.
    pub spool_path: PathBuf,
    /// Records per insert.
    pub batch_size: usize,
    /// Capacity of the queue to the task.
    pub queue_size: usize,
    /// First wait before retrying a failed database.
    pub retry_interval: Duration,
    /// Longest wait between retries.
    pub retry_max_interval: Duration,
}

impl WriterOptions {
    /// The options of a validated `[cdr]` section for a node whose data
    /// directory is `data_dir`.
    pub fn from_config(config: &CdrConfig, data_dir: &Path) -> Result<WriterOptions, ConfigError> {
        config.validate()?;
        Ok(WriterOptions {
            db_url: config.database_url(data_dir),
            store: StoreOptions::from(config),
            spool_path: config.spool_file(data_dir),
            batch_size: config.batch_size,
            queue_size: config.queue_size,
            retry_interval: config.retry_interval(),
            retry_max_interval: config.retry_max_interval(),
        })
    }
}

/// What a writer has done so far (also exported as metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records stored in the database (directly or replayed).
    pub written: u64,
    /// Records appended to the spool.
    pub spooled: u64,
    /// Of `written`, records replayed from the spool.
    pub replayed: u64,
    /// Records in the spool file now.
    pub backlog: u64,
    /// Records that found the queue full and waited in memory.
    pub overflowed: u64,
    /// Spool lines that were not records (moved to `<spool>.bad`).
    pub invalid: u64,
    /// Whether the database is open and answered the last operation.
    pub database_up: bool,
    /// Whether the writer task has finished (after shutdown).
    pub stopped: bool,
}

/// State shared by the handles and the task (not the queue's sender, so
/// that dropping every handle closes the queue).
struct Shared {
    spool: Arc<Mutex<Spool>>,
    overflow: Mutex<Overflow>,
    wake: Notify,
    stopping: AtomicBool,
    stats: watch::Sender<WriterStats>,
}

#[derive(Default)]
struct Overflow {
    records: Vec<CdrRecord>,
    /// Set by the task as it finishes: later records go to the spool.
    closed: bool,
}

struct Handle {
    tx: mpsc::Sender<CdrRecord>,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Handle {
    /// Whether the writer task is gone (finished, failed, or being awaited
    /// by `shutdown`).
    fn task_gone(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }
}

/// The handle call processing records CDRs with. Cheap to clone; every
/// clone feeds the same writer task.
#[derive(Clone)]
pub struct CdrWriter {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for CdrWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdrWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl CdrWriter {
    /// Opens the spool and starts the writer task on the current tokio
    /// runtime. The database is opened by the task (and retried while it is
    /// unavailable), so this does not wait for it; records spool meanwhile.
    /// Fails if the spool file cannot be opened, or outside a tokio
    /// runtime.
    pub fn start(options: WriterOptions) -> Result<CdrWriter, CdrError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| CdrError::NoRuntime)?;
        let spool = Spool::open(&options.spool_path)?;
        let backlog = spool.backlog();
        metrics::gauge!("voxline_cdr_spool_backlog").set(backlog as f64);
        let (stats, _) = watch::channel(WriterStats {
            backlog,
            ..WriterStats::default()
        });
        let shared = Arc::new(Shared {
            spool: Arc::new(Mutex::new(spool)),
            overflow: Mutex::new(Overflow::default()),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            stats,
        });
        let (tx, rx) = mpsc::channel(options.queue_size.max(1));
        let task = runtime.spawn(task::WriterTask::new(options, rx, shared.clone()).run());
        Ok(CdrWriter {
            handle: Arc::new(Handle {
                tx,
                shared,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Hands over the record of a call attempt that ended. Never waits:
    /// the record is queued (or, with the queue full, kept in memory for
    /// the task). After [`CdrWriter::shutdown`] it is appended to the spool
    /// directly, to be stored by the next writer.
    pub fn record(&self, record: CdrRecord) {
        let shared = &self.handle.shared;
        let (record, closed) = match self.handle.tx.try_send(record) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(record)) => (record, false),
            Err(mpsc::error::TrySendError::Closed(record)) => (record, true),
        };
        let mut overflow = shared
            .overflow
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A closed queue with the task still finishing: it takes the
        // overflow last. With the task gone (or failed), nobody would.
        if closed && self.handle.task_gone() {
            overflow.closed = true;
        }
        if !overflow.closed {
            overflow.records.push(record);
            drop(overflow);
            metrics::counter!("voxline_cdr_queue_overflow_total").increment(1);
            shared.stats.send_modify(|s| s.overflowed += 1);
            shared.wake.notify_one();
            return;
        }
        drop(overflow);
        // The task is gone: the spool is the only safe place left.
        let mut spool = shared.spool.lock().unwrap_or_else(PoisonError::into_inner);
        match spool.append(std::slice::from_ref(&record)) {
            Ok(()) => {
                let backlog = spool.backlog();
                drop(spool);
                metrics::counter!("voxline_cdr_spooled_total").increment(1);
                metrics::gauge!("voxline_cdr_spool_backlog").set(backlog as f64);
                shared.stats.send_modify(|s| {
                    s.spooled += 1;
                    s.backlog = backlog;
                });
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    call_id = %record.call_id,
                    id = %record.id,
                    "CDR lost: the writer is stopped and the spool is not writable"
                );
            }
        }
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        *self.handle.shared.stats.borrow()
    }

    /// A receiver that sees every change of [`CdrWriter::stats`] (for
    /// waiting on the writer without polling).
    pub fn watch(&self) -> watch::Receiver<WriterStats> {
        self.handle.shared.stats.subscribe()
    }

    /// Stops the task after it has stored (or spooled) everything queued.
    /// Records handed over later go straight to the spool. Calling it again
    /// (or from another clone) returns at once.
    pub async fn shutdown(&self) {
        let shared = &self.handle.shared;
        shared.stopping.store(true, Ordering::Release);
        shared.wake.notify_one();
        let task = self
            .handle
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "CDR writer task failed");
        }
    }
}

/// The doubling wait between retries of a failed database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        let first = first.max(Duration::from_millis(1));
        Backoff {
            first,
            max: max.max(first),
            next: first,
        }
    }

    /// The wait before the next retry; each call doubles the one after,
    /// up to the maximum.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Back to the first interval (the database answered).
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        let mut odd = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(odd.next_delay(), Duration::from_millis(1));
    }

    #[test]
    fn options_from_config() {
        let config = CdrConfig::default();
        let o = WriterOptions::from_config(&config, Path::new("data")).unwrap();
        assert_eq!(o.db_url, "sqlite://data/voxline.db");
        assert_eq!(o.spool_path, Path::new("data/cdr-spool.jsonl"));
        assert_eq!(o.batch_size, 100);
        let bad = CdrConfig {
            batch_size: 0,
            ..CdrConfig::default()
        };
        assert!(WriterOptions::from_config(&bad, Path::new("data")).is_err());
    }
}
