//! The shared semantic suite against real Redis: a standalone server per
//! test, and one 3-master Redis Cluster running every case; plus outage and
//! recovery behaviour. Needs `redis-server` and `redis-cli` on PATH.
#![allow(clippy::unwrap_used)]

mod suite;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voxline_location::testutil::{RedisCluster, RedisServer};
use voxline_location::*;

type Made = Pin<Box<dyn Future<Output = (LocationStore, suite::Guard)> + Send>>;

fn options(nodes: Vec<String>, cluster: bool, limits: Limits, prefix: String) -> RedisOptions {
    RedisOptions {
        nodes,
        cluster,
        key_prefix: prefix,
        command_timeout: Duration::from_millis(1000),
        limits,
        ..RedisOptions::default()
    }
}

mod standalone {
    use super::*;

    fn factory(limits: Limits) -> Made {
        Box::pin(async move {
            let server = tokio::task::spawn_blocking(RedisServer::start)
                .await
                .unwrap()
                .unwrap();
            let store = RedisStore::new(options(vec![server.url()], false, limits, "t:loc".into()))
                .unwrap();
            (
                LocationStore::Redis(Arc::new(store)),
                Box::new(server) as suite::Guard,
            )
        })
    }

    location_suite!(factory);
}

static CLUSTER_NODES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static PREFIX: AtomicU64 = AtomicU64::new(0);

