//! [`Message`]: one framed SIP message owning its buffer, with raw header
//! access through the index and typed values parsed on demand.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::auth::AuthValue;
use crate::edit::Editor;
use crate::error::{ParseError, ValueError};
use crate::frame::{Frame, HeaderEntry, StartLine};
use crate::framed::FramedMessage;
use crate::header_name::HeaderName;
use crate::lex::{CommaSplit, next_top_comma, sub, trim_lws};
use crate::limits::Limits;
use crate::method::Method;
use crate::name_addr::{Contact, NameAddr};
use crate::stamp::ReceivedStamp;
use crate::uri::Uri;
use crate::values::{CSeq, MediaType, RetryAfter, parse_u32};
use crate::via::{Via, ViaSpans};

/// A framed SIP request or response. Cloning is cheap (the buffer and the
/// header text are shared; the index is small and inline).
#[derive(Clone, Debug)]
pub struct Message {
    buf: Bytes,
    frame: Frame,
    /// The start line and header section as text, checked once: every
    /// header access slices it instead of checking its bytes again (which
    /// took ~3 % of a proxy's core).
    head: Arc<str>,
    /// The top Via, parsed on first use (`None` inside: it could not be
    /// kept as offsets into `head`, so every use parses it).
    top_via: OnceLock<Option<Result<ViaSpans, ValueError>>>,
    /// The `received`/`rport` values for the top Via of a received
    /// request, written into every response and forwarded copy (the bytes
    /// stay as received; see [`ReceivedStamp`]).
    stamp: Option<ReceivedStamp>,
}

/// The header text of `frame` in `buf` (framing checked it is UTF-8).
fn head_text(buf: &Bytes, frame: &Frame) -> Arc<str> {
    let bytes = buf
        .get(frame.msg_start as usize..frame.head_end as usize)
        .unwrap_or_default();
    Arc::from(std::str::from_utf8(bytes).unwrap_or_default())
}

/// The non-empty `tag` parameter of a From or To value. Most To values of
/// new requests carry none: without the letters of `tag` there is nothing
/// to parse (parameter names are tokens, never escaped).
pub(crate) fn tag_in(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    if !memchr::memchr2_iter(b't', b'T', bytes).any(|i| {
        bytes
            .get(i + 1..i + 3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"ag"))
    }) {
        return None;
    }
    crate::name_addr::header_params(value)?
        .get("tag")
        .filter(|t| !t.is_empty())
}

/// A Call-ID value trimmed; it must be non-empty and hold no white space.
pub(crate) fn call_id_in(value: &str) -> Result<&str, ValueError> {
    let v = trim_lws(value);
    if v.is_empty() || v.bytes().any(crate::lex::is_lws) {
        return Err(ValueError::Malformed(HeaderName::CallId));
    }
    Ok(v)
}

/// The first Via of a Via header line.
fn first_via(line: &str) -> &str {
    let end = next_top_comma(line.as_bytes(), 0);
    trim_lws(sub(line, 0, end))
}

/// The first Via of a Via header line, parsed.
pub(crate) fn top_via_in(line: &str) -> Result<Via<'_>, ValueError> {
    Via::parse(first_via(line))
}

/// The `branch` of the first Via of a Via header line, without parsing
/// the rest of that Via.
pub(crate) fn branch_in(line: &str) -> Option<&str> {
    let via = first_via(line);
    // Neither the sent-protocol nor the sent-by can hold a `;`.
    let start = via.find(';')?;
    crate::params::last_value(sub(via, start, via.len()), "branch")
}

impl PartialEq for Message {
    /// Two messages are equal when their framed bytes are equal.
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Message {}

impl Message {
    /// Frames a message received in one datagram, with default [`Limits`].
    /// Bytes beyond Content-Length are ignored (RFC 3261 §18.3); without
    /// Content-Length the body runs to the end of the datagram.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_with(buf, &Limits::DEFAULT)
    }

    /// Frames a datagram with explicit limits.
    pub fn parse_with(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        FramedMessage::frame(buf, limits).map(FramedMessage::into_message)
    }

