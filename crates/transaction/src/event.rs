//! What the table tells its driver: transaction ids, transmits, the result
//! of a received message, asynchronous events and errors.

use thiserror::Error;

use crate::message::{MessageError, Peer};
use crate::timer::Timer;

/// Where a transaction lives: shard, slot and the slot's generation, so an
/// id of a terminated transaction never reaches a newer one in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TxRef {
    pub(crate) shard: u32,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

/// Identifies a server transaction (a request received from the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(pub(crate) TxRef);

/// Identifies a client transaction (a request sent by the transaction user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(pub(crate) TxRef);

/// Either kind of transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxId {
    /// A client transaction.
    Client(ClientTxId),
    /// A server transaction.
    Server(ServerTxId),
}

impl ServerTxId {
    /// The index of the shard that owns the transaction.
    #[must_use]
    pub fn shard(self) -> usize {
        self.0.shard as usize
    }
}

impl ClientTxId {
    /// The index of the shard that owns the transaction.
    #[must_use]
    pub fn shard(self) -> usize {
        self.0.shard as usize
    }
}

impl TxId {
    /// The index of the shard that owns the transaction.
    #[must_use]
    pub fn shard(self) -> usize {
        match self {
            TxId::Client(id) => id.shard(),
            TxId::Server(id) => id.shard(),
        }
    }

    pub(crate) fn tx_ref(self) -> TxRef {
        match self {
            TxId::Client(ClientTxId(r)) | TxId::Server(ServerTxId(r)) => r,
        }
    }
}

impl From<ClientTxId> for TxId {
    fn from(id: ClientTxId) -> Self {
        TxId::Client(id)
    }
}

impl From<ServerTxId> for TxId {
    fn from(id: ServerTxId) -> Self {
        TxId::Server(id)
    }
}

/// A message the I/O layer must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<M> {
    /// Where to send it. For a server transaction this is the peer the
    /// request came from; an I/O layer implementing RFC 3261 §18.2.2 may
    /// route by the response's Via instead.
    pub dest: Peer,
    /// The message (a cheap clone of a stored handle for retransmissions).
    pub msg: M,
    /// The transaction that sends it: report a failure to send with
    /// [`TransactionTable::transport_error`](crate::TransactionTable::transport_error).
    pub tx: TxId,
}

/// The result of [`TransactionTable::handle_incoming`](crate::TransactionTable::handle_incoming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<M> {
    /// A new request (not ACK, not CANCEL) for the transaction user, with
    /// the server transaction created for it. Respond with
    /// [`send_response`](crate::TransactionTable::send_response).
    Request {
        /// The new server transaction.
        id: ServerTxId,
        /// The request.
        request: M,
    },
    /// A new CANCEL (RFC 3261 §9.2), with its own non-INVITE server
    /// transaction and the INVITE server transaction it matches, if any.
    /// The transaction user answers the CANCEL (200, or 481 when `invite`
    /// is `None`) and, if the INVITE is still pending, answers it with 487.
    Cancel {
        /// The CANCEL's own server transaction.
        id: ServerTxId,
        /// The INVITE server transaction it cancels.
        invite: Option<ServerTxId>,
        /// The CANCEL request.
        request: M,
    },
    /// An ACK the transaction layer does not consume: the ACK for a 2xx,
    /// which is its own transaction-less request (RFC 3261 §17.1.1.3;
    /// RFC 6026 §8.7). `invite` is the INVITE server transaction in the
    /// Accepted state it matched, if any (RFC 3261 clients send this ACK
    /// with a new branch, so usually none).
    Ack {
        /// The ACK.
        request: M,
        /// The matching Accepted INVITE server transaction.
        invite: Option<ServerTxId>,
    },
    /// A response for the transaction user, matched to its client
    /// transaction: provisional, final, or (RFC 6026 Accepted state) a
    /// retransmitted or forked 2xx. A proxy restarts its Timer C on each
    /// provisional response to an INVITE.
    Response {
        /// The client transaction.
        id: ClientTxId,
        /// The response.
        response: M,
    },
    /// Handled inside the transaction layer; nothing for the transaction
    /// user (any resulting retransmission is queued for
    /// [`poll_transmit`](crate::TransactionTable::poll_transmit)).
    Absorbed(Absorbed),
    /// A response that matches no client transaction. A stateless proxy
    /// may forward it (RFC 3261 §16.7); otherwise drop it.
    Stray(M),
    /// A request that would create a server transaction but the table is
    /// full: the I/O layer answers it statelessly with 503 (Service
    /// Unavailable), ideally with Retry-After.
    Refused {
        /// The refused request.
        request: M,
    },
    /// A message without the fields transactions are matched on; answer 400
    /// if it is a request and a response can be formed, otherwise drop it.
    Malformed {
        /// The message.
        message: M,
        /// What was missing or broken.
        error: MessageError,
    },
}

