//! Transaction table throughput: whole non-INVITE server transactions,
//! absorbed retransmissions, and client transactions with their response.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use voxline_transaction::testing::TestMessage;
use voxline_transaction::{
    Incoming, Peer, SipMessage, TableConfig, TransactionTable, TransportKind,
};

const DISTINCT: usize = 4096;

fn drain(table: &mut TransactionTable<TestMessage>) {
    while let Some(t) = table.poll_transmit() {
        black_box(t);
    }
    while let Some(e) = table.poll_event() {
        black_box(e);
    }
}

fn requests(method: &str) -> Vec<TestMessage> {
    (0..DISTINCT)
        .map(|i| {
            TestMessage::request(method, &format!("z9hG4bK{i:08x}"))
                .with_call_id(&format!("call-{i}"))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let tcp = Peer::new("127.0.0.1:5060".parse().unwrap(), TransportKind::Tcp);
    let udp = Peer::udp("127.0.0.1:5060".parse().unwrap());
    let t0 = Instant::now();
    let mut group = c.benchmark_group("table");
    group.throughput(Throughput::Elements(1));

    // Request in, new server transaction, 200 out, terminated (TCP: J = 0).
    let options = requests("OPTIONS");
    let oks: Vec<_> = options.iter().map(|r| r.build_response(200)).collect();
    group.bench_function("server_transaction_tcp", |b| {
        let mut table = TransactionTable::new(TableConfig::default());
        let mut i = 0;
        b.iter(|| {
            let k = i % DISTINCT;
            i += 1;
            if let Incoming::Request { id, .. } = table.handle_incoming(t0, options[k].clone(), tcp)
            {
                table.send_response(t0, id, oks[k].clone()).unwrap();
            }
            drain(&mut table);
        });
    });

    // The same over UDP: the transaction lingers in Completed (Timer J), so
    // the table holds DISTINCT live transactions and timers fire as time
    // advances by 10 ms per transaction.
    group.bench_function("server_transaction_udp_with_timers", |b| {
        let mut table = TransactionTable::new(TableConfig::default());
        let mut i = 0u64;
        b.iter(|| {
            let k = (i as usize) % DISTINCT;
            let now = t0 + Duration::from_millis(10 * i);
            i += 1;
            table.handle_timeout(now);
            if let Incoming::Request { id, .. } =
                table.handle_incoming(now, options[k].clone(), udp)
            {
                table.send_response(now, id, oks[k].clone()).unwrap();
            }
            drain(&mut table);
        });
    });

    // A retransmitted INVITE absorbed, the last provisional resent.
    group.bench_function("absorb_retransmission", |b| {
        let mut table = TransactionTable::new(TableConfig::default());
        let invite = TestMessage::request("INVITE", "z9hG4bKretrans");
        let Incoming::Request { id, .. } = table.handle_incoming(t0, invite.clone(), udp) else {
            panic!("new INVITE expected");
        };
        table
            .send_response(t0, id, invite.build_response(180))
            .unwrap();
        drain(&mut table);
        b.iter(|| {
            black_box(table.handle_incoming(t0, invite.clone(), udp));
            drain(&mut table);
        });
    });

    // Request sent, 200 received and matched, terminated (TCP: K = 0).
    let byes = requests("BYE");
    let bye_oks: Vec<_> = byes.iter().map(|r| r.build_response(200)).collect();
    group.bench_function("client_transaction_tcp", |b| {
        let mut table = TransactionTable::new(TableConfig::default());
        let mut i = 0;
        b.iter(|| {
            let k = i % DISTINCT;
            i += 1;
            table.send_request(t0, byes[k].clone(), tcp).unwrap();
            black_box(table.handle_incoming(t0, bye_oks[k].clone(), tcp));
            drain(&mut table);
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
