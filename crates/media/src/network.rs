//! IP networks (`10.0.0.0/8`, `2001:db8::/32`, or a bare address) for the
//! direction rules.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IP network: an address and a prefix length. A bare address is a
/// single-host network (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The address part is not an IP address.
    #[error("'{0}' is not an IP address or network (use 10.0.0.0/8 or 2001:db8::/32)")]
    Address(String),
    /// The prefix is not a number within the address family's width.
    #[error("prefix '/{prefix}' is invalid for {addr} (at most /{max})")]
    Prefix {
        /// The address part.
        addr: IpAddr,
        /// The prefix text.
        prefix: String,
        /// The widest prefix of the family.
        max: u8,
    },
}

impl Network {
    /// A network from an address and a prefix length.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Network, NetworkError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(NetworkError::Prefix {
                addr,
                prefix: prefix.to_string(),
                max,
            });
        }
        Ok(Network { addr, prefix })
    }

    /// Whether `ip` lies inside this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.1.2.3`) match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Network, NetworkError> {
        let s = s.trim();
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| NetworkError::Address(s.to_owned()))?;
        let max = max_prefix(addr);
        let prefix = match prefix_text {
            None => max,
            Some(p) => p.parse::<u8>().map_err(|_| NetworkError::Prefix {
                addr,
                prefix: p.to_owned(),
                max,
            })?,
        };
        Network::new(addr, prefix)
    }
}

impl TryFrom<String> for Network {
    type Error = NetworkError;

    fn try_from(s: String) -> Result<Network, NetworkError> {
        s.parse()
    }
}

impl From<Network> for String {
    fn from(n: Network) -> String {
        n.to_string()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matches_by_prefix() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.1.2")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")));
        assert!(!n.contains(ip("2001:db8::1")));
        let any: Network = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("192.0.2.1")));
        let host: Network = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all6: Network = "::/0".parse().unwrap();
        assert!(all6.contains(ip("::1")));
    }

    #[test]
    fn rejects_bad_networks() {
        assert!(matches!(
            "10.0.0.0/33".parse::<Network>(),
            Err(NetworkError::Prefix { max: 32, .. })
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<Network>(),
            Err(NetworkError::Prefix { .. })
        ));
        assert!(matches!(
            "example.com/8".parse::<Network>(),
            Err(NetworkError::Address(_))
        ));
        assert!("::/129".parse::<Network>().is_err());
    }
}
