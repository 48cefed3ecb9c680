//! Replies in rtpengine's exact shapes, and their decoding on the client.

use crate::bencode::Value;

/// Error reason on which Kamailio's rtpengine module fails over to the next
/// node (`RTPENGINE_SESS_OUT_OF_PORTS_MSG`).
pub const OUT_OF_PORTS: &str = "Ran out of ports";
/// Error reason on which Kamailio fails over (`RTPENGINE_SESS_LIMIT_MSG`).
pub const SESSION_LIMIT: &str = "Parallel session limit reached";
/// Reason for an unknown call on `answer`/`query`.
pub const UNKNOWN_CALL_ID: &str = "Unknown call-id";
/// Warning/reason for `delete` of an unknown call or branch.
pub const CALL_NOT_FOUND: &str = "Call-ID not found or tags didn't match";

/// Packet/byte/error counters (`stats`, `totals.RTP`, `totals.RTCP`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `packets`
    pub packets: u64,
    /// `bytes`
    pub bytes: u64,
    /// `errors`
    pub errors: u64,
}

impl Counters {
    fn to_value(self) -> Value<'static> {
        Value::dict()
            .with("packets", Value::Int(clamp(self.packets)))
            .with("bytes", Value::Int(clamp(self.bytes)))
            .with("errors", Value::Int(clamp(self.errors)))
    }

    fn from_value(v: Option<&Value<'_>>) -> Counters {
        let get = |k| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_int)
                .map_or(0, |i| u64::try_from(i).unwrap_or(0))
        };
        Counters {
            packets: get("packets"),
            bytes: get("bytes"),
            errors: get("errors"),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: Counters) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.errors += other.errors;
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `{family, address, port}` as rtpengine prints endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The socket address.
    pub addr: std::net::SocketAddr,
}

impl EndpointInfo {
    fn to_value(&self) -> Value<'static> {
        Value::dict()
            .with("family", Value::str(family(&self.addr.ip())))
            .with("address", Value::string(self.addr.ip().to_string()))
            .with("port", Value::Int(i64::from(self.addr.port())))
    }

    fn from_value(v: Option<&Value<'_>>) -> Option<EndpointInfo> {
        let v = v?;
        let ip: std::net::IpAddr = v.get("address")?.as_str()?.parse().ok()?;
        let port = u16::try_from(v.get("port")?.as_int()?).ok()?;
        Some(EndpointInfo {
            addr: std::net::SocketAddr::new(ip, port),
        })
    }
}

fn family(ip: &std::net::IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// RTCP-derived quality of one stream (from the last SR/RR report block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpQuality {
    /// Fraction lost (0–255, RFC 3550 §6.4.1).
    pub fraction_lost: u8,
    /// Cumulative packets lost.
    pub packets_lost: i64,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

/// One stream (RTP or RTCP port) in a `query`/`delete` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    /// `local address`
    pub local_address: std::net::IpAddr,
    /// `local port`
    pub local_port: u16,
    /// `endpoint` (the current destination; after latching the source).
    pub endpoint: Option<EndpointInfo>,
    /// `advertised endpoint` (from the SDP).
    pub advertised_endpoint: Option<EndpointInfo>,
    /// `last packet` (unix seconds).
    pub last_packet: i64,
    /// `flags`: `RTP`/`RTCP`, `filled`, `confirmed`, `strict source`, ...
    pub flags: Vec<String>,
    /// `stats`
    pub stats: Counters,
    /// RTCP report data, exported under `RTCP` when present.
    pub rtcp: Option<RtcpQuality>,
}

/// One media section of one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStats {
    /// `index` (1-based).
    pub index: u32,
    /// `type` (`audio`, `video`, ...).
    pub media_type: String,
    /// `protocol` (`RTP/AVP`, ...).
    pub protocol: String,
    /// `flags` (`initialized`, `send`, `recv`, `rtcp-mux`, ...).
    pub flags: Vec<String>,
    /// `streams`: RTP then RTCP.
    pub streams: Vec<StreamStats>,
}

/// One tag (monologue) of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagStats {
    /// `tag` (empty if not yet known).
    pub tag: String,
    /// `label`
    pub label: Option<String>,
    /// `created` (unix seconds).
    pub created: i64,
    /// `in dialogue with`
    pub in_dialogue_with: Option<String>,
    /// `medias`
    pub medias: Vec<MediaStats>,
}

