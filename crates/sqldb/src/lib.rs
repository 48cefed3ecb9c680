//! An SQL database by URL, as the Voxline stores use it: SQLite (the
//! embedded default), PostgreSQL or MySQL/MariaDB through one sqlx code
//! path.
//!
//! * [`Dialect`]: which database a URL names (by scheme), and its bind
//!   placeholders (`?` or `$n`).
//! * [`SqlPool`]: one enum over sqlx's three pools; [`SqlPool::open`]
//!   connects (SQLite: parent directory created, WAL, busy timeout, an
//!   in-memory database kept alive) and runs a crate's embedded
//!   migrations; [`with_pool!`] runs one generic body on whichever pool it
//!   is.
//! * [`MigrationSet`]: a crate's migrations (`include_str!` files, one per
//!   dialect and step), recorded in the crate's own table so that several
//!   crates can share one database.
//! * [`within`]: one operation under a deadline, failing with a
//!   [`StoreFailure`].
//! * [`database_url`]: the configured URL or the default SQLite file in the
//!   data directory; [`redact_url`]: a URL with its password hidden, for
//!   logs and errors.
//!
//! Statements stay in the crates that own the tables: this crate knows no
//! table.

mod dialect;
mod error;
mod migrate;
mod pool;
mod url;

pub use dialect::Dialect;
pub use error::{OpenError, StoreFailure};
pub use migrate::{MigrationSet, MigrationStep};
pub use pool::{OpenOptions, SqlPool, within};
pub use url::{DEFAULT_SQLITE_FILE, database_url, redact_url, sqlite_url};

/// Re-exported so that users of [`with_pool!`] and [`MigrationSet`] name
/// the same sqlx.
pub use sqlx;
