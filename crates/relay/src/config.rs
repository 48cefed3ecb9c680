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
    /// Most concurrent sessions; beyond it offers fail with
    /// `Parallel session limit reached`. 0 = unlimited.
    pub max_sessions: usize,
    /// Commands queued per ng source before further ones are dropped.
    pub ng_queue_per_source: usize,
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
            max_sessions: 0,
            ng_queue_per_source: 256,
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
}
