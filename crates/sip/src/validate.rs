//! Validation, separate from framing: given a framed request, decide
//! whether to process it or which error response to send (RFC 3261 §8.2,
//! §16.3; RFC 4475 says which response each torture message gets).

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;

use crate::builder::ResponseBuilder;
use crate::error::{ParseError, ValueError};
use crate::header_name::HeaderName;
use crate::lex::{is_lws, trim_lws};
use crate::message::Message;
use crate::method::Method;

/// Which element validates: it decides which extension headers apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// A user agent server: checks Require (RFC 3261 §8.2.2.3).
    #[default]
    Uas,
    /// A proxy: checks Proxy-Require (§16.3 step 5), not Require.
    Proxy,
    /// A registrar: like a UAS, and a REGISTER's To must be a SIP or SIPS
    /// URI (RFC 3261 §10.3, RFC 4475 §3.3.4).
    Registrar,
}

/// What the validating element supports.
#[derive(Clone, Copy, Debug)]
pub struct ValidationPolicy<'p> {
    /// Which element is validating.
    pub role: Role,
    /// Supported option tags (for Require, or Proxy-Require for a proxy).
    pub supported: &'p [&'p str],
    /// Request-URI schemes accepted; others get 416.
    pub uri_schemes: &'p [&'p str],
    /// Body types understood; others get 415. `None` accepts any body.
    pub accepted_content_types: Option<&'p [&'p str]>,
    /// The body type an INVITE is answered with: a request whose Accept
    /// excludes it gets 406. `None` skips the check.
    pub answer_content_type: Option<&'p str>,
    /// Methods implemented; others get 501 with Allow. `None` accepts all.
    pub methods: Option<&'p [&'p str]>,
}

impl Default for ValidationPolicy<'static> {
    fn default() -> Self {
        ValidationPolicy {
            role: Role::Uas,
            supported: &[],
            uri_schemes: &["sip", "sips", "tel"],
            accepted_content_types: None,
            answer_content_type: None,
            methods: None,
        }
    }
}

/// The error response a request deserves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Status code (400, 416, 420, 483, 505, ...).
    pub status: u16,
    /// Reason phrase naming the problem, e.g. "Bad Request - Missing Call-ID".
    pub reason: &'static str,
    /// Option tags for an Unsupported header (420).
    pub unsupported: Vec<String>,
    /// Value for an Accept header (415).
    pub accept: Option<String>,
    /// Value for an Allow header (501).
    pub allow: Option<String>,
}

impl Rejection {
    fn new(status: u16, reason: &'static str) -> Rejection {
        Rejection {
            status,
            reason,
            unsupported: Vec::new(),
            accept: None,
            allow: None,
        }
    }

    fn bad(reason: &'static str) -> Rejection {
        Rejection::new(400, reason)
    }

