//! Field-level parsing of the few SDP lines the relay reads.

use std::net::IpAddr;

use crate::SdpError;

/// A `c=` connection address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The address (`0.0.0.0` means hold in old-style SDP).
    pub address: IpAddr,
}

impl Connection {
    /// True for `0.0.0.0` / `::`.
    pub fn is_unspecified(&self) -> bool {
        self.address.is_unspecified()
    }
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The fields of an `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Username (`-` if none).
    pub username: String,
    /// Session id.
    pub session_id: String,
    /// Session version.
    pub version: u64,
    /// `IN`
    pub network_type: String,
    /// `IP4` / `IP6`
    pub address_type: String,
    /// Unicast address (kept as text: may be a host name).
    pub address: String,
}

/// What the relay reads from one media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// `audio`, `video`, ...
    pub kind: String,
    /// Port of the `m=` line (0 = rejected/disabled stream).
    pub port: u16,
    /// `<port>/<count>`; 1 if absent.
    pub port_count: u16,
    /// `RTP/AVP`, `RTP/AVPF`, ...
    pub protocol: String,
    /// Format list after the protocol, as written.
    pub formats: String,
    /// The effective connection (media-level, else session-level).
    pub connection: Connection,
    /// `a=rtcp:` port, if present.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp:` address, if present.
    pub rtcp_address: Option<IpAddr>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// Effective direction (media-level, else session-level, else sendrecv).
    pub direction: Direction,
    /// ICE attributes present (`ice-ufrag` or candidates).
    pub ice: bool,
}

pub(crate) struct MediaLine<'a> {
    pub kind: &'a str,
    pub port: u16,
    pub port_count: u16,
    pub protocol: &'a str,
    pub formats: &'a str,
}

pub(crate) struct OwnedMediaLine {
    pub kind: String,
    pub port: u16,
    pub port_count: Option<u16>,
    pub protocol: String,
    pub formats: String,
}

impl From<&MediaLine<'_>> for OwnedMediaLine {
    fn from(m: &MediaLine<'_>) -> Self {
        OwnedMediaLine {
            kind: m.kind.to_owned(),
            port: m.port,
            port_count: (m.port_count != 1).then_some(m.port_count),
            protocol: m.protocol.to_owned(),
            formats: m.formats.to_owned(),
        }
    }
}

impl OwnedMediaLine {
    pub fn render(&self) -> String {
        let mut s = format!("m={} {}", self.kind, self.port);
        if let Some(n) = self.port_count {
            s.push('/');
            s.push_str(&n.to_string());
        }
        s.push(' ');
        s.push_str(&self.protocol);
        if !self.formats.is_empty() {
            s.push(' ');
            s.push_str(&self.formats);
        }
        s
    }
}

pub(crate) fn parse_media_line(value: &str, line: usize) -> Result<MediaLine<'_>, SdpError> {
    let mut it = value.splitn(4, ' ');
    let kind = it
        .next()
        .filter(|k| !k.is_empty())
        .ok_or(SdpError::BadMedia {
            line,
            reason: "no media type",
        })?;
    let port_field = it.next().ok_or(SdpError::BadMedia {
        line,
        reason: "no port",
    })?;
    let (port, count) = match port_field.split_once('/') {
        Some((p, c)) => (p, Some(c)),
        None => (port_field, None),
    };
    let port: u16 = port.parse().map_err(|_| SdpError::BadMedia {
        line,
        reason: "port is not a number 0-65535",
    })?;
    let port_count: u16 = match count {
        Some(c) => c.parse().map_err(|_| SdpError::BadMedia {
            line,
            reason: "bad port count",
        })?,
        None => 1,
    };
    let protocol = it
        .next()
        .filter(|p| !p.is_empty())
        .ok_or(SdpError::BadMedia {
            line,
            reason: "no transport protocol",
        })?;
    let formats = it.next().unwrap_or_default();
    Ok(MediaLine {
        kind,
        port,
        port_count,
        protocol,
        formats,
    })
}

pub(crate) fn parse_connection(value: &str, line: usize) -> Result<Connection, SdpError> {
    let mut it = value.split_whitespace();
    let net = it.next();
    let fam = it.next();
    let addr = it.next();
    if net != Some("IN") {
        return Err(SdpError::BadConnection {
            line,
            reason: "network type is not IN",
        });
    }
    let addr = addr.ok_or(SdpError::BadConnection {
        line,
        reason: "no address",
    })?;
    // Multicast TTL/count suffixes: keep the address part.
    let addr = addr.split('/').next().unwrap_or(addr);
    let address: IpAddr = addr.parse().map_err(|_| SdpError::BadConnection {
        line,
        reason: "address is not an IP address",
    })?;
    match (fam, address) {
        (Some("IP4"), IpAddr::V4(_)) | (Some("IP6"), IpAddr::V6(_)) => Ok(Connection { address }),
        _ => Err(SdpError::BadConnection {
            line,
            reason: "address type does not match the address",
        }),
    }
}

pub(crate) fn parse_origin(value: &str, line: usize) -> Result<Origin, SdpError> {
    let f: Vec<&str> = value.split_whitespace().collect();
    let [
        username,
        session_id,
        version,
        network_type,
        address_type,
        address,
    ] = f.as_slice()
    else {
        return Err(SdpError::BadOrigin { line });
    };
    Ok(Origin {
        username: (*username).to_owned(),
        session_id: (*session_id).to_owned(),
        version: version.parse().map_err(|_| SdpError::BadOrigin { line })?,
        network_type: (*network_type).to_owned(),
        address_type: (*address_type).to_owned(),
        address: (*address).to_owned(),
    })
}

pub(crate) fn parse_rtcp_attr(value: &str) -> Option<(u16, Option<IpAddr>)> {
    let mut it = value.split_whitespace();
    let port: u16 = it.next()?.parse().ok()?;
    let addr = match (it.next(), it.next(), it.next()) {
        (Some("IN"), Some(_), Some(a)) => a.parse().ok(),
        _ => None,
    };
    Some((port, addr))
}

pub(crate) fn family_token(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IP4" } else { "IP6" }
}

pub(crate) fn connection_value(addr: IpAddr) -> String {
    format!("IN {} {}", family_token(addr), addr)
}
