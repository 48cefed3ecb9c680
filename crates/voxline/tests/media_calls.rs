//! Media-anchored calls through the all-in-one node (registrar, proxy and
//! relay in one process): RTP through the relay, dialogs in the admin API,
//! call detail records, maximum call duration, relay failover.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::time::{Duration, Instant};

use support::{
    Node, SippProcess, config, free_udp_port, injection, provision, register_from_port, scenario,
    sipp,
};

fn extra(more: &str) -> String {
    format!(
        r#"
[auth]
algorithms = ["MD5", "SHA-256"]
[proxy]
dns = false
{more}
"#
    )
}

fn all_in_one(more: &str) -> Node {
    let node = Node::start(&config("\"registrar\", \"proxy\", \"relay\"", &extra(more)));
    provision(
        &node,
        &[("alice@localhost", "alicepw"), ("bob@localhost", "bobpw")],
    );
    // SIPp streams this file (raw PCMU, 2 s) as RTP from the caller.
    std::fs::write(node.dir.path().join("tone.pcmu"), vec![0xffu8; 16_000]).unwrap();
    node
}

fn json(node: &Node, path: &str) -> serde_json::Value {
    serde_json::from_str(&node.admin_get(path)).unwrap()
}

/// Starts bob's UAS (echoing RTP) and alice's caller scenario.
fn start_call(
    node: &Node,
    uas: &str,
    uac: &str,
    extra_args: &[&str],
) -> (SippProcess, SippProcess) {
    let port = free_udp_port();
    register_from_port(node, "bob@localhost", "bobpw", port);
    let dir = node.dir.path();
    let (uas_media, uac_media) = (free_udp_port().to_string(), free_udp_port().to_string());
    let uas_sf = scenario(uas);
    let callee = SippProcess::spawn(
        dir,
        &[
            "-sf",
            uas_sf.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &uas_media,
            "-rtp_echo",
            "-m",
            "1",
        ],
    );
    // The UAS is ready once its SIP port is taken.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "UAS did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let inf = injection(
        dir,
        "caller.csv",
        &["alice;bob;localhost;[authentication username=alice password=alicepw]".into()],
    );
    let target = node.sip_udp.unwrap().to_string();
    let uac_sf = scenario(uac);
    let uac_port = free_udp_port().to_string();
    let mut args = vec![
        "-sf",
        uac_sf.to_str().unwrap(),
        "-inf",
        inf.to_str().unwrap(),
        &target,
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        &uac_port,
        "-mi",
        "127.0.0.1",
        "-mp",
        &uac_media,
    ];
    args.extend_from_slice(extra_args);
    let caller = SippProcess::spawn(dir, &args);
    (caller, callee)
}

fn ok(what: &str, run: support::SippRun, node: &Node) {
    assert!(
        run.success,
        "{what} failed:\n{}\n{}\n--- node ---\n{}",
        run.stdout,
        run.stderr,
        node.log_text()
    );
}

