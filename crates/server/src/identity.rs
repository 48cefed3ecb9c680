//! What "this node" means: its domains, host names and listening sockets.

use std::net::{IpAddr, SocketAddr};

use voxline_sip::{Host, SipUri};

/// The domains a node serves and the names and addresses it answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalIdentity {
    /// Domains whose users this node serves (registrar / location lookup),
    /// lower case.
    domains: Vec<String>,
    /// Host names and addresses that name this node itself (Route, Request-URI
    /// of OPTIONS pings), lower case.
    hosts: Vec<String>,
    /// Listening sockets.
    listeners: Vec<SocketAddr>,
}

impl LocalIdentity {
    /// An identity for `domains` with extra `hosts` (advertised names).
    pub fn new<D, H>(domains: D, hosts: H) -> Self
    where
        D: IntoIterator,
        D::Item: AsRef<str>,
        H: IntoIterator,
        H::Item: AsRef<str>,
    {
        LocalIdentity {
            domains: domains
                .into_iter()
                .map(|d| d.as_ref().to_ascii_lowercase())
                .collect(),
            hosts: hosts
                .into_iter()
                .map(|h| normalize_host(h.as_ref()))
                .collect(),
            listeners: Vec::new(),
        }
    }

    /// Adds the bound listening sockets (their IPs become "self").
    pub fn with_listeners(mut self, listeners: impl IntoIterator<Item = SocketAddr>) -> Self {
        for l in listeners {
            let ip = l.ip().to_string();
            if !l.ip().is_unspecified() && !self.hosts.contains(&ip) {
                self.hosts.push(ip);
            }
            self.listeners.push(l);
        }
        self
    }

    /// The served domains.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// Whether `host` is one of the served domains (case-insensitive).
    pub fn is_local_domain(&self, host: &str) -> bool {
        // Compared ignoring case, without a lower-case copy: this runs
        // several times per REGISTER.
        let h = trim_host(host);
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(h))
    }

    /// Whether `uri` addresses this node itself: its host is one of our
    /// names or addresses and its port one we listen on (absent port: the
    /// scheme default).
    pub fn is_self(&self, uri: &SipUri<'_>) -> bool {
        let host = trim_host(uri.host_str);
        let host_ok = self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            || self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
            || matches!(uri.host, Host::Ipv4(_) | Host::Ipv6(_)) && self.is_any_bound_ip(&uri.host);
        if !host_ok {
            return false;
        }
        let port = uri.port.unwrap_or(if uri.secure { 5061 } else { 5060 });
        self.listeners.is_empty() || self.listeners.iter().any(|l| l.port() == port)
    }

    fn is_any_bound_ip(&self, host: &Host<'_>) -> bool {
        let Some(ip) = host.ip() else {
            return false;
        };
        self.listeners
            .iter()
            .any(|l| l.ip() == ip || (l.ip().is_unspecified() && is_local_ip(ip)))
    }

    /// The first listener of the given family, for Via/Record-Route.
    pub fn listeners(&self) -> &[SocketAddr] {
        &self.listeners
    }
}

fn is_local_ip(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// A host without white space, IPv6 brackets or a trailing dot.
fn trim_host(h: &str) -> &str {
    h.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
}

/// [`trim_host`], lower-cased (the stored form of our names).
fn normalize_host(h: &str) -> String {
    trim_host(h).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> SipUri<'_> {
        SipUri::parse(s).unwrap()
    }

    #[test]
    fn domains_and_self() {
        let id = LocalIdentity::new(["Example.COM", "localhost"], ["proxy.example.com"])
            .with_listeners([
                "127.0.0.1:5060".parse().unwrap(),
                "[::1]:5070".parse().unwrap(),
            ]);
        assert!(id.is_local_domain("example.com"));
        assert!(id.is_local_domain("LOCALHOST"));
        assert!(!id.is_local_domain("other.net"));
        assert!(id.is_local_domain(" Example.Com. "));
        assert!(!id.is_local_domain("example.co"));
        assert!(!id.is_local_domain("example.comm"));
        assert!(id.is_self(&uri("sip:PROXY.Example.com;lr")));
        assert!(id.is_self(&uri("sip:example.com.")));
        assert!(id.is_self(&uri("sip:127.0.0.1;lr")));
        assert!(id.is_self(&uri("sip:proxy.example.com:5060;lr")));
        assert!(id.is_self(&uri("sip:[::1]:5070")));
        assert!(!id.is_self(&uri("sip:127.0.0.1:5999")));
        assert!(!id.is_self(&uri("sip:10.0.0.1")));
    }
}
