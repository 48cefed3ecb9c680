//! Hosts as they appear in URIs and Via sent-by: domain names, IPv4
//! addresses and bracketed IPv6 references.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host: a domain name or an IP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A domain name, exactly as received.
    Domain(&'a str),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets on the wire).
    Ipv6(Ipv6Addr),
}

/// A dotted-quad IPv4 address, as `Ipv4Addr::from_str` reads it (four
/// decimal octets up to 255, no leading zeros), in one pass without the
/// general parser's machinery: every URI and Via host goes through here.
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut part = 0;
    let mut value: u16 = 0;
    let mut digits = 0;
    for &c in s {
        if c == b'.' {
            if digits == 0 || part == 3 {
                return None;
            }
            octets[part] = value as u8;
            part += 1;
            value = 0;
            digits = 0;
        } else {
            let d = c.wrapping_sub(b'0');
            if d > 9 || (digits == 1 && value == 0) {
                return None; // not a digit, or a leading zero
            }
            value = value * 10 + u16::from(d);
            digits += 1;
            if value > 255 {
                return None;
            }
        }
    }
    if digits == 0 || part != 3 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

impl<'a> Host<'a> {
    /// Parses `hostname / IPv4address / IPv6reference`.
    pub fn parse(s: &'a str) -> Option<Host<'a>> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            return inner.parse().ok().map(Host::Ipv6);
        }
        if s.is_empty() {
            return None;
        }
        let bytes = s.as_bytes();
        if bytes.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
            return parse_ipv4(bytes).map(Host::Ipv4);
        }
        if bytes
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
        {
            Some(Host::Domain(s))
        } else {
            None
        }
    }

    /// The IP address, if the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Domain(_) => None,
            Host::Ipv4(a) => Some(IpAddr::V4(a)),
            Host::Ipv6(a) => Some(IpAddr::V6(a)),
        }
    }
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Length of the host at the start of `s` (up to `:`, `;`, `?`, white space
/// or the end; a bracketed reference up to its `]`).
pub(crate) fn host_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        return memchr::memchr(b']', b).map_or(b.len(), |i| i + 1);
    }
    b.iter()
        .position(|&c| {
            matches!(
                c,
                b':' | b';' | b'?' | b',' | b'>' | b' ' | b'\t' | b'\r' | b'\n'
            )
        })
        .unwrap_or(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_reads_like_the_standard_parser() {
        let mut cases: Vec<String> = [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.02.3.4",
            "1.2.3.00",
            "1..3.4",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4.",
            "",
            ".",
            "1234.1.1.1",
            "10.0.0.255",
            "10.0.0.2555",
            "0.0.0.01",
            "192.168.100.200",
            "99999999999999999999.1.1.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for a in [0u32, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 300] {
            cases.push(format!("{a}.{a}.1.{a}"));
        }
        for s in &cases {
            assert_eq!(
                parse_ipv4(s.as_bytes()),
                s.parse::<Ipv4Addr>().ok(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(
            Host::parse("example.com"),
            Some(Host::Domain("example.com"))
        );
        assert_eq!(
            Host::parse("192.0.2.1"),
            Some(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(Host::parse("[::1]"), Some(Host::Ipv6(Ipv6Addr::LOCALHOST)));
        assert_eq!(Host::parse("[::1"), None);
        assert_eq!(Host::parse("[zz]"), None);
        assert_eq!(Host::parse("1.2.3.999"), None);
        assert_eq!(Host::parse(""), None);
        assert_eq!(Host::parse("a b"), None);
        assert_eq!(
            Host::parse("[2001:db8::1]").map(|h| h.to_string()),
            Some("[2001:db8::1]".into())
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(host_len("[::1]:5060"), 5);
        assert_eq!(host_len("h.example:5060"), 9);
        assert_eq!(host_len("h;lr"), 1);
        assert_eq!(host_len("h"), 1);
    }
}
