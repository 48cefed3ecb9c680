//! `voxline cdr export` run as the real binary on a database the test
//! filled through the CDR store: CSV and JSON lines, time bounds in both
//! accepted forms, refused input, the spool note, and `[cdr]` checks.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use voxline_cdr::{
    COLUMNS, Callee, Caller, CdrRecord, CdrStore, Hangup, HangupReason, MediaTotals, RelayUsage,
    Source, Timestamp, TransportKind,
};

fn voxline(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

/// A call that started at `start`: answered (`talk` seconds) or failed.
fn call(n: u32, start: &str, talk: Option<u64>) -> CdrRecord {
    let start = ts(start);
    let source = Source {
        addr: "192.0.2.10:5060".parse().unwrap(),
        transport: TransportKind::Udp,
    };
    let end = start.saturating_add(Duration::from_secs(3 + talk.unwrap_or(0)));
    let mut r = CdrRecord::new(format!("call-{n}@test"), "node-a", source, start, end);
    r.caller = Caller {
        aor: format!("sip:user{n}@localhost"),
        display: Some(format!("Smith, \"Agent\" {n}")),
    };
    r.callee = Callee {
        aor: "sip:bob@localhost".into(),
        request_uri: "sip:bob@127.0.0.1:5070".into(),
    };
    match talk {
        Some(_) => {
            r.answer = Some(start.saturating_add(Duration::from_secs(3)));
            r.status = 200;
            r.reason = "OK".into();
            r.hangup = Hangup::caller(HangupReason::Bye);
            r.relay = Some(RelayUsage {
                relay: "127.0.0.1:22222".into(),
                from_caller: MediaTotals {
                    packets: 500,
                    bytes: 86_000,
                    lost: 1,
                },
                from_callee: MediaTotals {
                    packets: 499,
                    bytes: 85_828,
                    lost: 0,
                },
            });
        }
        None => {
            r.status = 486;
            r.reason = "Busy Here".into();
            r.hangup = Hangup::callee(HangupReason::Rejected);
        }
    }
    r
}

/// A node config whose data directory holds a CDR database with 4 calls
/// on 2026-11-20/21 (UTC).
async fn filled(dir: &Path) -> (std::path::PathBuf, Vec<CdrRecord>) {
    let data = dir.join("data");
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!("[node]\ndata_dir = \"{}\"\n", data.display()),
    )
    .unwrap();
    let records = vec![
        call(1, "2026-11-20T23:59:59.999Z", Some(60)),
        call(2, "2026-11-21T00:00:00.000Z", None),
        call(3, "2026-11-21T08:30:00.250Z", Some(125)),
        call(4, "2026-11-22T00:00:00.000Z", Some(1)),
    ];
    let url = format!("sqlite://{}", data.join("voxline.db").display());
    let store = CdrStore::open(&url).await.unwrap();
    store.insert(&records).await.unwrap();
    store.close().await;
    (config, records)
}

