//! Which database a URL names, and how its statements spell bind
//! placeholders.

use std::fmt::Write as _;

/// The database behind a pool.
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
    /// Every dialect.
    pub const ALL: [Dialect; 3] = [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql];

    /// The dialect of a database URL, by scheme: `sqlite:`,
    /// `postgres://`/`postgresql://` or `mysql://`.
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

    /// Whether bind placeholders are numbered (`$1`, `$2`: PostgreSQL)
    /// rather than `?` (SQLite, MySQL).
    pub const fn numbered_placeholders(self) -> bool {
        matches!(self, Dialect::Postgres)
    }

    /// `question_marks` for SQLite and MySQL, `numbered` for PostgreSQL:
    /// picks the spelling of a statement.
    pub fn pick<T>(self, question_marks: T, numbered: T) -> T {
        if self.numbered_placeholders() {
            numbered
        } else {
            question_marks
        }
    }

    /// Appends the `n`th (1-based) bind placeholder to `out`.
    pub fn push_placeholder(self, out: &mut String, n: usize) {
        if self.numbered_placeholders() {
            let _ = write!(out, "${n}");
        } else {
            out.push('?');
        }
    }

    /// How many values `sql` binds in this dialect (the number of `?`, or
    /// the highest `$n`), or `None` when it spells a placeholder the other
    /// way. For checking statement tables in tests: statements must not
    /// hold `?` or `$` in literals.
    pub fn bind_count(self, sql: &str) -> Option<usize> {
        if self.numbered_placeholders() {
            if sql.contains('?') {
                return None;
            }
            let mut highest = 0;
            for (at, _) in sql.match_indices('$') {
                let digits: String = sql[at + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                highest = highest.max(digits.parse().ok()?);
            }
            Some(highest)
        } else if sql.contains('$') {
            None
        } else {
            Some(sql.matches('?').count())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_by_scheme() {
        assert_eq!(Dialect::from_url("sqlite://x.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_url("sqlite::memory:"), Some(Dialect::Sqlite));
        assert_eq!(
            Dialect::from_url("postgres://u:p@h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::from_url("postgresql://h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::from_url("mysql://h/db"), Some(Dialect::MySql));
        assert_eq!(Dialect::from_url("redis://h"), None);
        assert_eq!(Dialect::from_url("postgres:h"), None);
        assert_eq!(Dialect::from_url(""), None);
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        for dialect in Dialect::ALL {
            let mut sql = String::from("VALUES (");
            for n in 1..=12 {
                if n > 1 {
                    sql.push_str(", ");
                }
                dialect.push_placeholder(&mut sql, n);
            }
            sql.push(')');
            assert_eq!(dialect.bind_count(&sql), Some(12), "{dialect:?} {sql}");
            for other in Dialect::ALL {
                if other.numbered_placeholders() != dialect.numbered_placeholders() {
                    assert_eq!(other.bind_count(&sql), None, "{other:?} {sql}");
                }
            }
        }
        let mut pg = String::new();
        Dialect::Postgres.push_placeholder(&mut pg, 10);
        assert_eq!(pg, "$10");
        assert_eq!(Dialect::Postgres.bind_count("SELECT 1"), Some(0));
        assert_eq!(Dialect::Postgres.bind_count("a = $2 AND b = $1"), Some(2));
        assert_eq!(Dialect::Postgres.bind_count("a = $x"), None);
        assert_eq!(Dialect::MySql.bind_count("a = ? AND b = ?"), Some(2));
    }

    #[test]
    fn pick_by_placeholder_style() {
        assert_eq!(Dialect::Sqlite.pick("?", "$1"), "?");
        assert_eq!(Dialect::MySql.pick("?", "$1"), "?");
        assert_eq!(Dialect::Postgres.pick("?", "$1"), "$1");
        assert_eq!(
            Dialect::ALL.map(Dialect::name),
            ["sqlite", "postgres", "mysql"]
        );
    }
}
