//! Authentication headers (RFC 3261 §20.7, §20.27, §20.28, §20.44, RFC 7616):
//! a scheme and comma-separated `name=value` parameters.

use std::borrow::Cow;

use crate::error::ValueError;
use crate::header_name::HeaderName;
use crate::lex::{Cursor, is_lws, is_token_char, sub, trim_lws, unquote};

/// `scheme auth-param *(, auth-param)`: the common shape of challenges and
/// credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthValue<'a> {
    /// The scheme, e.g. `Digest`.
    pub scheme: &'a str,
    /// The parameters, raw.
    pub params: AuthParams<'a>,
}

/// A challenge (`WWW-Authenticate`, `Proxy-Authenticate`).
pub type Challenge<'a> = AuthValue<'a>;
/// Credentials (`Authorization`, `Proxy-Authorization`).
pub type Credentials<'a> = AuthValue<'a>;

/// Validated comma-separated auth parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthParams<'a> {
    raw: &'a str,
}

impl<'a> AuthValue<'a> {
    /// Parses one authentication header value.
    pub fn parse(s: &'a str) -> Result<AuthValue<'a>, ValueError> {
        Self::parse_for(s, HeaderName::Authorization)
    }

    pub(crate) fn parse_for(s: &'a str, name: HeaderName) -> Result<AuthValue<'a>, ValueError> {
        let bad = ValueError::Malformed(name);
        let mut c = Cursor::new(s);
        c.skip_lws();
        let scheme = c.token().ok_or(bad)?;
        let had_ws = c.skip_lws();
        let start = c.pos();
        if !c.at_end() && !had_ws {
            return Err(bad);
        }
        // auth-param *(COMMA auth-param); also tolerate a token68 blob.
        while !c.at_end() {
            c.token().ok_or(bad)?;
            c.skip_lws();
            if !c.eat(b'=') {
                return Err(bad);
            }
            c.skip_lws();
            if c.peek() == Some(b'"') {
                c.quoted().ok_or(bad)?;
            } else {
                let v = c.take_while(|b| b != b',' && !is_lws(b) && b != b'"');
                if v.is_empty() && c.peek() != Some(b'=') {
                    return Err(bad);
                }
                // token68 padding ("abc==").
                c.take_while(|b| b == b'=');
            }
            c.skip_lws();
            if c.at_end() {
                break;
            }
            if !c.eat(b',') {
                return Err(bad);
            }
            c.skip_lws();
        }
        Ok(AuthValue {
            scheme,
            params: AuthParams {
                raw: c.slice(start, c.pos()),
            },
        })
    }

    /// True for the Digest scheme.
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("digest")
    }

    /// A parameter's value, unquoted (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.params.get(name)
    }

    /// `username`
    pub fn username(&self) -> Option<Cow<'a, str>> {
        self.param("username")
    }
    /// `realm`
    pub fn realm(&self) -> Option<Cow<'a, str>> {
        self.param("realm")
    }
    /// `nonce`
    pub fn nonce(&self) -> Option<Cow<'a, str>> {
        self.param("nonce")
    }
    /// `uri` (digest-uri)
    pub fn uri(&self) -> Option<Cow<'a, str>> {
        self.param("uri")
    }
    /// `response`
    pub fn response(&self) -> Option<Cow<'a, str>> {
        self.param("response")
    }
    /// `algorithm`
    pub fn algorithm(&self) -> Option<Cow<'a, str>> {
        self.param("algorithm")
    }
    /// `cnonce`
    pub fn cnonce(&self) -> Option<Cow<'a, str>> {
        self.param("cnonce")
    }
    /// `nc` (nonce count, 8 hex digits)
    pub fn nc(&self) -> Option<Cow<'a, str>> {
        self.param("nc")
    }
    /// `qop`
    pub fn qop(&self) -> Option<Cow<'a, str>> {
        self.param("qop")
    }
    /// `opaque`
    pub fn opaque(&self) -> Option<Cow<'a, str>> {
        self.param("opaque")
    }
    /// `stale` (challenges): true when `stale=true`.
    pub fn stale(&self) -> bool {
        self.param("stale")
            .is_some_and(|s| s.eq_ignore_ascii_case("true"))
    }
    /// `domain` (challenges)
    pub fn domain(&self) -> Option<Cow<'a, str>> {
        self.param("domain")
    }
}

impl<'a> AuthParams<'a> {
    /// Iterates `(name, raw value)`; quoted values keep their quotes.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        crate::lex::CommaSplit::new(self.raw)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let name_len = p.bytes().take_while(|&b| is_token_char(b)).count();
                let name = sub(p, 0, name_len);
                let rest = trim_lws(sub(p, name_len, p.len()));
                (name, trim_lws(rest.strip_prefix('=').unwrap_or(rest)))
            })
    }

    /// A parameter's value with quotes and escapes removed.
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| unquote(v))
    }

    /// The raw parameter text.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let a = AuthValue::parse(
            "Digest username=\"bob\", realm=\"biloxi.com\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm=MD5",
        )
        .unwrap();
        assert!(a.is_digest());
        assert_eq!(a.username().unwrap(), "bob");
        assert_eq!(a.realm().unwrap(), "biloxi.com");
        assert_eq!(a.nonce().unwrap(), "dcd98b7102dd2f0e8b11d0f600bfb0c093");
        assert_eq!(a.uri().unwrap(), "sip:bob@biloxi.com");
        assert_eq!(a.qop().unwrap(), "auth");
        assert_eq!(a.nc().unwrap(), "00000001");
        assert_eq!(a.cnonce().unwrap(), "0a4f113b");
        assert_eq!(a.response().unwrap(), "6629fae49393a05397450978507c4ef1");
        assert_eq!(a.opaque().unwrap(), "5ccc069c403ebaf9f0171e9517f40e41");
        assert_eq!(a.algorithm().unwrap(), "MD5");
        assert_eq!(a.param("missing"), None);
    }

    #[test]
    fn challenge_and_unknown_scheme() {
        let c = AuthValue::parse("Digest realm=\"atlanta.com\", domain=\"sip:ss1.carrier.com\", qop=\"auth,auth-int\", nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=TRUE, algorithm=MD5").unwrap();
        assert_eq!(c.qop().unwrap(), "auth,auth-int");
        assert!(c.stale());
        assert_eq!(c.opaque().unwrap(), "");
        let u = AuthValue::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(u.scheme, "NoOneKnowsThisScheme");
        assert_eq!(u.param("opaque-data").unwrap(), "here");
        assert_eq!(AuthValue::parse("Basic").unwrap().params.iter().count(), 0);
        assert!(AuthValue::parse("Digest realm=\"open").is_err());
        assert!(AuthValue::parse("Digest realm=a realm=b").is_err());
        assert!(AuthValue::parse("").is_err());
    }
}
