//! The writer task: batches from the queue into the database, or into the
//! spool while the database is unavailable; retries, replays, flushes.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::{Backoff, Shared, WriterOptions};
use crate::config::redact_url;
use crate::error::CdrError;
use crate::record::CdrRecord;
use crate::spool::{Spool, SpoolReader};
use crate::store::CdrStore;

/// How long the writer waits for a batch to fill once a record has
/// arrived. One insert (one transaction, one sync to disk) per record would
/// cost more than the call it records at a few thousand calls per second;
/// a record reaches the database this much later instead.
const BATCH_LINGER: std::time::Duration = std::time::Duration::from_millis(20);

pub(super) struct WriterTask {
    options: WriterOptions,
    rx: mpsc::Receiver<CdrRecord>,
    shared: Arc<Shared>,
    store: Option<Arc<CdrStore>>,
    /// A check of the database in progress (open, or ping), run beside the
    /// loop so that records keep reaching the spool meanwhile.
    probe: Option<Probe>,
    /// The database took the last operation.
    up: bool,
    /// The current outage has been logged.
    down_logged: bool,
    backoff: Backoff,
    /// When to try the database again (while it is down).
    retry_at: Instant,
    /// A replay of the spool in progress.
    replay: Option<SpoolReader>,
    /// Records replayed in the current replay (for its log line).
    replayed_now: u64,
    /// No replay before this (after a spool read error).
    replay_at: Instant,
    /// Records neither stored nor spooled (the spool failed too), retried
    /// from `pending_at`.
    pending: Vec<CdrRecord>,
    pending_at: Instant,
    /// The queue is closed (every handle dropped).
    closed: bool,
}

/// Opens the database (a new store) or pings it (`None`).
type Probe = JoinHandle<Result<Option<Arc<CdrStore>>, CdrError>>;

/// The outcome of a probe, when it finishes (never without one).
async fn probe_done(
    probe: &mut Option<Probe>,
) -> Result<Result<Option<Arc<CdrStore>>, CdrError>, JoinError> {
    match probe {
        Some(probe) => probe.await,
        None => std::future::pending().await,
    }
}

/// What woke the loop.
enum Event {
    Received(usize),
    Woken,
    Probed(Result<Result<Option<Arc<CdrStore>>, CdrError>, JoinError>),
}

