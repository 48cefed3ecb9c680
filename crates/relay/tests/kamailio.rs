//! Interop: Kamailio (Debian `kamailio`) with its `rtpengine` module drives
//! the Voxline relay for a SIPp call. Asserts that the SDP the callee sees
//! points at the relay, that RTP flows both ways through the relay and that
//! the BYE deletes the session. Skipped (with a message) only if the
//! `kamailio` or `sipp` binary is missing.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use voxline_ng::client::RetransmitPolicy;
use voxline_ng::command::QueryRequest;
use voxline_ng::{Value, client::check_result};
use voxline_relay::InterfaceConfig;
use voxline_relay::client::NgClient;

/// The relay's media address: distinct from the endpoints' 127.0.0.1 so the
/// SDP check is meaningful.
const RELAY_MEDIA_IP: &str = "127.0.0.5";

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
        || Path::new("/usr/sbin").join(bin).is_file()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ends the spawned processes with their whole process group (Kamailio
/// forks worker processes that would outlive a plain kill of the parent).
struct Guard(Vec<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(pgid) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = c.wait();
        }
    }
}

fn kamailio_bin() -> String {
    if which("kamailio") && Command::new("kamailio").arg("-v").output().is_ok() {
        "kamailio".into()
    } else {
        "/usr/sbin/kamailio".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_rtpengine_module_drives_the_relay() {
    if !(which("kamailio") && which("sipp")) {
        eprintln!(
            "SKIPPED: kamailio_rtpengine_module_drives_the_relay needs the `kamailio` and `sipp` binaries (Debian packages kamailio, sip-tester)"
        );
        return;
    }
    let relay = start_relay(32000, 32099, |c| {
        c.interfaces = vec![InterfaceConfig {
            name: "default".into(),
            address: RELAY_MEDIA_IP.parse().unwrap(),
            advertised_address: None,
        }];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (sip_port, uas_port, uac_port) = (free_udp_port(), free_udp_port(), free_udp_port());
    let (uas_media, uac_media) = (free_udp_port(), free_udp_port());
    let template = include_str!("kamailio/kamailio.cfg.in");
    let cfg = template
        .replace("{{SIP_PORT}}", &sip_port.to_string())
        .replace("{{UAS_PORT}}", &uas_port.to_string())
        .replace("{{NG_ADDR}}", &relay.ng_udp_addr().to_string());
    let cfg_path = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let kam_log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
    let mut guard = Guard(Vec::new());
    guard.0.push(
        Command::new(kamailio_bin())
            .args([
                "-f",
                cfg_path.to_str().unwrap(),
                "-DD",
                "-E",
                "-m",
                "32",
                "-M",
                "8",
                "-w",
            ])
            .arg(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(kam_log.try_clone().unwrap())
            .stderr(kam_log)
            .spawn()
            .unwrap(),
    );
    // Kamailio pings the relay when its rtpengine module starts.
    eventually(10, || relay.stats().commands >= 1).await;

    let uas_trace = dir.path().join("uas_messages.log");
    guard.0.push(
        Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas_port.to_string()])
            .args([
                "-mi",
                "127.0.0.1",
                "-mp",
                &uas_media.to_string(),
                "-rtp_echo",
            ])
            .args([
                "-m",
                "1",
                "-nostdin",
                "-trace_msg",
                "-message_file",
                uas_trace.to_str().unwrap(),
            ])
            .current_dir(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The UAS is ready once its SIP port is taken.
    eventually(10, || UdpSocket::bind(("127.0.0.1", uas_port)).is_err()).await;
    let mut uac = Command::new("sipp")
        .arg(format!("127.0.0.1:{sip_port}"))
        .args(["-sn", "uac", "-i", "127.0.0.1", "-p", &uac_port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &uac_media.to_string()])
        .args([
            "-m",
            "1",
            "-d",
            "3000",
            "-timeout",
            "30",
            "-timeout_error",
            "-nostdin",
        ])
        .args([
            "-trace_err",
            "-error_file",
            dir.path().join("uac_errors.log").to_str().unwrap(),
        ])
        .args([
            "-trace_msg",
            "-message_file",
            dir.path().join("uac_messages.log").to_str().unwrap(),
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // While the call is up (3 s pause), find it on the relay.
    let ng = NgClient::connect(
        relay.ng_udp_addr(),
        RetransmitPolicy {
            timeout: Duration::from_millis(300),
            attempts: 3,
        },
    )
    .await
    .unwrap();
    let mut call_id = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while call_id.is_none() && Instant::now() < deadline {
        let body = ng
            .request(&Value::dict().with("command", Value::str("list")))
            .await
            .unwrap();
        check_result(&body).unwrap();
        call_id = body
            .get("calls")
            .and_then(Value::as_list)
            .and_then(|l| l.first())
            .and_then(Value::as_str)
            .map(str::to_owned);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let call_id = call_id.expect("Kamailio never created a relay session");
    // Wait until the answer is through: both legs have their endpoints.
    let mut caller_port = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while caller_port.is_none() && Instant::now() < deadline {
        let q = ng
            .query(&QueryRequest {
                call_id: call_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let answered = q.tags.iter().all(|t| !t.tag.is_empty()) && q.tags.len() == 2;
        if answered {
            caller_port = q
                .tags
                .iter()
                .flat_map(|t| &t.medias)
                .flat_map(|m| &m.streams)
                .find(|s| {
                    s.advertised_endpoint
                        .as_ref()
                        .is_some_and(|e| e.addr.port() == uac_media)
                })
                .map(|s| s.local_port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caller_port = caller_port.expect("call was not answered through the relay");
    // Media: we play the caller (latching moves the caller leg to us); the
    // SIPp callee echoes RTP back through the relay.
    let me = Endpoint::new();
    let relay_a: SocketAddr = format!("{RELAY_MEDIA_IP}:{caller_port}").parse().unwrap();
    for seq in 0..5u16 {
        me.send(&rtp(seq), relay_a);
        let (data, from, tos) = me.recv();
        assert_eq!(data, rtp(seq), "echo through SIPp and the relay");
        assert_eq!(from, relay_a);
        assert_eq!(tos, 184);
    }
    let q = ng
        .query(&QueryRequest {
            call_id: call_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(q.totals_rtp.packets, 10, "5 packets each way counted");

    // The call ends with BYE through Kamailio → rtpengine_delete.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = uac.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "SIPp UAC did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !status.success() {
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        panic!(
            "SIPp UAC failed: {status}\n--- uac errors\n{}\n--- uac messages\n{}\n--- kamailio\n{}",
            read("uac_errors.log"),
            read("uac_messages.log"),
            read("kamailio.log")
        );
    }
    eventually(5, || relay.stats().sessions == 0).await;

    // The callee saw the relay in the SDP.
    let trace = std::fs::read_to_string(&uas_trace).unwrap();
    let invite = &trace[trace.find("INVITE sip:").expect("UAS got no INVITE")..];
    let body_conn = format!("c=IN IP4 {RELAY_MEDIA_IP}");
    assert!(
        invite.contains(&body_conn),
        "UAS SDP does not point at the relay:\n{invite}"
    );
    let port: u16 = invite
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!(
        (32000..32100).contains(&port),
        "m= port {port} is not a relay port"
    );
    // Kamailio's `replace-origin` flag reached the relay.
    assert!(
        invite.contains(&format!(
            "o=user1 53655765 2353687637 IN IP4 {RELAY_MEDIA_IP}"
        )),
        "{invite}"
    );
    relay.shutdown().await;
    drop(guard);
}
