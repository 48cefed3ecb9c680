//! RTP/RTCP header checks and RTCP SR/RR report-block parsing over byte
//! slices (no allocation).

/// What a datagram received on a media port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    /// An RTP packet (version 2, at least 12 bytes).
    Rtp,
    /// An RTCP packet (version 2, packet type 192–223, at least 8 bytes).
    Rtcp,
    /// Too short or not version 2: dropped and counted.
    Invalid,
}

/// Classifies a datagram (RFC 5761 §4 demultiplexing by the second byte).
pub fn classify(packet: &[u8]) -> PacketClass {
    let (Some(&b0), Some(&b1)) = (packet.first(), packet.get(1)) else {
        return PacketClass::Invalid;
    };
    if b0 >> 6 != 2 {
        return PacketClass::Invalid;
    }
    if (192..=223).contains(&b1) {
        if packet.len() >= 8 {
            PacketClass::Rtcp
        } else {
            PacketClass::Invalid
        }
    } else if packet.len() >= 12 {
        PacketClass::Rtp
    } else {
        PacketClass::Invalid
    }
}

/// The first report block of an SR or RR (RFC 3550 §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// SSRC the report is about.
    pub ssrc: u32,
    /// Fraction lost since the previous report (/256).
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (signed 24 bits).
    pub packets_lost: i32,
    /// Interarrival jitter (timestamp units).
    pub jitter: u32,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Walks a compound RTCP packet and returns the first report block of the
/// first SR (200) or RR (201) that has one.
pub fn first_report_block(packet: &[u8]) -> Option<ReportBlock> {
    let mut off = 0usize;
    while off + 8 <= packet.len() {
        let b0 = *packet.get(off)?;
        let pt = *packet.get(off + 1)?;
        let len_words = u16::from_be_bytes([*packet.get(off + 2)?, *packet.get(off + 3)?]);
        let len = (usize::from(len_words) + 1) * 4;
        if b0 >> 6 != 2 || off + len > packet.len() {
            return None;
        }
        let count = b0 & 0x1f;
        let block_at = match pt {
            200 => Some(off + 28),
            201 => Some(off + 8),
            _ => None,
        };
        if let Some(at) = block_at
            && count > 0
            && at + 24 <= off + len
        {
            let ssrc = be32(packet, at)?;
            let word = be32(packet, at + 4)?;
            let fraction_lost = (word >> 24) as u8;
            let raw = word & 0x00ff_ffff;
            // Sign-extend 24 bits.
            let packets_lost = ((raw << 8) as i32) >> 8;
            let jitter = be32(packet, at + 12)?;
            return Some(ReportBlock {
                ssrc,
                fraction_lost,
                packets_lost,
                jitter,
            });
        }
        off += len;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rr(fraction: u8, lost: i32, jitter: u32) -> Vec<u8> {
        let mut p = vec![0x81, 201, 0, 7];
        p.extend_from_slice(&0x1111_1111u32.to_be_bytes());
        p.extend_from_slice(&0x2222_2222u32.to_be_bytes());
        let word = (u32::from(fraction) << 24) | ((lost as u32) & 0x00ff_ffff);
        p.extend_from_slice(&word.to_be_bytes());
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&jitter.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    }

    #[test]
    fn classifies() {
        let mut rtp = vec![0x80, 0, 0, 1];
        rtp.extend_from_slice(&[0; 8]);
        assert_eq!(classify(&rtp), PacketClass::Rtp);
        assert_eq!(classify(&rtp[..11]), PacketClass::Invalid);
        assert_eq!(classify(&[0x00; 20]), PacketClass::Invalid);
        assert_eq!(classify(b"hello world, not rtp"), PacketClass::Invalid);
        assert_eq!(classify(&rr(0, 0, 0)), PacketClass::Rtcp);
        assert_eq!(classify(&[]), PacketClass::Invalid);
    }

    #[test]
    fn parses_rr_and_sr_blocks() {
        let b = first_report_block(&rr(25, -3, 77)).unwrap();
        assert_eq!(
            b,
            ReportBlock {
                ssrc: 0x2222_2222,
                fraction_lost: 25,
                packets_lost: -3,
                jitter: 77
            }
        );
        // SR with one block, preceded by an SDES-less compound start.
        let mut sr = vec![0x81, 200, 0, 12];
        sr.extend_from_slice(&[0; 24]);
        sr.extend_from_slice(&rr(1, 5, 9)[8..]);
        let b = first_report_block(&sr).unwrap();
        assert_eq!((b.fraction_lost, b.packets_lost, b.jitter), (1, 5, 9));
        // Compound: empty RR then SR.
        let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        compound.extend_from_slice(&sr);
        assert_eq!(first_report_block(&compound).unwrap().packets_lost, 5);
        // Truncated length field.
        let mut bad = rr(0, 0, 0);
        bad[3] = 50;
        assert_eq!(first_report_block(&bad), None);
    }
}