/// Runs blocking spool work off the runtime's threads.
async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    work: impl FnOnce(&mut Spool) -> T + Send + 'static,
) -> T {
    let spool = spool.clone();
    let job = move || work(&mut spool.lock().unwrap_or_else(PoisonError::into_inner));
    match tokio::task::spawn_blocking(job).await {
        Ok(value) => value,
        // The closure panicked: re-raise it here.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &CdrError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl WriterTask {
    pub(super) fn new(
        options: WriterOptions,
        rx: mpsc::Receiver<CdrRecord>,
        shared: Arc<Shared>,
    ) -> WriterTask {
        let backoff = Backoff::new(options.retry_interval, options.retry_max_interval);
        let now = Instant::now();
        WriterTask {
            options,
            rx,
            shared,
            store: None,
            probe: None,
            up: false,
            down_logged: false,
            backoff,
            retry_at: now,
            replay: None,
            replayed_now: 0,
            replay_at: now,
            pending: Vec::new(),
            pending_at: now,
            closed: false,
        }
    }

    fn backlog(&self) -> u64 {
        self.shared.stats.borrow().backlog
    }

    /// Whether to read on in the spool: records left, or a replay that has
    /// not yet seen the end of the file (which it truncates).
    fn replay_due(&self, now: Instant) -> bool {
        self.up && (self.backlog() > 0 || self.replay.is_some()) && now >= self.replay_at
    }

    pub(super) async fn run(mut self) {
        metrics::gauge!("voxline_cdr_database_up").set(0.0);
        // The first attempt inline (bounded by the database timeout; the
        // queue holds what arrives meanwhile), later ones beside the loop.
        self.connect().await;
        let size = self.options.batch_size;
        loop {
            if self.replay_due(Instant::now()) {
                self.replay_step().await;
            }
            if self.closed || self.shared.stopping.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            if !self.up && self.probe.is_none() && now >= self.retry_at {
                self.start_probe();
            }
            let pending_due = !self.pending.is_empty() && now >= self.pending_at;
            let mut batch = Vec::new();
            let mut probed = None;
            if self.replay_due(now) || pending_due {
                // Busy: take what is queued without waiting.
                while batch.len() < size {
                    match self.rx.try_recv() {
                        Ok(record) => batch.push(record),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            self.closed = true;
                            break;
                        }
                    }
                }
                if self.probe.as_ref().is_some_and(JoinHandle::is_finished) {
                    probed = Some(probe_done(&mut self.probe).await);
                }
            } else {
                let wake_at = [
                    (!self.up && self.probe.is_none()).then_some(self.retry_at),
                    (!self.pending.is_empty()).then_some(self.pending_at),
                    (self.up && self.backlog() > 0).then_some(self.replay_at),
                ]
                .into_iter()
                .flatten()
                .min();
                let (rx, probe, wake) = (&mut self.rx, &mut self.probe, &self.shared.wake);
                let event = tokio::select! {
                    received = rx.recv_many(&mut batch, size) => Event::Received(received),
                    () = wake.notified() => Event::Woken,
                    () = tokio::time::sleep_until(wake_at.unwrap_or(now)), if wake_at.is_some() => {
                        Event::Woken
                    }
                    result = probe_done(probe) => Event::Probed(result),
                };
                match event {
                    Event::Received(0) => self.closed = true,
                    Event::Received(_) if self.up => self.fill(&mut batch, size).await,
                    Event::Received(_) | Event::Woken => {}
                    Event::Probed(result) => probed = Some(result),
                }
            }
            if let Some(result) = probed {
                self.probe = None;
                self.probed(result);
            }
            if !self.pending.is_empty() && Instant::now() >= self.pending_at {
                batch.append(&mut self.pending);
            }
            batch.append(&mut self.take_overflow(false));
            if !batch.is_empty() {
                self.write(batch).await;
            }
        }
        self.finish().await;
    }

    /// Adds what arrives within [`BATCH_LINGER`] to `batch`, up to `size`.
    async fn fill(&mut self, batch: &mut Vec<CdrRecord>, size: usize) {
        let until = Instant::now() + BATCH_LINGER;
        while batch.len() < size && !self.shared.stopping.load(Ordering::Acquire) {
            let room = size - batch.len();
            tokio::select! {
                received = self.rx.recv_many(batch, room) => {
                    if received == 0 {
                        self.closed = true;
                        return;
                    }
                }
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }

    fn take_overflow(&self, close: bool) -> Vec<CdrRecord> {
        let mut overflow = self
            .shared
            .overflow
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        overflow.closed |= close;
        std::mem::take(&mut overflow.records)
    }

    /// Opens the database, inline.
    async fn connect(&mut self) {
        match CdrStore::open_with(&self.options.db_url, &self.options.store).await {
            Ok(store) => {
                self.store = Some(Arc::new(store));
                self.mark_up();
            }
            Err(e) => self.mark_down(&e),
        }
    }

    /// Starts opening the database (or checking that it answers again)
    /// beside the loop.
    fn start_probe(&mut self) {
        let store = self.store.clone();
        let url = self.options.db_url.clone();
        let options = self.options.store.clone();
        self.probe = Some(tokio::spawn(async move {
            match store {
                Some(store) => store.ping().await.map(|()| None),
                None => CdrStore::open_with(&url, &options)
                    .await
                    .map(|store| Some(Arc::new(store))),
            }
        }));
    }

    fn probed(&mut self, result: Result<Result<Option<Arc<CdrStore>>, CdrError>, JoinError>) {
        match result {
            Ok(Ok(Some(store))) => {
                self.store = Some(store);
                self.mark_up();
            }
            Ok(Ok(None)) => self.mark_up(),
            Ok(Err(e)) => self.mark_down(&e),
            Err(e) => {
                let delay = self.backoff.next_delay();
                self.retry_at = Instant::now() + delay;
                tracing::error!(error = %e, "CDR database check failed");
            }
        }
    }

    fn mark_up(&mut self) {
        if self.up {
            return;
        }
        self.up = true;
        self.backoff.reset();
        metrics::gauge!("voxline_cdr_database_up").set(1.0);
        self.shared.stats.send_modify(|s| s.database_up = true);
        let url = redact_url(&self.options.db_url);
        let spooled = self.backlog();
        if self.down_logged {
            tracing::info!(%url, spooled, "CDR database available again; replaying the spool");
        } else {
            tracing::info!(%url, spooled, "CDR database open");
        }
        self.down_logged = false;
    }

    fn mark_down(&mut self, error: &CdrError) {
        let delay = self.backoff.next_delay();
        self.retry_at = Instant::now() + delay;
        self.replay = None;
        let was_up = std::mem::replace(&mut self.up, false);
        if was_up {
            metrics::gauge!("voxline_cdr_database_up").set(0.0);
            self.shared.stats.send_modify(|s| s.database_up = false);
        }
        if was_up || !self.down_logged {
            tracing::warn!(
                url = %redact_url(&self.options.db_url),
                error = %error_chain(error),
                spool = %self.options.spool_path.display(),
                retry_in_ms = millis(delay),
                "CDR database unavailable; spooling records until it is back"
            );
            self.down_logged = true;
        } else {
            tracing::debug!(
                error = %error_chain(error),
                retry_in_ms = millis(delay),
                "CDR database still unavailable"
            );
        }
    }

    /// Changes the stats in one step (watchers never see half an update)
    /// and mirrors the backlog gauge.
    fn update(&self, change: impl FnOnce(&mut super::WriterStats)) {
        let mut backlog = 0;
        self.shared.stats.send_modify(|s| {
            change(s);
            backlog = s.backlog;
        });
        metrics::gauge!("voxline_cdr_spool_backlog").set(backlog as f64);
    }

    fn set_backlog(&self, backlog: u64) {
        self.update(|s| s.backlog = backlog);
    }

    /// `n` records reached the database.
    fn stored(&self, n: usize) {
        let n = n as u64;
        metrics::counter!("voxline_cdr_written_total").increment(n);
        self.update(|s| s.written += n);
    }

    /// Stores `batch`, or spools it when the database is unavailable.
    async fn write(&mut self, batch: Vec<CdrRecord>) {
        if self.up
            && let Some(store) = &self.store
        {
            match store.insert(&batch).await {
                Ok(_) => {
                    self.stored(batch.len());
                    return;
                }
                Err(e) => self.mark_down(&e),
            }
        }
        self.spool(batch).await;
    }

    async fn spool(&mut self, batch: Vec<CdrRecord>) {
        let n = batch.len() as u64;
        let (batch, result) = with_spool(&self.shared.spool, move |spool| {
            let result = spool.append(&batch).map(|()| spool.backlog());
            (batch, result)
        })
        .await;
        match result {
            Ok(backlog) => {
                metrics::counter!("voxline_cdr_spooled_total").increment(n);
                self.update(|s| {
                    s.spooled += n;
                    s.backlog = backlog;
                });
            }
            Err(e) => {
                let delay = self.options.retry_interval;
                tracing::error!(
                    error = %error_chain(&e),
                    records = n,
                    retry_in_ms = millis(delay),
                    "cannot write the CDR spool; keeping the records in memory"
                );
                metrics::counter!("voxline_cdr_spool_errors_total").increment(1);
                self.pending.extend(batch);
                self.pending_at = Instant::now() + delay;
            }
        }
    }

    /// Stores the next chunk of the spool; truncates it once all of it is
    /// stored. Publishes the progress after the truncation, so that a
    /// backlog of 0 means an empty file.
    async fn replay_step(&mut self) {
        let spool = self.shared.spool.clone();
        let reader = match self.replay.take() {
            Some(reader) => reader,
            None => match with_spool(&spool, |s| s.reader()).await {
                Ok(Some(reader)) => {
                    self.replayed_now = 0;
                    reader
                }
                Ok(None) => {
                    with_spool(&spool, Spool::forget).await;
                    self.set_backlog(0);
                    return;
                }
                Err(e) => return self.replay_failed(&e),
            },
        };
        let max = self.options.batch_size;
        let (reader, chunk) = match tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let chunk = reader.next_chunk(max);
            (reader, chunk)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(source) => {
                let path = self.options.spool_path.clone();
                return self.replay_failed(&CdrError::Spool { path, source });
            }
        };
        let invalid = chunk.bad.len() as u64;
        if invalid > 0 {
            let bad = chunk.bad;
            let (result, path) =
                with_spool(&spool, move |s| (s.quarantine(&bad), s.bad_path())).await;
            if let Err(e) = result {
                return self.replay_failed(&e);
            }
            tracing::warn!(
                lines = invalid,
                file = %path.display(),
                "CDR spool lines that are not records were moved aside"
            );
            metrics::counter!("voxline_cdr_spool_invalid_total").increment(invalid);
        }
        let stored = chunk.records.len() as u64;
        if stored > 0 {
            let Some(store) = &self.store else {
                return;
            };
            if let Err(e) = store.insert(&chunk.records).await {
                self.update(|s| s.invalid += invalid);
                return self.mark_down(&e);
            }
            self.replayed_now += stored;
            metrics::counter!("voxline_cdr_written_total").increment(stored);
        }
        let consumed = reader.consumed();
        let end = chunk.end;
        let (reader, cleared, lines) = with_spool(&spool, move |s| {
            // Truncated only if nothing was appended since it was read.
            let cleared = if end {
                s.clear_if_read(&reader)
            } else {
                Ok(false)
            };
            (reader, cleared, s.backlog())
        })
        .await;
        self.update(|s| {
            s.written += stored;
            s.replayed += stored;
            s.invalid += invalid;
            s.backlog = lines.saturating_sub(consumed);
        });
        match cleared {
            Ok(true) => {
                tracing::info!(
                    records = self.replayed_now,
                    "CDR spool replayed into the database"
                );
            }
            // More to read (or appended while it was read).
            Ok(false) => self.replay = Some(reader),
            Err(e) => self.replay_failed(&e),
        }
    }

    fn replay_failed(&mut self, error: &CdrError) {
        let delay = self.options.retry_interval;
        tracing::error!(
            error = %error_chain(error),
            retry_in_ms = millis(delay),
            "cannot replay the CDR spool"
        );
        metrics::counter!("voxline_cdr_spool_errors_total").increment(1);
        self.replay = None;
        self.replay_at = Instant::now() + delay;
    }

    /// Stores or spools everything still queued, then stops.
    async fn finish(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
        self.rx.close();
        let mut batch = std::mem::take(&mut self.pending);
        while let Some(record) = self.rx.recv().await {
            batch.push(record);
        }
        batch.append(&mut self.take_overflow(true));
        let n = batch.len();
        if !batch.is_empty() {
            self.write(batch).await;
        }
        if !self.pending.is_empty() {
            tracing::error!(
                records = self.pending.len(),
                "CDRs lost at shutdown: neither the database nor the spool took them"
            );
        }
        if let Some(store) = &self.store {
            store.close().await;
        }
        self.shared.stats.send_modify(|s| s.stopped = true);
        tracing::debug!(flushed = n, "CDR writer stopped");
    }
}
