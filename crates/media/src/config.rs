//! `[media]` configuration: the relay set, its timers, the ng flags sent
//! with offers and answers, and direction rules. Documented in
//! `docs/media.md`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use voxline_config::{Validate, Validator};
use voxline_ng::client::RetransmitPolicy;

use crate::network::Network;

/// The `[media]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Anchor the media of calls through the proxy on a relay.
    pub enabled: bool,
    /// The relay set. Empty: the node's own relay (`[relay] ng_udp`).
    pub relays: Vec<RelayEntry>,
    /// Wait for a reply after each ng datagram, ms (Kamailio
    /// `rtpengine_tout_ms`).
    pub timeout_ms: u64,
    /// Retransmissions (same cookie) after the first datagram before a relay
    /// counts as not answering. Kamailio's `rtpengine_retr` counts every
    /// datagram: `retries = rtpengine_retr - 1`.
    pub retries: u32,
    /// A failing relay gets no new calls for this long, then is pinged
    /// (Kamailio `rtpengine_disable_tout`), seconds.
    pub disable_secs: u64,
    /// Relays in service are pinged this often; one that does not answer is
    /// marked down (0: only down relays are pinged), seconds.
    pub ping_interval_secs: u64,
    /// A call's relay is remembered this long after its last command
    /// (a safety net for calls never deleted; Kamailio `hash_table_tout`),
    /// seconds.
    pub call_ttl_secs: u64,
    /// ... and this long after it was deleted, so late retransmissions reach
    /// the same relay, seconds.
    pub delete_grace_secs: u64,
    /// Most calls remembered; beyond it the one closest to expiry is
    /// forgotten.
    pub max_calls: usize,
    /// `[media.offer]`: flags sent with every offer.
    pub offer: MediaFlags,
    /// `[media.answer]`: flags sent with every answer.
    pub answer: MediaFlags,
    /// `[[media.direction]]`: interface pairs by network, first match wins.
    pub direction: Vec<DirectionRule>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            enabled: true,
            relays: Vec::new(),
            timeout_ms: 500,
            retries: 2,
            disable_secs: 10,
            ping_interval_secs: 10,
            call_ttl_secs: 86_400,
            delete_grace_secs: 30,
            max_calls: 500_000,
            offer: MediaFlags::default(),
            answer: MediaFlags::default(),
            direction: Vec::new(),
        }
    }
}

impl MediaConfig {
    /// The relays to use: the configured ones, or `local` (the node's own
    /// relay) if none are configured. An unspecified address (`0.0.0.0`)
    /// becomes the loopback address of its family.
    pub fn effective_relays(&self, local: Option<SocketAddr>) -> Vec<RelayEntry> {
        if !self.relays.is_empty() {
            return self.relays.clone();
        }
        local
            .map(|mut a| {
                if a.ip().is_unspecified() {
                    a.set_ip(if a.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                vec![RelayEntry {
                    address: a,
                    weight: 1,
                }]
            })
            .unwrap_or_default()
    }

    /// Timeout and datagrams per ng command.
    pub fn retransmit_policy(&self) -> RetransmitPolicy {
        RetransmitPolicy {
            timeout: Duration::from_millis(self.timeout_ms),
            attempts: self.retries.saturating_add(1),
        }
    }
}

/// One relay of the set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayEntry {
    /// Its ng control address (UDP).
    pub address: SocketAddr,
    /// Share of new calls relative to the others; 0: no new calls
    /// (draining), existing calls stay.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Where the relay sends media to: the SDP's address, or the SIP source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressMode {
    /// The relay's default: the SDP address, corrected by latching.
    #[default]
    Sdp,
    /// `trust-address`: the SDP address, as is.
    Trust,
    /// `SIP-source-address`: the SIP source address (`received-from`),
    /// for clients behind NAT that write private addresses.
    SipSource,
}

/// The `ICE` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IceSetting {
    /// Send nothing: the relay's own default.
    Keep,
    /// `ICE=remove`: strip ICE attributes (the relay is the only path).
    #[default]
    Remove,
    /// `ICE=default`: replace ICE candidates with the relay's if present.
    Default,
    /// `ICE=force`: add the relay's candidates.
    Force,
}

/// Entries of the `replace` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplaceItem {
    /// `o=` carries the relay's address.
    Origin,
    /// `s=` becomes the relay's name.
    SessionName,
    /// A `0.0.0.0` connection address is replaced too.
    ZeroAddress,
    /// Always increment the `o=` version.
    ForceIncrementSdpVer,
    /// Kamailio's `replace-session-connection`: relays always rewrite `c=`;
    /// rejected by validation with that explanation.
    SessionConnection,
}

