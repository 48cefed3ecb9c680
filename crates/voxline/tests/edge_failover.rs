//! `kill -9` of one registrar/proxy node behind the edge while users
//! register and call: nothing registered is lost (the location is in
//! Redis), the dead node's partitions are served by their backup, and calls
//! to its users succeed again quickly (the gap is measured and printed).

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::time::{Duration, Instant};

use support::{
    Node, SippProcess, call_through, completed, edge_node_config, fast_tempdir, free_udp_port,
    loadgen, partitions_toml, provision_db, register_through, registrar_node_config, scenario,
    wait_until,
};
use voxline_loadgen::engine::Shape;
use voxline_loadgen::uac::Scenario;
use voxline_location::testutil::RedisServer;
use voxline_partition::partition_of;

const USERS: u32 = 2_000;
const CALLEES: u32 = 20;
const PARTITIONS: u16 = 12;

fn user(i: u32) -> String {
    format!("u{i:08}@localhost")
}

/// reg1, reg2, reg3 own the partitions in thirds (support::partitions_toml).
fn owner_of(aor: &str) -> usize {
    usize::from(partition_of(aor, PARTITIONS) / (PARTITIONS / 3))
}

#[test]
fn kill_9_of_a_registrar_loses_no_binding_and_its_users_are_served_by_the_backup() {
    let redis = RedisServer::start().expect("redis-server");
    let shared = fast_tempdir();
    let db = shared.path().join("subscribers.db");
    provision_db(
        &db,
        (0..USERS)
            .map(user)
            .chain((0..CALLEES).map(|i| format!("c{i:08}@localhost")))
            .map(|u| {
                let name = u.split('@').next().unwrap().to_owned();
                (u, name)
            }),
    );
    let partitions = partitions_toml(PARTITIONS);
    let mut regs: Vec<Node> = (0..3)
        .map(|i| {
            Node::start(&registrar_node_config(
                &format!("reg{}", i + 1),
                &format!("127.0.0.{}", i + 2),
                &redis.url(),
                &db,
                &partitions,
            ))
        })
        .collect();
    let names = ["reg1", "reg2", "reg3"];
    let dests: Vec<(&str, std::net::SocketAddr)> = regs
        .iter()
        .zip(names)
        .map(|(n, name)| (name, n.sip_udp.unwrap()))
        .collect();
    let edge = Node::start(&edge_node_config("127.0.0.5", &dests, &partitions));
    let edge_addr = edge.sip_udp.unwrap();
    let dir = edge.dir.path().to_owned();

    // A user of reg2's partitions, reachable through a SIPp UAS; a caller
    // of another partition.
    const VICTIM: usize = 1;
    let watched = (0..USERS)
        .map(user)
        .find(|u| owner_of(u) == VICTIM)
        .unwrap();
    let caller = (0..USERS).map(user).find(|u| owner_of(u) == 0).unwrap();
    let uas_port = free_udp_port();
    register_through(&dir, edge_addr, &watched, uas_port);
    let uas = scenario("uas_answer.xml");
    let _callee = SippProcess::spawn(
        &dir,
        &[
            "-sf",
            uas.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-m",
            "1000",
        ],
    );
    let first = call_through(&dir, edge_addr, &caller, &watched);
    assert!(first.success, "call before the kill:\n{}", first.stderr);

    // Registration and call load through the edge.
    let registering = std::thread::spawn(move || {
        loadgen(Scenario::RegisterAuth, edge_addr, |c| {
            c.users = USERS;
            c.count = Some(u64::from(USERS));
            c.shape = Shape::Rate(150.0);
            c.duration = Duration::from_secs(60);
            c.expires = 3600;
        })
    });
    let calling = std::thread::spawn(move || {
        loadgen(Scenario::Call, edge_addr, |c| {
            c.users = USERS;
            c.callees = CALLEES;
            c.count = Some(120);
            c.shape = Shape::Rate(10.0);
            c.duration = Duration::from_secs(60);
            c.expires = 600;
        })
    });
    std::thread::sleep(Duration::from_secs(4));
    let before = regs[2].metric("voxline_partition_registers_total", "role=\"backup\"");
    regs[VICTIM].kill9();
    let killed = Instant::now();
    eprintln!("killed reg2 (-9) under load");

    // Calls to the dead node's user until one succeeds, then a few more.
    let mut first_ok = None;
    let mut failed = 0;
    let mut after_ok = 0;
    while killed.elapsed() < Duration::from_secs(12) && after_ok < 3 {
        let run = call_through(&dir, edge_addr, &caller, &watched);
        if run.success {
            first_ok.get_or_insert_with(|| killed.elapsed());
            after_ok += 1;
        } else {
            failed += 1;
            assert!(
                first_ok.is_none(),
                "a call failed after calls had recovered:\n{}",
                run.stderr
            );
        }
    }
    let gap = first_ok.expect("calls to the dead node's users never recovered");
    eprintln!(
        "calls to reg2's users: first success {:.0} ms after the kill ({failed} failed before)",
        gap.as_secs_f64() * 1000.0
    );
    assert!(gap < Duration::from_secs(5), "gap {gap:?}");

    let reg = registering.join().unwrap();
    let calls = calling.join().unwrap();
    eprintln!(
        "registrations under the kill: {} of {USERS} ok, replies {:?}; calls: {} of 120 ok, replies {:?}",
        completed(&reg),
        reg.replies,
        completed(&calls),
        calls.replies
    );
    // A REGISTER reg2 had stored in Redis but not yet answered is refused
    // by the backup as a CSeq repeat: the binding is there all the same.
    assert!(
        reg.flows_failed + reg.flows_timed_out <= 2,
        "registrations fail over: {reg:?}"
    );
    // Calls set up through reg2 before the kill lose their BYE (reg2
    // Record-Routed them); new calls fail over.
    assert!(completed(&calls) >= 110, "calls fail over: {calls:?}");

    // Nothing is lost: every user (and callee, and the watched UAS) has its
    // binding, readable from the surviving nodes.
    let expected = u64::from(USERS + CALLEES);
    let mut aors = 0;
    assert!(
        wait_until(Duration::from_secs(5), || {
            let s: serde_json::Value =
                serde_json::from_str(&regs[0].admin_get("/api/v1/stats")).unwrap();
            aors = s["location"]["aors"].as_u64().unwrap_or(0);
            aors == expected
        }),
        "{aors} of {expected} AORs in the location"
    );
    // reg3 backs up reg2's partitions: it served them.
    let after = regs[2].metric("voxline_partition_registers_total", "role=\"backup\"");
    assert!(after > before, "the backup served the dead node's users");
    // The edge shows reg2 inactive.
    let d: serde_json::Value = serde_json::from_str(&edge.admin_get("/api/v1/dispatcher")).unwrap();
    assert_eq!(
        d["edge"]["sets"][0]["destinations"][1]["state"], "inactive",
        "{d}"
    );
    assert!(edge.metric("voxline_edge_failovers_total", "") > 0.0);
    assert_eq!(
        edge.metric(
            "voxline_dispatcher_destination_state",
            "destination=\"reg2\",state=\"inactive\""
        ) + edge.metric(
            "voxline_dispatcher_destination_state",
            "state=\"inactive\",destination=\"reg2\""
        ),
        1.0
    );
}