    /// Builds a message from a complete frame of `buf` (a datagram, or a
    /// stream message the stream framer has cut to exactly one message).
    pub(crate) fn from_frame(buf: Bytes, frame: Frame) -> Message {
        let head = head_text(&buf, &frame);
        Message {
            buf,
            frame,
            head,
            top_via: OnceLock::new(),
            stamp: None,
        }
    }

    pub(crate) fn frame(&self) -> &Frame {
        &self.frame
    }

    /// The whole receive buffer (may include bytes before and after the
    /// framed message).
    pub(crate) fn buffer(&self) -> &Bytes {
        &self.buf
    }

    #[inline]
    fn bytes_at(&self, a: u32, b: u32) -> &[u8] {
        self.buf.get(a as usize..b as usize).unwrap_or_default()
    }

    #[inline]
    pub(crate) fn str_at(&self, a: u32, b: u32) -> &str {
        // Offsets are into the buffer and sit at ASCII delimiters of the
        // head, so this never falls back.
        let start = self.frame.msg_start;
        self.head
            .get(a.saturating_sub(start) as usize..b.saturating_sub(start) as usize)
            .unwrap_or_default()
    }

    pub(crate) fn entry_value(&self, h: &HeaderEntry) -> &str {
        self.str_at(h.value_start, h.value_end)
    }

    pub(crate) fn entry_name(&self, h: &HeaderEntry) -> &str {
        self.str_at(h.line_start, h.name_end)
    }

