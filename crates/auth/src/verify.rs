//! The authentication decision, sans-IO: [`Authenticator::begin`] checks
//! everything that needs no database, the caller looks the subscriber up,
//! and [`Authenticator::finish`] verifies the response.

use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::challenge::{Challenge, ChallengeKind, ChallengeReason, challenge_value};
use crate::config::{AuthConfig, ServerSecret};
use crate::credentials::DigestCredentials;
use crate::digest::{Algorithm, Ha1, HexDigest, QopAuth, StoredCredentials, request_digest};
use crate::nonce::{NonceSigner, NonceStatus, unix_ms, update_lowercase};
use crate::replay::{NcVerdict, NonceCountTable};

/// What the caller knows about a request that needs authenticating.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    /// The SIP method (HA2 is computed over it).
    pub method: &'a str,
    /// The local domain the request is authenticated against (To domain of
    /// a REGISTER, From domain otherwise); the caller has checked it is one
    /// of ours. Used as the realm.
    pub realm: &'a str,
    /// 401/WWW-Authenticate or 407/Proxy-Authenticate.
    pub kind: ChallengeKind,
    /// The digest credentials for `realm`, if the request carried any.
    pub credentials: Option<&'a DigestCredentials<'a>>,
}

/// A successfully authenticated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The digest username (case as stored).
    pub username: String,
    /// The realm (lowercase domain).
    pub realm: String,
    /// The algorithm the client used.
    pub algorithm: Algorithm,
}

/// The outcome for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Accept(Authenticated),
    /// Answer 401/407 with these challenge values.
    Challenge(Challenge),
}

impl Decision {
    /// The authenticated identity, if accepted.
    pub fn accepted(&self) -> Option<&Authenticated> {
        match self {
            Decision::Accept(a) => Some(a),
            Decision::Challenge(_) => None,
        }
    }

    /// The challenge, if not accepted.
    pub fn challenge(&self) -> Option<&Challenge> {
        match self {
            Decision::Accept(_) => None,
            Decision::Challenge(c) => Some(c),
        }
    }

    /// A label for metrics: `accepted`, `stale` or `challenged`.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Decision::Accept(_) => "accepted",
            Decision::Challenge(c) if c.stale() => "stale",
            Decision::Challenge(_) => "challenged",
        }
    }
}

/// The first half of a verification: either already decided, or waiting
/// for the subscriber's stored credentials.
#[derive(Debug)]
pub enum Step<'a> {
    /// Decided without the database (no credentials, bad nonce...).
    Done(Decision),
    /// Look up [`Attempt::username`] in [`Attempt::domain`] and call
    /// [`Authenticator::finish`]. Unknown users must go through `finish`
    /// too (with `None`), so they cost the same as wrong passwords.
    Lookup(Attempt<'a>),
}

/// Credentials that passed the checks not needing the database.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    method: &'a str,
    realm: &'a str,
    kind: ChallengeKind,
    credentials: &'a DigestCredentials<'a>,
    algorithm: Algorithm,
    nc: u32,
    nc_text: &'a str,
    cnonce: &'a str,
    nonce: NonceStatus,
}

impl<'a> Attempt<'a> {
    /// The username to look up (case-sensitive).
    pub fn username(&self) -> &'a str {
        self.credentials.username.as_ref()
    }

    /// The domain to look up it in (the request's realm).
    pub fn domain(&self) -> &'a str {
        self.realm
    }

    /// The algorithm the client used.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Issues challenges and verifies digest credentials. One per node, shared
/// by all workers; holds the nonce-count table.
pub struct Authenticator {
    signer: NonceSigner,
    nc_table: NonceCountTable,
    offered: Vec<Algorithm>,
    fake_key: Hmac<Sha256>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("signer", &self.signer)
            .field("nc_table", &self.nc_table)
            .field("offered", &self.offered)
            .finish_non_exhaustive()
    }
}

fn parse_nc(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok().filter(|&nc| nc > 0)
}

