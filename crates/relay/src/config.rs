//! Relay configuration (the `[relay]` section of the Voxline TOML file).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// A named logical interface: media ports are bound on `address`; SDP shows
/// `advertised_address` if set (relay behind 1:1 NAT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// Name used by the ng `direction` / `from-interface` / `to-interface` keys.
    pub name: String,
    /// Local address the media sockets bind to.
    pub address: IpAddr,
    /// Address written into SDP instead of `address`.
    #[serde(default)]
    pub advertised_address: Option<IpAddr>,
}

impl InterfaceConfig {
    /// The address written into SDP.
    pub fn sdp_address(&self) -> IpAddr {
        self.advertised_address.unwrap_or(self.address)
    }
}

/// How the forwarding workers read and send media (`relay.io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayIo {
    /// One socket per port: a wake-up, a receive and a send per datagram at
    /// 50 packets/s per stream. Needs no privilege.
    #[default]
    Sockets,
    /// IPv4 media through raw sockets, in batches across all streams
    /// (needs `CAP_NET_RAW`); see `docs/relay-config.md`.
    Raw,
}

/// Everything the relay role needs. Defaults match rtpengine's where both
/// have the setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// ng control over UDP.
    pub ng_udp: SocketAddr,
    /// ng control over TCP (off if absent).
    pub ng_tcp: Option<SocketAddr>,
    /// Logical interfaces; the first is the default.
    pub interfaces: Vec<InterfaceConfig>,
    /// Lowest media port (rounded up to even).
    pub port_min: u16,
    /// Highest media port.
    pub port_max: u16,
    /// Seconds a released port pair rests before reuse.
    pub port_quarantine_secs: u64,
    /// No media for this long deletes a session (`timeout`).
    pub timeout_secs: u64,
    /// Same for sessions whose media is on hold / one-way (`silent-timeout`).
    pub silent_timeout_secs: u64,
    /// Absolute session lifetime; 0 = off (`final-timeout`).
    pub final_timeout_secs: u64,
    /// IP TOS byte on every relayed packet (184 = DSCP EF).
    pub tos: u8,
    /// Forwarding worker threads.
    pub workers: usize,
    /// How the workers read and send media.
    pub io: RelayIo,
    /// Most concurrent sessions; beyond it offers fail with
    /// `Parallel session limit reached`. 0 = unlimited.
    pub max_sessions: usize,
    /// Commands queued per ng source before further ones are dropped.
    pub ng_queue_per_source: usize,
    /// Session replication and takeover through Redis (`[relay.redis]`);
    /// off when absent.
    pub redis: Option<RedisConfig>,
}

/// `[relay.redis]`: every session change is written to Redis; other
/// relays' sessions are followed through keyspace notifications and taken
/// over when their owner dies. See `docs/relay-redundancy.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (standalone Redis; RESP3 is switched on).
    pub url: String,
    /// Prefix of every key this relay writes and follows.
    pub key_prefix: String,
    /// This relay's unique id (in keys and session records).
    pub relay_id: String,
    /// Follow other relays' sessions and take them over when they die.
    /// `false`: only write own sessions (and restore them after a restart).
    pub standby: bool,
    /// Relay ids to follow; empty = every other relay under the prefix.
    pub follow: Vec<String>,
    /// How often the heartbeat key is written (ms).
    pub heartbeat_interval_ms: u64,
    /// A followed relay whose heartbeat is older than this is dead and
    /// taken over (ms); also the heartbeat key's TTL.
    pub heartbeat_timeout_ms: u64,
    /// Timeout of every Redis command and connection attempt (ms).
    pub command_timeout_ms: u64,
    /// Lifetime of a session key after its last change (s).
    pub key_ttl_secs: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            key_prefix: "voxline:relay".to_owned(),
            relay_id: String::new(),
            standby: true,
            follow: Vec::new(),
            heartbeat_interval_ms: 50,
            heartbeat_timeout_ms: 500,
            command_timeout_ms: 500,
            key_ttl_secs: 86_400,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            ng_udp: SocketAddr::from(([127, 0, 0, 1], 22222)),
            ng_tcp: None,
            interfaces: vec![InterfaceConfig {
                name: "default".to_owned(),
                address: IpAddr::from([127, 0, 0, 1]),
                advertised_address: None,
            }],
            port_min: 30000,
            port_max: 39999,
            port_quarantine_secs: 10,
            timeout_secs: 60,
            silent_timeout_secs: 3600,
            final_timeout_secs: 0,
            tos: 184,
            workers: 1,
            io: RelayIo::Sockets,
            max_sessions: 0,
            ng_queue_per_source: 256,
            redis: None,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No interface configured.
    #[error("relay.interfaces: at least one interface is required")]
    NoInterface,
    /// Two interfaces share a name.
    #[error("relay.interfaces: duplicate interface name '{0}'")]
    DuplicateInterface(String),
    /// Port range empty or too small for one RTP/RTCP pair.
    #[error("relay.port_min/port_max: range {0}-{1} holds no even/odd port pair")]
    PortRange(u16, u16),
    /// Zero workers.
    #[error("relay.workers: must be at least 1")]
    Workers,
    /// The Redis URL does not parse.
    #[error("relay.redis.url: {0}")]
    RedisUrl(String),
    /// No relay id, or one with characters that cannot be in a key name.
    #[error("relay.redis.relay_id: required; letters, digits, '.', '-' and '_' only")]
    RelayId,
    /// Empty key prefix.
    #[error("relay.redis.key_prefix: must not be empty")]
    KeyPrefix,
    /// Heartbeat settings that cannot tell a live relay from a dead one.
    #[error("relay.redis.heartbeat_timeout_ms: must be at least twice heartbeat_interval_ms (> 0)")]
    Heartbeat,
    /// A zero timeout or TTL.
    #[error("relay.redis.{0}: must be positive")]
    Zero(&'static str),
}

