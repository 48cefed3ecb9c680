//! The flat form of a record: one value per column, shared by the SQL
//! table, the spool file, the JSON lines export and the CSV export.

use std::borrow::Cow;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use voxline_transaction::TransportKind;

use crate::record::{
    Callee, Caller, CdrRecord, Hangup, HangupParty, HangupReason, MediaTotals, RecordError,
    RelayUsage, Source, clean,
};
use crate::time::Timestamp;

/// The export columns, in order (the CSV header and the JSON keys).
pub const COLUMNS: [&str; 24] = [
    "id",
    "call_id",
    "node",
    "caller_aor",
    "caller_display",
    "callee_aor",
    "request_uri",
    "source_addr",
    "source_transport",
    "start",
    "answer",
    "end",
    "duration_ms",
    "status",
    "reason",
    "hangup_by",
    "hangup_reason",
    "relay",
    "from_caller_packets",
    "from_caller_bytes",
    "from_caller_lost",
    "from_callee_packets",
    "from_callee_bytes",
    "from_callee_lost",
];

/// The table's columns, in the same order (times in Unix milliseconds).
pub(crate) const DB_COLUMNS: [&str; 24] = [
    "id",
    "call_id",
    "node",
    "caller_aor",
    "caller_display",
    "callee_aor",
    "request_uri",
    "source_addr",
    "source_transport",
    "start_ms",
    "answer_ms",
    "end_ms",
    "duration_ms",
    "status",
    "reason",
    "hangup_by",
    "hangup_reason",
    "relay",
    "from_caller_packets",
    "from_caller_bytes",
    "from_caller_lost",
    "from_callee_packets",
    "from_callee_bytes",
    "from_callee_lost",
];

/// One record, flat. Counters are `None` exactly when `relay` is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) call_id: String,
    pub(crate) node: String,
    pub(crate) caller_aor: String,
    pub(crate) caller_display: Option<String>,
    pub(crate) callee_aor: String,
    pub(crate) request_uri: String,
    pub(crate) source_addr: String,
    pub(crate) source_transport: String,
    pub(crate) start: Timestamp,
    pub(crate) answer: Option<Timestamp>,
    pub(crate) end: Timestamp,
    pub(crate) duration_ms: u64,
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) hangup_by: String,
    pub(crate) hangup_reason: String,
    pub(crate) relay: Option<String>,
    pub(crate) from_caller_packets: Option<u64>,
    pub(crate) from_caller_bytes: Option<u64>,
    pub(crate) from_caller_lost: Option<u64>,
    pub(crate) from_callee_packets: Option<u64>,
    pub(crate) from_callee_bytes: Option<u64>,
    pub(crate) from_callee_lost: Option<u64>,
}

impl From<&CdrRecord> for Row {
    /// Text fields lose control characters and are cut to
    /// [`crate::MAX_FIELD_LEN`] bytes, so that every database takes them.
    fn from(r: &CdrRecord) -> Row {
        let relay = r.relay.as_ref();
        let count = |f: fn(&RelayUsage) -> u64| relay.map(f);
        Row {
            id: r.id.to_string(),
            call_id: clean(&r.call_id),
            node: clean(&r.node),
            caller_aor: clean(&r.caller.aor),
            caller_display: r.caller.display.as_deref().map(clean),
            callee_aor: clean(&r.callee.aor),
            request_uri: clean(&r.callee.request_uri),
            source_addr: r.source.addr.to_string(),
            source_transport: r.source.transport.to_string(),
            start: r.start,
            answer: r.answer,
            end: r.end,
            duration_ms: u64::try_from(r.duration().as_millis()).unwrap_or(u64::MAX),
            status: r.status,
            reason: clean(&r.reason),
            hangup_by: r.hangup.by.as_str().to_string(),
            hangup_reason: clean(r.hangup.reason.as_str()),
            relay: relay.map(|u| clean(&u.relay)),
            from_caller_packets: count(|u| u.from_caller.packets),
            from_caller_bytes: count(|u| u.from_caller.bytes),
            from_caller_lost: count(|u| u.from_caller.lost),
            from_callee_packets: count(|u| u.from_callee.packets),
            from_callee_bytes: count(|u| u.from_callee.bytes),
            from_callee_lost: count(|u| u.from_callee.lost),
        }
    }
}

impl From<CdrRecord> for Row {
    fn from(r: CdrRecord) -> Row {
        Row::from(&r)
    }
}

impl TryFrom<Row> for CdrRecord {
    type Error = RecordError;
    fn try_from(row: Row) -> Result<CdrRecord, RecordError> {
        let addr: SocketAddr = row
            .source_addr
            .parse()
            .map_err(|_| RecordError::Field("source_addr", row.source_addr.clone()))?;
        let transport = TransportKind::parse(&row.source_transport)
            .ok_or_else(|| RecordError::Field("source_transport", row.source_transport.clone()))?;
        let totals = |packets: Option<u64>, bytes: Option<u64>, lost: Option<u64>| MediaTotals {
            packets: packets.unwrap_or(0),
            bytes: bytes.unwrap_or(0),
            lost: lost.unwrap_or(0),
        };
        let relay = row.relay.map(|relay| RelayUsage {
            relay,
            from_caller: totals(
                row.from_caller_packets,
                row.from_caller_bytes,
                row.from_caller_lost,
            ),
            from_callee: totals(
                row.from_callee_packets,
                row.from_callee_bytes,
                row.from_callee_lost,
            ),
        });
        Ok(CdrRecord {
            id: row.id.parse()?,
            call_id: row.call_id,
            node: row.node,
            caller: Caller {
                aor: row.caller_aor,
                display: row.caller_display,
            },
            callee: Callee {
                aor: row.callee_aor,
                request_uri: row.request_uri,
            },
            source: Source { addr, transport },
            start: row.start,
            answer: row.answer,
            end: row.end,
            status: row.status,
            reason: row.reason,
            hangup: Hangup {
                by: row.hangup_by.parse::<HangupParty>()?,
                reason: HangupReason::parse(&row.hangup_reason),
            },
            relay,
        })
    }
}