/// What kind of message the transaction layer absorbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Absorbed {
    /// A retransmitted request; the last response (if any) was resent.
    RequestRetransmission,
    /// The ACK for a non-2xx final response (consumed hop by hop,
    /// RFC 3261 §17.2.1), or a retransmission of it.
    AckForNonSuccess,
    /// An ACK that arrived before any final response was sent.
    EarlyAck,
    /// A retransmitted non-2xx final response; the ACK was resent.
    ResponseRetransmission,
    /// A response the transaction's state does not pass on (e.g. a
    /// provisional or non-2xx response after a 2xx, a final response
    /// retransmitted in the non-INVITE Completed state).
    LateResponse,
}

/// Something that happened without a message arriving: returned by
/// [`poll_event`](crate::TransactionTable::poll_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxEvent {
    /// A transaction gave up waiting.
    ///
    /// - Client, [`Timer::B`] or [`Timer::F`] (or [`Timer::Lifetime`]): the
    ///   transaction user acts as if it received 408 (Request Timeout).
    /// - Server, [`Timer::H`]: the ACK never came (RFC 3261 §17.2.1).
    /// - Server, [`Timer::Lifetime`]: the transaction user never sent a
    ///   final response.
    Timeout {
        /// The transaction.
        id: TxId,
        /// The timer that fired.
        timer: Timer,
    },
    /// The I/O layer reported a failure to send for this transaction
    /// (RFC 3261 §17.1.4, §17.2.4). It is terminated, except an INVITE
    /// server transaction in the Accepted state (RFC 6026).
    TransportError {
        /// The transaction.
        id: TxId,
    },
    /// A CANCEL that was requested before the INVITE had a provisional
    /// response has been sent now that one arrived (RFC 3261 §9.1).
    CancelSent {
        /// The INVITE client transaction.
        invite: ClientTxId,
        /// The CANCEL's client transaction; its responses arrive as
        /// [`Incoming::Response`].
        cancel: ClientTxId,
    },
    /// The transaction reached the Terminated state and was destroyed; its id
    /// is no longer valid. Every transaction reports this exactly once.
    Terminated {
        /// The transaction.
        id: TxId,
    },
}

/// What [`cancel_client`](crate::TransactionTable::cancel_client) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The CANCEL was sent as a new client transaction.
    Sent(ClientTxId),
    /// No provisional response yet: the CANCEL will be sent when one
    /// arrives ([`TxEvent::CancelSent`]), and is dropped if a final response
    /// comes first.
    Pending,
}

/// The state of a client transaction (RFC 3261 §17.1, RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// INVITE sent, nothing received.
    Calling,
    /// Non-INVITE request sent, nothing received.
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A non-2xx final (INVITE) or any final (non-INVITE) response was
    /// received; absorbing retransmissions.
    Completed,
    /// RFC 6026: a 2xx to the INVITE was received; more may follow.
    Accepted,
    /// Finished; the transaction is destroyed.
    Terminated,
}

/// The state of a server transaction (RFC 3261 §17.2, RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Non-INVITE request received, no response sent.
    Trying,
    /// INVITE received, or a provisional response sent.
    Proceeding,
    /// A final response (non-2xx for INVITE) was sent.
    Completed,
    /// INVITE: the ACK for the non-2xx final response arrived.
    Confirmed,
    /// RFC 6026: a 2xx to the INVITE was sent.
    Accepted,
    /// Finished; the transaction is destroyed.
    Terminated,
}

/// Why the table refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TransactionError {
    /// The message lacks the fields transactions need.
    #[error("malformed message: {0}")]
    Malformed(#[from] MessageError),
    /// `send_request` was given a response.
    #[error("not a request")]
    NotARequest,
    /// `send_response` was given a request.
    #[error("not a response")]
    NotAResponse,
    /// An ACK creates no client transaction: the transaction user sends the
    /// ACK for a 2xx directly.
    #[error("ACK is not sent through a client transaction")]
    AckNotATransaction,
    /// The request has no top Via branch to match its responses by.
    #[error("request has no Via branch")]
    MissingBranch,
    /// The request's branch routes its responses to another shard; use
    /// [`ShardRouter::branch`](crate::ShardRouter::branch) to make one.
    #[error("branch belongs to shard {expected}, not this one")]
    WrongShard {
        /// The shard the branch routes to.
        expected: usize,
    },
    /// The table holds `max_transactions` already.
    #[error("transaction table is full")]
    TableFull,
    /// A client transaction with the same branch and method exists.
    #[error("a transaction with this key already exists")]
    DuplicateTransaction,
    /// The id names no live transaction (terminated or never existed).
    #[error("no such transaction")]
    UnknownTransaction,
    /// The response's status code is outside 100..=699.
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    /// The transaction's state does not accept this response (e.g. a second
    /// final response, or a provisional after a final).
    #[error("status {status} not allowed in state {state:?}")]
    InvalidState {
        /// The transaction's state.
        state: ServerState,
        /// The status offered.
        status: u16,
    },
    /// `cancel_client` on something other than an INVITE client transaction
    /// that is still waiting for a final response.
    #[error("transaction cannot be cancelled")]
    NotCancellable,
}
