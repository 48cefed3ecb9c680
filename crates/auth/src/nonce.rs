//! Stateless nonces: `hex(timestamp_ms ‖ random ‖ HMAC-SHA256(key, ‖ realm)[..16])`.
//!
//! Any node holding the same server secret accepts a nonce another node
//! issued; nothing is stored until the nonce is first used (see
//! [`crate::replay`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Length of a nonce in hex characters.
pub const NONCE_LEN: usize = 64;
const MAC_LEN: usize = 16;

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What a valid nonce carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonceInfo {
    /// The random part: the nonce's identity in the nonce-count table.
    pub id: u64,
    /// When it was issued, in Unix milliseconds.
    pub issued_ms: u64,
}

/// The result of checking a nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceStatus {
    /// Signed by us for this realm and within its lifetime.
    Fresh(NonceInfo),
    /// Signed by us for this realm, but older than the lifetime.
    Expired(NonceInfo),
    /// Malformed, forged, for another realm, or from the future.
    Invalid,
}

/// Issues and checks nonces with a key derived from the server secret.
#[derive(Clone)]
pub struct NonceSigner {
    mac: Hmac<Sha256>,
    lifetime_ms: u64,
}

impl std::fmt::Debug for NonceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceSigner")
            .field("lifetime_ms", &self.lifetime_ms)
            .finish_non_exhaustive()
    }
}

/// Feeds `text` to `mac` in lower case (realms compare case-insensitively),
/// copying it only when it has capitals.
pub(crate) fn update_lowercase(mac: &mut Hmac<Sha256>, text: &str) {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        mac.update(text.to_ascii_lowercase().as_bytes());
    } else {
        mac.update(text.as_bytes());
    }
}

impl NonceSigner {
    /// A signer keyed with `key` whose nonces live `lifetime`.
    pub fn new(key: &[u8], lifetime: Duration) -> NonceSigner {
        // HMAC accepts keys of any length, so this never falls back.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        NonceSigner {
            mac,
            lifetime_ms: u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The configured lifetime.
    pub fn lifetime(&self) -> Duration {
        Duration::from_millis(self.lifetime_ms)
    }

    fn tag(&self, issued_ms: u64, id: u64, realm: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(&issued_ms.to_be_bytes());
        mac.update(&id.to_be_bytes());
        update_lowercase(&mut mac, realm);
        mac.finalize().into_bytes().into()
    }

    /// A new nonce for `realm`, issued at `now`, with the caller's random
    /// bytes (use [`NonceSigner::issue`] for fresh randomness).
    pub fn issue_with(&self, realm: &str, now: SystemTime, random: u64) -> String {
        let issued_ms = unix_ms(now);
        let tag = self.tag(issued_ms, random, realm);
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&issued_ms.to_be_bytes());
        raw[8..16].copy_from_slice(&random.to_be_bytes());
        raw[16..].copy_from_slice(&tag[..MAC_LEN]);
        // Into a buffer of the nonce's size: `hex::encode` goes character by
        // character through an iterator.
        let mut text = [0u8; NONCE_LEN];
        let _ = hex::encode_to_slice(raw, &mut text);
        std::str::from_utf8(&text).unwrap_or_default().to_owned()
    }

    /// A new nonce for `realm` with random bytes from the thread RNG.
    pub fn issue(&self, realm: &str, now: SystemTime) -> String {
        use rand::Rng as _;
        self.issue_with(realm, now, rand::rng().next_u64())
    }

