//! Random event sequences against one table, checking invariants: no panic,
//! timers move forward, nothing is sent for a terminated transaction, each
//! transaction terminates exactly once, the size metric is exact, and every
//! transaction eventually terminates.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{tcp, udp};
use proptest::prelude::*;
use voxline_transaction::testing::TestMessage;
use voxline_transaction::{
    CancelOutcome, ClientTxId, Incoming, Peer, ServerTxId, SipMessage, TableConfig, TimerConfig,
    TransactionTable, TryingPolicy, TxEvent, TxId,
};

const METHODS: [&str; 4] = ["INVITE", "OPTIONS", "REGISTER", "BYE"];
const STATUSES: [u16; 7] = [100, 180, 200, 202, 404, 486, 503];

#[derive(Debug, Clone)]
enum Op {
    Receive {
        method: usize,
        branch: u8,
        cookie: bool,
        reliable: bool,
    },
    ReceiveCancel {
        branch: u8,
        cookie: bool,
    },
    ReceiveAck {
        branch: u8,
        cookie: bool,
        tag: bool,
    },
    Respond {
        pick: usize,
        status: usize,
    },
    Send {
        method: usize,
        branch: u8,
        reliable: bool,
    },
    ReceiveResponse {
        pick: usize,
        status: usize,
        cancel: bool,
    },
    CancelClient {
        pick: usize,
    },
    TransportError {
        pick: usize,
    },
    Terminate {
        pick: usize,
    },
    Malformed,
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..METHODS.len(), 0u8..6, any::<bool>(), any::<bool>())
            .prop_map(|(method, branch, cookie, reliable)| Op::Receive { method, branch, cookie, reliable }),
        1 => (0u8..6, any::<bool>()).prop_map(|(branch, cookie)| Op::ReceiveCancel { branch, cookie }),
        1 => (0u8..6, any::<bool>(), any::<bool>()).prop_map(|(branch, cookie, tag)| Op::ReceiveAck { branch, cookie, tag }),
        3 => (any::<usize>(), 0..STATUSES.len()).prop_map(|(pick, status)| Op::Respond { pick, status }),
        2 => (0..METHODS.len(), 0u8..6, any::<bool>())
            .prop_map(|(method, branch, reliable)| Op::Send { method, branch, reliable }),
        3 => (any::<usize>(), 0..STATUSES.len(), any::<bool>())
            .prop_map(|(pick, status, cancel)| Op::ReceiveResponse { pick, status, cancel }),
        1 => any::<usize>().prop_map(|pick| Op::CancelClient { pick }),
        1 => any::<usize>().prop_map(|pick| Op::TransportError { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Terminate { pick }),
        1 => Just(Op::Malformed),
        3 => prop_oneof![0u64..1000, 0u64..40_000].prop_map(|ms| Op::Advance { ms }),
    ]
}

fn peer(reliable: bool) -> Peer {
    if reliable { tcp() } else { udp() }
}

fn request(method: &str, branch: u8, cookie: bool) -> TestMessage {
    let b = if cookie {
        format!("z9hG4bK{branch}")
    } else {
        format!("old{branch}")
    };
    TestMessage::request(method, &b).with_call_id(&format!("call-{branch}"))
}

struct Checker {
    table: TransactionTable<TestMessage>,
    now: Instant,
    servers: Vec<(ServerTxId, TestMessage)>,
    clients: Vec<(ClientTxId, TestMessage)>,
    created: HashSet<TxId>,
    terminated: HashSet<TxId>,
    sent_by: HashMap<TxId, usize>,
}

impl Checker {
    fn new(trying: TryingPolicy) -> Self {
        let config = TableConfig {
            timers: TimerConfig::default().trying(trying),
            max_transactions: 12,
        };
        Self {
            table: TransactionTable::new(config),
            now: Instant::now(),
            servers: Vec::new(),
            clients: Vec::new(),
            created: HashSet::new(),
            terminated: HashSet::new(),
            sent_by: HashMap::new(),
        }
    }

    fn created(&mut self, id: TxId) {
        assert!(self.created.insert(id), "ids are never reused: {id:?}");
    }

