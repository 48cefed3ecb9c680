//! The partition map: stable hash and ownership, without I/O.

use crate::config::{MAX_PARTITIONS, PartitionsConfig, parse_list};

/// Why a partition map cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// `count` is out of range.
    #[error("partition count must be between 1 and {MAX_PARTITIONS}, got {0}")]
    Count(u16),
    /// A partition list does not parse.
    #[error("{0}")]
    List(String),
    /// A partition number is not below `count`.
    #[error("partition {partition} does not exist (count is {count})")]
    OutOfRange {
        /// The number named.
        partition: u16,
        /// The configured count.
        count: u16,
    },
    /// A partition is assigned twice.
    #[error("partition {0} is assigned twice")]
    Duplicate(u16),
    /// A partition has no primary.
    #[error("partition {0} is not assigned to any node")]
    Unassigned(u16),
}

/// The nodes responsible for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners<'a> {
    /// Serves the partition while it is up.
    pub primary: &'a str,
    /// Serves it while the primary is down.
    pub backup: Option<&'a str>,
}

/// What a node is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Its primary.
    Primary,
    /// Its backup.
    Backup,
    /// Neither.
    None,
}

impl Role {
    /// `primary`, `backup` or `none` (metric labels, admin API).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::None => "none",
        }
    }
}

/// Which node serves which partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMap {
    primary: Vec<String>,
    backup: Vec<Option<String>>,
}

/// The partition of an address-of-record among `count` partitions.
///
/// `aor` is `user@domain` with the domain lower-cased (as the registrar
/// stores it). The hash is 64-bit FNV-1a and must never change: it decides
/// where every user's bindings are served.
pub fn partition_of(aor: &str, count: u16) -> u16 {
    let h = aor.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // Fold the high bits in: FNV's low bits alone mix short keys poorly.
    let h = h ^ (h >> 32);
    (h % u64::from(count.max(1))) as u16
}

impl PartitionMap {
    /// Builds the map; every partition must be assigned exactly once.
    pub fn from_config(cfg: &PartitionsConfig) -> Result<Self, PartitionError> {
        if cfg.count == 0 || cfg.count > MAX_PARTITIONS {
            return Err(PartitionError::Count(cfg.count));
        }
        let n = usize::from(cfg.count);
        let mut primary: Vec<Option<String>> = vec![None; n];
        let mut backup: Vec<Option<String>> = vec![None; n];
        for a in &cfg.assign {
            for p in parse_list(&a.partitions).map_err(PartitionError::List)? {
                let slot = primary
                    .get_mut(usize::from(p))
                    .ok_or(PartitionError::OutOfRange {
                        partition: p,
                        count: cfg.count,
                    })?;
                if slot.is_some() {
                    return Err(PartitionError::Duplicate(p));
                }
                *slot = Some(a.primary.trim().to_owned());
                if let Some(b) = backup.get_mut(usize::from(p)) {
                    *b = a.backup.as_ref().map(|s| s.trim().to_owned());
                }
            }
        }
        let primary = primary
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.ok_or(PartitionError::Unassigned(i as u16)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PartitionMap { primary, backup })
    }

    /// Number of partitions.
    pub fn count(&self) -> u16 {
        self.primary.len() as u16
    }

    /// The partition of `aor`.
    pub fn partition_of(&self, aor: &str) -> u16 {
        partition_of(aor, self.count())
    }

