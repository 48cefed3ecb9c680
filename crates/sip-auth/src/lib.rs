//! Digest authentication of SIP requests.
//!
//! `voxline-auth` decides (nonces, HA1 verification, replay protection,
//! subscriber store) without knowing SIP; this crate reads the credentials
//! out of a request and answers it with the challenge or error the
//! decision calls for.

use std::sync::Arc;
use std::time::SystemTime;

use voxline_auth::{
    AuthError, AuthRequest, Authenticated, ChallengeKind, Decision, DigestAuth, DigestCredentials,
};
use voxline_server::ServerRequest;
use voxline_sip::HeaderName;

/// The outcome of [`SipAuth::check`].
#[derive(Debug)]
pub enum AuthOutcome {
    /// The request carries valid credentials of this subscriber.
    Accepted(Authenticated),
    /// The request was answered (401/407 challenge, or 500/503 when the
    /// subscriber store failed); the caller stops here.
    Answered,
}

/// Authenticates requests against the subscriber store.
#[derive(Clone)]
pub struct SipAuth {
    digest: Arc<DigestAuth>,
}

impl SipAuth {
    /// Wraps an authenticator.
    pub fn new(digest: Arc<DigestAuth>) -> Self {
        SipAuth { digest }
    }

    /// The authenticator and its subscriber store.
    pub fn digest(&self) -> &DigestAuth {
        &self.digest
    }

    /// Checks `req` for credentials for `realm` (401 for REGISTER, 407
    /// otherwise) and answers it when they are missing, wrong or stale.
    pub async fn check(&self, req: &ServerRequest, realm: &str) -> AuthOutcome {
        let msg = req.message();
        let method = msg.method_str().unwrap_or("");
        let kind = ChallengeKind::for_method(method);
        let header = match kind {
            ChallengeKind::Www => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
        };
        // Several credentials may be present (one per realm on the path):
        // take the one for our realm.
        let credentials = msg
            .header_lines(header)
            .filter_map(|v| DigestCredentials::parse(v).ok())
            .find(|c| c.realm.eq_ignore_ascii_case(realm));
        let request = AuthRequest {
            method,
            realm,
            kind,
            credentials: credentials.as_ref(),
        };
        match self.digest.authenticate(&request, SystemTime::now()).await {
            Ok(Decision::Accept(who)) => AuthOutcome::Accepted(who),
            Ok(Decision::Challenge(challenge)) => {
                let mut b = req.response(kind.status_code(), kind.reason_phrase());
                for (name, value) in challenge.headers() {
                    b = b.header(name, value);
                }
                let _ = req.send(b.build());
                AuthOutcome::Answered
            }
            Err(e) => {
                answer_store_error(req, &e);
                AuthOutcome::Answered
            }
        }
    }

    /// Whether `user@domain` is a provisioned subscriber. `Err` when the
    /// store cannot be asked (the caller answers 503).
    pub async fn exists(&self, user: &str, domain: &str) -> Result<bool, AuthError> {
        self.digest
            .store()
            .lookup(user, domain)
            .await
            .map(|s| s.is_some())
    }
}

/// Answers a request whose processing needed the subscriber store when
/// the store failed: 503 with Retry-After when it is unavailable, 500 else.
pub fn answer_store_error(req: &ServerRequest, e: &AuthError) {
    match e {
        AuthError::StoreUnavailable(_) => {
            let retry = rand::random_range(5..=30u32).to_string();
            let b = req
                .response(503, "Service Unavailable - subscriber database unreachable")
                .header("Retry-After", &retry);
            let _ = req.send(b.build());
        }
        other => {
            tracing::warn!(error = %other, "authentication failed internally");
            let _ = req.send(req.response(500, "Server Internal Error").build());
        }
    }
}
