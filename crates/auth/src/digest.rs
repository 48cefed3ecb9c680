//! Digest algorithms (RFC 2617 MD5, RFC 7616/8760 SHA-256): HA1, HA2 and the
//! request-digest, as lowercase hex.

use std::fmt;

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// A digest algorithm offered in challenges and accepted in credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Algorithm {
    /// `SHA-256` (RFC 7616, RFC 8760). Offered first.
    #[serde(rename = "SHA-256")]
    Sha256,
    /// `MD5` (RFC 2617), still what most SIP phones and SIPp speak.
    #[serde(rename = "MD5")]
    Md5,
}

impl Algorithm {
    /// Every algorithm, strongest first: the default order of challenge
    /// values (RFC 8760 §2.4).
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The token as written in `algorithm=`.
    pub const fn token(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Parses an `algorithm=` token (case-insensitive). The `-sess`
    /// variants are not supported and give `None`.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    /// Length of the hex form of this algorithm's digest.
    pub const fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Md5 => 32,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// A digest in lowercase hex, kept on the stack (at most 64 characters).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexDigest {
    buf: [u8; 64],
    len: u8,
}

impl HexDigest {
    pub(crate) fn from_bytes(bytes: &[u8]) -> HexDigest {
        let mut buf = [0u8; 64];
        let len = bytes.len().min(32);
        let src = bytes.get(..len).unwrap_or_default();
        if let Some(dst) = buf.get_mut(..len * 2) {
            // Cannot fail: the destination is exactly twice the source length.
            let _ = hex::encode_to_slice(src, dst);
        }
        HexDigest {
            buf,
            len: (len * 2) as u8,
        }
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        // The buffer holds only ASCII hex digits written by `hex`.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The hex text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Compares with a hex digest from the network in constant time
    /// (case-insensitively, as some clients send uppercase hex).
    pub fn ct_eq_hex(&self, other: &str) -> bool {
        let ours = self.as_bytes();
        let theirs = other.as_bytes();
        if ours.len() != theirs.len() {
            return false;
        }
        let mut lowered = [0u8; 64];
        let Some(lowered) = lowered.get_mut(..theirs.len()) else {
            return false;
        };
        for (dst, src) in lowered.iter_mut().zip(theirs) {
            *dst = src.to_ascii_lowercase();
        }
        bool::from(ours.ct_eq(lowered))
    }
}

impl fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `H(p1 ":" p2 ":" ...)` in lowercase hex.
pub fn hash_joined(algorithm: Algorithm, parts: &[&[u8]]) -> HexDigest {
    fn run<D: sha2::Digest>(mut hasher: D, parts: &[&[u8]]) -> D {
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                hasher.update(b":");
            }
            hasher.update(part);
        }
        hasher
    }
    match algorithm {
        Algorithm::Md5 => HexDigest::from_bytes(&run(Md5::new(), parts).finalize()),
        Algorithm::Sha256 => HexDigest::from_bytes(&run(Sha256::new(), parts).finalize()),
    }
}

/// HA1 = H(username ":" realm ":" password) for one algorithm, as stored in
/// the subscriber table. Its `Debug` form is redacted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ha1 {
    algorithm: Algorithm,
    hex: HexDigest,
}

impl Ha1 {
    /// Computes HA1 from a password.
    pub fn compute(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> Ha1 {
        Ha1 {
            algorithm,
            hex: hash_joined(
                algorithm,
                &[username.as_bytes(), realm.as_bytes(), password.as_bytes()],
            ),
        }
    }

    /// Takes a stored hex HA1; `None` unless it is exactly the algorithm's
    /// length of hex digits. Uppercase is accepted and lowered.
    pub fn from_hex(algorithm: Algorithm, hex_text: &str) -> Option<Ha1> {
        let bytes = hex_text.as_bytes();
        if bytes.len() != algorithm.hex_len() || !bytes.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut buf = [0u8; 64];
        for (dst, src) in buf.iter_mut().zip(bytes) {
            *dst = src.to_ascii_lowercase();
        }
        Some(Ha1 {
            algorithm,
            hex: HexDigest {
                buf,
                len: bytes.len() as u8,
            },
        })
    }

    /// Wraps an already computed hex digest (used for the fake HA1).
    pub(crate) fn from_digest(algorithm: Algorithm, hex: HexDigest) -> Ha1 {
        Ha1 { algorithm, hex }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex text (what is stored in the database).
    pub fn as_hex(&self) -> &str {
        self.hex.as_str()
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ha1({}, <redacted>)", self.algorithm)
    }
}

/// A subscriber's stored HA1 values, one per algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredCredentials {
    /// HA1 for MD5.
    pub md5: Ha1,
    /// HA1 for SHA-256.
    pub sha256: Ha1,
}

impl StoredCredentials {
    /// Both HA1 values from a password.
    pub fn from_password(username: &str, realm: &str, password: &str) -> StoredCredentials {
        StoredCredentials {
            md5: Ha1::compute(Algorithm::Md5, username, realm, password),
            sha256: Ha1::compute(Algorithm::Sha256, username, realm, password),
        }
    }