    /// The response to send for `req` (To tag added when given).
    pub fn response(&self, req: &Message, to_tag: Option<&str>) -> Bytes {
        let unsupported = self.unsupported.join(", ");
        let mut b = ResponseBuilder::new(req, self.status, self.reason);
        if let Some(t) = to_tag {
            b = b.to_tag(t);
        }
        if !self.unsupported.is_empty() {
            b = b.header("Unsupported", &unsupported);
        }
        if let Some(a) = &self.accept {
            b = b.header("Accept", a);
        }
        if let Some(a) = &self.allow {
            b = b.header("Allow", a);
        }
        b.build()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// Whether `bytes` holds a control character other than HTAB, CR and LF
/// (or DEL): a branch-free pass over 32-byte blocks, which the compiler
/// vectorises (the exact check, with its escapes, runs only when this
/// finds one).
fn any_ctl(bytes: &[u8]) -> bool {
    bytes.chunks(32).any(|block| {
        block.iter().fold(false, |found, &c| {
            found | ((c < 0x20) & (c != b'\t') & (c != b'\r') & (c != b'\n')) | (c == 0x7f)
        })
    })
}

fn version_rejection(version: &str) -> Option<Rejection> {
    if version == "SIP/2.0" {
        return None;
    }
    let well_formed = version.len() > 4
        && version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && version.get(4..).is_some_and(|v| {
            let (a, b) = v.split_once('.').unwrap_or(("", ""));
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        });
    if well_formed && !version.eq_ignore_ascii_case("SIP/2.0") {
        Some(Rejection::new(505, "Version Not Supported"))
    } else if well_formed {
        None
    } else {
        Some(Rejection::bad("Bad Request - Malformed Request-Line"))
    }
}

/// Decides whether a framed request can be processed. Checks, in order:
/// SIP version (505), Request-Line and Request-URI syntax, mandatory
/// headers present once and well formed (Via, From, To, Call-ID, CSeq),
/// CSeq method matching the request method, Max-Forwards, Contact, Route,
/// Expires and Date syntax (400 with the header named), the Request-URI
/// scheme (416), implemented methods (501), Require or Proxy-Require (420),
/// the body type (415) and Accept for INVITE (406). Max-Forwards 0 is the
/// proxy's business: see [`check_max_forwards`]. A proxy ([`Role::Proxy`])
/// checks a REGISTER's To and Contact only for presence: the registrar
/// behind it reads them.
pub fn validate_request(msg: &Message, policy: &ValidationPolicy<'_>) -> Result<(), Rejection> {
    let method_str = msg
        .method_str()
        .ok_or_else(|| Rejection::bad("Bad Request - Not a Request"))?;
    if let Some(r) = version_rejection(msg.version()) {
        return Err(r);
    }
    let ruri_text = msg.request_uri_str().unwrap_or_default();
    if ruri_text.is_empty() || ruri_text.bytes().any(is_lws) {
        return Err(Rejection::bad("Bad Request - Malformed Request-URI"));
    }
    let ruri = msg
        .request_uri()
        .map_err(|_| Rejection::bad("Bad Request - Malformed Request-URI"))?;
    if ruri.as_sip().is_some_and(|u| u.headers.is_some()) {
        return Err(Rejection::bad("Bad Request - Headers in Request-URI"));
    }
    // Header values are TEXT: no control characters but HTAB (and the CR
    // LF of folding, which framing has already handled), except escaped
    // as a quoted-pair inside a quoted string (RFC 4475 intmeth).
    let head = msg
        .as_bytes()
        .get(..msg.as_bytes().len() - msg.body().len())
        .unwrap_or_default();
    let is_ctl = |c: u8| (c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n')) || c == 0x7f;
    if any_ctl(head)
        && head
            .iter()
            .enumerate()
            .any(|(i, &c)| is_ctl(c) && (i == 0 || head.get(i - 1) != Some(&b'\\')))
    {
        return Err(Rejection::bad("Bad Request - Control character in header"));
    }

    for (name, missing, multiple) in [
        (
            HeaderName::To,
            "Bad Request - Missing To",
            "Bad Request - Multiple To",
        ),
        (
            HeaderName::From,
            "Bad Request - Missing From",
            "Bad Request - Multiple From",
        ),
        (
            HeaderName::CallId,
            "Bad Request - Missing Call-ID",
            "Bad Request - Multiple Call-ID",
        ),
        (
            HeaderName::CSeq,
            "Bad Request - Missing CSeq",
            "Bad Request - Multiple CSeq",
        ),
        (HeaderName::Via, "Bad Request - Missing Via", ""),
    ] {
        match msg.count(name) {
            0 => return Err(Rejection::bad(missing)),
            1 => {}
            _ if name != HeaderName::Via => return Err(Rejection::bad(multiple)),
            _ => {}
        }
    }
    for (name, multiple) in [
        (
            HeaderName::MaxForwards,
            "Bad Request - Multiple Max-Forwards",
        ),
        (
            HeaderName::ContentType,
            "Bad Request - Multiple Content-Type",
        ),
        (HeaderName::Expires, "Bad Request - Multiple Expires"),
    ] {
        if msg.count(name) > 1 {
            return Err(Rejection::bad(multiple));
        }
    }

    let cseq = msg
        .cseq()
        .map_err(|_| Rejection::bad("Bad Request - Malformed CSeq"))?;
    if cseq.method.as_str() != method_str {
        return Err(Rejection::bad("Bad Request - CSeq Method Mismatch"));
    }
    msg.call_id()
        .map_err(|_| Rejection::bad("Bad Request - Malformed Call-ID"))?;
    msg.from()
        .map_err(|_| Rejection::bad("Bad Request - Malformed From"))?;
    // A proxy leaves a REGISTER's To and Contact to the registrar, which
    // reads the To (the address-of-record) before it authenticates and the
    // Contact after (RFC 3261 §10.3 steps 1 and 7: a challenged REGISTER
    // costs no Contact parse), and answers 400 for a malformed one; a
    // REGISTER forwarded elsewhere keeps both as received (§16.3: what the
    // proxy does not use stays unchanged).
    let left_to_registrar = policy.role == Role::Proxy && method_str == "REGISTER";
    if !left_to_registrar {
        msg.to()
            .map_err(|_| Rejection::bad("Bad Request - Malformed To"))?;
    }
    // The top Via through the message's cache: the core's `received`
    // stamp reads it next, and it is parsed once. The others are skipped
    // past as text (`vias().skip(1)` parsed the top one again to drop it).
    if msg.headers_named(HeaderName::Via).next().is_none()
        || msg.top_via().is_err()
        || msg
            .headers_named(HeaderName::Via)
            .skip(1)
            .any(|v| crate::via::Via::parse(v).is_err())
    {
        return Err(Rejection::bad("Bad Request - Malformed Via"));
    }
    if msg
        .header_lines(HeaderName::Via)
        .any(|l| l.split(',').any(|e| trim_lws(e).is_empty()))
    {
        return Err(Rejection::bad("Bad Request - Malformed Via"));
    }
    match msg.max_forwards() {
        Ok(_) | Err(ValueError::Missing(_)) => {}
        Err(_) => return Err(Rejection::bad("Bad Request - Malformed Max-Forwards")),
    }
    if !left_to_registrar && msg.contacts().any(|c| c.is_err()) {
        return Err(Rejection::bad("Bad Request - Malformed Contact"));
    }
    if msg.routes().any(|r| r.is_err()) {
        return Err(Rejection::bad("Bad Request - Malformed Route"));
    }
    if msg.record_routes().any(|r| r.is_err()) {
        return Err(Rejection::bad("Bad Request - Malformed Record-Route"));
    }
    if let Err(ValueError::Malformed(_)) = msg.expires() {
        return Err(Rejection::bad("Bad Request - Malformed Expires"));
    }
    if msg
        .header(HeaderName::Date)
        .is_some_and(|d| !is_sip_date(trim_lws(d)))
    {
        return Err(Rejection::bad("Bad Request - Malformed Date"));
    }
    if msg.has(HeaderName::ContentType) && msg.content_type().is_err() {
        return Err(Rejection::bad("Bad Request - Malformed Content-Type"));
    }

    if !policy
        .uri_schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case(ruri.scheme()))
    {
        return Err(Rejection::new(416, "Unsupported URI Scheme"));
    }
    validate_extensions(msg, policy)
}

/// The part of [`validate_request`] that depends on the validating element
/// ([`ValidationPolicy`] apart from the URI schemes): implemented methods
/// (501), a registrar's To (400), Require or Proxy-Require (420), the body
/// type (415) and Accept for INVITE (406).
///
/// For an element behind another that already ran [`validate_request`] on
/// the same message (a registrar behind the node's SIP core, which
/// validates as a proxy): the syntax checks need not run twice.
pub fn validate_extensions(msg: &Message, policy: &ValidationPolicy<'_>) -> Result<(), Rejection> {
    let method_str = msg
        .method_str()
        .ok_or_else(|| Rejection::bad("Bad Request - Not a Request"))?;
    let method = msg
        .cseq()
        .map_err(|_| Rejection::bad("Bad Request - Malformed CSeq"))?
        .method;
    if let Some(methods) = policy.methods
        && !methods.contains(&method_str)
        && method != Method::Ack
    {
        let mut r = Rejection::new(501, "Not Implemented");
        r.allow = Some(methods.join(", "));
        return Err(r);
    }
    if policy.role == Role::Registrar
        && method == Method::Register
        && !msg
            .to()
            .map_err(|_| Rejection::bad("Bad Request - Malformed To"))?
            .uri
            .is_sip()
    {
        return Err(Rejection::bad("Bad Request - To Must Be a SIP or SIPS URI"));
    }
    let required: Vec<&str> = match policy.role {
        Role::Proxy => msg.proxy_require().collect(),
        // §8.2.2.3: never 420 for ACK or CANCEL.
        _ if matches!(method, Method::Ack | Method::Cancel) => Vec::new(),
        _ => msg.require().collect(),
    };
    let unsupported: Vec<String> = required
        .into_iter()
        .filter(|t| !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .map(str::to_owned)
        .collect();
    if !unsupported.is_empty() {
        let mut r = Rejection::new(420, "Bad Extension");
        r.unsupported = unsupported;
        return Err(r);
    }
    if policy.role != Role::Proxy {
        if let (Some(accepted), false) = (policy.accepted_content_types, msg.body().is_empty()) {
            let ok = msg.content_type().is_ok_and(|ct| {
                accepted.iter().any(|a| {
                    let (k, s) = a.split_once('/').unwrap_or((a, ""));
                    ct.is(k, s)
                })
            });
            if !ok {
                let mut r = Rejection::new(415, "Unsupported Media Type");
                r.accept = Some(accepted.join(", "));
                return Err(r);
            }
        }
        if let (Some(answer), Method::Invite) = (policy.answer_content_type, &method)
            && msg.has(HeaderName::Accept)
            && !msg.accept().any(|a| a.is_ok_and(|a| a.matches(answer)))
        {
            let mut r = Rejection::new(406, "Not Acceptable");
            r.accept = Some(answer.to_owned());
            return Err(r);
        }
    }
    Ok(())
}

/// A proxy's Max-Forwards check (RFC 3261 §16.3 step 3): 483 when it is 0.
/// An absent or unreadable value passes (the proxy inserts 70).
pub fn check_max_forwards(msg: &Message) -> Result<(), Rejection> {
    match msg.max_forwards() {
        Ok(0) => Err(Rejection::new(483, "Too Many Hops")),
        _ => Ok(()),
    }
}

/// Why a response must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseDefect {
    /// A mandatory header is missing or malformed.
    #[error("response {0}")]
    Header(ValueError),
    /// Not SIP/2.0.
    #[error("unsupported SIP version")]
    Version,
    /// Not a response.
    #[error("not a response")]
    NotAResponse,
}

/// Checks a received response before the transaction layer sees it: SIP
/// version, Via, From, To, Call-ID and CSeq present and well formed. A
/// defective response is dropped (no response is sent to a response).
pub fn validate_response(msg: &Message) -> Result<(), ResponseDefect> {
    if !msg.is_response() {
        return Err(ResponseDefect::NotAResponse);
    }
    if !msg.version().eq_ignore_ascii_case("SIP/2.0") {
        return Err(ResponseDefect::Version);
    }
    msg.top_via().map_err(ResponseDefect::Header)?;
    msg.cseq().map_err(ResponseDefect::Header)?;
    msg.call_id().map_err(ResponseDefect::Header)?;
    msg.from().map_err(ResponseDefect::Header)?;
    msg.to().map_err(ResponseDefect::Header)?;
    Ok(())
}

/// RFC 1123 date as SIP requires (RFC 3261 §20.17):
/// `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`.
pub fn is_sip_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 29 {
        return false;
    }
    let wk = s.get(0..3).unwrap_or_default();
    let mon = s.get(8..11).unwrap_or_default();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&wk)
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&mon)
        && b.get(3..5) == Some(b", ")
        && digit(5)
        && digit(6)
        && b.get(7) == Some(&b' ')
        && b.get(11) == Some(&b' ')
        && (12..16).all(digit)
        && b.get(16) == Some(&b' ')
        && digit(17)
        && digit(18)
        && b.get(19) == Some(&b':')
        && digit(20)
        && digit(21)
        && b.get(22) == Some(&b':')
        && digit(23)
        && digit(24)
        && b.get(25..29) == Some(b" GMT")
}