    /// Checks a nonce from the network against `realm` at `now`.
    pub fn check(&self, nonce: &str, realm: &str, now: SystemTime) -> NonceStatus {
        let mut raw = [0u8; 32];
        if nonce.len() != NONCE_LEN || hex::decode_to_slice(nonce, &mut raw).is_err() {
            return NonceStatus::Invalid;
        }
        let (head, mac) = raw.split_at(16);
        let (ts, rnd) = head.split_at(8);
        let (Ok(ts), Ok(rnd)) = (<[u8; 8]>::try_from(ts), <[u8; 8]>::try_from(rnd)) else {
            return NonceStatus::Invalid;
        };
        let info = NonceInfo {
            id: u64::from_be_bytes(rnd),
            issued_ms: u64::from_be_bytes(ts),
        };
        let expected = self.tag(info.issued_ms, info.id, realm);
        if !bool::from(expected[..MAC_LEN].ct_eq(mac)) {
            return NonceStatus::Invalid;
        }
        let now_ms = unix_ms(now);
        if info.issued_ms > now_ms.saturating_add(self.lifetime_ms) {
            return NonceStatus::Invalid;
        }
        if now_ms.saturating_sub(info.issued_ms) > self.lifetime_ms {
            NonceStatus::Expired(info)
        } else {
            NonceStatus::Fresh(info)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn fresh_then_expired() {
        let s = NonceSigner::new(b"0123456789abcdef", Duration::from_secs(300));
        let n = s.issue_with("localhost", at(1_000_000), 42);
        assert_eq!(n.len(), NONCE_LEN);
        let info = NonceInfo {
            id: 42,
            issued_ms: 1_000_000_000,
        };
        assert_eq!(
            s.check(&n, "localhost", at(1_000_000)),
            NonceStatus::Fresh(info)
        );
        assert_eq!(
            s.check(&n, "LOCALHOST", at(1_000_300)),
            NonceStatus::Fresh(info)
        );
        assert_eq!(
            s.check(&n, "localhost", at(1_000_301)),
            NonceStatus::Expired(info)
        );
    }

    #[test]
    fn another_node_with_the_same_secret_accepts_it() {
        let a = NonceSigner::new(b"cluster-secret-0001", Duration::from_secs(60));
        let b = NonceSigner::new(b"cluster-secret-0001", Duration::from_secs(60));
        let c = NonceSigner::new(b"cluster-secret-0002", Duration::from_secs(60));
        let n = a.issue("example.com", at(5000));
        assert!(matches!(
            b.check(&n, "example.com", at(5001)),
            NonceStatus::Fresh(_)
        ));
        assert_eq!(c.check(&n, "example.com", at(5001)), NonceStatus::Invalid);
    }

    #[test]
    fn forged_tampered_and_foreign_nonces_are_invalid() {
        let s = NonceSigner::new(b"0123456789abcdef", Duration::from_secs(300));
        let n = s.issue_with("localhost", at(1000), 7);
        assert_eq!(s.check(&n, "example.com", at(1000)), NonceStatus::Invalid);
        // Move the timestamp forward: the MAC no longer matches.
        let mut raw = hex::decode(&n).unwrap();
        raw[7] ^= 1;
        assert_eq!(
            s.check(&hex::encode(&raw), "localhost", at(1000)),
            NonceStatus::Invalid
        );
        assert_eq!(s.check("", "localhost", at(1000)), NonceStatus::Invalid);
        assert_eq!(
            s.check(&"z".repeat(64), "localhost", at(1000)),
            NonceStatus::Invalid
        );
        assert_eq!(
            s.check(&n[..62], "localhost", at(1000)),
            NonceStatus::Invalid
        );
        assert_eq!(
            s.check(&format!("{n}00"), "localhost", at(1000)),
            NonceStatus::Invalid
        );
        // Multi-byte UTF-8 of the right byte length must not panic.
        assert_eq!(
            s.check(&"é".repeat(32), "localhost", at(1000)),
            NonceStatus::Invalid
        );
    }

    #[test]
    fn nonce_from_the_far_future_is_invalid() {
        let s = NonceSigner::new(b"0123456789abcdef", Duration::from_secs(300));
        let n = s.issue_with("localhost", at(10_000), 1);
        assert_eq!(s.check(&n, "localhost", at(9_000)), NonceStatus::Invalid);
        assert!(matches!(
            s.check(&n, "localhost", at(9_900)),
            NonceStatus::Fresh(_)
        ));
    }

    #[test]
    fn nonces_differ() {
        let s = NonceSigner::new(b"0123456789abcdef", Duration::from_secs(300));
        assert_ne!(s.issue("localhost", at(1)), s.issue("localhost", at(1)));
    }
}