/// A minimal RFC 4180 reader.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn csv_export_of_one_day() {
    let dir = tempfile::tempdir().unwrap();
    let (config, records) = filled(dir.path()).await;
    let out = voxline(
        &[
            "cdr",
            "export",
            "--since",
            "2026-11-21",
            "--until",
            "2026-11-22",
            "--format",
            "csv",
        ],
        &config,
    );
    let text = stdout(&out);
    assert!(text.ends_with("\r\n"));
    let rows = parse_csv(&text);
    assert_eq!(rows[0], COLUMNS.map(String::from).to_vec());
    // The day is [00:00, 24:00) UTC: calls 2 and 3, oldest first.
    assert_eq!(rows.len(), 3, "{text}");
    let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    for (row, record) in rows[1..].iter().zip([&records[1], &records[2]]) {
        assert_eq!(row.len(), COLUMNS.len());
        assert_eq!(row[col("id")], record.id.to_string());
        assert_eq!(row[col("call_id")], record.call_id);
        assert_eq!(
            row[col("caller_display")],
            *record.caller.display.as_ref().unwrap()
        );
        assert_eq!(row[col("start")], record.start.to_string());
        assert_eq!(row[col("status")], record.status.to_string());
        assert_eq!(
            row[col("duration_ms")],
            record.duration().as_millis().to_string()
        );
    }
    assert_eq!(rows[1][col("answer")], "");
    assert_eq!(rows[1][col("hangup_by")], "callee");
    assert_eq!(rows[1][col("relay")], "");
    assert_eq!(rows[2][col("start")], "2026-11-21T08:30:00.250Z");
    assert_eq!(rows[2][col("duration_ms")], "125000");
    assert_eq!(rows[2][col("from_caller_packets")], "500");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exported 2 call detail records"),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_lines_with_rfc3339_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elsewhere.db");
    // The database named by [cdr] db_url, not the data directory default.
    let extra = format!("[cdr]\ndb_url = \"sqlite://{}\"\n", db.display());
    let (config, records) = filled(dir.path()).await;
    let url = format!("sqlite://{}", db.display());
    let store = CdrStore::open(&url).await.unwrap();
    store.insert(&records[..3]).await.unwrap();
    store.close().await;
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"{}\"\n{extra}",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    // 00:59:59.999+01:00 is 23:59:59.999Z: call 1 is the first included.
    let out = voxline(
        &[
            "cdr",
            "export",
            "--since",
            "2026-11-21T00:59:59.999+01:00",
            "--format",
            "json",
        ],
        &config,
    );
    let text = stdout(&out);
    let back: Vec<CdrRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, records[..3].to_vec());
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["start"], "2026-11-20T23:59:59.999Z");
    assert_eq!(first["duration_ms"], 60_000);
    assert_eq!(first["source_transport"], "udp");
    // One millisecond later: call 1 is out.
    let out = voxline(
        &[
            "cdr",
            "export",
            "--since",
            "2026-11-21T00:00:00Z",
            "--until",
            "2026-11-21T08:30:00.250Z",
            "--format",
            "json",
        ],
        &config,
    );
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(&records[1].id.to_string()));
}

#[tokio::test]
async fn bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = filled(dir.path()).await;
    for (args, expect) in [
        (
            vec!["--since", "yesterday", "--format", "csv"],
            "invalid time",
        ),
        (
            vec!["--since", "2026-02-30", "--format", "csv"],
            "out of range",
        ),
        (
            vec!["--since", "2026-11-21", "--format", "xml"],
            "csv or json",
        ),
        (
            vec![
                "--since",
                "2026-11-21",
                "--until",
                "2026-11-21",
                "--format",
                "csv",
            ],
            "must be after",
        ),
        (vec!["--format", "csv"], "--since"),
    ] {
        let mut full = vec!["cdr", "export"];
        full.extend(args.iter());
        let out = voxline(&full, &config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn records_waiting_in_the_spool_are_mentioned() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = filled(dir.path()).await;
    let waiting = call(9, "2026-11-21T10:00:00Z", Some(5));
    let line = serde_json::to_string(&waiting).unwrap();
    std::fs::write(
        dir.path().join("data/cdr-spool.jsonl"),
        format!("{line}\n{line}\n"),
    )
    .unwrap();
    let out = voxline(
        &["cdr", "export", "--since", "2026-11-21", "--format", "csv"],
        &config,
    );
    let text = stdout(&out);
    assert_eq!(parse_csv(&text).len(), 4);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 records wait in") && stderr.contains("cdr-spool.jsonl"),
        "{stderr}"
    );
}

#[test]
fn cdr_section_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[cdr]\nbatch_size = 0\ndb_url = \"redis://x\"\nbogus = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cdr.bogus"), "{stderr}");
    std::fs::write(&config, "[cdr]\nbatch_size = 0\ndb_url = \"redis://x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cdr.batch_size"), "{stderr}");
    assert!(stderr.contains("cdr.db_url"), "{stderr}");
    std::fs::write(&config, "[cdr]\nenabled = false\nbatch_size = 500\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
