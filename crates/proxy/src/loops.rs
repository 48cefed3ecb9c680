//! Loop detection (RFC 3261 §16.3 step 4, §16.6 step 8).
//!
//! The branch of every Via this proxy adds carries a hash of the request
//! fields that decide its routing (Request-URI as received, From and To
//! tags, Call-ID, CSeq number, Proxy-Require). A request that comes back
//! with one of our Vias whose hash equals the request's current hash has
//! looped (482); a different hash is a spiral (the Request-URI changed) and
//! is routed again.

use std::hash::{Hash, Hasher};

use voxline_sip::{HeaderName, Message};

use crate::identity_of_via;

/// The routing hash of a request, as 8 hex digits in our branches.
pub fn loop_hash(msg: &Message) -> u32 {
    // A fixed-key hash: the value must be the same on every node of a
    // cluster and across restarts.
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    msg.request_uri_str().unwrap_or("").hash(&mut h);
    msg.from_tag().unwrap_or("").hash(&mut h);
    msg.to_tag().unwrap_or("").hash(&mut h);
    msg.call_id().unwrap_or("").hash(&mut h);
    msg.cseq().map(|c| c.seq).unwrap_or(0).hash(&mut h);
    for v in msg.header_lines(HeaderName::ProxyRequire) {
        v.hash(&mut h);
    }
    let x = h.finish();
    (x ^ (x >> 32)) as u32
}

/// The loop hash carried in one of our branches (`z9hG4bKvx<shard>.<hash8>...`).
pub fn hash_in_branch(branch: &str) -> Option<u32> {
    let rest = branch.strip_prefix("z9hG4bKvx")?;
    let (_, unique) = rest.split_once('.')?;
    u32::from_str_radix(unique.get(..8)?, 16).ok()
}

/// Whether `msg` has passed through this proxy before with the same
/// routing-relevant fields. `is_ours(host, port)` says whether a Via
/// sent-by names one of our listeners.
pub fn is_loop(msg: &Message, is_ours: impl Fn(&str, Option<u16>) -> bool) -> bool {
    let current = loop_hash(msg);
    msg.vias().flatten().any(|via| {
        identity_of_via(&via, &is_ours) && via.branch.and_then(hash_in_branch) == Some(current)
    })
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn invite(ruri: &str, extra_via: &str) -> Message {
        Message::parse(Bytes::from(format!(
            "INVITE {ruri} SIP/2.0\r\n{extra_via}Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
From: <sip:a@x>;tag=f\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    fn ours(host: &str, port: Option<u16>) -> bool {
        host == "10.0.0.1" && port == Some(5060)
    }

    #[test]
    fn same_request_back_is_a_loop_changed_uri_is_a_spiral() {
        let first = invite("sip:b@x", "");
        let branch = format!("z9hG4bKvx0.{:08x}abcdef", loop_hash(&first));
        assert_eq!(hash_in_branch(&branch), Some(loop_hash(&first)));
        let via = format!("Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\n");
        assert!(is_loop(&invite("sip:b@x", &via), ours));
        assert!(!is_loop(&invite("sip:b@192.0.2.50", &via), ours), "spiral");
        let foreign = format!("Via: SIP/2.0/UDP 10.9.9.9:5060;branch={branch}\r\n");
        assert!(!is_loop(&invite("sip:b@x", &foreign), ours), "not our Via");
    }
}
