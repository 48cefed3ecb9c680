//! Lexical helpers shared by the typed-value parsers: character classes from
//! RFC 3261 §25.1, a cursor over a header value, quoted strings and comma
//! splitting that respects quotes and angle brackets.

use std::borrow::Cow;

/// `token` characters of RFC 3261 §25.1: alphanum and `-.!%*_+`'~`.
const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// True for a `token` character (RFC 3261 §25.1).
#[inline]
pub(crate) fn is_token_char(c: u8) -> bool {
    TOKEN[c as usize]
}

/// True when `s` is a non-empty `token`.
#[inline]
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Linear white space inside a (possibly folded) header value.
#[inline]
pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims linear white space (including folding CRLFs) from both ends.
#[inline]
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |i| i + 1);
    sub(s, start, end.max(start))
}

/// Slices `s[a..b]`, returning "" instead of panicking on a bad range.
/// Every caller computes boundaries at ASCII delimiters, so the fallback is
/// never taken for well-formed UTF-8; it exists so that no input can panic.
#[inline]
pub(crate) fn sub(s: &str, a: usize, b: usize) -> &str {
    s.get(a..b).unwrap_or_default()
}

/// A forward-only cursor over a header value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    #[inline]
    pub(crate) fn bump(&mut self) {
        if self.pos < self.s.len() {
            self.pos += 1;
        }
    }

    /// Consumes `c` if it is next.
    #[inline]
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips linear white space; returns whether any was skipped.
    #[inline]
    pub(crate) fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_lws(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.pos > start
    }

    /// Takes the longest run of bytes satisfying `pred`.
    #[inline]
    pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let bytes = self.s.as_bytes();
        while let Some(&c) = bytes.get(self.pos) {
            if pred(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        sub(self.s, start, self.pos)
    }

    /// Takes a non-empty token.
    #[inline]
    pub(crate) fn token(&mut self) -> Option<&'a str> {
        let t = self.take_while(is_token_char);
        if t.is_empty() { None } else { Some(t) }
    }

    /// Takes a quoted string, returning it with its quotes. The cursor must be
    /// on the opening quote. `None` when the string is unterminated.
    pub(crate) fn quoted(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let end = quoted_end(self.s.as_bytes(), start)?;
        self.pos = end;
        Some(sub(self.s, start, end))
    }

    /// Everything not consumed yet.
    #[inline]
    pub(crate) fn rest(&self) -> &'a str {
        sub(self.s, self.pos, self.s.len())
    }

    /// Text between two positions of this cursor's string.
    #[inline]
    pub(crate) fn slice(&self, a: usize, b: usize) -> &'a str {
        sub(self.s, a, b)
    }
}

/// Given `bytes[start] == b'"'`, returns the index just past the closing
/// quote, honouring `\` quoted-pairs. `None` when unterminated.
pub(crate) fn quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Removes the quotes and quoted-pair escapes of a `quoted-string`; returns
/// other text unchanged. Borrows when there is nothing to unescape.
pub fn unquote(s: &str) -> Cow<'_, str> {
    let inner = match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if s.len() >= 2 => inner,
        _ => return Cow::Borrowed(s),
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Decodes `%HH` escapes (RFC 3986 §2.1). Invalid escapes are kept
/// literally. Borrows when there is nothing to decode. Decoded bytes that do
/// not form UTF-8 are replaced with U+FFFD; use [`percent_decode_bytes`] for
/// the exact octets (e.g. `%00`).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    match percent_decode_bytes(s) {
        Cow::Borrowed(_) => Cow::Borrowed(s),
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

/// Decodes `%HH` escapes into raw octets. Invalid escapes are kept literally.
pub fn percent_decode_bytes(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&x| hex_val(x)),
                b.get(i + 2).and_then(|&x| hex_val(x)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

#[inline]
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses `1*DIGIT` (surrounding LWS allowed) into a `u64`, rejecting
/// overflow. Leading zeros are allowed ("0068").
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    let s = trim_lws(s);
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for c in s.trim_start_matches('0').bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Splits a header value on commas that are outside quoted strings and
/// angle brackets. Yields trimmed, possibly empty, elements.
#[derive(Clone, Debug)]
pub(crate) struct CommaSplit<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        CommaSplit {
            s,
            pos: 0,
            done: false,
        }
    }
}

/// Index of the first top-level comma at or after `from`, or `s.len()`.
/// Commas inside quoted strings and angle brackets do not count.
pub(crate) fn next_top_comma(s: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(rest) = s.get(i..) {
        let Some(off) = memchr::memchr3(b',', b'"', b'<', rest) else {
            return s.len();
        };
        let at = i + off;
        match s.get(at) {
            Some(b',') => return at,
            Some(b'"') => match quoted_end(s, at) {
                Some(e) => i = e,
                None => return s.len(),
            },
            _ => match memchr::memchr(b'>', s.get(at..).unwrap_or_default()) {
                Some(e) => i = at + e + 1,
                None => return s.len(),
            },
        }
    }
    s.len()
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let end = next_top_comma(self.s.as_bytes(), self.pos);
        let item = trim_lws(sub(self.s, self.pos, end));
        if end >= self.s.len() {
            self.done = true;
        } else {
            self.pos = end + 1;
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("z9hG4bK-.!%*_+`'~"));
        assert!(!is_token(""));
        assert!(!is_token("a b"));
        assert!(!is_token("a,b"));
    }

    #[test]
    fn unquote_escapes() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote(r#""plain""#), "plain");
        assert_eq!(unquote("token"), "token");
        assert_eq!(unquote("\""), "\"");
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("%75se%72"), "user");
        assert_eq!(percent_decode("I%20have%20spaces"), "I have spaces");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decode_bytes("a%00b").as_ref(), b"a\0b");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits(" 0068 "), Some(68));
        assert_eq!(parse_digits("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_digits("18446744073709551616"), None);
        assert_eq!(parse_digits("00000000000000000000000000001"), Some(1));
        assert_eq!(parse_digits("-1"), None);
        assert_eq!(parse_digits(""), None);
        assert_eq!(parse_digits("1 2"), None);
    }

    #[test]
    fn comma_split() {
        let v: Vec<_> = CommaSplit::new(r#""Doe, J" <sip:a@b;x=","> ;q=1, <sip:c>,"#).collect();
        assert_eq!(v, vec![r#""Doe, J" <sip:a@b;x=","> ;q=1"#, "<sip:c>", ""]);
        let v: Vec<_> = CommaSplit::new("a").collect();
        assert_eq!(v, vec!["a"]);
        let v: Vec<_> = CommaSplit::new("\"unterminated, x").collect();
        assert_eq!(v, vec!["\"unterminated, x"]);
    }
}
