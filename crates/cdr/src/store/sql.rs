//! The SQL of the `cdr` table for each database and its embedded
//! migrations. Statements are runtime strings with bind parameters (no
//! compile-time checking, so builds need no database); the multi-row insert
//! is built for the batch size at hand.

use std::fmt::Write as _;

use voxline_sqldb::{Dialect, MigrationSet, MigrationStep};

use crate::row::DB_COLUMNS;

/// `INSERT` of `rows` records that skips ids already stored (so that a
/// replayed spool inserts every record exactly once).
pub(crate) fn insert(dialect: Dialect, rows: usize) -> String {
    let columns = DB_COLUMNS.join(", ");
    let mut sql = String::with_capacity(64 + columns.len() + rows * DB_COLUMNS.len() * 5);
    // MySQL: IGNORE skips duplicate keys and counts only new rows (with
    // ON DUPLICATE KEY UPDATE, sqlx's CLIENT_FOUND_ROWS counts both).
    let ignore = if dialect == Dialect::MySql {
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
            dialect.push_placeholder(&mut sql, n);
        }
        sql.push(')');
    }
    if dialect != Dialect::MySql {
        sql.push_str(" ON CONFLICT (id) DO NOTHING");
    }
    sql
}

/// One page of records in `[since, until)` by start time, after the
/// cursor `(start_ms, id)`: binds since, until, cursor start (twice),
/// cursor id, limit.
pub(crate) fn page(dialect: Dialect) -> &'static str {
    dialect.pick(PAGE_QUESTION_MARKS, PAGE_DOLLARS)
}

/// Records in `[since, until)` by start time: binds since, until.
pub(crate) fn count(dialect: Dialect) -> &'static str {
    dialect.pick(
        "SELECT COUNT(*) FROM cdr WHERE start_ms >= ? AND start_ms < ?",
        "SELECT COUNT(*) FROM cdr WHERE start_ms >= $1 AND start_ms < $2",
    )
}

/// Whether a record is stored: binds the id.
pub(crate) fn contains(dialect: Dialect) -> &'static str {
    dialect.pick(
        "SELECT COUNT(*) FROM cdr WHERE id = ?",
        "SELECT COUNT(*) FROM cdr WHERE id = $1",
    )
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

/// The embedded migrations, recorded in a table of our own so that the
/// `cdr` table can share a database with other crates' tables.
pub(crate) const MIGRATIONS: MigrationSet = MigrationSet {
    table: "voxline_cdr_migrations",
    steps: &[MigrationStep {
        description: "cdr",
        sqlite: include_str!("../../migrations/sqlite/0001_cdr.sql"),
        postgres: include_str!("../../migrations/postgres/0001_cdr.sql"),
        mysql: include_str!("../../migrations/mysql/0001_cdr.sql"),
    }],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_has_one_placeholder_per_value() {
        let pg = insert(Dialect::Postgres, 3);
        assert_eq!(Dialect::Postgres.bind_count(&pg), Some(72), "{pg}");
        assert!(pg.ends_with("ON CONFLICT (id) DO NOTHING"));
        let sqlite = insert(Dialect::Sqlite, 2);
        assert_eq!(Dialect::Sqlite.bind_count(&sqlite), Some(48));
        let mysql = insert(Dialect::MySql, 1);
        assert_eq!(Dialect::MySql.bind_count(&mysql), Some(24));
        assert!(mysql.starts_with("INSERT IGNORE INTO cdr (id, "));
        assert!(sqlite.starts_with("INSERT INTO cdr (id, "));
        // Rows are decoded by position: the select list is the columns in order.
        let select = format!("SELECT {} FROM", DB_COLUMNS.join(", "));
        assert!(PAGE_DOLLARS.starts_with(&select), "{PAGE_DOLLARS}");
        assert!(PAGE_QUESTION_MARKS.starts_with(&select));
        for dialect in Dialect::ALL {
            assert_eq!(dialect.bind_count(page(dialect)), Some(6), "{dialect:?}");
            assert_eq!(dialect.bind_count(count(dialect)), Some(2), "{dialect:?}");
            assert_eq!(
                dialect.bind_count(contains(dialect)),
                Some(1),
                "{dialect:?}"
            );
        }
    }

    #[test]
    fn migrations_are_embedded() {
        assert_eq!(MIGRATIONS.table, "voxline_cdr_migrations");
        for dialect in Dialect::ALL {
            let m = MIGRATIONS.migrator(dialect);
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
