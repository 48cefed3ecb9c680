//! `name-addr / addr-spec` values with header parameters: From, To, Contact,
//! Route, Record-Route, Path (RFC 3261 §20, §25.1).

use std::borrow::Cow;

use crate::error::ValueError;
use crate::header_name::HeaderName;
use crate::lex::{Cursor, is_lws, is_token_char, parse_digits, trim_lws, unquote};
use crate::params::Params;
use crate::uri::Uri;

/// An address: optional display name, URI and header parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written: quoted (with quotes) or tokens.
    pub display_name: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// True when the URI was enclosed in `<>`.
    pub angle_brackets: bool,
    /// Header parameters after the address (`;tag=...`).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one `(name-addr / addr-spec) *(;param)` value.
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, ValueError> {
        Self::parse_for(s, HeaderName::Other)
    }

    pub(crate) fn parse_for(s: &'a str, name: HeaderName) -> Result<NameAddr<'a>, ValueError> {
        let bad = ValueError::Malformed(name);
        let mut c = Cursor::new(s);
        c.skip_lws();
        let bytes = s.as_bytes();
        let first_special = bytes
            .iter()
            .enumerate()
            .skip(c.pos())
            .find(|(_, b)| matches!(b, b'<' | b';' | b'"'))
            .map(|(i, &b)| (i, b));
        let (display_name, uri_text, angle) = match first_special {
            Some((i, b'"')) if i == c.pos() => {
                let q = c.quoted().ok_or(bad)?;
                c.skip_lws();
                if !c.eat(b'<') {
                    return Err(bad);
                }
                let uri = Self::angle_uri(&mut c).ok_or(bad)?;
                (Some(q), uri, true)
            }
            Some((i, b'<')) => {
                let dn = trim_lws(c.slice(c.pos(), i));
                if !dn.bytes().all(|b| is_token_char(b) || is_lws(b)) {
                    return Err(bad);
                }
                while c.pos() <= i {
                    c.bump();
                }
                let uri = Self::angle_uri(&mut c).ok_or(bad)?;
                (if dn.is_empty() { None } else { Some(dn) }, uri, true)
            }
            _ => {
                // addr-spec: the URI ends at the first ';' or white space and
                // must not contain ',', '?' or ';' (RFC 3261 §20.10).
                let uri = c.take_while(|b| b != b';' && !is_lws(b));
                if uri.contains(['?', ',']) {
                    return Err(bad);
                }
                (None, uri, false)
            }
        };
        let uri = Uri::parse(uri_text).map_err(|_| bad)?;
        let params = Params::parse_header(&mut c).ok_or(bad)?;
        c.skip_lws();
        if !c.at_end() {
            return Err(bad);
        }
        Ok(NameAddr {
            display_name,
            uri,
            angle_brackets: angle,
            params,
        })
    }

    /// After `<`: the URI up to `>`, which must contain no white space.
    fn angle_uri(c: &mut Cursor<'a>) -> Option<&'a str> {
        let uri = c.take_while(|b| b != b'>');
        if !c.eat(b'>') || uri.bytes().any(is_lws) {
            return None;
        }
        Some(uri)
    }

    /// The display name with quotes and escapes removed.
    pub fn display_name_decoded(&self) -> Option<Cow<'a, str>> {
        self.display_name.map(unquote)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").filter(|t| !t.is_empty())
    }

    /// The `expires` parameter (Contact).
    pub fn expires(&self) -> Option<Result<u32, ValueError>> {
        self.params.get("expires").map(|v| {
            parse_digits(v)
                .ok_or(ValueError::Malformed(HeaderName::Contact))
                .and_then(|n| {
                    u32::try_from(n).map_err(|_| ValueError::OutOfRange(HeaderName::Contact))
                })
        })
    }

    /// The `q` parameter (Contact) in thousandths: `q=0.33` is 330.
    pub fn q(&self) -> Option<Result<u16, ValueError>> {
        self.params
            .get("q")
            .map(|v| parse_qvalue(v).ok_or(ValueError::Malformed(HeaderName::Contact)))
    }
}

