//! Challenges: the `WWW-Authenticate` / `Proxy-Authenticate` values a 401
//! or 407 carries.

use crate::digest::Algorithm;
use crate::params::push_quoted;

/// Which challenge a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// `401 Unauthorized` with `WWW-Authenticate` (REGISTER: the registrar
    /// is the user agent server).
    Www,
    /// `407 Proxy Authentication Required` with `Proxy-Authenticate`
    /// (INVITE, MESSAGE, SUBSCRIBE... through the proxy).
    Proxy,
}

impl ChallengeKind {
    /// `Www` for REGISTER, `Proxy` for any other method.
    pub fn for_method(method: &str) -> ChallengeKind {
        if method.eq_ignore_ascii_case("REGISTER") {
            ChallengeKind::Www
        } else {
            ChallengeKind::Proxy
        }
    }

    /// 401 or 407.
    pub const fn status_code(self) -> u16 {
        match self {
            ChallengeKind::Www => 401,
            ChallengeKind::Proxy => 407,
        }
    }

    /// The reason phrase of [`ChallengeKind::status_code`].
    pub const fn reason_phrase(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Unauthorized",
            ChallengeKind::Proxy => "Proxy Authentication Required",
        }
    }

    /// The header the challenge values go in.
    pub const fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    /// The header the client answers in.
    pub const fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// Why a request is challenged. For logs and metrics only: the response
/// the client sees depends on it only through `stale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChallengeReason {
    /// The request carried no credentials for this realm.
    NoCredentials,
    /// The credentials are for another realm.
    RealmMismatch,
    /// Unsupported algorithm or qop, missing cnonce/nc, or malformed values.
    Unsupported,
    /// The nonce was not issued by this cluster for this realm.
    InvalidNonce,
    /// Unknown user or wrong password: deliberately one reason, so the
    /// two cannot be told apart.
    InvalidCredentials,
    /// Right credentials, but the nonce is past its lifetime (`stale=true`).
    NonceExpired,
    /// Right credentials, but the nonce was evicted from the nonce-count
    /// table (`stale=true`).
    NonceForgotten,
    /// Right credentials, but `nc` was not greater than the last one seen
    /// (`stale=true`).
    NonceCountReused,
}

impl ChallengeReason {
    /// Whether the challenge says `stale=true`.
    pub const fn is_stale(self) -> bool {
        matches!(
            self,
            ChallengeReason::NonceExpired
                | ChallengeReason::NonceForgotten
                | ChallengeReason::NonceCountReused
        )
    }

    /// A short label for metrics and logs.
    pub const fn label(self) -> &'static str {
        match self {
            ChallengeReason::NoCredentials => "no_credentials",
            ChallengeReason::RealmMismatch => "realm_mismatch",
            ChallengeReason::Unsupported => "unsupported",
            ChallengeReason::InvalidNonce => "invalid_nonce",
            ChallengeReason::InvalidCredentials => "invalid_credentials",
            ChallengeReason::NonceExpired => "nonce_expired",
            ChallengeReason::NonceForgotten => "nonce_forgotten",
            ChallengeReason::NonceCountReused => "nonce_count_reused",
        }
    }
}

/// A challenge to send: status, header name and one header value per
/// offered algorithm, in the configured order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// 401 or 407.
    pub kind: ChallengeKind,
    /// Why.
    pub reason: ChallengeReason,
    /// The realm.
    pub realm: String,
    /// The nonce shared by all values.
    pub nonce: String,
    /// Header values, e.g.
    /// `Digest realm="localhost", nonce="…", algorithm=SHA-256, qop="auth"`,
    /// in the order to send them (by default SHA-256 before MD5, RFC 8760 §2.4).
    pub values: Vec<String>,
}

impl Challenge {
    /// Whether the values carry `stale=true`.
    pub fn stale(&self) -> bool {
        self.reason.is_stale()
    }

    /// `(header name, value)` pairs in sending order.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let name = self.kind.challenge_header();
        self.values.iter().map(move |v| (name, v.as_str()))
    }
}

/// Formats one challenge value.
pub(crate) fn challenge_value(
    realm: &str,
    nonce: &str,
    algorithm: Algorithm,
    stale: bool,
) -> String {
    let mut out = String::with_capacity(64 + realm.len() + nonce.len());
    out.push_str("Digest realm=");
    push_quoted(&mut out, realm);
    out.push_str(", nonce=\"");
    out.push_str(nonce);
    out.push_str("\", algorithm=");
    out.push_str(algorithm.token());
    out.push_str(", qop=\"auth\"");
    if stale {
        out.push_str(", stale=true");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_values() {
        assert_eq!(
            challenge_value("localhost", "abc", Algorithm::Sha256, false),
            r#"Digest realm="localhost", nonce="abc", algorithm=SHA-256, qop="auth""#
        );
        assert_eq!(
            challenge_value("a\"b", "n", Algorithm::Md5, true),
            r#"Digest realm="a\"b", nonce="n", algorithm=MD5, qop="auth", stale=true"#
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(ChallengeKind::for_method("register"), ChallengeKind::Www);
        assert_eq!(ChallengeKind::for_method("INVITE"), ChallengeKind::Proxy);
        assert_eq!(ChallengeKind::Www.status_code(), 401);
        assert_eq!(ChallengeKind::Proxy.status_code(), 407);
        assert_eq!(
            ChallengeKind::Proxy.challenge_header(),
            "Proxy-Authenticate"
        );
        assert_eq!(
            ChallengeKind::Proxy.credentials_header(),
            "Proxy-Authorization"
        );
    }

    #[test]
    fn stale_reasons() {
        assert!(ChallengeReason::NonceExpired.is_stale());
        assert!(ChallengeReason::NonceForgotten.is_stale());
        assert!(ChallengeReason::NonceCountReused.is_stale());
        assert!(!ChallengeReason::InvalidCredentials.is_stale());
        assert!(!ChallengeReason::InvalidNonce.is_stale());
    }
}
