//! `[overload]` configuration (documented in `docs/overload-config.md`).

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use voxline_config::{Validate, Validator};

/// Node-level overload control and per-source flood protection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadConfig {
    /// Node-level overload control on or off.
    pub enabled: bool,
    /// A received request that waited longer than this in the kernel's
    /// receive queue means the node is overloaded (0: this signal is off).
    pub max_queue_delay_ms: u64,
    /// The node's CPU use, in percent of the cores it runs on, above which
    /// it counts as overloaded (0: this signal is off).
    pub cpu_threshold_percent: u8,
    /// How often the signals are evaluated, milliseconds.
    pub interval_ms: u64,
    /// While overloaded, at most this share of the node's time goes into
    /// answering new requests with 503; the rest keeps serving.
    pub reject_share_percent: u8,
    /// Methods whose new (out-of-dialog) requests are shed.
    pub shed_methods: Vec<String>,
    /// Request-URI users of emergency calls, never shed (`urn:service:sos`
    /// URIs are emergency calls too).
    pub emergency_numbers: Vec<String>,
    /// Shortest Retry-After of a 503, seconds.
    pub retry_after_min_secs: u32,
    /// Longest Retry-After of a 503, seconds (chosen at random in between,
    /// so that refused clients do not come back all at once).
    pub retry_after_max_secs: u32,
    /// New requests (REGISTER, INVITE...) that waited longer than this in
    /// the receive queue are dropped unread: their clients have
    /// retransmitted them by now (T1 is 500 ms) or are about to (0: off).
    pub max_queue_age_ms: u64,
    /// In-dialog requests, responses and pings get a kernel receive queue
    /// of their own, read first; when the node cannot keep up, the kernel
    /// drops only from the queue of new requests (UDP).
    pub priority_queue: bool,
    /// `[overload.flood]`: per-source limits.
    pub flood: FloodConfig,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            enabled: true,
            max_queue_delay_ms: 50,
            cpu_threshold_percent: 0,
            interval_ms: 100,
            reject_share_percent: 10,
            shed_methods: vec!["REGISTER".into(), "INVITE".into()],
            emergency_numbers: vec!["110".into(), "112".into(), "911".into()],
            retry_after_min_secs: 10,
            retry_after_max_secs: 60,
            max_queue_age_ms: 400,
            priority_queue: true,
            flood: FloodConfig::default(),
        }
    }
}

impl OverloadConfig {
    /// [`interval_ms`](Self::interval_ms) as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(1))
    }

    /// [`max_queue_age_ms`](Self::max_queue_age_ms) as a duration
    /// (`None`: off).
    pub fn max_queue_age(&self) -> Option<Duration> {
        (self.max_queue_age_ms > 0).then(|| Duration::from_millis(self.max_queue_age_ms))
    }

    /// [`max_queue_delay_ms`](Self::max_queue_delay_ms) as a duration
    /// (`None`: off).
    pub fn max_queue_delay(&self) -> Option<Duration> {
        (self.max_queue_delay_ms > 0).then(|| Duration::from_millis(self.max_queue_delay_ms))
    }
}

/// What a banned source gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BannedAnswer {
    /// Nothing: its requests are dropped (cheapest; what `pike` does).
    #[serde(rename = "drop")]
    Drop,
    /// 503 Service Unavailable with a Retry-After of the ban's remaining time.
    #[serde(rename = "503")]
    Reject,
}

/// `[overload.flood]`: per-source rate limits with temporary bans.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    /// Per-source limits on or off.
    pub enabled: bool,
    /// The window requests are counted in, milliseconds.
    pub window_ms: u64,
    /// Most requests a source may send per window.
    pub limit: u32,
    /// How long a source that went over the limit is banned, seconds.
    pub ban_secs: u64,
    /// `"drop"` or `"503"`.
    pub banned_answer: BannedAnswer,
    /// Sources never limited: addresses or networks (`10.0.0.0/8`,
    /// `2001:db8::/32`), e.g. the node's edges and carriers.
    pub exempt: Vec<String>,
    /// Most sources tracked at once (memory bound); sources beyond it are
    /// not limited, and counted.
    pub max_sources: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            enabled: false,
            window_ms: 2000,
            limit: 30,
            ban_secs: 120,
            banned_answer: BannedAnswer::Drop,
            exempt: Vec::new(),
            max_sources: 100_000,
        }
    }
}

/// An address or a network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why an exempt entry is not an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (like 10.0.0.0/8)")]
pub struct BadNet(pub String);

