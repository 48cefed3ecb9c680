//! The node answers OPTIONS addressed to itself over UDP and TCP, with SIPp
//! as the peer.

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