/// The body of `query` and (non-`fast`) `delete` replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// `created` (unix seconds).
    pub created: i64,
    /// `created_us` (microsecond part).
    pub created_us: i64,
    /// `last signal` (unix seconds).
    pub last_signal: i64,
    /// `tags`
    pub tags: Vec<TagStats>,
    /// `totals.RTP`
    pub totals_rtp: Counters,
    /// `totals.RTCP`
    pub totals_rtcp: Counters,
}

impl CallStats {
    /// Adds the rtpengine-shaped keys into a reply dictionary.
    pub fn write_into(&self, d: &mut Value<'_>) {
        d.insert("created", Value::Int(self.created));
        d.insert("created_us", Value::Int(self.created_us));
        d.insert("last signal", Value::Int(self.last_signal));
        d.insert("SSRC", Value::dict());
        let mut tags = Value::dict();
        let mut untagged = 0;
        for t in &self.tags {
            let key = if t.tag.is_empty() {
                untagged += 1;
                format!("<untagged {untagged}>")
            } else {
                t.tag.clone()
            };
            let mut tv = Value::dict()
                .with("tag", Value::string(t.tag.clone()))
                .with("created", Value::Int(t.created));
            if let Some(l) = &t.label {
                tv.insert("label", Value::string(l.clone()));
            }
            if let Some(o) = &t.in_dialogue_with {
                tv.insert("in dialogue with", Value::string(o.clone()));
            }
            let medias = t.medias.iter().map(media_value).collect();
            tv.insert("medias", Value::List(medias));
            if let Value::Dict(items) = &mut tags {
                items.push((std::borrow::Cow::Owned(key.into_bytes()), tv));
            }
        }
        d.insert("tags", tags);
        d.insert(
            "totals",
            Value::dict()
                .with("RTP", self.totals_rtp.to_value())
                .with("RTCP", self.totals_rtcp.to_value()),
        );
    }

    /// Reads the rtpengine-shaped keys of a reply (client side; tolerant of
    /// missing keys).
    pub fn from_value(v: &Value<'_>) -> CallStats {
        let int = |v: &Value<'_>, k: &str| v.get(k).and_then(Value::as_int).unwrap_or(0);
        let mut tags = Vec::new();
        if let Some(entries) = v.get("tags").and_then(Value::as_dict) {
            for (_, t) in entries {
                let medias = t
                    .get("medias")
                    .and_then(Value::as_list)
                    .unwrap_or_default()
                    .iter()
                    .map(|m| MediaStats {
                        index: u32::try_from(int(m, "index")).unwrap_or(0),
                        media_type: str_of(m, "type"),
                        protocol: str_of(m, "protocol"),
                        flags: strings(m.get("flags")),
                        streams: m
                            .get("streams")
                            .and_then(Value::as_list)
                            .unwrap_or_default()
                            .iter()
                            .map(|s| StreamStats {
                                local_address: s
                                    .get("local address")
                                    .and_then(Value::as_str)
                                    .and_then(|a| a.parse().ok())
                                    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                                local_port: u16::try_from(int(s, "local port")).unwrap_or(0),
                                endpoint: EndpointInfo::from_value(s.get("endpoint")),
                                advertised_endpoint: EndpointInfo::from_value(
                                    s.get("advertised endpoint"),
                                ),
                                last_packet: int(s, "last packet"),
                                flags: strings(s.get("flags")),
                                stats: Counters::from_value(s.get("stats")),
                                rtcp: s.get("RTCP").map(|r| RtcpQuality {
                                    fraction_lost: u8::try_from(int(r, "fraction lost"))
                                        .unwrap_or(0),
                                    packets_lost: int(r, "packets lost"),
                                    jitter: u32::try_from(int(r, "jitter")).unwrap_or(0),
                                }),
                            })
                            .collect(),
                    })
                    .collect();
                tags.push(TagStats {
                    tag: str_of(t, "tag"),
                    label: t.get("label").and_then(Value::as_str).map(str::to_owned),
                    created: int(t, "created"),
                    in_dialogue_with: t
                        .get("in dialogue with")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    medias,
                });
            }
        }
        let totals = v.get("totals");
        CallStats {
            created: int(v, "created"),
            created_us: int(v, "created_us"),
            last_signal: int(v, "last signal"),
            tags,
            totals_rtp: Counters::from_value(totals.and_then(|t| t.get("RTP"))),
            totals_rtcp: Counters::from_value(totals.and_then(|t| t.get("RTCP"))),
        }
    }
}

