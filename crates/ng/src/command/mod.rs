//! Typed ng commands: parsing a request dictionary (server side) and
//! building one (client side).
//!
//! Key and flag names are matched case-insensitively with `-`, `_` and space
//! treated alike, as rtpengine does (`trust address` = `trust-address`).
//! Unknown keys, flags and list values are not errors: they are collected as
//! warnings for the reply's `warning` key. Building request dictionaries
//! (client side) lives in [`encode`].

use std::net::IpAddr;

use crate::bencode::Value;

mod encode;

/// The commands this implementation executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// `ping` → `pong`.
    Ping,
    /// `offer`: SDP offer from the `from-tag` side.
    Offer,
    /// `answer`: SDP answer from the `to-tag` side.
    Answer,
    /// `delete`: tear down a call or a branch.
    Delete,
    /// `query`: per-call statistics.
    Query,
    /// `list`: call-ids.
    List,
    /// `statistics`: daemon-wide counters.
    Statistics,
}

impl CommandKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Ping => "ping",
            CommandKind::Offer => "offer",
            CommandKind::Answer => "answer",
            CommandKind::Delete => "delete",
            CommandKind::Query => "query",
            CommandKind::List => "list",
            CommandKind::Statistics => "statistics",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "ping" => CommandKind::Ping,
            "offer" => CommandKind::Offer,
            "answer" => CommandKind::Answer,
            "delete" => CommandKind::Delete,
            "query" => CommandKind::Query,
            "list" => CommandKind::List,
            "statistics" => CommandKind::Statistics,
            _ => return None,
        })
    }
}

/// Entries of the `flags` list that change behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `trust address`: use the SDP address as is; no latching.
    pub trust_address: bool,
    /// `SIP source address`: use `received-from` instead of the SDP address.
    pub sip_source_address: bool,
    /// `symmetric`: latch on the first packet (the default).
    pub symmetric: bool,
    /// `asymmetric`: never latch.
    pub asymmetric: bool,
    /// `strict source`: drop packets from any source but the expected one.
    pub strict_source: bool,
    /// `port latching`: latch once on the first packet.
    pub port_latching: bool,
    /// `no port latching`: never latch.
    pub no_port_latching: bool,
    /// `media handover`: re-latch whenever the source changes.
    pub media_handover: bool,
    /// `fatal` (delete): an unknown call is an error, not a warning.
    pub fatal: bool,
    /// `fast` (delete): no statistics in the reply.
    pub fast: bool,
}

/// Entries of the `replace` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replace {
    /// `origin`: the `o=` address becomes the relay's.
    pub origin: bool,
    /// `session-name`: `s=` becomes the relay's name.
    pub session_name: bool,
    /// `zero-address`: a `0.0.0.0` connection address is replaced too.
    pub zero_address: bool,
    /// `force-increment-sdp-ver`: always bump the `o=` version.
    pub force_increment_sdp_ver: bool,
}

/// `rtcp-mux` list entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtcpMux {
    /// `offer`: offer rtcp-mux to the recipient.
    pub offer: bool,
    /// `demux`: the relay demultiplexes; strip `a=rtcp-mux` towards the recipient.
    pub demux: bool,
    /// `accept`: accept rtcp-mux offered by the sender.
    pub accept: bool,
    /// `reject`: reject rtcp-mux.
    pub reject: bool,
    /// `require`: require rtcp-mux from the recipient.
    pub require: bool,
}

/// `ICE` key values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceMode {
    /// Strip all ICE attributes.
    Remove,
    /// Replace ICE attributes with the relay's own if the SDP has ICE.
    Default,
    /// Add the relay's own ICE attributes even if the SDP has none.
    Force,
}

/// `address-family` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    /// `IP4`
    Ip4,
    /// `IP6`
    Ip6,
}

impl AddressFamily {
    /// The SDP/ng token.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Ip4 => "IP4",
            AddressFamily::Ip6 => "IP6",
        }
    }
}

