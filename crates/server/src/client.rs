//! Requests the node sends itself (proxying, pings, BYE on timeout).

use tokio::sync::mpsc;
use voxline_sip::Message;
use voxline_transaction::ClientTxId;

/// What happens to a client transaction, in order.
// Responses are by far the most common event: boxing them would cost an
// allocation each to save memory on the rare others.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// A response (provisional or final; 2xx retransmissions on INVITE too).
    /// Boxed: the channel allocates its slots in blocks of 32, and a
    /// `Message` inline would make every session's block tens of KiB.
    Response(Box<Message>),
    /// No final response in time (Timer B/F): act as if 408 arrived.
    Timeout,
    /// The request could not be sent: act as if 503 arrived (RFC 3263).
    TransportError,
    /// The transaction is gone; nothing more will arrive.
    Terminated,
}

/// Where the events of client transactions go: each event is paired with
/// the tag the sender chose when it started the transaction, so one task
/// can drive many branches through one channel.
pub type ClientSink = mpsc::UnboundedSender<(u64, ClientEvent)>;

/// The receiving end of a [`ClientSink`].
pub type ClientEvents = mpsc::UnboundedReceiver<(u64, ClientEvent)>;

/// A request being prepared: the shard its transaction will live in and
/// the branch and Via value to put on top of it.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    pub(crate) shard: usize,
    /// The branch parameter (RFC 3261 magic cookie; carries the shard).
    pub branch: String,
    /// A complete Via value for the node: `SIP/2.0/UDP host:port;branch=...;rport`.
    pub via: String,
}

pub(crate) fn listener_closed(id: ClientTxId) {
    tracing::trace!(?id, "client transaction event after its listener went away");
}
