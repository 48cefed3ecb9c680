//! URIs: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966) and any other
//! scheme kept as an opaque absolute URI. Parsing borrows from the input;
//! `%` escapes are decoded only on request.

use std::borrow::Cow;

use crate::error::ValueError;
use crate::host::{Host, host_len};
use crate::lex::{percent_decode, sub};
use crate::params::Params;

/// A URI of any scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Any other scheme, kept opaque.
    Other(AbsoluteUri<'a>),
}

/// A `sip:` or `sips:` URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// The whole URI as received.
    pub raw: &'a str,
    /// True for `sips:`.
    pub secure: bool,
    /// The user part, still escaped (may contain `;` as in RFC 4475 semiuri).
    pub user: Option<&'a str>,
    /// The password, still escaped.
    pub password: Option<&'a str>,
    /// The host.
    pub host: Host<'a>,
    /// The host as written (IPv6 with brackets).
    pub host_str: &'a str,
    /// The port, if given.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`), still escaped.
    pub params: Params<'a>,
    /// URI headers after `?`, still escaped, without the `?`.
    pub headers: Option<&'a str>,
}

/// A `tel:` URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The whole URI as received.
    pub raw: &'a str,
    /// The telephone number (global `+...` or local).
    pub number: &'a str,
    /// Parameters such as `phone-context`.
    pub params: Params<'a>,
}

/// A URI of a scheme this crate does not interpret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbsoluteUri<'a> {
    /// The whole URI as received.
    pub raw: &'a str,
    /// The scheme, without the colon.
    pub scheme: &'a str,
    /// Everything after the colon.
    pub rest: &'a str,
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Characters never allowed unescaped anywhere in a URI here.
#[inline]
fn is_forbidden(c: u8) -> bool {
    c <= b' ' || c == 0x7f || matches!(c, b'<' | b'>' | b'"')
}

impl<'a> Uri<'a> {
    /// Parses a URI. White space, `<`, `>` and `"` are not allowed.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ValueError> {
        let colon = memchr::memchr(b':', s.as_bytes()).ok_or(ValueError::Uri)?;
        let scheme = sub(s, 0, colon);
        let rest = sub(s, colon + 1, s.len());
        if !is_scheme(scheme) || rest.is_empty() || rest.bytes().any(is_forbidden) {
            return Err(ValueError::Uri);
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(s, false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(s, true, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            let semi = memchr::memchr(b';', rest.as_bytes()).unwrap_or(rest.len());
            let number = sub(rest, 0, semi);
            if number.is_empty() {
                return Err(ValueError::Uri);
            }
            let params = Params::parse_uri(sub(rest, semi, rest.len())).ok_or(ValueError::Uri)?;
            Ok(Uri::Tel(TelUri {
                raw: s,
                number,
                params,
            }))
        } else {
            Ok(Uri::Other(AbsoluteUri {
                raw: s,
                scheme,
                rest,
            }))
        }
    }

    /// The scheme as written (`sip`, `sips`, `tel`, ...).
    pub fn scheme(&self) -> &'a str {
        match self {
            Uri::Sip(u) => sub(u.raw, 0, if u.secure { 4 } else { 3 }),
            Uri::Tel(u) => sub(u.raw, 0, 3),
            Uri::Other(u) => u.scheme,
        }
    }

    /// The URI exactly as received.
    pub fn as_str(&self) -> &'a str {
        match self {
            Uri::Sip(u) => u.raw,
            Uri::Tel(u) => u.raw,
            Uri::Other(u) => u.raw,
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// True for `sip:` and `sips:`.
    pub fn is_sip(&self) -> bool {
        matches!(self, Uri::Sip(_))
    }
}

impl std::fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'a> SipUri<'a> {
    /// Parses a `sip:`/`sips:` URI.
    pub fn parse(s: &'a str) -> Result<SipUri<'a>, ValueError> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(ValueError::Uri),
        }
    }

