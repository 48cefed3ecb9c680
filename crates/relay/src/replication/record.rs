//! What a relay stores in Redis: one record per session (call), one info
//! record and one heartbeat per relay. JSON, versioned, readable with
//! `redis-cli`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::InterfaceConfig;
use crate::session::Call;

/// Record format version; readers skip records of other versions.
pub const RECORD_VERSION: u32 = 1;

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not valid JSON for the type.
    #[error("malformed record: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by an incompatible version.
    #[error("record version {0} not supported (this relay reads {RECORD_VERSION})")]
    Version(u32),
}

/// One session as stored under `<prefix>:call:<call-id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Format version.
    pub v: u32,
    /// Relay id of the owner (the relay forwarding its media).
    pub owner: String,
    /// Wall-clock time of the write (ms since the epoch).
    pub updated_ms: u64,
    /// The owner's interfaces; legs refer to them by index.
    pub interfaces: Vec<InterfaceConfig>,
    /// The session.
    pub call: Call,
}

impl SessionRecord {
    /// JSON text.
    pub fn encode(&self) -> Result<String, RecordError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parses and checks the version.
    pub fn decode(text: &[u8]) -> Result<SessionRecord, RecordError> {
        let r: SessionRecord = serde_json::from_slice(text)?;
        if r.v != RECORD_VERSION {
            return Err(RecordError::Version(r.v));
        }
        Ok(r)
    }

    /// Local sockets of every stream: (key in the record's call, address).
    pub fn local_sockets(&self) -> Vec<(u64, SocketAddr)> {
        let mut out = Vec::new();
        for leg in &self.call.legs {
            let Some(ifc) = self.interfaces.get(leg.interface) else {
                continue;
            };
            for m in &leg.media {
                for s in m.rtp.iter().chain(m.rtcp.iter()) {
                    out.push((s.key, SocketAddr::new(ifc.address, s.local_port)));
                }
            }
        }
        out
    }
}

/// A relay's addresses, stored under `<prefix>:relay:<id>`: what a standby
/// binds when it takes the relay over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// Format version.
    pub v: u32,
    /// Relay id.
    pub id: String,
    /// ng UDP addresses served (its own and any taken over).
    pub ng_udp: Vec<SocketAddr>,
    /// ng TCP addresses served.
    pub ng_tcp: Vec<SocketAddr>,
    /// Media interfaces (its own and any taken over).
    pub interfaces: Vec<InterfaceConfig>,
    /// Start time (ms since the epoch).
    pub started_ms: u64,
}

impl RelayInfo {
    /// JSON text.
    pub fn encode(&self) -> Result<String, RecordError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parses and checks the version.
    pub fn decode(text: &[u8]) -> Result<RelayInfo, RecordError> {
        let r: RelayInfo = serde_json::from_slice(text)?;
        if r.v != RECORD_VERSION {
            return Err(RecordError::Version(r.v));
        }
        Ok(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info() -> RelayInfo {
        RelayInfo {
            v: RECORD_VERSION,
            id: "relay-a".into(),
            ng_udp: vec!["127.0.0.2:22222".parse().unwrap()],
            ng_tcp: vec![],
            interfaces: vec![InterfaceConfig {
                name: "default".into(),
                address: "127.0.0.2".parse().unwrap(),
                advertised_address: None,
            }],
            started_ms: 1,
        }
    }

    #[test]
    fn relay_info_round_trips_and_versions_are_checked() {
        let i = info();
        let text = i.encode().unwrap();
        assert_eq!(RelayInfo::decode(text.as_bytes()).unwrap(), i);
        let v2 = text.replace("\"v\":1", "\"v\":2");
        assert!(matches!(
            RelayInfo::decode(v2.as_bytes()),
            Err(RecordError::Version(2))
        ));
        assert!(matches!(
            RelayInfo::decode(b"{not json"),
            Err(RecordError::Json(_))
        ));
    }
}
