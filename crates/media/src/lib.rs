//! Media anchoring for the proxy: which relay carries a call, and the ng
//! commands that put its media there.
//!
//! - [`MediaControl`]: the facade the proxy calls. [`MediaControl::offer`]
//!   and [`MediaControl::answer`] return rewritten SDP and the
//!   [`RelayRef`] carrying the call; [`MediaControl::delete`] returns the
//!   final statistics ([`MediaTotals::from_stats`] sums them per party for
//!   CDRs); [`MediaControl::query`]; [`MediaControl::relays`] for the admin
//!   API.
//! - [`RelaySet`]: the sans-IO relay set: weights, per-call stickiness
//!   ([`CallAffinity`]), failover, down marking and ping schedule.
//! - [`MediaPolicy`]: `[media.offer]`/`[media.answer]` flags and
//!   `[[media.direction]]` rules turned into ng requests.
//! - [`MediaConfig`]: the `[media]` section (`docs/media.md`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), voxline_media::MediaError> {
//! use voxline_media::{AnswerParams, DeleteParams, MediaConfig, MediaControl, OfferParams};
//! let config = MediaConfig::default(); // empty relay list: the node's own relay
//! let media = MediaControl::start(&config, Some("127.0.0.1:22222".parse().unwrap())).await?;
//! let caller = "192.0.2.10:5060".parse().unwrap();
//! let (sdp_for_callee, relay) = media
//!     .offer(&OfferParams::new("call-1", "from-tag", "v=0\r\n...", caller))
//!     .await?;
//! let callee = "192.0.2.20:5060".parse().unwrap();
//! let (sdp_for_caller, _) = media
//!     .answer(&AnswerParams::new("call-1", "from-tag", "to-tag", "v=0\r\n...", callee))
//!     .await?;
//! let stats = media
//!     .delete(&DeleteParams { call_id: "call-1", from_tag: "from-tag", to_tag: Some("to-tag"), via_branch: None })
//!     .await;
//! # let _ = (sdp_for_callee, relay, sdp_for_caller, stats);
//! # Ok(())
//! # }
//! ```
//!
//! Metrics: `voxline_media_commands_total{relay,command,result}`,
//! `voxline_media_failovers_total{relay,reason}`,
//! `voxline_media_sessions_started_total{relay}`,
//! `voxline_media_relay_up{relay}` and `voxline_media_calls`.

pub mod affinity;
pub mod config;
mod control;
mod error;
pub mod network;
pub mod policy;
pub mod set;
pub mod totals;

pub use affinity::CallAffinity;
pub use config::{MediaConfig, MediaFlags, RelayEntry};
pub use control::MediaControl;
pub use error::MediaError;
pub use network::Network;
pub use policy::{AnswerParams, DeleteParams, MediaPolicy, OfferParams};
pub use set::{RelayRef, RelaySet, RelayStatus};
pub use totals::{LegTotals, MediaTotals};
pub use voxline_ng::reply::CallStats;
