//! A crate's embedded migrations, in its own table.

use std::borrow::Cow;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::Dialect;

/// One schema version: its SQL for each dialect (usually `include_str!`
/// of `migrations/<dialect>/NNNN_name.sql`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationStep {
    /// What the step does (recorded with the version).
    pub description: &'static str,
    /// The SQLite script.
    pub sqlite: &'static str,
    /// The PostgreSQL script.
    pub postgres: &'static str,
    /// The MySQL/MariaDB script.
    pub mysql: &'static str,
}

impl MigrationStep {
    /// The script for `dialect`.
    pub const fn sql(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
            Dialect::MySql => self.mysql,
        }
    }
}

/// The migrations of one crate: versions 1, 2, … in order, recorded in
/// the crate's own table so that several crates' tables can share one
/// database without version clashes. Never change a step that has shipped
/// (its checksum is recorded); append one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationSet {
    /// The table recording applied versions, e.g. `voxline_auth_migrations`.
    pub table: &'static str,
    /// The steps, version 1 first.
    pub steps: &'static [MigrationStep],
}

impl MigrationSet {
    /// The sqlx migrator for `dialect`.
    pub fn migrator(&self, dialect: Dialect) -> Migrator {
        let migrations = self
            .steps
            .iter()
            .zip(1i64..)
            .map(|(step, version)| {
                Migration::new(
                    version,
                    Cow::Borrowed(step.description),
                    MigrationType::Simple,
                    step.sql(dialect).into_sql_str(),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(self.table);
        migrator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: MigrationSet = MigrationSet {
        table: "voxline_test_migrations",
        steps: &[
            MigrationStep {
                description: "first",
                sqlite: "CREATE TABLE a (x INTEGER)",
                postgres: "CREATE TABLE a (x BIGINT)",
                mysql: "CREATE TABLE a (x BIGINT) ENGINE=InnoDB",
            },
            MigrationStep {
                description: "second",
                sqlite: "CREATE TABLE b (y INTEGER)",
                postgres: "CREATE TABLE b (y BIGINT)",
                mysql: "CREATE TABLE b (y BIGINT) ENGINE=InnoDB",
            },
        ],
    };

    #[test]
    fn versions_in_order_in_the_own_table() {
        for dialect in Dialect::ALL {
            let m = SET.migrator(dialect);
            assert_eq!(m.table_name, "voxline_test_migrations");
            let steps: Vec<_> = m
                .iter()
                .map(|m| (m.version, m.description.to_string(), m.sql.as_str()))
                .collect();
            assert_eq!(
                steps,
                [
                    (1, "first".to_string(), SET.steps[0].sql(dialect)),
                    (2, "second".to_string(), SET.steps[1].sql(dialect)),
                ]
            );
        }
        assert!(
            SET.migrator(Dialect::MySql)
                .iter()
                .all(|m| m.sql.as_str().contains("InnoDB"))
        );
    }

    #[test]
    fn checksums_depend_only_on_the_text() {
        // What data directories recorded must keep matching.
        let a = SET.migrator(Dialect::Sqlite);
        let b = SET.migrator(Dialect::Sqlite);
        let sums = |m: &Migrator| m.iter().map(|m| m.checksum.to_vec()).collect::<Vec<_>>();
        assert_eq!(sums(&a), sums(&b));
        assert_ne!(sums(&a), sums(&SET.migrator(Dialect::Postgres)));
    }
}
