//! Configuration problems, each with the key and position it concerns.

use std::fmt;

use crate::locate::line_col;

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the configuration came from (a file name, or `<embedded default>`).
    pub origin: String,
    /// 1-based line, or 0 when the key is absent from the file.
    pub line: usize,
    /// 1-based column, or 0 when the key is absent from the file.
    pub column: usize,
    /// Dotted key path, empty for syntax errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(crate) fn at(origin: &str, text: &str, pos: usize, key: String, message: String) -> Self {
        let (line, column) = line_col(text, pos);
        Problem {
            origin: origin.to_owned(),
            line,
            column,
            key,
            message,
        }
    }

    pub(crate) fn unlocated(origin: &str, key: String, message: String) -> Self {
        Problem {
            origin: origin.to_owned(),
            line: 0,
            column: 0,
            key,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        } else {
            write!(f, "{}: ", self.origin)?;
        }
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one configuration, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn new() -> Self {
        Problems(Vec::new())
    }

    pub(crate) fn single(p: Problem) -> Self {
        Problems(vec![p])
    }

    pub(crate) fn push(&mut self, p: Problem) {
        if !self.0.contains(&p) {
            self.0.push(p);
            self.0.sort_by_key(|p| (p.line == 0, p.line, p.column));
        }
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in file order (unlocated ones last).
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
