//! A request handed to a service, with the means to answer it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use voxline_sip::{Message, ResponseBuilder, reason_phrase};
use voxline_transaction::{Peer, ServerTxId};

use crate::core::{Core, ServerError};

/// A received request and its server transaction.
///
/// Answer it with [`respond`](Self::respond) or [`send`](Self::send); a
/// request dropped without a final response times out in the transaction
/// layer and is counted.
pub struct ServerRequest {
    core: Arc<Core>,
    /// `None`: handled statelessly ([`SipService::stateless`](crate::SipService::stateless)).
    id: Option<ServerTxId>,
    msg: Message,
    peer: Peer,
    to_tag: String,
}

impl ServerRequest {
    pub(crate) fn new(core: Arc<Core>, id: Option<ServerTxId>, msg: Message, peer: Peer) -> Self {
        ServerRequest {
            core,
            id,
            msg,
            peer,
            to_tag: to_tag(),
        }
    }

    /// The request.
    pub fn message(&self) -> &Message {
        &self.msg
    }

    /// Where it came from (source address, transport, listener, connection).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Its server transaction (`None` when handled statelessly).
    pub fn id(&self) -> Option<ServerTxId> {
        self.id
    }

    /// The core, for sending requests downstream.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The To tag this node uses in its responses to this request (the
    /// same for every response, as a UAS must).
    pub fn to_tag(&self) -> &str {
        &self.to_tag
    }

    /// A response builder for this request: Via, From, To (with our tag
    /// for anything but 100), Call-ID and CSeq copied, the Server header set.
    pub fn response(&self, status: u16, reason: &'static str) -> ResponseBuilder<'_> {
        let b = ResponseBuilder::new(&self.msg, status, reason)
            .header("Server", self.core.server_header());
        if status > 100 {
            b.to_tag(&self.to_tag)
        } else {
            b
        }
    }

    /// Sends a plain response with the standard reason phrase.
    pub fn respond(&self, status: u16) -> Result<(), ServerError> {
        self.send(self.response(status, reason_phrase(status)).build())
    }

    /// Sends a response built by the caller (e.g. from [`response`](Self::response)).
    pub fn send(&self, response: Bytes) -> Result<(), ServerError> {
        match self.id {
            Some(id) => {
                let msg = Message::parse(response).map_err(ServerError::BadResponse)?;
                self.core.send_response(id, msg)
            }
            None => self
                .core
                .send_stateless_reply(&self.msg, &self.peer, response),
        }
    }

    /// Relays a response received from downstream (a proxy's best
    /// response, RFC 3261 §16.7 step 9): the top Via is removed and the rest
    /// is passed on byte for byte.
    pub fn forward_response(&self, response: &Message) -> Result<(), ServerError> {
        self.forward_response_with_body(response, None)
    }

    /// [`forward_response`](Self::forward_response) with the body replaced
    /// (an SDP rewritten by the media relay).
    pub fn forward_response_with_body(
        &self,
        response: &Message,
        body: Option<&[u8]>,
    ) -> Result<(), ServerError> {
        self.send(forwarded_response(response, body)?)
    }

    /// Resolves when a CANCEL for this INVITE arrives (the core has already
    /// answered the CANCEL with 200). Without a watcher the core answers
    /// the INVITE with 487 itself.
    pub fn cancelled(&self) -> oneshot::Receiver<Message> {
        match self.id {
            Some(id) => self.core.watch_cancel(id),
            // No transaction, nothing to cancel: the receiver ends at once.
            None => oneshot::channel().1,
        }
    }
}

impl std::fmt::Debug for ServerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRequest")
            .field("id", &self.id)
            .field("method", &self.msg.method_str())
            .field("peer", &self.peer)
            .finish()
    }
}

/// A random To tag: 16 hex digits, without the formatting machinery.
fn to_tag() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = rand::random::<u64>();
    let mut tag = String::with_capacity(16);
    for _ in 0..16 {
        tag.push(char::from(HEX[(n >> 60) as usize]));
        n <<= 4;
    }
    tag
}

/// The copy of `response` (received from downstream) a proxy sends
/// upstream: its top Via removed and, with `body`, its body replaced.
pub fn forwarded_response(response: &Message, body: Option<&[u8]>) -> Result<Bytes, ServerError> {
    let mut out = BytesMut::with_capacity(response.as_bytes().len() + body.map_or(0, <[u8]>::len));
    let mut ed = response.edit();
    ed.pop_via();
    if let Some(b) = body {
        ed.set_body(None, b);
    }
    ed.write_to(&mut out).map_err(ServerError::Edit)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    #[test]
    fn to_tags_are_16_hex_digits_and_differ() {
        let a = super::to_tag();
        let b = super::to_tag();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
