//! What the proxy knows about an SDP-carrying message ([`OfferParams`],
//! [`AnswerParams`]) and how it becomes an ng request: the flags of
//! `[media.offer]`/`[media.answer]`, then the first `[[media.direction]]`
//! rule matching the message's addresses (direction for offers, address
//! mode for both), then what the caller set explicitly.

use std::net::SocketAddr;

use voxline_ng::command::{
    AddressFamily, Flags, IceMode, MediaRequest, Replace, RtcpMux, TransportProtocol,
};

use crate::config::{
    AddressMode, DirectionRule, FamilySetting, IceSetting, MediaConfig, MediaFlag, MediaFlags,
    ReplaceItem, RtcpMuxItem, TransportSetting,
};

/// An SDP offer (INVITE, re-INVITE, UPDATE, or a 2xx in late-offer calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferParams {
    /// Call-ID.
    pub call_id: String,
    /// Tag of the party that sent the offer (the From tag for requests
    /// from the caller; the To tag for offers from the callee).
    pub from_tag: String,
    /// Tag of the other party, if known (offers within a dialog).
    pub to_tag: Option<String>,
    /// Branch of the forwarded request, so forks get separate media.
    pub via_branch: Option<String>,
    /// The offer.
    pub sdp: String,
    /// SIP source address of the message.
    pub source: SocketAddr,
    /// Local SIP address the message arrived on.
    pub local: Option<SocketAddr>,
    /// Where the message goes next, if known.
    pub destination: Option<SocketAddr>,
    /// Relay interfaces (facing the sender, facing the recipient);
    /// overrides the direction rules.
    pub direction: Option<[String; 2]>,
    /// Flags for this message instead of `[media.offer]`.
    pub flags: Option<MediaFlags>,
}

impl OfferParams {
    /// An offer with nothing but the required fields.
    pub fn new(call_id: &str, from_tag: &str, sdp: &str, source: SocketAddr) -> OfferParams {
        OfferParams {
            call_id: call_id.to_owned(),
            from_tag: from_tag.to_owned(),
            to_tag: None,
            via_branch: None,
            sdp: sdp.to_owned(),
            source,
            local: None,
            destination: None,
            direction: None,
            flags: None,
        }
    }
}

/// An SDP answer (18x/2xx, or the ACK in late-offer calls); it goes to the
/// relay that took the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerParams {
    /// Call-ID.
    pub call_id: String,
    /// Tag of the party that sent the offer.
    pub from_tag: String,
    /// Tag of the party that sends this answer.
    pub to_tag: String,
    /// Branch the offer was forwarded on, if it was given with the offer.
    pub via_branch: Option<String>,
    /// The answer.
    pub sdp: String,
    /// SIP source address of the message.
    pub source: SocketAddr,
    /// Local SIP address the message arrived on.
    pub local: Option<SocketAddr>,
    /// Where the message goes next, if known.
    pub destination: Option<SocketAddr>,
    /// Flags for this message instead of `[media.answer]`.
    pub flags: Option<MediaFlags>,
}

impl AnswerParams {
    /// An answer with nothing but the required fields.
    pub fn new(
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
        source: SocketAddr,
    ) -> AnswerParams {
        AnswerParams {
            call_id: call_id.to_owned(),
            from_tag: from_tag.to_owned(),
            to_tag: to_tag.to_owned(),
            via_branch: None,
            sdp: sdp.to_owned(),
            source,
            local: None,
            destination: None,
            flags: None,
        }
    }
}

/// `delete`: the whole call (no `via_branch`), or one branch of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteParams<'a> {
    /// Call-ID.
    pub call_id: &'a str,
    /// Tag of the party that sent the offer.
    pub from_tag: &'a str,
    /// Tag of the other party, if known.
    pub to_tag: Option<&'a str>,
    /// Only the branch offered with this Via branch (a failed fork); the
    /// call stays bound to its relay.
    pub via_branch: Option<&'a str>,
}

/// The configured flags and direction rules.
#[derive(Debug, Clone)]
pub struct MediaPolicy {
    offer: MediaFlags,
    answer: MediaFlags,
    rules: Vec<DirectionRule>,
}

impl MediaPolicy {
    /// The policy of `[media]`.
    pub fn from_config(c: &MediaConfig) -> MediaPolicy {
        MediaPolicy {
            offer: c.offer.clone(),
            answer: c.answer.clone(),
            rules: c.direction.clone(),
        }
    }

