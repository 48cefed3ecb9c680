//! The CDR store: one code path over SQLite, PostgreSQL and MySQL (a small
//! enum over the three sqlx pools), with embedded migrations in their own
//! table so that the table can share a database with the subscribers.

mod sql;

use std::path::Path;
use std::time::Duration;

use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Type};
use voxline_sqldb::{OpenOptions, SqlPool, with_pool, within};

pub use voxline_sqldb::Dialect;

use crate::config::{CdrConfig, MAX_BATCH_SIZE, redact_url};
use crate::error::CdrError;
use crate::record::{CdrRecord, RecordId};
use crate::row::Row;
use crate::time::Timestamp;
use sql::MIGRATIONS;

/// How a store behaves; [`StoreOptions::from`] a [`CdrConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Time one operation may take (connection included) before it fails
    /// with [`CdrError::Unavailable`].
    pub timeout: Duration,
    /// Connections in the pool.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions::from(&CdrConfig::default())
    }
}

impl From<&CdrConfig> for StoreOptions {
    fn from(config: &CdrConfig) -> StoreOptions {
        StoreOptions {
            timeout: config.db_timeout(),
            max_connections: config.db_max_connections.max(1),
        }
    }
}

/// A half-open interval of call start times, `[since, until)`; either end
/// may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// The earliest start time included (`None`: no lower bound).
    pub since: Option<Timestamp>,
    /// The first start time excluded (`None`: no upper bound).
    pub until: Option<Timestamp>,
}

impl TimeRange {
    /// Every record.
    pub const fn all() -> TimeRange {
        TimeRange {
            since: None,
            until: None,
        }
    }

    /// Records that started in `[since, until)`.
    pub const fn new(since: Timestamp, until: Option<Timestamp>) -> TimeRange {
        TimeRange {
            since: Some(since),
            until,
        }
    }

    fn bounds(self) -> (i64, i64) {
        (
            self.since.map_or(i64::MIN, Timestamp::unix_ms),
            self.until.map_or(i64::MAX, Timestamp::unix_ms),
        )
    }
}

/// Where the next page of a listing starts: after this record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    start: Timestamp,
    id: String,
}

impl Cursor {
    /// The position just after `record` (the last of a page).
    pub fn after(record: &CdrRecord) -> Cursor {
        Cursor {
            start: record.start,
            id: record.id.to_string(),
        }
    }

    pub(crate) fn after_row(row: &Row) -> Cursor {
        Cursor {
            start: row.start,
            id: row.id.clone(),
        }
    }
}

/// Call detail records in SQL.
pub struct CdrStore {
    pool: SqlPool,
    timeout: Duration,
}

