//! The node answers OPTIONS addressed to itself over UDP and TCP, with SIPp
//! as the peer.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use support::{Node, config, scenario, sipp};

#[test]
fn sipp_options_over_udp_and_tcp() {
    let node = Node::start(&config("\"proxy\"", ""));
    let udp = node.sip_udp.expect("udp listener").to_string();
    let tcp = node.sip_tcp.expect("tcp listener").to_string();
    let sf = scenario("options.xml");
    let sf = sf.to_str().unwrap();

    let run = sipp(
        node.dir.path(),
        &["-sf", sf, &udp, "-m", "200", "-r", "200", "-i", "127.0.0.1"],
    );
    assert!(
        run.success,
        "sipp udp failed:\n{}\n{}",
        run.stdout, run.stderr
    );

    let run = sipp(
        node.dir.path(),
        &[
            "-sf",
            sf,
            &tcp,
            "-t",
            "t1",
            "-m",
            "100",
            "-r",
            "100",
            "-i",
            "127.0.0.1",
        ],
    );
    assert!(
        run.success,
        "sipp tcp failed:\n{}\n{}",
        run.stdout, run.stderr
    );

    assert_eq!(node.metric("voxline_sip_options_answered_total", ""), 300.0);
    assert_eq!(
        node.metric("voxline_transport_received_total", "transport=\"tcp\""),
        100.0
    );
}

#[test]
fn embedded_default_config_passes_check() {
    let out = std::process::Command::new(support::binary())
        .args(["check", "--config"])
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/all-in-one.toml"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_problem_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[node]\nroles = [\"registrar\", \"teleporter\"]\n[sip]\nmax_transactions = \"many\"\n[admin]\nlisten = \"nowhere\"\ncolour = 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(support::binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2:") && err.contains("node.roles"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:4:") && err.contains("sip.max_transactions"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:6:") && err.contains("admin.listen"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:7:") && err.contains("admin.colour"),
        "{err}"
    );
}

#[test]
fn drain_mode_answers_503_and_can_be_left() {
    let node = Node::start(&config("\"proxy\"", ""));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(node.sip_udp.unwrap()).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let port = node.sip_udp.unwrap().port();
    let ping = |branch: &str| -> String {
        let m = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch};rport\r\n\
From: <sip:t@localhost>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send(m.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(ping("d1").starts_with("SIP/2.0 200"));
    let out = std::process::Command::new(support::binary())
        .args(["ctl", "--admin", &node.admin.unwrap().to_string(), "drain"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = ping("d2");
    assert!(
        r.starts_with("SIP/2.0 503") && r.contains("Retry-After:"),
        "{r}"
    );
    let out = std::process::Command::new(support::binary())
        .args([
            "ctl",
            "--admin",
            &node.admin.unwrap().to_string(),
            "drain",
            "--off",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(ping("d3").starts_with("SIP/2.0 200"));
}
