//! `[proxy]` configuration.

use serde::Deserialize;
use voxline_config::{Validate, Validator};

/// How requests are routed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Challenge (407) dialog-creating and out-of-dialog requests whose
    /// From is one of our subscribers.
    pub authenticate: bool,
    /// Insert Record-Route on dialog-creating requests so in-dialog
    /// requests come back through this proxy.
    pub record_route: bool,
    /// Timer C: seconds an INVITE branch may stay without a final response
    /// after its last provisional response (RFC 3261 §16.6: > 3 minutes).
    pub timer_c_secs: u64,
    /// Most branches one request forks to.
    pub max_branches: usize,
    /// Seconds an unanswered branch waits before the next serial group starts.
    pub serial_fork_timeout_secs: u64,
    /// DNS: resolve host names in URIs with NAPTR/SRV/A (RFC 3263).
    /// Off: only IP addresses and `localhost` are routable.
    pub dns: bool,
    /// DNS query timeout, milliseconds.
    pub dns_timeout_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            authenticate: true,
            record_route: true,
            timer_c_secs: 180,
            max_branches: 10,
            serial_fork_timeout_secs: 30,
            dns: true,
            dns_timeout_ms: 2000,
        }
    }
}

impl Validate for ProxyConfig {
    fn validate(&self, v: &mut Validator) {
        if self.timer_c_secs < 1 {
            v.error(
                "timer_c_secs",
                "must be positive (RFC 3261 wants more than 180)",
            );
        }
        if self.max_branches == 0 {
            v.error("max_branches", "must be at least 1");
        }
        if self.dns_timeout_ms == 0 {
            v.error("dns_timeout_ms", "must be positive");
        }
    }
}
