//! Reading a REGISTER into a location update (RFC 3261 §10.3 steps 5-7),
//! without I/O, so every rule is unit-tested.

use std::net::IpAddr;

use voxline_location::{ContactUpdate, Contacts, Source, Transport, Update};
use voxline_sip::{Contact, HeaderName, Message};
use voxline_transaction::{Peer, TransportKind};

use crate::config::RegistrarConfig;

/// Why a REGISTER is refused before it reaches the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400 with this reason phrase.
    BadRequest(&'static str),
    /// 423 Interval Too Brief; the Min-Expires value to send.
    IntervalTooBrief(u32),
    /// 403: the To domain is not one we serve.
    ForeignDomain,
}

/// A REGISTER turned into what the store needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// No Contact header: list the current bindings.
    Query {
        /// `user@domain`.
        aor: String,
    },
    /// Add, refresh or remove bindings.
    Update {
        /// `user@domain`.
        aor: String,
        /// The change.
        update: Update,
    },
}

impl Registration {
    /// The address-of-record.
    pub fn aor(&self) -> &str {
        match self {
            Registration::Query { aor } | Registration::Update { aor, .. } => aor,
        }
    }
}

/// The address-of-record of a REGISTER: the To URI's user and host (host
/// lower-cased, user unescaped, case kept: user parts are case-sensitive).
pub fn address_of_record(msg: &Message) -> Result<(String, String), Refusal> {
    let to = msg
        .to()
        .map_err(|_| Refusal::BadRequest("Bad Request - Malformed To"))?;
    let uri = to.uri.as_sip().ok_or(Refusal::BadRequest(
        "Bad Request - To Must Be a SIP or SIPS URI",
    ))?;
    let user = uri
        .user_decoded()
        .ok_or(Refusal::BadRequest("Bad Request - To has no user part"))?;
    Ok((
        user.into_owned(),
        uri.host_str.trim_matches(['[', ']']).to_ascii_lowercase(),
    ))
}

/// The address-of-record of a REGISTER as `user@domain` (see
/// [`address_of_record`]), with the length of its user part;
/// [`Refusal::ForeignDomain`] unless `is_local_domain(domain)`.
pub fn local_address_of_record(
    msg: &Message,
    is_local_domain: impl Fn(&str) -> bool,
) -> Result<(String, usize), Refusal> {
    let (user, domain) = address_of_record(msg)?;
    if !is_local_domain(&domain) {
        return Err(Refusal::ForeignDomain);
    }
    let at = user.len();
    let mut aor = user;
    aor.reserve(1 + domain.len());
    aor.push('@');
    aor.push_str(&domain);
    Ok((aor, at))
}

/// Reads `msg`, received from `peer`, into a [`Registration`].
pub fn read_register(
    msg: &Message,
    peer: &Peer,
    config: &RegistrarConfig,
    is_local_domain: impl Fn(&str) -> bool,
) -> Result<Registration, Refusal> {
    let (aor, _) = local_address_of_record(msg, is_local_domain)?;
    read_registration(msg, peer, config, aor)
}

