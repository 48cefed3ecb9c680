//! A minimal memchr-based reader for the SIP messages the generator receives.
//!
//! It extracts only what a load-generating UA needs: status code or method and Request-URI,
//! Call-ID, CSeq, the top Via branch, From/To (with tags), the first Contact URI,
//! Record-Route values, and WWW-/Proxy-Authenticate challenges. Header values are borrowed
//! from the datagram; nothing is allocated. Header folding is not supported (servers under
//! test do not fold), compact header names are.

use crate::template::parse_decimal;
use thiserror::Error;

/// Maximum number of header lines of one kind that are remembered (Via, Record-Route,
/// challenges).
pub const MAX_REPEATED: usize = 8;

/// Why a datagram could not be read.
#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum ParseError {
    /// The start line is not a SIP request or status line.
    #[error("bad start line")]
    BadStartLine,
    /// A header line has no colon.
    #[error("header line without colon")]
    BadHeader,
    /// The blank line ending the headers is missing.
    #[error("headers not terminated")]
    Truncated,
    /// A required header is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// The CSeq header is malformed.
    #[error("malformed CSeq")]
    BadCSeq,
    /// More than [`MAX_REPEATED`] header lines of one kind.
    #[error("more than {MAX_REPEATED} {0} header lines")]
    TooMany(&'static str),
}

/// A byte range into the datagram.
pub type Span = (u32, u32);

/// A fixed-capacity list of spans.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spans {
    items: [Span; MAX_REPEATED],
    len: usize,
}

impl Spans {
    fn push(&mut self, s: Span, what: &'static str) -> Result<(), ParseError> {
        let slot = self
            .items
            .get_mut(self.len)
            .ok_or(ParseError::TooMany(what))?;
        *slot = s;
        self.len += 1;
        Ok(())
    }

    /// The stored spans.
    pub fn as_slice(&self) -> &[Span] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Number of stored spans.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// First line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A request: method and Request-URI.
    Request {
        /// Method token, e.g. `INVITE`.
        method: &'a [u8],
        /// Request-URI.
        uri: &'a [u8],
    },
    /// A response with its status code.
    Response {
        /// Status code, 100..=699.
        code: u16,
    },
}

/// The parts of a received SIP message the generator uses. Header values are trimmed.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    raw: &'a [u8],
    /// Request or status line.
    pub start: StartLine<'a>,
    /// Call-ID value.
    pub call_id: &'a [u8],
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method.
    pub cseq_method: &'a [u8],
    /// `branch` parameter of the top Via (empty when absent).
    pub branch: &'a [u8],
    /// From header value.
    pub from: &'a [u8],
    /// To header value.
    pub to: &'a [u8],
    /// `tag` parameter of To (empty when absent).
    pub to_tag: &'a [u8],
    /// URI of the first Contact (empty when absent).
    pub contact_uri: &'a [u8],
    /// Whole Via header lines (name to CRLF inclusive), in order.
    pub via_lines: Spans,
    /// Whole Record-Route header lines (name to CRLF inclusive), in order.
    pub record_route_lines: Spans,
    /// Record-Route values, one per route (comma-separated values split), in order.
    pub record_routes: Spans,
    /// WWW-Authenticate or Proxy-Authenticate values, in order.
    pub challenges: Spans,
    /// Offset of the blank line that ends the headers.
    pub headers_end: usize,
}

impl<'a> Message<'a> {
    /// Resolves a span against the datagram.
    pub fn slice(&self, s: Span) -> &'a [u8] {
        self.raw.get(s.0 as usize..s.1 as usize).unwrap_or(&[])
    }

    /// The whole datagram.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Status code for a response, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The message body (after the blank line ending the headers; empty when none).
    pub fn body(&self) -> &'a [u8] {
        self.raw.get(self.headers_end + 2..).unwrap_or(&[])
    }

    /// Method for a request, `None` for a response.
    pub fn method(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    CallId,
    CSeq,
    Via,
    From,
    To,
    Contact,
    RecordRoute,
    Challenge,
    Other,
}

