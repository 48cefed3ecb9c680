//! Error types of the crate.

use std::time::Duration;

/// Why [`crate::SqlPool::open`] failed. The stores map each case to their
/// own error (with their own wording).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A URL with an unknown scheme (the URL, password redacted).
    #[error("unsupported database URL {0:?}: expected sqlite://, postgres:// or mysql://")]
    UnsupportedUrl(String),
    /// The database could not be opened (bad URL, unreachable server,
    /// unwritable file or directory).
    #[error("cannot open the database")]
    Connect(#[source] sqlx::Error),
    /// The embedded schema migrations failed.
    #[error("schema migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Why a database operation failed (see [`crate::within`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The operation did not finish within its deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The driver reported a failure (connection refused, I/O error, pool
    /// timeout, server error).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
