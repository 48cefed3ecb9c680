//! The SQL of the `cdr` table for each database and its embedded
//! migrations. Statements are runtime strings with bind parameters (no
//! compile-time checking, so builds need no database); the multi-row insert
//! is built for the batch size at hand.

use std::fmt::Write as _;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::row::DB_COLUMNS;

/// The database behind a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite (the embedded default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Dialect {
    /// The dialect of a database URL, by scheme.
    pub fn from_url(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else if url.starts_with("mysql://") {
            Some(Dialect::MySql)
        } else {
            None
        }
    }

    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }

    /// The `n`th (1-based) bind placeholder.
    fn placeholder(self, out: &mut String, n: usize) {
        match self {
            Dialect::Postgres => {
                let _ = write!(out, "${n}");
            }
            Dialect::Sqlite | Dialect::MySql => out.push('?'),
        }
    }

    /// `INSERT` of `rows` records that skips ids already stored (so that a
    /// replayed spool inserts every record exactly once).
    pub(crate) fn insert(self, rows: usize) -> String {
        let columns = DB_COLUMNS.join(", ");
        let mut sql = String::with_capacity(64 + columns.len() + rows * DB_COLUMNS.len() * 5);
        // MySQL: IGNORE skips duplicate keys and counts only new rows (with
        // ON DUPLICATE KEY UPDATE, sqlx's CLIENT_FOUND_ROWS counts both).
        let ignore = if self == Dialect::MySql {
            "IGNORE "
        } else {
            ""
        };
        let _ = write!(sql, "INSERT {ignore}INTO cdr ({columns}) VALUES ");
        let mut n = 0;
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for column in 0..DB_COLUMNS.len() {
                if column > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                self.placeholder(&mut sql, n);
            }
            sql.push(')');
        }
        if self != Dialect::MySql {
            sql.push_str(" ON CONFLICT (id) DO NOTHING");
        }
        sql
    }

    /// One page of records in `[since, until)` by start time, after the
    /// cursor `(start_ms, id)`: binds since, until, cursor start (twice),
    /// cursor id, limit.
    pub(crate) fn page(self) -> &'static str {
        match self {
            Dialect::Sqlite | Dialect::MySql => PAGE_QUESTION_MARKS,
            Dialect::Postgres => PAGE_DOLLARS,
        }
    }

    /// Records in `[since, until)` by start time: binds since, until.
    pub(crate) fn count(self) -> &'static str {
        match self {
            Dialect::Sqlite | Dialect::MySql => {
                "SELECT COUNT(*) FROM cdr WHERE start_ms >= ? AND start_ms < ?"
            }
            Dialect::Postgres => "SELECT COUNT(*) FROM cdr WHERE start_ms >= $1 AND start_ms < $2",
        }
    }
}

const PAGE_QUESTION_MARKS: &str = "SELECT id, call_id, node, caller_aor, caller_display, callee_aor, \
     request_uri, source_addr, source_transport, start_ms, answer_ms, end_ms, duration_ms, status, \
     reason, hangup_by, hangup_reason, relay, from_caller_packets, from_caller_bytes, \
     from_caller_lost, from_callee_packets, from_callee_bytes, from_callee_lost \
     FROM cdr WHERE start_ms >= ? AND start_ms < ? AND (start_ms > ? OR (start_ms = ? AND id > ?)) \
     ORDER BY start_ms, id LIMIT ?";

const PAGE_DOLLARS: &str = "SELECT id, call_id, node, caller_aor, caller_display, callee_aor, \
     request_uri, source_addr, source_transport, start_ms, answer_ms, end_ms, duration_ms, status, \
     reason, hangup_by, hangup_reason, relay, from_caller_packets, from_caller_bytes, \
     from_caller_lost, from_callee_packets, from_callee_bytes, from_callee_lost \
     FROM cdr WHERE start_ms >= $1 AND start_ms < $2 AND (start_ms > $3 OR (start_ms = $4 AND id > $5)) \
     ORDER BY start_ms, id LIMIT $6";

/// The table recording applied migrations: our own, so that other crates'
/// migrations can share the database without version clashes.
pub(crate) const MIGRATIONS_TABLE: &str = "voxline_cdr_migrations";

/// The embedded migrations for `dialect`.
pub(crate) fn migrator(dialect: Dialect) -> Migrator {
    let sql = match dialect {
        Dialect::Sqlite => [include_str!("../../migrations/sqlite/0001_cdr.sql")],
        Dialect::Postgres => [include_str!("../../migrations/postgres/0001_cdr.sql")],
        Dialect::MySql => [include_str!("../../migrations/mysql/0001_cdr.sql")],
    };
    let migrations = sql
        .into_iter()
        .zip(1i64..)
        .map(|(text, version)| {
            Migration::new(
                version,
                "cdr".into(),
                MigrationType::Simple,
                text.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_by_scheme() {
        assert_eq!(Dialect::from_url("sqlite://x.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_url("sqlite::memory:"), Some(Dialect::Sqlite));
        assert_eq!(
            Dialect::from_url("postgresql://h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::from_url("mysql://h/db"), Some(Dialect::MySql));
        assert_eq!(Dialect::from_url("redis://h"), None);
    }

    #[test]
    fn insert_has_one_placeholder_per_value() {
        let pg = Dialect::Postgres.insert(3);
        assert!(pg.contains("$72)"), "{pg}");
        assert!(!pg.contains("$73"));
        assert!(pg.ends_with("ON CONFLICT (id) DO NOTHING"));
        let sqlite = Dialect::Sqlite.insert(2);
        assert_eq!(sqlite.matches('?').count(), 48);
        assert!(!sqlite.contains('$'));
        let mysql = Dialect::MySql.insert(1);
        assert_eq!(mysql.matches('?').count(), 24);
        assert!(mysql.starts_with("INSERT IGNORE INTO cdr (id, "));
        assert!(sqlite.starts_with("INSERT INTO cdr (id, "));
        // Rows are decoded by position: the select list is the columns in order.
        let select = format!("SELECT {} FROM", DB_COLUMNS.join(", "));
        assert!(PAGE_DOLLARS.starts_with(&select), "{PAGE_DOLLARS}");
        assert!(PAGE_QUESTION_MARKS.starts_with(&select));
        assert_eq!(PAGE_QUESTION_MARKS.matches('?').count(), 6);
        assert!(PAGE_DOLLARS.contains("$6") && !PAGE_DOLLARS.contains('?'));
    }

    #[test]
    fn migrations_are_embedded() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let m = migrator(dialect);
            assert_eq!(m.iter().count(), 1);
            let sql = m.iter().map(|m| m.sql.as_str()).collect::<String>();
            assert!(sql.contains("CREATE TABLE cdr"));
            for column in DB_COLUMNS {
                assert!(
                    sql.contains(&format!("\n    {column} ")),
                    "{dialect:?} {column}"
                );
            }
        }
    }
}
