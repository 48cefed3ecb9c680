//! One edge in front of three registrar/proxy nodes that share location in
//! a real Redis: 10,000 users register through the edge with digest auth,
//! each user's REGISTERs are served by the primary of its partition, and
//! calls between users pass edge → owner of the callee → edge → callee.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::time::{Duration, Instant};

use support::{
    Node, SippProcess, call_through, completed, edge_node_config, fast_tempdir, free_udp_port,
    loadgen, partitions_toml, provision_db, register_through, registrar_node_config, scenario,
};
use voxline_loadgen::engine::Shape;
use voxline_loadgen::uac::Scenario;
use voxline_location::testutil::RedisServer;
use voxline_partition::partition_of;

const USERS: u32 = 10_000;
const CALLEES: u32 = 50;
const PARTITIONS: u16 = 12;

fn user(i: u32) -> String {
    format!("u{i:08}@localhost")
}

fn owner_of(aor: &str) -> usize {
    // partitions_toml: thirds of the partitions to reg1, reg2, reg3.
    usize::from(partition_of(aor, PARTITIONS) / (PARTITIONS / 3))
}

#[test]
fn ten_thousand_users_register_through_the_edge_and_call_each_other() {
    let started = Instant::now();
    let redis = RedisServer::start().expect("redis-server");
    let shared = fast_tempdir();
    let db = shared.path().join("subscribers.db");
    let t = Instant::now();
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
    eprintln!(
        "provisioned {} subscribers in {:?}",
        USERS + CALLEES,
        t.elapsed()
    );
    let partitions = partitions_toml(PARTITIONS);
    let regs: Vec<Node> = (0..3)
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
    let dests: Vec<(String, std::net::SocketAddr)> = regs
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("reg{}", i + 1), n.sip_udp.unwrap()))
        .collect();
    let dest_refs: Vec<(&str, std::net::SocketAddr)> =
        dests.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    // Generous timers: under load on a busy machine a slow answer must not
    // count as a dead node (that is edge_failover's subject).
    let edge = Node::start(
        &edge_node_config("127.0.0.5", &dest_refs, &partitions)
            .replace("failover_timeout_ms = 500", "failover_timeout_ms = 5000")
            .replace("probe_timeout_ms = 250", "probe_timeout_ms = 3000")
            .replace("down_threshold = 2", "down_threshold = 3"),
    );
    let edge_addr = edge.sip_udp.unwrap();

    // 10,000 users register with digest auth through the edge.
    let t = Instant::now();
    let report = loadgen(Scenario::RegisterAuth, edge_addr, |c| {
        c.users = USERS;
        c.count = Some(u64::from(USERS));
        c.duration = Duration::from_secs(180);
        c.shape = Shape::Concurrency(100);
        c.expires = 3600;
    });
    let took = t.elapsed();
    eprintln!(
        "registered {} users through the edge in {took:?} ({:.0}/s); replies {:?}, retransmissions {}",
        completed(&report),
        completed(&report) as f64 / took.as_secs_f64(),
        report.replies,
        report.retransmissions
    );
    assert_eq!(
        completed(&report),
        u64::from(USERS),
        "every registration succeeds: {report:?}\n--- edge log ---\n{}",
        edge.log_text()
    );
    assert_eq!(report.flows_failed + report.flows_timed_out, 0);

    // Each REGISTER was served by the primary of the user's partition.
    let mut served = 0.0;
    for (i, n) in regs.iter().enumerate() {
        let primary = n.metric("voxline_partition_registers_total", "role=\"primary\"");
        let other = n.metric("voxline_partition_registers_total", "role=\"backup\"")
            + n.metric("voxline_partition_registers_total", "role=\"none\"");
        eprintln!(
            "reg{}: {primary} REGISTERs as primary, {other} otherwise",
            i + 1
        );
        assert!(primary > 0.0, "reg{} served its partitions", i + 1);
        assert_eq!(other, 0.0, "reg{} served only its own partitions", i + 1);
        served += primary;
    }
    // Two REGISTERs per user (challenge, then credentials).
    assert_eq!(served, f64::from(2 * USERS));

    // Every binding is in the shared location, with the edge's Path.
    let stats: serde_json::Value =
        serde_json::from_str(&regs[0].admin_get("/api/v1/stats")).unwrap();
    assert_eq!(stats["location"]["aors"], u64::from(USERS), "{stats}");
    for i in (0..USERS).step_by(997) {
        let aor = user(i);
        // Ask a node that does not own the user: the location is shared.
        let other = &regs[(owner_of(&aor) + 1) % 3];
        let v: serde_json::Value =
            serde_json::from_str(&other.admin_get(&format!("/api/v1/registrations?aor={aor}")))
                .unwrap();
        let path = v["bindings"][0]["path"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            path.contains("vxf") && path.contains(&edge_addr.to_string()),
            "binding of {aor} has the edge's Path with a flow token: {v}"
        );
    }

    // Calls: the generator registers callees through the edge and answers
    // them; callers authenticate (407) on the callee's partition owner.
    let t = Instant::now();
    let calls = loadgen(Scenario::Call, edge_addr, |c| {
        c.users = USERS;
        c.callees = CALLEES;
        c.count = Some(300);
        c.duration = Duration::from_secs(120);
        c.shape = Shape::Concurrency(20);
        c.expires = 600;
    });
    eprintln!(
        "{} of 300 calls through the edge in {:?}; replies {:?}",
        completed(&calls),
        t.elapsed(),
        calls.replies
    );
    assert_eq!(completed(&calls), 300, "{calls:?}");
    assert_eq!(calls.uas_ack_timeouts, 0, "every 200 OK got its ACK");

    // And SIPp between random users: the callee registers from the port its
    // UAS listens on; the call crosses edge → owner → edge → callee.
    let dir = edge.dir.path();
    let mut rng = std::collections::hash_map::RandomState::new();
    for round in 0..3 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = rng.build_hasher();
        h.write_u32(round);
        let r = h.finish();
        let caller = user((r % u64::from(USERS)) as u32);
        let callee = user(((r >> 32) % u64::from(USERS)) as u32);
        if caller == callee {
            continue;
        }
        let port = free_udp_port();
        register_through(dir, edge_addr, &callee, port);
        let uas = scenario("uas_answer.xml");
        let callee_side = SippProcess::spawn(
            dir,
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
        let run = call_through(dir, edge_addr, &caller, &callee);
        let callee_run = callee_side.wait();
        assert!(
            run.success && callee_run.success,
            "call {caller} -> {callee}:\n{}\n{}\n{}\n--- edge ---\n{}",
            run.stdout,
            run.stderr,
            callee_run.stderr,
            edge.log_text()
        );
        rng = std::collections::hash_map::RandomState::new();
    }

    // The edge shows its destinations, all active.
    let d: serde_json::Value = serde_json::from_str(&edge.admin_get("/api/v1/dispatcher")).unwrap();
    let states: Vec<&str> = d["edge"]["sets"][0]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["active"; 3], "{d}");
    assert_eq!(d["edge"]["sets"][0]["partitions"], PARTITIONS);
    assert!(
        edge.metric("voxline_dispatcher_probes_total", "result=\"ok\"") > 0.0,
        "destinations are probed"
    );
    let p: serde_json::Value =
        serde_json::from_str(&regs[1].admin_get("/api/v1/dispatcher")).unwrap();
    assert_eq!(
        p["partitions"]["primary"],
        serde_json::json!([4, 5, 6, 7]),
        "{p}"
    );
    eprintln!("whole test took {:?}", started.elapsed());
}