/// The node's call records as CSV lines (header first), through the CLI.
fn cdrs(node: &Node) -> Vec<String> {
    let out = std::process::Command::new(support::binary())
        .args([
            "cdr",
            "export",
            "--since",
            "2020-01-01",
            "--format",
            "csv",
            "--config",
        ])
        .arg(node.dir.path().join("node.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits for a condition that the node reaches asynchronously (records are
/// written by a background task after the call ends).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn column<'a>(header: &'a str, row: &'a str, name: &str) -> &'a str {
    let i = header
        .split(',')
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header}"));
    row.split(',').nth(i).unwrap_or("")
}

#[test]
fn call_with_rtp_through_the_relay_leaves_a_cdr() {
    let node = all_in_one("");
    let (caller, callee) = start_call(&node, "uas_answer.xml", "uac_call_rtp.xml", &["-d", "3000"]);
    // While the call is up it is listed, with its relay.
    eventually("the call to show up as confirmed", || {
        let calls = json(&node, "/api/v1/calls");
        calls["confirmed"] == 1 && calls["calls"][0]["relay"].is_string()
    });
    ok("caller", caller.wait(), &node);
    ok("callee", callee.wait(), &node);
    let relay = json(&node, "/api/v1/relays");
    assert!(
        relay["local"]["forwarded"].as_u64().unwrap() >= 100,
        "media went through the relay: {relay}"
    );
    eventually("the relay session to be deleted", || {
        json(&node, "/api/v1/relays")["local"]["sessions"] == 0
    });
    assert_eq!(json(&node, "/api/v1/calls")["confirmed"], 0);
    let mut rows = Vec::new();
    eventually("the call record", || {
        rows = cdrs(&node);
        rows.len() == 2
    });
    let (h, r) = (&rows[0], &rows[1]);
    assert_eq!(column(h, r, "status"), "200");
    assert_eq!(column(h, r, "hangup_by"), "caller");
    let duration: u64 = column(h, r, "duration_ms").parse().unwrap();
    assert!(
        (2_900..5_000).contains(&duration),
        "duration {duration} ms for a 3 s call"
    );
    let packets: u64 = column(h, r, "from_caller_packets").parse().unwrap();
    assert!(packets >= 50, "relay totals in the record: {r}");
}

#[test]
fn busy_call_leaves_a_486_record_and_no_relay_session() {
    let node = all_in_one("");
    let (caller, callee) = start_call(&node, "uas_busy.xml", "uac_busy.xml", &[]);
    ok("caller", caller.wait(), &node);
    ok("callee", callee.wait(), &node);
    let mut rows = Vec::new();
    eventually("the call record", || {
        rows = cdrs(&node);
        rows.len() == 2
    });
    assert_eq!(column(&rows[0], &rows[1], "status"), "486");
    assert_eq!(column(&rows[0], &rows[1], "duration_ms"), "0");
    eventually("no relay session left", || {
        json(&node, "/api/v1/relays")["local"]["sessions"] == 0
    });
    assert_eq!(json(&node, "/api/v1/calls")["early"], 0);
}

#[test]
fn maximum_duration_ends_the_call_with_bye_to_both_sides() {
    let node = all_in_one("[dialog]\nmax_duration_secs = 2\n");
    let started = Instant::now();
    let (caller, callee) = start_call(&node, "uas_answer.xml", "uac_call_byed.xml", &[]);
    ok("caller (receives BYE from the proxy)", caller.wait(), &node);
    ok("callee (receives BYE from the proxy)", callee.wait(), &node);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let mut rows = Vec::new();
    eventually("the call record", || {
        rows = cdrs(&node);
        rows.len() == 2
    });
    assert_eq!(column(&rows[0], &rows[1], "hangup_by"), "proxy");
    assert_eq!(column(&rows[0], &rows[1], "hangup_reason"), "max-duration");
    eventually("no relay session left", || {
        json(&node, "/api/v1/relays")["local"]["sessions"] == 0
    });
}

#[test]
fn relay_failover_when_the_first_relay_is_down() {
    // A relay address where nothing answers, heavily weighted, and the
    // node's own relay (on a port fixed up front so the set can name it).
    let dead = free_udp_port();
    let ng = free_udp_port();
    let media = format!(
        "[media]\ntimeout_ms = 200\nretries = 1\nrelays = [{{ address = \"127.0.0.1:{dead}\", weight = 1000 }}, {{ address = \"127.0.0.1:{ng}\", weight = 1 }}]\n"
    );
    let node = Node::start(
        &config("\"registrar\", \"proxy\", \"relay\"", &extra(&media)).replace(
            "ng_udp = \"127.0.0.1:0\"",
            &format!("ng_udp = \"127.0.0.1:{ng}\""),
        ),
    );
    provision(
        &node,
        &[("alice@localhost", "alicepw"), ("bob@localhost", "bobpw")],
    );
    std::fs::write(node.dir.path().join("tone.pcmu"), vec![0xffu8; 16_000]).unwrap();
    let (caller, callee) = start_call(&node, "uas_answer.xml", "uac_call_rtp.xml", &["-d", "1000"]);
    ok("caller", caller.wait(), &node);
    ok("callee", callee.wait(), &node);
    assert!(
        json(&node, "/api/v1/relays")["local"]["forwarded"]
            .as_u64()
            .unwrap()
            >= 10
    );
    assert!(
        node.metric("voxline_media_failovers_total", "") >= 1.0,
        "the dead relay was skipped"
    );
    // The admin API shows the proxy's relay set: the dead relay marked
    // down with its error, the node's own relay up and used.
    let set = json(&node, "/api/v1/relays")["set"].clone();
    let by_port = |port: u16| {
        set.as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == format!("127.0.0.1:{port}"))
            .cloned()
            .unwrap_or_else(|| panic!("relay :{port} not in {set}"))
    };
    let (down, up) = (by_port(dead), by_port(ng));
    assert_eq!(down["up"], false, "{set}");
    assert!(down["marked_down"].as_u64().unwrap() >= 1, "{set}");
    assert_eq!(up["up"], true, "{set}");
    assert!(up["sessions_started"].as_u64().unwrap() >= 1, "{set}");
}

