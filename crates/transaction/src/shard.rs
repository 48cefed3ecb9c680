//! Shard selection: which [`TransactionTable`](crate::TransactionTable) of a
//! sharded set owns a message.
//!
//! Requests are placed by a keyed hash of the fields every message of their
//! transaction family shares (so an INVITE, its retransmissions, its ACK and
//! its CANCEL land on the same shard): branch + sent-by for RFC 3261
//! branches, Call-ID + From tag + CSeq number for the RFC 2543 fallback.
//!
//! Responses belong to client transactions, whose branches this node
//! generated. [`ShardRouter::branch`] writes the owning shard into the branch
//! (`z9hG4bKvx<shard>.<unique>`, as Kamailio's tm writes its hash index), so a
//! response finds its shard without a shared map; branches in another form
//! fall back to a keyed hash of the branch.

use std::collections::hash_map::RandomState;
use std::fmt::Display;
use std::hash::{BuildHasher, Hasher};

use crate::message::{MAGIC_COOKIE, MessageInfo, StartLine};

/// The prefix of branches that carry their shard index.
const SHARD_PREFIX: &str = "z9hG4bKvx";

/// Maps messages to shards. Cheap to clone and `Send + Sync`: every worker of
/// an I/O layer holds a clone, and all clones route alike.
#[derive(Debug, Clone)]
pub struct ShardRouter {
    count: usize,
    hasher: RandomState,
}

impl ShardRouter {
    /// A router over `count` shards (at least one) with a fresh random hash
    /// key, so an attacker cannot aim many transactions at one shard.
    #[must_use]
    pub fn new(count: usize) -> Self {
        Self {
            count: count.max(1),
            hasher: RandomState::new(),
        }
    }

    /// The number of shards.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.count
    }

    /// The shard that owns `info`'s transaction: for a request, the server
    /// transaction's shard; for a response, the client transaction's.
    #[must_use]
    pub fn shard_of(&self, info: &MessageInfo<'_>) -> usize {
        match info.start {
            StartLine::Request { .. } => self.server_shard(info),
            StartLine::Response { .. } => info.via.branch.map_or(0, |b| self.client_shard(b)),
        }
    }

    /// The shard of the server transaction a received request belongs to.
    #[must_use]
    pub fn server_shard(&self, info: &MessageInfo<'_>) -> usize {
        if self.count == 1 {
            return 0;
        }
        let mut h = self.hasher.build_hasher();
        if let Some(branch) = info.rfc3261_branch() {
            h.write(branch.as_bytes());
            h.write_u8(0xff);
            for b in info.via.sent_by.bytes() {
                h.write_u8(b.to_ascii_lowercase());
            }
        } else {
            h.write(info.call_id.as_bytes());
            h.write_u8(0xff);
            h.write(info.from_tag.unwrap_or("").as_bytes());
            h.write_u32(info.cseq.number);
        }
        self.reduce(h.finish())
    }

    /// The shard of the client transaction whose request carries `branch`.
    #[must_use]
    pub fn client_shard(&self, branch: &str) -> usize {
        if self.count == 1 {
            return 0;
        }
        if let Some(shard) = decode_shard(branch).filter(|&s| s < self.count) {
            return shard;
        }
        let mut h = self.hasher.build_hasher();
        h.write(branch.as_bytes());
        self.reduce(h.finish())
    }

    /// A branch for a client transaction owned by `shard`:
    /// `z9hG4bKvx<shard in hex>.<unique>`. `unique` must make the branch
    /// unique in space and time (RFC 3261 §8.1.1.7), e.g. a random token or
    /// the hash a proxy computes for loop detection (§16.6 step 8).
    #[must_use]
    pub fn branch(&self, shard: usize, unique: impl Display) -> String {
        format!("{SHARD_PREFIX}{shard:x}.{unique}")
    }

    fn reduce(&self, hash: u64) -> usize {
        // Multiply-shift maps the full 64-bit range evenly onto the shards.
        let count = u64::try_from(self.count).unwrap_or(u64::MAX);
        let shard = (u128::from(hash) * u128::from(count)) >> 64;
        usize::try_from(shard).unwrap_or(0)
    }
}

fn decode_shard(branch: &str) -> Option<usize> {
    debug_assert!(SHARD_PREFIX.starts_with(MAGIC_COOKIE));
    let rest = branch.strip_prefix(SHARD_PREFIX)?;
    let (hex, _) = rest.split_once('.')?;
    if hex.is_empty() || hex.len() > 8 {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::message::{CSeq, TopVia};

    fn info<'a>(start: StartLine<'a>, branch: &'a str, sent_by: &'a str) -> MessageInfo<'a> {
        MessageInfo {
            start,
            via: TopVia {
                branch: Some(branch),
                sent_by,
                transport: "UDP",
            },
            cseq: CSeq {
                number: 1,
                method: "INVITE",
            },
            call_id: "c",
            from_tag: Some("f"),
            to_tag: None,
        }
    }

    const INVITE: StartLine<'static> = StartLine::Request {
        method: "INVITE",
        uri: "sip:a@b",
    };
    const CANCEL: StartLine<'static> = StartLine::Request {
        method: "CANCEL",
        uri: "sip:a@b",
    };

    #[test]
    fn generated_branches_route_responses_to_their_shard() {
        let router = ShardRouter::new(8);
        for shard in 0..8 {
            let branch = router.branch(shard, format!("u{shard}"));
            assert!(branch.starts_with(MAGIC_COOKIE));
            assert_eq!(router.client_shard(&branch), shard);
            let response = info(StartLine::Response { status: 180 }, &branch, "me");
            assert_eq!(router.shard_of(&response), shard);
        }
    }

    #[test]
    fn a_transaction_family_shares_a_shard() {
        let router = ShardRouter::new(16);
        for i in 0..200 {
            let branch = format!("z9hG4bK{i}");
            let a = router.shard_of(&info(INVITE, &branch, "Host:5060"));
            let b = router.shard_of(&info(CANCEL, &branch, "host:5060"));
            assert_eq!(a, b);
            assert!(a < 16);
        }
    }

    #[test]
    fn requests_spread_over_shards() {
        let router = ShardRouter::new(4);
        let mut seen = [0usize; 4];
        for i in 0..400 {
            let branch = format!("z9hG4bK{i}");
            let shard = router.shard_of(&info(INVITE, &branch, "h"));
            seen[shard] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn foreign_or_out_of_range_branches_fall_back_to_hashing() {
        let router = ShardRouter::new(2);
        for branch in ["z9hG4bKvxff.1", "z9hG4bKvx.1", "z9hG4bKvxzz.1", "1234", ""] {
            assert!(router.client_shard(branch) < 2, "{branch}");
        }
        assert_eq!(decode_shard("z9hG4bKvx1f.abc"), Some(31));
        assert_eq!(decode_shard("z9hG4bKvx123456789.a"), None);
    }

    #[test]
    fn one_shard_routes_everything_to_zero() {
        let router = ShardRouter::new(0);
        assert_eq!(router.shard_count(), 1);
        assert_eq!(router.shard_of(&info(INVITE, "x", "y")), 0);
        assert_eq!(router.client_shard("z9hG4bKvx5.a"), 0);
    }
}
