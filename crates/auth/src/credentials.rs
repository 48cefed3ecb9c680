//! The parameters of an `Authorization` / `Proxy-Authorization` digest
//! credential, as the caller's SIP parser found them.

use std::borrow::Cow;

use crate::error::ParseError;
use crate::params::{parse_digest, take};

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
        let mut params = parse_digest(value)?;
        let mut required =
            |name: &'static str| take(&mut params, name).ok_or(ParseError::Missing(name));
        let username = required("username")?;
        let realm = required("realm")?;
        let nonce = required("nonce")?;
        let uri = required("uri")?;
        let response = required("response")?;
        Ok(DigestCredentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm: take(&mut params, "algorithm"),
            cnonce: take(&mut params, "cnonce"),
            nc: take(&mut params, "nc"),
            qop: take(&mut params, "qop"),
            opaque: take(&mut params, "opaque"),
        })
    }
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
    fn missing_required_parameter() {
        let v = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\"";
        assert_eq!(
            DigestCredentials::parse(v),
            Err(ParseError::Missing("response"))
        );
    }
}