    /// The HA1 for `algorithm`.
    pub fn for_algorithm(&self, algorithm: Algorithm) -> &Ha1 {
        match algorithm {
            Algorithm::Md5 => &self.md5,
            Algorithm::Sha256 => &self.sha256,
        }
    }
}

/// The `qop` part of a digest computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// `nc`, as sent (8 hex digits).
    pub nc: &'a str,
    /// `cnonce`.
    pub cnonce: &'a str,
}

/// The request-digest (`response=`):
/// with qop=auth `H(HA1:nonce:nc:cnonce:auth:H(method:uri))`,
/// without qop (RFC 2069) `H(HA1:nonce:H(method:uri))`.
pub fn request_digest(
    ha1: &Ha1,
    nonce: &str,
    qop: Option<QopAuth<'_>>,
    method: &str,
    uri: &str,
) -> HexDigest {
    let algorithm = ha1.algorithm;
    let ha2 = hash_joined(algorithm, &[method.as_bytes(), uri.as_bytes()]);
    match qop {
        Some(q) => hash_joined(
            algorithm,
            &[
                ha1.hex.as_bytes(),
                nonce.as_bytes(),
                q.nc.as_bytes(),
                q.cnonce.as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ],
        ),
        None => hash_joined(
            algorithm,
            &[ha1.hex.as_bytes(), nonce.as_bytes(), ha2.as_bytes()],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2617 §3.5.
    #[test]
    fn rfc2617_md5_example() {
        let ha1 = Ha1::compute(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let response = request_digest(
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(QopAuth {
                nc: "00000001",
                cnonce: "0a4f113b",
            }),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(response.as_str(), "6629fae49393a05397450978507c4ef1");
    }

    // RFC 7616 §3.9.1, both algorithms.
    #[test]
    fn rfc7616_examples() {
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let qop = Some(QopAuth {
            nc: "00000001",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        });
        let cases = [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ];
        for (algorithm, expected) in cases {
            let ha1 = Ha1::compute(
                algorithm,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
            );
            let response = request_digest(&ha1, nonce, qop, "GET", "/dir/index.html");
            assert_eq!(response.as_str(), expected, "{algorithm}");
        }
    }

    #[test]
    fn rfc2069_without_qop() {
        // RFC 2069 §2.4 example response.
        let ha1 = Ha1::compute(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "CircleOfLife",
        );
        let response = request_digest(
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            None,
            "GET",
            "/dir/index.html",
        );
        assert_eq!(response.as_str(), "1949323746fe6a43ef61f9606e7febea");
    }

    #[test]
    fn constant_time_compare_is_case_insensitive_and_length_checked() {
        let d = hash_joined(Algorithm::Md5, &[b"a"]);
        assert!(d.ct_eq_hex(&d.as_str().to_ascii_uppercase()));
        assert!(!d.ct_eq_hex(&d.as_str()[..31]));
        assert!(!d.ct_eq_hex(&format!("{}0", d.as_str())));
        let mut other = d.as_str().to_string();
        other.replace_range(0..1, if other.starts_with('0') { "1" } else { "0" });
        assert!(!d.ct_eq_hex(&other));
    }

    #[test]
    fn ha1_hex_round_trip_and_validation() {
        let ha1 = Ha1::compute(Algorithm::Sha256, "alice", "localhost", "secret");
        assert_eq!(ha1.as_hex().len(), 64);
        let back = Ha1::from_hex(Algorithm::Sha256, &ha1.as_hex().to_ascii_uppercase());
        assert_eq!(back, Some(ha1));
        assert_eq!(Ha1::from_hex(Algorithm::Md5, ha1.as_hex()), None);
        assert_eq!(Ha1::from_hex(Algorithm::Md5, &"g".repeat(32)), None);
        assert!(!format!("{ha1:?}").contains(ha1.as_hex()));
    }

    #[test]
    fn algorithm_tokens() {
        assert_eq!(Algorithm::from_token("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_token("md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::from_token("MD5-sess"), None);
        assert_eq!(Algorithm::Sha256.to_string(), "SHA-256");
    }
}