fn str_of(v: &Value<'_>, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings(v: Option<&Value<'_>>) -> Vec<String> {
    v.and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn media_value(m: &MediaStats) -> Value<'static> {
    let streams = m
        .streams
        .iter()
        .map(|s| {
            let mut sv = Value::dict()
                .with("local port", Value::Int(i64::from(s.local_port)))
                .with("local address", Value::string(s.local_address.to_string()))
                .with("family", Value::str(family(&s.local_address)))
                .with(
                    "endpoint",
                    s.endpoint
                        .as_ref()
                        .map_or_else(Value::dict, EndpointInfo::to_value),
                )
                .with(
                    "advertised endpoint",
                    s.advertised_endpoint
                        .as_ref()
                        .map_or_else(Value::dict, EndpointInfo::to_value),
                )
                .with("last packet", Value::Int(s.last_packet))
                .with(
                    "flags",
                    Value::List(s.flags.iter().map(|f| Value::string(f.clone())).collect()),
                )
                .with("stats", s.stats.to_value());
            if let Some(q) = s.rtcp {
                sv.insert(
                    "RTCP",
                    Value::dict()
                        .with("fraction lost", Value::Int(i64::from(q.fraction_lost)))
                        .with("packets lost", Value::Int(q.packets_lost))
                        .with("jitter", Value::Int(i64::from(q.jitter))),
                );
            }
            sv
        })
        .collect();
    Value::dict()
        .with("index", Value::Int(i64::from(m.index)))
        .with("type", Value::string(m.media_type.clone()))
        .with("protocol", Value::string(m.protocol.clone()))
        .with("streams", Value::List(streams))
        .with(
            "flags",
            Value::List(m.flags.iter().map(|f| Value::string(f.clone())).collect()),
        )
}

/// Daemon-wide numbers for the `statistics` reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statistics {
    /// Sessions owned by this relay.
    pub sessions_own: u64,
    /// Sessions held as standby copies (always 0 until replication exists).
    pub sessions_foreign: u64,
    /// Packets/s, bytes/s, errors/s over the last interval.
    pub packet_rate: u64,
    /// Bytes per second.
    pub byte_rate: u64,
    /// Errors per second.
    pub error_rate: u64,
    /// Seconds since start.
    pub uptime: u64,
    /// Sessions created since start.
    pub managed_sessions: u64,
    /// Offers refused (ports or limit).
    pub rejected_sessions: u64,
    /// Deleted by `timeout`.
    pub timeout_sessions: u64,
    /// Deleted by `silent-timeout`.
    pub silent_timeout_sessions: u64,
    /// Deleted by `final-timeout`.
    pub final_timeout_sessions: u64,
    /// Deleted by `delete`.
    pub regular_terminated_sessions: u64,
    /// Deleted for other reasons (shutdown).
    pub forced_terminated_sessions: u64,
    /// Packets relayed.
    pub relayed_packets: u64,
    /// Packets dropped with an error.
    pub relayed_packet_errors: u64,
    /// Bytes relayed.
    pub relayed_bytes: u64,
    /// Ended sessions that never saw media.
    pub zero_way_streams: u64,
    /// Ended sessions with media in one direction only.
    pub one_way_streams: u64,
    /// Mean duration of ended sessions, seconds.
    pub avg_call_duration: f64,
    /// Commands handled, by name (`ping`, `offer`, ...).
    pub command_counts: Vec<(&'static str, u64)>,
    /// Per logical interface: name, address, port range, ports in use.
    pub interfaces: Vec<InterfaceStats>,
}

/// Port usage of one logical interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Interface name.
    pub name: String,
    /// Its address.
    pub address: std::net::IpAddr,
    /// Lowest port.
    pub min: u16,
    /// Highest port.
    pub max: u16,
    /// Ports in use (RTP and RTCP).
    pub used: u64,
}

