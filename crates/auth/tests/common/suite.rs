//! The store test suite every backend runs: provisioning semantics, then a
//! full digest exchange through [`DigestAuth`] on top of the same store.

use std::time::{Duration, SystemTime};

use voxline_auth::{
    Algorithm, AuthConfig, AuthError, AuthRequest, Authenticator, ChallengeKind, ChallengeReason,
    ClientRequest, Decision, DigestAuth, DigestChallenge, DigestCredentials, ServerSecret,
    StoredCredentials, SubscriberStore,
};

pub async fn provisioning(store: &SubscriberStore) {
    store.add("alice", "localhost", "secret").await.unwrap();
    // Already there, also with the domain in another case.
    for domain in ["localhost", "LocalHost"] {
        match store.add("alice", domain, "other").await {
            Err(AuthError::SubscriberExists { username, domain }) => {
                assert_eq!((username.as_str(), domain.as_str()), ("alice", "localhost"));
            }
            other => panic!("expected SubscriberExists, got {other:?}"),
        }
    }
    // Usernames are case-sensitive: Alice is someone else.
    store.add("Alice", "localhost", "capital").await.unwrap();
    store.add("bob", "127.0.0.1", "bobpw").await.unwrap();
    store.add("jörg", "example.com", "pässword").await.unwrap();

    let alice = store.lookup("alice", "localhost").await.unwrap().unwrap();
    assert_eq!(
        alice,
        StoredCredentials::from_password("alice", "localhost", "secret")
    );
    assert_eq!(
        store.lookup("alice", "LOCALHOST").await.unwrap(),
        Some(alice)
    );
    let capital = store.lookup("Alice", "localhost").await.unwrap().unwrap();
    assert_eq!(
        capital,
        StoredCredentials::from_password("Alice", "localhost", "capital")
    );
    assert_eq!(store.lookup("ALICE", "localhost").await.unwrap(), None);
    assert_eq!(store.lookup("alice", "127.0.0.1").await.unwrap(), None);
    // Names longer than any column are simply unknown.
    assert_eq!(
        store.lookup(&"a".repeat(300), "localhost").await.unwrap(),
        None
    );
    assert_eq!(store.lookup("alice", &"d".repeat(300)).await.unwrap(), None);
    let jorg = store.lookup("jörg", "example.com").await.unwrap().unwrap();
    assert_eq!(
        jorg,
        StoredCredentials::from_password("jörg", "example.com", "pässword")
    );

    let all: Vec<(String, String)> = store
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.username, s.domain))
        .collect();
    let expected = [
        ("bob", "127.0.0.1"),
        ("jörg", "example.com"),
        ("Alice", "localhost"),
        ("alice", "localhost"),
    ]
    .map(|(u, d)| (u.to_string(), d.to_string()));
    assert_eq!(all, expected);
    let local = store.list(Some("LOCALHOST")).await.unwrap();
    assert_eq!(local.len(), 2);
    let now = SystemTime::now();
    for s in &local {
        assert!(s.created_at <= now && s.created_at + Duration::from_secs(120) > now);
        assert_eq!(s.created_at, s.updated_at);
    }
    assert!(
        store
            .list(Some("nowhere.example"))
            .await
            .unwrap()
            .is_empty()
    );

    // New password: the (cached) lookup sees it at once.
    store
        .set_password("alice", "localhost", "new secret")
        .await
        .unwrap();
    assert_eq!(
        store.lookup("alice", "localhost").await.unwrap(),
        Some(StoredCredentials::from_password(
            "alice",
            "localhost",
            "new secret"
        ))
    );
    // Setting the same password again is not "not found".
    store
        .set_password("alice", "localhost", "new secret")
        .await
        .unwrap();
    assert!(matches!(
        store.set_password("carol", "localhost", "x").await,
        Err(AuthError::SubscriberNotFound { .. })
    ));

    // Removal, including of a cached miss turning into a hit and back.
    assert_eq!(store.lookup("carol", "localhost").await.unwrap(), None);
    store.add("carol", "localhost", "c").await.unwrap();
    assert!(store.lookup("carol", "localhost").await.unwrap().is_some());
    store.remove("carol", "LocalHost").await.unwrap();
    assert_eq!(store.lookup("carol", "localhost").await.unwrap(), None);
    assert!(matches!(
        store.remove("carol", "localhost").await,
        Err(AuthError::SubscriberNotFound { .. })
    ));

    // Refused input.
    assert!(matches!(
        store.add("a b", "localhost", "x").await,
        Err(AuthError::InvalidUsername(_))
    ));
    assert!(matches!(
        store.add("dave", "", "x").await,
        Err(AuthError::InvalidDomain(_))
    ));
    assert!(matches!(
        store.add("dave", "localhost", "").await,
        Err(AuthError::EmptyPassword)
    ));
    assert!(matches!(
        store.set_password("alice", "localhost", "").await,
        Err(AuthError::EmptyPassword)
    ));

    // A few hundred more, then a per-domain listing.
    for i in 0..300 {
        store
            .add(&format!("user{i:04}"), "bulk.example", "pw")
            .await
            .unwrap();
    }
    let bulk = store.list(Some("bulk.example")).await.unwrap();
    assert_eq!(bulk.len(), 300);
    assert_eq!(bulk[0].username, "user0000");
    assert_eq!(bulk[299].username, "user0299");
}

