//! One-pass framing: finds the start line, indexes every header line (name
//! id, name and value offsets, continuation lines folded into their header)
//! and locates the body. Nothing is copied; offsets point into the buffer.

use memchr::memchr;
use smallvec::SmallVec;

use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::lex::{is_token_char, parse_digits};
use crate::limits::Limits;

/// Inline capacity of the header index: typical messages need no heap.
pub(crate) const INLINE_HEADERS: usize = 24;

/// Offsets of one header field (all lines of a folded header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeaderEntry {
    /// Which header; `Other` for extensions (look at the name text).
    pub name: HeaderName,
    /// First byte of the line (the name).
    pub line_start: u32,
    /// End of the name (before any white space and the colon).
    pub name_end: u32,
    /// First byte of the value (after the colon and white space).
    pub value_start: u32,
    /// End of the value (trailing white space and CRLF excluded).
    pub value_end: u32,
    /// Just past the line terminator of the header's last line.
    pub line_end: u32,
}

/// A half-open byte range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    #[cfg(test)]
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The parsed shape of the first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartLine {
    /// `Method SP Request-URI SP SIP-Version`; the URI span is everything
    /// between the first and the last space, unvalidated.
    Request {
        method: Span,
        uri: Span,
        version: Span,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`.
    Response {
        version: Span,
        status: u16,
        reason: Span,
    },
}

/// Whether a message came in a datagram or from a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Datagram,
    Stream,
}

/// The framing result: offsets only, valid for the buffer it was made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// First byte of the start line (leading CRLFs skipped).
    pub msg_start: u32,
    pub start_line: StartLine,
    /// Just past the start line's terminator.
    pub start_line_end: u32,
    pub headers: SmallVec<[HeaderEntry; INLINE_HEADERS]>,
    /// Where the header section ends: just past the last header line's
    /// terminator (where new header lines can be inserted).
    pub head_end: u32,
    /// First body byte.
    pub body_start: u32,
    /// Just past the last body byte (the framed message's end).
    pub body_end: u32,
    /// The last header line had no line terminator (datagram cut short).
    pub last_line_open: bool,
    /// The header section did not end with a proper empty line (`CRLF` or
    /// `LF`): missing, or a lone CR at the end of a datagram.
    pub no_blank_line: bool,
    /// Content-Length as declared, if present.
    pub content_length: Option<usize>,
}

/// Frames the head of `buf` (start line and headers) and, for datagrams,
/// the body. On a stream, `body_end` is `body_start + Content-Length`,
/// which may exceed `buf.len()` (the caller waits for more bytes).
pub(crate) fn frame(
    buf: &[u8],
    limits: &Limits,
    transport: Transport,
) -> Result<Frame, ParseError> {
    let len = buf.len();
    let mut pos = 0usize;
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    while let Some(&c) = buf.get(pos) {
        if c == b'\r' || c == b'\n' {
            pos += 1;
        } else {
            break;
        }
    }
    if pos >= len {
        return Err(if transport == Transport::Stream {
            ParseError::Incomplete
        } else {
            ParseError::Empty
        });
    }
    let msg_start = pos;

    // Start line.
    let (sl_content_end, sl_end) = match memchr(b'\n', buf.get(pos..).unwrap_or_default()) {
        Some(off) => (trim_cr(buf, pos + off), pos + off + 1),
        None if transport == Transport::Stream => return Err(ParseError::Incomplete),
        None => (trim_cr(buf, len), len),
    };
    if sl_content_end - msg_start > limits.max_message_size {
        return Err(ParseError::TooLarge {
            size: sl_content_end - msg_start,
            limit: limits.max_message_size,
        });
    }
    let start_line = parse_start_line(buf, msg_start, sl_content_end)?;
    pos = sl_end;

    let mut headers: SmallVec<[HeaderEntry; INLINE_HEADERS]> = SmallVec::new();
    let mut line_no = 1usize;
    let head_end;
    let body_start;
    let mut last_line_open = false;
    let mut no_blank_line = false;
    loop {
        if pos >= len {
            if transport == Transport::Stream {
                return Err(ParseError::Incomplete);
            }
            head_end = len;
            body_start = len;
            no_blank_line = true;
            break;
        }
        line_no += 1;
        let line_start = pos;
        let (content_end, next) = match memchr(b'\n', buf.get(pos..).unwrap_or_default()) {
            Some(off) => (trim_cr(buf, pos + off), pos + off + 1),
            None if transport == Transport::Stream => return Err(ParseError::Incomplete),
            None => {
                last_line_open = true;
                (trim_cr(buf, len), len)
            }
        };
        if next - msg_start > limits.max_message_size {
            return Err(ParseError::TooLarge {
                size: next - msg_start,
                limit: limits.max_message_size,
            });
        }
        if content_end == line_start {
            // The empty line ending the header section.
            head_end = line_start;
            body_start = next;
            last_line_open = false;
            break;
        }
        let first = buf.get(line_start).copied().unwrap_or(b' ');
        if first == b' ' || first == b'\t' {
            // Continuation of the previous header (folding, RFC 3261 §7.3.1).
            let Some(prev) = headers.last_mut() else {
                return Err(ParseError::MalformedHeaderLine { line: line_no });
            };
            let text_start = skip_ws(buf, line_start, content_end);
            let text_end = trim_ws_end(buf, text_start, content_end);
            if text_end > text_start {
                if prev.value_start == prev.value_end {
                    prev.value_start = text_start as u32;
                }
                prev.value_end = text_end as u32;
            }
            prev.line_end = next as u32;
        } else {
            // The name is a token, then optional white space and a colon.
            let mut name_end = line_start;
            while name_end < content_end && buf.get(name_end).is_some_and(|&c| is_token_char(c)) {
                name_end += 1;
            }
            let colon = skip_ws(buf, name_end, content_end);
            if name_end == line_start || buf.get(colon) != Some(&b':') {
                return Err(ParseError::MalformedHeaderLine { line: line_no });
            }
            let name = buf.get(line_start..name_end).unwrap_or_default();
            if headers.len() >= limits.max_headers {
                return Err(ParseError::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
            let value_start = skip_ws(buf, colon + 1, content_end);
            let value_end = trim_ws_end(buf, value_start, content_end);
            headers.push(HeaderEntry {
                name: HeaderName::from_bytes(name),
                line_start: line_start as u32,
                name_end: name_end as u32,
                value_start: value_start as u32,
                value_end: value_end as u32,
                line_end: next as u32,
            });
        }
        pos = next;
    }

    if std::str::from_utf8(buf.get(msg_start..head_end).unwrap_or_default()).is_err() {
        return Err(ParseError::InvalidUtf8);
    }

    // Content-Length: every value must be digits; several must agree.
    let mut content_length: Option<usize> = None;
    for h in headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength)
    {
        let text = std::str::from_utf8(
            buf.get(h.value_start as usize..h.value_end as usize)
                .unwrap_or_default(),
        )
        .map_err(|_| ParseError::InvalidUtf8)?;
        let v = parse_digits(text)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(ParseError::InvalidContentLength)?;
        match content_length {
            Some(prev) if prev != v => return Err(ParseError::ConflictingContentLength),
            _ => content_length = Some(v),
        }
    }

    let body_end = match (transport, content_length) {
        (Transport::Datagram, Some(cl)) => {
            let available = len - body_start;
            if cl > available {
                return Err(ParseError::BodyTruncated {
                    declared: cl,
                    available,
                });
            }
            body_start + cl
        }
        (Transport::Datagram, None) => len,
        (Transport::Stream, Some(cl)) => body_start.saturating_add(cl),
        (Transport::Stream, None) => return Err(ParseError::MissingContentLength),
    };
    if body_end - msg_start > limits.max_message_size {
        return Err(ParseError::TooLarge {
            size: body_end - msg_start,
            limit: limits.max_message_size,
        });
    }

    Ok(Frame {
        msg_start: msg_start as u32,
        start_line,
        start_line_end: sl_end as u32,
        headers,
        head_end: head_end as u32,
        body_start: body_start as u32,
        body_end: body_end as u32,
        last_line_open,
        no_blank_line: no_blank_line
            || !matches!(buf.get(head_end..body_start), Some(b"\r\n" | b"\n")),
        content_length,
    })
}

/// Index of the line content end: `nl` or one less if preceded by CR.
#[inline]
fn trim_cr(buf: &[u8], nl: usize) -> usize {
    if nl > 0 && buf.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    }
}

#[inline]
fn skip_ws(buf: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && matches!(buf.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

#[inline]
fn trim_ws_end(buf: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(buf.get(end - 1), Some(b' ' | b'\t' | b'\r')) {
        end -= 1;
    }
    end
}

fn parse_start_line(buf: &[u8], start: usize, end: usize) -> Result<StartLine, ParseError> {
    let line = buf.get(start..end).unwrap_or_default();
    let first_sp = memchr(b' ', line).ok_or(ParseError::MalformedStartLine)?;
    let first = line.get(..first_sp).unwrap_or_default();
    if first.len() >= 4
        && first
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        // Status-Line.
        let rest = line.get(first_sp + 1..).unwrap_or_default();
        let code = rest.get(..3).ok_or(ParseError::InvalidStatusCode)?;
        if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
            return Err(ParseError::InvalidStatusCode);
        }
        let status = code.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::InvalidStatusCode);
        }
        let reason_start = (start + first_sp + 1 + 4).min(end);
        return Ok(StartLine::Response {
            version: Span::new(start, start + first_sp),
            status,
            reason: Span::new(reason_start, end),
        });
    }
    if first.is_empty() || !first.iter().all(|&c| is_token_char(c)) {
        return Err(ParseError::MalformedStartLine);
    }
    let last_sp = memchr::memrchr(b' ', line).ok_or(ParseError::MalformedStartLine)?;
    if last_sp == first_sp {
        return Err(ParseError::MalformedStartLine);
    }
    Ok(StartLine::Request {
        method: Span::new(start, start + first_sp),
        uri: Span::new(start + first_sp + 1, start + last_sp),
        version: Span::new(start + last_sp + 1, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dg(s: &[u8]) -> Result<Frame, ParseError> {
        frame(s, &Limits::default(), Transport::Datagram)
    }

    #[test]
    fn request_line_and_headers() {
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nv: SIP/2.0/TCP x\r\nContent-Length: 3\r\n\r\nabcEXTRA";
        let f = dg(m).unwrap();
        let StartLine::Request {
            method,
            uri,
            version,
        } = f.start_line
        else {
            panic!()
        };
        assert_eq!(&m[method.range()], b"INVITE");
        assert_eq!(&m[uri.range()], b"sip:a@b");
        assert_eq!(&m[version.range()], b"SIP/2.0");
        assert_eq!(f.headers.len(), 3);
        assert_eq!(f.headers[1].name, HeaderName::Via);
        assert_eq!(
            &m[f.headers[1].value_start as usize..f.headers[1].value_end as usize],
            b"SIP/2.0/TCP x"
        );
        assert_eq!(&m[f.body_start as usize..f.body_end as usize], b"abc");
        assert_eq!(f.content_length, Some(3));
    }

    #[test]
    fn folding_and_whitespace_around_colon() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nSubject  :  \r\n  first\r\n\tsecond  \r\nX:\r\n\r\n";
        let f = dg(m).unwrap();
        let h = f.headers[0];
        assert_eq!(h.name, HeaderName::Subject);
        assert_eq!(&m[h.line_start as usize..h.name_end as usize], b"Subject");
        assert_eq!(
            &m[h.value_start as usize..h.value_end as usize],
            b"first\r\n\tsecond"
        );
        assert_eq!(f.headers[1].value_start, f.headers[1].value_end);
    }

    #[test]
    fn status_line() {
        let f = dg(b"SIP/2.0 180 Ringing\r\n\r\n").unwrap();
        assert!(matches!(
            f.start_line,
            StartLine::Response { status: 180, .. }
        ));
        let f = dg(b"SIP/2.0 100\r\n\r\n").unwrap();
        assert!(matches!(
            f.start_line,
            StartLine::Response { status: 100, .. }
        ));
        assert_eq!(
            dg(b"SIP/2.0 4294967301 big\r\n\r\n"),
            Err(ParseError::InvalidStatusCode)
        );
        assert_eq!(
            dg(b"SIP/2.0 099 low\r\n\r\n"),
            Err(ParseError::InvalidStatusCode)
        );
        assert_eq!(
            dg(b"SIP/2.0 1x0 bad\r\n\r\n"),
            Err(ParseError::InvalidStatusCode)
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(dg(b""), Err(ParseError::Empty));
        assert_eq!(dg(b"\r\n\r\n"), Err(ParseError::Empty));
        assert_eq!(dg(b"INVITE\r\n\r\n"), Err(ParseError::MalformedStartLine));
        assert_eq!(
            dg(b"INVITE sip:a\r\n\r\n"),
            Err(ParseError::MalformedStartLine)
        );
        assert_eq!(
            dg(b"INV<ITE a b\r\n\r\n"),
            Err(ParseError::MalformedStartLine)
        );
        assert_eq!(
            dg(b"A b c\r\nno colon here\r\n\r\n"),
            Err(ParseError::MalformedHeaderLine { line: 2 })
        );
        assert_eq!(
            dg(b"A b c\r\n continuation first\r\n\r\n"),
            Err(ParseError::MalformedHeaderLine { line: 2 })
        );
        assert_eq!(
            dg(b"A b c\r\nBad Name: x\r\n\r\n"),
            Err(ParseError::MalformedHeaderLine { line: 2 })
        );
        assert_eq!(
            dg(b"A b c\r\nX: \xff\r\n\r\n"),
            Err(ParseError::InvalidUtf8)
        );
        assert_eq!(
            dg(b"A b c\r\nl: -1\r\n\r\n"),
            Err(ParseError::InvalidContentLength)
        );
        assert_eq!(
            dg(b"A b c\r\nl: 99999999999999999999999\r\n\r\n"),
            Err(ParseError::InvalidContentLength)
        );
        assert_eq!(
            dg(b"A b c\r\nl: 1\r\nl: 2\r\n\r\nxx"),
            Err(ParseError::ConflictingContentLength)
        );
        assert_eq!(
            dg(b"A b c\r\nl: 5\r\n\r\nxx"),
            Err(ParseError::BodyTruncated {
                declared: 5,
                available: 2
            })
        );
    }

    #[test]
    fn limits() {
        let lim = Limits {
            max_message_size: 40,
            max_headers: 2,
        };
        let m = b"A b c\r\nX: 1\r\nY: 2\r\nZ: 3\r\n\r\n";
        assert_eq!(
            frame(m, &lim, Transport::Datagram),
            Err(ParseError::TooManyHeaders { limit: 2 })
        );
        let m = b"A b c\r\nX: 0123456789012345678901234567890123456789\r\n\r\n";
        assert!(matches!(
            frame(m, &lim, Transport::Datagram),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn datagram_without_blank_line() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nl: 0";
        let f = dg(m).unwrap();
        assert!(f.no_blank_line && f.last_line_open);
        assert_eq!(f.headers.len(), 1);
        assert_eq!(f.body_start, f.body_end);
    }

    #[test]
    fn stream_needs_content_length_and_blank_line() {
        let s = |m: &[u8]| frame(m, &Limits::default(), Transport::Stream);
        assert_eq!(
            s(b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n"),
            Err(ParseError::Incomplete)
        );
        assert_eq!(
            s(b"OPTIONS sip:a SIP/2.0\r\nX: 0\r\n\r\n"),
            Err(ParseError::MissingContentLength)
        );
        let f = s(b"OPTIONS sip:a SIP/2.0\r\nl: 10\r\n\r\nabc").unwrap();
        assert_eq!(f.body_end - f.body_start, 10);
    }
}