impl Authenticator {
    /// An authenticator from a validated config and the server secret.
    pub fn new(config: &AuthConfig, secret: &ServerSecret) -> Authenticator {
        let fake = secret.derive(b"voxline fake HA1 v1");
        let mut offered: Vec<Algorithm> = Vec::with_capacity(Algorithm::ALL.len());
        for &algorithm in &config.algorithms {
            if !offered.contains(&algorithm) {
                offered.push(algorithm);
            }
        }
        Authenticator {
            signer: NonceSigner::new(&secret.derive(b"voxline nonce v1"), config.nonce_lifetime()),
            nc_table: NonceCountTable::new(config.nc_table_size),
            offered,
            fake_key: <Hmac<Sha256> as KeyInit>::new_from_slice(&fake)
                .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default())),
        }
    }

    /// The algorithms offered, in challenge order.
    pub fn offered(&self) -> &[Algorithm] {
        &self.offered
    }

    /// The nonce signer (to check nonces without a full verification).
    pub fn signer(&self) -> &NonceSigner {
        &self.signer
    }

    /// The nonce-count table (for statistics).
    pub fn nc_table(&self) -> &NonceCountTable {
        &self.nc_table
    }

    /// A fresh challenge for `realm`.
    pub fn challenge(
        &self,
        kind: ChallengeKind,
        realm: &str,
        reason: ChallengeReason,
        now: SystemTime,
    ) -> Challenge {
        let realm = realm.to_ascii_lowercase();
        let nonce = self.signer.issue(&realm, now);
        let values = self
            .offered
            .iter()
            .map(|&a| challenge_value(&realm, &nonce, a, reason.is_stale()))
            .collect();
        Challenge {
            kind,
            reason,
            realm,
            nonce,
            values,
        }
    }

    fn reject(
        &self,
        request: &AuthRequest<'_>,
        reason: ChallengeReason,
        now: SystemTime,
    ) -> Decision {
        Decision::Challenge(self.challenge(request.kind, request.realm, reason, now))
    }

    /// Everything that needs no database: presence, realm, algorithm, qop,
    /// nc/cnonce syntax and the nonce's signature and age.
    pub fn begin<'a>(&self, request: &AuthRequest<'a>, now: SystemTime) -> Step<'a> {
        let Some(credentials) = request.credentials else {
            return Step::Done(self.reject(request, ChallengeReason::NoCredentials, now));
        };
        if !credentials.realm.eq_ignore_ascii_case(request.realm) {
            return Step::Done(self.reject(request, ChallengeReason::RealmMismatch, now));
        }
        let algorithm = match credentials.algorithm.as_deref() {
            None => Some(Algorithm::Md5),
            Some(token) => Algorithm::from_token(token),
        }
        .filter(|a| self.offered.contains(a));
        let qop_ok = credentials
            .qop
            .as_deref()
            .is_some_and(|q| q.eq_ignore_ascii_case("auth"));
        let nc_text = credentials.nc.as_deref().unwrap_or_default();
        let cnonce = credentials.cnonce.as_deref().unwrap_or_default();
        let (Some(algorithm), true, Some(nc), false, false) = (
            algorithm,
            qop_ok,
            parse_nc(nc_text),
            cnonce.is_empty(),
            credentials.username.is_empty(),
        ) else {
            return Step::Done(self.reject(request, ChallengeReason::Unsupported, now));
        };
        let nonce = self.signer.check(&credentials.nonce, request.realm, now);
        if nonce == NonceStatus::Invalid {
            return Step::Done(self.reject(request, ChallengeReason::InvalidNonce, now));
        }
        Step::Lookup(Attempt {
            method: request.method,
            realm: request.realm,
            kind: request.kind,
            credentials,
            algorithm,
            nc,
            nc_text,
            cnonce,
            nonce,
        })
    }

    /// A deterministic HA1 for users that do not exist, so that they cost
    /// and answer the same as a wrong password.
    fn fake_ha1(&self, algorithm: Algorithm, username: &str, realm: &str) -> Ha1 {
        let mut mac = self.fake_key.clone();
        mac.update(algorithm.token().as_bytes());
        mac.update(&[0]);
        mac.update(username.as_bytes());
        mac.update(&[0]);
        update_lowercase(&mut mac, realm);
        let bytes: [u8; 32] = mac.finalize().into_bytes().into();
        let len = algorithm.hex_len() / 2;
        Ha1::from_digest(
            algorithm,
            HexDigest::from_bytes(bytes.get(..len).unwrap_or_default()),
        )
    }

    /// Verifies the response against the stored credentials (`None` for an
    /// unknown user) and, if right, the nonce's age and count.
    pub fn finish(
        &self,
        attempt: Attempt<'_>,
        stored: Option<&StoredCredentials>,
        now: SystemTime,
    ) -> Decision {
        let username = attempt.username();
        // Always computed, used or not, so both paths do the same work.
        let fake = self.fake_ha1(attempt.algorithm, username, attempt.realm);
        let ha1 = stored.map_or(fake, |s| *s.for_algorithm(attempt.algorithm));
        let expected = request_digest(
            &ha1,
            &attempt.credentials.nonce,
            Some(QopAuth {
                nc: attempt.nc_text,
                cnonce: attempt.cnonce,
            }),
            attempt.method,
            &attempt.credentials.uri,
        );
        let right = expected.ct_eq_hex(&attempt.credentials.response);
        let reject =
            |reason| Decision::Challenge(self.challenge(attempt.kind, attempt.realm, reason, now));
        if !right {
            return reject(ChallengeReason::InvalidCredentials);
        }
        let info = match attempt.nonce {
            NonceStatus::Fresh(info) => info,
            NonceStatus::Expired(_) => return reject(ChallengeReason::NonceExpired),
            NonceStatus::Invalid => return reject(ChallengeReason::InvalidNonce),
        };
        let lifetime_ms = u64::try_from(self.signer.lifetime().as_millis()).unwrap_or(u64::MAX);
        let expired_before = unix_ms(now).saturating_sub(lifetime_ms);
        match self
            .nc_table
            .check_and_record(info, attempt.nc, expired_before)
        {
            NcVerdict::Accepted => Decision::Accept(Authenticated {
                username: username.to_string(),
                realm: attempt.realm.to_ascii_lowercase(),
                algorithm: attempt.algorithm,
            }),
            NcVerdict::Replayed => reject(ChallengeReason::NonceCountReused),
            NcVerdict::Forgotten => reject(ChallengeReason::NonceForgotten),
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
