//! One enum over sqlx's three pools: opening (and migrating) a database by
//! URL, and running an operation under a deadline.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::{Dialect, MigrationSet, OpenError, StoreFailure, redact_url};

/// How [`SqlPool::open`] connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long opening may wait for a connection (and for a pooled
    /// connection later); SQLite waits at least 5 s for a locked database.
    pub timeout: Duration,
    /// Connections in the pool (at least 1).
    pub max_connections: u32,
}

/// A connection pool to one of the three databases.
#[derive(Clone, Debug)]
pub enum SqlPool {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL or MariaDB.
    MySql(MySqlPool),
}

/// Runs `$body` with `$p` bound to the sqlx pool inside a [`SqlPool`]
/// (`&SqlPool` gives `&Pool<DB>`); the body is compiled once per
/// database, so it may use any generic sqlx API.
///
/// ```
/// # async fn f(pool: &voxline_sqldb::SqlPool) -> Result<(), voxline_sqldb::sqlx::Error> {
/// use voxline_sqldb::{sqlx, with_pool};
/// // Each arm has its own result type: map it to a common one.
/// let rows = with_pool!(pool, |p| sqlx::query("DELETE FROM item")
///     .execute(p)
///     .await
///     .map(|done| done.rows_affected()))?;
/// # let _ = rows;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::SqlPool::Sqlite($p) => $body,
            $crate::SqlPool::Postgres($p) => $body,
            $crate::SqlPool::MySql($p) => $body,
        }
    };
}

impl SqlPool {
    /// Opens the database at `url` and runs `migrations` on it:
    /// `sqlite://path/file.db` (file and parent directory created if
    /// missing, WAL mode; `sqlite::memory:` lives as long as the pool),
    /// `postgres://user:pass@host/db` or `mysql://user:pass@host/db`.
    /// Fails within about `options.timeout` when a server does not answer.
    pub async fn open(
        url: &str,
        options: &OpenOptions,
        migrations: &MigrationSet,
    ) -> Result<SqlPool, OpenError> {
        let dialect =
            Dialect::from_url(url).ok_or_else(|| OpenError::UnsupportedUrl(redact_url(url)))?;
        let pool = SqlPool::connect(dialect, url, options)
            .await
            .map_err(OpenError::Connect)?;
        let migrator = migrations.migrator(dialect);
        with_pool!(&pool, |p| migrator.run(p).await).map_err(OpenError::Migrate)?;
        Ok(pool)
    }

    async fn connect(
        dialect: Dialect,
        url: &str,
        options: &OpenOptions,
    ) -> Result<SqlPool, sqlx::Error> {
        let timeout = options.timeout;
        let max_connections = options.max_connections.max(1);
        let deadline = |e: tokio::time::error::Elapsed| {
            sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, e))
        };
        Ok(match dialect {
            Dialect::Sqlite => {
                let connect = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(timeout.max(Duration::from_secs(5)));
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                if !in_memory
                    && let Some(parent) = connect.get_filename().parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)?;
                }
                let mut pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(timeout);
                if in_memory {
                    // The database lives only as long as a connection does.
                    pool = pool
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                SqlPool::Sqlite(pool.connect_with(connect).await?)
            }
            Dialect::Postgres => {
                let connect = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(timeout)
                    .connect_with(connect);
                SqlPool::Postgres(
                    tokio::time::timeout(timeout, pool)
                        .await
                        .map_err(deadline)??,
                )
            }
            Dialect::MySql => {
                let connect = MySqlConnectOptions::from_str(url)?;
                let pool = MySqlPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(timeout)
                    .connect_with(connect);
                SqlPool::MySql(
                    tokio::time::timeout(timeout, pool)
                        .await
                        .map_err(deadline)??,
                )
            }
        })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        match self {
            SqlPool::Sqlite(_) => Dialect::Sqlite,
            SqlPool::Postgres(_) => Dialect::Postgres,
            SqlPool::MySql(_) => Dialect::MySql,
        }
    }

    /// Closes the pool's connections (waits for checked-out ones).
    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await);
    }
}