#[test]
fn a_sipp_call_without_relay_role_is_not_anchored() {
    // Proxy and registrar only: calls work, no media anchoring is attempted.
    let node = Node::start(&config("\"registrar\", \"proxy\"", &extra("")));
    provision(
        &node,
        &[("alice@localhost", "alicepw"), ("bob@localhost", "bobpw")],
    );
    let target = node.sip_udp.unwrap().to_string();
    let port = free_udp_port();
    register_from_port(&node, "bob@localhost", "bobpw", port);
    let uas = scenario("uas_answer.xml");
    let callee = SippProcess::spawn(
        node.dir.path(),
        &[
            "-sf",
            uas.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
        ],
    );
    let inf = injection(
        node.dir.path(),
        "c.csv",
        &["alice;bob;localhost;[authentication username=alice password=alicepw]".into()],
    );
    let sf = scenario("uac_call.xml");
    let p = free_udp_port().to_string();
    ok(
        "caller",
        sipp(
            node.dir.path(),
            &[
                "-sf",
                sf.to_str().unwrap(),
                "-inf",
                inf.to_str().unwrap(),
                &target,
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-p",
                &p,
            ],
        ),
        &node,
    );
    ok("callee", callee.wait(), &node);
}

/// rtpengine in userspace on loopback, ended when dropped.
struct Rtpengine(std::process::Child);

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_rtpengine() -> Option<(Rtpengine, std::net::SocketAddr)> {
    let ng: std::net::SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let base = 40_000 + (free_udp_port() % 10_000) / 2 * 2;
    let child = std::process::Command::new("rtpengine")
        .args([
            "--config-file=none",
            "--foreground",
            "--table=-1",
            "--log-stderr",
            "--delete-delay=0",
        ])
        .arg("--interface=127.0.0.1")
        .arg(format!("--listen-ng={ng}"))
        .arg(format!("--port-min={base}"))
        .arg(format!("--port-max={}", base + 200))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let daemon = Rtpengine(child);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    loop {
        sock.send_to(b"ping1 d7:command4:pinge", ng).unwrap();
        if let Ok(n) = sock.recv(&mut buf)
            && buf[..n].windows(4).any(|w| w == b"pong")
        {
            return Some((daemon, ng));
        }
        assert!(Instant::now() < deadline, "rtpengine did not answer ping");
    }
}

#[test]
fn voxline_proxy_drives_a_real_rtpengine() {
    let Some((_rtpengine, ng)) = start_rtpengine() else {
        panic!(
            "rtpengine (Debian rtpengine-daemon) must be installed; scripts/test.sh installs it"
        );
    };
    let node = Node::start(&config(
        "\"registrar\", \"proxy\"",
        &extra(&format!(
            "[media]\nrelays = [{{ address = \"{ng}\", weight = 1 }}]\n"
        )),
    ));
    provision(
        &node,
        &[("alice@localhost", "alicepw"), ("bob@localhost", "bobpw")],
    );
    std::fs::write(node.dir.path().join("tone.pcmu"), vec![0xffu8; 16_000]).unwrap();
    let (caller, callee) = start_call(&node, "uas_answer.xml", "uac_call_rtp.xml", &["-d", "2000"]);
    ok("caller", caller.wait(), &node);
    ok("callee", callee.wait(), &node);
    let mut rows = Vec::new();
    eventually("the call record", || {
        rows = cdrs(&node);
        rows.len() == 2
    });
    let (h, r) = (&rows[0], &rows[1]);
    assert_eq!(column(h, r, "relay"), ng.to_string());
    let packets: u64 = column(h, r, "from_caller_packets").parse().unwrap();
    assert!(packets >= 20, "rtpengine relayed the caller's media: {r}");
}

