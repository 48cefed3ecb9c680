//! Error types of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in the subscriber store, the secret file or
/// the configuration. Authentication *decisions* (challenge, accept) are not
/// errors: see [`crate::Decision`].
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The subscriber database did not answer in time or refused the query.
    /// The caller answers 500/503; the failure is logged and counted as
    /// `voxline_auth_store_unavailable_total`.
    #[error("subscriber store unavailable")]
    StoreUnavailable(#[source] StoreFailure),
    /// `add` of a subscriber that already exists.
    #[error("subscriber {username}@{domain} already exists")]
    SubscriberExists {
        /// The user part.
        username: String,
        /// The domain (realm).
        domain: String,
    },
    /// `remove` or `set_password` of a subscriber that does not exist.
    #[error("no subscriber {username}@{domain}")]
    SubscriberNotFound {
        /// The user part.
        username: String,
        /// The domain (realm).
        domain: String,
    },
    /// A username that cannot be provisioned (empty, too long, or containing
    /// `:`, `@`, whitespace or control characters).
    #[error(
        "invalid username {0:?}: 1 to 64 characters, no ':', '@', whitespace or control characters"
    )]
    InvalidUsername(String),
    /// A domain that cannot be provisioned.
    #[error(
        "invalid domain {0:?}: 1 to 253 characters, no '@', '/', quotes, backslashes, whitespace or control characters"
    )]
    InvalidDomain(String),
    /// An empty password.
    #[error("the password must not be empty")]
    EmptyPassword,
    /// A subscriber address that is not `user@domain`.
    #[error("invalid subscriber address {0:?}: expected user@domain")]
    InvalidAddress(String),
    /// A database URL with an unknown scheme.
    #[error("unsupported database URL {0:?}: expected sqlite://, postgres:// or mysql://")]
    UnsupportedDatabaseUrl(String),
    /// The database could not be opened (bad URL, unreachable server at
    /// startup, unwritable file).
    #[error("cannot open the subscriber database")]
    Open(#[source] sqlx::Error),
    /// The embedded schema migrations failed.
    #[error("subscriber schema migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// A stored row holds an HA1 that is not the hex digest it should be.
    #[error("stored credentials of {username}@{domain} are corrupt")]
    CorruptCredentials {
        /// The user part.
        username: String,
        /// The domain (realm).
        domain: String,
    },
    /// The persisted server secret could not be read or written.
    #[error("server secret file {}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The persisted server secret exists but is not 64 hex digits.
    #[error("server secret file {} is not 64 hex digits", path.display())]
    CorruptSecretFile {
        /// The file.
        path: PathBuf,
    },
    /// An invalid [`crate::AuthConfig`].
    #[error(transparent)]
    Config(#[from] ConfigError),
}

pub use voxline_sqldb::StoreFailure;

impl From<voxline_sqldb::OpenError> for AuthError {
    fn from(e: voxline_sqldb::OpenError) -> AuthError {
        match e {
            voxline_sqldb::OpenError::UnsupportedUrl(url) => AuthError::UnsupportedDatabaseUrl(url),
            voxline_sqldb::OpenError::Connect(e) => AuthError::Open(e),
            voxline_sqldb::OpenError::Migrate(e) => AuthError::Migration(e),
        }
    }
}

/// A problem in [`crate::AuthConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `secret` is set but shorter than 16 bytes.
    #[error("auth.secret must be at least 16 characters (got {0})")]
    SecretTooShort(usize),
    /// `algorithms` is empty.
    #[error("auth.algorithms must name at least one of \"SHA-256\", \"MD5\"")]
    NoAlgorithms,
    /// `algorithms` names an algorithm twice.
    #[error("auth.algorithms lists {0} twice")]
    DuplicateAlgorithm(&'static str),
    /// `nonce_lifetime_secs` is zero.
    #[error("auth.nonce_lifetime_secs must be at least 1")]
    ZeroNonceLifetime,
    /// `nc_table_size` is below the minimum.
    #[error("auth.nc_table_size must be at least {min} (got {got})")]
    NcTableTooSmall {
        /// The minimum.
        min: usize,
        /// The configured value.
        got: usize,
    },
    /// `db_timeout_ms` is zero.
    #[error("auth.db_timeout_ms must be at least 1")]
    ZeroDbTimeout,
    /// `db_url` has an unknown scheme.
    #[error("auth.db_url {0:?} must start with sqlite://, postgres:// or mysql://")]
    DbUrlScheme(String),
}

/// A malformed `Authorization`/`WWW-Authenticate` digest value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The scheme is not `Digest`.
    #[error("not a Digest credential or challenge")]
    NotDigest,
    /// A parameter has no `=value`.
    #[error("parameter without a value at byte {0}")]
    MissingValue(usize),
    /// A quoted string is not closed.
    #[error("unterminated quoted string at byte {0}")]
    UnterminatedQuote(usize),
    /// Something other than `,` between parameters.
    #[error("unexpected character at byte {0}")]
    Unexpected(usize),
    /// The same parameter twice.
    #[error("parameter {0} appears twice")]
    Duplicate(String),
    /// A required parameter is missing.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// The challenge offers a qop but not `auth`.
    #[error("unsupported qop {0:?}")]
    UnsupportedQop(String),
    /// The challenge names an algorithm this crate does not implement.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
}
