//! Locating SIP servers (RFC 3263): a URI becomes an ordered list of
//! transport + address targets, tried in turn on failure.
//!
//! The selection rules (transport choice, NAPTR order, SRV priority and
//! weight) are plain functions over records; [`Resolver`] only feeds them
//! with DNS answers (hickory).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};
use voxline_sip::{Host, SipUri, Uri};
use voxline_transaction::{Peer, TransportKind};

/// Why a URI could not be resolved to any target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The URI is not a SIP URI we can route.
    #[error("cannot route to {0}")]
    Unroutable(String),
    /// DNS has no usable record (or DNS is off and the host is a name).
    #[error("no address for {0}")]
    NotFound(String),
}

/// What a URI asks for before any DNS query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// An IP address: no DNS needed.
    Literal(Peer),
    /// A host name to look up.
    Name {
        /// The name.
        host: String,
        /// Explicit port: A/AAAA only (RFC 3263 §4.2).
        port: Option<u16>,
        /// Explicit transport (`transport=` parameter), else chosen by NAPTR/SRV.
        transport: Option<TransportKind>,
        /// `sips:` URI.
        secure: bool,
    },
}

/// Reads the routing-relevant parts of a SIP URI (maddr overrides the host).
pub fn plan(uri: &SipUri<'_>) -> Plan {
    let transport = uri.transport().and_then(TransportKind::parse);
    let default_transport = if uri.secure {
        TransportKind::Tls
    } else {
        TransportKind::Udp
    };
    let default_port = if uri.secure { 5061 } else { 5060 };
    let host: Host<'_> = uri.maddr().and_then(Host::parse).unwrap_or(uri.host);
    let host_text = match uri.maddr() {
        Some(m) => m,
        None => uri.host_str,
    };
    let local = host_text.eq_ignore_ascii_case("localhost");
    match host.ip() {
        Some(ip) => Plan::Literal(Peer::new(
            SocketAddr::new(ip, uri.port.unwrap_or(default_port)),
            transport.unwrap_or(default_transport),
        )),
        None if local => Plan::Literal(Peer::new(
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                uri.port.unwrap_or(default_port),
            ),
            transport.unwrap_or(default_transport),
        )),
        None => Plan::Name {
            host: host_text.trim_end_matches('.').to_ascii_lowercase(),
            port: uri.port,
            transport,
            secure: uri.secure,
        },
    }
}

/// One SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower is tried first.
    pub priority: u16,
    /// Share among equal priorities.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host.
    pub target: String,
}

/// Orders SRV records per RFC 2782: ascending priority; within a priority,
/// a weighted random order (`pick(total)` returns a value in `0..=total`).
pub fn order_srv(mut records: Vec<Srv>, mut pick: impl FnMut(u32) -> u32) -> Vec<Srv> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let prio = records[0].priority;
        let end = records
            .iter()
            .position(|r| r.priority != prio)
            .unwrap_or(records.len());
        let mut group: Vec<Srv> = records.drain(..end).collect();
        // Zero weights first, as RFC 2782 asks, so they get a small chance.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let target = pick(total);
            let mut running = 0;
            let idx = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= target
                })
                .unwrap_or(0);
            out.push(group.remove(idx));
        }
    }
    out
}

/// One NAPTR answer, reduced to what SIP uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Processing order.
    pub order: u16,
    /// Preference within an order.
    pub preference: u16,
    /// Flags (`s` for SRV).
    pub flags: String,
    /// Service (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`).
    pub service: String,
    /// The SRV name to query.
    pub replacement: String,
}

/// The SRV names to query from NAPTR answers, in order, with their
/// transport (RFC 3263 §4.1), keeping only transports we speak.
pub fn naptr_services(mut records: Vec<Naptr>, secure: bool) -> Vec<(TransportKind, String)> {
    records.sort_by_key(|r| (r.order, r.preference));
    records
        .into_iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter_map(|r| {
            let t = match r.service.to_ascii_uppercase().as_str() {
                "SIP+D2U" if !secure => TransportKind::Udp,
                "SIP+D2T" if !secure => TransportKind::Tcp,
                _ => return None,
            };
            Some((t, r.replacement.trim_end_matches('.').to_owned()))
        })
        .collect()
}

/// The SRV names to try without NAPTR (RFC 3263 §4.1 last paragraphs).
pub fn default_srv_names(
    host: &str,
    transport: Option<TransportKind>,
    secure: bool,
) -> Vec<(TransportKind, String)> {
    let all = if secure {
        vec![(TransportKind::Tls, format!("_sips._tcp.{host}"))]
    } else {
        vec![
            (TransportKind::Udp, format!("_sip._udp.{host}")),
            (TransportKind::Tcp, format!("_sip._tcp.{host}")),
        ]
    };
    match transport {
        Some(t) => all.into_iter().filter(|(k, _)| *k == t).collect(),
        None => all,
    }
}

/// Resolves URIs to targets.
pub struct Resolver {
    dns: Option<TokioResolver>,
    timeout: Duration,
}

impl Resolver {
    /// A resolver; `dns` off means only IP literals and `localhost` route.
    pub fn new(dns: bool, timeout: Duration) -> Self {
        let dns = if dns {
            match TokioResolver::builder_tokio() {
                Ok(b) => b.build().ok(),
                Err(e) => {
                    tracing::warn!(error = %e, "no system DNS configuration; only IP addresses are routable");
                    None
                }
            }
        } else {
            None
        };
        Resolver { dns, timeout }
    }

