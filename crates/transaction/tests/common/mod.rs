//! A virtual-clock harness around one transaction table.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use voxline_transaction::testing::TestMessage;
use voxline_transaction::{
    ClientTxId, Incoming, Peer, ServerTxId, SipMessage, TableConfig, TimerConfig, TransactionTable,
    Transmit, TransportKind, TxEvent,
};

pub fn udp() -> Peer {
    Peer::udp("127.0.0.1:5060".parse().unwrap())
}

pub fn tcp() -> Peer {
    Peer::new("127.0.0.1:5060".parse().unwrap(), TransportKind::Tcp)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a message sent by the table looks like, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Request(String),
    Response(u16),
}

pub fn describe(msg: &TestMessage) -> Sent {
    match msg.method() {
        Some(m) => Sent::Request(m.to_owned()),
        None => Sent::Response(msg.status().unwrap()),
    }
}

/// What happened while the clock ran: (ms since start, what) pairs.
pub type Timeline = (Vec<(u64, Sent)>, Vec<(u64, TxEvent)>);

pub struct Harness {
    pub table: TransactionTable<TestMessage>,
    pub t0: Instant,
    pub now: Instant,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(TableConfig::default())
    }

    pub fn with_timers(timers: TimerConfig) -> Self {
        Self::with_config(TableConfig {
            timers,
            ..TableConfig::default()
        })
    }

    pub fn with_config(config: TableConfig) -> Self {
        let t0 = Instant::now();
        Self {
            table: TransactionTable::new(config),
            t0,
            now: t0,
        }
    }

    /// Milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from((self.now - self.t0).as_millis()).unwrap()
    }

    pub fn at(&mut self, ms_since_start: u64) {
        let to = self.t0 + ms(ms_since_start);
        assert!(to >= self.now, "the virtual clock never goes back");
        self.now = to;
    }

    pub fn incoming(&mut self, msg: &TestMessage, from: Peer) -> Incoming<TestMessage> {
        self.table.handle_incoming(self.now, msg.clone(), from)
    }

    pub fn new_server(&mut self, msg: &TestMessage, from: Peer) -> ServerTxId {
        match self.incoming(msg, from) {
            Incoming::Request { id, .. } => id,
            other => panic!("expected a new request, got {other:?}"),
        }
    }

    pub fn respond(&mut self, id: ServerTxId, request: &TestMessage, status: u16) {
        self.table
            .send_response(
                self.now,
                id,
                request.build_response(status).with_to_tag("uas"),
            )
            .unwrap();
    }

    pub fn send(&mut self, request: &TestMessage, dest: Peer) -> ClientTxId {
        self.table
            .send_request(self.now, request.clone(), dest)
            .unwrap()
    }

    pub fn transmits(&mut self) -> Vec<Transmit<TestMessage>> {
        std::iter::from_fn(|| self.table.poll_transmit()).collect()
    }

    pub fn sent(&mut self) -> Vec<Sent> {
        self.transmits().iter().map(|t| describe(&t.msg)).collect()
    }

    pub fn events(&mut self) -> Vec<TxEvent> {
        std::iter::from_fn(|| self.table.poll_event()).collect()
    }

    /// Runs the clock to `until_ms`, firing each deadline at its exact time,
    /// and returns (time in ms, what was sent) for every transmit, plus the
    /// events with the time they happened.
    pub fn run_until(&mut self, until_ms: u64) -> Timeline {
        let until = self.t0 + ms(until_ms);
        let mut sent = Vec::new();
        let mut events = Vec::new();
        for _ in 0..10_000 {
            let Some(deadline) = self.table.poll_timeout() else {
                break;
            };
            if deadline > until {
                break;
            }
            assert!(deadline >= self.now, "deadline in the past");
            self.now = deadline;
            self.table.handle_timeout(deadline);
            let at = self.elapsed_ms();
            sent.extend(self.sent().into_iter().map(|s| (at, s)));
            events.extend(self.events().into_iter().map(|e| (at, e)));
            let next = self.table.poll_timeout();
            assert!(next.is_none_or(|n| n > deadline), "timers move forward");
        }
        self.now = self.now.max(until);
        (sent, events)
    }
}