/// Reads the rest of `msg` (Contact, Expires, Path...) for the already
/// checked address-of-record `aor` (RFC 3261 §10.3 steps 6-7, after
/// authentication).
pub fn read_registration(
    msg: &Message,
    peer: &Peer,
    config: &RegistrarConfig,
    aor: String,
) -> Result<Registration, Refusal> {
    if !msg.has(HeaderName::Contact) {
        return Ok(Registration::Query { aor });
    }
    let header_expires = match msg.has(HeaderName::Expires) {
        true => Some(
            msg.expires()
                .map_err(|_| Refusal::BadRequest("Bad Request - Malformed Expires"))?,
        ),
        false => None,
    };
    let mut contacts = Vec::new();
    let mut star = false;
    let mut count = 0usize;
    // behind_nat, computed on the contacts as they are read.
    let mut nat = false;
    for c in msg.contacts() {
        count += 1;
        match c.map_err(|_| Refusal::BadRequest("Bad Request - Malformed Contact"))? {
            Contact::Wildcard => star = true,
            Contact::Address(na) => {
                nat |= contact_behind_nat(&na.uri, peer);
                if !na.uri.is_sip() && na.uri.scheme() != "tel" {
                    // Any absolute URI may be bound, but we only route SIP.
                    return Err(Refusal::BadRequest(
                        "Bad Request - Contact must be a SIP URI",
                    ));
                }
                let requested = match na.expires() {
                    Some(Ok(e)) => e,
                    Some(Err(_)) => {
                        return Err(Refusal::BadRequest(
                            "Bad Request - Malformed Contact expires",
                        ));
                    }
                    None => header_expires.unwrap_or(config.default_expires),
                };
                let expires = config.grant(requested)?;
                let q = match na.q() {
                    Some(Ok(q)) => q,
                    Some(Err(_)) => {
                        return Err(Refusal::BadRequest("Bad Request - Malformed Contact q"));
                    }
                    None => 1000,
                };
                let instance = na
                    .params
                    .get("+sip.instance")
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned);
                let reg_id = match na.params.get("reg-id") {
                    Some(v) => Some(
                        v.parse::<u32>()
                            .map_err(|_| Refusal::BadRequest("Bad Request - Malformed reg-id"))?,
                    ),
                    None => None,
                };
                contacts.push(ContactUpdate {
                    uri: na.uri.as_str().to_owned(),
                    expires,
                    q,
                    instance,
                    reg_id,
                    params: other_params(&na.params),
                });
            }
        }
    }
    let call_id = msg
        .call_id()
        .map_err(|_| Refusal::BadRequest("Bad Request - Missing Call-ID"))?
        .to_owned();
    let cseq = msg
        .cseq()
        .map_err(|_| Refusal::BadRequest("Bad Request - Malformed CSeq"))?
        .seq;
    let contacts = if star {
        // RFC 3261 §10.3 step 6: `*` only alone and only with Expires: 0.
        if count != 1 || header_expires != Some(0) {
            return Err(Refusal::BadRequest(
                "Bad Request - Contact * needs Expires: 0 and no other contact",
            ));
        }
        Contacts::RemoveAll
    } else {
        Contacts::List(contacts)
    };
    let nat = nat || via_behind_nat(msg, peer);
    let path = msg
        .header_lines(HeaderName::Path)
        .flat_map(split_top_commas)
        .map(str::to_owned)
        .collect();
    let user_agent = msg.header(HeaderName::UserAgent).map(str::to_owned);
    Ok(Registration::Update {
        aor,
        update: Update {
            call_id,
            cseq,
            source: Source {
                transport: location_transport(peer.transport),
                remote: peer.addr,
                local: peer.local.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            },
            path,
            user_agent,
            nat,
            contacts,
        },
    })
}

/// Contact parameters other than the ones the store keeps separately.
fn other_params(params: &voxline_sip::Params<'_>) -> String {
    let mut out = String::new();
    for (name, value) in params.iter() {
        if name.eq_ignore_ascii_case("expires")
            || name.eq_ignore_ascii_case("q")
            || name.eq_ignore_ascii_case("+sip.instance")
            || name.eq_ignore_ascii_case("reg-id")
        {
            continue;
        }
        out.push(';');
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// Splits a header value at top-level commas (outside quotes and `<>`).
fn split_top_commas(v: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth += 1,
            b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth <= 0 => {
                parts.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(v[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// The client is behind NAT when its Contact names an address other than
/// the one the REGISTER came from (RFC 3581 in practice: Kamailio's
/// `nat_uac_test` flags 1, 2 and 16), or a private address.
pub fn behind_nat(msg: &Message, peer: &Peer) -> bool {
    let mut nat = false;
    for c in msg.contacts().flatten() {
        if let Contact::Address(na) = c {
            nat |= contact_behind_nat(&na.uri, peer);
        }
    }
    nat || via_behind_nat(msg, peer)
}

/// The Contact part of [`behind_nat`] for one contact URI.
fn contact_behind_nat(uri: &voxline_sip::Uri<'_>, peer: &Peer) -> bool {
    let source = peer.addr;
    let Some(sip) = uri.as_sip() else {
        return false;
    };
    let Some(ip) = sip.host.ip() else {
        return false;
    };
    let port = sip.port.unwrap_or(if sip.secure { 5061 } else { 5060 });
    ip != source.ip()
        || (peer.transport == TransportKind::Udp && port != source.port())
        || (is_private(ip) && !is_private(source.ip()))
}

/// The Via part of [`behind_nat`]: over UDP, a top Via naming another
/// address or port than the source.
fn via_behind_nat(msg: &Message, peer: &Peer) -> bool {
    let source = peer.addr;
    peer.transport == TransportKind::Udp
        && msg.top_via().is_ok_and(|via| {
            via.host
                .ip()
                .is_some_and(|ip| ip != source.ip() || via.port.unwrap_or(5060) != source.port())
        })
}

/// RFC 1918, RFC 6598 (CGN), link-local and unique-local addresses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn location_transport(t: TransportKind) -> Transport {
    match t {
        TransportKind::Udp => Transport::Udp,
        TransportKind::Tcp | TransportKind::Sctp => Transport::Tcp,
        TransportKind::Tls => Transport::Tls,
        TransportKind::Ws => Transport::Ws,
        TransportKind::Wss => Transport::Wss,
    }
}

#[cfg(test)]
mod tests;
