//! The `[cdr]` configuration section (documented in `docs/cdr.md`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use voxline_config::{Validate, Validator};
use voxline_sqldb::Dialect;

use crate::error::ConfigError;

pub use voxline_sqldb::redact_url;

/// The SQLite file in the data directory when `db_url` is not set (the
/// same file as the subscribers: each crate has its own tables).
pub const DEFAULT_DB_FILE: &str = voxline_sqldb::DEFAULT_SQLITE_FILE;
/// The spool file in the data directory when `spool_path` is not set.
pub const DEFAULT_SPOOL_FILE: &str = "cdr-spool.jsonl";
/// Default records per database insert.
pub const DEFAULT_BATCH_SIZE: usize = 100;
/// Largest allowed `batch_size` (24 bind values a record stay below every
/// database's limit on bind parameters).
pub const MAX_BATCH_SIZE: usize = 1000;
/// Default queue between the proxy and the writer task.
pub const DEFAULT_QUEUE_SIZE: usize = 10_000;
/// Default first retry after the database failed.
pub const DEFAULT_RETRY_INTERVAL_MS: u64 = 1000;
/// Default cap of the doubling retry interval.
pub const DEFAULT_RETRY_MAX_INTERVAL_MS: u64 = 30_000;
/// Default time one database operation may take.
pub const DEFAULT_DB_TIMEOUT_MS: u64 = 2000;
/// Default connections in the pool.
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 2;

/// The `[cdr]` section. Every field has a default; unknown keys are errors.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdrConfig {
    /// Write a record for every call attempt.
    pub enabled: bool,
    /// `sqlite://…`, `postgres://…` or `mysql://…`. Unset:
    /// `sqlite://<data_dir>/voxline.db`.
    pub db_url: Option<String>,
    /// Where records wait while the database is unavailable. Unset:
    /// `<data_dir>/cdr-spool.jsonl`.
    pub spool_path: Option<PathBuf>,
    /// Records per database insert (1 to 1000).
    pub batch_size: usize,
    /// Records the queue to the writer task holds before it overflows
    /// into memory (counted as `voxline_cdr_queue_overflow_total`).
    pub queue_size: usize,
    /// Milliseconds before the first retry after the database failed;
    /// doubled after each failed retry up to `retry_max_interval_ms`.
    pub retry_interval_ms: u64,
    /// The longest wait between retries, ms.
    pub retry_max_interval_ms: u64,
    /// Milliseconds one database operation may take before the database
    /// counts as unavailable.
    pub db_timeout_ms: u64,
    /// Connections in the pool.
    pub db_max_connections: u32,
}

impl Default for CdrConfig {
    fn default() -> CdrConfig {
        CdrConfig {
            enabled: true,
            db_url: None,
            spool_path: None,
            batch_size: DEFAULT_BATCH_SIZE,
            queue_size: DEFAULT_QUEUE_SIZE,
            retry_interval_ms: DEFAULT_RETRY_INTERVAL_MS,
            retry_max_interval_ms: DEFAULT_RETRY_MAX_INTERVAL_MS,
            db_timeout_ms: DEFAULT_DB_TIMEOUT_MS,
            db_max_connections: DEFAULT_DB_MAX_CONNECTIONS,
        }
    }
}

impl fmt::Debug for CdrConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdrConfig")
            .field("enabled", &self.enabled)
            .field("db_url", &self.db_url.as_deref().map(redact_url))
            .field("spool_path", &self.spool_path)
            .field("batch_size", &self.batch_size)
            .field("queue_size", &self.queue_size)
            .field("retry_interval_ms", &self.retry_interval_ms)
            .field("retry_max_interval_ms", &self.retry_max_interval_ms)
            .field("db_timeout_ms", &self.db_timeout_ms)
            .field("db_max_connections", &self.db_max_connections)
            .finish()
    }
}

