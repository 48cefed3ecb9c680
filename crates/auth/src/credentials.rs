//! The parameters of an `Authorization` / `Proxy-Authorization` digest
//! credential, as the caller's SIP parser found them.

use std::borrow::Cow;

use crate::error::ParseError;
use crate::params::{duplicate, visit_digest};

/// Digest credentials from a request. The registrar/proxy fills this from
/// its own header parser, or calls [`DigestCredentials::parse`] on the raw
/// header value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    /// `username` (case-sensitive).
    pub username: Cow<'a, str>,
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`, as issued in the challenge.
    pub nonce: Cow<'a, str>,
    /// `uri` (digest-uri); HA2 is computed over it. The caller should check
    /// that it matches the Request-URI.
    pub uri: Cow<'a, str>,
    /// `response`, the request-digest in hex.
    pub response: Cow<'a, str>,
    /// `algorithm`; absent means MD5.
    pub algorithm: Option<Cow<'a, str>>,
    /// `cnonce`.
    pub cnonce: Option<Cow<'a, str>>,
    /// `nc` (nonce-count, 8 hex digits).
    pub nc: Option<Cow<'a, str>>,
    /// `qop` (`auth` is the only one accepted).
    pub qop: Option<Cow<'a, str>>,
    /// `opaque` (ignored: challenges carry none).
    pub opaque: Option<Cow<'a, str>>,
}

impl<'a> DigestCredentials<'a> {
    /// Parses a header value such as
    /// `Digest username="alice", realm="localhost", nonce="..", uri="sip:localhost", response=".."`.
    /// Missing `username`, `realm`, `nonce`, `uri` or `response` is an
    /// error; unknown parameters are ignored.
    pub fn parse(value: &'a str) -> Result<DigestCredentials<'a>, ParseError> {
        // One pass straight into the fields: no list of pairs searched for
        // each name.
        let mut c = Fields::default();
        let mut others: Vec<&'a str> = Vec::new();
        visit_digest(value, |name, value| {
            let slot = match name.len() {
                2 if name.eq_ignore_ascii_case("nc") => &mut c.nc,
                3 if name.eq_ignore_ascii_case("uri") => &mut c.uri,
                3 if name.eq_ignore_ascii_case("qop") => &mut c.qop,
                5 if name.eq_ignore_ascii_case("realm") => &mut c.realm,
                5 if name.eq_ignore_ascii_case("nonce") => &mut c.nonce,
                6 if name.eq_ignore_ascii_case("cnonce") => &mut c.cnonce,
                6 if name.eq_ignore_ascii_case("opaque") => &mut c.opaque,
                8 if name.eq_ignore_ascii_case("username") => &mut c.username,
                8 if name.eq_ignore_ascii_case("response") => &mut c.response,
                9 if name.eq_ignore_ascii_case("algorithm") => &mut c.algorithm,
                _ => {
                    // Unknown parameters are ignored, but not twice.
                    if others.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                        return Err(duplicate(name));
                    }
                    others.push(name);
                    return Ok(());
                }
            };
            if slot.is_some() {
                return Err(duplicate(name));
            }
            *slot = Some(value);
            Ok(())
        })?;
        let required = |v: Option<Cow<'a, str>>, name| v.ok_or(ParseError::Missing(name));
        Ok(DigestCredentials {
            username: required(c.username, "username")?,
            realm: required(c.realm, "realm")?,
            nonce: required(c.nonce, "nonce")?,
            uri: required(c.uri, "uri")?,
            response: required(c.response, "response")?,
            algorithm: c.algorithm,
            cnonce: c.cnonce,
            nc: c.nc,
            qop: c.qop,
            opaque: c.opaque,
        })
    }
}

/// The parameters [`DigestCredentials::parse`] knows, as found.
#[derive(Default)]
struct Fields<'a> {
    username: Option<Cow<'a, str>>,
    realm: Option<Cow<'a, str>>,
    nonce: Option<Cow<'a, str>>,
    uri: Option<Cow<'a, str>>,
    response: Option<Cow<'a, str>>,
    algorithm: Option<Cow<'a, str>>,
    cnonce: Option<Cow<'a, str>>,
    nc: Option<Cow<'a, str>>,
    qop: Option<Cow<'a, str>>,
    opaque: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sipp_style_header() {
        let v = "Digest username=\"user1\",realm=\"localhost\",cnonce=\"6b8b4567\",nc=00000001,\
                 qop=auth,uri=\"sip:127.0.0.1:5060\",nonce=\"abcd\",response=\"0ff\",algorithm=MD5";
        let c = DigestCredentials::parse(v).unwrap();
        assert_eq!(c.username, "user1");
        assert_eq!(c.uri, "sip:127.0.0.1:5060");
        assert_eq!(c.algorithm.as_deref(), Some("MD5"));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.opaque, None);
    }

    #[test]
    fn a_parameter_given_twice_is_refused_and_unknown_ones_are_ignored() {
        let base = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"";
        for (extra, dup) in [
            (", USERNAME=b", "username"),
            (", nc=1, NC=2", "nc"),
            (", x-a=1, X-A=2", "x-a"),
        ] {
            assert_eq!(
                DigestCredentials::parse(&format!("{base}{extra}")),
                Err(ParseError::Duplicate(dup.into()))
            );
        }
        let text = format!("{base}, x-a=1, x-b=\"q\\\"r\"");
        let c = DigestCredentials::parse(&text).unwrap();
        assert_eq!((c.username.as_ref(), c.response.as_ref()), ("a", "x"));
        // A quoted value with escapes is unescaped; one left open is refused.
        let c = DigestCredentials::parse(
            "Digest username=\"a\\\\b\\\"c\", realm=r, nonce=n, uri=u, response=x",
        )
        .unwrap();
        assert_eq!(c.username, "a\\b\"c");
        assert!(matches!(
            DigestCredentials::parse("Digest username=\"a, realm=r"),
            Err(ParseError::UnterminatedQuote(_))
        ));
    }

    #[test]
    fn missing_required_parameter() {
        let v = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\"";
        assert_eq!(
            DigestCredentials::parse(v),
            Err(ParseError::Missing("response"))
        );
    }
}
