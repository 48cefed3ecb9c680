use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::client::{ClientRequest, DigestChallenge};

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn config() -> AuthConfig {
    AuthConfig {
        secret: Some("test secret, 16+ bytes".into()),
        ..AuthConfig::default()
    }
}

fn authenticator(config: &AuthConfig) -> Authenticator {
    let secret = ServerSecret::new(config.secret.as_deref().unwrap().as_bytes()).unwrap();
    Authenticator::new(config, &secret)
}

fn alice() -> StoredCredentials {
    StoredCredentials::from_password("alice", "localhost", "secret")
}

/// Runs begin + finish with `stored` as the lookup result.
fn decide(
    auth: &Authenticator,
    credentials: Option<&DigestCredentials<'_>>,
    stored: Option<&StoredCredentials>,
    now: SystemTime,
) -> Decision {
    let request = AuthRequest {
        method: "REGISTER",
        realm: "localhost",
        kind: ChallengeKind::Www,
        credentials,
    };
    match auth.begin(&request, now) {
        Step::Done(d) => d,
        Step::Lookup(attempt) => {
            assert_eq!(attempt.domain(), "localhost");
            auth.finish(attempt, stored, now)
        }
    }
}

fn first_challenge(auth: &Authenticator, algorithm: Algorithm, now: SystemTime) -> DigestChallenge {
    let d = decide(auth, None, None, now);
    let c = d.challenge().unwrap();
    DigestChallenge::pick(c.values.iter().map(String::as_str), &[algorithm]).unwrap()
}