impl Statistics {
    /// The `statistics` reply dictionary.
    pub fn to_value(&self) -> Value<'static> {
        let i = |v: u64| Value::Int(clamp(v));
        let current = Value::dict()
            .with("sessionsown", i(self.sessions_own))
            .with("sessionsforeign", i(self.sessions_foreign))
            .with(
                "sessionstotal",
                i(self.sessions_own + self.sessions_foreign),
            )
            .with("transcodedmedia", i(0))
            .with("packetrate", i(self.packet_rate))
            .with("byterate", i(self.byte_rate))
            .with("errorrate", i(self.error_rate));
        let total = Value::dict()
            .with("uptime", Value::string(self.uptime.to_string()))
            .with("managedsessions", i(self.managed_sessions))
            .with("rejectedsessions", i(self.rejected_sessions))
            .with("timeoutsessions", i(self.timeout_sessions))
            .with("silenttimeoutsessions", i(self.silent_timeout_sessions))
            .with("finaltimeoutsessions", i(self.final_timeout_sessions))
            .with("offertimeoutsessions", i(0))
            .with(
                "regularterminatedsessions",
                i(self.regular_terminated_sessions),
            )
            .with(
                "forcedterminatedsessions",
                i(self.forced_terminated_sessions),
            )
            .with("relayedpackets", i(self.relayed_packets))
            .with("relayedpacketerrors", i(self.relayed_packet_errors))
            .with("relayedbytes", i(self.relayed_bytes))
            .with("zerowaystreams", i(self.zero_way_streams))
            .with("onewaystreams", i(self.one_way_streams))
            .with(
                "avgcallduration",
                Value::string(format!("{:.6}", self.avg_call_duration)),
            );
        let mut control = Value::dict();
        for (name, n) in &self.command_counts {
            if let Value::Dict(items) = &mut control {
                items.push((
                    std::borrow::Cow::Owned(format!("total{name}count").into_bytes()),
                    i(*n),
                ));
            }
        }
        let interfaces = self
            .interfaces
            .iter()
            .map(|ifc| {
                let total = u64::from(ifc.max.saturating_sub(ifc.min)) + 1;
                Value::dict()
                    .with("name", Value::string(ifc.name.clone()))
                    .with("address", Value::string(ifc.address.to_string()))
                    .with(
                        "ports",
                        Value::dict()
                            .with("min", Value::Int(i64::from(ifc.min)))
                            .with("max", Value::Int(i64::from(ifc.max)))
                            .with("used", i(ifc.used))
                            .with(
                                "used_pct",
                                Value::string(format!(
                                    "{:.2}",
                                    ifc.used as f64 * 100.0 / total as f64
                                )),
                            )
                            .with("free", i(total.saturating_sub(ifc.used)))
                            .with("totals", i(total)),
                    )
            })
            .collect();
        let stats = Value::dict()
            .with("currentstatistics", current)
            .with("totalstatistics", total)
            .with("controlstatistics", control)
            .with("interfaces", Value::List(interfaces));
        Value::dict()
            .with("result", Value::str("ok"))
            .with("statistics", stats)
    }
}

/// Builders for the simple reply shapes.
pub mod build {
    use super::*;