    // ----- start line -----

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.frame.start_line, StartLine::Request { .. })
    }

    /// True for a response.
    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The request method as written; `None` for a response.
    pub fn method_str(&self) -> Option<&str> {
        match self.frame.start_line {
            StartLine::Request { method, .. } => Some(self.str_at(method.start, method.end)),
            StartLine::Response { .. } => None,
        }
    }

    /// The request method; `None` for a response.
    pub fn method(&self) -> Option<Method> {
        self.method_str().and_then(Method::parse)
    }

    /// The Request-URI text exactly as between the spaces of the
    /// Request-Line (unvalidated); `None` for a response.
    pub fn request_uri_str(&self) -> Option<&str> {
        match self.frame.start_line {
            StartLine::Request { uri, .. } => Some(self.str_at(uri.start, uri.end)),
            StartLine::Response { .. } => None,
        }
    }

    /// The parsed Request-URI.
    pub fn request_uri(&self) -> Result<Uri<'_>, ValueError> {
        Uri::parse(self.request_uri_str().ok_or(ValueError::WrongKind)?)
    }

    /// The SIP-Version text of the start line (`SIP/2.0`).
    pub fn version(&self) -> &str {
        match self.frame.start_line {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => {
                self.str_at(version.start, version.end)
            }
        }
    }

    /// The status code; `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.frame.start_line {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase (possibly empty); `None` for a request.
    pub fn reason(&self) -> Option<&str> {
        match self.frame.start_line {
            StartLine::Response { reason, .. } => Some(self.str_at(reason.start, reason.end)),
            StartLine::Request { .. } => None,
        }
    }

    // ----- raw headers -----

    /// Number of header fields (lines, continuation lines not counted).
    pub fn header_count(&self) -> usize {
        self.frame.headers.len()
    }

    /// Every header field in order: `(name id, name as written, raw value)`.
    /// Folded values keep their CRLF and white space.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, &str, &str)> + '_ {
        self.frame
            .headers
            .iter()
            .map(|h| (h.name, self.entry_name(h), self.entry_value(h)))
    }

    fn entries(&self, name: HeaderName) -> impl Iterator<Item = &HeaderEntry> + '_ {
        self.frame.headers.iter().filter(move |h| h.name == name)
    }

    /// The raw value of the first header field called `name` (a whole line:
    /// comma lists are not split). For `HeaderName::Other` use
    /// [`Message::header_by_name`].
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.entries(name).next().map(|h| self.entry_value(h))
    }

    /// The raw value of the first header field whose name is `name` as text
    /// (case-insensitive; compact forms of known names work too).
    pub fn header_by_name(&self, name: &str) -> Option<&str> {
        let id = HeaderName::from_str(name);
        self.frame
            .headers
            .iter()
            .find(|h| {
                if id == HeaderName::Other {
                    h.name == HeaderName::Other && self.entry_name(h).eq_ignore_ascii_case(name)
                } else {
                    h.name == id
                }
            })
            .map(|h| self.entry_value(h))
    }

    /// Raw values of every header field whose name is `name` as text.
    pub fn header_lines_by_name<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        let id = HeaderName::from_str(name);
        self.frame
            .headers
            .iter()
            .filter(move |h| {
                if id == HeaderName::Other {
                    h.name == HeaderName::Other && self.entry_name(h).eq_ignore_ascii_case(name)
                } else {
                    h.name == id
                }
            })
            .map(|h| self.entry_value(h))
    }

    /// Raw values of every header field called `name`, one per line.
    pub fn header_lines(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.entries(name).map(|h| self.entry_value(h))
    }

    /// Every value of `name`: across lines and, for list headers (Via,
    /// Contact, Route, Supported, ...), split at top-level commas. Empty
    /// elements (`a,,b`) are skipped.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        let list = name.is_list();
        self.header_lines(name).flat_map(move |v| {
            let (whole, split) = if list {
                (None, Some(CommaSplit::new(v)))
            } else {
                (Some(v), None)
            };
            whole
                .into_iter()
                .chain(split.into_iter().flatten())
                .filter(|s| !s.is_empty())
        })
    }

    /// Number of header fields called `name` (lines, not comma values).
    pub fn count(&self, name: HeaderName) -> usize {
        self.entries(name).count()
    }

    /// True when a header field called `name` is present.
    pub fn has(&self, name: HeaderName) -> bool {
        self.entries(name).next().is_some()
    }

    fn single(&self, name: HeaderName) -> Result<&str, ValueError> {
        self.header(name).ok_or(ValueError::Missing(name))
    }

    // ----- typed values -----

    /// The first Via value.
    pub fn top_via(&self) -> Result<Via<'_>, ValueError> {
        let cached = self.top_via.get_or_init(|| match self.parse_top_via() {
            Ok(via) => ViaSpans::capture(&via, &self.head).map(Ok),
            Err(e) => Some(Err(e)),
        });
        match cached {
            Some(Ok(spans)) => Ok(spans.resolve(&self.head)),
            Some(Err(e)) => Err(*e),
            None => self.parse_top_via(),
        }
    }

    /// This request with `stamp`: the `received`/`rport` values its top
    /// Via takes in every response built for it and every copy of it an
    /// [`Editor`] writes. Its own bytes, and [`Message::top_via`], stay as
    /// received. `None` removes a stamp.
    pub fn with_received(mut self, stamp: Option<ReceivedStamp>) -> Message {
        self.set_received(stamp);
        self
    }

    /// [`Message::with_received`] in place (a message is several hundred
    /// bytes: moving it in and out costs a copy each way).
    pub fn set_received(&mut self, stamp: Option<ReceivedStamp>) {
        self.stamp = stamp;
    }

    /// The stamp set by [`Message::with_received`].
    pub fn received_stamp(&self) -> Option<&ReceivedStamp> {
        self.stamp.as_ref()
    }

    /// The `branch` of the top Via, read without parsing the rest of it
    /// when the Via has not been parsed yet (an ACK absorbed statelessly
    /// needs nothing else of it). `None` without a Via, without a branch,
    /// or when the Via's parameters are malformed. Like
    /// [`Message::top_via`], a repeated `branch` gives the last one.
    pub fn top_via_branch(&self) -> Option<&str> {
        if let Some(Some(Ok(spans))) = self.top_via.get() {
            return spans.resolve(&self.head).branch;
        }
        branch_in(self.single(HeaderName::Via).ok()?)
    }

    fn parse_top_via(&self) -> Result<Via<'_>, ValueError> {
        top_via_in(self.single(HeaderName::Via)?)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ValueError>> + '_ {
        self.headers_named(HeaderName::Via).map(Via::parse)
    }

    /// The Call-ID (trimmed; must be non-empty and contain no white space).
    pub fn call_id(&self) -> Result<&str, ValueError> {
        call_id_in(self.single(HeaderName::CallId)?)
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq, ValueError> {
        CSeq::parse(self.single(HeaderName::CSeq)?)
    }

    /// The From address.
    pub fn from(&self) -> Result<NameAddr<'_>, ValueError> {
        NameAddr::parse_for(self.single(HeaderName::From)?, HeaderName::From)
    }

    /// The To address.
    pub fn to(&self) -> Result<NameAddr<'_>, ValueError> {
        NameAddr::parse_for(self.single(HeaderName::To)?, HeaderName::To)
    }

    /// The From tag. Fast path: reads the header parameters without
    /// parsing the URI ([`Message::from`] validates the whole value).
    pub fn from_tag(&self) -> Option<&str> {
        self.tag_of(HeaderName::From)
    }

    /// The To tag (fast path, see [`Message::from_tag`]).
    pub fn to_tag(&self) -> Option<&str> {
        self.tag_of(HeaderName::To)
    }

    fn tag_of(&self, name: HeaderName) -> Option<&str> {
        tag_in(self.header(name)?)
    }

    /// Every Contact value (`*` or addresses).
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'_>, ValueError>> + '_ {
        self.headers_named(HeaderName::Contact).map(Contact::parse)
    }

    fn addresses(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr<'_>, ValueError>> + '_ {
        self.headers_named(name)
            .map(move |v| NameAddr::parse_for(v, name))
    }

    /// Every Route value, top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ValueError>> + '_ {
        self.addresses(HeaderName::Route)
    }

    /// Every Record-Route value, top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ValueError>> + '_ {
        self.addresses(HeaderName::RecordRoute)
    }

    /// Every Path value (RFC 3327), top first.
    pub fn paths(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ValueError>> + '_ {
        self.addresses(HeaderName::Path)
    }

    /// Every Service-Route value (RFC 3608).
    pub fn service_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ValueError>> + '_ {
        self.addresses(HeaderName::ServiceRoute)
    }

    fn number(&self, name: HeaderName) -> Result<u32, ValueError> {
        parse_u32(self.single(name)?, name)
    }

    /// Max-Forwards (0..=255).
    pub fn max_forwards(&self) -> Result<u8, ValueError> {
        let n = self.number(HeaderName::MaxForwards)?;
        u8::try_from(n).map_err(|_| ValueError::OutOfRange(HeaderName::MaxForwards))
    }

    /// Expires (delta-seconds).
    pub fn expires(&self) -> Result<u32, ValueError> {
        self.number(HeaderName::Expires)
    }

    /// Min-Expires.
    pub fn min_expires(&self) -> Result<u32, ValueError> {
        self.number(HeaderName::MinExpires)
    }

    /// Content-Length as declared (framing already validated it).
    pub fn content_length(&self) -> Result<u32, ValueError> {
        self.number(HeaderName::ContentLength)
    }

    /// Content-Type.
    pub fn content_type(&self) -> Result<MediaType<'_>, ValueError> {
        MediaType::parse(self.single(HeaderName::ContentType)?)
    }

    /// Every Accept element.
    pub fn accept(&self) -> impl Iterator<Item = Result<MediaType<'_>, ValueError>> + '_ {
        self.headers_named(HeaderName::Accept).map(MediaType::parse)
    }

    /// Retry-After.
    pub fn retry_after(&self) -> Result<RetryAfter<'_>, ValueError> {
        RetryAfter::parse(self.single(HeaderName::RetryAfter)?)
    }

    fn auth(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<AuthValue<'_>, ValueError>> + '_ {
        self.header_lines(name)
            .map(move |v| AuthValue::parse_for(v, name))
    }

    /// Every Authorization value.
    pub fn authorization(&self) -> impl Iterator<Item = Result<AuthValue<'_>, ValueError>> + '_ {
        self.auth(HeaderName::Authorization)
    }

    /// Every Proxy-Authorization value.
    pub fn proxy_authorization(
        &self,
    ) -> impl Iterator<Item = Result<AuthValue<'_>, ValueError>> + '_ {
        self.auth(HeaderName::ProxyAuthorization)
    }

    /// Every WWW-Authenticate challenge.
    pub fn www_authenticate(&self) -> impl Iterator<Item = Result<AuthValue<'_>, ValueError>> + '_ {
        self.auth(HeaderName::WwwAuthenticate)
    }

    /// Every Proxy-Authenticate challenge.
    pub fn proxy_authenticate(
        &self,
    ) -> impl Iterator<Item = Result<AuthValue<'_>, ValueError>> + '_ {
        self.auth(HeaderName::ProxyAuthenticate)
    }

    /// Option tags or methods of a token-list header (Supported, Require,
    /// Proxy-Require, Unsupported, Allow, ...).
    pub fn tokens(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.header_lines(name)
            .flat_map(CommaSplit::new)
            .filter(|t| !t.is_empty())
    }

    /// Supported option tags.
    pub fn supported(&self) -> impl Iterator<Item = &str> + '_ {
        self.tokens(HeaderName::Supported)
    }

    /// Require option tags.
    pub fn require(&self) -> impl Iterator<Item = &str> + '_ {
        self.tokens(HeaderName::Require)
    }

    /// Proxy-Require option tags.
    pub fn proxy_require(&self) -> impl Iterator<Item = &str> + '_ {
        self.tokens(HeaderName::ProxyRequire)
    }

    /// Unsupported option tags.
    pub fn unsupported(&self) -> impl Iterator<Item = &str> + '_ {
        self.tokens(HeaderName::Unsupported)
    }

    /// Allowed methods.
    pub fn allow(&self) -> impl Iterator<Item = &str> + '_ {
        self.tokens(HeaderName::Allow)
    }

    // ----- body and bytes -----

    /// The body (Content-Length bytes, or the rest of the datagram).
    pub fn body(&self) -> &[u8] {
        self.bytes_at(self.frame.body_start, self.frame.body_end)
    }

    /// The body as a shared `Bytes` (no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.buf
            .slice(self.frame.body_start as usize..self.frame.body_end as usize)
    }

    /// The framed message: start line through the end of the body, without
    /// leading CRLFs or trailing datagram octets.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes_at(self.frame.msg_start, self.frame.body_end)
    }

    /// The framed message as shared `Bytes` (no copy).
    pub fn to_bytes(&self) -> Bytes {
        if self.frame.msg_start == 0 && self.frame.body_end as usize == self.buf.len() {
            self.buf.clone()
        } else {
            self.buf
                .slice(self.frame.msg_start as usize..self.frame.body_end as usize)
        }
    }

    /// Starts a set of splice edits for forwarding (see [`Editor`]).
    pub fn edit(&self) -> Editor<'_> {
        Editor::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/TCP p2.example.com;branch=z9hG4bK2\r\n\
