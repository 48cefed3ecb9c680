//! Addressing: where a message came from and where one goes.

use std::net::SocketAddr;

pub use voxline_transaction::{ConnectionId as ConnId, TransportKind};

/// The far end of a received message and the local socket it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Transport it arrived over.
    pub transport: TransportKind,
    /// Source address (IP and port) as seen on the socket.
    pub remote: SocketAddr,
    /// Local address of the listener or connection.
    pub local: SocketAddr,
    /// The stream connection, for reliable transports.
    pub conn: Option<ConnId>,
}

impl Peer {
    /// The target that sends back to this peer the way RFC 3261 §18.2.2 and
    /// RFC 3581 want for responses: over the same connection, or to the
    /// source address from the same local socket.
    pub fn reply_target(&self) -> Target {
        Target {
            transport: self.transport,
            remote: self.remote,
            local: Some(self.local),
            conn: self.conn,
        }
    }
}

/// Where to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// Transport to use.
    pub transport: TransportKind,
    /// Destination address.
    pub remote: SocketAddr,
    /// Local listener to send from (None: the first one that fits).
    pub local: Option<SocketAddr>,
    /// A specific existing connection (reliable transports); when closed,
    /// the send falls back to any connection to `remote`, or a new one.
    pub conn: Option<ConnId>,
}

impl Target {
    /// A target by transport and address, with no preference for the socket.
    pub fn new(transport: TransportKind, remote: SocketAddr) -> Self {
        Target {
            transport,
            remote,
            local: None,
            conn: None,
        }
    }
}