/// Builds a 400 for a request whose bytes could not be framed (negative or
/// lying Content-Length, invalid UTF-8, a malformed header line...), when
/// its head still shows a Request-Line and the Via, From, To, Call-ID and
/// CSeq needed to address a response. `None` means drop silently. Header
/// lines are copied byte for byte; a To tag is added when given and absent.
pub fn error_response(data: &[u8], err: &ParseError, to_tag: Option<&str>) -> Option<Bytes> {
    let limit = crate::limits::Limits::DEFAULT;
    let data = data.get(..data.len().min(limit.max_message_size))?;
    let mut pos = data.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let line_end = |from: usize| memchr(b'\n', data.get(from..)?).map(|i| from + i);
    let first_end = line_end(pos)?;
    let first = data.get(pos..first_end)?;
    let sp = memchr(b' ', first)?;
    let method = first.get(..sp)?;
    if method.is_empty() || !method.iter().all(|&c| crate::lex::is_token_char(c)) {
        return None; // a response, or garbage
    }
    pos = first_end + 1;
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(b"SIP/2.0 400 ");
    out.put_slice(err.reason_phrase().as_bytes());
    out.put_slice(b"\r\n");
    let mut seen = [false; 5];
    let mut current: Option<HeaderName> = None;
    let mut lines = 0;
    while let Some(end) = line_end(pos) {
        let line = data.get(pos..end)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = end + 1;
        lines += 1;
        if line.is_empty() || lines > limit.max_headers {
            break;
        }
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if !folded {
            current = memchr(b':', line).map(|c| {
                let name = line.get(..c).unwrap_or_default();
                let end = name
                    .iter()
                    .rposition(|&c| c != b' ' && c != b'\t')
                    .map_or(0, |i| i + 1);
                HeaderName::from_bytes(name.get(..end).unwrap_or_default())
            });
        }
        let Some(name) = current else { continue };
        let slot = match name {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            _ => continue,
        };
        if std::str::from_utf8(line).is_err() {
            return None; // echoing it would produce an invalid response
        }
        if let Some(s) = seen.get_mut(slot) {
            *s = true;
        }
        if folded {
            // Continuation: remove the CRLF just written and fold in.
            out.truncate(out.len().saturating_sub(2));
        }
        out.put_slice(line);
        if name == HeaderName::To
            && !folded
            && let Some(tag) = to_tag
            && !line.windows(4).any(|w| w.eq_ignore_ascii_case(b"tag="))
        {
            out.put_slice(b";tag=");
            out.put_slice(tag.as_bytes());
        }
        out.put_slice(b"\r\n");
    }
    if !seen.iter().all(|&s| s) {
        return None;
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    const BASE: &str = "OPTIONS sip:u@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:u@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n";

    fn with(extra: &str) -> Message {
        req(&format!("{BASE}{extra}Content-Length: 0\r\n\r\n"))
    }

    #[test]
    fn control_characters_are_found_in_every_block_position() {
        let is_ctl = |c: u8| (c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n')) || c == 0x7f;
        for len in [0usize, 1, 31, 32, 33, 64, 100] {
            let clean = vec![b'a'; len];
            assert!(!any_ctl(&clean));
            for at in 0..len {
                for c in 0u8..=255 {
                    let mut b = clean.clone();
                    b[at] = c;
                    assert_eq!(any_ctl(&b), is_ctl(c), "len {len} at {at} byte {c}");
                }
            }
        }
    }

    #[test]
    fn valid_and_dates() {
        assert_eq!(
            validate_request(&with(""), &ValidationPolicy::default()),
            Ok(())
        );
        assert!(is_sip_date("Sat, 13 Nov 2010 23:29:00 GMT"));
        assert!(!is_sip_date("Fri, 01 Jan 2010 16:00:00 EST"));
        assert!(!is_sip_date("Fri, 01 Jan 2010 16:00:00 GMT "));
        let r = validate_request(
            &with("Date: Fri, 01 Jan 2010 16:00:00 EST\r\n"),
            &ValidationPolicy::default(),
        );
        assert_eq!(r.unwrap_err().reason, "Bad Request - Malformed Date");
    }

    #[test]
    fn require_and_proxy_require() {
        let m = with("Require: path, foo\r\nProxy-Require: bar\r\n");
        let p = ValidationPolicy {
            supported: &["path"],
            ..ValidationPolicy::default()
        };
        let r = validate_request(&m, &p).unwrap_err();
        assert_eq!(
            (r.status, r.unsupported.clone()),
            (420, vec!["foo".to_string()])
        );
        let resp = Message::parse(r.response(&m, Some("t1"))).unwrap();
        assert_eq!(resp.status(), Some(420));
        assert_eq!(resp.header(HeaderName::Unsupported), Some("foo"));
        assert_eq!(resp.to_tag(), Some("t1"));
        let p = ValidationPolicy {
            role: Role::Proxy,
            supported: &["bar"],
            ..ValidationPolicy::default()
        };
        assert_eq!(validate_request(&m, &p), Ok(()));
    }

    #[test]
    fn max_forwards_helper() {
        let m = req("OPTIONS sip:u@h SIP/2.0\r\nMax-Forwards: 0\r\n\r\n");
        assert_eq!(check_max_forwards(&m).unwrap_err().status, 483);
        let m = req("OPTIONS sip:u@h SIP/2.0\r\n\r\n");
        assert_eq!(check_max_forwards(&m), Ok(()));
    }

    #[test]
    fn methods_and_bodies() {
        let p = ValidationPolicy {
            methods: Some(&["INVITE", "OPTIONS"]),
            ..ValidationPolicy::default()
        };
        assert_eq!(validate_request(&with(""), &p), Ok(()));
        let p = ValidationPolicy {
            methods: Some(&["INVITE"]),
            ..ValidationPolicy::default()
        };
        let r = validate_request(&with(""), &p).unwrap_err();
        assert_eq!((r.status, r.allow.as_deref()), (501, Some("INVITE")));
        let m = req(&format!(
            "{BASE}Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        ));
        let p = ValidationPolicy {
            accepted_content_types: Some(&["application/sdp"]),
            ..ValidationPolicy::default()
        };
        let r = validate_request(&m, &p).unwrap_err();
        assert_eq!(
            (r.status, r.accept.as_deref()),
            (415, Some("application/sdp"))
        );
    }

    #[test]
    fn error_responses_for_unframable() {
        let data = b"INVITE sip:u@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@h>;tag=1\r\nt: <sip:u@h>\r\ni: x\r\nCSeq: 1 INVITE\r\nl: -5\r\n\r\n";
        let r = error_response(data, &ParseError::InvalidContentLength, Some("zz")).unwrap();
        let m = Message::parse(r).unwrap();
        assert_eq!(m.status(), Some(400));
        assert_eq!(m.reason(), Some("Bad Request - Malformed Content-Length"));
        assert_eq!(m.to_tag(), Some("zz"));
        assert_eq!(m.call_id(), Ok("x"));
        assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK1"));
        assert!(
            error_response(
                b"SIP/2.0 200 OK\r\n\r\n",
                &ParseError::InvalidContentLength,
                None
            )
            .is_none()
        );
        assert!(
            error_response(
                b"INVITE sip:u@h SIP/2.0\r\nl: -5\r\n\r\n",
                &ParseError::InvalidContentLength,
                None
            )
            .is_none()
        );
        assert!(error_response(b"", &ParseError::Empty, None).is_none());
    }
}
