//! Sans-IO SIP transactions: RFC 3261 §17 client and server transactions,
//! INVITE and non-INVITE, every timer A–K, RFC 6026's Accepted state with
//! Timers L and M, and the transaction table that matches messages to them.
//!
//! The crate performs no I/O and reads no clock. An I/O layer owns a
//! [`TransactionTable`] (or one per shard) and, in the style of
//! `quinn-proto`:
//!
//! 1. feeds each received message to
//!    [`handle_incoming`](TransactionTable::handle_incoming), which says
//!    what it was ([`Incoming`]): a new request for the transaction user, a
//!    response for one of its client transactions, a retransmission the
//!    layer absorbed, a stray, a request refused because the table is full;
//! 2. passes the transaction user's messages through
//!    [`send_request`](TransactionTable::send_request) and
//!    [`send_response`](TransactionTable::send_response);
//! 3. calls [`handle_timeout`](TransactionTable::handle_timeout) when
//!    [`poll_timeout`](TransactionTable::poll_timeout) says;
//! 4. after each call, sends everything from
//!    [`poll_transmit`](TransactionTable::poll_transmit) and hands everything
//!    from [`poll_event`](TransactionTable::poll_event) to the transaction
//!    user (timeouts, transport errors, terminations).
//!
//! The message type is generic: anything implementing [`SipMessage`], a
//! small trait that extracts the matching fields and builds ACK, CANCEL and
//! 100 Trying. [`testing::TestMessage`] is a minimal implementation.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use voxline_transaction::testing::TestMessage;
//! use voxline_transaction::{Incoming, Peer, SipMessage, TableConfig, TransactionTable};
//!
//! let mut table = TransactionTable::new(TableConfig::default());
//! let t0 = Instant::now();
//! let peer = Peer::udp("127.0.0.1:5060".parse().unwrap());
//! let invite = TestMessage::request("INVITE", "z9hG4bK-1");
//! let Incoming::Request { id, .. } = table.handle_incoming(t0, invite.clone(), peer) else {
//!     panic!("a new INVITE goes to the transaction user");
//! };
//! // A retransmission is absorbed, not delivered twice.
//! assert!(matches!(table.handle_incoming(t0, invite.clone(), peer), Incoming::Absorbed(_)));
//! // The TU has not answered within 200 ms: the layer sends 100 Trying.
//! table.handle_timeout(t0 + Duration::from_millis(200));
//! assert_eq!(table.poll_transmit().unwrap().msg.status(), Some(100));
//! table.send_response(t0 + Duration::from_secs(1), id, invite.build_response(200)).unwrap();
//! assert_eq!(table.poll_transmit().unwrap().msg.status(), Some(200));
//! ```

mod client;
mod codec;
mod config;
mod deadlines;
mod event;
mod key;
mod message;
mod output;
mod server;
mod shard;
mod sharded;
mod table;
pub mod testing;
mod timer;

pub use config::{TableConfig, TimerConfig, TryingPolicy};
pub use event::{
    Absorbed, CancelOutcome, ClientState, ClientTxId, Incoming, ServerState, ServerTxId,
    TransactionError, Transmit, TxEvent, TxId,
};
pub use message::{
    CSeq, ConnectionId, MAGIC_COOKIE, MessageError, MessageInfo, Peer, SipMessage, StartLine,
    TopVia, TransportKind,
};
pub use shard::ShardRouter;
pub use sharded::ShardedTable;
pub use table::{TableStats, TransactionTable};
pub use timer::Timer;