impl CdrConfig {
    /// Every problem in the section (empty when valid).
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if let Some(url) = &self.db_url
            && Dialect::from_url(url).is_none()
        {
            problems.push(ConfigError::DbUrlScheme(redact_url(url)));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            problems.push(ConfigError::BatchSize {
                max: MAX_BATCH_SIZE,
                got: self.batch_size,
            });
        }
        if self.queue_size < self.batch_size {
            problems.push(ConfigError::QueueSize {
                queue: self.queue_size,
                batch: self.batch_size,
            });
        }
        if self.retry_interval_ms == 0 || self.retry_interval_ms > self.retry_max_interval_ms {
            problems.push(ConfigError::RetryInterval);
        }
        if self.db_timeout_ms == 0 {
            problems.push(ConfigError::ZeroDbTimeout);
        }
        if self.db_max_connections == 0 {
            problems.push(ConfigError::ZeroConnections);
        }
        problems
    }

    /// The first problem, if any.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// The database URL: `db_url`, or the SQLite file in `data_dir`.
    pub fn database_url(&self, data_dir: &Path) -> String {
        voxline_sqldb::database_url(self.db_url.as_deref(), data_dir)
    }

    /// The spool file: `spool_path`, or `cdr-spool.jsonl` in `data_dir`.
    pub fn spool_file(&self, data_dir: &Path) -> PathBuf {
        match &self.spool_path {
            Some(path) => path.clone(),
            None => data_dir.join(DEFAULT_SPOOL_FILE),
        }
    }

    /// `retry_interval_ms` as a duration.
    pub fn retry_interval(&self) -> Duration {
        Duration::from_millis(self.retry_interval_ms)
    }

    /// `retry_max_interval_ms` as a duration.
    pub fn retry_max_interval(&self) -> Duration {
        Duration::from_millis(self.retry_max_interval_ms)
    }

    /// `db_timeout_ms` as a duration.
    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }
}

impl Validate for CdrConfig {
    fn validate(&self, v: &mut Validator) {
        for problem in self.problems() {
            v.error(problem.key(), problem.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = CdrConfig::default();
        assert!(c.problems().is_empty());
        assert!(c.enabled);
        let dir = Path::new("data");
        assert_eq!(c.database_url(dir), "sqlite://data/voxline.db");
        assert_eq!(c.spool_file(dir), Path::new("data/cdr-spool.jsonl"));
        assert_eq!(c.retry_interval(), Duration::from_secs(1));
    }

    #[test]
    fn parses_toml_and_rejects_unknown_keys() {
        let c: CdrConfig = toml::from_str(
            "enabled = false\ndb_url = \"postgres://cdr:pw@db/voxline\"\nspool_path = \"/var/spool/cdr.jsonl\"\nbatch_size = 50\nqueue_size = 500\nretry_interval_ms = 200\nretry_max_interval_ms = 5000\n",
        )
        .unwrap();
        assert!(!c.enabled);
        assert_eq!(c.batch_size, 50);
        assert_eq!(
            c.database_url(Path::new("x")),
            "postgres://cdr:pw@db/voxline"
        );
        assert_eq!(
            c.spool_file(Path::new("x")),
            Path::new("/var/spool/cdr.jsonl")
        );
        assert!(!format!("{c:?}").contains("pw@"), "{c:?}");
        assert!(toml::from_str::<CdrConfig>("batchsize = 5").is_err());
    }

    #[test]
    fn every_problem_is_reported() {
        let c = CdrConfig {
            db_url: Some("redis://h".into()),
            batch_size: 0,
            queue_size: 0,
            retry_interval_ms: 10,
            retry_max_interval_ms: 5,
            db_timeout_ms: 0,
            db_max_connections: 0,
            ..CdrConfig::default()
        };
        let keys: Vec<&str> = c.problems().iter().map(ConfigError::key).collect();
        assert_eq!(
            keys,
            [
                "db_url",
                "batch_size",
                "retry_interval_ms",
                "db_timeout_ms",
                "db_max_connections"
            ]
        );
        let c = CdrConfig {
            batch_size: MAX_BATCH_SIZE + 1,
            queue_size: 10,
            ..CdrConfig::default()
        };
        let keys: Vec<&str> = c.problems().iter().map(ConfigError::key).collect();
        assert_eq!(keys, ["batch_size", "queue_size"]);
        let mut v = Validator::default();
        v.section("cdr", &c);
        assert!(!v.is_empty());
    }
}
