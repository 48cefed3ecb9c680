//! The ng control protocol of rtpengine, without I/O.
//!
//! - [`bencode`]: borrowed bencode values, lenient decoder (any key order,
//!   ints as strings), encoder; [`json`]: the JSON form.
//! - [`frame`]: `<cookie> <dictionary>` framing for datagrams and streams.
//! - [`command`]: typed commands with every key and flag the relay honours;
//!   unknown ones become warnings.
//! - [`reply`]: replies in rtpengine's shapes (`query`, `statistics`, ...).
//! - [`cache`]: bounded cookie → reply cache for retransmissions.
//! - [`client`]: cookies, request encoding, typed reply decoding and a
//!   retransmission state machine for an ng client.
//!
//! ```
//! use voxline_ng::{frame::Frame, command::{Request, Command}};
//! let frame = Frame::parse(b"5323_1 d7:command4:pinge").unwrap();
//! let req = Request::parse(&frame.decode().unwrap()).unwrap();
//! assert_eq!(req.command, Command::Ping);
//! ```

pub mod bencode;
pub mod cache;
pub mod client;
pub mod command;
pub mod frame;
pub mod json;
pub mod reply;

pub use bencode::Value;
pub use client::NgError;