/// Entries of the `rtcp_mux` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtcpMuxItem {
    /// Offer rtcp-mux to the recipient.
    Offer,
    /// The relay demultiplexes; strip `a=rtcp-mux` towards the recipient.
    Demux,
    /// Accept rtcp-mux offered by the sender.
    Accept,
    /// Reject rtcp-mux.
    Reject,
    /// Require rtcp-mux from the recipient.
    Require,
}

/// Behaviour flags of the `flags` list (the address flags are
/// [`AddressMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaFlag {
    /// Latch on the first packet (the relays' default).
    Symmetric,
    /// Never latch; send to the SDP address.
    Asymmetric,
    /// Drop packets from any source but the expected one.
    StrictSource,
    /// Latch once.
    PortLatching,
    /// Never re-latch.
    NoPortLatching,
    /// Re-latch whenever the source changes.
    MediaHandover,
}

/// `transport-protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TransportSetting {
    /// `RTP/AVP`
    #[serde(rename = "RTP/AVP")]
    RtpAvp,
    /// `RTP/AVPF`
    #[serde(rename = "RTP/AVPF")]
    RtpAvpf,
    /// `accept` (answers): keep what the answerer chose.
    #[serde(rename = "accept")]
    Accept,
}

/// `address-family` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum FamilySetting {
    /// `IP4`
    IP4,
    /// `IP6`
    IP6,
}

/// The ng flags of one command kind (`[media.offer]`, `[media.answer]`),
/// Kamailio's `rtpengine_offer("...")` flag string in typed form.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaFlags {
    /// Which address the relay sends media to.
    pub address: AddressMode,
    /// Send `received-from` with the SIP source address (Kamailio always
    /// does).
    pub received_from: bool,
    /// `ICE`.
    pub ice: IceSetting,
    /// `replace`.
    pub replace: Vec<ReplaceItem>,
    /// `rtcp-mux`.
    pub rtcp_mux: Vec<RtcpMuxItem>,
    /// Behaviour flags.
    pub flags: Vec<MediaFlag>,
    /// `transport-protocol`.
    pub transport_protocol: Option<TransportSetting>,
    /// `address-family` of the SDP towards the recipient.
    pub address_family: Option<FamilySetting>,
    /// `TOS` of the relayed packets (184 = DSCP EF); absent: the relay's.
    pub tos: Option<u8>,
}

impl Default for MediaFlags {
    fn default() -> Self {
        MediaFlags {
            address: AddressMode::Sdp,
            received_from: true,
            ice: IceSetting::Remove,
            replace: vec![ReplaceItem::Origin],
            rtcp_mux: Vec::new(),
            flags: Vec::new(),
            transport_protocol: None,
            address_family: None,
            tos: None,
        }
    }
}

/// One `[[media.direction]]` rule: for SDP from `source` (arriving on
/// `local`, heading to `destination`), offers carry `direction` and the
/// address mode may be overridden. Empty lists match anything; every
/// non-empty list must match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionRule {
    /// Networks of the SIP source address.
    #[serde(default)]
    pub source: Vec<Network>,
    /// Networks of the local SIP address the message arrived on.
    #[serde(default)]
    pub local: Vec<Network>,
    /// Networks of the address the message is sent to.
    #[serde(default)]
    pub destination: Vec<Network>,
    /// Relay interfaces: the one facing the sender, the one facing the
    /// recipient.
    pub direction: [String; 2],
    /// Overrides `address` of `[media.offer]`/`[media.answer]` for SDP from
    /// these sources.
    #[serde(default)]
    pub address: Option<AddressMode>,
}

impl Validate for MediaConfig {
    fn validate(&self, v: &mut Validator) {
        if !self.relays.is_empty() && self.relays.iter().all(|r| r.weight == 0) {
            v.error("relays", "at least one relay needs a positive weight");
        }
        for (i, r) in self.relays.iter().enumerate() {
            if r.address.port() == 0 || r.address.ip().is_unspecified() {
                v.error(
                    &format!("relays[{i}].address"),
                    "needs a concrete IP address and port",
                );
            }
            if self
                .relays
                .get(..i)
                .is_some_and(|before| before.iter().any(|o| o.address == r.address))
            {
                v.error(
                    &format!("relays[{i}].address"),
                    format!("{} is listed twice", r.address),
                );
            }
        }
        if self.timeout_ms == 0 {
            v.error("timeout_ms", "must be positive");
        }
        if self.retries > 20 {
            v.error("retries", "at most 20");
        }
        if self.disable_secs == 0 {
            v.error("disable_secs", "must be positive");
        }
        if self.call_ttl_secs == 0 {
            v.error("call_ttl_secs", "must be positive");
        }
        if self.max_calls == 0 {
            v.error("max_calls", "must be positive");
        }
        v.section("offer", &self.offer);
        v.section("answer", &self.answer);
        for (i, rule) in self.direction.iter().enumerate() {
            if rule.direction.iter().any(|d| d.trim().is_empty()) {
                v.error(
                    &format!("direction[{i}].direction"),
                    "name two relay interfaces",
                );
            }
        }
    }
}