/// `transport-protocol` values this relay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportProtocol {
    /// `RTP/AVP`
    RtpAvp,
    /// `RTP/AVPF`
    RtpAvpf,
    /// `accept` (answer): keep what the answerer chose.
    Accept,
}

impl TransportProtocol {
    /// The SDP token.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportProtocol::RtpAvp => "RTP/AVP",
            TransportProtocol::RtpAvpf => "RTP/AVPF",
            TransportProtocol::Accept => "accept",
        }
    }
}

/// Parameters of `offer` and `answer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaRequest {
    /// `call-id` (required).
    pub call_id: String,
    /// `from-tag` (required).
    pub from_tag: String,
    /// `to-tag` (required for answer).
    pub to_tag: Option<String>,
    /// `via-branch`: distinguishes forked branches.
    pub via_branch: Option<String>,
    /// `sdp` (required).
    pub sdp: String,
    /// `flags`.
    pub flags: Flags,
    /// `replace`.
    pub replace: Replace,
    /// `direction` or `from-interface`/`to-interface`: logical interface
    /// facing the sender of this message, and the one facing its recipient.
    pub direction: Option<[String; 2]>,
    /// `address-family`.
    pub address_family: Option<AddressFamily>,
    /// `media-address`: overrides the endpoint address in the SDP.
    pub media_address: Option<IpAddr>,
    /// `received-from`: the SIP source address.
    pub received_from: Option<IpAddr>,
    /// `ICE`.
    pub ice: Option<IceMode>,
    /// `rtcp-mux`.
    pub rtcp_mux: RtcpMux,
    /// `transport-protocol`.
    pub transport_protocol: Option<TransportProtocol>,
    /// `TOS` (negative: keep; ≥ 256: back to the configured default).
    pub tos: Option<i64>,
    /// `label`.
    pub label: Option<String>,
    /// `supports` (e.g. `load limit`).
    pub supports: Vec<String>,
}

/// Parameters of `delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRequest {
    /// `call-id` (required).
    pub call_id: String,
    /// `from-tag`.
    pub from_tag: Option<String>,
    /// `to-tag`: delete only this branch.
    pub to_tag: Option<String>,
    /// `via-branch`: delete only the branch offered with it.
    pub via_branch: Option<String>,
    /// `flags` (`fatal`, `fast`).
    pub flags: Flags,
}

/// Parameters of `query`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryRequest {
    /// `call-id` (required).
    pub call_id: String,
    /// `from-tag`.
    pub from_tag: Option<String>,
    /// `to-tag`.
    pub to_tag: Option<String>,
}

/// A decoded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `ping`
    Ping,
    /// `offer`
    Offer(MediaRequest),
    /// `answer`
    Answer(MediaRequest),
    /// `delete`
    Delete(DeleteRequest),
    /// `query`
    Query(QueryRequest),
    /// `list` with its `limit` (default 32).
    List {
        /// Most call-ids to return.
        limit: usize,
    },
    /// `statistics`
    Statistics,
}

impl Command {
    /// The command's kind.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Ping => CommandKind::Ping,
            Command::Offer(_) => CommandKind::Offer,
            Command::Answer(_) => CommandKind::Answer,
            Command::Delete(_) => CommandKind::Delete,
            Command::Query(_) => CommandKind::Query,
            Command::List { .. } => CommandKind::List,
            Command::Statistics => CommandKind::Statistics,
        }
    }
}

/// A decoded request plus the warnings collected while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// One entry per ignored key, flag or value.
    pub warnings: Vec<String>,
}

/// A request that cannot be executed; `Display` is rtpengine's error-reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No `command` key.
    #[error("Dictionary contains no key \"command\"")]
    NoCommand,
    /// A command this daemon does not know or implement.
    #[error("Unrecognized command")]
    Unrecognized(String),
    /// No `call-id`.
    #[error("No call-id in message")]
    NoCallId,
    /// No `from-tag`.
    #[error("No from-tag in message")]
    NoFromTag,
    /// No `to-tag` in an answer.
    #[error("No to-tag in message")]
    NoToTag,
    /// No `sdp`.
    #[error("No SDP body in message")]
    NoSdp,
    /// A key whose value has the wrong type or syntax.
    #[error("Invalid value for key '{key}': {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Normalises a key or flag: lowercase, `-`/`_` → space.
