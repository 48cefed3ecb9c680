//! Voxline's SIP message codec: zero-copy framing of one received buffer,
//! typed header values parsed on demand, validation that picks the error
//! response, forwarding by splicing edits into the original bytes, and
//! builders for locally generated messages. No I/O.
//!
//! A receive path that may answer before doing any work (overload refusals)
//! can stop at a [`FramedMessage`]: the same framing, without the copy of
//! the header text a [`Message`] keeps; [`ResponseBuilder`] answers either
//! (through [`RequestRef`]).
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use voxline_sip::{HeaderName, Message, ValidationPolicy, validate_request};
//!
//! let raw = Bytes::from_static(b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n\
//! Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=9fxced76sl\r\n\
//! To: <sip:bob@example.com>\r\nCall-ID: 3848276298220188511@example.com\r\n\
//! CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
//! let msg = Message::parse(raw).unwrap();
//! assert_eq!(msg.top_via().unwrap().branch, Some("z9hG4bK74bf9"));
//! assert_eq!(msg.cseq().unwrap().seq, 1);
//! validate_request(&msg, &ValidationPolicy::default()).unwrap();
//!
//! let mut out = BytesMut::new();
//! msg.edit()
//!     .set_via_received(Some("198.51.100.7"), Some(5060))
//!     .push_via("SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKproxy1")
//!     .decrement_max_forwards()
//!     .write_to(&mut out)
//!     .unwrap();
//! let fwd = Message::parse(out.freeze()).unwrap();
//! assert_eq!(fwd.max_forwards(), Ok(69));
//! assert_eq!(fwd.vias().count(), 2);
//! assert_eq!(fwd.header(HeaderName::CallId), Some("3848276298220188511@example.com"));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod auth;
mod builder;
mod edit;
mod error;
mod exercise;
mod frame;
mod framed;
mod header_name;
mod host;
mod lex;
mod limits;
mod message;
mod method;
mod name_addr;
mod params;
mod peek;
mod stamp;
mod status;
mod stream;
mod uri;
mod validate;
mod values;
mod via;

pub use auth::{AuthParams, AuthValue, Challenge, Credentials};
pub use builder::{RequestBuilder, ResponseBuilder};
pub use edit::{EditError, Editor};
pub use error::{ParseError, ValueError};
#[doc(hidden)]
pub use exercise::exercise;
pub use framed::{FramedMessage, RequestRef};
pub use header_name::HeaderName;
pub use host::Host;
pub use lex::{percent_decode, percent_decode_bytes, unquote};
pub use limits::Limits;
pub use message::Message;
pub use method::Method;
pub use name_addr::{Contact, NameAddr};
pub use params::{ParamIter, Params};
pub use peek::peek_ack_to_tag;
pub use stamp::ReceivedStamp;
pub use status::reason_phrase;
pub use stream::{StreamEvent, StreamFramer};
pub use uri::{AbsoluteUri, SipUri, TelUri, Uri};
pub use validate::{
    Rejection, ResponseDefect, Role, ValidationPolicy, check_max_forwards, error_response,
    is_sip_date, validate_extensions, validate_request, validate_response,
};
pub use values::{CSeq, MAX_CSEQ, MediaType, RetryAfter};
pub use via::{MAGIC_COOKIE, Transport, Via};