/// True for ids usable in key names and logs.
pub(crate) fn valid_relay_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl RedisConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        redis::Client::open(self.url.as_str()).map_err(|e| ConfigError::RedisUrl(e.to_string()))?;
        if !valid_relay_id(&self.relay_id) || !self.follow.iter().all(|f| valid_relay_id(f)) {
            return Err(ConfigError::RelayId);
        }
        if self.key_prefix.is_empty() {
            return Err(ConfigError::KeyPrefix);
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_timeout_ms < self.heartbeat_interval_ms.saturating_mul(2)
        {
            return Err(ConfigError::Heartbeat);
        }
        if self.command_timeout_ms == 0 {
            return Err(ConfigError::Zero("command_timeout_ms"));
        }
        if self.key_ttl_secs == 0 {
            return Err(ConfigError::Zero("key_ttl_secs"));
        }
        Ok(())
    }
}

impl RelayConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interfaces.is_empty() {
            return Err(ConfigError::NoInterface);
        }
        for (i, a) in self.interfaces.iter().enumerate() {
            if self.interfaces.iter().skip(i + 1).any(|b| b.name == a.name) {
                return Err(ConfigError::DuplicateInterface(a.name.clone()));
            }
        }
        let first = self.port_min.saturating_add(self.port_min % 2);
        if self.port_max < first.saturating_add(1) || first == 0 {
            return Err(ConfigError::PortRange(self.port_min, self.port_max));
        }
        if self.workers == 0 {
            return Err(ConfigError::Workers);
        }
        if let Some(r) = &self.redis {
            r.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane() {
        let c = RelayConfig::default();
        c.validate().unwrap();
        assert_eq!(
            (c.port_min, c.port_max, c.tos, c.timeout_secs),
            (30000, 39999, 184, 60)
        );
        assert_eq!(c.ng_udp.port(), 22222);
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = RelayConfig {
            port_min: 30001,
            port_max: 30001,
            ..RelayConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::PortRange(30001, 30001)));
        c = RelayConfig::default();
        c.interfaces.push(c.interfaces[0].clone());
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DuplicateInterface(_))
        ));
        c.interfaces.clear();
        assert_eq!(c.validate(), Err(ConfigError::NoInterface));
    }

    #[test]
    fn example_relay_configs_are_valid() {
        for text in [
            include_str!("../../../examples/relay-a.toml"),
            include_str!("../../../examples/relay-b.toml"),
        ] {
            let file: toml::Table = toml::from_str(text).unwrap();
            let relay: RelayConfig = file["relay"].clone().try_into().unwrap();
            relay.validate().unwrap();
            assert!(relay.redis.is_some());
        }
    }

    #[test]
    fn redis_section_parses_and_validates() {
        let c: RelayConfig = toml::from_str(
            r#"
            [redis]
            url = "redis://127.0.0.1:6379/2"
            relay_id = "relay-a"
            follow = ["relay-b"]
            heartbeat_interval_ms = 50
            heartbeat_timeout_ms = 200
            "#,
        )
        .unwrap();
        let r = c.redis.clone().unwrap();
        assert_eq!(
            (r.relay_id.as_str(), r.heartbeat_timeout_ms),
            ("relay-a", 200)
        );
        assert!(r.standby && r.key_prefix == "voxline:relay");
        c.validate().unwrap();
        let bad = |f: &dyn Fn(&mut RedisConfig)| {
            let mut r = r.clone();
            f(&mut r);
            r.validate().unwrap_err()
        };
        assert_eq!(bad(&|r| r.relay_id.clear()), ConfigError::RelayId);
        assert_eq!(bad(&|r| r.relay_id = "a:b".into()), ConfigError::RelayId);
        assert_eq!(bad(&|r| r.follow = vec!["*".into()]), ConfigError::RelayId);
        assert_eq!(
            bad(&|r| r.heartbeat_timeout_ms = 60),
            ConfigError::Heartbeat
        );
        assert_eq!(bad(&|r| r.key_prefix.clear()), ConfigError::KeyPrefix);
        assert!(matches!(
            bad(&|r| r.url = "http://x".into()),
            ConfigError::RedisUrl(_)
        ));
        assert!(
            toml::from_str::<RelayConfig>("[redis]\nrelay = \"x\"\n").is_err(),
            "unknown keys are errors"
        );
        let d = RedisConfig::default();
        assert!(
            d.heartbeat_timeout_ms <= 1000,
            "takeover within 1 s by default"
        );
    }
}