/// The `m=audio` port of an SDP body inside a SIP message.
fn audio_port(message: &str) -> u16 {
    message
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio line in\n{message}"))
}

/// The callee retransmits its 200 OK (the ACK was lost, say) after the
/// proxy's session for the call has left: every copy still reaches the
/// caller with the SDP rewritten for the relay (the bytes first forwarded),
/// before and after the caller's ACK passed, never with the callee's own
/// media address.
#[test]
fn a_retransmitted_anchored_200_ok_keeps_the_relay_sdp() {
    let node = Node::start(&config(
        "\"registrar\", \"proxy\", \"relay\"",
        "[registrar]\nauthenticate = false\n[proxy]\nauthenticate = false\ndns = false\n",
    ));
    let target = node.sip_udp.unwrap();
    let (status, _, bob) = support::register_raw(target, "bob", None);
    assert_eq!(status, 200, "bob registers");
    let alice = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    alice
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let a = alice.local_addr().unwrap();
    let with_sdp = |head: &str, port: u16| {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\n"
        );
        let head = head
            .strip_suffix("Content-Length: 0\r\n\r\n")
            .unwrap_or(head);
        format!(
            "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    let invite = with_sdp(
        &format!(
            "INVITE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKanc1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@localhost>;tag=al1\r\nTo: <sip:bob@localhost>\r\n\
Call-ID: anchored-retx-{port}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{a}>\r\n",
            port = a.port()
        ),
        41_000,
    );
    alice.send_to(invite.as_bytes(), target).unwrap();

    let mut buf = [0u8; 8192];
    let (n, proxy) = bob.recv_from(&mut buf).unwrap();
    let forwarded = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(forwarded.starts_with("INVITE "), "{forwarded}");
    assert_ne!(audio_port(&forwarded), 41_000, "the callee sees the relay");
    let b = bob.local_addr().unwrap();
    let ok = with_sdp(
        &support::uas_response(
            &forwarded,
            "SIP/2.0 200 OK",
            "bob1",
            &format!("Contact: <sip:bob@{b}>\r\n"),
        ),
        42_000,
    );
    let final_at_alice = |what: &str| support::final_response(&alice, what, &node);
    bob.send_to(ok.as_bytes(), proxy).unwrap();
    let first = final_at_alice("the 200 OK");
    assert!(first.starts_with("SIP/2.0 200"), "{first}");
    let relay_port = audio_port(&first);
    assert_ne!(relay_port, 42_000, "the caller sees the relay");

    bob.send_to(ok.as_bytes(), proxy).unwrap();
    let again = final_at_alice("the retransmitted 200 OK");
    assert_eq!(again, first, "a retransmission is the first copy again");

    // The caller's ACK passes (to bob, through the proxy's Record-Route);
    // a retransmission after it is still rewritten.
    let route: Vec<&str> = first
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    assert!(!route.is_empty(), "{first}");
    let ack = format!(
        "ACK sip:bob@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKanc2;rport\r\n\
Max-Forwards: 70\r\nRoute: {}\r\nFrom: <sip:alice@localhost>;tag=al1\r\n\
To: <sip:bob@localhost>;tag=bob1\r\nCall-ID: anchored-retx-{port}\r\nCSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n",
        route.join(", "),
        port = a.port()
    );
    alice.send_to(ack.as_bytes(), target).unwrap();
    let (n, _) = bob.recv_from(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"ACK "), "bob gets the ACK");
    bob.send_to(ok.as_bytes(), proxy).unwrap();
    let late = final_at_alice("the 200 OK retransmitted after the ACK");
    assert_eq!(audio_port(&late), relay_port, "{late}");
    // Answered from the forwarded bytes, without a session: at least the
    // last one (the first may still find the session leaving).
    let resent = node.metric("voxline_proxy_answers_resent_total", "");
    assert!(resent >= 1.0, "{resent}\n{}", node.log_text());
}
