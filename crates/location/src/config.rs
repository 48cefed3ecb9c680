//! `[location]` configuration (documented in docs/location-config.md).

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{ConfigError, LocationError};
use crate::memory::journal::FsyncPolicy;
use crate::set::MaxContactsPolicy;

/// Location store settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocationConfig {
    /// `memory`, `redis://host:port[/db]`, `rediss://...`, or
    /// `redis+cluster://host1:port1,host2:port2,...`.
    pub backend: String,
    /// Memory backend: directory for the log and snapshots; unset = not
    /// persisted.
    pub data_dir: Option<PathBuf>,
    /// Memory backend: seconds between snapshots (which also compact the log).
    pub snapshot_interval_secs: u64,
    /// Memory backend: when the log is fsynced.
    pub fsync: FsyncPolicy,
    /// Memory backend: fsync period for `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Memory backend: number of shards (power of two).
    pub shards: usize,
    /// Maximum bindings per AOR; 0 = unlimited.
    pub max_contacts: usize,
    /// `refuse` or `drop-oldest` above `max_contacts`.
    pub max_contacts_policy: MaxContactsPolicy,
    /// How often expired bindings are removed and reported.
    pub expire_interval_ms: u64,
    /// Redis backend: per-command timeout; beyond it the operation fails
    /// as unavailable.
    pub redis_timeout_ms: u64,
    /// Redis backend: key prefix.
    pub redis_key_prefix: String,
}

impl Default for LocationConfig {
    fn default() -> Self {
        LocationConfig {
            backend: "memory".into(),
            data_dir: None,
            snapshot_interval_secs: 60,
            fsync: FsyncPolicy::Never,
            fsync_interval_ms: 100,
            shards: 64,
            max_contacts: 10,
            max_contacts_policy: MaxContactsPolicy::Refuse,
            expire_interval_ms: 1000,
            redis_timeout_ms: 500,
            redis_key_prefix: "vxl:loc".into(),
        }
    }
}

/// Which backend a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    /// In-process memory.
    Memory,
    /// Redis; `cluster` = Redis Cluster seeded with `nodes`.
    Redis {
        /// Connection URLs (one for standalone, the seed nodes for Cluster).
        nodes: Vec<String>,
        /// Redis Cluster.
        cluster: bool,
    },
}

impl LocationConfig {
    /// Parse [`LocationConfig::backend`].
    pub fn backend_kind(&self) -> Result<BackendKind, LocationError> {
        let url = self.backend.trim();
        if url == "memory" {
            return Ok(BackendKind::Memory);
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| format!("redis://{s}"))
                .collect();
            if nodes.is_empty() {
                return Err(ConfigError::UnknownBackend(url.to_owned()).into());
            }
            return Ok(BackendKind::Redis {
                nodes,
                cluster: true,
            });
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(BackendKind::Redis {
                nodes: vec![url.to_owned()],
                cluster: false,
            });
        }
        Err(ConfigError::UnknownBackend(url.to_owned()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_keys_and_rejects_unknown_ones() {
        let c: LocationConfig = toml::from_str(
            r#"
            backend = "redis+cluster://127.0.0.1:7000, 127.0.0.1:7001"
            data_dir = "voxline-data"
            snapshot_interval_secs = 30
            fsync = "interval"
            fsync_interval_ms = 50
            shards = 128
            max_contacts = 5
            max_contacts_policy = "drop-oldest"
            expire_interval_ms = 500
            redis_timeout_ms = 200
            redis_key_prefix = "site1:loc"
            "#,
        )
        .unwrap();
        assert_eq!(c.fsync, FsyncPolicy::Interval);
        assert_eq!(c.max_contacts_policy, MaxContactsPolicy::DropOldest);
        assert_eq!(
            c.backend_kind().unwrap(),
            BackendKind::Redis {
                nodes: vec![
                    "redis://127.0.0.1:7000".into(),
                    "redis://127.0.0.1:7001".into()
                ],
                cluster: true
            }
        );
        assert!(toml::from_str::<LocationConfig>("backendd = \"memory\"").is_err());
        assert!(toml::from_str::<LocationConfig>("fsync = \"sometimes\"").is_err());
        let d: LocationConfig = toml::from_str("").unwrap();
        assert_eq!(d, LocationConfig::default());
        assert_eq!(d.backend_kind().unwrap(), BackendKind::Memory);
        let bad = LocationConfig {
            backend: "mysql://x".into(),
            ..LocationConfig::default()
        };
        assert!(matches!(
            bad.backend_kind(),
            Err(LocationError::Config(ConfigError::UnknownBackend(_)))
        ));
    }
}