/// Answers `challenge_values` as `user`/`password` with `nc`.
pub fn answer(
    values: &[String],
    algorithm: Algorithm,
    user: &str,
    password: &str,
    nc: u32,
) -> String {
    let challenge = DigestChallenge::pick(values.iter().map(String::as_str), &[algorithm])
        .expect("challenge offers the algorithm");
    challenge.authorize(
        user,
        password,
        &ClientRequest {
            method: "REGISTER",
            uri: "sip:localhost",
            nc,
            cnonce: "c0ffee",
        },
    )
}

pub fn register<'a>(credentials: Option<&'a DigestCredentials<'a>>) -> AuthRequest<'a> {
    AuthRequest {
        method: "REGISTER",
        realm: "localhost",
        kind: ChallengeKind::Www,
        credentials,
    }
}

pub fn digest_auth(store: SubscriberStore) -> DigestAuth {
    let config = AuthConfig {
        secret: Some("suite secret, long enough".into()),
        ..AuthConfig::default()
    };
    let secret = ServerSecret::new(config.secret.as_deref().unwrap().as_bytes()).unwrap();
    DigestAuth::new(Authenticator::new(&config, &secret), store)
}

/// REGISTER → 401 → REGISTER with credentials → accepted, for both
/// algorithms, against a subscriber added through the same store.
pub async fn digest_exchange(auth: &DigestAuth) {
    auth.store()
        .add("dora", "localhost", "explorer")
        .await
        .unwrap();
    let now = SystemTime::now();
    for algorithm in Algorithm::ALL {
        let first = auth.authenticate(&register(None), now).await.unwrap();
        let challenge = first.challenge().unwrap();
        assert_eq!(challenge.reason, ChallengeReason::NoCredentials);
        let value = answer(&challenge.values, algorithm, "dora", "explorer", 1);
        let credentials = DigestCredentials::parse(&value).unwrap();
        match auth
            .authenticate(&register(Some(&credentials)), now)
            .await
            .unwrap()
        {
            Decision::Accept(who) => {
                assert_eq!(
                    (who.username.as_str(), who.realm.as_str()),
                    ("dora", "localhost")
                );
                assert_eq!(who.algorithm, algorithm);
            }
            other => panic!("{algorithm}: expected Accept, got {other:?}"),
        }
        // Replaying the same Authorization is refused.
        let replay = auth
            .authenticate(&register(Some(&credentials)), now)
            .await
            .unwrap();
        assert_eq!(
            replay.challenge().map(|c| c.reason),
            Some(ChallengeReason::NonceCountReused)
        );
        // Wrong password and unknown user: the same answer.
        let wrong = answer(&challenge.values, algorithm, "dora", "guess", 2);
        let wrong = DigestCredentials::parse(&wrong).unwrap();
        let unknown = answer(&challenge.values, algorithm, "nobody", "guess", 2);
        let unknown = DigestCredentials::parse(&unknown).unwrap();
        let a = auth
            .authenticate(&register(Some(&wrong)), now)
            .await
            .unwrap();
        let b = auth
            .authenticate(&register(Some(&unknown)), now)
            .await
            .unwrap();
        assert_eq!(
            crate::common::without_nonce(&a),
            crate::common::without_nonce(&b)
        );
    }
}