    /// The ordered targets for `uri`.
    pub async fn resolve(&self, uri: &str) -> Result<Vec<Peer>, ResolveError> {
        let parsed = Uri::parse(uri).map_err(|_| ResolveError::Unroutable(uri.to_owned()))?;
        let Some(sip) = parsed.as_sip() else {
            return Err(ResolveError::Unroutable(uri.to_owned()));
        };
        match plan(sip) {
            Plan::Literal(peer) => Ok(vec![peer]),
            Plan::Name {
                host,
                port,
                transport,
                secure,
            } => {
                let Some(dns) = &self.dns else {
                    return Err(ResolveError::NotFound(host));
                };
                tokio::time::timeout(
                    self.timeout,
                    self.lookup(dns, &host, port, transport, secure),
                )
                .await
                .unwrap_or_else(|_| Err(ResolveError::NotFound(host.clone())))
            }
        }
    }

    async fn lookup(
        &self,
        dns: &TokioResolver,
        host: &str,
        port: Option<u16>,
        transport: Option<TransportKind>,
        secure: bool,
    ) -> Result<Vec<Peer>, ResolveError> {
        let default_transport = transport.unwrap_or(if secure {
            TransportKind::Tls
        } else {
            TransportKind::Udp
        });
        if let Some(port) = port {
            return self.addresses(dns, host, port, default_transport).await;
        }
        let mut services = Vec::new();
        if transport.is_none()
            && let Ok(answer) = dns.lookup(host, RecordType::NAPTR).await
        {
            let records = answer
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n) => Some(Naptr {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        service: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: n.replacement.to_utf8(),
                    }),
                    _ => None,
                })
                .collect();
            services = naptr_services(records, secure);
        }
        if services.is_empty() {
            services = default_srv_names(host, transport, secure);
        }
        let mut out = Vec::new();
        for (kind, name) in services {
            let Ok(answer) = dns.lookup(name.as_str(), RecordType::SRV).await else {
                continue;
            };
            let records: Vec<Srv> = answer
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_utf8().trim_end_matches('.').to_owned(),
                    }),
                    _ => None,
                })
                .collect();
            for srv in order_srv(records, |total| rand::random_range(0..=total)) {
                if let Ok(peers) = self.addresses(dns, &srv.target, srv.port, kind).await {
                    out.extend(peers);
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        let port = if secure { 5061 } else { 5060 };
        self.addresses(dns, host, port, default_transport).await
    }

    async fn addresses(
        &self,
        dns: &TokioResolver,
        host: &str,
        port: u16,
        kind: TransportKind,
    ) -> Result<Vec<Peer>, ResolveError> {
        let answer = dns
            .lookup_ip(host)
            .await
            .map_err(|_| ResolveError::NotFound(host.to_owned()))?;
        let peers: Vec<Peer> = answer
            .iter()
            .map(|ip| Peer::new(SocketAddr::new(ip, port), kind))
            .collect();
        if peers.is_empty() {
            Err(ResolveError::NotFound(host.to_owned()))
        } else {
            Ok(peers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        SipUri::parse(s).unwrap()
    }

    #[test]
    fn literals_need_no_dns() {
        assert_eq!(
            plan(&sip("sip:bob@192.0.2.4")),
            Plan::Literal(Peer::udp("192.0.2.4:5060".parse().unwrap()))
        );
        assert_eq!(
            plan(&sip("sip:bob@[2001:db8::1]:5070;transport=tcp")),
            Plan::Literal(Peer::new(
                "[2001:db8::1]:5070".parse().unwrap(),
                TransportKind::Tcp
            ))
        );
        assert_eq!(
            plan(&sip("sips:bob@192.0.2.4")),
            Plan::Literal(Peer::new(
                "192.0.2.4:5061".parse().unwrap(),
                TransportKind::Tls
            ))
        );
        assert_eq!(
            plan(&sip("sip:bob@example.com;maddr=192.0.2.7")),
            Plan::Literal(Peer::udp("192.0.2.7:5060".parse().unwrap()))
        );
        assert_eq!(
            plan(&sip("sip:localhost:5080")),
            Plan::Literal(Peer::udp("127.0.0.1:5080".parse().unwrap()))
        );
        assert!(
            matches!(plan(&sip("sip:bob@Example.COM")), Plan::Name { host, port: None, .. } if host == "example.com")
        );
    }

    #[test]
    fn srv_order_is_priority_then_weight() {
        let r = |p, w, t: &str| Srv {
            priority: p,
            weight: w,
            port: 5060,
            target: t.into(),
        };
        let records = vec![r(20, 0, "backup"), r(10, 60, "a"), r(10, 40, "b")];
        // Always pick the low end: weights in order of appearance.
        let ordered = order_srv(records.clone(), |_| 1);
        assert_eq!(
            ordered
                .iter()
                .map(|s| s.target.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "backup"]
        );
        // Pick the high end: the last of the group first.
        let ordered = order_srv(records, |total| total);
        assert_eq!(
            ordered
                .iter()
                .map(|s| s.target.as_str())
                .collect::<Vec<_>>(),
            ["b", "a", "backup"]
        );
    }

    #[test]
    fn naptr_keeps_known_transports_in_order() {
        let n = |o, p, s: &str, r: &str| Naptr {
            order: o,
            preference: p,
            flags: "s".into(),
            service: s.into(),
            replacement: r.into(),
        };
        let services = naptr_services(
            vec![
                n(50, 50, "SIP+D2U", "_sip._udp.example.com."),
                n(90, 50, "SIP+D2T", "_sip._tcp.example.com."),
                n(10, 50, "SIP+D2S", "_sip._sctp.example.com."),
            ],
            false,
        );
        assert_eq!(
            services,
            vec![
                (TransportKind::Udp, "_sip._udp.example.com".to_owned()),
                (TransportKind::Tcp, "_sip._tcp.example.com".to_owned())
            ]
        );
        assert_eq!(
            default_srv_names("example.com", Some(TransportKind::Tcp), false).len(),
            1
        );
    }
}
