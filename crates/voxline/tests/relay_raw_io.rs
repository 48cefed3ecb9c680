//! A relay-only node with `io = "raw"`, as an operator runs it: media of a
//! call set up over ng flows both ways through the raw sockets (two
//! workers), and without CAP_NET_RAW the node refuses to start, naming the
//! key.
//!
//! Needs CAP_NET_RAW; without it the media test returns early, unless
//! `VOXLINE_REQUIRE_RAW` is set, as the test script does when it runs as
//! root.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use support::Node;
use support::media::{media_addr, rtp, sdp};
use voxline_relay::client::NgClient;
use voxline_relay_dataplane::test_util::raw_permitted;

fn raw_relay_config() -> String {
    r#"
[node]
roles = ["relay"]
data_dir = "@DATA@"
[log]
format = "json"
[admin]
listen = "127.0.0.1:0"
[relay]
ng_udp = "127.0.0.1:0"
port_min = 23000
port_max = 23999
workers = 2
io = "raw"
"#
    .to_owned()
}

#[test]
fn a_relay_node_with_raw_io_carries_calls_both_ways() {
    if !raw_permitted() {
        return;
    }
    let node = Node::start(&raw_relay_config());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy = voxline_ng::client::RetransmitPolicy {
        timeout: Duration::from_millis(300),
        attempts: 4,
    };
    let ng = rt
        .block_on(NgClient::connect(node.ng.unwrap(), policy))
        .unwrap();
    let mut buf = [0u8; 2048];
    // Several calls: with two workers they land on both.
    for i in 0..4u16 {
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let offer = voxline_ng::command::MediaRequest {
            call_id: format!("raw-{i}"),
            from_tag: "ft".into(),
            sdp: sdp(a.local_addr().unwrap()),
            ..Default::default()
        };
        let to_b = media_addr(&rt.block_on(ng.offer(&offer)).unwrap().sdp);
        let answer = voxline_ng::command::MediaRequest {
            to_tag: Some("tt".into()),
            sdp: sdp(b.local_addr().unwrap()),
            ..offer
        };
        let to_a = media_addr(&rt.block_on(ng.answer(&answer)).unwrap().sdp);
        a.send_to(&rtp(i), to_a).unwrap();
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&rtp(i)[..], to_b), "call {i}: A to B");
        b.send_to(&rtp(100 + i), to_b).unwrap();
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&rtp(100 + i)[..], to_a),
            "call {i}: B to A"
        );
    }
    // The metrics are refreshed every 0.5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while node.metric("voxline_relay_raw_sent_total", "") < 8.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "voxline_relay_raw_sent_total stays at {}",
            node.metric("voxline_relay_raw_sent_total", "")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(node.metric("voxline_relay_raw_sent_total", ""), 8.0);
    // Nothing dropped at the raw sockets' queues, and the counter is there
    // to say so.
    let metrics = node.admin_get("/metrics");
    assert!(
        metrics.contains("voxline_relay_raw_dropped_total 0"),
        "{metrics}"
    );
}

#[test]
fn without_cap_net_raw_the_node_does_not_start_and_names_the_key() {
    // `setpriv` (util-linux) takes CAP_NET_RAW out of the bounding set, so
    // even root runs the node without it; dropping it needs CAP_SETPCAP.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    let text = raw_relay_config().replace("@DATA@", &dir.path().join("data").display().to_string());
    std::fs::write(&config, text).unwrap();
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw"])
        .arg(support::binary())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output();
    let out = match out {
        Ok(o) if !String::from_utf8_lossy(&o.stderr).starts_with("setpriv:") => o,
        other => {
            assert!(
                std::env::var_os("VOXLINE_REQUIRE_RAW").is_none(),
                "setpriv could not drop CAP_NET_RAW: {other:?}"
            );
            eprintln!("setpriv could not drop CAP_NET_RAW ({other:?}): test skipped");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started without CAP_NET_RAW: {stderr}"
    );
    assert!(
        stderr.contains(r#"relay.io = \"raw\""#) || stderr.contains(r#"relay.io = "raw""#),
        "{stderr}"
    );
    assert!(stderr.contains("CAP_NET_RAW"), "{stderr}");
}