    /// The first rule matching a message's addresses.
    pub fn rule_for(
        &self,
        source: SocketAddr,
        local: Option<SocketAddr>,
        destination: Option<SocketAddr>,
    ) -> Option<&DirectionRule> {
        let any = |nets: &[crate::Network], addr: Option<SocketAddr>| {
            nets.is_empty() || addr.is_some_and(|a| nets.iter().any(|n| n.contains(a.ip())))
        };
        self.rules.iter().find(|r| {
            any(&r.source, Some(source)) && any(&r.local, local) && any(&r.destination, destination)
        })
    }

    /// The ng `offer` request for `p`.
    pub fn offer_request(&self, p: &OfferParams) -> MediaRequest {
        let rule = self.rule_for(p.source, p.local, p.destination);
        let flags = p.flags.as_ref().unwrap_or(&self.offer);
        let mut req = request(flags, rule.and_then(|r| r.address), p.source);
        req.call_id = p.call_id.clone();
        req.from_tag = p.from_tag.clone();
        req.to_tag = p.to_tag.clone();
        req.via_branch = p.via_branch.clone();
        req.sdp = p.sdp.clone();
        req.direction = p
            .direction
            .clone()
            .or_else(|| rule.map(|r| r.direction.clone()));
        req
    }

    /// The ng `answer` request for `p` (no direction: the offer chose the
    /// interfaces).
    pub fn answer_request(&self, p: &AnswerParams) -> MediaRequest {
        let rule = self.rule_for(p.source, p.local, p.destination);
        let flags = p.flags.as_ref().unwrap_or(&self.answer);
        let mut req = request(flags, rule.and_then(|r| r.address), p.source);
        req.call_id = p.call_id.clone();
        req.from_tag = p.from_tag.clone();
        req.to_tag = Some(p.to_tag.clone());
        req.via_branch = p.via_branch.clone();
        req.sdp = p.sdp.clone();
        req
    }
}