pub fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '-' | '_' => ' ',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn text(v: &Value<'_>, key: &str) -> Result<String, CommandError> {
    match v {
        Value::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| CommandError::InvalidValue {
            key: key.to_owned(),
            reason: "not valid UTF-8".to_owned(),
        }),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(CommandError::InvalidValue {
            key: key.to_owned(),
            reason: "expected a string".to_owned(),
        }),
    }
}

fn list_of_text(v: &Value<'_>, key: &str) -> Result<Vec<String>, CommandError> {
    match v {
        Value::List(items) => items.iter().map(|i| text(i, key)).collect(),
        // A single string is accepted where a list is expected.
        other => Ok(vec![text(other, key)?]),
    }
}

fn ip(v: &Value<'_>, key: &str) -> Result<IpAddr, CommandError> {
    let s = text(v, key)?;
    s.trim().parse().map_err(|_| CommandError::InvalidValue {
        key: key.to_owned(),
        reason: format!("'{s}' is not an IP address"),
    })
}

impl Request {
    /// Decodes a request dictionary.
    pub fn parse(dict: &Value<'_>) -> Result<Request, CommandError> {
        let entries = dict.as_dict().ok_or(CommandError::NoCommand)?;
        let mut command = None;
        for (k, v) in entries {
            if normalize(&String::from_utf8_lossy(k)) == "command" {
                command = Some(text(v, "command")?);
            }
        }
        let name = command.ok_or(CommandError::NoCommand)?;
        let kind = CommandKind::parse(&name).ok_or(CommandError::Unrecognized(name))?;
        let mut p = Parsed::default();
        for (k, v) in entries {
            let key = String::from_utf8_lossy(k).into_owned();
            p.key(&key, v)?;
        }
        let mut warnings = p.warnings.clone();
        let call_id = || p.call_id.clone().ok_or(CommandError::NoCallId);
        let command = match kind {
            CommandKind::Ping => Command::Ping,
            CommandKind::Statistics => Command::Statistics,
            CommandKind::List => Command::List {
                limit: p.limit.unwrap_or(32),
            },
            CommandKind::Query => Command::Query(QueryRequest {
                call_id: call_id()?,
                from_tag: p.from_tag.clone(),
                to_tag: p.to_tag.clone(),
            }),
            CommandKind::Delete => Command::Delete(DeleteRequest {
                call_id: call_id()?,
                from_tag: p.from_tag.clone(),
                to_tag: p.to_tag.clone(),
                via_branch: p.via_branch.clone(),
                flags: p.flags.clone(),
            }),
            CommandKind::Offer | CommandKind::Answer => {
                let call_id = call_id()?;
                let sdp = p.sdp.clone().ok_or(CommandError::NoSdp)?;
                let from_tag = p.from_tag.clone().ok_or(CommandError::NoFromTag)?;
                if kind == CommandKind::Answer && p.to_tag.is_none() {
                    return Err(CommandError::NoToTag);
                }
                let direction = match (p.direction.take_pair(&mut warnings), &p.from_if, &p.to_if) {
                    (Some(d), _, _) => Some(d),
                    (None, None, None) => None,
                    (None, f, t) => {
                        Some([f.clone().unwrap_or_default(), t.clone().unwrap_or_default()])
                    }
                };
                let req = MediaRequest {
                    call_id,
                    from_tag,
                    to_tag: p.to_tag.clone(),
                    via_branch: p.via_branch.clone(),
                    sdp,
                    flags: p.flags.clone(),
                    replace: p.replace.clone(),
                    direction,
                    address_family: p.address_family,
                    media_address: p.media_address,
                    received_from: p.received_from,
                    ice: p.ice,
                    rtcp_mux: p.rtcp_mux.clone(),
                    transport_protocol: p.transport_protocol,
                    tos: p.tos,
                    label: p.label.clone(),
                    supports: p.supports.clone(),
                };
                if kind == CommandKind::Offer {
                    Command::Offer(req)
                } else {
                    Command::Answer(req)
                }
            }
        };
        Ok(Request { command, warnings })
    }
}

