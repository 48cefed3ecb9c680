//! Relay takeover with real processes: two relays (`voxline-relaygen
//! serve-relay --config`, the same `[relay]` section and `Relay::start` as
//! the `voxline` binary) on their own loopback addresses, a real
//! redis-server with keyspace notifications, RTP on every session, and
//! `kill -9` of the relay carrying them.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voxline_location::testutil::RedisServer;
use voxline_ng::client::RetransmitPolicy;
use voxline_ng::command::{DeleteRequest, QueryRequest};
use voxline_relay::client::NgClient;

const BIN: &str = env!("CARGO_BIN_EXE_voxline-relaygen");

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path, name: &str, host: u8, ports: u16, redis_url: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[node]
roles = ["relay"]

[relay]
ng_udp = "127.0.0.{host}:0"
port_min = {ports}
port_max = {max}
timeout_secs = 3600

[[relay.interfaces]]
name = "default"
address = "127.0.0.{host}"

[relay.redis]
url = "{redis_url}"
relay_id = "{name}"
key_prefix = "itest:relay"
"#,
            max = ports + 499
        ),
    )
    .unwrap();
    path
}

/// Starts a relay; returns it, its ng address and its log (stderr).
fn start_relay(cfg: &Path) -> (Proc, SocketAddr, BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(BIN)
        .args(["serve-relay", "--config"])
        .arg(cfg)
        .env("VOXLINE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("relay did not start: {line:?}"))
        .parse()
        .unwrap();
    let log = BufReader::new(child.stderr.take().unwrap());
    (Proc(child), addr, log)
}

/// Reads log lines until one satisfies `f` (or the relay's log ends).
fn wait_log(log: &mut BufReader<std::process::ChildStderr>, f: impl Fn(&str) -> bool) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if log.read_line(&mut line).unwrap() == 0 {
            panic!("log ended");
        }
        if f(&line) {
            return line;
        }
    }
}

fn owners(r: &RedisServer) -> Vec<String> {
    let keys = r
        .cli(&["--scan", "--pattern", "itest:relay:call:*"])
        .unwrap();
    keys.lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            let v = r.cli(&["GET", k]).unwrap();
            let v: serde_json::Value = serde_json::from_str(v.trim()).unwrap();
            v["owner"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn kill_9_relay_is_taken_over_by_its_standby() {
    let r = RedisServer::start().unwrap();
    r.cli(&["CONFIG", "SET", "notify-keyspace-events", "AKE"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, a_ng, _a_log) = start_relay(&config(dir.path(), "relay-a", 21, 36000, &r.url()));
    let (_b, b_ng, mut b_log) = start_relay(&config(dir.path(), "relay-b", 22, 36500, &r.url()));
    let sessions = 40;
    // Sessions on A, RTP at 50 packets/s each way, A killed after 2 s.
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .args(["takeover", "--ng", &a_ng.to_string()])
        .args(["--standby-ng", &b_ng.to_string()])
        .args(["--kill-pid", &a.0.id().to_string()])
        .args(["--sessions", &sessions.to_string()])
        .args(["--before-secs", "2", "--after-secs", "3", "--keep"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{report}");
    assert!(report["received_before_kill"].as_u64().unwrap() > 0);
    assert_eq!(
        report["sessions_resumed"], sessions,
        "every session continues"
    );
    assert_eq!(report["query_ok"], sessions, "query through A's address");
    // Default heartbeat timeout 500 ms: media back well within 1 s (bound
    // loosely for loaded machines).
    let gap = report["resume_ms_max"].as_f64().unwrap();
    assert!(gap < 2500.0, "media gap {gap} ms");
    let took = wait_log(&mut b_log, |l| l.contains("takeover complete"));
    assert!(
        took.contains("relay-a") && took.contains("sessions=40"),
        "{took}"
    );
    // Written back as B's own.
    let o = owners(&r);
    assert_eq!(o.len(), sessions);
    assert!(o.iter().all(|x| x == "relay-b"), "{o:?}");
    // The proxy's relay set is unchanged: delete through A's address.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ng = NgClient::connect(
            a_ng,
            RetransmitPolicy {
                timeout: Duration::from_millis(500),
                attempts: 3,
            },
        )
        .await
        .unwrap();
        for i in 0..sessions {
            let call_id = format!("takeover-{i}");
            ng.query(&QueryRequest {
                call_id: call_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
            let d = ng
                .delete(&DeleteRequest {
                    call_id,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(d.warning.is_none());
        }
    });
    let t = Instant::now();
    while !owners(&r).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5), "keys not deleted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn notify_keyspace_events_off_is_logged() {
    let r = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_a, _, mut log) = start_relay(&config(dir.path(), "relay-x", 23, 37000, &r.url()));
    let line = wait_log(&mut log, |l| l.contains("notify-keyspace-events"));
    assert!(line.contains("ERROR") && line.contains("off"), "{line}");
    assert!(line.contains("AKE"), "says how to fix it: {line}");
}
