//! Per-direction media totals from a relay's `query`/`delete` statistics,
//! in the shape a call detail record wants.

use serde::Serialize;
use voxline_ng::reply::CallStats;

/// What one party sent through the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LegTotals {
    /// RTP packets the relay received from this party.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// RTCP packets the relay received from this party.
    pub rtcp_packets: u64,
    /// Packets from this party the relay could not forward.
    pub errors: u64,
    /// Packets lost on the way to this party, as its own RTCP receiver
    /// reports say (0 if it sends none).
    pub lost: i64,
}

/// Both directions of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MediaTotals {
    /// The party that sent the offer (the `from_tag`).
    pub offerer: LegTotals,
    /// Every other party (forks summed).
    pub answerer: LegTotals,
}

impl MediaTotals {
    /// Sums the streams of `stats` by party; `from_tag` is the offerer.
    pub fn from_stats(stats: &CallStats, from_tag: &str) -> MediaTotals {
        let mut t = MediaTotals::default();
        for tag in &stats.tags {
            let leg = if tag.tag == from_tag {
                &mut t.offerer
            } else {
                &mut t.answerer
            };
            for stream in tag.medias.iter().flat_map(|m| &m.streams) {
                let rtcp = stream.flags.iter().any(|f| f == "RTCP");
                if rtcp {
                    leg.rtcp_packets += stream.stats.packets;
                } else {
                    leg.packets += stream.stats.packets;
                    leg.bytes += stream.stats.bytes;
                }
                leg.errors += stream.stats.errors;
                if let Some(q) = &stream.rtcp {
                    leg.lost += q.packets_lost;
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use voxline_ng::reply::{Counters, MediaStats, RtcpQuality, StreamStats, TagStats};

    use super::*;

    fn stream(label: &str, packets: u64, lost: Option<i64>) -> StreamStats {
        StreamStats {
            local_address: IpAddr::from([127, 0, 0, 1]),
            local_port: 1,
            endpoint: None,
            advertised_endpoint: None,
            last_packet: 0,
            flags: vec![label.to_owned()],
            stats: Counters {
                packets,
                bytes: packets * 172,
                errors: 0,
            },
            rtcp: lost.map(|l| RtcpQuality {
                fraction_lost: 0,
                packets_lost: l,
                jitter: 0,
            }),
        }
    }

    fn tag(name: &str, streams: Vec<StreamStats>) -> TagStats {
        TagStats {
            tag: name.to_owned(),
            label: None,
            created: 0,
            in_dialogue_with: None,
            medias: vec![MediaStats {
                index: 1,
                media_type: "audio".into(),
                protocol: "RTP/AVP".into(),
                flags: vec![],
                streams,
            }],
        }
    }

    #[test]
    fn sums_by_party() {
        let stats = CallStats {
            tags: vec![
                tag(
                    "ft",
                    vec![stream("RTP", 10, None), stream("RTCP", 2, Some(3))],
                ),
                tag("fork1", vec![stream("RTP", 4, None)]),
                tag("fork2", vec![stream("RTP", 1, None)]),
            ],
            ..CallStats::default()
        };
        let t = MediaTotals::from_stats(&stats, "ft");
        assert_eq!(
            t.offerer,
            LegTotals {
                packets: 10,
                bytes: 1720,
                rtcp_packets: 2,
                errors: 0,
                lost: 3
            }
        );
        assert_eq!(t.answerer.packets, 5);
        assert_eq!(t.answerer.rtcp_packets, 0);
    }
}
