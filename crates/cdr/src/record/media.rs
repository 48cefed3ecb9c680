//! The media relay's totals of a call, per direction, taken from the
//! relay's `delete` (or `query`) reply.

use voxline_ng::reply::{CallStats, MediaStats, TagStats};

/// What the relay saw of one party's media.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaTotals {
    /// RTP packets the relay received from this party (RTCP not counted).
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Packets of this party's media that the other party reported lost
    /// (RTCP receiver reports, cumulative, summed over media sections).
    pub lost: u64,
}

/// The relay a call used and its totals for both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayUsage {
    /// The relay: its ng control address as configured (`127.0.0.1:22222`).
    pub relay: String,
    /// Media the caller sent (caller → callee).
    pub from_caller: MediaTotals,
    /// Media the callee sent (callee → caller).
    pub from_callee: MediaTotals,
}

impl RelayUsage {
    /// The totals of a `delete`/`query` reply. `caller_tag` is the From
    /// tag of the call (the tag the `offer` was made with); when no tag of
    /// the reply has it (an untagged or renamed monologue), the first tag
    /// counts as the caller's, as rtpengine lists the offerer first. Tags
    /// beyond two (forked early media) count as the callee's.
    pub fn from_call_stats(
        relay: impl Into<String>,
        stats: &CallStats,
        caller_tag: &str,
    ) -> RelayUsage {
        let by_tag = !caller_tag.is_empty() && stats.tags.iter().any(|t| t.tag == caller_tag);
        let is_caller = |i: usize, t: &TagStats| {
            if by_tag { t.tag == caller_tag } else { i == 0 }
        };
        let mut usage = RelayUsage {
            relay: relay.into(),
            ..RelayUsage::default()
        };
        for (i, tag) in stats.tags.iter().enumerate() {
            let (packets, bytes) = tag.medias.iter().map(received).fold((0u64, 0u64), |a, b| {
                (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
            });
            // This tag's RTCP reports tell what it lost of the other side.
            let lost = tag
                .medias
                .iter()
                .map(reported_lost)
                .fold(0u64, u64::saturating_add);
            let (sender, other) = if is_caller(i, tag) {
                (&mut usage.from_caller, &mut usage.from_callee)
            } else {
                (&mut usage.from_callee, &mut usage.from_caller)
            };
            sender.packets = sender.packets.saturating_add(packets);
            sender.bytes = sender.bytes.saturating_add(bytes);
            other.lost = other.lost.saturating_add(lost);
        }
        usage
    }
}

/// RTP packets and bytes received on a media section's streams.
fn received(media: &MediaStats) -> (u64, u64) {
    media
        .streams
        .iter()
        .filter(|s| !s.flags.iter().any(|f| f == "RTCP"))
        .fold((0u64, 0u64), |(p, b), s| {
            (
                p.saturating_add(s.stats.packets),
                b.saturating_add(s.stats.bytes),
            )
        })
}

/// The largest cumulative loss a media section's RTCP reports gave (the
/// RTP and RTCP streams of one section can carry the same report).
fn reported_lost(media: &MediaStats) -> u64 {
    media
        .streams
        .iter()
        .filter_map(|s| s.rtcp)
        .map(|q| u64::try_from(q.packets_lost).unwrap_or(0))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use voxline_ng::reply::{Counters, RtcpQuality, StreamStats};

    use super::*;

    fn stream(label: &str, packets: u64, bytes: u64, lost: Option<i64>) -> StreamStats {
        StreamStats {
            local_address: IpAddr::from([127, 0, 0, 1]),
            local_port: 30000,
            endpoint: None,
            advertised_endpoint: None,
            last_packet: 0,
            flags: vec![label.to_string()],
            stats: Counters {
                packets,
                bytes,
                errors: 0,
            },
            rtcp: lost.map(|packets_lost| RtcpQuality {
                fraction_lost: 0,
                packets_lost,
                jitter: 0,
            }),
        }
    }

    fn tag(name: &str, streams: Vec<StreamStats>) -> TagStats {
        TagStats {
            tag: name.to_string(),
            label: None,
            created: 0,
            in_dialogue_with: None,
            medias: vec![MediaStats {
                index: 1,
                media_type: "audio".into(),
                protocol: "RTP/AVP".into(),
                flags: Vec::new(),
                streams,
            }],
        }
    }

    fn stats(tags: Vec<TagStats>) -> CallStats {
        CallStats {
            tags,
            ..CallStats::default()
        }
    }

    #[test]
    fn directions_follow_the_caller_tag() {
        // The callee's tag listed first: the From tag decides, not order.
        let s = stats(vec![
            tag(
                "callee-tag",
                vec![
                    stream("RTP", 500, 86_000, None),
                    stream("RTCP", 5, 400, Some(3)),
                ],
            ),
            tag(
                "caller-tag",
                vec![
                    stream("RTP", 498, 85_656, Some(1)),
                    stream("RTCP", 4, 320, Some(1)),
                ],
            ),
        ]);
        let u = RelayUsage::from_call_stats("127.0.0.1:22222", &s, "caller-tag");
        assert_eq!(u.relay, "127.0.0.1:22222");
        assert_eq!(
            u.from_caller,
            MediaTotals {
                packets: 498,
                bytes: 85_656,
                lost: 3
            }
        );
        assert_eq!(
            u.from_callee,
            MediaTotals {
                packets: 500,
                bytes: 86_000,
                lost: 1
            }
        );
    }

    #[test]
    fn unknown_tag_means_first_is_caller_and_extra_tags_are_callee() {
        let s = stats(vec![
            tag("", vec![stream("RTP", 10, 1000, None)]),
            tag("b1", vec![stream("RTP", 7, 700, Some(-2))]),
            tag("b2", vec![stream("RTP", 3, 300, None)]),
        ]);
        let u = RelayUsage::from_call_stats("r", &s, "nope");
        assert_eq!((u.from_caller.packets, u.from_caller.bytes), (10, 1000));
        assert_eq!((u.from_callee.packets, u.from_callee.bytes), (10, 1000));
        // A negative cumulative loss (duplicates) counts as none.
        assert_eq!(u.from_caller.lost, 0);
        assert_eq!(
            RelayUsage::from_call_stats("r", &stats(Vec::new()), "x"),
            RelayUsage {
                relay: "r".into(),
                ..RelayUsage::default()
            }
        );
    }
}