#[derive(Default)]
struct DirectionList(Vec<String>);

impl DirectionList {
    fn take_pair(&mut self, warnings: &mut Vec<String>) -> Option<[String; 2]> {
        match self.0.len() {
            0 => None,
            2 => {
                let b = self.0.pop().unwrap_or_default();
                let a = self.0.pop().unwrap_or_default();
                Some([a, b])
            }
            n => {
                warnings.push(format!(
                    "Invalid 'direction': expected 2 interfaces, got {n}"
                ));
                None
            }
        }
    }
}

#[derive(Default)]
struct Parsed {
    call_id: Option<String>,
    from_tag: Option<String>,
    to_tag: Option<String>,
    via_branch: Option<String>,
    sdp: Option<String>,
    flags: Flags,
    replace: Replace,
    direction: DirectionList,
    from_if: Option<String>,
    to_if: Option<String>,
    address_family: Option<AddressFamily>,
    media_address: Option<IpAddr>,
    received_from: Option<IpAddr>,
    ice: Option<IceMode>,
    rtcp_mux: RtcpMux,
    transport_protocol: Option<TransportProtocol>,
    tos: Option<i64>,
    label: Option<String>,
    supports: Vec<String>,
    limit: Option<usize>,
    warnings: Vec<String>,
}

impl Parsed {
    fn key(&mut self, raw_key: &str, v: &Value<'_>) -> Result<(), CommandError> {
        match normalize(raw_key).as_str() {
            "command" => {}
            "call id" => self.call_id = Some(text(v, raw_key)?),
            "from tag" => self.from_tag = Some(text(v, raw_key)?),
            "to tag" => self.to_tag = Some(text(v, raw_key)?),
            "via branch" => self.via_branch = Some(text(v, raw_key)?),
            "sdp" => self.sdp = Some(text(v, raw_key)?),
            "label" => self.label = Some(text(v, raw_key)?),
            "flags" => {
                for f in list_of_text(v, raw_key)? {
                    self.flag(&f);
                }
            }
            "replace" => {
                for r in list_of_text(v, raw_key)? {
                    match normalize(&r).as_str() {
                        "origin" => self.replace.origin = true,
                        "session name" => self.replace.session_name = true,
                        "zero address" => self.replace.zero_address = true,
                        "force increment sdp ver" => self.replace.force_increment_sdp_ver = true,
                        _ => self.warnings.push(format!("Unknown 'replace' flag '{r}'")),
                    }
                }
            }
            "direction" => self.direction = DirectionList(list_of_text(v, raw_key)?),
            "from interface" => self.from_if = Some(text(v, raw_key)?),
            "to interface" => self.to_if = Some(text(v, raw_key)?),
            "interface" => {
                let i = text(v, raw_key)?;
                self.from_if = Some(i.clone());
                self.to_if = Some(i);
            }
            "address family" => {
                let s = text(v, raw_key)?;
                self.address_family = match s.to_ascii_uppercase().as_str() {
                    "IP4" => Some(AddressFamily::Ip4),
                    "IP6" => Some(AddressFamily::Ip6),
                    _ => {
                        self.warnings
                            .push(format!("Unknown 'address-family' '{s}'"));
                        None
                    }
                }
            }
            "media address" => self.media_address = Some(ip(v, raw_key)?),
            "received from" => {
                let items = list_of_text(v, raw_key)?;
                let addr = items.last().ok_or_else(|| CommandError::InvalidValue {
                    key: raw_key.to_owned(),
                    reason: "empty list".to_owned(),
                })?;
                self.received_from = Some(ip(&Value::str(addr), raw_key)?);
            }
            "ice" => {
                let s = text(v, raw_key)?;
                self.ice = match normalize(&s).as_str() {
                    "remove" => Some(IceMode::Remove),
                    "default" => Some(IceMode::Default),
                    "force" => Some(IceMode::Force),
                    _ => {
                        self.warnings.push(format!("Unknown 'ICE' flag '{s}'"));
                        None
                    }
                }
            }
            "rtcp mux" => {
                for m in list_of_text(v, raw_key)? {
                    match normalize(&m).as_str() {
                        "offer" => self.rtcp_mux.offer = true,
                        "demux" => self.rtcp_mux.demux = true,
                        "accept" => self.rtcp_mux.accept = true,
                        "reject" => self.rtcp_mux.reject = true,
                        "require" => self.rtcp_mux.require = true,
                        _ => self.warnings.push(format!("Unknown 'rtcp-mux' flag '{m}'")),
                    }
                }
            }
            "transport protocol" => {
                let s = text(v, raw_key)?;
                self.transport_protocol = match s.to_ascii_uppercase().as_str() {
                    "RTP/AVP" => Some(TransportProtocol::RtpAvp),
                    "RTP/AVPF" => Some(TransportProtocol::RtpAvpf),
                    "ACCEPT" => Some(TransportProtocol::Accept),
                    _ => {
                        self.warnings
                            .push(format!("Unsupported 'transport-protocol' '{s}'"));
                        None
                    }
                }
            }
            "tos" => {
                self.tos = Some(v.as_int().ok_or_else(|| CommandError::InvalidValue {
                    key: raw_key.to_owned(),
                    reason: "expected an integer".to_owned(),
                })?)
            }
            "supports" => self.supports = list_of_text(v, raw_key)?,
            "limit" => {
                let n = v.as_int().ok_or_else(|| CommandError::InvalidValue {
                    key: raw_key.to_owned(),
                    reason: "expected an integer".to_owned(),
                })?;
                self.limit = Some(usize::try_from(n.max(0)).unwrap_or(usize::MAX));
            }
            _ => self.warnings.push(format!("Unknown key '{raw_key}'")),
        }
        Ok(())
    }

