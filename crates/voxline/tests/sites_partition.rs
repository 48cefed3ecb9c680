//! Partition between the sites: the replication link is cut (admin API,
//! both sites keep running and serving), bindings change on both sides —
//! removals, refreshes, new users, the same binding re-registered at both
//! sites — and after the heal both sites hold the same bindings: none lost,
//! none resurrected. Reports the convergence time after the heal.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::time::{Duration, Instant};

use support::{Site, register_contact, two_sites, wait_until};

fn user(i: usize) -> String {
    format!("p{i}@localhost")
}

fn contact(i: usize) -> String {
    format!("sip:p{i}@127.0.0.1:{}", 20000 + i)
}

fn register(site: &Site, i: usize, expires: u32) {
    let status = register_contact(site.edge_addr(), &user(i), &contact(i), expires);
    assert_eq!(
        status, 200,
        "REGISTER p{i} at site {} (expires {expires})",
        site.name
    );
}

fn aors(site: &Site) -> Vec<String> {
    site.listing().into_iter().map(|(aor, _)| aor).collect()
}

#[test]
fn after_a_partition_both_sites_converge_without_lost_or_resurrected_bindings() {
    let users: Vec<String> = (0..30).map(user).collect();
    let (a, b) = two_sites(&users);
    // p0..p9 register at A, p10..p19 at B, p6 also later at both.
    for i in 0..10 {
        register(&a, i, 600);
    }
    for i in 10..20 {
        register(&b, i, 600);
    }
    assert!(
        wait_until(Duration::from_secs(10), || a.listing().len() == 20
            && a.listing() == b.listing()),
        "initial replication:\n{:?}\n{:?}",
        a.listing(),
        b.listing()
    );

    // Cut the link at A: A neither sends to B nor accepts B's changes.
    let cut = a.admin_post(
        "/api/v1/replication/block",
        r#"{"peer":"b","blocked":true}"#,
    );
    assert!(cut.contains("\"blocked\":true"), "{cut}");
    assert_eq!(a.replication_status()["peers"][0]["state"], "blocked");

    // Changes on both sides while cut.
    for i in 0..3 {
        register(&a, i, 0); // removed at A
    }
    for i in 3..5 {
        register(&a, i, 900); // refreshed at A
    }
    for i in 20..23 {
        register(&a, i, 600); // new at A
    }
    for i in 10..13 {
        register(&b, i, 0); // removed at B
    }
    for i in 23..26 {
        register(&b, i, 600); // new at B
    }
    // p5 (registered at A) gets a second phone at B.
    let second = "sip:p5@127.0.0.1:29995";
    assert_eq!(register_contact(b.edge_addr(), &user(5), second, 600), 200);
    // p6's phone re-registers at A, then (later) at B: B's write is newer.
    register(&a, 6, 600);
    std::thread::sleep(Duration::from_millis(5)); // distinct registration times
    register(&b, 6, 700);
    let p6_at_b = b.bindings_of(&user(6))[0]["call_id"].clone();

    // The sites really are apart.
    assert!(
        wait_until(Duration::from_secs(5), || {
            b.replication_status()["peers"][0]["state"] == "down"
        }),
        "B's link is refused by A: {}",
        b.replication_status()
    );
    assert!(
        aors(&b).contains(&user(0)),
        "B did not hear of A's removals"
    );
    assert!(!aors(&a).contains(&user(23)), "A did not hear of B's users");
    assert_ne!(a.listing(), b.listing());

    // Heal.
    let healed = Instant::now();
    a.admin_post(
        "/api/v1/replication/block",
        r#"{"peer":"b","blocked":false}"#,
    );
    let converged = wait_until(Duration::from_secs(20), || a.listing() == b.listing());
    let took = healed.elapsed();
    assert!(
        converged,
        "no convergence:\n{:?}\n{:?}\n{}\n{}",
        a.listing(),
        b.listing(),
        a.replication_status(),
        b.replication_status()
    );

    let list = a.listing();
    let present: Vec<&str> = list.iter().map(|(aor, _)| aor.as_str()).collect();
    for i in (0..3).chain(10..13) {
        assert!(
            !present.contains(&user(i).as_str()),
            "p{i} was removed but is back"
        );
    }
    for i in (3..10).chain(13..26) {
        assert!(present.contains(&user(i).as_str()), "p{i} was lost");
    }
    assert_eq!(present.len(), 20, "{present:?}");
    assert_eq!(a.bindings_of(&user(5)).len(), 2, "both of p5's phones");
    let p6 = a.bindings_of(&user(6));
    assert_eq!(p6.len(), 1);
    assert_eq!(
        p6[0]["call_id"], p6_at_b,
        "the newer write wins at both sites"
    );
    let refreshed = b.bindings_of(&user(3));
    assert!(
        refreshed[0]["expires_in"].as_u64().unwrap() > 600,
        "A's refresh reached B"
    );
    eprintln!("partition healed: both sites equal after {took:?}");
}
