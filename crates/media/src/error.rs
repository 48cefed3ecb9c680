//! Errors of [`crate::MediaControl`].

use std::net::SocketAddr;

use voxline_ng::client::NgError;

/// Why a media command did not produce rewritten SDP or statistics.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The set has no relay (`[media] relays` empty and no local relay).
    #[error("no media relay configured")]
    NoRelays,
    /// Every relay is marked down and the call has none of its own.
    #[error("no media relay in service")]
    NoRelayInService,
    /// Every relay tried failed in a way that warrants failover; the last
    /// one's error.
    #[error("every media relay failed; last {relay}: {source}")]
    Exhausted {
        /// The last relay tried.
        relay: SocketAddr,
        /// Its error.
        source: NgError,
    },
    /// The call's relay refused the command (bad SDP, unknown tag, ...) or
    /// did not answer; there is no failover for answers, queries and
    /// deletes.
    #[error("media relay {relay}: {source}")]
    Relay {
        /// The relay.
        relay: SocketAddr,
        /// Its error.
        source: NgError,
    },
    /// No relay knows the call.
    #[error("no media relay knows call {0}")]
    UnknownCall(String),
    /// The client socket for a relay could not be opened.
    #[error("ng client for {relay}: {source}")]
    Client {
        /// The relay.
        relay: SocketAddr,
        /// The socket error.
        source: NgError,
    },
}