    /// The nodes of partition `p` (`p` is taken modulo the count).
    pub fn owners(&self, p: u16) -> Owners<'_> {
        let i = usize::from(p) % self.primary.len().max(1);
        Owners {
            primary: self.primary.get(i).map_or("", String::as_str),
            backup: self.backup.get(i).and_then(|b| b.as_deref()),
        }
    }

    /// What `node` is for partition `p`.
    pub fn role_of(&self, node: &str, p: u16) -> Role {
        let o = self.owners(p);
        if o.primary == node {
            Role::Primary
        } else if o.backup == Some(node) {
            Role::Backup
        } else {
            Role::None
        }
    }

    /// Partitions where `node` is primary, and where it is backup.
    pub fn partitions_of(&self, node: &str) -> (Vec<u16>, Vec<u16>) {
        let mut primary = Vec::new();
        let mut backup = Vec::new();
        for p in 0..self.count() {
            match self.role_of(node, p) {
                Role::Primary => primary.push(p),
                Role::Backup => backup.push(p),
                Role::None => {}
            }
        }
        (primary, backup)
    }

    /// Every node named in the map (primaries and backups), each once.
    pub fn nodes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for n in self
            .primary
            .iter()
            .map(String::as_str)
            .chain(self.backup.iter().filter_map(|b| b.as_deref()))
        {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Assignment;

    fn cfg(count: u16, assign: &[(&str, &str, Option<&str>)]) -> PartitionsConfig {
        PartitionsConfig {
            count,
            assign: assign
                .iter()
                .map(|(p, a, b)| Assignment {
                    partitions: (*p).into(),
                    primary: (*a).into(),
                    backup: b.map(Into::into),
                })
                .collect(),
        }
    }

    #[test]
    fn the_hash_is_pinned() {
        // These values decide where users live: they must never change.
        assert_eq!(partition_of("alice@example.com", 1), 0);
        let pinned: Vec<u16> = [
            "alice@example.com",
            "bob@example.com",
            "u00000000@localhost",
        ]
        .iter()
        .map(|a| partition_of(a, 1024))
        .collect();
        assert_eq!(pinned, [386, 49, 33]);
    }

    #[test]
    fn spread_is_even() {
        let mut counts = [0u32; 12];
        for i in 0..120_000 {
            counts[usize::from(partition_of(&format!("u{i:08}@localhost"), 12))] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn ownership() {
        let m = PartitionMap::from_config(&cfg(
            4,
            &[("0-1", "reg1", Some("reg2")), ("2,3", "reg2", Some("reg1"))],
        ))
        .unwrap();
        assert_eq!(m.count(), 4);
        assert_eq!(
            m.owners(2),
            Owners {
                primary: "reg2",
                backup: Some("reg1")
            }
        );
        assert_eq!(m.role_of("reg1", 0), Role::Primary);
        assert_eq!(m.role_of("reg1", 3), Role::Backup);
        assert_eq!(m.role_of("reg3", 3), Role::None);
        assert_eq!(m.partitions_of("reg1"), (vec![0, 1], vec![2, 3]));
        assert_eq!(m.nodes(), ["reg1", "reg2"]);
    }

    #[test]
    fn every_partition_exactly_once() {
        assert_eq!(
            PartitionMap::from_config(&cfg(3, &[("0-1", "a", None)])),
            Err(PartitionError::Unassigned(2))
        );
        assert_eq!(
            PartitionMap::from_config(&cfg(2, &[("0-1", "a", None), ("1", "b", None)])),
            Err(PartitionError::Duplicate(1))
        );
        assert_eq!(
            PartitionMap::from_config(&cfg(2, &[("0-2", "a", None)])),
            Err(PartitionError::OutOfRange {
                partition: 2,
                count: 2
            })
        );
        assert_eq!(
            PartitionMap::from_config(&cfg(0, &[])),
            Err(PartitionError::Count(0))
        );
    }

    #[test]
    fn config_problems_name_the_key() {
        let text = "count = 2\n[[assign]]\npartitions = \"0-1\"\nprimary = \"a\"\nbackup = \"a\"\n";
        let r: Result<PartitionsConfig, _> = voxline_config::load("p.toml", text);
        let p = r.unwrap_err().to_string();
        assert!(p.contains("assign[0].backup"), "{p}");
        let text = "count = 3\n[[assign]]\npartitions = \"0-1\"\nprimary = \"a\"\n";
        let p = voxline_config::load::<PartitionsConfig>("p.toml", text)
            .unwrap_err()
            .to_string();
        assert!(p.contains("partition 2 is not assigned"), "{p}");
    }
}
