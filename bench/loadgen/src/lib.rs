//! `voxline-loadgen`: a batched SIP UDP load generator.
//!
//! The protocol side is sans-IO: [`uac::Uac`] (calling side) and [`uas::Uas`] (called
//! side) are state machines fed with received datagrams and an explicit clock (µs), which
//! queue outgoing datagrams in an [`outbox::Outbox`]. Requests are rendered from
//! pre-compiled [`template::Template`]s with fixed-width fields patched in place, replies
//! are read with the memchr-based [`message::parse`]. The [`engine`] owns the sockets
//! (recvmmsg/sendmmsg through nix) and runs one event loop per thread; [`engine::run`]
//! returns a [`stats::Report`].
//!
//! ```no_run
//! use voxline_loadgen::engine::{RunConfig, Shape, run};
//! use voxline_loadgen::uac::Scenario;
//! let mut cfg = RunConfig::new(Scenario::Options, "127.0.0.1:5060".parse().unwrap());
//! cfg.shape = Shape::Rate(10_000.0);
//! cfg.duration = std::time::Duration::from_secs(5);
//! let report = run(&cfg).unwrap();
//! println!("{}", report.summary());
//! ```

pub mod digest;
pub mod engine;
pub mod message;
pub mod outbox;
pub mod responder;
pub mod response;
pub mod socket;
pub mod stats;
pub mod template;
pub mod timers;
pub mod uac;
pub mod uas;
pub mod writer;
