//! Addressing: where a message came from and where one goes.
//!
//! The transport shares its addressing types with the transaction layer, so
//! a transaction's destination is directly a send target.

pub use voxline_transaction::{ConnectionId as ConnId, Peer, TransportKind};

/// Where to send a message: the same shape as a [`Peer`]. `local` picks the
/// listener to send from (None: the first one of the right address family);
/// `connection` names an existing stream connection, and when it is closed
/// the send falls back to any connection to `addr`, or a new one.
pub type Target = Peer;

/// The target that answers `peer` the way RFC 3261 §18.2.2 and RFC 3581 want
/// for responses: over the same connection, or to the source address from
/// the same local socket.
pub fn reply_target(peer: &Peer) -> Target {
    *peer
}
