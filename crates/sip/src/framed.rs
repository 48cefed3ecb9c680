//! [`FramedMessage`]: a datagram framed but not yet made a [`Message`],
//! for the receive path's decisions that need a few header values and
//! nothing else (overload protection sorting a new request and refusing it
//! with a stateless 503). Framing is the one [`Message`] uses, so a framed
//! message is valid exactly when the message would be; it only skips what
//! making a [`Message`] adds: a shared copy of the header text and the
//! cache of the top Via. [`RequestRef`] is either kind, as the response
//! builder and overload control read them.

use bytes::Bytes;

use crate::error::{ParseError, ValueError};
use crate::frame::{Frame, HeaderEntry, StartLine, Transport, frame};
use crate::header_name::HeaderName;
use crate::limits::Limits;
use crate::message::{self, Message};
use crate::via::Via;

/// A framed datagram: offsets into its buffer, header text read on demand.
#[derive(Clone, Debug)]
pub struct FramedMessage {
    buf: Bytes,
    frame: Frame,
}

impl FramedMessage {
    /// Frames one datagram under `limits` (what [`Message::parse_with`]
    /// does before it builds the message).
    pub fn frame(buf: Bytes, limits: &Limits) -> Result<FramedMessage, ParseError> {
        if buf.len() > limits.max_message_size.saturating_add(4096) || buf.len() > u32::MAX as usize
        {
            // Cheap early exit; framing re-checks precisely (bytes after
            // Content-Length are ignored, so a slightly larger datagram may
            // still carry a message within the limit).
            return Err(ParseError::TooLarge {
                size: buf.len(),
                limit: limits.max_message_size,
            });
        }
        let frame = frame(&buf, limits, Transport::Datagram)?;
        Ok(FramedMessage { buf, frame })
    }

    /// The message, with no second framing.
    pub fn into_message(self) -> Message {
        Message::from_frame(self.buf, self.frame)
    }

    /// Framing checked that the head is UTF-8 and offsets sit at ASCII
    /// delimiters, so this never falls back; only the short span asked
    /// for is checked again.
    fn str_at(&self, a: u32, b: u32) -> &str {
        std::str::from_utf8(self.bytes_at(a, b)).unwrap_or_default()
    }

    fn bytes_at(&self, a: u32, b: u32) -> &[u8] {
        self.buf.get(a as usize..b as usize).unwrap_or_default()
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.frame.start_line, StartLine::Request { .. })
    }

    /// The request method as written; `None` for a response.
    pub fn method_str(&self) -> Option<&str> {
        match self.frame.start_line {
            StartLine::Request { method, .. } => Some(self.str_at(method.start, method.end)),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI text (unvalidated); `None` for a response.
    pub fn request_uri_str(&self) -> Option<&str> {
        match self.frame.start_line {
            StartLine::Request { uri, .. } => Some(self.str_at(uri.start, uri.end)),
            StartLine::Response { .. } => None,
        }
    }

    /// The framed message's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes_at(self.frame.msg_start, self.frame.body_end)
    }

    /// The raw value of the first header field called `name`, as
    /// [`Message::header`] gives it.
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.frame
            .headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| self.str_at(h.value_start, h.value_end))
    }

    /// Every header field's id and value bytes, in order.
    pub(crate) fn header_values(&self) -> impl Iterator<Item = (HeaderName, &[u8])> + '_ {
        self.frame
            .headers
            .iter()
            .map(|h: &HeaderEntry| (h.name, self.bytes_at(h.value_start, h.value_end)))
    }

    /// The From tag, as [`Message::from_tag`] reads it.
    pub fn from_tag(&self) -> Option<&str> {
        message::tag_in(self.header(HeaderName::From)?)
    }

    /// The To tag, as [`Message::to_tag`] reads it.
    pub fn to_tag(&self) -> Option<&str> {
        message::tag_in(self.header(HeaderName::To)?)
    }

    /// The Call-ID, as [`Message::call_id`] reads it.
    pub fn call_id(&self) -> Result<&str, ValueError> {
        message::call_id_in(
            self.header(HeaderName::CallId)
                .ok_or(ValueError::Missing(HeaderName::CallId))?,
        )
    }

    /// The top Via's branch, as [`Message::top_via_branch`] reads it.
    pub fn top_via_branch(&self) -> Option<&str> {
        message::branch_in(self.header(HeaderName::Via)?)
    }

    /// The top Via, as [`Message::top_via`] reads it (parsed on each call).
    pub fn top_via(&self) -> Result<Via<'_>, ValueError> {
        message::top_via_in(
            self.header(HeaderName::Via)
                .ok_or(ValueError::Missing(HeaderName::Via))?,
        )
    }
}