    fn incoming(&mut self, msg: TestMessage, from: Peer) {
        match self.table.handle_incoming(self.now, msg, from) {
            Incoming::Request { id, request } | Incoming::Cancel { id, request, .. } => {
                self.created(id.into());
                self.servers.push((id, request));
            }
            Incoming::Ack {
                invite: Some(id), ..
            } => {
                assert!(
                    !self.terminated.contains(&id.into()),
                    "ACK matched a dead transaction"
                );
            }
            Incoming::Response { id, .. } => {
                assert!(
                    !self.terminated.contains(&id.into()),
                    "response matched a dead transaction"
                );
            }
            _ => {}
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Receive {
                method,
                branch,
                cookie,
                reliable,
            } => self.incoming(request(METHODS[method], branch, cookie), peer(reliable)),
            Op::ReceiveCancel { branch, cookie } => {
                let cancel = request("INVITE", branch, cookie).build_cancel();
                self.incoming(cancel, udp());
            }
            Op::ReceiveAck {
                branch,
                cookie,
                tag,
            } => {
                let invite = request("INVITE", branch, cookie);
                let tag = if tag { "uas" } else { "other" };
                let ack = invite.build_ack_for(&invite.build_response(486).with_to_tag(tag));
                self.incoming(ack, udp());
            }
            Op::Respond { pick, status } => {
                if let Some((id, req)) = pick_from(&self.servers, pick) {
                    let response = req.build_response(STATUSES[status]).with_to_tag("uas");
                    let _ = self.table.send_response(self.now, id, response);
                }
            }
            Op::Send {
                method,
                branch,
                reliable,
            } => {
                let req = request(METHODS[method], branch + 100, true);
                if let Ok(id) = self
                    .table
                    .send_request(self.now, req.clone(), peer(reliable))
                {
                    self.created(id.into());
                    self.clients.push((id, req));
                }
            }
            Op::ReceiveResponse {
                pick,
                status,
                cancel,
            } => {
                if let Some((_, req)) = pick_from(&self.clients, pick) {
                    let base = if cancel { req.build_cancel() } else { req };
                    self.incoming(
                        base.build_response(STATUSES[status]).with_to_tag("t"),
                        udp(),
                    );
                }
            }
            Op::CancelClient { pick } => {
                if let Some((id, req)) = pick_from(&self.clients, pick)
                    && let Ok(CancelOutcome::Sent(cancel)) = self.table.cancel_client(self.now, id)
                {
                    self.created(cancel.into());
                    self.clients.push((cancel, req.build_cancel()));
                }
            }
            Op::TransportError { pick } => {
                if let Some(id) = self.pick_any(pick) {
                    let _ = self.table.transport_error(self.now, id);
                }
            }
            Op::Terminate { pick } => {
                if let Some(id) = self.pick_any(pick) {
                    let _ = self.table.terminate(self.now, id);
                }
            }
            Op::Malformed => self.incoming(TestMessage::malformed(), udp()),
            Op::Advance { ms } => self.now += Duration::from_millis(ms),
        }
        self.table.handle_timeout(self.now);
        self.check();
    }

    fn pick_any(&self, pick: usize) -> Option<TxId> {
        let total = self.servers.len() + self.clients.len();
        if total == 0 {
            return None;
        }
        let i = pick % total;
        Some(match self.servers.get(i) {
            Some((id, _)) => (*id).into(),
            None => self.clients[i - self.servers.len()].0.into(),
        })
    }

    /// Drains the table and checks the per-step invariants.
    fn check(&mut self) {
        let dead_before = self.terminated.clone();
        let transmits: Vec<_> = std::iter::from_fn(|| self.table.poll_transmit()).collect();
        while let Some(event) = self.table.poll_event() {
            match event {
                TxEvent::Terminated { id } => {
                    assert!(self.created.contains(&id), "unknown id terminated");
                    assert!(self.terminated.insert(id), "terminated twice: {id:?}");
                }
                TxEvent::CancelSent { cancel, invite } => {
                    self.created(cancel.into());
                    let req = self
                        .clients
                        .iter()
                        .find(|(id, _)| *id == invite)
                        .unwrap()
                        .1
                        .build_cancel();
                    self.clients.push((cancel, req));
                }
                TxEvent::Timeout { id, .. } | TxEvent::TransportError { id } => {
                    assert!(!dead_before.contains(&id), "event for a dead transaction");
                }
            }
        }
        for t in transmits {
            assert!(
                !dead_before.contains(&t.tx),
                "transmit after termination: {t:?}"
            );
            assert!(
                self.created.contains(&t.tx),
                "transmit for an unknown transaction"
            );
            *self.sent_by.entry(t.tx).or_default() += 1;
        }
        assert_eq!(
            self.table.len(),
            self.created.len() - self.terminated.len(),
            "size metric"
        );
        if let Some(next) = self.table.poll_timeout() {
            assert!(next > self.now, "handle_timeout left a due timer");
        }
    }

    /// Runs the clock until no timer is left; everything must terminate.
    fn finish(&mut self) {
        for _ in 0..100_000 {
            let Some(next) = self.table.poll_timeout() else {
                break;
            };
            assert!(next > self.now, "timers are monotone");
            self.now = next;
            self.table.handle_timeout(next);
            self.check();
        }
        assert!(
            self.table.is_empty(),
            "{} transactions never terminated",
            self.table.len()
        );
        assert_eq!(self.table.poll_timeout(), None);
        assert_eq!(self.created, self.terminated);
        // Retransmissions are bounded: at most the first send plus the
        // timer-driven ones plus one per received message.
        assert!(self.sent_by.values().all(|&n| n < 200));
    }
}

fn pick_from<T: Clone>(items: &[T], pick: usize) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        items.get(pick % items.len()).cloned()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_invariants(
        ops in proptest::collection::vec(op(), 1..120),
        immediate in any::<bool>(),
    ) {
        let trying = if immediate { TryingPolicy::Immediate } else { TryingPolicy::After(Duration::from_millis(200)) };
        let mut checker = Checker::new(trying);
        for op in &ops {
            checker.apply(op);
        }
        checker.finish();
    }
}
