//! `[registrar]` configuration.

use serde::Deserialize;
use voxline_config::{Validate, Validator};

use crate::request::Refusal;

/// How REGISTER requests are treated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Require digest authentication (401 challenge) for REGISTER.
    pub authenticate: bool,
    /// Expires granted when the request names none, seconds.
    pub default_expires: u32,
    /// Shorter non-zero requests get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requests are cut to this.
    pub max_expires: u32,
    /// Registration storms: grant up to this percentage less than asked
    /// (never below `min_expires`), chosen at random per REGISTER, so that
    /// clients re-registered at once after an outage drift apart.
    pub expires_jitter_percent: u8,
    /// Answer REGISTER without a server transaction (a stateless UAS, RFC
    /// 3261 §8.2.7, as Kamailio's registrar does): no state kept for 32 s
    /// per request. A retransmission (same Call-ID and CSeq) is answered
    /// with the current bindings again, as the first copy was.
    pub stateless: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            authenticate: true,
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            expires_jitter_percent: 0,
            stateless: true,
        }
    }
}

impl RegistrarConfig {
    /// The expires granted for `requested` seconds (0 stays 0: removal).
    pub fn grant(&self, requested: u32) -> Result<u32, Refusal> {
        if requested == 0 {
            return Ok(0);
        }
        if requested < self.min_expires {
            return Err(Refusal::IntervalTooBrief(self.min_expires));
        }
        let capped = requested.min(self.max_expires);
        if self.expires_jitter_percent == 0 {
            return Ok(capped);
        }
        let span = u64::from(capped) * u64::from(self.expires_jitter_percent.min(100)) / 100;
        let cut = if span == 0 {
            0
        } else {
            rand::random_range(0..=span)
        };
        Ok((u64::from(capped) - cut).max(u64::from(self.min_expires)) as u32)
    }
}

impl Validate for RegistrarConfig {
    fn validate(&self, v: &mut Validator) {
        if self.min_expires > self.max_expires {
            v.error("min_expires", "must not exceed max_expires");
        }
        if self.default_expires < self.min_expires || self.default_expires > self.max_expires {
            v.error(
                "default_expires",
                "must lie between min_expires and max_expires",
            );
        }
        if self.expires_jitter_percent > 50 {
            v.error("expires_jitter_percent", "must be at most 50");
        }
    }
}