impl std::fmt::Debug for CdrStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdrStore")
            .field("dialect", &self.pool.dialect())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl CdrStore {
    /// Opens (and migrates) the database at `url` with default options:
    /// `sqlite://path/voxline.db` (file and directory created if missing,
    /// WAL mode), `postgres://user:pass@host/db` or `mysql://user:pass@host/db`.
    pub async fn open(url: &str) -> Result<CdrStore, CdrError> {
        CdrStore::open_with(url, &StoreOptions::default()).await
    }

    /// Validates `config` and opens the database it names (or
    /// `<data_dir>/voxline.db`).
    pub async fn from_config(config: &CdrConfig, data_dir: &Path) -> Result<CdrStore, CdrError> {
        config.validate()?;
        CdrStore::open_with(&config.database_url(data_dir), &StoreOptions::from(config)).await
    }

    /// Opens (and migrates) the database at `url`. Fails within about
    /// `options.timeout` when a server does not answer.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<CdrStore, CdrError> {
        let open = OpenOptions {
            timeout: options.timeout,
            max_connections: options.max_connections,
        };
        let pool = SqlPool::open(url, &open, &MIGRATIONS).await?;
        tracing::debug!(dialect = pool.dialect().name(), url = %redact_url(url), "CDR store open");
        Ok(CdrStore {
            pool,
            timeout: options.timeout,
        })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// Closes the pool's connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn run<T>(
        &self,
        operation: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, CdrError> {
        within(self.timeout, operation)
            .await
            .map_err(CdrError::Unavailable)
    }

    /// Checks that the database answers (`SELECT 1`).
    pub async fn ping(&self) -> Result<(), CdrError> {
        self.run(async {
            with_pool!(&self.pool, |p| sqlx::query("SELECT 1")
                .execute(p)
                .await
                .map(|_| ()))
        })
        .await
    }

    /// Inserts `records`; ids already stored are skipped, so inserting the
    /// same record twice stores it once. Returns how many were new. Any
    /// number of records (inserted [`MAX_BATCH_SIZE`] at a time, each chunk
    /// in one statement).
    pub async fn insert(&self, records: &[CdrRecord]) -> Result<u64, CdrError> {
        let rows: Vec<Row> = records.iter().map(Row::from).collect();
        let mut inserted = 0;
        for chunk in rows.chunks(MAX_BATCH_SIZE) {
            inserted += self.insert_rows(chunk).await?;
        }
        Ok(inserted)
    }

    async fn insert_rows(&self, rows: &[Row]) -> Result<u64, CdrError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let sql = sql::insert(self.dialect(), rows.len());
        self.run(async {
            with_pool!(&self.pool, |p| {
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for r in rows {
                    query = query
                        .bind(r.id.as_str())
                        .bind(r.call_id.as_str())
                        .bind(r.node.as_str())
                        .bind(r.caller_aor.as_str())
                        .bind(r.caller_display.as_deref())
                        .bind(r.callee_aor.as_str())
                        .bind(r.request_uri.as_str())
                        .bind(r.source_addr.as_str())
                        .bind(r.source_transport.as_str())
                        .bind(r.start.unix_ms())
                        .bind(r.answer.map(Timestamp::unix_ms))
                        .bind(r.end.unix_ms())
                        .bind(clamp(r.duration_ms))
                        .bind(i64::from(r.status))
                        .bind(r.reason.as_str())
                        .bind(r.hangup_by.as_str())
                        .bind(r.hangup_reason.as_str())
                        .bind(r.relay.as_deref())
                        .bind(r.from_caller_packets.map(clamp))
                        .bind(r.from_caller_bytes.map(clamp))
                        .bind(r.from_caller_lost.map(clamp))
                        .bind(r.from_callee_packets.map(clamp))
                        .bind(r.from_callee_bytes.map(clamp))
                        .bind(r.from_callee_lost.map(clamp));
                }
                query.execute(p).await.map(|done| done.rows_affected())
            })
        })
        .await
    }

    /// Up to `limit` records of `range` after `cursor` (from the start when
    /// `None`), ordered by start time and id. The next page starts at
    /// [`Cursor::after`] the last record.
    pub async fn page(
        &self,
        range: TimeRange,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<CdrRecord>, CdrError> {
        self.page_rows(range, cursor, limit)
            .await?
            .into_iter()
            .map(|row| {
                let id = row.id.clone();
                CdrRecord::try_from(row).map_err(|source| CdrError::CorruptRow { id, source })
            })
            .collect()
    }

    pub(crate) async fn page_rows(
        &self,
        range: TimeRange,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Row>, CdrError> {
        let (since, until) = range.bounds();
        let (after_start, after_id) = match cursor {
            Some(c) => (c.start.unix_ms(), c.id.as_str()),
            None => (i64::MIN, ""),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = sql::page(self.dialect());
        self.run(async {
            with_pool!(&self.pool, |p| {
                sqlx::query_as::<_, Row>(sql)
                    .bind(since)
                    .bind(until)
                    .bind(after_start)
                    .bind(after_start)
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(p)
                    .await
            })
        })
        .await
    }

    /// Every record of `range` (a convenience over [`CdrStore::page`] for
    /// small ranges and tests; exports page through instead).
    pub async fn query(&self, range: TimeRange) -> Result<Vec<CdrRecord>, CdrError> {
        const PAGE: usize = 1000;
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.page(range, cursor.as_ref(), PAGE).await?;
            let full = page.len() == PAGE;
            cursor = page.last().map(Cursor::after);
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// How many records started in `range`.
    pub async fn count(&self, range: TimeRange) -> Result<u64, CdrError> {
        let (since, until) = range.bounds();
        let sql = sql::count(self.dialect());
        let count: i64 = self
            .run(async {
                with_pool!(&self.pool, |p| {
                    sqlx::query_scalar(sql)
                        .bind(since)
                        .bind(until)
                        .fetch_one(p)
                        .await
                })
            })
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Whether a record with `id` is stored.
    pub async fn contains(&self, id: RecordId) -> Result<bool, CdrError> {
        let sql = sql::contains(self.dialect());
        let id = id.to_string();
        let count: i64 = self
            .run(async {
                with_pool!(&self.pool, |p| {
                    sqlx::query_scalar(sql).bind(id.as_str()).fetch_one(p).await
                })
            })
            .await?;
        Ok(count > 0)
    }
}

/// Decodes a row selected in [`crate::row::DB_COLUMNS`] order, on any of
/// the three databases.
impl<'r, R> sqlx::FromRow<'r, R> for Row
where
    R: sqlx::Row,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Row, sqlx::Error> {
        let count = |i: usize| -> Result<Option<u64>, sqlx::Error> {
            Ok(row
                .try_get::<Option<i64>, _>(i)?
                .map(|n| u64::try_from(n).unwrap_or(0)))
        };
        Ok(Row {
            id: row.try_get(0)?,
            call_id: row.try_get(1)?,
            node: row.try_get(2)?,
            caller_aor: row.try_get(3)?,
            caller_display: row.try_get(4)?,
            callee_aor: row.try_get(5)?,
            request_uri: row.try_get(6)?,
            source_addr: row.try_get(7)?,
            source_transport: row.try_get(8)?,
            start: Timestamp::from_unix_ms(row.try_get(9)?),
            answer: row
                .try_get::<Option<i64>, _>(10)?
                .map(Timestamp::from_unix_ms),
            end: Timestamp::from_unix_ms(row.try_get(11)?),
            duration_ms: u64::try_from(row.try_get::<i64, _>(12)?).unwrap_or(0),
            status: u16::try_from(row.try_get::<i64, _>(13)?).unwrap_or(0),
            reason: row.try_get(14)?,
            hangup_by: row.try_get(15)?,
            hangup_reason: row.try_get(16)?,
            relay: row.try_get(17)?,
            from_caller_packets: count(18)?,
            from_caller_bytes: count(19)?,
            from_caller_lost: count(20)?,
            from_callee_packets: count(21)?,
            from_callee_bytes: count(22)?,
            from_callee_lost: count(23)?,
        })
    }
}
