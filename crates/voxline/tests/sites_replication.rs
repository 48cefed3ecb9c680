//! Two active-active sites, each complete (edge, registrar/proxy node,
//! Redis), replicating user location to each other: what is registered,
//! refreshed or removed at site A is seen at site B, and a call entering B
//! reaches a user registered at A through A's edge (the binding's Path).

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::time::{Duration, Instant};

use support::{
    SippProcess, call_with_failover, free_udp_port, injection, register_through, scenario, sipp,
    two_sites, wait_until,
};

/// Polls every 10 ms; the time it took, or None after `limit`.
fn time_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn links_up(site: &support::Site) -> bool {
    let s = site.replication_status();
    s["peers"][0]["state"] == "up" && s["peers"][0]["resyncing"] == false
}

#[test]
fn a_registration_at_a_is_seen_at_b_and_b_calls_the_user_through_a() {
    let users: Vec<String> = ["alice@localhost", "bob@localhost"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (a, b) = two_sites(&users);
    assert!(
        wait_until(Duration::from_secs(10), || links_up(&a) && links_up(&b)),
        "links up: {}\n{}",
        a.replication_status(),
        b.replication_status()
    );
    let dir = a.edge.dir.path();
    let port = free_udp_port();

    // Registration at A (through A's edge) appears at B.
    register_through(dir, a.edge_addr(), "alice@localhost", port);
    let lag = time_until(Duration::from_secs(5), || {
        !b.bindings_of("alice@localhost").is_empty()
    })
    .unwrap_or_else(|| panic!("not replicated:\n{}", b.replication_status()));
    let at_a = a.bindings_of("alice@localhost");
    let at_b = b.bindings_of("alice@localhost");
    for field in ["contact", "call_id", "cseq", "path", "source"] {
        assert_eq!(at_a[0][field], at_b[0][field], "{field} differs");
    }
    let path = at_b[0]["path"][0].as_str().unwrap();
    assert!(
        path.contains(&a.edge_addr().to_string()),
        "B routes to alice through A's edge: {path}"
    );
    eprintln!("registration at A visible at B {lag:?} after the 200 OK");

    // A call entering B (bob through B's edge) reaches alice through A's
    // edge.
    let uas = scenario("uas_answer.xml");
    let callee = SippProcess::spawn(
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
    let call = call_with_failover(
        dir,
        "127.0.0.1",
        "bob@localhost",
        "alice@localhost",
        b.edge_addr(),
        b.edge_addr(),
        5000,
    )
    .wait();
    let answered = callee.wait();
    assert!(
        call.success && answered.success,
        "call B -> alice at A:\n{}\n{}\n{}\n--- reg-b ---\n{}",
        call.stdout,
        call.stderr,
        answered.stderr,
        b.reg.log_text()
    );
    // INVITE and BYE went from B's proxy to alice through A's edge (the
    // ACK too, but the edge forwards it without counting).
    let to_client = a
        .edge
        .metric("voxline_edge_requests_total", "direction=\"to-client\"");
    assert!(to_client >= 2.0, "A's edge carried the call ({to_client})");

    // Refresh at A (a new Call-ID from the same phone): B follows.
    let before = at_b[0]["call_id"].clone();
    register_through(dir, a.edge_addr(), "alice@localhost", port);
    let new_call_id = a.bindings_of("alice@localhost")[0]["call_id"].clone();
    assert_ne!(new_call_id, before);
    let lag = time_until(Duration::from_secs(5), || {
        b.bindings_of("alice@localhost")
            .first()
            .is_some_and(|x| x["call_id"] == new_call_id)
    })
    .expect("refresh replicated");
    assert_eq!(
        b.bindings_of("alice@localhost").len(),
        1,
        "replaced, not added"
    );
    eprintln!("refresh at A visible at B after {lag:?}");

    // Removal at A (Contact: *, Expires: 0): gone at B too.
    let inf = injection(
        dir,
        "unreg-alice.csv",
        &["alice;localhost;[authentication username=alice password=alice]".into()],
    );
    let sf = scenario("unregister_all.xml");
    let run = sipp(
        dir,
        &[
            "-sf",
            sf.to_str().unwrap(),
            "-inf",
            inf.to_str().unwrap(),
            &a.edge_addr().to_string(),
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
        ],
    );
    assert!(run.success, "unregister:\n{}\n{}", run.stdout, run.stderr);
    let lag = time_until(Duration::from_secs(5), || {
        b.bindings_of("alice@localhost").is_empty()
    })
    .expect("removal replicated");
    eprintln!("removal at A visible at B after {lag:?}");

    // Nothing came back: A applied nothing from B, B applied A's changes.
    let sa = a.replication_status();
    let sb = b.replication_status();
    assert_eq!(sa["inbound"][0]["applied"], 0, "{sa}");
    assert!(sb["inbound"][0]["applied"].as_u64().unwrap() >= 3, "{sb}");
    assert_eq!(
        sb["journal"]["last_seq"], 0,
        "B journals only its own changes"
    );
    assert!(
        b.reg
            .metric("voxline_replication_received_total", "result=\"applied\"")
            >= 3.0
    );
}
