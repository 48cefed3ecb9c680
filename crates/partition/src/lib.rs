//! Partitioned user location.
//!
//! Every address-of-record (`user@domain`, domain lower-cased, user as
//! written) belongs to one of `count` partitions by a stable hash
//! ([`partition_of`]: 64-bit FNV-1a, fixed forever, the same on every node
//! and across releases). Each partition has a primary registrar node and
//! optionally a backup ([`PartitionMap`]); the edge sends REGISTER and the
//! terminating requests of a user to the primary, and to the backup while
//! the primary is down. With the location in a shared store (Redis) the
//! backup sees every binding the primary wrote, so nothing is lost when a
//! node dies.
//!
//! A node can also own every partition (no `[partitions]` section): the
//! simple case of one registrar, or of registrars behind a round-robin edge.
//!
//! ```
//! use voxline_partition::{PartitionMap, PartitionsConfig, Role};
//! let cfg: PartitionsConfig = toml::from_str(r#"
//!     count = 3
//!     [[assign]]
//!     partitions = "0"
//!     primary = "reg1"
//!     backup = "reg2"
//!     [[assign]]
//!     partitions = "1"
//!     primary = "reg2"
//!     backup = "reg3"
//!     [[assign]]
//!     partitions = "2"
//!     primary = "reg3"
//!     backup = "reg1"
//! "#).unwrap();
//! let map = PartitionMap::from_config(&cfg).unwrap();
//! let p = map.partition_of("alice@example.com");
//! assert!(p < 3);
//! assert_eq!(map.role_of(map.owners(p).primary, p), Role::Primary);
//! ```

#![deny(missing_docs)]

mod config;
mod map;

pub use config::{Assignment, PartitionsConfig};
pub use map::{Owners, PartitionError, PartitionMap, Role, partition_of};
