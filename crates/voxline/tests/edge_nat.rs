//! A client behind NAT (its Contact names a private address) registers
//! through the edge: the edge sends it keep-alives, and a call to it comes
//! back through the edge and over the client's flow (the address the
//! REGISTER came from), not to the unreachable Contact.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::time::{Duration, Instant};

use support::{
    Node, edge_node_config, fast_tempdir, free_udp_port, injection, provision_db, register_raw,
    registrar_node_config, scenario, sipp,
};

#[test]
fn nated_client_gets_keepalives_and_its_calls_over_its_flow() {
    let shared = fast_tempdir();
    let db = shared.path().join("subscribers.db");
    provision_db(
        &db,
        ["alice", "bob"].map(|u| (format!("{u}@localhost"), u.to_owned())),
    );
    let reg = Node::start(&registrar_node_config(
        "reg1",
        "127.0.0.2",
        "memory",
        &db,
        "",
    ));
    let cfg = edge_node_config("127.0.0.5", &[("reg1", reg.sip_udp.unwrap())], "").replace(
        "failover_timeout_ms = 500",
        "failover_timeout_ms = 500\nkeepalive_interval_secs = 1\nkeepalive_method = \"options\"",
    );
    let edge = Node::start(&cfg);
    let edge_addr = edge.sip_udp.unwrap();

    // bob's phone says it is at 10.0.0.7 (a private address behind NAT).
    let (status, _, phone) = register_raw(edge_addr, "bob", Some("10.0.0.7"));
    assert_eq!(status, 200);
    let port = phone.local_addr().unwrap().port();

    // Keep-alives arrive on the flow, about once a second.
    phone
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let n = phone.recv(&mut buf).expect("a keep-alive within 3 s");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(&format!("OPTIONS sip:127.0.0.1:{port} SIP/2.0")) {
            seen.push(Instant::now());
        }
    }
    let interval = seen[1] - seen[0];
    assert!(
        interval > Duration::from_millis(500) && interval < Duration::from_millis(2500),
        "keep-alive interval {interval:?}"
    );
    assert!(edge.metric("voxline_edge_keepalives_sent_total", "") >= 2.0);
    let view: serde_json::Value =
        serde_json::from_str(&edge.admin_get("/api/v1/dispatcher")).unwrap();
    assert_eq!(view["edge"]["keepalive_flows"], 1, "{view}");

    // alice calls bob: the INVITE reaches bob's socket (not 10.0.0.7),
    // with bob's Contact as Request-URI; bob is busy.
    let dir = edge.dir.path().to_owned();
    let caller = std::thread::spawn(move || {
        let inf = injection(
            &dir,
            "alice.csv",
            &["alice;bob;localhost;[authentication username=alice password=alice]".into()],
        );
        let sf = scenario("uac_busy.xml");
        let port = free_udp_port().to_string();
        sipp(
            &dir,
            &[
                "-sf",
                sf.to_str().unwrap(),
                "-inf",
                inf.to_str().unwrap(),
                &edge_addr.to_string(),
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-p",
                &port,
            ],
        )
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = false;
    while Instant::now() < deadline && !answered {
        let Ok((n, from)) = phone.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("INVITE ") {
            continue;
        }
        assert!(
            text.starts_with(&format!("INVITE sip:bob@10.0.0.7:{port} SIP/2.0")),
            "{text}"
        );
        assert_eq!(from, edge_addr, "the call comes from the edge");
        phone
            .send_to(busy_response(&text).as_bytes(), from)
            .unwrap();
        answered = true;
    }
    assert!(answered, "the INVITE reached bob over his flow");
    let run = caller.join().unwrap();
    assert!(
        run.success,
        "caller saw 486:\n{}\n{}",
        run.stdout, run.stderr
    );
}

/// A 486 for `invite` (headers copied as a UAS does, our To tag added).
fn busy_response(invite: &str) -> String {
    support::uas_response(invite, "SIP/2.0 486 Busy Here", "bobbusy", "")
}
