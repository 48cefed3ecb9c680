//! The receive path: matching a message from the network to its
//! transaction (RFC 3261 §17.1.3, §17.2.3, §9.2) and driving it.

use std::sync::Arc;
use std::time::Instant;

use super::{TransactionTable, Tx};
use crate::client::{CancelRequest, Delivery};
use crate::event::{Absorbed, ClientState, ClientTxId, Incoming, ServerTxId, TxEvent, TxRef};
use crate::key::{self, KeyRule};
use crate::message::{MessageError, Peer, SipMessage, StartLine};
use crate::server::{AckDelivery, ServerTx};

/// What a received request is, for the transaction layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Invite,
    Ack,
    Cancel,
    Other,
}

impl RequestKind {
    fn of(method: &str) -> Self {
        match method {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "CANCEL" => Self::Cancel,
            _ => Self::Other,
        }
    }
}

impl<M: SipMessage> TransactionTable<M> {
    /// Handles a message received from `from`.
    ///
    /// Requests are matched to server transactions (RFC 3261 §17.2.3),
    /// responses to client transactions (§17.1.3). See [`Incoming`] for the
    /// outcomes; retransmissions the layer answers are queued for
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn handle_incoming(&mut self, now: Instant, msg: M, from: Peer) -> Incoming<M> {
        let info = match msg.info() {
            Ok(info) => info,
            Err(error) => return self.malformed(msg, error),
        };
        match info.start {
            StartLine::Response { status } => {
                if !(100..=699).contains(&status) {
                    return self.malformed(msg, MessageError::MalformedStartLine);
                }
                let Some(branch) = info.via.branch else {
                    self.stats.stray_responses += 1;
                    return Incoming::Stray(msg);
                };
                key::client_key(&mut self.scratch, branch, info.cseq.method);
                self.incoming_response(now, status, msg)
            }
            StartLine::Request { method, .. } => {
                if info.cseq.method != method {
                    return self.malformed(msg, MessageError::CSeqMethodMismatch);
                }
                let kind = RequestKind::of(method);
                match kind {
                    RequestKind::Ack => {
                        let rule =
                            key::server_key(&mut self.scratch, &info, key::server_method(method));
                        let to_tag_ok = |tx: &ServerTx<M>| {
                            rule != Some(KeyRule::Rfc2543)
                                || tx.final_to_tag.as_deref() == info.to_tag
                        };
                        let found = self
                            .lookup_server()
                            .filter(|r| self.server(*r).is_some_and(to_tag_ok));
                        self.incoming_ack(now, found, msg)
                    }
                    _ => {
                        let rule = key::server_key(&mut self.scratch, &info, method);
                        if let Some(r) = self.lookup_server() {
                            return self.incoming_retransmission(now, r);
                        }
                        let cancels = if kind == RequestKind::Cancel {
                            // §9.2: match as if the CANCEL were the INVITE,
                            // then key the CANCEL's own transaction again.
                            key::server_key(&mut self.scratch, &info, "INVITE");
                            let invite = self.lookup_server().map(ServerTxId);
                            key::server_key(&mut self.scratch, &info, method);
                            Some(invite)
                        } else {
                            None
                        };
                        let rule = rule.unwrap_or(KeyRule::Rfc3261);
                        self.incoming_new_request(now, msg, from, kind, rule, cancels)
                    }
                }
            }
        }
    }

    fn malformed(&mut self, message: M, error: MessageError) -> Incoming<M> {
        self.stats.malformed += 1;
        Incoming::Malformed { message, error }
    }

    /// Looks up the server transaction keyed by the scratch buffer.
    fn lookup_server(&self) -> Option<TxRef> {
        let slot = self.server_index.get(self.scratch.as_slice())?;
        Some(self.tx_ref(slot))
    }

    fn incoming_response(&mut self, now: Instant, status: u16, msg: M) -> Incoming<M> {
        let Some(slot) = self.client_index.get(self.scratch.as_slice()) else {
            self.stats.stray_responses += 1;
            return Incoming::Stray(msg);
        };
        let r = self.tx_ref(slot);
        let result = self.drive(now, r, |tx, out| {
            let Tx::Client(c) = tx else {
                return (Delivery::Absorbed(Absorbed::LateResponse), None);
            };
            let delivery = c.on_response(status, &msg, out);
            let cancel = match c.cancel {
                CancelRequest::Pending if c.cancellable_now() => {
                    c.cancel = CancelRequest::Sent;
                    c.build_cancel()
                }
                CancelRequest::Pending if c.state != ClientState::Calling => {
                    c.cancel = CancelRequest::None;
                    None
                }
                _ => None,
            };
            (delivery, cancel)
        });
        let Some((delivery, cancel)) = result else {
            self.stats.stray_responses += 1;
            return Incoming::Stray(msg);
        };
        if let Some((cancel, dest)) = cancel
            && let Ok(id) = self.start_client(now, cancel, dest, true)
        {
            self.events.push_back(TxEvent::CancelSent {
                invite: ClientTxId(r),
                cancel: id,
            });
        }
        match delivery {
            Delivery::ToTu => Incoming::Response {
                id: ClientTxId(r),
                response: msg,
            },
            Delivery::Absorbed(reason) => self.absorbed(reason),
        }
    }

    fn absorbed(&mut self, reason: Absorbed) -> Incoming<M> {
        self.stats.absorbed += 1;
        Incoming::Absorbed(reason)
    }

    fn incoming_ack(&mut self, now: Instant, found: Option<TxRef>, msg: M) -> Incoming<M> {
        let delivery = found.and_then(|r| {
            self.drive(now, r, |tx, out| match tx {
                Tx::Server(s) if s.invite => s.on_ack(out),
                _ => AckDelivery::Absorbed(Absorbed::EarlyAck),
            })
        });
        match (delivery, found) {
            (Some(AckDelivery::ToTu), Some(r)) => Incoming::Ack {
                request: msg,
                invite: Some(ServerTxId(r)),
            },
            (Some(AckDelivery::Absorbed(reason)), _) => self.absorbed(reason),
            _ => Incoming::Ack {
                request: msg,
                invite: None,
            },
        }
    }

    fn incoming_retransmission(&mut self, now: Instant, r: TxRef) -> Incoming<M> {
        let reason = self
            .drive(now, r, |tx, out| match tx {
                Tx::Server(s) => s.on_retransmission(out),
                Tx::Client(_) => Absorbed::RequestRetransmission,
            })
            .unwrap_or(Absorbed::RequestRetransmission);
        self.absorbed(reason)
    }

    fn incoming_new_request(
        &mut self,
        now: Instant,
        msg: M,
        from: Peer,
        kind: RequestKind,
        rule: KeyRule,
        cancels: Option<Option<ServerTxId>>,
    ) -> Incoming<M> {
        if self.is_full() {
            self.stats.refused += 1;
            return Incoming::Refused { request: msg };
        }
        let key: Arc<[u8]> = Arc::from(self.scratch.as_slice());
        let invite = kind == RequestKind::Invite;
        let request = msg.clone();
        let r = self.insert(now, true, |out| {
            Tx::Server(ServerTx::start(
                request,
                invite,
                from,
                Arc::clone(&key),
                rule,
                out,
            ))
        });
        self.server_index.insert(key, r.slot);
        self.server_count += 1;
        self.stats.server_created += 1;
        self.settle(r);
        let id = ServerTxId(r);
        match cancels {
            Some(invite) => Incoming::Cancel {
                id,
                invite,
                request: msg,
            },
            None => Incoming::Request { id, request: msg },
        }
    }
}