    fn flag(&mut self, f: &str) {
        let fl = &mut self.flags;
        match normalize(f).as_str() {
            "trust address" => fl.trust_address = true,
            "sip source address" => fl.sip_source_address = true,
            "symmetric" => fl.symmetric = true,
            "asymmetric" => fl.asymmetric = true,
            "strict source" => fl.strict_source = true,
            "port latching" => fl.port_latching = true,
            "no port latching" => fl.no_port_latching = true,
            "media handover" => fl.media_handover = true,
            "fatal" => fl.fatal = true,
            "fast" => fl.fast = true,
            _ => self.warnings.push(format!("Unknown flag '{f}'")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bencode::decode;

    #[test]
    fn parses_kamailio_offer() {
        // Keys deliberately unsorted, as Kamailio sends them.
        let v = Value::dict()
            .with("sdp", Value::str("v=0"))
            .with("supports", Value::List(vec![Value::str("load limit")]))
            .with("call-id", Value::str("abc"))
            .with("command", Value::str("offer"))
            .with("from-tag", Value::str("ft"))
            .with("via-branch", Value::str("z9hG"))
            .with(
                "flags",
                Value::List(vec![Value::str("trust-address"), Value::str("bogus-flag")]),
            )
            .with(
                "replace",
                Value::List(vec![
                    Value::str("origin"),
                    Value::str("session-name"),
                    Value::str("nonsense"),
                ]),
            )
            .with(
                "direction",
                Value::List(vec![Value::str("internal"), Value::str("external")]),
            )
            .with(
                "received-from",
                Value::List(vec![Value::str("IP4"), Value::str("10.0.0.9")]),
            )
            .with("ICE", Value::str("remove"))
            .with("rtcp-mux", Value::List(vec![Value::str("demux")]))
            .with("transport-protocol", Value::str("RTP/AVPF"))
            .with("TOS", Value::str("184"))
            .with("unknown", Value::Int(1));
        let v = decode(&v.encode()).unwrap().into_owned();
        let req = Request::parse(&v).unwrap();
        let Command::Offer(m) = &req.command else {
            panic!("not an offer")
        };
        assert_eq!(m.call_id, "abc");
        assert_eq!(m.from_tag, "ft");
        assert_eq!(m.via_branch.as_deref(), Some("z9hG"));
        assert!(m.flags.trust_address);
        assert!(m.replace.origin && m.replace.session_name);
        assert_eq!(m.direction, Some(["internal".into(), "external".into()]));
        assert_eq!(m.received_from, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(m.ice, Some(IceMode::Remove));
        assert!(m.rtcp_mux.demux);
        assert_eq!(m.transport_protocol, Some(TransportProtocol::RtpAvpf));
        assert_eq!(m.tos, Some(184));
        assert_eq!(m.supports, vec!["load limit".to_string()]);
        assert_eq!(
            req.warnings,
            vec![
                "Unknown flag 'bogus-flag'".to_string(),
                "Unknown 'replace' flag 'nonsense'".to_string(),
                "Unknown key 'unknown'".to_string()
            ]
        );
    }

    #[test]
    fn missing_keys_give_rtpengine_reasons() {
        let p = |s: &[u8]| Request::parse(&decode(s).unwrap()).unwrap_err().to_string();
        assert_eq!(p(b"d3:sdp1:xe"), "Dictionary contains no key \"command\"");
        assert_eq!(p(b"d7:command5:frob1e"), "Unrecognized command");
        assert_eq!(
            p(b"d7:command5:offer3:sdp1:x8:from-tag1:ae"),
            "No call-id in message"
        );
        assert_eq!(
            p(b"d7:command5:offer7:call-id1:ae"),
            "No SDP body in message"
        );
        assert_eq!(
            p(b"d7:command5:offer7:call-id1:a3:sdp1:xe"),
            "No from-tag in message"
        );
        assert_eq!(
            p(b"d7:command6:answer7:call-id1:a3:sdp1:x8:from-tag1:fe"),
            "No to-tag in message"
        );
        assert!(
            p(b"d7:command5:offer7:call-id1:a3:sdp1:x8:from-tag1:f13:media-address3:xyze")
                .contains("not an IP address")
        );
    }

    #[test]
    fn client_encoding_round_trips() {
        let m = MediaRequest {
            call_id: "c".into(),
            from_tag: "f".into(),
            to_tag: Some("t".into()),
            sdp: "v=0\r\n".into(),
            flags: Flags {
                strict_source: true,
                ..Flags::default()
            },
            replace: Replace {
                origin: true,
                ..Replace::default()
            },
            direction: Some(["a".into(), "b".into()]),
            received_from: Some("10.1.1.1".parse().unwrap()),
            ice: Some(IceMode::Force),
            rtcp_mux: RtcpMux {
                offer: true,
                ..RtcpMux::default()
            },
            tos: Some(0),
            supports: vec!["load limit".into()],
            ..MediaRequest::default()
        };
        let enc = m.to_value(CommandKind::Answer).encode();
        let back = Request::parse(&decode(&enc).unwrap()).unwrap();
        assert_eq!(back.command, Command::Answer(m));
        assert!(back.warnings.is_empty());
        let d = DeleteRequest {
            call_id: "c".into(),
            from_tag: Some("f".into()),
            ..Default::default()
        };
        let back = Request::parse(&decode(&d.to_value().encode()).unwrap()).unwrap();
        assert_eq!(back.command, Command::Delete(d));
    }

    #[test]
    fn list_limit_defaults_to_32() {
        let r = Request::parse(&decode(b"d7:command4:liste").unwrap()).unwrap();
        assert_eq!(r.command, Command::List { limit: 32 });
        let r = Request::parse(&decode(b"d7:command4:list5:limit1:5e").unwrap()).unwrap();
        assert_eq!(r.command, Command::List { limit: 5 });
    }
}
