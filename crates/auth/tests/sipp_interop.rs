//! SIPp (Debian `sip-tester`) as a real digest client: it answers our
//! challenges, and a minimal loopback REGISTER responder in this test
//! verifies the credentials with [`DigestAuth`] against a SQLite store.
//! Skipped with a message when `sipp` is not installed.
//!
//! SIPp 3.6 answers only the first challenge value and only knows MD5, so
//! the responder offers `["MD5", "SHA-256"]` in that order.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use tokio::net::UdpSocket;
use voxline_auth::{
    Algorithm, AuthConfig, AuthRequest, Authenticator, ChallengeKind, ChallengeReason, Decision,
    DigestAuth, DigestCredentials, ServerSecret, SubscriberStore,
};

#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    no_credentials: AtomicUsize,
    invalid_credentials: AtomicUsize,
    other: AtomicUsize,
}

fn header<'a>(lines: &[&'a str], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

/// Answers one REGISTER: 401 with the challenge values, or 200.
async fn respond(auth: &DigestAuth, tally: &Tally, text: &str) -> Option<String> {
    let lines: Vec<&str> = text.split("\r\n").collect();
    let mut request_line = lines.first()?.split(' ');
    let method = request_line.next()?;
    let request_uri = request_line.next()?;
    let authorization = header(&lines, "Authorization");
    let credentials = match authorization.first() {
        Some(value) => Some(DigestCredentials::parse(value).ok()?),
        None => None,
    };
    if let Some(c) = &credentials {
        // What the registrar must check: the digest-uri is the Request-URI.
        assert_eq!(c.uri, request_uri);
    }
    let request = AuthRequest {
        method,
        realm: "localhost",
        kind: ChallengeKind::for_method(method),
        credentials: credentials.as_ref(),
    };
    let decision = auth
        .authenticate(&request, SystemTime::now())
        .await
        .unwrap();
    let mut out = String::new();
    let (status, extra) = match &decision {
        Decision::Accept(_) => {
            tally.accepted.fetch_add(1, Ordering::Relaxed);
            ("200 OK".to_string(), Vec::new())
        }
        Decision::Challenge(c) => {
            let counter = match c.reason {
                ChallengeReason::NoCredentials => &tally.no_credentials,
                ChallengeReason::InvalidCredentials => &tally.invalid_credentials,
                _ => &tally.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let status = format!("{} {}", c.kind.status_code(), c.kind.reason_phrase());
            (
                status,
                c.headers().map(|(n, v)| format!("{n}: {v}")).collect(),
            )
        }
    };
    out.push_str(&format!("SIP/2.0 {status}\r\n"));
    for name in ["Via", "From"] {
        for v in header(&lines, name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "To: {};tag=voxline\r\n",
        header(&lines, "To").first()?
    ));
    out.push_str(&format!(
        "Call-ID: {}\r\n",
        header(&lines, "Call-ID").first()?
    ));
    out.push_str(&format!("CSeq: {}\r\n", header(&lines, "CSeq").first()?));
    for h in extra {
        out.push_str(&h);
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out)
}

fn sipp() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|d| d.join("sipp"))
        .find(|p| p.is_file())
}

/// Runs a scenario for every line of `csv`; true when every call passed.
fn run_sipp(
    sipp: &Path,
    scenario: &str,
    csv: &Path,
    calls: usize,
    server_port: u16,
    work: &Path,
) -> bool {
    let local_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let status = Command::new(sipp)
        .current_dir(work)
        .arg("-sf")
        .arg(&scenario)
        .arg("-inf")
        .arg(csv)
        .args(["-m", &calls.to_string(), "-r", "200", "-l", "50"])
        .args(["-i", "127.0.0.1", "-p", &local_port.to_string()])
        // SIPp's digest-uri is `sip:<remote ip:port>` unless told otherwise.
        .args(["-auth_uri", "localhost"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .arg(format!("127.0.0.1:{server_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    if !status.success() {
        for entry in std::fs::read_dir(work).unwrap().flatten() {
            if entry.file_name().to_string_lossy().ends_with("errors.log") {
                eprintln!(
                    "{}",
                    std::fs::read_to_string(entry.path()).unwrap_or_default()
                );
            }
        }
    }
    status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_with_md5_digest() {
    let Some(sipp) = sipp() else {
        eprintln!("SKIPPED: sipp not found; apt-get install sip-tester");
        return;
    };
    const USERS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("voxline.db").display());
    let store = SubscriberStore::open(&url).await.unwrap();
    for i in 0..USERS {
        store
            .add(&format!("user{i}"), "localhost", &format!("pw{i}"))
            .await
            .unwrap();
    }
    let config = AuthConfig {
        algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
        ..AuthConfig::default()
    };
    let auth = Arc::new(DigestAuth::new(
        Authenticator::new(&config, &ServerSecret::generate()),
        store,
    ));
    let tally = Arc::new(Tally::default());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let server = {
        let (auth, tally) = (auth.clone(), tally.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(reply) = respond(&auth, &tally, &text).await {
                    socket.send_to(reply.as_bytes(), peer).await.unwrap();
                }
            }
        })
    };

    // Right passwords: every user registers.
    let right = dir.path().join("right.csv");
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..USERS {
        csv.push_str(&format!(
            "user{i};[authentication username=user{i} password=pw{i}]\n"
        ));
    }
    std::fs::write(&right, csv).unwrap();
    let work = dir.path().to_path_buf();
    let sipp_path = sipp.clone();
    let ok = tokio::task::spawn_blocking(move || {
        run_sipp(
            &sipp_path,
            "register_accepted.xml",
            &right,
            USERS,
            port,
            &work,
        )
    })
    .await
    .unwrap();
    assert!(ok, "SIPp calls failed with right passwords");
    assert_eq!(tally.accepted.load(Ordering::Relaxed), USERS);
    assert_eq!(tally.invalid_credentials.load(Ordering::Relaxed), 0);

    // Wrong passwords and unknown users: refused alike.
    let wrong = dir.path().join("wrong.csv");
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..10 {
        csv.push_str(&format!(
            "user{i};[authentication username=user{i} password=wrong]\n"
        ));
        csv.push_str(&format!(
            "nobody{i};[authentication username=nobody{i} password=wrong]\n"
        ));
    }
    std::fs::write(&wrong, csv).unwrap();
    let work = dir.path().to_path_buf();
    let ok = tokio::task::spawn_blocking(move || {
        run_sipp(&sipp, "register_refused.xml", &wrong, 20, port, &work)
    })
    .await
    .unwrap();
    assert!(ok, "SIPp calls failed with wrong passwords");
    assert_eq!(tally.accepted.load(Ordering::Relaxed), USERS);
    assert_eq!(tally.invalid_credentials.load(Ordering::Relaxed), 20);
    assert_eq!(tally.other.load(Ordering::Relaxed), 0);
    server.abort();
}
