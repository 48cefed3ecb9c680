//! User location for the Voxline registrar and proxy: which contacts are
//! registered for an address-of-record (RFC 3261 §10, RFC 3327 Path,
//! RFC 5626 instance/reg-id basics).
//!
//! * [`set`] — the sans-IO semantics shared by every backend: §10.3 step 7
//!   matching ([`uri`]), Call-ID/CSeq ordering, max-contacts policy, lookup
//!   order, expiry, and idempotent replication ([`change`]).
//! * [`memory`] — sharded in-process store with a compact packed
//!   representation, an expiry wheel, and an append log + snapshots.
//! * [`redis_store`] — Redis standalone or Cluster with Lua compare-and-set.
//! * [`LocationStore`] — the backend chosen by [`LocationConfig`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), voxline_location::LocationError> {
//! use voxline_location::*;
//! let store = LocationStore::open(&LocationConfig::default()).await?;
//! let update = Update {
//!     call_id: "a84b4c76e66710".into(),
//!     cseq: 1,
//!     source: Source {
//!         transport: Transport::Udp,
//!         remote: "192.0.2.10:5060".parse().unwrap(),
//!         local: "192.0.2.1:5060".parse().unwrap(),
//!     },
//!     path: vec![],
//!     user_agent: Some("Phone/1.0".into()),
//!     nat: false,
//!     contacts: Contacts::List(vec![ContactUpdate::new("sip:alice@192.0.2.10:5060", 3600)]),
//! };
//! let now = Timestamp::now();
//! let applied = store.apply("alice@example.com", &update, now).await?;
//! assert_eq!(applied.bindings.len(), 1);
//! let targets = store.lookup("alice@example.com", now).await?;
//! # let _ = targets; Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod binding;
pub mod change;
pub mod codec;
pub mod config;
pub mod error;
pub mod memory;
pub mod redis_store;
pub mod set;
pub mod store;
#[cfg(feature = "test-util")]
pub mod testutil;
pub mod time;
pub mod uri;

pub use binding::{Binding, ContactUpdate, Contacts, Source, Transport, Update};
pub use change::{ChangeKind, ChangeOrigin, LocationChange, RemoveReason, Version};
pub use config::{BackendKind, LocationConfig};
pub use error::{ConfigError, InvalidInput, LocationError, Unreachable};
pub use memory::journal::FsyncPolicy;
pub use memory::{MemoryOptions, MemoryStore};
pub use redis_store::{RedisOptions, RedisStore};
pub use set::{Limits, MaxContactsPolicy};
pub use store::{Applied, Counts, LocationStore, Page};
pub use time::Timestamp;