/// A request, whole ([`Message`]) or only framed ([`FramedMessage`]): what
/// a response answers, and what the receive path reads to sort a request
/// and answer it statelessly before it becomes a message.
#[derive(Clone, Copy, Debug)]
pub enum RequestRef<'a> {
    /// A message.
    Message(&'a Message),
    /// A framed datagram.
    Framed(&'a FramedMessage),
}

impl<'a> RequestRef<'a> {
    /// The framed message's length in bytes.
    pub(crate) fn len(self) -> usize {
        match self {
            RequestRef::Message(m) => m.as_bytes().len(),
            RequestRef::Framed(f) => f.as_bytes().len(),
        }
    }

    /// Whether the To header has a tag.
    pub(crate) fn has_to_tag(self) -> bool {
        self.to_tag().is_some()
    }

    /// The raw value of the first header field called `name`
    /// ([`Message::header`]).
    pub fn header(self, name: HeaderName) -> Option<&'a str> {
        match self {
            RequestRef::Message(m) => m.header(name),
            RequestRef::Framed(f) => f.header(name),
        }
    }

    /// The method as written (`None`: a response).
    pub fn method_str(self) -> Option<&'a str> {
        match self {
            RequestRef::Message(m) => m.method_str(),
            RequestRef::Framed(f) => f.method_str(),
        }
    }

    /// The Request-URI text (`None`: a response).
    pub fn request_uri_str(self) -> Option<&'a str> {
        match self {
            RequestRef::Message(m) => m.request_uri_str(),
            RequestRef::Framed(f) => f.request_uri_str(),
        }
    }

    /// The To tag ([`Message::to_tag`]).
    pub fn to_tag(self) -> Option<&'a str> {
        match self {
            RequestRef::Message(m) => m.to_tag(),
            RequestRef::Framed(f) => f.to_tag(),
        }
    }

    /// The top Via ([`Message::top_via`]).
    pub fn top_via(self) -> Result<Via<'a>, ValueError> {
        match self {
            RequestRef::Message(m) => m.top_via(),
            RequestRef::Framed(f) => f.top_via(),
        }
    }
}

impl<'a> From<&'a Message> for RequestRef<'a> {
    fn from(m: &'a Message) -> Self {
        RequestRef::Message(m)
    }
}

impl<'a> From<&'a FramedMessage> for RequestRef<'a> {
    fn from(f: &'a FramedMessage) -> Self {
        RequestRef::Framed(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ResponseBuilder;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKa1;rport\r\n\
        Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb2, SIP/2.0/TCP 192.0.2.8\r\n\
        Max-Forwards: 70\r\n\
        f: \"Alice\" <sip:alice@example.com>;tag=f1\r\n\
        To :  <sip:bob@example.com>  \r\n\
        i: c1@192.0.2.1\r\n\
        CSeq: 1 INVITE\r\n\
        Timestamp: 54\r\n\
        Content-Length: 4\r\n\r\nbody";

    fn both(text: &str) -> (FramedMessage, Message) {
        let limits = Limits::DEFAULT;
        let framed = FramedMessage::frame(Bytes::from(text.to_owned()), &limits).unwrap();
        let full = Message::parse_with(Bytes::from(text.to_owned()), &limits).unwrap();
        (framed, full)
    }

    #[test]
    fn reads_what_the_message_reads() {
        let (f, m) = both(INVITE);
        assert!(f.is_request());
        assert_eq!(f.method_str(), Some("INVITE"));
        assert_eq!(f.request_uri_str(), m.request_uri_str());
        assert_eq!(f.from_tag(), Some("f1"));
        assert_eq!(f.to_tag(), None);
        assert_eq!(f.call_id(), m.call_id());
        assert_eq!(f.top_via_branch(), Some("z9hG4bKa1"));
        assert_eq!(f.top_via(), m.top_via());
        assert_eq!(f.as_bytes(), m.as_bytes());
        assert_eq!(f.clone().into_message(), m);
    }

    #[test]
    fn answers_like_the_message() {
        let (f, m) = both(INVITE);
        for (status, tag) in [(503, Some("vx1")), (100, None), (200, Some("t"))] {
            let mut a = ResponseBuilder::new(&m, status, "R").header("Retry-After", "10");
            let mut b = ResponseBuilder::new(&f, status, "R").header("Retry-After", "10");
            if let Some(tag) = tag {
                a = a.to_tag(tag);
                b = b.to_tag(tag);
            }
            assert_eq!(a.build(), b.build());
        }
        let (f, m) = both(&INVITE.replace(">  \r\n", ">;tag=x\r\n"));
        assert_eq!(f.to_tag(), Some("x"));
        assert_eq!(
            ResponseBuilder::new(&f, 503, "S").to_tag("vx1").build(),
            ResponseBuilder::new(&m, 503, "S").to_tag("vx1").build()
        );
    }

    #[test]
    fn refuses_what_the_message_refuses() {
        let limits = Limits::DEFAULT;
        for text in [
            "",
            "INVITE\r\n\r\n",
            "INVITE sip:b SIP/2.0\r\nBroken\r\n\r\n",
        ] {
            let framed = FramedMessage::frame(Bytes::from(text), &limits);
            let full = Message::parse_with(Bytes::from(text), &limits);
            assert_eq!(framed.err(), full.err(), "{text:?}");
        }
    }
}
