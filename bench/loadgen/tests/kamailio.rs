//! The generator against a real Kamailio (Debian package `kamailio`) started by the test on
//! a free loopback port with the benchmark configs in `bench/sip/`: digest auth (MD5 and
//! SHA-256) and whole calls through the stateful proxy, checked end to end.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use voxline_loadgen::engine::{RunConfig, Shape, run};
use voxline_loadgen::uac::{Scenario, Timing};

struct Kamailio {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Kamailio {
    /// Kamailio forks its workers; it runs in its own process group, so the whole group
    /// is stopped (SIGTERM, then SIGKILL if it lingers), leaving no orphaned worker.
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn sip_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sip")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(cfg: &str, defines: &[&str]) -> Kamailio {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new("kamailio");
    cmd.arg("-f")
        .arg(sip_dir().join(cfg))
        .args([
            "-l",
            &format!("udp:{addr}"),
            "-n",
            "2",
            "-m",
            "64",
            "-DD",
            "-E",
        ])
        .arg("-Y")
        .arg(dir.path())
        .arg("-w")
        .arg(dir.path());
    for d in defines {
        cmd.args(["-A", d]);
    }
    let child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kamailio is installed (Debian package kamailio)");
    let k = Kamailio {
        child,
        addr,
        _dir: dir,
    };
    wait_ready(k.addr);
    k
}

/// Waits until the server answers an OPTIONS (any response counts).
fn wait_ready(addr: SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let probe = "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe;rport\r\nFrom: <sip:p@localhost>;tag=1\r\nTo: <sip:probe@localhost>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let _ = s.send_to(probe.as_bytes(), addr);
        if s.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!("kamailio did not answer on {addr}");
}

fn config(scenario: Scenario, target: SocketAddr, count: u64) -> RunConfig {
    let mut cfg = RunConfig::new(scenario, target);
    cfg.count = Some(count);
    cfg.duration = Duration::from_secs(30);
    cfg.shape = Shape::Concurrency(20);
    cfg.users = 50;
    // A long T1 so that a slow test machine does not cause retransmissions: the tests
    // assert exact message counts.
    cfg.timing = Timing {
        t1_us: 2_000_000,
        t2_us: 8_000_000,
        timeout_us: 30_000_000,
    };
    cfg
}

#[test]
fn register_auth_md5_against_kamailio() {
    let k = start("registrar-auth.cfg", &[]);
    let mut cfg = config(Scenario::RegisterAuth, k.addr, 200);
    cfg.password = Some("secret".into());
    let r = run(&cfg).unwrap();
    assert_eq!(
        r.flows_completed + r.completed_in_drain,
        200,
        "{}",
        r.summary()
    );
    assert_eq!(r.replies.get(&401), Some(&200));
    assert_eq!(r.replies.get(&200), Some(&200));
    assert_eq!(r.challenges_answered, 200);
    assert_eq!(r.retransmissions, 0);
}

#[test]
fn register_auth_sha256_against_kamailio() {
    let k = start("registrar-auth.cfg", &["SHA256"]);
    let mut cfg = config(Scenario::RegisterAuth, k.addr, 100);
    cfg.password = Some("secret".into());
    cfg.algorithm = voxline_loadgen::digest::Algorithm::Sha256;
    let r = run(&cfg).unwrap();
    assert_eq!(
        r.flows_completed + r.completed_in_drain,
        100,
        "{}",
        r.summary()
    );
    assert_eq!(r.challenges_answered, 100);
}

#[test]
fn wrong_password_fails_against_kamailio() {
    let k = start("registrar-auth.cfg", &[]);
    let mut cfg = config(Scenario::RegisterAuth, k.addr, 10);
    cfg.password = Some("wrong".into());
    let r = run(&cfg).unwrap();
    assert_eq!(r.flows_completed, 0);
    assert_eq!(r.flows_failed, 10, "{}", r.summary());
}

#[test]
fn calls_through_kamailio_proxy() {
    let k = start("proxy.cfg", &[]);
    let mut cfg = config(Scenario::Call, k.addr, 300);
    cfg.callees = 20;
    let r = run(&cfg).unwrap();
    assert_eq!(
        r.flows_completed + r.completed_in_drain,
        300,
        "{}",
        r.summary()
    );
    assert_eq!(r.flows_failed + r.flows_timed_out, 0);
    // INVITE and BYE answered by 200 each; the proxy's own 100 plus the callee's 100/180.
    assert_eq!(r.replies.get(&200), Some(&600), "{}", r.summary());
    // A 180 can lose the race against its 200 between two Kamailio workers and is then
    // dropped by tm (a provisional after the final), so it is not counted exactly.
    assert!(r.replies.get(&180).is_some_and(|&n| n > 0 && n <= 300));
    assert_eq!(r.retransmissions, 0);
    assert_eq!(
        r.uas_retransmissions, 0,
        "every 200 was ACKed through the proxy"
    );
    assert_eq!(r.uas_ack_timeouts, 0);
    // INVITE, ACK, BYE per call.
    assert_eq!(r.requests_sent, 900);
}

#[test]
fn options_against_kamailio() {
    let k = start("options.cfg", &[]);
    let r = run(&config(Scenario::Options, k.addr, 1000)).unwrap();
    assert_eq!(
        r.flows_completed + r.completed_in_drain,
        1000,
        "{}",
        r.summary()
    );
}

#[test]
fn calls_answer_proxy_challenges_through_kamailio() {
    let k = start("proxy.cfg", &["WITH_AUTH"]);
    let mut cfg = config(Scenario::Call, k.addr, 100);
    cfg.callees = 10;
    cfg.password = Some("secret".into());
    let r = run(&cfg).unwrap();
    assert_eq!(
        r.flows_completed + r.completed_in_drain,
        100,
        "{}",
        r.summary()
    );
    assert_eq!(r.replies.get(&407), Some(&100));
    assert_eq!(r.challenges_answered, 100);
    // INVITE, ACK for the 407, INVITE with credentials, ACK, BYE.
    assert_eq!(r.requests_sent, 500);
    assert_eq!(r.retransmissions, 0);
}
