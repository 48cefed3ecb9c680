//! Digest authentication and the subscriber store of Voxline.
//!
//! - Digest per RFC 2617 (MD5) and RFC 7616/RFC 8760 (SHA-256), `qop=auth`.
//!   Challenges offer SHA-256 first, then MD5 (configurable order).
//! - Stateless nonces signed with a cluster-wide secret ([`NonceSigner`]),
//!   a bounded nonce-count table against replays ([`NonceCountTable`]).
//! - No user enumeration: unknown users are verified against a fake HA1
//!   derived from the secret and get the same answer as a wrong password.
//! - Subscribers (HA1 values only) in SQLite, PostgreSQL or MySQL through
//!   sqlx ([`SubscriberStore`]).
//!
//! No SIP parsing happens here: the caller passes the method, the realm and
//! the parsed `Authorization` parameters ([`DigestCredentials`]), and gets
//! back a [`Decision`]: accept, or the exact challenge header values.
//!
//! ```no_run
//! # async fn demo() -> Result<(), voxline_auth::AuthError> {
//! use std::time::SystemTime;
//! use voxline_auth::*;
//!
//! let auth = DigestAuth::from_config(&AuthConfig::default(), "voxline-data".as_ref()).await?;
//! auth.store().add("alice", "localhost", "secret").await?;
//!
//! let header = "Digest username=\"alice\", realm=\"localhost\", ...";
//! let credentials = DigestCredentials::parse(header).ok();
//! let request = AuthRequest {
//!     method: "REGISTER",
//!     realm: "localhost",
//!     kind: ChallengeKind::Www,
//!     credentials: credentials.as_ref(),
//! };
//! match auth.authenticate(&request, SystemTime::now()).await? {
//!     Decision::Accept(who) => println!("{}@{} authenticated", who.username, who.realm),
//!     Decision::Challenge(challenge) => {
//!         // Send `challenge.kind.status_code()` with every
//!         // `(name, value)` of `challenge.headers()`.
//!     }
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod challenge;
mod client;
mod config;
mod credentials;
mod digest;
mod error;
mod nonce;
mod params;
mod replay;
mod service;
mod store;
mod verify;

pub use challenge::{Challenge, ChallengeKind, ChallengeReason};
pub use client::{ClientRequest, DigestChallenge};
pub use config::{
    AuthConfig, DEFAULT_CACHE_SIZE, DEFAULT_CACHE_TTL_SECS, DEFAULT_DB_FILE,
    DEFAULT_DB_MAX_CONNECTIONS, DEFAULT_DB_TIMEOUT_MS, DEFAULT_NC_TABLE_SIZE,
    DEFAULT_NONCE_LIFETIME_SECS, ServerSecret,
};
pub use credentials::DigestCredentials;
pub use digest::{
    Algorithm, Ha1, HexDigest, QopAuth, StoredCredentials, hash_joined, request_digest,
};
pub use error::{AuthError, ConfigError, ParseError, StoreFailure};
pub use nonce::{NONCE_LEN, NonceInfo, NonceSigner, NonceStatus};
pub use replay::{NcVerdict, NonceCountTable};
pub use service::DigestAuth;
pub use store::{
    Dialect, Imported, NewSubscriber, StoreOptions, Subscriber, SubscriberStore, parse_address,
};
pub use verify::{Attempt, AuthRequest, Authenticated, Authenticator, Decision, Step};
