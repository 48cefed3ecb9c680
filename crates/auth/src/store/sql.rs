//! The SQL of the subscriber table for each database, and its embedded
//! migrations. Queries are runtime strings with bind parameters (no
//! compile-time checking, so builds need no database).

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

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
}

/// The statements of one dialect.
pub(crate) struct Statements {
    pub(crate) lookup: &'static str,
    pub(crate) insert: &'static str,
    pub(crate) delete: &'static str,
    pub(crate) update_ha1: &'static str,
    pub(crate) list_all: &'static str,
    pub(crate) list_domain: &'static str,
    pub(crate) all_credentials: &'static str,
}

/// `?` placeholders: SQLite and MySQL.
const QUESTION_MARKS: Statements = Statements {
    lookup: "SELECT ha1_md5, ha1_sha256 FROM subscriber WHERE username = ? AND domain = ?",
    insert: "INSERT INTO subscriber (username, domain, ha1_md5, ha1_sha256, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
    delete: "DELETE FROM subscriber WHERE username = ? AND domain = ?",
    update_ha1: "UPDATE subscriber SET ha1_md5 = ?, ha1_sha256 = ?, updated_at = ? \
                 WHERE username = ? AND domain = ?",
    list_all: "SELECT username, domain, created_at, updated_at FROM subscriber \
               ORDER BY domain, username",
    list_domain: "SELECT username, domain, created_at, updated_at FROM subscriber \
                  WHERE domain = ? ORDER BY username",
    all_credentials: "SELECT username, domain, ha1_md5, ha1_sha256 FROM subscriber",
};

/// `$n` placeholders: PostgreSQL.
const DOLLARS: Statements = Statements {
    lookup: "SELECT ha1_md5, ha1_sha256 FROM subscriber WHERE username = $1 AND domain = $2",
    insert: "INSERT INTO subscriber (username, domain, ha1_md5, ha1_sha256, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
    delete: "DELETE FROM subscriber WHERE username = $1 AND domain = $2",
    update_ha1: "UPDATE subscriber SET ha1_md5 = $1, ha1_sha256 = $2, updated_at = $3 \
                 WHERE username = $4 AND domain = $5",
    list_all: "SELECT username, domain, created_at, updated_at FROM subscriber \
               ORDER BY domain, username",
    list_domain: "SELECT username, domain, created_at, updated_at FROM subscriber \
                  WHERE domain = $1 ORDER BY username",
    all_credentials: "SELECT username, domain, ha1_md5, ha1_sha256 FROM subscriber",
};

pub(crate) fn statements(dialect: Dialect) -> &'static Statements {
    match dialect {
        Dialect::Sqlite | Dialect::MySql => &QUESTION_MARKS,
        Dialect::Postgres => &DOLLARS,
    }
}

/// The table recording applied migrations: our own, so that other crates'
/// migrations can share the database without version clashes.
pub(crate) const MIGRATIONS_TABLE: &str = "voxline_auth_migrations";

/// The embedded migrations for `dialect`.
pub(crate) fn migrator(dialect: Dialect) -> Migrator {
    let sql = match dialect {
        Dialect::Sqlite => [include_str!("../../migrations/sqlite/0001_subscriber.sql")],
        Dialect::Postgres => [include_str!(
            "../../migrations/postgres/0001_subscriber.sql"
        )],
        Dialect::MySql => [include_str!("../../migrations/mysql/0001_subscriber.sql")],
    };
    let migrations = sql
        .into_iter()
        .zip(1i64..)
        .map(|(text, version)| {
            Migration::new(
                version,
                "subscriber".into(),
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
    fn placeholders_match_the_dialect() {
        let count = |s: &Statements| {
            [s.lookup, s.insert, s.delete, s.update_ha1, s.list_domain]
                .map(|q| q.matches('?').count() + q.matches('$').count())
        };
        assert_eq!(
            count(statements(Dialect::Sqlite)),
            count(statements(Dialect::Postgres))
        );
        assert!(!statements(Dialect::Postgres).insert.contains('?'));
        assert!(!statements(Dialect::MySql).insert.contains('$'));
    }

    #[test]
    fn migrations_are_embedded() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let m = migrator(dialect);
            assert_eq!(m.iter().count(), 1);
            assert!(
                m.iter()
                    .all(|m| m.sql.as_str().contains("CREATE TABLE subscriber"))
            );
        }
    }
}