    /// `{result: pong}`
    pub fn pong() -> Value<'static> {
        Value::dict().with("result", Value::str("pong"))
    }

    /// `{result: ok}` plus `warning` if any.
    pub fn ok(warnings: &[String]) -> Value<'static> {
        let mut d = Value::dict().with("result", Value::str("ok"));
        add_warning(&mut d, warnings);
        d
    }

    /// `{result: ok, sdp}` plus `warning` if any.
    pub fn ok_sdp(sdp: String, warnings: &[String]) -> Value<'static> {
        let mut d = Value::dict()
            .with("result", Value::str("ok"))
            .with("sdp", Value::string(sdp));
        add_warning(&mut d, warnings);
        d
    }

    /// `{result: error, error-reason}` and nothing else.
    pub fn error(reason: &str) -> Value<'static> {
        Value::dict()
            .with("result", Value::str("error"))
            .with("error-reason", Value::string(reason))
    }

    /// `{result: load limit, message}`.
    pub fn load_limit(message: &str) -> Value<'static> {
        Value::dict()
            .with("result", Value::str("load limit"))
            .with("message", Value::string(message))
    }

    /// `{result: ok, calls: [...]}`.
    pub fn list(calls: Vec<String>) -> Value<'static> {
        Value::dict().with("result", Value::str("ok")).with(
            "calls",
            Value::List(calls.into_iter().map(Value::string).collect()),
        )
    }

    /// `{result: ok, <call stats>}` (query; delete unless `fast`).
    pub fn call_stats(stats: &CallStats, warnings: &[String]) -> Value<'static> {
        let mut d = Value::dict();
        stats.write_into(&mut d);
        d.insert("result", Value::str("ok"));
        add_warning(&mut d, warnings);
        d.into_owned()
    }

    /// Adds `warning` (all warnings joined with `; `).
    pub fn add_warning(d: &mut Value<'_>, warnings: &[String]) {
        if !warnings.is_empty() {
            d.insert("warning", Value::string(warnings.join("; ")));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bencode::decode;

    #[test]
    fn simple_shapes() {
        assert_eq!(build::pong().encode(), b"d6:result4:ponge");
        assert_eq!(
            build::error(OUT_OF_PORTS).encode(),
            b"d6:result5:error12:error-reason16:Ran out of portse"
        );
        let w = build::ok(&["a".into(), "b".into()]);
        assert_eq!(w.get("warning").unwrap().as_str(), Some("a; b"));
        assert_eq!(
            build::load_limit("Load limit exceeded")
                .get("result")
                .unwrap()
                .as_str(),
            Some("load limit")
        );
    }

    #[test]
    fn call_stats_round_trip() {
        let s = CallStats {
            created: 10,
            created_us: 5,
            last_signal: 11,
            tags: vec![
                TagStats {
                    tag: "ft".into(),
                    label: Some("caller".into()),
                    created: 10,
                    in_dialogue_with: Some("tt".into()),
                    medias: vec![MediaStats {
                        index: 1,
                        media_type: "audio".into(),
                        protocol: "RTP/AVP".into(),
                        flags: vec!["initialized".into()],
                        streams: vec![StreamStats {
                            local_address: "127.0.0.1".parse().unwrap(),
                            local_port: 30000,
                            endpoint: Some(EndpointInfo {
                                addr: "10.0.0.1:5000".parse().unwrap(),
                            }),
                            advertised_endpoint: None,
                            last_packet: 12,
                            flags: vec!["RTP".into()],
                            stats: Counters {
                                packets: 3,
                                bytes: 516,
                                errors: 1,
                            },
                            rtcp: Some(RtcpQuality {
                                fraction_lost: 2,
                                packets_lost: 7,
                                jitter: 40,
                            }),
                        }],
                    }],
                },
                TagStats {
                    tag: String::new(),
                    label: None,
                    created: 10,
                    in_dialogue_with: None,
                    medias: vec![],
                },
            ],
            totals_rtp: Counters {
                packets: 3,
                bytes: 516,
                errors: 1,
            },
            totals_rtcp: Counters::default(),
        };
        let v = build::call_stats(&s, &[]);
        let enc = v.encode();
        let back = decode(&enc).unwrap();
        assert!(back.get("tags").unwrap().get("<untagged 1>").is_some());
        assert_eq!(back.get("result").unwrap().as_str(), Some("ok"));
        assert_eq!(CallStats::from_value(&back), s);
    }

    #[test]
    fn statistics_shape() {
        let st = Statistics {
            sessions_own: 2,
            command_counts: vec![("offer", 4)],
            ..Default::default()
        };
        let v = st.to_value();
        let s = v.get("statistics").unwrap();
        assert_eq!(
            s.get("currentstatistics")
                .unwrap()
                .get("sessionstotal")
                .unwrap()
                .as_int(),
            Some(2)
        );
        assert_eq!(
            s.get("controlstatistics")
                .unwrap()
                .get("totaloffercount")
                .unwrap()
                .as_int(),
            Some(4)
        );
        assert!(
            s.get("totalstatistics")
                .unwrap()
                .get("uptime")
                .unwrap()
                .as_str()
                .is_some()
        );
    }
}
