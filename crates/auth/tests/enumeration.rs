//! No user enumeration: an unknown user and a wrong password get the same
//! decision and the same header values (apart from the nonce), through the
//! same database work, in about the same time.
#![allow(clippy::unwrap_used)] // tests and their helpers may unwrap

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::suite::{answer, digest_auth};
use common::without_nonce;
use voxline_auth::{
    Algorithm, AuthError, AuthRequest, ChallengeKind, ChallengeReason, DigestAuth, DigestChallenge,
    DigestCredentials, StoreOptions, SubscriberStore,
};

async fn sqlite_auth(dir: &std::path::Path, options: &StoreOptions) -> DigestAuth {
    let url = format!("sqlite://{}", dir.join("voxline.db").display());
    let store = SubscriberStore::open_with(&url, options).await.unwrap();
    store.add("alice", "localhost", "secret").await.unwrap();
    digest_auth(store)
}

fn request<'a>(
    kind: ChallengeKind,
    credentials: Option<&'a DigestCredentials<'a>>,
) -> AuthRequest<'a> {
    AuthRequest {
        method: if kind == ChallengeKind::Www {
            "REGISTER"
        } else {
            "INVITE"
        },
        realm: "localhost",
        kind,
        credentials,
    }
}

fn authorization(
    values: &[String],
    algorithm: Algorithm,
    kind: ChallengeKind,
    user: &str,
) -> String {
    let challenge = DigestChallenge::pick(values.iter().map(String::as_str), &[algorithm]).unwrap();
    challenge.authorize(
        user,
        "wrong password",
        &voxline_auth::ClientRequest {
            method: if kind == ChallengeKind::Www {
                "REGISTER"
            } else {
                "INVITE"
            },
            uri: "sip:localhost",
            nc: 1,
            cnonce: "abcdef",
        },
    )
}

#[tokio::test]
async fn unknown_user_and_wrong_password_answer_byte_for_byte_alike() {
    let dir = tempfile::tempdir().unwrap();
    let auth = sqlite_auth(dir.path(), &StoreOptions::default()).await;
    let t0 = SystemTime::now();
    let mut compared = 0;
    for kind in [ChallengeKind::Www, ChallengeKind::Proxy] {
        for algorithm in Algorithm::ALL {
            // Fresh nonce, and a nonce past its lifetime.
            for later in [Duration::ZERO, Duration::from_secs(301)] {
                let first = auth.authenticate(&request(kind, None), t0).await.unwrap();
                let values = &first.challenge().unwrap().values;
                let wrong = authorization(values, algorithm, kind, "alice");
                let wrong = DigestCredentials::parse(&wrong).unwrap();
                let unknown = authorization(values, algorithm, kind, "mallory");
                let unknown = DigestCredentials::parse(&unknown).unwrap();
                let a = auth
                    .authenticate(&request(kind, Some(&wrong)), t0 + later)
                    .await
                    .unwrap();
                let b = auth
                    .authenticate(&request(kind, Some(&unknown)), t0 + later)
                    .await
                    .unwrap();
                let (ca, cb) = (a.challenge().unwrap(), b.challenge().unwrap());
                assert_eq!(ca.reason, ChallengeReason::InvalidCredentials);
                assert!(!ca.stale() && !cb.stale());
                assert_ne!(ca.nonce, cb.nonce);
                assert_eq!(without_nonce(&a), without_nonce(&b));
                for v in ca.values.iter().chain(&cb.values) {
                    assert!(!v.contains("alice") && !v.contains("mallory"), "{v}");
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 8);
}

#[tokio::test]
async fn unknown_users_go_to_the_store_too() {
    // With the store down, both paths fail the same way: both looked up.
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        cache_ttl: Duration::ZERO,
        ..StoreOptions::default()
    };
    let auth = sqlite_auth(dir.path(), &options).await;
    let now = SystemTime::now();
    let first = auth
        .authenticate(&request(ChallengeKind::Www, None), now)
        .await
        .unwrap();
    let values = first.challenge().unwrap().values.clone();
    auth.store().close().await;
    for user in ["alice", "mallory"] {
        let v = answer(&values, Algorithm::Sha256, user, "wrong password", 1);
        let credentials = DigestCredentials::parse(&v).unwrap();
        let err = auth
            .authenticate(&request(ChallengeKind::Www, Some(&credentials)), now)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::StoreUnavailable(_)),
            "{user}: {err:?}"
        );
    }
}

/// Median time of `rounds` authentications of each kind, interleaved.
async fn median_times(auth: &DigestAuth, rounds: usize) -> (Duration, Duration) {
    let now = SystemTime::now();
    let first = auth
        .authenticate(&request(ChallengeKind::Www, None), now)
        .await
        .unwrap();
    let values = first.challenge().unwrap().values.clone();
    let wrong = authorization(&values, Algorithm::Sha256, ChallengeKind::Www, "alice");
    let unknown = authorization(&values, Algorithm::Sha256, ChallengeKind::Www, "mallory");
    let wrong = DigestCredentials::parse(&wrong).unwrap();
    let unknown = DigestCredentials::parse(&unknown).unwrap();
    let mut times = [Vec::with_capacity(rounds), Vec::with_capacity(rounds)];
    for round in 0..rounds {
        // Alternate which goes first to cancel warm-cache effects.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let credentials = if which == 0 { &wrong } else { &unknown };
            let started = Instant::now();
            let d = auth
                .authenticate(&request(ChallengeKind::Www, Some(credentials)), now)
                .await
                .unwrap();
            times[which].push(started.elapsed());
            assert!(d.accepted().is_none());
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let [mut a, mut b] = times;
    (median(&mut a), median(&mut b))
}

/// A rough timing check (run with `--ignored`; timing on a shared 2-core
/// machine is noisy, so the bound is loose).
#[tokio::test]
#[ignore = "timing measurement; run explicitly with --ignored"]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    let dir = tempfile::tempdir().unwrap();
    for (label, options) in [
        ("cached", StoreOptions::default()),
        (
            "uncached",
            StoreOptions {
                cache_ttl: Duration::ZERO,
                ..StoreOptions::default()
            },
        ),
    ] {
        let sub = dir.path().join(label);
        let auth = sqlite_auth(&sub, &options).await;
        // Warm up, then measure.
        median_times(&auth, 200).await;
        let (wrong, unknown) = median_times(&auth, 3000).await;
        let ratio = wrong.as_secs_f64() / unknown.as_secs_f64();
        println!(
            "{label}: median wrong password {wrong:?}, unknown user {unknown:?}, ratio {ratio:.3}"
        );
        assert!((0.8..1.25).contains(&ratio), "{label}: ratio {ratio:.3}");
    }
}