/// The header parameters of a name-addr/addr-spec value, found without
/// parsing the URI (for the hot path: tags). `None` when the structure is
/// broken (unterminated quote or angle bracket, junk after the params).
pub(crate) fn header_params(s: &str) -> Option<Params<'_>> {
    let b = s.as_bytes();
    let mut i = b.iter().position(|&c| !is_lws(c))?;
    if b.get(i) == Some(&b'"') {
        i = crate::lex::quoted_end(b, i)?;
    }
    let special = b
        .iter()
        .skip(i)
        .position(|&c| matches!(c, b'<' | b';' | b'"'))
        .map(|p| p + i);
    let addr_end = match special.and_then(|p| b.get(p).map(|&c| (p, c))) {
        Some((p, b'<')) => p + memchr::memchr(b'>', b.get(p..)?)? + 1,
        Some((_, b'"')) => return None,
        _ => {
            i + b
                .iter()
                .skip(i)
                .position(|&c| c == b';' || is_lws(c))
                .unwrap_or(b.len() - i)
        }
    };
    let mut c = Cursor::new(s);
    while c.pos() < addr_end {
        c.bump();
    }
    let params = Params::parse_header(&mut c)?;
    c.skip_lws();
    c.at_end().then_some(params)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in
/// thousandths.
pub(crate) fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, c) in frac.bytes().enumerate() {
        thousandths += u16::from(c - b'0') * [100, 10, 1].get(i).copied().unwrap_or(0);
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// One Contact value: `*` or an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER removal of all bindings).
    Wildcard,
    /// An address with parameters.
    Address(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact value.
    pub fn parse(s: &'a str) -> Result<Contact<'a>, ValueError> {
        if trim_lws(s) == "*" {
            return Ok(Contact::Wildcard);
        }
        NameAddr::parse_for(s, HeaderName::Contact).map(Contact::Address)
    }

    /// The address, unless this is the wildcard.
    pub fn address(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Wildcard => None,
            Contact::Address(a) => Some(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a =
            NameAddr::parse("\"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423").unwrap();
        assert_eq!(a.display_name, Some("\"Bell, Alexander\""));
        assert_eq!(a.display_name_decoded().unwrap(), "Bell, Alexander");
        assert_eq!(a.uri.as_str(), "sip:a.g.bell@example.com");
        assert_eq!(a.tag(), Some("433423"));
        let a = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display_name, Some("caller"));
        let a = NameAddr::parse("sip:+1@gw.example.net;unknownparam").unwrap();
        assert!(!a.angle_brackets);
        assert!(a.params.contains("unknownparam"));
        let a = NameAddr::parse("<sip:+1@gw.example.net;unknownparam>").unwrap();
        assert!(a.params.is_empty());
        assert!(a.uri.as_sip().unwrap().params.contains("unknownparam"));
        let a = NameAddr::parse(" sip:v@c.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(a.tag(), Some("1918181833n"));
        let a = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(a.display_name_decoded().unwrap(), "J Rosenberg \\\"");
        assert_eq!(a.tag(), Some("98asjd8"));
        let a = NameAddr::parse("A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe").unwrap();
        assert_eq!(a.display_name, Some("A. Bell"));
    }

    #[test]
    fn contact_params() {
        let Contact::Address(a) = Contact::parse("\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n newvalue ;\r\n secondparam ; q = 0.33").unwrap() else { panic!() };
        assert_eq!(a.q(), Some(Ok(330)));
        assert_eq!(a.params.get("newparam"), Some("newvalue"));
        assert_eq!(Contact::parse(" * ").unwrap(), Contact::Wildcard);
        let Contact::Address(a) = Contact::parse("<sip:u@h>;expires=280297596632815").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            a.expires(),
            Some(Err(ValueError::OutOfRange(HeaderName::Contact)))
        );
        let Contact::Address(a) = Contact::parse("<sip:u@h>;expires=3600;q=1").unwrap() else {
            panic!()
        };
        assert_eq!(a.expires(), Some(Ok(3600)));
        assert_eq!(a.q(), Some(Ok(1000)));
    }

    #[test]
    fn header_params_fast_path() {
        for (v, tag) in [
            ("\"A; <b>\" <sip:a@b;x=y>;tag=1", Some("1")),
            ("sip:a@b;tag=2", Some("2")),
            (" sip:v@c ;   tag    = 3n", Some("3n")),
            ("<sip:a@b;tag=inside>", None),
            ("Bob <sip:b@c>", None),
        ] {
            let p = header_params(v).unwrap();
            assert_eq!(p.get("tag"), tag, "{v}");
            assert_eq!(NameAddr::parse(v).unwrap().tag(), tag, "{v}");
        }
        for bad in [
            "\"open <sip:a@b>",
            "<sip:a@b",
            "<sip:a@b> junk",
            "x \"y\" <sip:a>",
        ] {
            assert!(header_params(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:a@b",
            "<sip:a@b> trailing",
            "",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_qvalue("1.5").is_none());
        assert!(parse_qvalue("0.1234").is_none());
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0.5"), Some(500));
    }
}
