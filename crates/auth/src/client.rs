//! The client side: answer a challenge with an `Authorization` value.
//! Used by tests, the load generator and the SHA-256 test client.

use std::fmt::Write as _;

use crate::digest::{Algorithm, Ha1, QopAuth, request_digest};
use crate::error::ParseError;
use crate::params::{parse_digest, push_quoted, take};

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth`; `false` means no qop (RFC 2069 style).
    pub qop_auth: bool,
    /// `opaque`, echoed back when present.
    pub opaque: Option<String>,
    /// `stale=true`.
    pub stale: bool,
}

/// The request being authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientRequest<'a> {
    /// The SIP method.
    pub method: &'a str,
    /// The digest-uri, normally the Request-URI.
    pub uri: &'a str,
    /// The nonce-count: 1 for the first use of a nonce, then 2, 3...
    pub nc: u32,
    /// The client nonce.
    pub cnonce: &'a str,
}

impl DigestChallenge {
    /// Parses one challenge header value.
    pub fn parse(value: &str) -> Result<DigestChallenge, ParseError> {
        let mut params = parse_digest(value)?;
        let realm = take(&mut params, "realm").ok_or(ParseError::Missing("realm"))?;
        let nonce = take(&mut params, "nonce").ok_or(ParseError::Missing("nonce"))?;
        let algorithm = match take(&mut params, "algorithm") {
            None => Algorithm::Md5,
            Some(token) => Algorithm::from_token(&token)
                .ok_or_else(|| ParseError::UnsupportedAlgorithm(token.into_owned()))?,
        };
        let qop_auth = match take(&mut params, "qop") {
            None => false,
            Some(list)
                if list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth")) =>
            {
                true
            }
            Some(list) => return Err(ParseError::UnsupportedQop(list.into_owned())),
        };
        let stale = take(&mut params, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(DigestChallenge {
            realm: realm.into_owned(),
            nonce: nonce.into_owned(),
            algorithm,
            qop_auth,
            opaque: take(&mut params, "opaque").map(|o| o.into_owned()),
            stale,
        })
    }

    /// Parses several challenge values, skipping those this crate cannot
    /// answer, and picks the first whose algorithm comes earliest in
    /// `preference`.
    pub fn pick<'v>(
        values: impl IntoIterator<Item = &'v str>,
        preference: &[Algorithm],
    ) -> Option<DigestChallenge> {
        let parsed: Vec<DigestChallenge> = values
            .into_iter()
            .filter_map(|v| DigestChallenge::parse(v).ok())
            .collect();
        preference
            .iter()
            .find_map(|a| parsed.iter().find(|c| c.algorithm == *a))
            .cloned()
    }

    /// The `Authorization` value for `username`/`password`.
    pub fn authorize(&self, username: &str, password: &str, request: &ClientRequest<'_>) -> String {
        let ha1 = Ha1::compute(self.algorithm, username, &self.realm, password);
        self.authorize_with_ha1(username, &ha1, request)
    }

    /// The `Authorization` value from a precomputed HA1 (must be for this
    /// challenge's algorithm and realm).
    pub fn authorize_with_ha1(
        &self,
        username: &str,
        ha1: &Ha1,
        request: &ClientRequest<'_>,
    ) -> String {
        let nc = format!("{:08x}", request.nc);
        let qop = self.qop_auth.then_some(QopAuth {
            nc: &nc,
            cnonce: request.cnonce,
        });
        let response = request_digest(ha1, &self.nonce, qop, request.method, request.uri);
        let mut out = String::with_capacity(256);
        out.push_str("Digest username=");
        push_quoted(&mut out, username);
        out.push_str(", realm=");
        push_quoted(&mut out, &self.realm);
        out.push_str(", nonce=");
        push_quoted(&mut out, &self.nonce);
        out.push_str(", uri=");
        push_quoted(&mut out, request.uri);
        let _ = write!(
            out,
            ", response=\"{response}\", algorithm={}",
            self.algorithm
        );
        if self.qop_auth {
            out.push_str(", cnonce=");
            push_quoted(&mut out, request.cnonce);
            let _ = write!(out, ", qop=auth, nc={nc}");
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(", opaque=");
            push_quoted(&mut out, opaque);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::DigestCredentials;

    #[test]
    fn parses_challenges() {
        let c = DigestChallenge::parse(
            r#"Digest realm="localhost", nonce="abc", algorithm=SHA-256, qop="auth", stale=true"#,
        )
        .unwrap();
        assert_eq!(c.realm, "localhost");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop_auth && c.stale);
        let c = DigestChallenge::parse(
            r#"Digest realm="r", nonce="n", qop="auth-int, auth", opaque="o""#,
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(c.qop_auth && !c.stale);
        assert_eq!(c.opaque.as_deref(), Some("o"));
        assert_eq!(
            DigestChallenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#),
            Err(ParseError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            DigestChallenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#),
            Err(ParseError::UnsupportedAlgorithm("SHA-512-256".into()))
        );
        assert_eq!(
            DigestChallenge::parse(r#"Digest nonce="n""#),
            Err(ParseError::Missing("realm"))
        );
    }

    #[test]
    fn picks_by_preference() {
        let values = [
            r#"Digest realm="r", nonce="n", algorithm=SHA-512-256, qop="auth""#,
            r#"Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth""#,
            r#"Digest realm="r", nonce="n", algorithm=MD5, qop="auth""#,
        ];
        let md5 = DigestChallenge::pick(values, &[Algorithm::Md5]).unwrap();
        assert_eq!(md5.algorithm, Algorithm::Md5);
        let best = DigestChallenge::pick(values, &Algorithm::ALL).unwrap();
        assert_eq!(best.algorithm, Algorithm::Sha256);
        assert_eq!(DigestChallenge::pick([values[0]], &Algorithm::ALL), None);
    }

    // RFC 7616 §3.9.1: the SHA-256 example, end to end through the
    // Authorization header text.
    #[test]
    fn rfc7616_authorization() {
        let challenge = DigestChallenge::parse(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256,
               nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
               opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .unwrap();
        let value = challenge.authorize(
            "Mufasa",
            "Circle of Life",
            &ClientRequest {
                method: "GET",
                uri: "/dir/index.html",
                nc: 1,
                cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            },
        );
        let creds = DigestCredentials::parse(&value).unwrap();
        assert_eq!(
            creds.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(creds.nc.as_deref(), Some("00000001"));
        assert_eq!(creds.qop.as_deref(), Some("auth"));
        assert_eq!(creds.algorithm.as_deref(), Some("SHA-256"));
        assert_eq!(
            creds.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        assert_eq!(creds.username, "Mufasa");
    }

    #[test]
    fn without_qop_omits_cnonce_and_nc() {
        let challenge = DigestChallenge::parse(
            r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#,
        )
        .unwrap();
        let value = challenge.authorize(
            "Mufasa",
            "CircleOfLife",
            &ClientRequest {
                method: "GET",
                uri: "/dir/index.html",
                nc: 1,
                cnonce: "x",
            },
        );
        let creds = DigestCredentials::parse(&value).unwrap();
        assert_eq!(creds.response, "1949323746fe6a43ef61f9606e7febea");
        assert_eq!(creds.cnonce, None);
        assert_eq!(creds.nc, None);
    }
}
