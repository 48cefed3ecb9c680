//! The Via header value (RFC 3261 §20.42, RFC 3581 rport).

use std::net::IpAddr;

use crate::error::ValueError;
use crate::frame::Span;
use crate::header_name::HeaderName;
use crate::host::{Host, host_len};
use crate::lex::{Cursor, is_lws, is_token_char, parse_digits};
use crate::params::Params;

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name, normally `SIP`.
    pub protocol_name: &'a str,
    /// Protocol version, normally `2.0`.
    pub protocol_version: &'a str,
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...).
    pub transport: &'a str,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by host as written.
    pub host_str: &'a str,
    /// sent-by port.
    pub port: Option<u16>,
    /// All parameters, raw.
    pub params: Params<'a>,
    /// `branch`.
    pub branch: Option<&'a str>,
    /// `received`, raw.
    pub received: Option<&'a str>,
    /// `rport`: `Some(None)` when present without a value (RFC 3581).
    pub rport: Option<Option<u16>>,
    /// `maddr`.
    pub maddr: Option<&'a str>,
    /// `ttl`.
    pub ttl: Option<u8>,
}

/// A transport named in a Via.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// WebSocket
    Ws,
    /// Secure WebSocket
    Wss,
    /// Anything else.
    Other,
}

impl Transport {
    /// Maps a transport token (case-insensitive).
    pub fn from_token(t: &str) -> Transport {
        match t.len() {
            2 if t.eq_ignore_ascii_case("ws") => Transport::Ws,
            3 if t.eq_ignore_ascii_case("udp") => Transport::Udp,
            3 if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
            3 if t.eq_ignore_ascii_case("tls") => Transport::Tls,
            3 if t.eq_ignore_ascii_case("wss") => Transport::Wss,
            4 if t.eq_ignore_ascii_case("sctp") => Transport::Sctp,
            _ => Transport::Other,
        }
    }

    /// The canonical upper-case token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Other => "OTHER",
        }
    }

    /// True for transports that need Content-Length framing.
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma list).
    pub fn parse(s: &'a str) -> Result<Via<'a>, ValueError> {
        Self::parse_inner(s).ok_or(ValueError::Malformed(HeaderName::Via))
    }

    fn parse_inner(s: &'a str) -> Option<Via<'a>> {
        let mut c = Cursor::new(s);
        c.skip_lws();
        let protocol_name = c.token()?;
        c.skip_lws();
        c.eat(b'/').then_some(())?;
        c.skip_lws();
        let protocol_version = c.token()?;
        c.skip_lws();
        c.eat(b'/').then_some(())?;
        c.skip_lws();
        let transport = c.token()?;
        if !c.skip_lws() {
            return None;
        }
        let rest = c.rest();
        let hl = host_len(rest);
        let host_str = c.slice(c.pos(), c.pos() + hl);
        let host = Host::parse(host_str)?;
        for _ in 0..hl {
            c.bump();
        }
        let save = c;
        c.skip_lws();
        let mut port = None;
        if c.eat(b':') {
            c.skip_lws();
            let digits = c.take_while(|b| b.is_ascii_digit());
            port = Some(digits.parse::<u16>().ok()?);
        } else {
            c = save;
        }
        let (mut branch, mut received, mut rport, mut maddr, mut ttl) =
            (None, None, None, None, None);
        let params = Params::parse_header_visit(&mut c, |name, value| {
            match name.len() {
                6 if name.eq_ignore_ascii_case("branch") => branch = Some(value?),
                8 if name.eq_ignore_ascii_case("received") => received = Some(value?),
                5 if name.eq_ignore_ascii_case("rport") => {
                    rport = Some(match value {
                        None => None,
                        Some(v) => Some(u16::try_from(parse_digits(v)?).ok()?),
                    })
                }
                5 if name.eq_ignore_ascii_case("maddr") => maddr = Some(value?),
                3 if name.eq_ignore_ascii_case("ttl") => {
                    ttl = Some(u8::try_from(parse_digits(value?)?).ok()?)
                }
                _ => {}
            }
            Some(())
        })?;
        c.skip_lws();
        // Trailing garbage is an error.
        if !c.at_end() {
            return None;
        }
        let via = Via {
            protocol_name,
            protocol_version,
            transport,
            host,
            host_str,
            port,
            params,
            branch,
            received,
            rport,
            maddr,
            ttl,
        };
        if via
            .branch
            .is_some_and(|b| b.is_empty() || !b.bytes().all(|c| is_token_char(c) && !is_lws(c)))
        {
            return None;
        }
        Some(via)
    }

    /// The transport as an enum.
    pub fn transport_kind(&self) -> Transport {
        Transport::from_token(self.transport)
    }

    /// True when the branch starts with the RFC 3261 magic cookie and has
    /// something after it (RFC 4475 §3.2.1: the cookie alone is not unique).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter as an IP address, if it is one.
    pub fn received_ip(&self) -> Option<IpAddr> {
        let r = self.received?;
        let r = r
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(r);
        r.parse().ok()
    }

    /// Port from sent-by or the default (5060, or 5061 for TLS).
    pub fn port_or_default(&self) -> u16 {
        self.port
            .unwrap_or(if self.transport_kind() == Transport::Tls {
                5061
            } else {
                5060
            })
    }
}

/// The sent-by host of a [`ViaSpans`].
#[derive(Clone, Copy, Debug)]
enum HostSpan {
    Domain(Span),
    Ipv4(std::net::Ipv4Addr),
    Ipv6(std::net::Ipv6Addr),
}

/// A parsed [`Via`] kept as offsets into the text it was parsed from, so a
/// [`Message`](crate::Message) can keep its top Via without borrowing from
/// itself: resolving it slices the text again instead of parsing it (a
/// request's top Via is read by validation, the transaction key, the
/// `received` stamp and every response; keeping it gave OPTIONS/s +1 %).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViaSpans {
    protocol_name: Span,
    protocol_version: Span,
    transport: Span,
    host: HostSpan,
    host_str: Span,
    port: Option<u16>,
    params: Span,
    branch: Option<Span>,
    received: Option<Span>,
    rport: Option<Option<u16>>,
    maddr: Option<Span>,
    ttl: Option<u8>,
}

