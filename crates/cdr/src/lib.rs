//! Call detail records for Voxline.
//!
//! * [`CdrRecord`]: one record per call attempt, written when it ends,
//!   answered or not (who, from where, when, how it ended, the relay's
//!   media totals via [`RelayUsage::from_call_stats`]).
//! * [`CdrStore`]: the `cdr` table in SQLite (default), PostgreSQL or MySQL
//!   through one sqlx code path; insert (idempotent by record id), paged
//!   queries by start time, count.
//! * [`CdrWriter`]: what call processing holds. `record()` never blocks and
//!   never loses a record: a writer task inserts in batches, spools to a
//!   local fsync'ed file while the database is unavailable and replays the
//!   spool when it is back.
//! * [`export()`]: CSV (RFC 4180, header row) or JSON lines.
//! * [`CdrConfig`]: the `[cdr]` section, documented in `docs/cdr.md`.
//!
//! Metrics (through the `metrics` facade): `voxline_cdr_written_total`,
//! `voxline_cdr_spooled_total`, `voxline_cdr_spool_backlog`,
//! `voxline_cdr_database_up`, `voxline_cdr_queue_overflow_total`,
//! `voxline_cdr_spool_invalid_total`, `voxline_cdr_spool_errors_total`.

mod config;
mod error;
mod export;
mod record;
mod row;
mod spool;
mod store;
mod time;
mod writer;

pub use config::{
    CdrConfig, DEFAULT_BATCH_SIZE, DEFAULT_DB_FILE, DEFAULT_QUEUE_SIZE, DEFAULT_SPOOL_FILE,
    MAX_BATCH_SIZE, redact_url,
};
pub use error::{CdrError, ConfigError, StoreFailure};
pub use export::{ExportFormat, Exporter, UnknownFormat, export};
pub use record::{
    Callee, Caller, CdrRecord, Hangup, HangupParty, HangupReason, MAX_FIELD_LEN, MediaTotals,
    RecordError, RecordId, RelayUsage, Source,
};
pub use row::COLUMNS;
pub use store::{CdrStore, Cursor, Dialect, StoreOptions, TimeRange};
pub use time::{TimeParseError, Timestamp};
pub use voxline_transaction::TransportKind;
pub use writer::{CdrWriter, WriterOptions, WriterStats};
