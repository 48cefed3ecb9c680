//! The generator against a tiny SIP responder that this test starts on a loopback port
//! (a plain blocking socket, independent of the generator's own code), with counts checked
//! on both sides.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use voxline_loadgen::engine::{RunConfig, Shape, run};
use voxline_loadgen::uac::{Scenario, Timing};

#[derive(Default, Debug)]
struct Seen {
    requests: u64,
    by_method: HashMap<String, u64>,
    to_users: HashSet<String>,
    expires: HashSet<String>,
    dropped: u64,
}

struct TinyResponder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    handle: Option<JoinHandle<()>>,
}

impl TinyResponder {
    /// Answers every request with 200 OK; when `drop_first` is set, the first copy of each
    /// request (by Call-ID and CSeq) is ignored, forcing a retransmission.
    fn start(drop_first: bool) -> TinyResponder {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            let mut first_seen = HashSet::new();
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let method = text.split(' ').next().unwrap_or("").to_string();
                let header = |name: &str| {
                    text.lines()
                        .find(|l| l.starts_with(name))
                        .map(|l| l[name.len()..].trim().to_string())
                };
                let key = (header("Call-ID:"), header("CSeq:"));
                let mut s = seen2.lock().unwrap();
                if drop_first && first_seen.insert(key) {
                    s.dropped += 1;
                    continue;
                }
                s.requests += 1;
                *s.by_method.entry(method).or_default() += 1;
                if let Some(to) = header("To:") {
                    s.to_users.insert(to);
                }
                if let Some(e) = header("Expires:") {
                    s.expires.insert(e);
                }
                drop(s);
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                for l in text.lines() {
                    if l.starts_with("Via:")
                        || l.starts_with("From:")
                        || l.starts_with("Call-ID:")
                        || l.starts_with("CSeq:")
                    {
                        resp.push_str(l);
                        resp.push_str("\r\n");
                    } else if l.starts_with("To:") {
                        resp.push_str(l);
                        resp.push_str(";tag=tiny\r\n");
                    }
                }
                resp.push_str("Content-Length: 0\r\n\r\n");
                sock.send_to(resp.as_bytes(), from).unwrap();
            }
        });
        TinyResponder {
            addr,
            stop,
            seen,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn config(scenario: Scenario, target: SocketAddr, count: u64) -> RunConfig {
    let mut cfg = RunConfig::new(scenario, target);
    cfg.count = Some(count);
    cfg.duration = Duration::from_secs(20);
    cfg.drain = Duration::from_secs(5);
    cfg.shape = Shape::Concurrency(20);
    cfg
}

#[test]
fn options_against_tiny_responder() {
    let r = TinyResponder::start(false);
    let report = run(&config(Scenario::Options, r.addr, 500)).unwrap();
    let seen = r.finish();
    assert_eq!(report.flows_started, 500);
    assert_eq!(report.flows_completed + report.completed_in_drain, 500);
    assert_eq!(report.flows_failed + report.flows_timed_out, 0);
    assert_eq!(report.replies.get(&200), Some(&500));
    assert_eq!(report.requests_sent, 500);
    assert_eq!(report.retransmissions, 0);
    assert_eq!(report.duplicate_replies, 0);
    assert_eq!(seen.requests, 500);
    assert_eq!(seen.by_method.get("OPTIONS"), Some(&500));
    assert!(report.latency_us.max > 0);
}

#[test]
fn register_distinct_users_against_tiny_responder() {
    let r = TinyResponder::start(false);
    let mut cfg = config(Scenario::Register, r.addr, 300);
    cfg.users = 100;
    cfg.expires = 1800;
    cfg.threads = 2;
    cfg.shape = Shape::Rate(2000.0);
    let report = run(&cfg).unwrap();
    let seen = r.finish();
    assert_eq!(report.flows_completed + report.completed_in_drain, 300);
    assert_eq!(report.replies.get(&200), Some(&300));
    assert_eq!(seen.by_method.get("REGISTER"), Some(&300));
    assert_eq!(seen.to_users.len(), 100, "100 distinct address-of-records");
    assert!(seen.to_users.contains("<sip:u00000099@localhost>"));
    assert_eq!(seen.expires, HashSet::from(["1800".to_string()]));
}

#[test]
fn lost_requests_are_retransmitted() {
    let r = TinyResponder::start(true);
    let mut cfg = config(Scenario::Register, r.addr, 50);
    cfg.timing = Timing {
        t1_us: 100_000,
        t2_us: 800_000,
        timeout_us: 5_000_000,
    };
    let report = run(&cfg).unwrap();
    let seen = r.finish();
    assert_eq!(seen.dropped, 50);
    assert_eq!(report.flows_completed + report.completed_in_drain, 50);
    // At least one retransmission per flow (more only if this machine stalls > T1).
    assert!(report.retransmissions >= 50, "{}", report.retransmissions);
    assert_eq!(report.requests_sent, 50);
    assert!(report.latency_us.p50 >= 100_000, "{:?}", report.latency_us);
}

#[test]
fn unanswered_flows_time_out() {
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(Scenario::Options, silent.local_addr().unwrap(), 5);
    cfg.timing = Timing {
        t1_us: 10_000,
        t2_us: 40_000,
        timeout_us: 200_000,
    };
    let report = run(&cfg).unwrap();
    assert_eq!(report.flows_timed_out, 5);
    assert_eq!(report.flows_completed, 0);
    assert!(
        report.retransmissions >= 5 * 4,
        "{}",
        report.retransmissions
    );
}

#[test]
fn binary_prints_json_line() {
    let r = TinyResponder::start(false);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxline-loadgen"))
        .args([
            "options",
            "--target",
            &r.addr.to_string(),
            "--count",
            "100",
            "--concurrency",
            "10",
            "--json",
        ])
        .output()
        .unwrap();
    let seen = r.finish();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["scenario"], "options");
    assert_eq!(v["replies"]["200"], 100);
    assert_eq!(seen.requests, 100);
    assert!(String::from_utf8_lossy(&out.stderr).contains("completed"));
}

