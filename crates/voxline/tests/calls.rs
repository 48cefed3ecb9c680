//! Calls through the all-in-one node with SIPp as caller and callee.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use support::{
    Node, SippProcess, config, free_udp_port, injection, provision, register_from_port, scenario,
};

const EXTRA: &str = r#"
[auth]
algorithms = ["MD5", "SHA-256"]
[proxy]
timer_c_secs = 3
dns = false
"#;

fn node() -> Node {
    let node = Node::start(&config("\"registrar\", \"proxy\"", EXTRA));
    provision(
        &node,
        &[("alice@localhost", "alicepw"), ("bob@localhost", "bobpw")],
    );
    node
}

/// Runs a UAS scenario for bob on `port` and the caller scenario against the node.
fn call(
    node: &Node,
    uas: &[(&str, u16)],
    uac: &str,
    hold_ms: &str,
) -> (support::SippRun, Vec<support::SippRun>) {
    let target = node.sip_udp.unwrap().to_string();
    let dir = node.dir.path();
    let servers: Vec<SippProcess> = uas
        .iter()
        .map(|(sf, port)| {
            let sf = scenario(sf);
            SippProcess::spawn(
                dir,
                &[
                    "-sf",
                    sf.to_str().unwrap(),
                    "-i",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-m",
                    "1",
                ],
            )
        })
        .collect();
    let inf = injection(
        dir,
        "caller.csv",
        &["alice;bob;localhost;[authentication username=alice password=alicepw]".into()],
    );
    let sf = scenario(uac);
    let port = free_udp_port().to_string();
    let mut args = vec![
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
        &port,
    ];
    if uac == "uac_call.xml" {
        args.extend(["-d", hold_ms]);
    }
    let caller = support::sipp(dir, &args);
    let callees = servers.into_iter().map(SippProcess::wait).collect();
    (caller, callees)
}

fn assert_ok(what: &str, run: &support::SippRun, node: &Node) {
    assert!(
        run.success,
        "{what} failed:\n{}\n{}\n--- node log ---\n{}",
        run.stdout,
        run.stderr,
        node.log_text()
    );
}

#[test]
fn alice_calls_bob_with_auth_record_route_and_bye() {
    let node = node();
    let port = free_udp_port();
    register_from_port(&node, "bob@localhost", "bobpw", port);
    let (caller, callees) = call(&node, &[("uas_answer.xml", port)], "uac_call.xml", "200");
    assert_ok("caller", &caller, &node);
    assert_ok("callee", &callees[0], &node);
    assert!(
        node.metric("voxline_proxy_requests_total", "") >= 2.0,
        "INVITE and BYE went through the proxy"
    );
}

#[test]
fn busy_callee_gives_486() {
    let node = node();
    let port = free_udp_port();
    register_from_port(&node, "bob@localhost", "bobpw", port);
    let (caller, callees) = call(&node, &[("uas_busy.xml", port)], "uac_busy.xml", "0");
    assert_ok("caller", &caller, &node);
    assert_ok("callee", &callees[0], &node);
}

#[test]
fn caller_cancels_while_ringing() {
    let node = node();
    let port = free_udp_port();
    register_from_port(&node, "bob@localhost", "bobpw", port);
    let (caller, callees) = call(&node, &[("uas_ring.xml", port)], "uac_cancel.xml", "0");
    assert_ok("caller", &caller, &node);
    assert_ok("callee", &callees[0], &node);
}

#[test]
fn nobody_answers_gives_408_after_timer_c() {
    let node = node();
    let port = free_udp_port();
    register_from_port(&node, "bob@localhost", "bobpw", port);
    let (caller, callees) = call(&node, &[("uas_ring.xml", port)], "uac_noanswer.xml", "0");
    assert_ok("caller", &caller, &node);
    assert_ok("callee (cancelled by Timer C)", &callees[0], &node);
}

#[test]
fn forking_to_two_contacts_where_the_second_answers() {
    let node = node();
    let ringing = free_udp_port();
    let answering = free_udp_port();
    register_from_port(&node, "bob@localhost", "bobpw", ringing);
    register_from_port(&node, "bob@localhost", "bobpw", answering);
    let (caller, callees) = call(
        &node,
        &[("uas_ring.xml", ringing), ("uas_answer.xml", answering)],
        "uac_call.xml",
        "100",
    );
    assert_ok("caller", &caller, &node);
    assert_ok(
        "ringing phone (cancelled when the other answered)",
        &callees[0],
        &node,
    );
    assert_ok("answering phone", &callees[1], &node);
}

#[test]
fn unknown_and_unregistered_callees() {
    let node = node();
    let target = node.sip_udp.unwrap().to_string();
    // bob exists but is not registered: 480; carol does not exist: 404.
    for (callee, code) in [("bob", "480"), ("carol", "404")] {
        let sf = scenario("uac_busy.xml");
        let text = std::fs::read_to_string(&sf).unwrap().replace(
            "<recv response=\"486\"/>",
            &format!("<recv response=\"{code}\"/>"),
        );
        let path = node.dir.path().join(format!("uac_{code}.xml"));
        std::fs::write(&path, text).unwrap();
        let inf = injection(
            node.dir.path(),
            &format!("c{code}.csv"),
            &[format!(
                "alice;{callee};localhost;[authentication username=alice password=alicepw]"
            )],
        );
        let run = support::sipp(
            node.dir.path(),
            &[
                "-sf",
                path.to_str().unwrap(),
                "-inf",
                inf.to_str().unwrap(),
                &target,
                "-m",
                "1",
                "-i",
                "127.0.0.1",
            ],
        );
        assert_ok(&format!("call to {callee}"), &run, &node);
    }
}

