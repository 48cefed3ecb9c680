//! `[dialog]` configuration.

use serde::Deserialize;
use voxline_config::{Validate, Validator};

/// Limits and timers of dialogs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialogConfig {
    /// Longest a confirmed call may last, seconds; then the proxy sends BYE
    /// to both sides (0: unlimited).
    pub max_duration_secs: u64,
    /// Longest a call may ring (no 2xx), seconds: a safety net behind the
    /// transaction timers.
    pub max_ringing_secs: u64,
    /// A confirmed call with no in-dialog request for this long is checked
    /// with the media relay; without media it is ended (0: never).
    pub inactivity_check_secs: u64,
    /// Concurrent calls per subscriber (0: unlimited).
    pub max_calls_per_subscriber: u32,
    /// Concurrent calls per domain (0: unlimited).
    pub max_calls_per_domain: u32,
    /// Status for calls over a limit: 403 (Forbidden) or 486 (Busy Here).
    pub limit_status: u16,
}

impl Default for DialogConfig {
    fn default() -> Self {
        DialogConfig {
            max_duration_secs: 4 * 3600,
            max_ringing_secs: 300,
            inactivity_check_secs: 120,
            max_calls_per_subscriber: 0,
            max_calls_per_domain: 0,
            limit_status: 403,
        }
    }
}

impl Validate for DialogConfig {
    fn validate(&self, v: &mut Validator) {
        if !matches!(self.limit_status, 403 | 486) {
            v.error("limit_status", "must be 403 or 486");
        }
        if self.max_ringing_secs == 0 {
            v.error("max_ringing_secs", "must be positive");
        }
    }
}
