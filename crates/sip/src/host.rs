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
            return s.parse().ok().map(Host::Ipv4);
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
