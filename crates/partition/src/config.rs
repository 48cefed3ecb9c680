//! `[partitions]` configuration.

use serde::Deserialize;
use voxline_config::{Validate, Validator};

use crate::map::PartitionMap;

/// How addresses-of-record are spread over registrar nodes.
///
/// ```toml
/// [partitions]
/// count = 12
/// [[partitions.assign]]
/// partitions = "0-3"
/// primary = "reg1"
/// backup = "reg2"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionsConfig {
    /// Number of partitions (1 to 4096). Changing it moves users between
    /// partitions: choose it once, larger than the number of nodes.
    pub count: u16,
    /// Which node serves which partitions; every partition exactly once.
    #[serde(default)]
    pub assign: Vec<Assignment>,
}

/// One `[[partitions.assign]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Partition numbers: `"3"`, `"0-3"`, `"0-3,8,10-11"`.
    pub partitions: String,
    /// The node (its `[node] name`) that serves these partitions.
    pub primary: String,
    /// The node that serves them while the primary is down.
    #[serde(default)]
    pub backup: Option<String>,
}

/// Most partitions a map may have.
pub const MAX_PARTITIONS: u16 = 4096;

/// Parses a partition list (`"0-3,8"`) into partition numbers.
pub(crate) fn parse_list(list: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("empty item in partition list {list:?}"));
        }
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u16>()
                .map_err(|_| format!("{s:?} is not a partition number"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a > b {
            return Err(format!("range {part:?} runs backwards"));
        }
        out.extend(a..=b);
    }
    Ok(out)
}

impl Validate for PartitionsConfig {
    fn validate(&self, v: &mut Validator) {
        if self.count == 0 || self.count > MAX_PARTITIONS {
            v.error("count", format!("must be between 1 and {MAX_PARTITIONS}"));
            return;
        }
        if self.assign.is_empty() {
            v.error(
                "assign",
                "assign every partition to a node ([[partitions.assign]]), or leave out [partitions] so that every node owns every partition",
            );
            return;
        }
        let mut clean = true;
        for (i, a) in self.assign.iter().enumerate() {
            if let Err(e) = parse_list(&a.partitions) {
                v.error(&format!("assign[{i}].partitions"), e);
                clean = false;
            }
            if a.primary.trim().is_empty() {
                v.error(&format!("assign[{i}].primary"), "must name a node");
                clean = false;
            }
            if a.backup.as_deref() == Some(a.primary.as_str()) {
                v.error(
                    &format!("assign[{i}].backup"),
                    "the backup must be another node than the primary",
                );
                clean = false;
            }
        }
        if clean && let Err(e) = PartitionMap::from_config(self) {
            v.error("assign", e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("3").unwrap(), [3]);
        assert_eq!(parse_list("0-3, 8,10-11").unwrap(), [0, 1, 2, 3, 8, 10, 11]);
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("a").is_err());
        assert!(parse_list("1,,2").is_err());
    }
}