/// Where `part` lies in `base`; `None` when it is not a slice of it.
fn span_of(part: &str, base: &str) -> Option<Span> {
    let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    if end > base.len() {
        return None;
    }
    Some(Span {
        start: u32::try_from(start).ok()?,
        end: u32::try_from(end).ok()?,
    })
}

impl ViaSpans {
    /// The offsets of `via`'s fields in `base`, the text it was parsed
    /// from; `None` when a field is not a slice of `base`.
    pub(crate) fn capture(via: &Via<'_>, base: &str) -> Option<ViaSpans> {
        let opt = |v: Option<&str>| match v {
            None => Some(None),
            Some(s) => span_of(s, base).map(Some),
        };
        Some(ViaSpans {
            protocol_name: span_of(via.protocol_name, base)?,
            protocol_version: span_of(via.protocol_version, base)?,
            transport: span_of(via.transport, base)?,
            host: match via.host {
                Host::Domain(d) => HostSpan::Domain(span_of(d, base)?),
                Host::Ipv4(a) => HostSpan::Ipv4(a),
                Host::Ipv6(a) => HostSpan::Ipv6(a),
            },
            host_str: span_of(via.host_str, base)?,
            port: via.port,
            params: span_of(via.params.as_str(), base)?,
            branch: opt(via.branch)?,
            received: opt(via.received)?,
            rport: via.rport,
            maddr: opt(via.maddr)?,
            ttl: via.ttl,
        })
    }

    /// The [`Via`] again, its fields sliced from `base` (the text given
    /// to [`capture`](Self::capture)).
    pub(crate) fn resolve<'a>(&self, base: &'a str) -> Via<'a> {
        let at = |s: Span| {
            base.get(s.start as usize..s.end as usize)
                .unwrap_or_default()
        };
        Via {
            protocol_name: at(self.protocol_name),
            protocol_version: at(self.protocol_version),
            transport: at(self.transport),
            host: match self.host {
                HostSpan::Domain(s) => Host::Domain(at(s)),
                HostSpan::Ipv4(a) => Host::Ipv4(a),
                HostSpan::Ipv6(a) => Host::Ipv6(a),
            },
            host_str: at(self.host_str),
            port: self.port,
            params: Params::from_validated(at(self.params)),
            branch: self.branch.map(at),
            received: self.received.map(at),
            rport: self.rport,
            maddr: self.maddr.map(at),
            ttl: self.ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn plain() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport;received=192.0.2.9;ttl=16;maddr=239.1.1.1").unwrap();
        assert_eq!(
            (v.protocol_name, v.protocol_version, v.transport),
            ("SIP", "2.0", "UDP")
        );
        assert_eq!(v.transport_kind(), Transport::Udp);
        assert_eq!(v.host, Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch, Some("z9hG4bKabc"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport, Some(None));
        assert_eq!(
            v.received_ip(),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)))
        );
        assert_eq!(v.ttl, Some(16));
        assert_eq!(v.maddr, Some("239.1.1.1"));
    }

    #[test]
    fn tortuous_whitespace() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch, Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(
            "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.host, Host::Domain("spindle.example.com"));
        assert_eq!(v.branch, Some("z9hG4bK9ikj8"));
        let v = Via::parse("SIP/2.0/TLS [2001:db8::9] : 5061 ;rport=5070").unwrap();
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport, Some(Some(5070)));
        assert_eq!(v.port_or_default(), 5061);
    }

    #[test]
    fn rejects() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host:port",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP host;rport=99999",
            "",
            "SIP/2.0/UDPhost",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            !Via::parse("SIP/2.0/UDP h;branch=z9hG4bK")
                .unwrap()
                .has_rfc3261_branch()
        );
    }
}