fn answer(challenge: &DigestChallenge, user: &str, password: &str, nc: u32) -> String {
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

fn reason(d: &Decision) -> Option<ChallengeReason> {
    d.challenge().map(|c| c.reason)
}

#[test]
fn challenge_offers_sha256_then_md5() {
    let auth = authenticator(&config());
    let d = decide(&auth, None, None, at(T0));
    let c = d.challenge().unwrap();
    assert_eq!(c.kind, ChallengeKind::Www);
    assert_eq!(c.reason, ChallengeReason::NoCredentials);
    assert!(!c.stale());
    assert_eq!(c.values.len(), 2);
    assert_eq!(
        c.values[0],
        format!(
            r#"Digest realm="localhost", nonce="{}", algorithm=SHA-256, qop="auth""#,
            c.nonce
        )
    );
    assert_eq!(
        c.values[1],
        format!(
            r#"Digest realm="localhost", nonce="{}", algorithm=MD5, qop="auth""#,
            c.nonce
        )
    );
    assert_eq!(d.outcome_label(), "challenged");
}

#[test]
fn challenge_order_follows_the_config() {
    let auth = authenticator(&AuthConfig {
        algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
        ..config()
    });
    assert_eq!(auth.offered(), [Algorithm::Md5, Algorithm::Sha256]);
    let d = decide(&auth, None, None, at(T0));
    let values = &d.challenge().unwrap().values;
    assert!(values[0].contains("algorithm=MD5"), "{values:?}");
    assert!(values[1].contains("algorithm=SHA-256"), "{values:?}");
    let md5_only = authenticator(&AuthConfig {
        algorithms: vec![Algorithm::Md5],
        ..config()
    });
    assert_eq!(md5_only.offered(), [Algorithm::Md5]);
}

#[test]
fn md5_and_sha256_are_accepted() {
    let auth = authenticator(&config());
    for algorithm in Algorithm::ALL {
        let challenge = first_challenge(&auth, algorithm, at(T0));
        let value = answer(&challenge, "alice", "secret", 1);
        let creds = DigestCredentials::parse(&value).unwrap();
        let d = decide(&auth, Some(&creds), Some(&alice()), at(T0 + 1));
        assert_eq!(
            d,
            Decision::Accept(Authenticated {
                username: "alice".into(),
                realm: "localhost".into(),
                algorithm,
            })
        );
        assert_eq!(d.outcome_label(), "accepted");
    }
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let auth = authenticator(&config());
    let challenge = first_challenge(&auth, Algorithm::Md5, at(T0));
    let wrong = answer(&challenge, "alice", "guess", 1);
    let wrong = DigestCredentials::parse(&wrong).unwrap();
    let unknown = answer(&challenge, "mallory", "guess", 1);
    let unknown = DigestCredentials::parse(&unknown).unwrap();
    let a = decide(&auth, Some(&wrong), Some(&alice()), at(T0 + 1));
    let b = decide(&auth, Some(&unknown), None, at(T0 + 1));
    let (a, b) = (a.challenge().unwrap(), b.challenge().unwrap());
    assert_eq!(a.reason, ChallengeReason::InvalidCredentials);
    assert_ne!(a.nonce, b.nonce);
    let strip = |c: &Challenge| {
        c.values
            .iter()
            .map(|v| v.replace(&c.nonce, "N"))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(a), strip(b));
    assert_eq!((a.kind, a.reason, &a.realm), (b.kind, b.reason, &b.realm));
}

#[test]
fn fake_ha1_is_deterministic_and_per_user() {
    let auth = authenticator(&config());
    let other = authenticator(&AuthConfig {
        secret: Some("another secret, 16+ bytes".into()),
        ..AuthConfig::default()
    });
    let f = |a: &Authenticator, u: &str| a.fake_ha1(Algorithm::Sha256, u, "localhost");
    assert_eq!(f(&auth, "bob"), f(&auth, "bob"));
    assert_ne!(f(&auth, "bob").as_hex(), f(&auth, "bobby").as_hex());
    assert_ne!(f(&auth, "bob").as_hex(), f(&other, "bob").as_hex());
    assert_eq!(
        auth.fake_ha1(Algorithm::Md5, "bob", "localhost")
            .as_hex()
            .len(),
        32
    );
}

#[test]
fn expired_nonce_is_stale_only_with_right_credentials() {
    let auth = authenticator(&config());
    let challenge = first_challenge(&auth, Algorithm::Sha256, at(T0));
    let late = at(T0 + 301);
    let right = answer(&challenge, "alice", "secret", 1);
    let right = DigestCredentials::parse(&right).unwrap();
    let d = decide(&auth, Some(&right), Some(&alice()), late);
    assert_eq!(reason(&d), Some(ChallengeReason::NonceExpired));
    assert!(
        d.challenge()
            .unwrap()
            .values
            .iter()
            .all(|v| v.ends_with(", stale=true"))
    );
    assert_eq!(d.outcome_label(), "stale");
    // The stale challenge's fresh nonce works.
    let again = DigestChallenge::pick(
        d.challenge().unwrap().values.iter().map(String::as_str),
        &[Algorithm::Sha256],
    )
    .unwrap();
    assert!(again.stale);
    let retry = answer(&again, "alice", "secret", 1);
    let retry = DigestCredentials::parse(&retry).unwrap();
    assert!(
        decide(&auth, Some(&retry), Some(&alice()), late)
            .accepted()
            .is_some()
    );

    let wrong = answer(&challenge, "alice", "guess", 1);
    let wrong = DigestCredentials::parse(&wrong).unwrap();
    let d = decide(&auth, Some(&wrong), Some(&alice()), late);
    assert_eq!(reason(&d), Some(ChallengeReason::InvalidCredentials));
    assert!(!d.challenge().unwrap().stale());
}

#[test]
fn nonce_count_must_increase() {
    let auth = authenticator(&config());
    let challenge = first_challenge(&auth, Algorithm::Md5, at(T0));
    let use_nc = |nc: u32| {
        let v = answer(&challenge, "alice", "secret", nc);
        let creds = DigestCredentials::parse(&v).unwrap();
        decide(&auth, Some(&creds), Some(&alice()), at(T0 + 2))
    };
    assert!(use_nc(1).accepted().is_some());
    assert_eq!(reason(&use_nc(1)), Some(ChallengeReason::NonceCountReused));
    assert!(use_nc(2).accepted().is_some());
    assert!(use_nc(3).accepted().is_some());
    assert_eq!(reason(&use_nc(2)), Some(ChallengeReason::NonceCountReused));
    assert!(use_nc(3).challenge().unwrap().stale());
    // A wrong password never touches the table.
    let wrong = answer(&challenge, "alice", "guess", 9);
    let wrong = DigestCredentials::parse(&wrong).unwrap();
    let d = decide(&auth, Some(&wrong), Some(&alice()), at(T0 + 2));
    assert_eq!(reason(&d), Some(ChallengeReason::InvalidCredentials));
    assert!(use_nc(4).accepted().is_some());
}

#[test]
fn evicted_nonces_are_stale() {
    let config = AuthConfig {
        nc_table_size: crate::replay::MIN_CAPACITY,
        ..config()
    };
    let auth = authenticator(&config);
    let mut challenges: Vec<DigestChallenge> = (0..1000)
        .map(|i| first_challenge(&auth, Algorithm::Md5, at(T0) + Duration::from_millis(i)))
        .collect();
    let oldest = challenges.remove(0);
    let use_once = |c: &DigestChallenge, nc| {
        let v = answer(c, "alice", "secret", nc);
        let creds = DigestCredentials::parse(&v).unwrap();
        decide(&auth, Some(&creds), Some(&alice()), at(T0 + 1))
    };
    assert!(use_once(&oldest, 1).accepted().is_some());
    for c in &challenges {
        assert!(use_once(c, 1).accepted().is_some());
    }
    assert!(auth.nc_table().len() <= crate::replay::MIN_CAPACITY);
    assert_eq!(
        reason(&use_once(&oldest, 2)),
        Some(ChallengeReason::NonceForgotten)
    );
}

#[test]
fn checks_before_the_lookup() {
    let auth = authenticator(&AuthConfig {
        algorithms: vec![Algorithm::Md5],
        ..config()
    });
    let challenge = first_challenge(&auth, Algorithm::Md5, at(T0));
    let good = answer(&challenge, "alice", "secret", 1);
    let good = DigestCredentials::parse(&good).unwrap();
    let request = |creds: &DigestCredentials<'_>| {
        let request = AuthRequest {
            method: "REGISTER",
            realm: "localhost",
            kind: ChallengeKind::Www,
            credentials: Some(creds),
        };
        match auth.begin(&request, at(T0)) {
            Step::Done(d) => reason(&d),
            Step::Lookup(a) => {
                assert_eq!(a.username(), creds.username);
                None
            }
        }
    };
    assert_eq!(request(&good), None);
    let cases: Vec<(DigestCredentials<'_>, ChallengeReason)> = vec![
        (
            DigestCredentials {
                realm: "example.com".into(),
                ..good.clone()
            },
            ChallengeReason::RealmMismatch,
        ),
        (
            DigestCredentials {
                algorithm: Some("SHA-256".into()),
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                algorithm: Some("MD5-sess".into()),
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                qop: None,
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                qop: Some("auth-int".into()),
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                nc: Some("00000000".into()),
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                nc: Some("1000000000".into()),
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                nc: Some("+1".into()),
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                cnonce: None,
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                username: "".into(),
                ..good.clone()
            },
            ChallengeReason::Unsupported,
        ),
        (
            DigestCredentials {
                nonce: "00".repeat(32).into(),
                ..good.clone()
            },
            ChallengeReason::InvalidNonce,
        ),
    ];
    for (creds, expected) in &cases {
        assert_eq!(request(creds), Some(*expected), "{creds:?}");
    }
    // Absent algorithm means MD5; realm is case-insensitive.
    let implicit = DigestCredentials {
        algorithm: None,
        realm: "LocalHost".into(),
        ..good.clone()
    };
    assert_eq!(request(&implicit), None);
}

#[test]
fn another_node_with_the_same_secret_accepts_the_nonce() {
    let node_a = authenticator(&config());
    let node_b = authenticator(&config());
    let challenge = first_challenge(&node_a, Algorithm::Sha256, at(T0));
    let v = answer(&challenge, "alice", "secret", 1);
    let creds = DigestCredentials::parse(&v).unwrap();
    assert!(
        decide(&node_b, Some(&creds), Some(&alice()), at(T0 + 5))
            .accepted()
            .is_some()
    );
}

#[test]
fn proxy_challenges_for_other_methods() {
    let auth = authenticator(&config());
    let request = AuthRequest {
        method: "INVITE",
        realm: "LOCALHOST",
        kind: ChallengeKind::for_method("INVITE"),
        credentials: None,
    };
    let Step::Done(Decision::Challenge(c)) = auth.begin(&request, at(T0)) else {
        panic!("expected a challenge");
    };
    assert_eq!(c.kind.status_code(), 407);
    assert_eq!(c.realm, "localhost");
    let headers: Vec<_> = c.headers().map(|(name, _)| name).collect();
    assert_eq!(headers, ["Proxy-Authenticate", "Proxy-Authenticate"]);
}