    fn parse_rest(raw: &'a str, secure: bool, rest: &'a str) -> Result<SipUri<'a>, ValueError> {
        // '@' cannot appear unescaped in the user, password, parameters or
        // headers, so the first one ends the userinfo; the user part may
        // contain ';', '?' and ',' (RFC 4475 intmeth, semiuri).
        let (user, password, hostpart) = match memchr::memchr(b'@', rest.as_bytes()) {
            Some(at) => {
                let userinfo = sub(rest, 0, at);
                let (u, p) = match memchr::memchr(b':', userinfo.as_bytes()) {
                    Some(c) => (
                        sub(userinfo, 0, c),
                        Some(sub(userinfo, c + 1, userinfo.len())),
                    ),
                    None => (userinfo, None),
                };
                if u.is_empty() {
                    return Err(ValueError::Uri);
                }
                (Some(u), p, sub(rest, at + 1, rest.len()))
            }
            None => (None, None, rest),
        };
        let hl = host_len(hostpart);
        let host_str = sub(hostpart, 0, hl);
        let host = Host::parse(host_str).ok_or(ValueError::Uri)?;
        let mut after = sub(hostpart, hl, hostpart.len());
        let mut port = None;
        if let Some(p) = after.strip_prefix(':') {
            let digits = p.bytes().take_while(u8::is_ascii_digit).count();
            let text = sub(p, 0, digits);
            port = Some(text.parse::<u16>().map_err(|_| ValueError::Uri)?);
            after = sub(p, digits, p.len());
        }
        let (param_text, headers) = match memchr::memchr(b'?', after.as_bytes()) {
            Some(q) => (sub(after, 0, q), Some(sub(after, q + 1, after.len()))),
            None => (after, None),
        };
        let params = Params::parse_uri(param_text).ok_or(ValueError::Uri)?;
        Ok(SipUri {
            raw,
            secure,
            user,
            password,
            host,
            host_str,
            port,
            params,
            headers,
        })
    }

    /// The user part with `%` escapes decoded.
    pub fn user_decoded(&self) -> Option<Cow<'a, str>> {
        self.user.map(percent_decode)
    }

    /// The value of URI parameter `name` (case-insensitive), still escaped;
    /// `Some("")` for a parameter without value.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.get(name)
    }

    /// `transport=` parameter.
    pub fn transport(&self) -> Option<&'a str> {
        self.param("transport")
    }

    /// True when the `lr` parameter is present (loose router).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// `maddr=` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.param("maddr")
    }

    /// `user=` parameter (`phone`, `ip`, ...).
    pub fn user_param(&self) -> Option<&'a str> {
        self.param("user")
    }

    /// URI parameters with names and values `%`-decoded.
    pub fn params_decoded(
        &self,
    ) -> impl Iterator<Item = (Cow<'a, str>, Option<Cow<'a, str>>)> + 'a {
        self.params
            .iter()
            .map(|(n, v)| (percent_decode(n), v.map(percent_decode)))
    }

    /// URI headers (`?name=value&...`) with names and values `%`-decoded.
    pub fn headers_decoded(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + 'a {
        self.headers
            .into_iter()
            .flat_map(|h| h.split('&'))
            .filter(|h| !h.is_empty())
            .map(|h| {
                let (n, v) = h.split_once('=').unwrap_or((h, ""));
                (percent_decode(n), percent_decode(v))
            })
    }

    /// The port, or the default for the scheme (5060, or 5061 for sips).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 5061 } else { 5060 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn sip(s: &str) -> SipUri<'_> {
        SipUri::parse(s).unwrap()
    }

    #[test]
    fn full_sip_uri() {
        let u = sip(
            "sips:alice:secret@[2001:db8::1]:5071;transport=tcp;lr;maddr=239.1.1.1;user=phone?Subject=hi&Priority=urgent",
        );
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(
            u.host,
            Host::Ipv6("2001:db8::1".parse::<Ipv6Addr>().unwrap())
        );
        assert_eq!(u.host_str, "[2001:db8::1]");
        assert_eq!(u.port, Some(5071));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.maddr(), Some("239.1.1.1"));
        assert_eq!(u.user_param(), Some("phone"));
        let h: Vec<_> = u.headers_decoded().collect();
        assert_eq!(
            h,
            vec![
                ("Subject".into(), "hi".into()),
                ("Priority".into(), "urgent".into())
            ]
        );
        assert_eq!(Uri::Sip(u).scheme(), "sips");
    }

    #[test]
    fn host_only_and_defaults() {
        let u = sip("sip:example.com");
        assert_eq!(u.user, None);
        assert_eq!(u.host, Host::Domain("example.com"));
        assert_eq!(u.port_or_default(), 5060);
        assert!(!u.lr());
    }

    #[test]
    fn escapes_decoded_on_request() {
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user, Some("sips%3Auser%40example.com"));
        assert_eq!(u.user_decoded().unwrap(), "sips:user@example.com");
        let u = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        let p: Vec<_> = u.params_decoded().collect();
        assert_eq!(p[0], ("lr".into(), None));
        assert_eq!(p[1], ("name".into(), Some("value%41".into())));
        let u = sip("sip:user@example.com?Route=%3Csip:sip.example.com%3E");
        let h: Vec<_> = u.headers_decoded().collect();
        assert_eq!(h, vec![("Route".into(), "<sip:sip.example.com>".into())]);
    }

    #[test]
    fn unusual_userinfo() {
        let u = sip(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(
            u.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password,
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.host, Host::Domain("example.com"));
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert!(u.params.is_empty());
    }

    #[test]
    fn other_schemes() {
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        let Uri::Tel(t) = t else { panic!() };
        assert_eq!(t.number, "+1-201-555-0123");
        assert_eq!(t.params.get("phone-context"), Some("example.com"));
        let o = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(o.scheme(), "soap.beep");
        assert!(!o.is_sip());
        assert_eq!(Uri::parse("isbn:2983792873").unwrap().scheme(), "isbn");
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "sip:",
            "nocolon",
            "sip:user@example.com; lr",
            "<sip:a@b>",
            "sip:@host",
            "sip:host:99999",
            "sip:host:",
            "sip:ho st",
            "1sip:x",
            "sip:[::1",
            "sip:a@b;;",
            "sip:a\"b@c",
            "tel:",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }
}
