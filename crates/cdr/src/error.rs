//! Error types of the crate.

use std::path::PathBuf;

use crate::record::RecordError;

/// Everything that can go wrong opening, writing or reading the CDR store,
/// the spool, or an export.
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    /// A database URL with an unknown scheme.
    #[error("unsupported CDR database URL {0:?}: expected sqlite://, postgres:// or mysql://")]
    UnsupportedDatabaseUrl(String),
    /// The database could not be opened (bad URL, unreachable server,
    /// unwritable file).
    #[error("cannot open the CDR database")]
    Open(#[source] sqlx::Error),
    /// The embedded schema migrations failed.
    #[error("CDR schema migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// The database did not answer in time or refused the statement.
    #[error("CDR database unavailable")]
    Unavailable(#[source] StoreFailure),
    /// A stored row cannot be read back as a record.
    #[error("stored CDR {id} is unreadable")]
    CorruptRow {
        /// The row's id.
        id: String,
        /// What is wrong with it.
        #[source]
        source: RecordError,
    },
    /// The spool file could not be read or written.
    #[error("CDR spool {}", path.display())]
    Spool {
        /// The spool file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// Writing an export failed.
    #[error("cannot write the CDR export")]
    Export(#[source] std::io::Error),
    /// [`crate::CdrWriter::start`] was called outside a tokio runtime.
    #[error("the CDR writer needs a tokio runtime")]
    NoRuntime,
    /// The `[cdr]` section is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

pub use voxline_sqldb::StoreFailure;

impl From<voxline_sqldb::OpenError> for CdrError {
    fn from(e: voxline_sqldb::OpenError) -> CdrError {
        match e {
            voxline_sqldb::OpenError::UnsupportedUrl(url) => CdrError::UnsupportedDatabaseUrl(url),
            voxline_sqldb::OpenError::Connect(e) => CdrError::Open(e),
            voxline_sqldb::OpenError::Migrate(e) => CdrError::Migration(e),
        }
    }
}

/// A broken rule of the `[cdr]` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `db_url` with an unknown scheme.
    #[error("db_url {0:?}: expected sqlite://, postgres:// or mysql://")]
    DbUrlScheme(String),
    /// `batch_size` out of range.
    #[error("batch_size must be between 1 and {max}, got {got}")]
    BatchSize {
        /// The largest allowed.
        max: usize,
        /// The configured value.
        got: usize,
    },
    /// `queue_size` below `batch_size`.
    #[error("queue_size ({queue}) must be at least batch_size ({batch})")]
    QueueSize {
        /// The configured queue size.
        queue: usize,
        /// The configured batch size.
        batch: usize,
    },
    /// `retry_interval_ms` zero or above `retry_max_interval_ms`.
    #[error("retry_interval_ms must be positive and at most retry_max_interval_ms")]
    RetryInterval,
    /// `db_timeout_ms` zero.
    #[error("db_timeout_ms must be positive")]
    ZeroDbTimeout,
    /// `db_max_connections` zero.
    #[error("db_max_connections must be positive")]
    ZeroConnections,
}

impl ConfigError {
    /// The key the problem is about.
    pub const fn key(&self) -> &'static str {
        match self {
            ConfigError::DbUrlScheme(_) => "db_url",
            ConfigError::BatchSize { .. } => "batch_size",
            ConfigError::QueueSize { .. } => "queue_size",
            ConfigError::RetryInterval => "retry_interval_ms",
            ConfigError::ZeroDbTimeout => "db_timeout_ms",
            ConfigError::ZeroConnections => "db_max_connections",
        }
    }
}
