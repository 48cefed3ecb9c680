//! The `Digest` auth-param list shared by `Authorization`,
//! `Proxy-Authorization`, `WWW-Authenticate` and `Proxy-Authenticate`
//! (RFC 3261 §25.1, RFC 7616 §3.3/§3.4).

use std::borrow::Cow;

use crate::error::ParseError;

/// One `name=value` pair; the value is unquoted and unescaped.
pub(crate) type Param<'a> = (&'a str, Cow<'a, str>);

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_lws(&mut self) {
        while self.peek().is_some_and(is_lws) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or_default()
    }

    /// A quoted-string starting at the opening quote.
    fn quoted(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Straight to the next quote or backslash (nonces, responses
            // and URIs are long).
            let rest = self.text.as_bytes().get(self.pos..).unwrap_or_default();
            let Some(skip) = memchr::memchr2(b'"', b'\\', rest) else {
                return Err(ParseError::UnterminatedQuote(open));
            };
            self.pos += skip;
            match self.peek() {
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                _ => break,
            }
        }
        let inner = self
            .text
            .get(start..self.pos)
            .ok_or(ParseError::UnterminatedQuote(open))?;
        self.pos += 1;
        if !escaped {
            return Ok(Cow::Borrowed(inner));
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        Ok(Cow::Owned(out))
    }
}

/// Splits `Digest a=b, c="d"` into its parameters. Parameter names keep
/// their case (compare with `eq_ignore_ascii_case`); a name given twice is an
/// error. Unquoted values run to the next `,` or whitespace, which tolerates
/// clients that leave URIs unquoted.
pub(crate) fn parse_digest(value: &str) -> Result<Vec<Param<'_>>, ParseError> {
    let mut params: Vec<Param<'_>> = Vec::with_capacity(10);
    visit_digest(value, |name, value| {
        if params.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(duplicate(name));
        }
        params.push((name, value));
        Ok(())
    })?;
    Ok(params)
}

/// The error for a parameter `name` given twice.
pub(crate) fn duplicate(name: &str) -> ParseError {
    ParseError::Duplicate(name.to_ascii_lowercase())
}

/// Walks the parameters of `Digest a=b, c="d"` in order: `visit` gets each
/// name and its value (unquoted and unescaped), and may stop the walk with
/// an error. Duplicates are the visitor's to find.
pub(crate) fn visit_digest<'a>(
    value: &'a str,
    mut visit: impl FnMut(&'a str, Cow<'a, str>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut cur = Cursor {
        text: value,
        pos: 0,
    };
    cur.skip_lws();
    let scheme = cur.take_while(is_token);
    if !scheme.eq_ignore_ascii_case("Digest") || !cur.peek().is_some_and(is_lws) {
        return Err(ParseError::NotDigest);
    }
    loop {
        cur.skip_lws();
        match cur.peek() {
            None => break,
            Some(b',') => {
                cur.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name_at = cur.pos;
        let name = cur.take_while(is_token);
        if name.is_empty() {
            return Err(ParseError::Unexpected(name_at));
        }
        cur.skip_lws();
        if cur.peek() != Some(b'=') {
            return Err(ParseError::MissingValue(name_at));
        }
        cur.pos += 1;
        cur.skip_lws();
        let value = if cur.peek() == Some(b'"') {
            cur.quoted()?
        } else {
            Cow::Borrowed(cur.take_while(|b| b != b',' && !is_lws(b)))
        };
        visit(name, value)?;
        cur.skip_lws();
        match cur.peek() {
            None => break,
            Some(b',') => cur.pos += 1,
            Some(_) => return Err(ParseError::Unexpected(cur.pos)),
        }
    }
    Ok(())
}

/// Removes and returns the parameter `name` (case-insensitive).
pub(crate) fn take<'a>(params: &mut Vec<Param<'a>>, name: &str) -> Option<Cow<'a, str>> {
    let index = params
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
    Some(params.swap_remove(index).1)
}

/// Writes `"text"` with `"` and `\` escaped.
pub(crate) fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_token_values() {
        let p = parse_digest(
            "Digest username=\"alice\",realm=\"localhost\" ,\r\n nonce=\"abc\", uri=\"sip:localhost\", \
             response=\"0123\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"x y\"",
        )
        .unwrap();
        let get = |n: &str| {
            p.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_ref())
        };
        assert_eq!(get("username"), Some("alice"));
        assert_eq!(get("realm"), Some("localhost"));
        assert_eq!(get("algorithm"), Some("SHA-256"));
        assert_eq!(get("nc"), Some("00000001"));
        assert_eq!(get("cnonce"), Some("x y"));
        assert_eq!(p.len(), 9);
    }

    #[test]
    fn unescapes_quoted_pairs() {
        let p = parse_digest(r#"digest realm="a\"b\\c""#).unwrap();
        assert_eq!(p[0].1, "a\"b\\c");
        let mut out = String::new();
        push_quoted(&mut out, "a\"b\\c");
        assert_eq!(out, r#""a\"b\\c""#);
    }

    #[test]
    fn rejects_malformed_input() {
        assert_eq!(parse_digest("Basic abc"), Err(ParseError::NotDigest));
        assert_eq!(parse_digest("Digestrealm=x"), Err(ParseError::NotDigest));
        assert_eq!(
            parse_digest("Digest realm=\"x"),
            Err(ParseError::UnterminatedQuote(13))
        );
        assert_eq!(
            parse_digest("Digest realm=\"x\\"),
            Err(ParseError::UnterminatedQuote(13))
        );
        assert_eq!(
            parse_digest("Digest realm"),
            Err(ParseError::MissingValue(7))
        );
        assert_eq!(
            parse_digest("Digest realm=\"a\" nonce=\"b\""),
            Err(ParseError::Unexpected(17))
        );
        assert_eq!(
            parse_digest("Digest realm=a, REALM=b"),
            Err(ParseError::Duplicate("realm".into()))
        );
        assert_eq!(parse_digest("Digest =x"), Err(ParseError::Unexpected(7)));
    }

    #[test]
    fn tolerates_empty_elements_and_non_ascii() {
        let p = parse_digest("Digest ,, realm=\"ä\",").unwrap();
        assert_eq!(p, vec![("realm", Cow::Borrowed("ä"))]);
    }
}