v: SIP/2.0/UDP p3.example.com;branch=z9hG4bK3\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>, \"Alt, Two\" <sip:a2@x>;q=0.5\r\n\
Supported: path, outbound\r\n\
k: gruu\r\n\
X-Custom: hello\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r\n";

    fn msg(b: &'static [u8]) -> Message {
        Message::parse(Bytes::from_static(b)).unwrap()
    }

    /// A `method` request with `line` (a header line with its CRLF) and a
    /// Call-ID.
    fn with_header(method: &str, line: &[u8]) -> Message {
        let mut text = format!("{method} sip:a@b SIP/2.0\r\n").into_bytes();
        text.extend_from_slice(line);
        text.extend_from_slice(b"Call-ID: c\r\n\r\n");
        Message::parse(Bytes::from(text)).unwrap()
    }

    #[test]
    fn top_via_is_parsed_once_and_read_from_the_cache() {
        let vias: [&[u8]; 5] = [
            b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/TCP p2\r\n",
            b"v:  SIP / 2.0 / TCP  192.0.2.4 : 5070 ; rport ; received=192.0.2.9;ttl=3;maddr=x.example\r\n",
            b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;rport=7\r\n",
            b"Via: SIP/2.0/UDP host.example;branch=\r\n",
            b"To: <sip:a@b>\r\n",
        ];
        for via in vias {
            let m = with_header("OPTIONS", via);
            let fresh = m.parse_top_via();
            for _ in 0..2 {
                assert_eq!(m.top_via(), fresh);
            }
            // Kept as offsets (or as the error), not parsed on every use.
            assert!(matches!(m.top_via.get(), Some(Some(_))));
            assert_eq!(m.clone().top_via(), fresh);
        }
    }

    #[test]
    fn top_via_branch_agrees_with_the_full_parse() {
        let vias: [&[u8]; 10] = [
            b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/TCP p2;branch=2\r\n",
            b"v:  SIP / 2.0 / TCP  192.0.2.4 : 5070 ; rport ; BRANCH = z9hG4bKq ;ttl=3\r\n",
            b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;rport=7\r\n",
            b"Via: SIP/2.0/UDP h;branch=first;branch=last\r\n",
            b"Via: SIP/2.0/UDP h;x=\"a;branch=no,\";branch=yes\r\n",
            b"Via: SIP/2.0/UDP h;rport\r\n",
            b"Via: SIP/2.0/UDP h;branch\r\n",
            b"Via: SIP/2.0/UDP h;branch=\r\n",
            b"Via: SIP/2.0/UDP h;branch=b junk\r\n",
            b"To: <sip:a@b>\r\n",
        ];
        for via in vias {
            let m = with_header("ACK", via);
            let full = m.parse_top_via().ok().and_then(|v| v.branch);
            assert_eq!(m.top_via_branch(), full, "{}", String::from_utf8_lossy(via));
            // And from the cache, once the Via is parsed.
            let _ = m.top_via();
            assert_eq!(m.top_via_branch(), full, "{}", String::from_utf8_lossy(via));
        }
    }

    #[test]
    fn start_line_and_typed_values() {
        let m = msg(INVITE);
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(
            m.request_uri().unwrap().as_str(),
            "sip:bob@biloxi.example.com"
        );
        assert_eq!(m.version(), "SIP/2.0");
        assert_eq!(m.status(), None);
        assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK776asdhds"));
        let branches: Vec<_> = m.vias().map(|v| v.unwrap().branch.unwrap()).collect();
        assert_eq!(branches, ["z9hG4bK776asdhds", "z9hG4bK2", "z9hG4bK3"]);
        assert_eq!(
            m.call_id().unwrap(),
            "a84b4c76e66710@pc33.atlanta.example.com"
        );
        assert_eq!(
            m.cseq().unwrap(),
            CSeq {
                seq: 314159,
                method: Method::Invite
            }
        );
        assert_eq!(m.from_tag(), Some("1928301774"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.to().unwrap().display_name, Some("Bob"));
        assert_eq!(m.max_forwards(), Ok(70));
        assert_eq!(m.contacts().count(), 2);
        assert_eq!(
            m.supported().collect::<Vec<_>>(),
            ["path", "outbound", "gruu"]
        );
        assert_eq!(m.header_by_name("x-custom"), Some("hello"));
        assert_eq!(
            m.header_by_name("i"),
            Some("a84b4c76e66710@pc33.atlanta.example.com")
        );
        assert_eq!(m.header(HeaderName::Via).map(|v| v.len()), Some(104));
        assert_eq!(m.headers_named(HeaderName::Via).count(), 3);
        assert_eq!(m.content_type().unwrap().subtype, "sdp");
        assert_eq!(m.body(), b"v=0\r");
        assert_eq!(m.expires(), Err(ValueError::Missing(HeaderName::Expires)));
        assert_eq!(m.count(HeaderName::Supported), 2);
        assert_eq!(m.header_count(), 13);
    }

    #[test]
    fn response() {
        let m = msg(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n");
        assert!(m.is_response());
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some("Ringing"));
        assert_eq!(m.method(), None);
        assert_eq!(m.request_uri(), Err(ValueError::WrongKind));
    }

    #[test]
    fn trailing_octets_and_leading_crlf() {
        let m = msg(b"\r\nOPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\ntrailing junk");
        assert_eq!(m.as_bytes(), b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\n");
        assert_eq!(m.to_bytes(), &b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\n"[..]);
        assert!(m.body().is_empty());
    }
}
