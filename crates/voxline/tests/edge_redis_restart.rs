//! Redis (with an fsynced append-only file) is killed and restarted while
//! users register through the edge: while it is down REGISTER gets 503
//! with Retry-After end to end; the nodes reconnect by themselves; nothing
//! that was acknowledged with 200 OK is lost.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{
    AofRedis, Node, completed, edge_node_config, fast_tempdir, loadgen, partitions_toml,
    provision_db, register_once, registrar_node_config, wait_until,
};
use voxline_loadgen::engine::Shape;
use voxline_loadgen::uac::Scenario;

const USERS: u32 = 1_500;
const EXTRA: u32 = 20;

fn user(i: u32) -> String {
    format!("u{i:08}@localhost")
}

fn aors(node: &Node) -> u64 {
    let s: serde_json::Value = serde_json::from_str(&node.admin_get("/api/v1/stats")).unwrap();
    s["location"]["aors"].as_u64().unwrap_or(0)
}

#[test]
fn redis_restart_under_load_loses_nothing_acknowledged() {
    let mut redis = AofRedis::start();
    let shared = fast_tempdir();
    let db = shared.path().join("subscribers.db");
    provision_db(
        &db,
        (0..USERS + EXTRA).map(|i| {
            let u = user(i);
            let name = u.split('@').next().unwrap().to_owned();
            (u, name)
        }),
    );
    let partitions = partitions_toml(12);
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
    let names = ["reg1", "reg2", "reg3"];
    let dests: Vec<(&str, SocketAddr)> = regs
        .iter()
        .zip(names)
        .map(|(n, name)| (name, n.sip_udp.unwrap()))
        .collect();
    let edge = Node::start(&edge_node_config("127.0.0.5", &dests, &partitions));
    let edge_addr = edge.sip_udp.unwrap();
    let mut extra = 0..EXTRA;
    let mut next_extra =
        || user(USERS + extra.next().expect("extra users")).replace("@localhost", "");
    let mut extra_ok = 0;
    assert_eq!(register_once(edge_addr, &next_extra()).0, 200);
    extra_ok += 1;

    let load = std::thread::spawn(move || {
        loadgen(Scenario::RegisterAuth, edge_addr, |c| {
            c.users = USERS;
            c.count = Some(u64::from(USERS));
            c.shape = Shape::Rate(100.0);
            c.duration = Duration::from_secs(60);
            c.expires = 3600;
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    redis.kill9();
    let down = Instant::now();
    // While Redis is down: 503 with Retry-After, through the edge.
    let (status, retry) = register_once(edge_addr, &next_extra());
    assert_eq!(status, 503, "REGISTER while Redis is down");
    let retry: u32 = retry.expect("Retry-After").trim().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    std::thread::sleep(Duration::from_secs(2).saturating_sub(down.elapsed()));
    redis.start_again();
    let up = Instant::now();
    // The nodes reconnect by themselves.
    let mut recovered = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            let ok = register_once(edge_addr, &next_extra()).0 == 200;
            if ok {
                recovered = Some(up.elapsed());
            }
            ok
        }),
        "registrations work again after Redis is back"
    );
    extra_ok += 1;
    eprintln!(
        "Redis down for {:?}; first REGISTER accepted {:?} after it was back",
        up - down,
        recovered.unwrap()
    );
    let report = load.join().unwrap();
    eprintln!(
        "load through the outage: {} of {USERS} acknowledged, replies {:?}",
        completed(&report),
        report.replies
    );
    assert!(
        report.replies.get(&503).copied().unwrap_or(0) > 0,
        "the outage was seen under load: {:?}",
        report.replies
    );
    // Every acknowledged registration is in Redis (a few refused with 503
    // may have been stored too, before the connection broke).
    let stored = aors(&regs[0]);
    let acked = completed(&report) + extra_ok;
    assert!(
        stored >= acked,
        "{stored} AORs stored, {acked} registrations acknowledged"
    );
    assert!(stored <= u64::from(USERS) + u64::from(EXTRA));
    // Refreshing everyone now works without any node restart.
    let again = loadgen(Scenario::RegisterAuth, edge_addr, |c| {
        c.users = USERS;
        c.count = Some(u64::from(USERS));
        c.shape = Shape::Concurrency(50);
        c.duration = Duration::from_secs(120);
        c.expires = 3600;
    });
    assert_eq!(completed(&again), u64::from(USERS), "{again:?}");
    assert_eq!(aors(&regs[1]), u64::from(USERS) + extra_ok);
}
