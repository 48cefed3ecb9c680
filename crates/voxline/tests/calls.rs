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
