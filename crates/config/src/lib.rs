//! Loading and validating Voxline's TOML configuration.
//!
//! The configuration is one TOML file. This crate turns it into typed Rust
//! values and, when that fails, into a list of [`Problem`]s that each name the
//! offending key and its line, so that `voxline check` can print every problem
//! at once instead of stopping at the first one:
//!
//! * syntax errors are reported with their position (parsing cannot go on);
//! * type errors and unknown keys are collected one by one: after each error
//!   the offending entry is set aside and deserialization is retried, so a
//!   file with three mistakes yields three problems;
//! * semantic rules (ranges, cross-field constraints) are expressed with the
//!   [`Validate`] trait and located through the same key → span index.

mod locate;
mod problem;

pub use locate::{KeyPath, line_col};
pub use problem::{Problem, Problems};

use serde::de::DeserializeOwned;
use toml::de::DeTable;

/// How many independent errors one load reports before giving up.
const MAX_PROBLEMS: usize = 64;

/// Semantic validation of a deserialized configuration section.
///
/// Implementors push a problem for every rule the value breaks; the key is
/// the dotted path from the document root (e.g. `registrar.min_expires`).
pub trait Validate {
    /// Checks the value and records every broken rule in `v`.
    fn validate(&self, v: &mut Validator);
}

/// Collects semantic problems while a configuration is validated.
#[derive(Debug, Default)]
pub struct Validator {
    found: Vec<(String, String)>,
    prefix: Vec<String>,
}

impl Validator {
    /// Records that the value at `key` (relative to the current section) is wrong.
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let mut path = self.prefix.join(".");
        if !key.is_empty() {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        }
        self.found.push((path, message.into()));
    }

    /// Validates a nested section under `key`.
    pub fn section<T: Validate + ?Sized>(&mut self, key: &str, value: &T) {
        self.prefix.push(key.to_owned());
        value.validate(self);
        self.prefix.pop();
    }

    /// Whether any problem has been recorded.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

/// Parses `text` (read from `origin`, used in messages) into `T`, then
/// validates it. Returns every problem found.
pub fn load<T>(origin: &str, text: &str) -> Result<T, Problems>
where
    T: DeserializeOwned + Validate,
{
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let pos = e.span().map(|s| s.start).unwrap_or(0);
            return Err(Problems::single(Problem::at(
                origin,
                text,
                pos,
                String::new(),
                first_line(e.message()),
            )));
        }
    };
    let mut problems = Problems::new();
    let mut doc = root.clone();
    let mut removed: Vec<String> = Vec::new();
    let value = loop {
        let mut unknown = Vec::new();
        let de = toml::de::Deserializer::from(doc.clone());
        let result: Result<T, _> = serde_ignored::deserialize(de, |path| {
            unknown.push(path.to_string());
        });
        for path in unknown {
            let key = KeyPath::from_ignored(&path);
            let pos = key.span_in(&root).map(|s| s.start).unwrap_or(0);
            problems.push(Problem::at(
                origin,
                text,
                pos,
                key.to_string(),
                "unknown key".to_owned(),
            ));
        }
        match result {
            Ok(value) => break Some(value),
            Err(e) => {
                let span = e.span();
                let key = span
                    .as_ref()
                    .and_then(|s| KeyPath::enclosing(&doc, s.clone()))
                    .unwrap_or_default();
                let pos = span.map(|s| s.start).unwrap_or(0);
                let message = first_line(e.message());
                // A required key we set aside ourselves shows up again as
                // "missing field": that is not a new problem.
                let echo = missing_field(&message)
                    .is_some_and(|f| removed.contains(&format!("{key}.{f}")));
                if !echo {
                    problems.push(Problem::at(origin, text, pos, key.to_string(), message));
                }
                removed.push(key.to_string());
                // Set the offending entry aside and try again, so that the
                // next independent mistake is reported too.
                if key.is_root() || !key.remove_from(&mut doc) || problems.len() >= MAX_PROBLEMS {
                    break None;
                }
            }
        }
    };
    let Some(value) = value else {
        return Err(problems);
    };
    let mut v = Validator::default();
    value.validate(&mut v);
    for (path, message) in v.found {
        let key = KeyPath::parse(&path);
        let pos = key.span_in(&root).map(|s| s.start);
        problems.push(match pos {
            Some(pos) => Problem::at(origin, text, pos, path, message),
            None => Problem::unlocated(origin, path, message),
        });
    }
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems)
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

#[cfg(test)]
mod tests;
