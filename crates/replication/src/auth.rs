//! Authentication of replication requests: HMAC-SHA256 over the sender's
//! site and node names, the time of sending, the path and the body, with the
//! mesh's shared secret. The secret never travels; a request signed too far
//! from the receiver's clock is refused. A replayed request within that
//! window is harmless: applying a change is idempotent.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Header carrying the sender's site name.
pub const SITE_HEADER: &str = "x-voxline-site";
/// Header carrying the sender's node name.
pub const NODE_HEADER: &str = "x-voxline-node";
/// Header carrying the signing time, ms since the Unix epoch.
pub const TIME_HEADER: &str = "x-voxline-time";
/// Header carrying the hex MAC.
pub const MAC_HEADER: &str = "x-voxline-mac";

/// What is signed, besides the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    /// Sender's site.
    pub site: &'a str,
    /// Sender's node.
    pub node: &'a str,
    /// Signing time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Request path.
    pub path: &'a str,
}

/// Why a request is not authentic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A header is missing or malformed.
    #[error("missing or malformed authentication header {0}")]
    Header(&'static str),
    /// The MAC does not match.
    #[error("bad signature (different replication secret?)")]
    BadMac,
    /// Signed too far from our clock.
    #[error("request time is {skew_ms} ms away from ours (clocks out of sync?)")]
    Skew {
        /// Distance between the request's time and ours.
        skew_ms: u64,
    },
}

/// The shared secret, keyed once.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Key HMAC-SHA256 with `secret`; `None` only if the MAC refused the key
    /// length (HMAC accepts every length).
    pub fn new(secret: &[u8]) -> Option<Key> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .ok()
            .map(Key)
    }

    fn mac(&self, s: &Signed<'_>, body: &[u8]) -> Hmac<Sha256> {
        let mut m = self.0.clone();
        m.update(b"voxline-replication/1\n");
        for part in [s.site, s.node, &s.time_ms.to_string(), s.path] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part.as_bytes());
        }
        m.update(body);
        m
    }

    /// The hex MAC of a request.
    pub fn sign(&self, s: &Signed<'_>, body: &[u8]) -> String {
        hex::encode(self.mac(s, body).finalize().into_bytes())
    }

    /// Check a request's MAC (constant time) and its time against `now_ms`.
    pub fn verify(
        &self,
        s: &Signed<'_>,
        body: &[u8],
        mac_hex: &str,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<(), AuthError> {
        let given = hex::decode(mac_hex.trim()).map_err(|_| AuthError::Header(MAC_HEADER))?;
        self.mac(s, body)
            .verify_slice(&given)
            .map_err(|_| AuthError::BadMac)?;
        let skew_ms = now_ms.abs_diff(s.time_ms);
        if skew_ms > max_skew_ms {
            return Err(AuthError::Skew { skew_ms });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &[u8]) -> Key {
        Key::new(secret).unwrap()
    }

    const KEY: &[u8] = b"0123456789abcdef";

    fn signed(time_ms: u64) -> Signed<'static> {
        Signed {
            site: "a",
            node: "a1",
            time_ms,
            path: "/replication/v1/changes",
        }
    }

    #[test]
    fn a_signed_request_verifies() {
        let mac = key(KEY).sign(&signed(1000), b"body");
        assert_eq!(
            key(KEY).verify(&signed(1000), b"body", &mac, 1500, 1000),
            Ok(())
        );
    }

    #[test]
    fn tampering_or_another_secret_fails() {
        let mac = key(KEY).sign(&signed(1000), b"body");
        assert_eq!(
            key(KEY).verify(&signed(1000), b"bodx", &mac, 1000, 1000),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            key(b"another secret!!").verify(&signed(1000), b"body", &mac, 1000, 1000),
            Err(AuthError::BadMac)
        );
        let other_site = Signed {
            site: "b",
            ..signed(1000)
        };
        assert_eq!(
            key(KEY).verify(&other_site, b"body", &mac, 1000, 1000),
            Err(AuthError::BadMac)
        );
        // Fields cannot be shifted into each other.
        let shifted = Signed {
            site: "a1",
            node: "",
            ..signed(1000)
        };
        assert_eq!(
            key(KEY).verify(&shifted, b"body", &mac, 1000, 1000),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            key(KEY).verify(&signed(1000), b"body", "zz", 1000, 1000),
            Err(AuthError::Header(MAC_HEADER))
        );
    }

    #[test]
    fn stale_requests_are_refused() {
        let mac = key(KEY).sign(&signed(1000), b"");
        assert_eq!(
            key(KEY).verify(&signed(1000), b"", &mac, 5000, 1000),
            Err(AuthError::Skew { skew_ms: 4000 })
        );
    }
}