#[test]
fn generator_against_its_own_batched_responder() {
    let resp = voxline_loadgen::responder::Responder::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = resp.local_addr().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| resp.run(Duration::from_secs(30), None, &stop).unwrap());
        let mut cfg = config(Scenario::Register, addr, 20_000);
        cfg.shape = Shape::Concurrency(500);
        cfg.users = 5000;
        let report = run(&cfg).unwrap();
        stop.store(true, Ordering::Relaxed);
        let st = h.join().unwrap();
        assert_eq!(report.flows_completed + report.completed_in_drain, 20_000);
        assert_eq!(report.flows_failed + report.flows_timed_out, 0);
        // Every request answered (retransmissions, if this machine stalled, are too).
        assert_eq!(st.answered, 20_000 + report.retransmissions);
    });
}

#[test]
fn register_auth_against_the_challenging_responder() {
    let resp = voxline_loadgen::responder::Responder::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .challenging("localhost");
    let addr = resp.local_addr().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| resp.run(Duration::from_secs(30), None, &stop).unwrap());
        let mut cfg = config(Scenario::RegisterAuth, addr, 5_000);
        cfg.shape = Shape::Concurrency(200);
        cfg.users = 1000;
        cfg.password = Some("secret".into());
        let report = run(&cfg).unwrap();
        stop.store(true, Ordering::Relaxed);
        let st = h.join().unwrap();
        assert_eq!(report.flows_completed + report.completed_in_drain, 5_000);
        assert_eq!(report.flows_failed + report.flows_timed_out, 0);
        // One challenge per flow, the credentialed REGISTER answered with 200 (and every
        // retransmission, if this machine stalled, answered too).
        let r = report.retransmissions;
        assert!(report.replies.get(&401).is_some_and(|&n| n >= 5_000));
        assert!((5_000..=5_000 + r).contains(&st.challenged), "{st:?}");
        assert_eq!(st.answered, 10_000 + r);
    });
}
