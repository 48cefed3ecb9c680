//! Per-request costs of digest authentication.
//!
//! `CARGO_TARGET_DIR=target/auth cargo bench -p voxline-auth --bench digest`

// A benchmark: a failed setup step should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use voxline_auth::{
    Algorithm, AuthConfig, AuthRequest, Authenticator, ChallengeKind, ChallengeReason,
    ClientRequest, Decision, DigestAuth, DigestChallenge, DigestCredentials, ServerSecret, Step,
    StoredCredentials, SubscriberStore,
};

fn authenticator() -> Authenticator {
    Authenticator::new(
        &AuthConfig::default(),
        &ServerSecret::new(b"bench secret, 16+ bytes").unwrap(),
    )
}

fn answer(
    auth: &Authenticator,
    algorithm: Algorithm,
    user: &str,
    password: &str,
    nc: u32,
) -> String {
    let c = auth.challenge(
        ChallengeKind::Www,
        "localhost",
        ChallengeReason::NoCredentials,
        SystemTime::now(),
    );
    let challenge =
        DigestChallenge::pick(c.values.iter().map(String::as_str), &[algorithm]).unwrap();
    challenge.authorize(
        user,
        password,
        &ClientRequest {
            method: "REGISTER",
            uri: "sip:localhost",
            nc,
            cnonce: "0a4f113b",
        },
    )
}

fn verify(
    auth: &Authenticator,
    credentials: &DigestCredentials<'_>,
    stored: Option<&StoredCredentials>,
) -> Decision {
    let request = AuthRequest {
        method: "REGISTER",
        realm: "localhost",
        kind: ChallengeKind::Www,
        credentials: Some(credentials),
    };
    let now = SystemTime::now();
    match auth.begin(&request, now) {
        Step::Done(d) => d,
        Step::Lookup(attempt) => auth.finish(attempt, stored, now),
    }
}

fn sans_io(c: &mut Criterion) {
    let auth = authenticator();
    let alice = StoredCredentials::from_password("alice", "localhost", "secret");
    c.bench_function("challenge (2 values)", |b| {
        b.iter(|| {
            auth.challenge(
                ChallengeKind::Www,
                black_box("localhost"),
                ChallengeReason::NoCredentials,
                SystemTime::now(),
            )
        })
    });
    for algorithm in Algorithm::ALL {
        let wrong = answer(&auth, algorithm, "alice", "guess", 1);
        let wrong = DigestCredentials::parse(&wrong).unwrap();
        let unknown = answer(&auth, algorithm, "mallory", "guess", 1);
        let unknown = DigestCredentials::parse(&unknown).unwrap();
        c.bench_function(&format!("verify {algorithm} wrong password"), |b| {
            b.iter(|| verify(&auth, black_box(&wrong), Some(&alice)))
        });
        c.bench_function(&format!("verify {algorithm} unknown user"), |b| {
            b.iter(|| verify(&auth, black_box(&unknown), None))
        });
        // Accepted: a fresh nonce per iteration batch, nc counting up.
        let text = answer(&auth, algorithm, "alice", "secret", 1);
        let nonce = DigestCredentials::parse(&text).unwrap().nonce.into_owned();
        let challenge = DigestChallenge {
            realm: "localhost".into(),
            nonce,
            algorithm,
            qop_auth: true,
            opaque: None,
            stale: false,
        };
        let mut nc = 0u32;
        c.bench_function(
            &format!("verify {algorithm} accepted (incl. client side)"),
            |b| {
                b.iter(|| {
                    nc += 1;
                    let v = challenge.authorize(
                        "alice",
                        "secret",
                        &ClientRequest {
                            method: "REGISTER",
                            uri: "sip:localhost",
                            nc,
                            cnonce: "0a4f113b",
                        },
                    );
                    let creds = DigestCredentials::parse(&v).unwrap();
                    let d = verify(&auth, &creds, Some(&alice));
                    assert!(d.accepted().is_some());
                })
            },
        );
    }
    let header = answer(&auth, Algorithm::Sha256, "alice", "secret", 1);
    c.bench_function("parse Authorization", |b| {
        b.iter(|| DigestCredentials::parse(black_box(&header)).unwrap())
    });
}

fn with_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("voxline.db").display());
    let auth = runtime.block_on(async {
        let store = SubscriberStore::open(&url).await.unwrap();
        for i in 0..1000 {
            store
                .add(&format!("user{i}"), "localhost", "pw")
                .await
                .unwrap();
        }
        DigestAuth::new(authenticator(), store)
    });
    let store = auth.store();
    c.bench_function("store lookup (cached)", |b| {
        b.iter(|| {
            runtime
                .block_on(store.lookup(black_box("user500"), "localhost"))
                .unwrap()
        })
    });
    let mut i = 0u32;
    c.bench_function("store lookup (SQLite, uncached)", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            store.clear_cache();
            runtime
                .block_on(store.lookup(&format!("user{i}"), "localhost"))
                .unwrap()
        })
    });
    let wrong = answer(auth.authenticator(), Algorithm::Md5, "user7", "guess", 1);
    let wrong = DigestCredentials::parse(&wrong).unwrap();
    let request = AuthRequest {
        method: "REGISTER",
        realm: "localhost",
        kind: ChallengeKind::Www,
        credentials: Some(&wrong),
    };
    c.bench_function("DigestAuth::authenticate wrong password (cached)", |b| {
        b.iter(|| {
            runtime
                .block_on(auth.authenticate(&request, SystemTime::now()))
                .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = sans_io, with_store
}
criterion_main!(benches);