fn request(flags: &MediaFlags, address: Option<AddressMode>, source: SocketAddr) -> MediaRequest {
    let address = address.unwrap_or(flags.address);
    let has = |f| flags.flags.contains(&f);
    let replace_has = |r| flags.replace.contains(&r);
    let mux_has = |m| flags.rtcp_mux.contains(&m);
    MediaRequest {
        flags: Flags {
            trust_address: address == AddressMode::Trust,
            sip_source_address: address == AddressMode::SipSource,
            symmetric: has(MediaFlag::Symmetric),
            asymmetric: has(MediaFlag::Asymmetric),
            strict_source: has(MediaFlag::StrictSource),
            port_latching: has(MediaFlag::PortLatching),
            no_port_latching: has(MediaFlag::NoPortLatching),
            media_handover: has(MediaFlag::MediaHandover),
            fatal: false,
            fast: false,
        },
        replace: Replace {
            origin: replace_has(ReplaceItem::Origin),
            session_name: replace_has(ReplaceItem::SessionName),
            zero_address: replace_has(ReplaceItem::ZeroAddress),
            force_increment_sdp_ver: replace_has(ReplaceItem::ForceIncrementSdpVer),
        },
        received_from: (flags.received_from || address == AddressMode::SipSource)
            .then(|| source.ip()),
        ice: match flags.ice {
            IceSetting::Keep => None,
            IceSetting::Remove => Some(IceMode::Remove),
            IceSetting::Default => Some(IceMode::Default),
            IceSetting::Force => Some(IceMode::Force),
        },
        rtcp_mux: RtcpMux {
            offer: mux_has(RtcpMuxItem::Offer),
            demux: mux_has(RtcpMuxItem::Demux),
            accept: mux_has(RtcpMuxItem::Accept),
            reject: mux_has(RtcpMuxItem::Reject),
            require: mux_has(RtcpMuxItem::Require),
        },
        transport_protocol: flags.transport_protocol.map(|t| match t {
            TransportSetting::RtpAvp => TransportProtocol::RtpAvp,
            TransportSetting::RtpAvpf => TransportProtocol::RtpAvpf,
            TransportSetting::Accept => TransportProtocol::Accept,
        }),
        address_family: flags.address_family.map(|f| match f {
            FamilySetting::IP4 => AddressFamily::Ip4,
            FamilySetting::IP6 => AddressFamily::Ip6,
        }),
        tos: flags.tos.map(i64::from),
        // Failover on overload needs the relay to say so.
        supports: vec!["load limit".to_owned()],
        ..MediaRequest::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use voxline_ng::command::{Command, CommandKind, Request};

    use super::*;

    fn policy(text: &str) -> MediaPolicy {
        let c: MediaConfig = voxline_config::load("t.toml", text).unwrap();
        MediaPolicy::from_config(&c)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const RULES: &str = r#"
[offer]
rtcp_mux = ["demux"]
flags = ["strict-source"]
tos = 184
[[direction]]
source = ["10.0.0.0/8"]
destination = ["192.0.2.0/24"]
direction = ["external", "internal"]
address = "sip-source"
[[direction]]
source = ["10.0.0.0/8"]
direction = ["external", "external"]
[[direction]]
local = ["198.51.100.1"]
direction = ["internal", "external"]
address = "trust"
"#;

    #[test]
    fn first_matching_rule_sets_direction_and_address() {
        let p = policy(RULES);
        let mut o = OfferParams::new("c", "ft", "v=0\r\n", addr("10.1.2.3:5060"));
        o.destination = Some(addr("192.0.2.9:5060"));
        let r = p.offer_request(&o);
        assert_eq!(r.direction, Some(["external".into(), "internal".into()]));
        assert!(r.flags.sip_source_address && !r.flags.trust_address);
        assert_eq!(r.received_from, Some("10.1.2.3".parse().unwrap()));
        // Base flags of [media.offer].
        assert!(r.flags.strict_source && r.rtcp_mux.demux);
        assert_eq!(r.tos, Some(184));
        assert_eq!(r.ice, Some(IceMode::Remove));
        assert!(r.replace.origin);
        assert_eq!(r.supports, ["load limit"]);
        // Destination unknown: the second rule.
        o.destination = None;
        let r = p.offer_request(&o);
        assert_eq!(r.direction, Some(["external".into(), "external".into()]));
        assert!(!r.flags.sip_source_address);
        // By local address.
        let mut o = OfferParams::new("c", "ft", "v=0\r\n", addr("203.0.113.5:5060"));
        o.local = Some(addr("198.51.100.1:5060"));
        let r = p.offer_request(&o);
        assert_eq!(r.direction, Some(["internal".into(), "external".into()]));
        assert!(r.flags.trust_address);
        // No rule.
        o.local = None;
        assert_eq!(p.offer_request(&o).direction, None);
        // Explicit direction wins.
        o.direction = Some(["a".into(), "b".into()]);
        assert_eq!(
            p.offer_request(&o).direction,
            Some(["a".into(), "b".into()])
        );
    }

    #[test]
    fn answers_carry_tags_and_no_direction() {
        let p = policy(RULES);
        let mut a = AnswerParams::new("c", "ft", "tt", "v=0\r\n", addr("10.9.9.9:5060"));
        a.via_branch = Some("z9hG4bK1".into());
        let r = p.answer_request(&a);
        assert_eq!(r.to_tag.as_deref(), Some("tt"));
        assert_eq!(r.via_branch.as_deref(), Some("z9hG4bK1"));
        assert_eq!(r.direction, None);
        // [media.answer] is separate from [media.offer]: defaults here.
        assert!(!r.flags.strict_source && !r.rtcp_mux.demux && r.tos.is_none());
        assert!(!r.flags.sip_source_address);
        // The rule's address mode applies to answers too.
        a.destination = Some(addr("192.0.2.1:5060"));
        let r = p.answer_request(&a);
        assert!(r.flags.sip_source_address);
        assert_eq!(r.direction, None);
        // Per-message flags replace the configured ones.
        a.destination = None;
        a.flags = Some(MediaFlags {
            ice: IceSetting::Keep,
            received_from: false,
            replace: vec![],
            ..MediaFlags::default()
        });
        let r = p.answer_request(&a);
        assert_eq!((r.ice, r.received_from), (None, None));
        assert!(!r.replace.origin);
    }

    #[test]
    fn requests_encode_with_kamailio_spellings() {
        let p = policy(RULES);
        let mut o = OfferParams::new("c", "ft", "v=0\r\n", addr("10.1.2.3:5060"));
        o.destination = Some(addr("192.0.2.9:5060"));
        o.via_branch = Some("z9hG4bKx".into());
        let req = p.offer_request(&o);
        let value = req.to_value(CommandKind::Offer);
        let wire = String::from_utf8(value.encode()).unwrap();
        for needle in [
            "9:directionl8:external8:internale",
            "18:SIP-source-address",
            "13:strict-source",
            "13:received-froml3:IP48:10.1.2.3e",
            "3:ICE6:remove",
            "7:replacel6:origine",
            "8:rtcp-muxl5:demuxe",
            "3:TOSi184e",
            "8:supportsl10:load limite",
            "10:via-branch8:z9hG4bKx",
        ] {
            assert!(wire.contains(needle), "{needle} not in {wire}");
        }
        let back = Request::parse(&value).unwrap();
        assert_eq!(back.command, Command::Offer(req));
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    }
}
