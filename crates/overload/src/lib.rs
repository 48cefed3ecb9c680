//! Overload protection for a Voxline node's SIP core, without I/O: every
//! decision takes an explicit `now`, so the tests drive a virtual clock.
//!
//! Two independent guards, both consulted early on the receive path:
//!
//! * [`SourceLimiter`] — per-source rate limiting with temporary bans, like
//!   Kamailio's `pike`: a source IP sending more than `limit` requests in a
//!   `window` is banned for `ban` (its requests are dropped or answered 503,
//!   as configured, and counted).
//! * [`AdmissionControl`] — node-level overload control: when the receive
//!   queue's delay or the node's CPU passes its threshold, *new* requests of
//!   the shed methods (REGISTER and INVITE by default) are answered 503 with
//!   a randomized Retry-After, within a budget of the node's time, while
//!   in-dialog requests (a To tag, ACK, CANCEL, BYE...) and emergency calls
//!   are always let through. [`RequestClass::of`] sorts a request.
//!
//! The I/O side (the server crate) feeds [`AdmissionControl`] with the
//! queue delays it measures on receive and a periodic CPU sample, and tells
//! it how long each rejection took, so the rejections never eat more than
//! their share of the node.

#![deny(missing_docs)]

pub mod admission;
pub mod classify;
pub mod config;
pub mod source;

pub use admission::{Admission, AdmissionControl, AdmissionState};
pub use classify::RequestClass;
pub use config::{BannedAnswer, FloodConfig, OverloadConfig};
pub use source::{SourceLimiter, SourceVerdict};