fn cluster_factory(limits: Limits) -> Made {
    Box::pin(async move {
        let nodes = CLUSTER_NODES.lock().unwrap().clone();
        // A fresh key space per store on the shared cluster.
        let prefix = format!("c{}:loc", PREFIX.fetch_add(1, Ordering::Relaxed));
        let store = RedisStore::new(options(nodes, true, limits, prefix)).unwrap();
        (
            LocationStore::Redis(Arc::new(store)),
            Box::new(()) as suite::Guard,
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_runs_the_whole_suite() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap()
        .unwrap();
    *CLUSTER_NODES.lock().unwrap() = cluster.node_urls();
    // The URL form parses to the same nodes.
    let cfg = LocationConfig {
        backend: cluster.url(),
        ..LocationConfig::default()
    };
    assert_eq!(
        cfg.backend_kind().unwrap(),
        BackendKind::Redis {
            nodes: cluster.node_urls(),
            cluster: true
        }
    );
    suite::run_all(cluster_factory).await;
    // AORs really are spread over the three masters.
    let (store, _) = cluster_factory(Limits::default()).await;
    let t = suite::now();
    for i in 0..30 {
        let u = suite::update(
            "c",
            1,
            vec![suite::contact(&format!("sip:s{i}@10.0.0.1"), 600, 1000)],
        );
        store
            .apply(&format!("spread{i}@example.com"), &u, t)
            .await
            .unwrap();
    }
    let mut cluster = cluster;
    let with_keys = cluster
        .nodes()
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).unwrap().trim().parse::<u64>().unwrap() > 0)
        .count();
    assert_eq!(with_keys, 3);
    assert_eq!(store.count(t).await.unwrap().aors, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_carry_ttls_and_nothing_is_left_behind() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap()
        .unwrap();
    let mut opts = options(
        vec![server.url()],
        false,
        Limits::default(),
        "ttl:loc".into(),
    );
    opts.expiry_grace = Duration::from_secs(5);
    let store = LocationStore::Redis(Arc::new(RedisStore::new(opts).unwrap()));
    let t = Timestamp::now();
    let u = suite::update(
        "c",
        1,
        vec![
            suite::contact("sip:t@10.0.0.1", 60, 1000),
            suite::contact("sip:t@10.0.0.2", 120, 1000),
        ],
    );
    store.apply("ttl@example.com", &u, t).await.unwrap();
    let pttl: i64 = server
        .cli(&["PTTL", "ttl:loc:{ttl@example.com}"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Latest binding (120 s) + grace (5 s), minus the time since `t`.
    assert!((120_000..=125_000).contains(&pttl), "pttl {pttl}");
    // The expiry index holds the earliest expiry.
    let keys = server.cli(&["KEYS", "ttl:loc:exp:*"]).unwrap();
    assert_eq!(keys.lines().count(), 1, "{keys}");
    // Removing everything leaves only a short-lived tombstone key, with a TTL.
    let mut star = suite::update("c", 2, vec![]);
    star.contacts = Contacts::RemoveAll;
    store.apply("ttl@example.com", &star, t).await.unwrap();
    let pttl: i64 = server
        .cli(&["PTTL", "ttl:loc:{ttl@example.com}"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pttl > 0 && pttl <= 125_000, "pttl {pttl}");
    // Once past every expiry, the expiry run cleans the index.
    store.expire(t.add_secs(200)).await.unwrap();
    assert_eq!(server.cli(&["KEYS", "ttl:loc:exp:*"]).unwrap().trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_one_aor_lose_nothing() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap()
        .unwrap();
    let t = suite::now();
    let mut tasks = Vec::new();
    // Three independent stores (as on three nodes), 20 contacts each, all
    // on the same AOR at once.
    for node in 0..3 {
        let store = RedisStore::new(options(
            vec![server.url()],
            false,
            Limits::default(),
            "cc:loc".into(),
        ))
        .unwrap();
        let store = Arc::new(store);
        for i in 0..20 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let u = suite::update(
                    &format!("n{node}-{i}"),
                    1,
                    vec![suite::contact(
                        &format!("sip:n{node}x{i}@10.0.0.1"),
                        600,
                        1000,
                    )],
                );
                store.apply("busy@example.com", &u, t).await.unwrap();
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let store = RedisStore::new(options(
        vec![server.url()],
        false,
        Limits::default(),
        "cc:loc".into(),
    ))
    .unwrap();
    assert_eq!(store.lookup("busy@example.com", t).await.unwrap().len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_unavailable_quickly_and_recovers_after_restart() {
    let mut server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap()
        .unwrap();
    let mut opts = options(
        vec![server.url()],
        false,
        Limits::default(),
        "down:loc".into(),
    );
    opts.command_timeout = Duration::from_millis(300);
    let store = LocationStore::Redis(Arc::new(RedisStore::new(opts).unwrap()));
    let t = suite::now();
    let u = |cseq| suite::update("c", cseq, vec![suite::contact("sip:d@10.0.0.1", 600, 1000)]);
    store.apply("d@example.com", &u(1), t).await.unwrap();

    server.stop();
    for cseq in 2..6 {
        let started = Instant::now();
        let e = store.apply("d@example.com", &u(cseq), t).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, LocationError::Unavailable(_)), "{e:?}");
        assert!(took < Duration::from_millis(700), "failing took {took:?}");
        let e = store.lookup("d@example.com", t).await.unwrap_err();
        assert!(matches!(e, LocationError::Unavailable(_)), "{e:?}");
    }

    // Same store object; Redis back on the same port (empty: no persistence).
    let server = tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    })
    .await
    .unwrap();
    let started = Instant::now();
    let mut failures = 0;
    for cseq in 10..60 {
        match store.apply("d@example.com", &u(cseq), t).await {
            Ok(a) => {
                assert_eq!(a.bindings.len(), 1);
                break;
            }
            // The manager reconnects in the background; an attempt made
            // before that completes fails fast (bounded by the timeout).
            Err(LocationError::Unavailable(_)) => failures += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    // Reads are resent once on a re-made connection, so the first REGISTER
    // after the restart already succeeds.
    assert_eq!(failures, 0, "REGISTERs failed after Redis was back");
    eprintln!(
        "recovered after {failures} failed attempts in {:?}",
        started.elapsed()
    );
    assert_eq!(store.lookup("d@example.com", t).await.unwrap().len(), 1);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_unavailable_not_a_hang() {
    // A port that was free a moment ago and has no server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for cluster in [false, true] {
        let mut opts = options(
            vec![format!("redis://127.0.0.1:{port}")],
            cluster,
            Limits::default(),
            "x:loc".into(),
        );
        opts.command_timeout = Duration::from_millis(200);
        let store = RedisStore::new(opts).unwrap();
        let started = Instant::now();
        let e = store.lookup("a@b", suite::now()).await.unwrap_err();
        assert!(matches!(e, LocationError::Unavailable(_)), "{e:?}");
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
    }
}

/// A minimal `metrics` recorder that sums counter increments by name+labels.
mod recorder {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    #[derive(Default)]
    pub struct Sums(pub Mutex<HashMap<String, Arc<Cell>>>);

    #[derive(Default)]
    pub struct Cell(AtomicU64);

    impl CounterFn for Cell {
        fn increment(&self, v: u64) {
            self.0.fetch_add(v, Ordering::Relaxed);
        }
        fn absolute(&self, v: u64) {
            self.0.store(v, Ordering::Relaxed);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, v: f64) {
            self.0.store(v as u64, Ordering::Relaxed);
        }
    }

    impl Sums {
        fn cell(&self, key: &Key) -> Arc<Cell> {
            let mut name = key.name().to_string();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            for l in labels {
                name.push(';');
                name.push_str(&l);
            }
            Arc::clone(self.0.lock().unwrap().entry(name).or_default())
        }

        /// Sum of every series whose name+labels contain all `parts`.
        pub fn sum(&self, parts: &[&str]) -> u64 {
            let map = self.0.lock().unwrap();
            map.iter()
                .filter(|(k, _)| parts.iter().all(|p| k.contains(p)))
                .map(|(_, c)| c.0.load(Ordering::Relaxed))
                .sum()
        }
    }

    impl Recorder for Sums {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }
}

#[test]
fn outages_are_counted_in_metrics() {
    let sums = recorder::Sums::default();
    let mut server = RedisServer::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&sums, || {
        rt.block_on(async {
            let mut opts = options(vec![server.url()], false, Limits::default(), "m:loc".into());
            opts.command_timeout = Duration::from_millis(200);
            let store = RedisStore::new(opts).unwrap();
            let t = suite::now();
            store.lookup("m@x", t).await.unwrap();
            assert_eq!(sums.sum(&["voxline_location_errors_total"]), 0);
            assert_eq!(sums.sum(&["voxline_location_redis_up"]), 1);
            server.stop();
            for _ in 0..3 {
                assert!(store.lookup("m@x", t).await.is_err());
            }
            let errors = sums.sum(&[
                "voxline_location_errors_total",
                "backend=redis",
                "op=lookup",
            ]);
            let unavailable = sums.sum(&["voxline_location_errors_total", "kind=unavailable"])
                + sums.sum(&["voxline_location_errors_total", "kind=timeout"]);
            assert_eq!(errors, 3);
            assert_eq!(unavailable, 3);
            assert_eq!(sums.sum(&["voxline_location_redis_up"]), 0);
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_then_restarted_recovers_without_a_new_store() {
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap()
        .unwrap();
    let mut opts = options(cluster.node_urls(), true, Limits::default(), "k:loc".into());
    opts.command_timeout = Duration::from_millis(300);
    let store = LocationStore::Redis(Arc::new(RedisStore::new(opts).unwrap()));
    let t = suite::now();
    let u = |cseq| suite::update("c", cseq, vec![suite::contact("sip:k@10.0.0.1", 600, 1000)]);
    store.apply("victim@example.com", &u(1), t).await.unwrap();
    let victim = cluster
        .nodes()
        .iter()
        .position(|n| {
            n.cli(&["EXISTS", "k:loc:{victim@example.com}"])
                .unwrap()
                .trim()
                == "1"
        })
        .unwrap();

    cluster.nodes()[victim].stop();
    let started = Instant::now();
    let e = store
        .apply("victim@example.com", &u(2), t)
        .await
        .unwrap_err();
    assert!(matches!(e, LocationError::Unavailable(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    let node = &mut cluster.nodes()[victim];
    tokio::task::block_in_place(|| node.restart()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut cseq = 10;
    loop {
        cseq += 1;
        match store.apply("victim@example.com", &u(cseq), t).await {
            Ok(a) => {
                assert_eq!(a.bindings.len(), 1);
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "cluster store did not recover: {e:?}"
            ),
        }
        // Pace the retries while the cluster re-forms (bounded by the deadline).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.lookup("victim@example.com", t).await.unwrap().len(),
        1
    );
}
