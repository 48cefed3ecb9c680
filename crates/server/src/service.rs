//! The hook a node's roles implement.

use std::sync::Arc;

use voxline_sip::Message;
use voxline_transaction::Peer;

use crate::core::Core;
use crate::request::ServerRequest;

/// What a node does with requests once the core has validated them and
/// created their server transaction.
///
/// Called on transport tasks: implementations must not block; work that
/// waits (databases, DNS, downstream hops) is spawned onto the runtime.
pub trait SipService: Send + Sync + 'static {
    /// A new request (not ACK, not CANCEL) with its server transaction.
    /// Every request must eventually get a final response through `req`
    /// (the transaction layer's lifetime timer ends forgotten ones).
    fn on_request(&self, req: ServerRequest);

    /// Whether `request` is handled without a server transaction, as a
    /// stateless UAS (RFC 3261 §8.2.7): its responses are sent at once and
    /// not kept, and a retransmission reaches [`on_request`](Self::on_request)
    /// again, which must answer it as it answered the first copy. Cheap
    /// for requests whose processing is idempotent (a registrar's REGISTER):
    /// no transaction state, no Timer J (32 s) of memory per request.
    fn stateless(&self, core: &Arc<Core>, request: &Message) -> bool {
        let _ = (core, request);
        false
    }

    /// An ACK for a 2xx response: transaction-less, routed like any
    /// in-dialog request (RFC 3261 §13.2.2.4, §16).
    fn on_ack(&self, core: &Arc<Core>, ack: Message, peer: Peer) {
        let _ = (core, ack, peer);
    }

    /// A UDP receive batch starts on this thread (see
    /// [`batch_commit`](Self::batch_commit)).
    fn batch_begin(&self) {}

    /// The batch begun by [`batch_begin`](Self::batch_begin) on this thread
    /// was handled; its answers leave together next. `false` withholds them
    /// all, as if lost on the wire: for work they depend on that could not
    /// be completed (a location log write done once per batch), so a
    /// service returning `false` must answer what it withheld again when
    /// the requests are retransmitted (stateless handling, or no stored
    /// response).
    fn batch_commit(&self) -> bool {
        true
    }

    /// A response that matches no client transaction (RFC 3261 §16.7: a
    /// late 2xx retransmission, say). Dropped unless the service forwards it.
    fn on_stray_response(&self, core: &Arc<Core>, response: Message, peer: Peer) {
        let _ = (core, response, peer);
    }
}
