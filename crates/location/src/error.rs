//! The store's error type.

/// Why a location operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// A binding with the same Call-ID has an equal or higher CSeq
    /// (RFC 3261 §10.3 step 7): the whole REGISTER is refused.
    #[error(
        "out-of-order REGISTER: CSeq {cseq} is not above stored CSeq {stored_cseq} for the same Call-ID"
    )]
    OutOfOrder {
        /// CSeq of the refused request.
        cseq: u32,
        /// CSeq already stored for that Call-ID.
        stored_cseq: u32,
    },
    /// The AOR would exceed its contact limit and the policy is to refuse.
    #[error("too many contacts for this address-of-record (limit {limit})")]
    TooManyContacts {
        /// The configured per-AOR limit.
        limit: usize,
    },
    /// The request carries a value the store cannot keep.
    #[error("invalid location input: {0}")]
    Invalid(InvalidInput),
    /// The backend cannot be reached (Redis down, command timeout). The
    /// registrar should answer 503 with Retry-After.
    #[error("location store unavailable: {0}")]
    Unavailable(#[source] Unreachable),
    /// The backend answered, but with an error that is not about reachability.
    #[error("location backend error: {0}")]
    Backend(#[source] redis::RedisError),
    /// Concurrent writers kept changing the same AOR; gave up after retries.
    #[error("too much write contention on one address-of-record")]
    Contention,
    /// Stored data could not be decoded.
    #[error("stored location data is corrupt: {0}")]
    Corrupt(&'static str),
    /// Writing or reading the data directory failed.
    #[error("location persistence I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration is not usable.
    #[error("location configuration: {0}")]
    Config(#[from] ConfigError),
}

/// Why the backend is unreachable.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// The command did not complete within the configured timeout.
    #[error("command timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// Connecting or talking to the server failed.
    #[error("connection failed: {0}")]
    Connection(#[source] redis::RedisError),
}

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The backend URL has an unknown scheme.
    #[error(
        "unknown location backend url `{0}` (expected `memory`, `redis://`, `rediss://` or `redis+cluster://`)"
    )]
    UnknownBackend(String),
    /// The Redis URL was rejected by the client.
    #[error("bad redis url: {0}")]
    RedisUrl(#[source] redis::RedisError),
    /// `shards` must be a power of two between 1 and 4096.
    #[error("shards must be a power of two between 1 and 4096, got {0}")]
    Shards(usize),
}

/// What is wrong with an input value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// The address-of-record is empty.
    #[error("empty address-of-record")]
    EmptyAor,
    /// A string field is longer than the store accepts.
    #[error("field too long: {0}")]
    TooLong(&'static str),
    /// q above 1000.
    #[error("q above 1000")]
    QOutOfRange,
    /// Empty contact URI.
    #[error("empty contact URI")]
    EmptyContact,
}

impl From<InvalidInput> for LocationError {
    fn from(e: InvalidInput) -> Self {
        LocationError::Invalid(e)
    }
}