impl Validate for MediaFlags {
    fn validate(&self, v: &mut Validator) {
        if self.replace.contains(&ReplaceItem::SessionConnection) {
            v.error(
                "replace",
                "\"session-connection\" is not an ng flag any more: relays always rewrite c= lines; remove it",
            );
        }
        let has = |f| self.flags.contains(&f);
        if has(MediaFlag::Symmetric) && has(MediaFlag::Asymmetric) {
            v.error(
                "flags",
                "\"symmetric\" and \"asymmetric\" exclude each other",
            );
        }
        if has(MediaFlag::PortLatching) && has(MediaFlag::NoPortLatching) {
            v.error(
                "flags",
                "\"port-latching\" and \"no-port-latching\" exclude each other",
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<MediaConfig, String> {
        voxline_config::load::<MediaConfig>("t.toml", text).map_err(|p| p.to_string())
    }

    #[test]
    fn parses_a_full_section() {
        let c = load(
            r#"
relays = [{ address = "127.0.0.1:22222", weight = 2 }, { address = "10.0.0.2:22222" }]
timeout_ms = 300
retries = 4
[offer]
address = "sip-source"
ice = "force"
replace = ["origin", "session-name"]
rtcp_mux = ["demux"]
flags = ["strict-source"]
transport_protocol = "RTP/AVP"
address_family = "IP4"
tos = 184
[answer]
ice = "keep"
[[direction]]
source = ["10.0.0.0/8", "192.168.0.0/16"]
direction = ["external", "internal"]
address = "trust"
[[direction]]
direction = ["internal", "external"]
"#,
        )
        .unwrap();
        assert_eq!(c.relays[0].weight, 2);
        assert_eq!(c.relays[1].weight, 1);
        assert_eq!(c.retransmit_policy().attempts, 5);
        assert_eq!(c.offer.address, AddressMode::SipSource);
        assert_eq!(c.offer.tos, Some(184));
        assert_eq!(c.answer.ice, IceSetting::Keep);
        assert_eq!(c.answer.replace, vec![ReplaceItem::Origin]);
        assert_eq!(c.direction.len(), 2);
        assert_eq!(c.direction[0].source.len(), 2);
        assert_eq!(c.direction[0].address, Some(AddressMode::Trust));
        assert!(c.direction[1].source.is_empty());
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let p = load(
            r#"
relays = [{ address = "127.0.0.1:22222", weight = 0 }, { address = "127.0.0.1:22222", weight = 0 }]
timeout_ms = 0
[offer]
replace = ["session-connection"]
flags = ["symmetric", "asymmetric"]
[[direction]]
source = ["10.0.0.0/40"]
direction = ["a", "b"]
"#,
        )
        .unwrap_err();
        assert!(p.contains("prefix '/40'"), "{p}");
        // Semantic rules are only checked once the file deserializes.
        let p = load(
            r#"
relays = [{ address = "127.0.0.1:22222", weight = 0 }, { address = "127.0.0.1:22222", weight = 0 }]
timeout_ms = 0
[offer]
replace = ["session-connection"]
flags = ["symmetric", "asymmetric"]
[[direction]]
direction = ["a", " "]
"#,
        )
        .unwrap_err();
        for needle in [
            "key `relays`",
            "listed twice",
            "key `timeout_ms`",
            "key `offer.replace`",
            "key `offer.flags`",
            "key `direction[0].direction`",
        ] {
            assert!(p.contains(needle), "{needle} missing in {p}");
        }
        let p = load("[offer]\nflags = [\"trust-address\"]\n").unwrap_err();
        assert!(p.contains("unknown variant"), "{p}");
        let p = load("bogus = 1\n").unwrap_err();
        assert!(p.contains("key `bogus`: unknown field"), "{p}");
    }

    #[test]
    fn empty_relays_mean_the_local_relay() {
        let c = MediaConfig::default();
        assert!(c.effective_relays(None).is_empty());
        let r = c.effective_relays(Some("0.0.0.0:22222".parse().unwrap()));
        assert_eq!(r[0].address, "127.0.0.1:22222".parse().unwrap());
        let r = c.effective_relays(Some("[::]:22222".parse().unwrap()));
        assert_eq!(r[0].address, "[::1]:22222".parse().unwrap());
        let c = MediaConfig {
            relays: vec![RelayEntry {
                address: "10.0.0.1:2222".parse().unwrap(),
                weight: 3,
            }],
            ..MediaConfig::default()
        };
        assert_eq!(
            c.effective_relays(Some("127.0.0.1:22222".parse().unwrap())),
            c.relays
        );
    }
}