impl IpNet {
    /// Parses `192.0.2.1`, `10.0.0.0/8`, `::1` or `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<IpNet, BadNet> {
        let bad = || BadNet(text.to_owned());
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> Option<u128> {
            match (self.addr, ip) {
                (IpAddr::V4(_), IpAddr::V4(v)) => Some(u128::from(u32::from(v)) << 96),
                (IpAddr::V6(_), IpAddr::V6(v)) => Some(u128::from(v)),
                (IpAddr::V6(_), IpAddr::V4(v)) => Some(u128::from(v.to_ipv6_mapped())),
                (IpAddr::V4(_), IpAddr::V6(v)) => {
                    v.to_ipv4_mapped().map(|v| u128::from(u32::from(v)) << 96)
                }
            }
        };
        let (Some(net), Some(ip)) = (bits(self.addr), bits(ip)) else {
            return false;
        };
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == ip & mask
    }
}

impl Validate for OverloadConfig {
    fn validate(&self, v: &mut Validator) {
        if !(10..=10_000).contains(&self.interval_ms) {
            v.error("interval_ms", "must be between 10 and 10000");
        }
        if self.cpu_threshold_percent > 100 {
            v.error("cpu_threshold_percent", "must be between 0 and 100");
        }
        if !(1..=100).contains(&self.reject_share_percent) {
            v.error("reject_share_percent", "must be between 1 and 100");
        }
        if self.enabled && self.max_queue_delay_ms == 0 && self.cpu_threshold_percent == 0 {
            v.error(
                "enabled",
                "overload control needs a signal: set max_queue_delay_ms or cpu_threshold_percent",
            );
        }
        for (i, m) in self.shed_methods.iter().enumerate() {
            let token = !m.is_empty() && m.bytes().all(|c| c.is_ascii_uppercase() || c == b'-');
            if !token {
                v.error(
                    &format!("shed_methods[{i}]"),
                    format!("{m:?} is not a method name (upper case, like \"REGISTER\")"),
                );
            }
            if matches!(m.as_str(), "ACK" | "CANCEL" | "BYE") {
                v.error(
                    &format!("shed_methods[{i}]"),
                    format!("{m} belongs to calls in progress and is never shed"),
                );
            }
        }
        for (i, n) in self.emergency_numbers.iter().enumerate() {
            if n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == '@') {
                v.error(
                    &format!("emergency_numbers[{i}]"),
                    "a number is the user part of a Request-URI, like \"112\"",
                );
            }
        }
        if self.retry_after_min_secs == 0 || self.retry_after_min_secs > self.retry_after_max_secs {
            v.error(
                "retry_after_min_secs",
                "must be positive and at most retry_after_max_secs",
            );
        }
        if self.max_queue_age_ms > 0 && self.max_queue_age_ms <= self.max_queue_delay_ms {
            v.error(
                "max_queue_age_ms",
                "must exceed max_queue_delay_ms (or be 0: off)",
            );
        }
        v.section("flood", &self.flood);
    }
}

impl Validate for FloodConfig {
    fn validate(&self, v: &mut Validator) {
        if self.window_ms == 0 {
            v.error("window_ms", "must be positive");
        }
        if self.limit == 0 {
            v.error("limit", "must be positive");
        }
        if self.ban_secs == 0 {
            v.error("ban_secs", "must be positive");
        }
        if self.max_sources == 0 {
            v.error("max_sources", "must be positive");
        }
        for (i, e) in self.exempt.iter().enumerate() {
            if let Err(e) = IpNet::parse(e) {
                v.error(&format!("exempt[{i}]"), e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.1.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        let one = IpNet::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "x", "10.0.0/8", "::/129", "1.2.3.4/"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid_and_problems_are_named() {
        let c: OverloadConfig = voxline_config::load("t.toml", "").unwrap();
        assert_eq!(c, OverloadConfig::default());
        let text = "retry_after_min_secs = 90\nshed_methods = [\"BYE\", \"invite\"]\n[flood]\nexempt = [\"10.0.0.0/40\"]\nlimit = 0\n";
        let p = voxline_config::load::<OverloadConfig>("t.toml", text)
            .unwrap_err()
            .to_string();
        for key in [
            "retry_after_min_secs",
            "shed_methods[0]",
            "shed_methods[1]",
            "flood.exempt[0]",
            "flood.limit",
        ] {
            assert!(p.contains(&format!("key `{key}`")), "{key} in {p}");
        }
        let c: OverloadConfig = voxline_config::load(
            "t.toml",
            "[flood]\nenabled = true\nbanned_answer = \"503\"\n",
        )
        .unwrap();
        assert_eq!(c.flood.banned_answer, BannedAnswer::Reject);
    }
}