/// Runs `operation` (a database call) for at most `limit`.
pub async fn within<T>(
    limit: Duration,
    operation: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreFailure> {
    match tokio::time::timeout(limit, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StoreFailure::Database(e)),
        Err(_) => Err(StoreFailure::Timeout(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MigrationStep;

    const SET: MigrationSet = MigrationSet {
        table: "voxline_sqldb_test_migrations",
        steps: &[MigrationStep {
            description: "item",
            sqlite: "CREATE TABLE item (name TEXT NOT NULL PRIMARY KEY)",
            postgres: "CREATE TABLE item (name TEXT NOT NULL PRIMARY KEY)",
            mysql: "CREATE TABLE item (name VARCHAR(64) NOT NULL PRIMARY KEY)",
        }],
    };

    fn options() -> OpenOptions {
        OpenOptions {
            timeout: Duration::from_secs(2),
            max_connections: 2,
        }
    }

    async fn count(pool: &SqlPool) -> i64 {
        within(Duration::from_secs(2), async {
            with_pool!(pool, |p| sqlx::query_scalar("SELECT COUNT(*) FROM item")
                .fetch_one(p)
                .await)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn in_memory_database_outlives_idle_connections() {
        // Every connection would have its own in-memory database: one.
        let one = OpenOptions {
            max_connections: 1,
            ..options()
        };
        let pool = SqlPool::open("sqlite::memory:", &one, &SET).await.unwrap();
        assert_eq!(pool.dialect(), Dialect::Sqlite);
        with_pool!(&pool, |p| sqlx::query("INSERT INTO item (name) VALUES (?)")
            .bind("a")
            .execute(p)
            .await
            .map(|done| done.rows_affected()))
        .unwrap();
        assert_eq!(count(&pool).await, 1);
        pool.close().await;
    }

    #[tokio::test]
    async fn file_and_directory_are_created_and_migrations_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir
            .path()
            .join("nested/data")
            .join(crate::DEFAULT_SQLITE_FILE);
        let url = crate::sqlite_url(&file);
        let pool = SqlPool::open(&url, &options(), &SET).await.unwrap();
        assert!(file.exists());
        let journal: String = with_pool!(&pool, |p| sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(p)
            .await)
        .unwrap();
        assert_eq!(journal, "wal");
        pool.close().await;
        // Opening again runs nothing new; the version is in the set's table.
        let pool = SqlPool::open(&url, &options(), &SET).await.unwrap();
        let versions: Vec<i64> = with_pool!(&pool, |p| sqlx::query_scalar(
            "SELECT version FROM voxline_sqldb_test_migrations"
        )
        .fetch_all(p)
        .await)
        .unwrap();
        assert_eq!(versions, [1]);
        assert_eq!(count(&pool).await, 0);
        pool.close().await;
    }

    #[tokio::test]
    async fn open_errors() {
        let err = SqlPool::open("redis://u:secret@h/0", &options(), &SET)
            .await
            .unwrap_err();
        match &err {
            OpenError::UnsupportedUrl(url) => assert_eq!(url, "redis://u:***@h/0"),
            other => panic!("{other:?}"),
        }
        assert!(!err.to_string().contains("secret"), "{err}");
        // A directory cannot be created below a file.
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let url = crate::sqlite_url(&blocker.join("sub/voxline.db"));
        let err = SqlPool::open(&url, &options(), &SET).await.unwrap_err();
        assert!(matches!(err, OpenError::Connect(_)), "{err:?}");
        // A script that fails.
        const BROKEN: MigrationSet = MigrationSet {
            table: "voxline_sqldb_broken_migrations",
            steps: &[MigrationStep {
                description: "broken",
                sqlite: "CREATE TABLE",
                postgres: "CREATE TABLE",
                mysql: "CREATE TABLE",
            }],
        };
        let err = SqlPool::open("sqlite::memory:", &options(), &BROKEN)
            .await
            .unwrap_err();
        assert!(matches!(err, OpenError::Migrate(_)), "{err:?}");
    }

    #[tokio::test]
    async fn operations_have_a_deadline() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, sqlx::Error>(())
        };
        let failure = within(Duration::from_millis(20), slow).await.unwrap_err();
        assert!(matches!(failure, StoreFailure::Timeout(_)), "{failure:?}");
        assert_eq!(failure.to_string(), "no answer within 20ms");
        let failure = within(Duration::from_secs(1), async {
            Err::<(), _>(sqlx::Error::PoolClosed)
        })
        .await
        .unwrap_err();
        assert!(matches!(
            failure,
            StoreFailure::Database(sqlx::Error::PoolClosed)
        ));
    }
}