#[test]
fn a_registration_survives_kill_9_and_restart() {
    let mut node = node();
    let port = free_udp_port();
    register_from_port(&node, "bob@localhost", "bobpw", port);
    node.restart();
    let (caller, callees) = call(&node, &[("uas_answer.xml", port)], "uac_call.xml", "0");
    assert_ok("caller after restart", &caller, &node);
    assert_ok("callee after restart", &callees[0], &node);
}

/// A node without authentication, bob registered from a raw UDP socket, and
/// a raw socket for alice (3 s read timeout): for the tests that need to
/// write or hold back single messages.
fn raw_parties() -> (Node, std::net::UdpSocket, std::net::UdpSocket) {
    let node = Node::start(&config(
        "\"registrar\", \"proxy\"",
        "[registrar]\nauthenticate = false\n[proxy]\nauthenticate = false\ndns = false\n",
    ));
    let (status, _, bob) = support::register_raw(node.sip_udp.unwrap(), "bob", None);
    assert_eq!(status, 200, "bob registers");
    let alice = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    alice
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    (node, bob, alice)
}

/// The callee's 200 OK is retransmitted after the proxy forwarded the first
/// one (its ACK was lost, say): the retransmission still reaches the caller
/// (RFC 3261 §16.7 step 10; RFC 6026), even though the proxy's session for
/// the call has ended and only the transactions remain.
#[test]
fn a_retransmitted_200_ok_still_reaches_the_caller() {
    let (node, bob, alice) = raw_parties();
    let target = node.sip_udp.unwrap();
    let a = alice.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKretx1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@localhost>;tag=al1\r\nTo: <sip:bob@localhost>\r\n\
Call-ID: retx-{port}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{a}>\r\nContent-Length: 0\r\n\r\n",
        port = a.port()
    );
    alice.send_to(invite.as_bytes(), target).unwrap();

    // Bob gets the forwarded INVITE and answers it, with every Via and
    // Record-Route copied back as a UAS does.
    let mut buf = [0u8; 8192];
    let (n, proxy) = bob.recv_from(&mut buf).unwrap();
    let forwarded = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(forwarded.starts_with("INVITE "), "{forwarded}");
    let b = bob.local_addr().unwrap();
    let ok = support::uas_response(
        &forwarded,
        "SIP/2.0 200 OK",
        "bob1",
        &format!("Contact: <sip:bob@{b}>\r\n"),
    );
    let final_at_alice = |what: &str| support::final_response(&alice, what, &node);
    bob.send_to(ok.as_bytes(), proxy).unwrap();
    let first = final_at_alice("the 200 OK");
    assert!(first.starts_with("SIP/2.0 200"), "{first}");
    bob.send_to(ok.as_bytes(), proxy).unwrap();
    let again = final_at_alice("the retransmitted 200 OK");
    assert!(again.starts_with("SIP/2.0 200"), "{again}");
    // The proxy's own Via is gone: only alice's is left.
    let vias: Vec<&str> = again
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
        .collect();
    assert_eq!(vias.len(), 1, "{again}");
    assert!(vias[0].contains("branch=z9hG4bKretx1"), "{again}");
}

/// The ACK to a final response the node gave statelessly (here 420 for an
/// unsupported Proxy-Require) ends at the node: it is not routed on to the
/// registered callee its Request-URI names, which never saw the INVITE.
#[test]
fn the_ack_to_a_stateless_answer_is_not_routed_on() {
    let (node, bob, alice) = raw_parties();
    let target = node.sip_udp.unwrap();
    let b = bob.local_addr().unwrap();
    let a = alice.local_addr().unwrap();
    let head = |method: &str, extra: &str| {
        format!(
            "{method} sip:bob@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bKsl1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@localhost>;tag=al2\r\nTo: <sip:bob@localhost>{extra}\r\n\
Call-ID: stateless-ack-{port}\r\nCSeq: 1 {method}\r\n",
            port = a.port()
        )
    };
    let invite = format!(
        "{}Contact: <sip:alice@{a}>\r\nProxy-Require: no-such-extension\r\nContent-Length: 0\r\n\r\n",
        head("INVITE", "")
    );
    alice.send_to(invite.as_bytes(), target).unwrap();
    let mut buf = [0u8; 4096];
    let n = alice.recv(&mut buf).unwrap();
    let answer = support::Response::parse(&String::from_utf8_lossy(&buf[..n])).unwrap();
    assert_eq!(answer.status, 420, "{}", answer.text);
    let to = answer.header("To").unwrap();
    let tag = to.split(";tag=").nth(1).unwrap().to_owned();
    let ack = format!(
        "{}Content-Length: 0\r\n\r\n",
        head("ACK", &format!(";tag={tag}"))
    );
    alice.send_to(ack.as_bytes(), target).unwrap();
    // Read without framing (above) or, with a folded To header, after
    // the full parse: absorbed either way.
    let folded = format!(
        "{}Content-Length: 0\r\n\r\n",
        head("ACK", &format!("\r\n ;tag={tag}"))
    );
    alice.send_to(folded.as_bytes(), target).unwrap();
    assert!(
        support::wait_until(std::time::Duration::from_secs(5), || {
            node.metric("voxline_sip_stateless_acks_absorbed_total", "") >= 2.0
        }),
        "the ACKs were not absorbed\n{}",
        node.log_text()
    );
    // Absorbed, so nothing reaches bob (a forwarded ACK would be on its way
    // by the time the counter moved).
    bob.set_nonblocking(true).unwrap();
    let mut got = String::new();
    if let Ok(n) = bob.recv(&mut buf) {
        got = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    assert!(!got.starts_with("ACK"), "the ACK reached bob:\n{got}");
}
