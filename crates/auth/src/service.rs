//! [`DigestAuth`]: the [`Authenticator`] and the [`SubscriberStore`]
//! together, for the registrar and proxy.

use std::path::Path;
use std::sync::LazyLock;
use std::time::SystemTime;

use crate::challenge::{Challenge, ChallengeKind, ChallengeReason};
use crate::config::AuthConfig;
use crate::error::AuthError;
use crate::store::SubscriberStore;
use crate::verify::{AuthRequest, Authenticator, Decision, Step};

/// `voxline_auth_decisions_total` by outcome (labels as in
/// [`Decision::outcome_label`]), registered once: a `counter!` with a
/// computed label builds and looks up its key on every call. Created on
/// first use, after the node has installed its recorder.
struct Metrics {
    accepted: metrics::Counter,
    stale: metrics::Counter,
    challenged: metrics::Counter,
    error: metrics::Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    accepted: metrics::counter!("voxline_auth_decisions_total", "outcome" => "accepted"),
    stale: metrics::counter!("voxline_auth_decisions_total", "outcome" => "stale"),
    challenged: metrics::counter!("voxline_auth_decisions_total", "outcome" => "challenged"),
    error: metrics::counter!("voxline_auth_decisions_total", "outcome" => "error"),
});

/// Authentication with subscriber lookups. Share one per node (`Arc`).
#[derive(Debug)]
pub struct DigestAuth {
    authenticator: Authenticator,
    store: SubscriberStore,
}

impl DigestAuth {
    /// Combines an authenticator and a store.
    pub fn new(authenticator: Authenticator, store: SubscriberStore) -> DigestAuth {
        DigestAuth {
            authenticator,
            store,
        }
    }

    /// Validates `config`, loads (or creates) the server secret and opens
    /// the store, all relative to `data_dir`.
    pub async fn from_config(
        config: &AuthConfig,
        data_dir: &Path,
    ) -> Result<DigestAuth, AuthError> {
        config.validate()?;
        let secret = config.server_secret(data_dir)?;
        let store = SubscriberStore::from_config(config, data_dir).await?;
        Ok(DigestAuth::new(Authenticator::new(config, &secret), store))
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The store (for provisioning).
    pub fn store(&self) -> &SubscriberStore {
        &self.store
    }

    /// A challenge for a request that carried no credentials.
    pub fn challenge(&self, kind: ChallengeKind, realm: &str, now: SystemTime) -> Challenge {
        self.authenticator
            .challenge(kind, realm, ChallengeReason::NoCredentials, now)
    }

    /// Decides on a request: accept, or challenge (401/407 with the
    /// returned header values). `Err(StoreUnavailable)` when the database
    /// cannot answer: reply 500 or 503, not a challenge.
    pub async fn authenticate(
        &self,
        request: &AuthRequest<'_>,
        now: SystemTime,
    ) -> Result<Decision, AuthError> {
        let decision = match self.authenticator.begin(request, now) {
            Step::Done(decision) => decision,
            Step::Lookup(attempt) => {
                let stored = match self
                    .store
                    .lookup(attempt.username(), attempt.domain())
                    .await
                {
                    Ok(stored) => stored,
                    Err(e) => {
                        METRICS.error.increment(1);
                        return Err(e);
                    }
                };
                self.authenticator.finish(attempt, stored.as_ref(), now)
            }
        };
        match &decision {
            Decision::Accept(_) => &METRICS.accepted,
            Decision::Challenge(c) if c.stale() => &METRICS.stale,
            Decision::Challenge(_) => &METRICS.challenged,
        }
        .increment(1);
        if let Decision::Challenge(c) = &decision
            && c.reason != ChallengeReason::NoCredentials
        {
            tracing::debug!(realm = %c.realm, reason = c.reason.label(), "digest authentication challenged");
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: T) {}

    // Workers share one `DigestAuth` and spawn its futures.
    #[allow(dead_code)]
    fn shareable_and_spawnable(auth: &DigestAuth, request: &AuthRequest<'_>) {
        assert_send_sync(auth);
        assert_send(auth.authenticate(request, SystemTime::now()));
        assert_send(auth.store().lookup("a", "b"));
    }
}
