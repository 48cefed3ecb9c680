//! Helpers shared by the integration tests: records, the store suite every
//! backend runs, and waiting on a writer.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::collections::HashSet;
use std::time::Duration;

use voxline_cdr::{
    Callee, Caller, CdrRecord, CdrStore, CdrWriter, Cursor, ExportFormat, Hangup, HangupReason,
    MediaTotals, RecordId, RelayUsage, Source, TimeRange, Timestamp, TransportKind, WriterStats,
};

/// Real PostgreSQL and MariaDB servers.
#[allow(unused_imports)]
pub use voxline_testdb as servers;

/// 2026-11-21T00:00:00Z.
pub const DAY: i64 = 1_795_219_200_000;

/// A distinct, deterministic id for record `n` of series `series`.
pub fn id(series: u8, n: u32) -> RecordId {
    let mut bytes = [0u8; 16];
    bytes[0] = series;
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    RecordId::from_bytes(bytes)
}

/// An answered call (or, every third, a failed one) starting at `start_ms`.
pub fn record(series: u8, n: u32, start_ms: i64) -> CdrRecord {
    let start = Timestamp::from_unix_ms(start_ms);
    let source = Source {
        addr: if n.is_multiple_of(2) {
            format!("192.0.2.{}:{}", n % 250 + 1, 5060 + n % 100)
                .parse()
                .unwrap()
        } else {
            "[2001:db8::7]:5061".parse().unwrap()
        },
        transport: if n.is_multiple_of(2) {
            TransportKind::Udp
        } else {
            TransportKind::Tcp
        },
    };
    let mut r = CdrRecord::new(
        format!("call-{series}-{n}@test"),
        "node-a",
        source,
        start,
        start.saturating_add(Duration::from_millis(30_000 + u64::from(n))),
    );
    r.id = id(series, n);
    r.caller = Caller {
        aor: format!("sip:user{n}@example.com"),
        display: (!n.is_multiple_of(4)).then(|| format!("Jörg \"{n}\", Ünïcode")),
    };
    r.callee = Callee {
        aor: "sip:bob@example.com".into(),
        request_uri: "sip:bob@198.51.100.7:5060;transport=udp".into(),
    };
    if n % 3 == 2 {
        r.status = 486;
        r.reason = "Busy Here".into();
        r.hangup = Hangup::callee(HangupReason::Rejected);
    } else {
        r.answer = Some(start.saturating_add(Duration::from_millis(2_500)));
        r.status = 200;
        r.reason = "OK".into();
        r.hangup = if n.is_multiple_of(3) {
            Hangup::caller(HangupReason::Bye)
        } else {
            Hangup::proxy(HangupReason::MaxDuration)
        };
        r.relay = Some(RelayUsage {
            relay: "127.0.0.1:22222".into(),
            from_caller: MediaTotals {
                packets: 1375 + u64::from(n),
                bytes: 236_500,
                lost: u64::from(n % 5),
            },
            from_callee: MediaTotals {
                packets: 1374,
                bytes: 236_328,
                lost: 0,
            },
        });
    }
    r
}

/// `count` records of `series`, one every 10 ms from `from_ms`.
pub fn records(series: u8, count: u32, from_ms: i64) -> Vec<CdrRecord> {
    (0..count)
        .map(|n| record(series, n, from_ms + i64::from(n) * 10))
        .collect()
}

fn range(since_ms: i64, until_ms: i64) -> TimeRange {
    TimeRange::new(
        Timestamp::from_unix_ms(since_ms),
        Some(Timestamp::from_unix_ms(until_ms)),
    )
}

/// What every backend must do: idempotent inserts, exact round trips,
/// half-open ranges, stable paging, exports.
pub async fn suite(store: &CdrStore) {
    // Round trip of every shape of record.
    let first = records(1, 12, DAY);
    assert_eq!(store.insert(&first).await.unwrap(), 12);
    let back = store.query(TimeRange::all()).await.unwrap();
    assert_eq!(back, first);
    assert!(store.contains(id(1, 3)).await.unwrap());
    assert!(!store.contains(id(9, 3)).await.unwrap());

    // Idempotent: a replayed batch (partly new) stores each record once.
    let mut again = first[6..].to_vec();
    again.extend(records(2, 3, DAY + 500));
    assert_eq!(store.insert(&again).await.unwrap(), 3);
    assert_eq!(store.count(TimeRange::all()).await.unwrap(), 15);

    // Half-open ranges on the start time.
    assert_eq!(store.count(range(DAY, DAY + 50)).await.unwrap(), 5);
    assert_eq!(store.count(range(DAY + 50, DAY + 51)).await.unwrap(), 1);
    assert_eq!(store.count(range(DAY - 1000, DAY)).await.unwrap(), 0);
    let open_end = TimeRange::new(Timestamp::from_unix_ms(DAY + 500), None);
    assert_eq!(store.count(open_end).await.unwrap(), 3);
    let some = store.query(range(DAY + 20, DAY + 40)).await.unwrap();
    let ids: Vec<RecordId> = some.iter().map(|r| r.id).collect();
    assert_eq!(ids, [id(1, 2), id(1, 3)]);

    // Many records, many with equal start times, more than one insert
    // statement: paging returns each once, ordered by start then id.
    let bulk: Vec<CdrRecord> = (0..2500u32)
        .map(|n| record(3, n, 2 * DAY + i64::from(n / 7)))
        .collect();
    assert_eq!(store.insert(&bulk).await.unwrap(), 2500);
    let bulk_range = range(2 * DAY, 3 * DAY);
    assert_eq!(store.count(bulk_range).await.unwrap(), 2500);
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = store.page(bulk_range, cursor.as_ref(), 333).await.unwrap();
        cursor = page.last().map(Cursor::after);
        let done = page.len() < 333;
        seen.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(seen.len(), 2500);
    let unique: HashSet<RecordId> = seen.iter().map(|r| r.id).collect();
    assert_eq!(unique.len(), 2500);
    assert!(
        seen.windows(2)
            .all(|w| (w[0].start, w[0].id.to_string()) < (w[1].start, w[1].id.to_string()))
    );

    // Export: a header and one line per record; JSON lines parse back.
    let mut csv = Vec::new();
    let n = voxline_cdr::export(store, bulk_range, ExportFormat::Csv, &mut csv)
        .await
        .unwrap();
    assert_eq!(n, 2500);
    let text = String::from_utf8(csv).unwrap();
    assert_eq!(text.matches("\r\n").count(), 2501);
    assert!(text.starts_with("id,call_id,node,"));
    let mut json = Vec::new();
    voxline_cdr::export(
        store,
        range(DAY, DAY + 1000),
        ExportFormat::JsonLines,
        &mut json,
    )
    .await
    .unwrap();
    let parsed: Vec<CdrRecord> = String::from_utf8(json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), 15);
    assert_eq!(parsed[..12], first[..]);
}

/// Waits (on the writer's change notifications, bounded) until `done`.
pub async fn wait_for(
    writer: &CdrWriter,
    what: &str,
    done: impl Fn(&WriterStats) -> bool,
) -> WriterStats {
    let mut watch = writer.watch();
    let result = tokio::time::timeout(Duration::from_secs(60), watch.wait_for(|s| done(s))).await;
    match result {
        Ok(Ok(stats)) => *stats,
        _ => panic!("timed out waiting for {what}: {:?}", writer.stats()),
    }
}

/// A PostgreSQL URL nobody listens on (connection refused).
pub fn refused_postgres_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("postgres://voxline:pw@127.0.0.1:{port}/voxline")
}
