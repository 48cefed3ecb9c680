//! Site failure: every process of site A (edge, registrar/proxy node,
//! Redis) is killed with SIGKILL while users of both sites call each other.
//! The phones fail over by themselves (a REGISTER refresh unanswered for
//! 1 s sends them to site B), callers' outbound proxies fail over the same
//! way, and calls between users work again once A's users re-registered at
//! B. Reports the time from the kill until A's users are registered at B
//! and until every call started from then on succeeds.

#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod support;

use std::time::{Duration, Instant};

use support::{Phones, Site, call_with_failover, two_sites, wait_until};

const PER_SITE: usize = 3;
/// Phones refresh their registration this often, ms.
const REFRESH_MS: u64 = 1000;
/// Calls are placed for this long after the kill.
const WINDOW: Duration = Duration::from_secs(8);

fn users(prefix: &str) -> Vec<String> {
    (0..PER_SITE)
        .map(|i| format!("{prefix}{i}@localhost"))
        .collect()
}

/// One round: every user of each site calls its counterpart at the other
/// site, all at once. Returns (succeeded, total, what the failed calls
/// said).
fn round(dir: &std::path::Path, b: &Site, a_edge: std::net::SocketAddr) -> (usize, usize, String) {
    let b_edge = b.edge_addr();
    let mut calls = Vec::new();
    for i in 0..PER_SITE {
        let (ai, bi) = (format!("a{i}@localhost"), format!("b{i}@localhost"));
        // A's users call through A first, B's users through B first.
        calls.push(call_with_failover(
            dir,
            "127.0.0.43",
            &ai,
            &bi,
            a_edge,
            b_edge,
            3000,
        ));
        calls.push(call_with_failover(
            dir,
            "127.0.0.44",
            &bi,
            &ai,
            b_edge,
            a_edge,
            3000,
        ));
    }
    let total = calls.len();
    let runs: Vec<support::SippRun> = calls.into_iter().map(support::SippProcess::wait).collect();
    let ok = runs.iter().filter(|r| r.success).count();
    let failures = runs
        .iter()
        .filter(|r| !r.success)
        .map(|r| r.stderr.clone())
        .collect::<Vec<_>>()
        .join("\n----\n");
    (ok, total, failures)
}

#[test]
fn after_site_a_is_killed_its_users_fail_over_to_b_and_calls_work_again() {
    let all: Vec<String> = users("a").into_iter().chain(users("b")).collect();
    let (mut a, b) = two_sites(&all);
    let dir = b.edge.dir.path().to_path_buf();
    let a_edge = a.edge_addr();
    let b_edge = b.edge_addr();
    let phones_a = Phones::start(&dir, "127.0.0.41", &users("a"), a_edge, b_edge, REFRESH_MS);
    let phones_b = Phones::start(&dir, "127.0.0.42", &users("b"), b_edge, a_edge, REFRESH_MS);
    // Every user is registered at its site and replicated to the other.
    assert!(
        wait_until(Duration::from_secs(15), || {
            all.iter()
                .all(|u| !a.bindings_of(u).is_empty() && !b.bindings_of(u).is_empty())
        }),
        "registrations at both sites:\n{}\n{}\n--- phones ---\n{}\n{}",
        a.reg.admin_get("/api/v1/registrations"),
        b.reg.admin_get("/api/v1/registrations"),
        phones_a.log_text(),
        phones_b.log_text()
    );
    let path = b.bindings_of("a0@localhost")[0]["path"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        path.contains(&a_edge.to_string()),
        "a0 is reached through A's edge: {path}"
    );

    // Before the failure every call succeeds.
    let (ok, total, failures) = round(&dir, &b, a_edge);
    assert_eq!(
        ok,
        total,
        "calls before the failure:\n{failures}\n--- reg-a ---\n{}\n--- reg-b ---\n{}",
        a.reg.log_text(),
        b.reg.log_text()
    );

    // Site A dies: edge, registrar node and Redis, all with SIGKILL. From
    // then on, every 250 ms one user of each site calls one of the other
    // (round robin), for WINDOW.
    let killed = Instant::now();
    a.kill9();
    let rereg = std::thread::scope(|scope| {
        // When did A's users show up at B through B's edge?
        let watcher = scope.spawn(|| {
            let deadline = Duration::from_secs(20);
            while killed.elapsed() < deadline {
                let moved = users("a").iter().all(|u| {
                    b.bindings_of(u).first().is_some_and(|x| {
                        x["path"][0]
                            .as_str()
                            .is_some_and(|p| p.contains(&b_edge.to_string()))
                    })
                });
                if moved {
                    return Some(killed.elapsed());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        });
        let mut calls = Vec::new();
        let mut tick = 0;
        while killed.elapsed() < WINDOW {
            let at = killed.elapsed();
            let i = tick % PER_SITE;
            let (ai, bi) = (format!("a{i}@localhost"), format!("b{i}@localhost"));
            let from_a = call_with_failover(&dir, "127.0.0.43", &ai, &bi, a_edge, b_edge, 2000);
            let from_b = call_with_failover(&dir, "127.0.0.44", &bi, &ai, b_edge, a_edge, 2000);
            calls.push((at, "a->b", scope.spawn(move || from_a.wait())));
            calls.push((at, "b->a", scope.spawn(move || from_b.wait())));
            tick += 1;
            std::thread::sleep(Duration::from_millis(250));
        }
        let results: Vec<(Duration, &str, support::SippRun)> = calls
            .into_iter()
            .map(|(at, dir, h)| (at, dir, h.join().unwrap()))
            .collect();
        (watcher.join().unwrap(), results)
    });
    let (reregistered, results) = rereg;
    let failed: Vec<(Duration, &str)> = results
        .iter()
        .filter(|(_, _, r)| !r.success)
        .map(|(at, d, _)| (*at, *d))
        .collect();
    for (at, d) in &failed {
        eprintln!("call {d} started at +{at:.2?} failed");
    }
    // 100 % again from the first call started after the last failure.
    let last_failure = failed.iter().map(|(at, _)| *at).max();
    let recovered = results
        .iter()
        .map(|(at, _, _)| *at)
        .filter(|at| last_failure.is_none_or(|f| *at > f))
        .min();
    let after: usize = results
        .iter()
        .filter(|(at, _, _)| recovered.is_some_and(|r| *at >= r))
        .count();
    let Some(recovered) = recovered.filter(|_| after >= 8) else {
        panic!(
            "calls did not recover within {WINDOW:?}: failed {failed:?}\n--- phones a ---\n{}\n--- reg-b ---\n{}",
            phones_a.log_text(),
            b.reg.log_text()
        );
    };
    let reregistered = reregistered.expect("A's users re-registered at B");
    // A's users are registered at B now, through B's edge.
    for u in users("a") {
        let bindings = b.bindings_of(&u);
        assert_eq!(bindings.len(), 1, "{u}: {bindings:?}");
        let path = bindings[0]["path"][0].as_str().unwrap();
        assert!(
            path.contains(&b_edge.to_string()),
            "{u} through B's edge: {path}"
        );
    }
    assert!(
        phones_a.logged("fails over") >= PER_SITE,
        "{}",
        phones_a.log_text()
    );
    assert_eq!(phones_b.logged("fails over"), 0, "B's phones stayed");
    eprintln!(
        "site A killed: A's users re-registered at B after {reregistered:.2?}; every call started from +{recovered:.2?} on succeeded ({after} calls, {} of {} failed before; phones refresh every {REFRESH_MS} ms, 1 s REGISTER timeout)",
        failed.len(),
        results.len()
    );
}