impl Row {
    /// The values in [`COLUMNS`] order as CSV fields (empty for none).
    pub(crate) fn csv_fields(&self) -> [Cow<'_, str>; 24] {
        let text = |s: &str| Cow::Owned(s.to_owned());
        let opt_text = |s: &Option<String>| Cow::Owned(s.clone().unwrap_or_default());
        let num = |n: u64| Cow::Owned(n.to_string());
        let opt_num = |n: Option<u64>| Cow::Owned(n.map(|n| n.to_string()).unwrap_or_default());
        [
            Cow::Borrowed(self.id.as_str()),
            Cow::Borrowed(self.call_id.as_str()),
            Cow::Borrowed(self.node.as_str()),
            Cow::Borrowed(self.caller_aor.as_str()),
            opt_text(&self.caller_display),
            Cow::Borrowed(self.callee_aor.as_str()),
            Cow::Borrowed(self.request_uri.as_str()),
            Cow::Borrowed(self.source_addr.as_str()),
            Cow::Borrowed(self.source_transport.as_str()),
            Cow::Owned(self.start.to_string()),
            Cow::Owned(self.answer.map(|t| t.to_string()).unwrap_or_default()),
            Cow::Owned(self.end.to_string()),
            num(self.duration_ms),
            num(u64::from(self.status)),
            text(&self.reason),
            Cow::Borrowed(self.hangup_by.as_str()),
            Cow::Borrowed(self.hangup_reason.as_str()),
            opt_text(&self.relay),
            opt_num(self.from_caller_packets),
            opt_num(self.from_caller_bytes),
            opt_num(self.from_caller_lost),
            opt_num(self.from_callee_packets),
            opt_num(self.from_callee_bytes),
            opt_num(self.from_callee_lost),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    #[test]
    fn json_keys_are_the_columns_in_order() {
        let json = serde_json::to_string(&Row::from(&sample())).unwrap();
        let mut last = 0;
        for column in COLUMNS {
            let at = json
                .find(&format!("\"{column}\":"))
                .unwrap_or_else(|| panic!("{column} missing in {json}"));
            assert!(at >= last, "{column} out of order in {json}");
            last = at;
        }
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value.as_object().unwrap().len(), COLUMNS.len());
        assert_eq!(value["start"], "2026-11-21T14:03:07.250Z");
        assert_eq!(value["answer"], "2026-11-21T14:03:11.500Z");
        assert_eq!(value["duration_ms"], 61_250);
        assert_eq!(value["source_transport"], "udp");
        assert_eq!(value["hangup_by"], "caller");
        assert_eq!(value["from_caller_lost"], 2);
    }

    #[test]
    fn record_round_trips_through_json() {
        let mut r = sample();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<CdrRecord>(&json).unwrap(), r);
        r.answer = None;
        r.relay = None;
        r.caller.display = None;
        r.source.addr = "[2001:db8::1]:5061".parse().unwrap();
        r.source.transport = TransportKind::Tls;
        r.hangup = Hangup::proxy(HangupReason::MaxDuration);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"answer\":null"), "{json}");
        assert!(json.contains("\"from_callee_bytes\":null"), "{json}");
        assert!(
            json.contains("\"hangup_reason\":\"max-duration\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<CdrRecord>(&json).unwrap(), r);
    }

    #[test]
    fn unreadable_rows_are_errors() {
        let good = Row::from(&sample());
        type Spoil = fn(&mut Row);
        let cases: [(&str, Spoil); 4] = [
            ("id", |r| r.id = "x".into()),
            ("source_addr", |r| r.source_addr = "nowhere".into()),
            ("source_transport", |r| {
                r.source_transport = "carrier-pigeon".into()
            }),
            ("hangup_by", |r| r.hangup_by = "god".into()),
        ];
        for (field, spoil) in cases {
            let mut row = good.clone();
            spoil(&mut row);
            match CdrRecord::try_from(row) {
                Err(RecordError::Field(f, _)) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn csv_fields_follow_the_columns() {
        let row = Row::from(&sample());
        let fields = row.csv_fields();
        let at = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        assert_eq!(fields[at("id")], row.id);
        assert_eq!(fields[at("caller_display")], "Alice \"Al\" Smith");
        assert_eq!(fields[at("end")], "2026-11-21T14:04:12.750Z");
        assert_eq!(fields[at("status")], "200");
        assert_eq!(fields[at("from_callee_packets")], "3060");
        let mut bare = sample();
        bare.relay = None;
        bare.answer = None;
        let row = Row::from(&bare);
        let fields = row.csv_fields();
        assert_eq!(fields[at("answer")], "");
        assert_eq!(fields[at("relay")], "");
        assert_eq!(fields[at("from_caller_bytes")], "");
        assert_eq!(fields[at("duration_ms")], "0");
    }

    #[test]
    fn text_is_cleaned_on_the_way_out() {
        let mut r = sample();
        r.call_id = "abc\0def\r\n".into();
        r.reason = "x".repeat(5000);
        let row = Row::from(&r);
        assert_eq!(row.call_id, "abcdef");
        assert_eq!(row.reason.len(), crate::record::MAX_FIELD_LEN);
    }
}
