//! The SQL of the subscriber table for each database, and its embedded
//! migrations. Queries are runtime strings with bind parameters (no
//! compile-time checking, so builds need no database).

use voxline_sqldb::{Dialect, MigrationSet, MigrationStep};

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
    dialect.pick(&QUESTION_MARKS, &DOLLARS)
}

/// The embedded migrations, recorded in a table of our own so that other
/// crates' migrations can share the database without version clashes.
pub(crate) const MIGRATIONS: MigrationSet = MigrationSet {
    table: "voxline_auth_migrations",
    steps: &[MigrationStep {
        description: "subscriber",
        sqlite: include_str!("../../migrations/sqlite/0001_subscriber.sql"),
        postgres: include_str!("../../migrations/postgres/0001_subscriber.sql"),
        mysql: include_str!("../../migrations/mysql/0001_subscriber.sql"),
    }],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_match_the_dialect() {
        let binds = |dialect: Dialect| {
            let s = statements(dialect);
            [
                s.lookup,
                s.insert,
                s.delete,
                s.update_ha1,
                s.list_all,
                s.list_domain,
                s.all_credentials,
            ]
            .map(|q| dialect.bind_count(q))
        };
        let expected = [2, 6, 2, 5, 0, 1, 0].map(Some);
        for dialect in Dialect::ALL {
            assert_eq!(binds(dialect), expected, "{dialect:?}");
        }
    }

    #[test]
    fn migrations_are_embedded() {
        assert_eq!(MIGRATIONS.table, "voxline_auth_migrations");
        for dialect in Dialect::ALL {
            let m = MIGRATIONS.migrator(dialect);
            assert_eq!(m.iter().count(), 1);
            assert!(
                m.iter()
                    .all(|m| m.sql.as_str().contains("CREATE TABLE subscriber"))
            );
        }
    }
}