fn classify(name: &[u8]) -> Name {
    if name.len() == 1 {
        return match name[0].to_ascii_lowercase() {
            b'i' => Name::CallId,
            b'v' => Name::Via,
            b'f' => Name::From,
            b't' => Name::To,
            b'm' => Name::Contact,
            _ => Name::Other,
        };
    }
    let eq = |s: &[u8]| name.eq_ignore_ascii_case(s);
    if eq(b"Call-ID") {
        Name::CallId
    } else if eq(b"CSeq") {
        Name::CSeq
    } else if eq(b"Via") {
        Name::Via
    } else if eq(b"From") {
        Name::From
    } else if eq(b"To") {
        Name::To
    } else if eq(b"Contact") {
        Name::Contact
    } else if eq(b"Record-Route") {
        Name::RecordRoute
    } else if eq(b"WWW-Authenticate") || eq(b"Proxy-Authenticate") {
        Name::Challenge
    } else {
        Name::Other
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    s.get(start..end).unwrap_or(&[])
}

fn span_of(raw: &[u8], part: &[u8]) -> Span {
    let base = raw.as_ptr() as usize;
    let start = (part.as_ptr() as usize).saturating_sub(base);
    (start as u32, (start + part.len()) as u32)
}

/// Reads a SIP message from a datagram.
pub fn parse(raw: &[u8]) -> Result<Message<'_>, ParseError> {
    let first_end = memchr::memmem::find(raw, b"\r\n").ok_or(ParseError::Truncated)?;
    let start = parse_start_line(&raw[..first_end])?;
    let mut msg = Message {
        raw,
        start,
        call_id: &[],
        cseq: 0,
        cseq_method: &[],
        branch: &[],
        from: &[],
        to: &[],
        to_tag: &[],
        contact_uri: &[],
        via_lines: Spans::default(),
        record_route_lines: Spans::default(),
        record_routes: Spans::default(),
        challenges: Spans::default(),
        headers_end: 0,
    };
    let mut have_cseq = false;
    let mut pos = first_end + 2;
    loop {
        let rest = raw.get(pos..).ok_or(ParseError::Truncated)?;
        let line_len = memchr::memmem::find(rest, b"\r\n").ok_or(ParseError::Truncated)?;
        if line_len == 0 {
            msg.headers_end = pos;
            break;
        }
        let line = &rest[..line_len];
        let whole = &rest[..line_len + 2];
        let colon = memchr::memchr(b':', line).ok_or(ParseError::BadHeader)?;
        let name = trim(&line[..colon]);
        let value = trim(&line[colon + 1..]);
        match classify(name) {
            Name::CallId => msg.call_id = value,
            Name::CSeq => {
                let sp = memchr::memchr2(b' ', b'\t', value).ok_or(ParseError::BadCSeq)?;
                let n = parse_decimal(&value[..sp]).ok_or(ParseError::BadCSeq)?;
                msg.cseq = u32::try_from(n).map_err(|_| ParseError::BadCSeq)?;
                msg.cseq_method = trim(&value[sp..]);
                have_cseq = true;
            }
            Name::Via => {
                if msg.via_lines.is_empty() {
                    let first = value.split(|&b| b == b',').next().unwrap_or(value);
                    msg.branch = param(first, b"branch").unwrap_or(&[]);
                }
                msg.via_lines.push(span_of(raw, whole), "Via")?;
            }
            Name::From => msg.from = value,
            Name::To => {
                msg.to = value;
                msg.to_tag = name_addr_param(value, b"tag").unwrap_or(&[]);
            }
            Name::Contact => {
                if msg.contact_uri.is_empty() {
                    msg.contact_uri = name_addr_uri(value);
                }
            }
            Name::RecordRoute => {
                msg.record_route_lines
                    .push(span_of(raw, whole), "Record-Route")?;
                for route in split_outside_angles(value) {
                    let route = trim(route);
                    if !route.is_empty() {
                        msg.record_routes
                            .push(span_of(raw, route), "Record-Route")?;
                    }
                }
            }
            Name::Challenge => msg.challenges.push(span_of(raw, value), "challenge")?,
            Name::Other => {}
        }
        pos += line_len + 2;
    }
    if msg.call_id.is_empty() {
        return Err(ParseError::Missing("Call-ID"));
    }
    if !have_cseq {
        return Err(ParseError::Missing("CSeq"));
    }
    Ok(msg)
}

fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        let code = rest
            .get(..3)
            .and_then(parse_decimal)
            .filter(|c| (100..700).contains(c))
            .ok_or(ParseError::BadStartLine)?;
        return Ok(StartLine::Response { code: code as u16 });
    }
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
    let sp2 = memchr::memrchr(b' ', line).ok_or(ParseError::BadStartLine)?;
    if sp2 <= sp1 || &line[sp2 + 1..] != b"SIP/2.0" || sp1 == 0 {
        return Err(ParseError::BadStartLine);
    }
    Ok(StartLine::Request {
        method: &line[..sp1],
        uri: &line[sp1 + 1..sp2],
    })
}

fn split_outside_angles(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut depth = 0i32;
    let mut quoted = false;
    value.split(move |&b| {
        match b {
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth += 1,
            b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth <= 0 => return true,
            _ => {}
        }
        false
    })
}

/// The address of the first audio stream of an SDP body: the `c=IN IP4`/`IP6` address
/// (media-level if present, else session-level) and the `m=audio` port. `None` when the
/// body has no such stream or the values do not parse.
pub fn sdp_audio_addr(body: &[u8]) -> Option<std::net::SocketAddr> {
    let mut conn: Option<std::net::IpAddr> = None;
    let mut port: Option<u16> = None;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"m=") {
            if port.is_some() {
                break;
            }
            if let Some(p) = rest.strip_prefix(b"audio ") {
                let digits = p.split(|&b| b == b' ' || b == b'/').next().unwrap_or(&[]);
                port = parse_decimal(digits).and_then(|v| u16::try_from(v).ok());
            }
        } else if let Some(rest) = line
            .strip_prefix(b"c=IN IP4 ")
            .or_else(|| line.strip_prefix(b"c=IN IP6 "))
        {
            let addr = rest.split(|&b| b == b'/').next().unwrap_or(&[]);
            if let Some(ip) = std::str::from_utf8(addr)
                .ok()
                .and_then(|a| a.trim().parse().ok())
            {
                conn = Some(ip);
            }
        }
    }
    Some(std::net::SocketAddr::new(conn?, port?))
}

/// Value of parameter `name` in a `;`-separated parameter list (case-insensitive name).
pub fn param<'a>(params: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    for p in params.split(|&b| b == b';').skip(1) {
        let p = trim(p);
        let (k, v) = match memchr::memchr(b'=', p) {
            Some(eq) => (trim(&p[..eq]), trim(&p[eq + 1..])),
            None => (p, &p[p.len()..]),
        };
        if k.eq_ignore_ascii_case(name) {
            return Some(v);
        }
    }
    None
}

/// Parameter of a name-addr header (From/To/Contact): looked up after the `>` when the
/// URI is in angle brackets, otherwise after the URI.
pub fn name_addr_param<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let after = match memchr::memchr(b'>', value) {
        Some(gt) => &value[gt + 1..],
        None => value,
    };
    // `param` skips the first `;`-element, which is the URI (or empty after `>`).
    param(after, name)
}

