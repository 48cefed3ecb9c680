//! Small typed header values: CSeq, Content-Type, Retry-After and numeric
//! headers (Max-Forwards, Expires, Min-Expires, Content-Length).

use crate::error::ValueError;
use crate::header_name::HeaderName;
use crate::lex::{Cursor, is_lws, parse_digits, sub, trim_lws};
use crate::method::Method;
use crate::params::Params;

/// Largest CSeq sequence number: RFC 3261 §8.1.1.5 requires < 2**31.
pub const MAX_CSEQ: u32 = (1 << 31) - 1;

/// The CSeq value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (< 2**31).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &str) -> Result<CSeq, ValueError> {
        let bad = ValueError::Malformed(HeaderName::CSeq);
        let s = trim_lws(s);
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let number = sub(s, 0, digits);
        let rest = sub(s, digits, s.len());
        if digits == 0 || !rest.bytes().next().is_some_and(is_lws) {
            return Err(bad);
        }
        let seq = parse_digits(number).ok_or(ValueError::OutOfRange(HeaderName::CSeq))?;
        let seq = u32::try_from(seq)
            .ok()
            .filter(|&n| n <= MAX_CSEQ)
            .ok_or(ValueError::OutOfRange(HeaderName::CSeq))?;
        let method = Method::parse(trim_lws(rest)).ok_or(bad)?;
        Ok(CSeq { seq, method })
    }
}

/// Parses a `delta-seconds`/`1*DIGIT` value that must fit into `u32`.
pub(crate) fn parse_u32(s: &str, name: HeaderName) -> Result<u32, ValueError> {
    let t = trim_lws(s);
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ValueError::Malformed(name));
    }
    parse_digits(t)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(ValueError::OutOfRange(name))
}

/// A media type (`Content-Type`, one `Accept` element).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// Top-level type, e.g. `application`.
    pub kind: &'a str,
    /// Subtype, e.g. `sdp`.
    pub subtype: &'a str,
    /// Parameters such as `boundary` or `charset`.
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parses `type/subtype *(;param)`.
    pub fn parse(s: &'a str) -> Result<MediaType<'a>, ValueError> {
        let bad = ValueError::Malformed(HeaderName::ContentType);
        let mut c = Cursor::new(s);
        c.skip_lws();
        let kind = c.token().ok_or(bad)?;
        c.skip_lws();
        if !c.eat(b'/') {
            return Err(bad);
        }
        c.skip_lws();
        let subtype = c.token().ok_or(bad)?;
        let params = Params::parse_header(&mut c).ok_or(bad)?;
        c.skip_lws();
        if !c.at_end() {
            return Err(bad);
        }
        Ok(MediaType {
            kind,
            subtype,
            params,
        })
    }

    /// True when this is `kind/subtype` (case-insensitive).
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// True when this (possibly a wildcard range from Accept, like `*/*` or
    /// `application/*`) matches `essence` (`type/subtype`).
    pub fn matches(&self, essence: &str) -> bool {
        let (k, s) = essence.split_once('/').unwrap_or((essence, ""));
        (self.kind == "*" || self.kind.eq_ignore_ascii_case(k))
            && (self.subtype == "*" || self.subtype.eq_ignore_ascii_case(s))
    }
}

/// The Retry-After value (RFC 3261 §20.33).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter<'a> {
    /// Seconds to wait.
    pub seconds: u32,
    /// The comment, without parentheses.
    pub comment: Option<&'a str>,
    /// Parameters (`duration`, ...).
    pub params: Params<'a>,
}

impl<'a> RetryAfter<'a> {
    /// Parses `delta-seconds [ comment ] *( SEMI retry-param )`.
    pub fn parse(s: &'a str) -> Result<RetryAfter<'a>, ValueError> {
        let name = HeaderName::RetryAfter;
        let mut c = Cursor::new(s);
        c.skip_lws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        let seconds = parse_u32(digits, name)?;
        c.skip_lws();
        let mut comment = None;
        if c.peek() == Some(b'(') {
            let start = c.pos();
            let mut depth = 0usize;
            loop {
                match c.peek() {
                    None => return Err(ValueError::Malformed(name)),
                    Some(b'(') => depth += 1,
                    Some(b')') => {
                        depth -= 1;
                        if depth == 0 {
                            c.bump();
                            break;
                        }
                    }
                    Some(b'\\') => c.bump(),
                    _ => {}
                }
                c.bump();
            }
            comment = Some(c.slice(start + 1, c.pos() - 1));
        }
        let params = Params::parse_header(&mut c).ok_or(ValueError::Malformed(name))?;
        c.skip_lws();
        if !c.at_end() {
            return Err(ValueError::Malformed(name));
        }
        Ok(RetryAfter {
            seconds,
            comment,
            params,
        })
    }

    /// The `duration` parameter.
    pub fn duration(&self) -> Option<Result<u32, ValueError>> {
        self.params
            .get("duration")
            .map(|d| parse_u32(d, HeaderName::RetryAfter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE"),
            Ok(CSeq {
                seq: 9,
                method: Method::Invite
            })
        );
        assert_eq!(CSeq::parse("2147483647 ACK").map(|c| c.seq), Ok(MAX_CSEQ));
        assert_eq!(
            CSeq::parse("2147483648 ACK"),
            Err(ValueError::OutOfRange(HeaderName::CSeq))
        );
        assert_eq!(
            CSeq::parse("36893488147419103232 REGISTER"),
            Err(ValueError::OutOfRange(HeaderName::CSeq))
        );
        for bad in ["INVITE", "1", "1INVITE", "-1 INVITE", "1 IN VITE", ""] {
            assert!(CSeq::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn media_type() {
        let m = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(m.params.get("boundary"), Some("7a9cbec02ceef655"));
        assert!(MediaType::parse("*/*").unwrap().matches("application/sdp"));
        assert!(
            MediaType::parse("application/*")
                .unwrap()
                .matches("application/sdp")
        );
        assert!(
            !MediaType::parse("text/nobodyKnowsThis")
                .unwrap()
                .matches("application/sdp")
        );
        assert!(MediaType::parse("application").is_err());
        assert!(MediaType::parse("a/b c").is_err());
    }

    #[test]
    fn retry_after() {
        let r = RetryAfter::parse("18000 (in a (nested) meeting) ;duration=3600").unwrap();
        assert_eq!(r.seconds, 18000);
        assert_eq!(r.comment, Some("in a (nested) meeting"));
        assert_eq!(r.duration(), Some(Ok(3600)));
        assert_eq!(
            RetryAfter::parse("949302838503028349304023988"),
            Err(ValueError::OutOfRange(HeaderName::RetryAfter))
        );
        assert!(RetryAfter::parse("5 (open").is_err());
        assert!(RetryAfter::parse("x").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0068", HeaderName::MaxForwards), Ok(68));
        assert_eq!(
            parse_u32("4294967296", HeaderName::Expires),
            Err(ValueError::OutOfRange(HeaderName::Expires))
        );
        assert_eq!(
            parse_u32("-1", HeaderName::Expires),
            Err(ValueError::Malformed(HeaderName::Expires))
        );
    }
}
