//! `;name[=value]` parameter lists of header values and URIs, validated once
//! and then iterated without allocation.

use crate::lex::{Cursor, is_lws, quoted_end, sub, trim_lws};

/// A validated parameter list, kept as the raw text (starting at the first
/// `;`, or empty). Names compare case-insensitively; values are raw
/// (quoted strings keep their quotes, URI escapes are not decoded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a str,
}

/// Characters allowed in an unquoted parameter value: anything printable
/// except separators. Liberal on purpose (hosts, IPv6 references, tokens).
#[inline]
fn is_value_char(c: u8) -> bool {
    VALUE[c as usize]
}

const fn value_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 256 {
        t[i] = !matches!(
            i as u8,
            b';' | b',' | b'"' | b'<' | b'>' | b'=' | b'?' | 0x7f
        );
        i += 1;
    }
    t
}

static VALUE: [bool; 256] = value_table();

impl<'a> Params<'a> {
    /// An empty list.
    pub const EMPTY: Params<'static> = Params { raw: "" };

    /// A list already validated (its `raw` text, kept by a cache).
    pub(crate) fn from_validated(raw: &'a str) -> Params<'a> {
        Params { raw }
    }

    /// Parses header parameters (`*( SEMI generic-param )`, white space
    /// allowed around `;` and `=`) from the cursor, stopping at the first
    /// character that cannot continue the list. Every `;` must be followed
    /// by a name.
    pub(crate) fn parse_header(c: &mut Cursor<'a>) -> Option<Params<'a>> {
        Self::parse_header_visit(c, |_, _| Some(()))
    }

    /// Like [`Params::parse_header`], calling `visit(name, value)` for each
    /// parameter during the same pass; `None` from `visit` fails the parse.
    pub(crate) fn parse_header_visit(
        c: &mut Cursor<'a>,
        mut visit: impl FnMut(&'a str, Option<&'a str>) -> Option<()>,
    ) -> Option<Params<'a>> {
        let mut save = *c;
        c.skip_lws();
        if c.peek() != Some(b';') {
            *c = save;
            return Some(Params::EMPTY);
        }
        let start = c.pos();
        let mut end = start;
        loop {
            c.skip_lws();
            if !c.eat(b';') {
                break;
            }
            c.skip_lws();
            let name = c.token()?;
            end = c.pos();
            save = *c;
            c.skip_lws();
            if c.eat(b'=') {
                c.skip_lws();
                let value = if c.peek() == Some(b'"') {
                    c.quoted()?
                } else {
                    let v = c.take_while(is_value_char);
                    if v.is_empty() {
                        return None;
                    }
                    v
                };
                visit(name, Some(value))?;
                end = c.pos();
                save = *c;
            } else {
                visit(name, None)?;
                *c = save;
            }
        }
        *c = save;
        Some(Params {
            raw: c.slice(start, end),
        })
    }

    /// Parses URI parameters from text that starts with `;` (or is empty):
    /// no white space, every name non-empty.
    pub(crate) fn parse_uri(raw: &'a str) -> Option<Params<'a>> {
        if raw.is_empty() {
            return Some(Params::EMPTY);
        }
        if !raw.starts_with(';') {
            return None;
        }
        for part in raw.split(';').skip(1) {
            let name = part.split('=').next().unwrap_or_default();
            if name.is_empty()
                || part
                    .bytes()
                    .any(|c| is_lws(c) || c < 0x20 || matches!(c, b'"' | b'<' | b'>' | b'?'))
            {
                return None;
            }
        }
        Some(Params { raw })
    }

    /// The raw text, starting with `;` unless empty.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Iterates `(name, value)` pairs; `value` is `None` for `;name`.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            raw: self.raw,
            pos: 0,
        }
    }

    /// The value of the first parameter called `name` (case-insensitive):
    /// `Some("")` for a parameter without a value.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.unwrap_or(""))
    }

    /// True when a parameter called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// The value of the last parameter called `name` (case-insensitively) in
/// `text`, a header parameter list and nothing else (LWS around it
/// allowed): what a full parse of the value the list ends would keep.
/// `None` when the list is malformed, has trailing text, or lacks the
/// parameter (or gives it no value).
pub(crate) fn last_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut c = Cursor::new(text);
    let mut found = None;
    Params::parse_header_visit(&mut c, |n, v| {
        if n.len() == name.len() && n.eq_ignore_ascii_case(name) {
            found = Some(v?);
        }
        Some(())
    })?;
    c.skip_lws();
    if c.at_end() { found } else { None }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over the parameters of a [`Params`].
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    raw: &'a str,
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.raw.as_bytes();
        // Skip to just past the next ';'.
        while let Some(&c) = bytes.get(self.pos) {
            self.pos += 1;
            if c == b';' {
                break;
            }
        }
        if self.pos >= bytes.len() {
            return None;
        }
        let start = self.pos;
        let mut i = start;
        while let Some(&c) = bytes.get(i) {
            match c {
                b'"' => i = quoted_end(bytes, i).unwrap_or(bytes.len()),
                b';' => break,
                _ => i += 1,
            }
        }
        self.pos = i;
        let item = sub(self.raw, start, i);
        let (name, value) = match item.find('=') {
            Some(eq) => (
                sub(item, 0, eq),
                Some(trim_lws(sub(item, eq + 1, item.len()))),
            ),
            None => (item, None),
        };
        let name = trim_lws(name);
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> Option<(Params<'_>, &str)> {
        let mut c = Cursor::new(s);
        Params::parse_header(&mut c).map(|p| (p, c.rest()))
    }

    #[test]
    fn header_params_with_whitespace() {
        let (p, rest) =
            header(" ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33").unwrap();
        assert_eq!(rest, "");
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            vec![
                ("newparam", Some("newvalue")),
                ("secondparam", None),
                ("q", Some("0.33"))
            ]
        );
        assert_eq!(p.get("Q"), Some("0.33"));
        assert_eq!(p.get("secondparam"), Some(""));
        assert!(p.contains("NEWPARAM"));
        assert_eq!(p.get("missing"), None);
    }

    #[test]
    fn quoted_values_and_stop() {
        let (p, rest) = header(r#";a="x;y\"z";received=[2001:db8::1];rport , next"#).unwrap();
        assert_eq!(rest, " , next");
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            vec![
                ("a", Some(r#""x;y\"z""#)),
                ("received", Some("[2001:db8::1]")),
                ("rport", None)
            ]
        );
    }

    #[test]
    fn invalid_header_params() {
        assert!(header(";;").is_none());
        assert!(header(";a=").is_none());
        assert!(header(";a=\"open").is_none());
        assert_eq!(header("").unwrap().0, Params::EMPTY);
        assert_eq!(header(" x").unwrap().1, " x");
    }

    #[test]
    fn uri_params() {
        let p = Params::parse_uri(";lr;transport=tcp;n%61me=v%61lue").unwrap();
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            vec![
                ("lr", None),
                ("transport", Some("tcp")),
                ("n%61me", Some("v%61lue"))
            ]
        );
        assert!(Params::parse_uri(";;").is_none());
        assert!(Params::parse_uri("; lr").is_none());
        assert!(Params::parse_uri("x").is_none());
    }
}