/// URI of a name-addr or addr-spec value.
pub fn name_addr_uri(value: &[u8]) -> &[u8] {
    if let Some(lt) = memchr::memchr(b'<', value) {
        let rest = &value[lt + 1..];
        let gt = memchr::memchr(b'>', rest).unwrap_or(rest.len());
        return &rest[..gt];
    }
    let end = memchr::memchr2(b';', b',', value).unwrap_or(value.len());
    trim(&value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK_INVITE: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK00000003.0000000007.0001;rport=40000\r\n\
Record-Route: <sip:127.0.0.1:5060;lr;ftag=abc>, <sip:10.0.0.1;lr>\r\n\
Record-Route: <sip:10.0.0.2;lr>\r\n\
From: <sip:u00000001@example.com>;tag=00000003.0000000007\r\n\
To: \"Bob, Jr\" <sip:c00000002@example.com;user=phone>;tag=uas-3-7\r\n\
Call-ID: 00000003.0000000007.deadbeef@loadgen\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:c00000002@127.0.0.1:40001>;expires=60\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn reads_a_200_to_invite() {
        let m = parse(OK_INVITE).unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.call_id, b"00000003.0000000007.deadbeef@loadgen");
        assert_eq!(m.cseq, 1);
        assert_eq!(m.cseq_method, b"INVITE");
        assert_eq!(m.branch, b"z9hG4bK00000003.0000000007.0001");
        assert_eq!(m.to_tag, b"uas-3-7");
        assert_eq!(m.contact_uri, b"sip:c00000002@127.0.0.1:40001");
        assert_eq!(m.via_lines.len(), 1);
        assert_eq!(m.record_route_lines.len(), 2);
        let routes: Vec<&[u8]> = m
            .record_routes
            .as_slice()
            .iter()
            .map(|&s| m.slice(s))
            .collect();
        assert_eq!(
            routes,
            vec![
                &b"<sip:127.0.0.1:5060;lr;ftag=abc>"[..],
                b"<sip:10.0.0.1;lr>",
                b"<sip:10.0.0.2;lr>"
            ]
        );
        assert!(m.slice(m.via_lines.as_slice()[0]).starts_with(b"Via: "));
        assert!(m.slice(m.via_lines.as_slice()[0]).ends_with(b"\r\n"));
    }

    #[test]
    fn reads_compact_forms_and_requests() {
        let raw = b"BYE sip:c1@127.0.0.1:5 SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nv: SIP/2.0/UDP g;branch=z9hG4bKy\r\ni: abc\r\ncseq: 2 BYE\r\nt: <sip:b@h>;tag=t1\r\nf: sip:a@h;tag=f1\r\n\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.method(), Some(&b"BYE"[..]));
        assert_eq!(
            m.start,
            StartLine::Request {
                method: b"BYE",
                uri: b"sip:c1@127.0.0.1:5"
            }
        );
        assert_eq!(m.branch, b"z9hG4bKx");
        assert_eq!(m.via_lines.len(), 2);
        assert_eq!(m.to_tag, b"t1");
        assert_eq!(m.from, b"sip:a@h;tag=f1");
    }

    #[test]
    fn reads_challenges() {
        let raw = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=b\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", qop=\"auth\"\r\nTo: <sip:u@h>;tag=x\r\n\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.status(), Some(401));
        assert_eq!(m.challenges.len(), 2);
        assert!(
            m.slice(m.challenges.as_slice()[1])
                .ends_with(b"qop=\"auth\"")
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"SIP/2.0 2\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCall-ID: x\r\n",
            b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: abc\r\n\r\n",
            b"SIP/2.0 200 OK\r\nnocolon\r\n\r\n",
            b"INVITE\r\n\r\n",
            b"SIP/2.0 999 X\r\nCall-ID: x\r\nCSeq: 1 A\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let many = format!(
            "SIP/2.0 200 OK\r\n{}Call-ID: x\r\nCSeq: 1 A\r\n\r\n",
            "Via: SIP/2.0/UDP h\r\n".repeat(MAX_REPEATED + 1)
        );
        assert_eq!(
            parse(many.as_bytes()).unwrap_err(),
            ParseError::TooMany("Via")
        );
    }

    #[test]
    fn reads_body_and_sdp_audio_address() {
        let raw = b"SIP/2.0 200 OK\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\nContent-Length: 10\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.0.9\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\nm=audio 40000 RTP/AVP 0\r\n";
        let m = parse(raw).unwrap();
        assert!(m.body().starts_with(b"v=0\r\n"));
        assert_eq!(
            sdp_audio_addr(m.body()),
            Some("127.0.0.1:30002".parse().unwrap())
        );
        assert_eq!(sdp_audio_addr(b"v=0\r\nm=audio 1 RTP/AVP 0\r\n"), None);
        assert_eq!(
            sdp_audio_addr(b"c=IN IP4 x\r\nm=audio 1 RTP/AVP 0\r\n"),
            None
        );
        assert_eq!(sdp_audio_addr(b""), None);
        let no_body =
            parse(b"OPTIONS sip:a SIP/2.0\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n\r\n").unwrap();
        assert!(no_body.body().is_empty());
    }

    #[test]
    fn name_addr_helpers() {
        assert_eq!(name_addr_uri(b"sip:a@b;expires=3"), b"sip:a@b");
        assert_eq!(name_addr_uri(b"\"x\" <sip:a@b;lr>;q=1"), b"sip:a@b;lr");
        assert_eq!(
            name_addr_param(b"<sip:a@b;tag=no>;tag=yes", b"tag"),
            Some(&b"yes"[..])
        );
        assert_eq!(name_addr_param(b"sip:a@b;TAG=z", b"tag"), Some(&b"z"[..]));
        assert_eq!(name_addr_param(b"<sip:a@b>", b"tag"), None);
    }
}
