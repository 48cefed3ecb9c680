//! `query`/`delete` statistics in rtpengine's shape from the table and the
//! data-plane counters.

use std::net::SocketAddr;

use voxline_ng::reply::{
    CallStats, Counters, EndpointInfo, MediaStats, RtcpQuality, StreamStats, TagStats,
};
use voxline_relay_dataplane::{CounterSnapshot, StreamKey};

use super::{Call, StreamState};
use crate::config::InterfaceConfig;

fn secs(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
}

pub(super) fn call_stats(
    call: &Call,
    interfaces: &[InterfaceConfig],
    counters: &dyn Fn(StreamKey) -> CounterSnapshot,
) -> CallStats {
    let mut out = CallStats {
        created: secs(call.created_ms),
        created_us: i64::try_from((call.created_ms % 1000) * 1000).unwrap_or(0),
        last_signal: secs(call.last_signal_ms),
        ..CallStats::default()
    };
    for leg in &call.legs {
        let local = interfaces
            .get(leg.interface)
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |i| i.address);
        let peer_tag = leg
            .peer
            .and_then(|p| call.leg(p))
            .map(|p| p.tag.clone())
            .filter(|t| !t.is_empty());
        let medias = leg
            .media
            .iter()
            .map(|m| {
                let mut flags = Vec::new();
                if !m.disabled {
                    flags.push("initialized".to_owned());
                }
                if matches!(m.direction.as_str(), "sendrecv" | "sendonly") {
                    flags.push("send".to_owned());
                }
                if matches!(m.direction.as_str(), "sendrecv" | "recvonly") {
                    flags.push("recv".to_owned());
                }
                if m.mux_active() {
                    flags.push("rtcp-mux".to_owned());
                }
                let mut streams = Vec::new();
                for (s, label, is_rtp) in [(&m.rtp, "RTP", true), (&m.rtcp, "RTCP", false)] {
                    if let Some(s) = s {
                        let snap = counters(StreamKey(s.key));
                        let st = stream_stats(
                            s,
                            local,
                            label,
                            leg.strict_source,
                            &snap,
                            call.created_ms,
                        );
                        let c = Counters {
                            packets: snap.packets,
                            bytes: snap.bytes,
                            errors: snap.errors,
                        };
                        if is_rtp {
                            out.totals_rtp.add(c);
                        } else {
                            out.totals_rtcp.add(c);
                        }
                        streams.push(st);
                    }
                }
                MediaStats {
                    index: m.index,
                    media_type: m.kind.clone(),
                    protocol: m.protocol.clone(),
                    flags,
                    streams,
                }
            })
            .collect::<Vec<_>>();
        for tag in std::iter::once(&leg.tag).chain(leg.fork_tags.iter()) {
            out.tags.push(TagStats {
                tag: tag.clone(),
                label: leg.label.clone(),
                created: secs(leg.created_ms),
                in_dialogue_with: peer_tag.clone(),
                medias: medias.clone(),
            });
        }
    }
    out
}

fn stream_stats(
    s: &StreamState,
    local: std::net::IpAddr,
    label: &str,
    strict: bool,
    snap: &CounterSnapshot,
    created_ms: u64,
) -> StreamStats {
    let mut flags = vec![label.to_owned()];
    if s.advertised.is_some() {
        flags.push("filled".to_owned());
    }
    if snap.latched.is_some() {
        flags.push("confirmed".to_owned());
    }
    if strict {
        flags.push("strict source".to_owned());
    }
    let endpoint: Option<SocketAddr> = snap.latched.or(s.advertised);
    StreamStats {
        local_address: local,
        local_port: s.local_port,
        endpoint: endpoint.map(|addr| EndpointInfo { addr }),
        advertised_endpoint: s.advertised.map(|addr| EndpointInfo { addr }),
        last_packet: secs(if snap.last_packet_ms > 0 {
            snap.last_packet_ms
        } else {
            created_ms
        }),
        flags,
        stats: Counters {
            packets: snap.packets,
            bytes: snap.bytes,
            errors: snap.errors,
        },
        rtcp: snap.rtcp.map(|r| RtcpQuality {
            fraction_lost: r.fraction_lost,
            packets_lost: i64::from(r.packets_lost),
            jitter: r.jitter,
        }),
    }
}
