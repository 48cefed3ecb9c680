//! `[auth]` configuration and the server secret.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use voxline_sqldb::Dialect;

use crate::digest::Algorithm;
use crate::error::{AuthError, ConfigError};
use crate::replay;

pub(crate) use voxline_sqldb::redact_url;

/// Default nonce lifetime.
pub const DEFAULT_NONCE_LIFETIME_SECS: u64 = 300;
/// Default size of the nonce-count table.
pub const DEFAULT_NC_TABLE_SIZE: usize = 262_144;
/// Default read-cache TTL.
pub const DEFAULT_CACHE_TTL_SECS: u64 = 5;
/// Default read-cache size.
pub const DEFAULT_CACHE_SIZE: usize = 100_000;
/// Default time a database operation may take before the store is
/// reported unavailable.
pub const DEFAULT_DB_TIMEOUT_MS: u64 = 1000;
/// Default connection pool size.
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 8;
/// The SQLite file in the data directory when `db_url` is not set.
pub const DEFAULT_DB_FILE: &str = voxline_sqldb::DEFAULT_SQLITE_FILE;

/// The `[auth]` section. Every field has a default; unknown keys are
/// errors. See `docs/auth-config.md`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Key for signing nonces, shared by every node of a cluster (at least
    /// 16 characters). Unset: a random secret is generated once and kept in
    /// `<data-dir>/auth-secret`.
    pub secret: Option<String>,
    /// Seconds a nonce stays valid; older ones get `stale=true`.
    pub nonce_lifetime_secs: u64,
    /// Algorithms offered in challenges and accepted in credentials.
    /// Challenge values follow this order (clients take the first they
    /// support); the default puts SHA-256 first as RFC 8760 §2.4 advises.
    pub algorithms: Vec<Algorithm>,
    /// `sqlite://…`, `postgres://…` or `mysql://…`. Unset:
    /// `sqlite://<data-dir>/voxline.db`.
    pub db_url: Option<String>,
    /// Milliseconds a database operation may take before the store counts
    /// as unavailable.
    pub db_timeout_ms: u64,
    /// Connections in the pool.
    pub db_max_connections: u32,
    /// Seconds a subscriber lookup is cached (0: no cache).
    pub cache_ttl_secs: u64,
    /// Entries in the lookup cache.
    pub cache_size: usize,
    /// Load every subscriber into the lookup cache when the node starts
    /// (up to `cache_size`), so that lookups do not reach the database
    /// until their entries expire after `cache_ttl_secs`.
    pub preload: bool,
    /// Nonces tracked for nonce-count replay protection.
    pub nc_table_size: usize,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            secret: None,
            nonce_lifetime_secs: DEFAULT_NONCE_LIFETIME_SECS,
            algorithms: Algorithm::ALL.to_vec(),
            db_url: None,
            db_timeout_ms: DEFAULT_DB_TIMEOUT_MS,
            db_max_connections: DEFAULT_DB_MAX_CONNECTIONS,
            cache_ttl_secs: DEFAULT_CACHE_TTL_SECS,
            cache_size: DEFAULT_CACHE_SIZE,
            preload: false,
            nc_table_size: DEFAULT_NC_TABLE_SIZE,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("nonce_lifetime_secs", &self.nonce_lifetime_secs)
            .field("algorithms", &self.algorithms)
            .field("db_url", &self.db_url.as_deref().map(redact_url))
            .field("db_timeout_ms", &self.db_timeout_ms)
            .field("db_max_connections", &self.db_max_connections)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("cache_size", &self.cache_size)
            .field("preload", &self.preload)
            .field("nc_table_size", &self.nc_table_size)
            .finish()
    }
}

impl AuthConfig {
    /// Every problem in the section (empty when valid).
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if let Some(secret) = &self.secret
            && secret.len() < ServerSecret::MIN_LEN
        {
            problems.push(ConfigError::SecretTooShort(secret.len()));
        }
        if self.algorithms.is_empty() {
            problems.push(ConfigError::NoAlgorithms);
        }
        for algorithm in Algorithm::ALL {
            if self.algorithms.iter().filter(|a| **a == algorithm).count() > 1 {
                problems.push(ConfigError::DuplicateAlgorithm(algorithm.token()));
            }
        }
        if self.nonce_lifetime_secs == 0 {
            problems.push(ConfigError::ZeroNonceLifetime);
        }
        if self.nc_table_size < replay::MIN_CAPACITY {
            problems.push(ConfigError::NcTableTooSmall {
                min: replay::MIN_CAPACITY,
                got: self.nc_table_size,
            });
        }
        if self.db_timeout_ms == 0 {
            problems.push(ConfigError::ZeroDbTimeout);
        }
        if let Some(url) = &self.db_url
            && Dialect::from_url(url).is_none()
        {
            problems.push(ConfigError::DbUrlScheme(redact_url(url)));
        }
        problems
    }

    /// The first problem, if any.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// The database URL: `db_url`, or the SQLite file in `data_dir`.
    pub fn database_url(&self, data_dir: &Path) -> String {
        voxline_sqldb::database_url(self.db_url.as_deref(), data_dir)
    }

    /// The server secret: `secret` if set, else the one persisted in
    /// `data_dir` (generated on first use).
    pub fn server_secret(&self, data_dir: &Path) -> Result<ServerSecret, AuthError> {
        match &self.secret {
            Some(secret) => Ok(ServerSecret::new(secret.as_bytes())?),
            None => ServerSecret::load_or_create(&data_dir.join(ServerSecret::FILE_NAME)),
        }
    }

    /// `nonce_lifetime_secs` as a duration.
    pub fn nonce_lifetime(&self) -> Duration {
        Duration::from_secs(self.nonce_lifetime_secs)
    }

    /// `cache_ttl_secs` as a duration.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// `db_timeout_ms` as a duration.
    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }
}

/// The cluster-wide secret that signs nonces and derives the fake HA1 of
/// unknown users. Its `Debug` form is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSecret(Vec<u8>);

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

impl ServerSecret {
    /// The file name of a generated secret inside the data directory.
    pub const FILE_NAME: &'static str = "auth-secret";
    /// The shortest accepted secret, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A secret from configured bytes (at least [`ServerSecret::MIN_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<ServerSecret, ConfigError> {
        if bytes.len() < ServerSecret::MIN_LEN {
            return Err(ConfigError::SecretTooShort(bytes.len()));
        }
        Ok(ServerSecret(bytes.to_vec()))
    }

    /// 32 fresh random bytes.
    pub fn generate() -> ServerSecret {
        use rand::Rng as _;
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        ServerSecret(bytes)
    }

    /// Reads the secret at `path`, or generates one and writes it there
    /// (mode 0600, parent directories created). Two processes racing on
    /// a new file end up with the same secret.
    pub fn load_or_create(path: &Path) -> Result<ServerSecret, AuthError> {
        let io_error = |source| AuthError::SecretFile {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return ServerSecret::from_file_text(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let secret = ServerSecret::generate();
        let tmp = temp_path(path);
        let written = write_private(&tmp, format!("{}\n", hex::encode(&secret.0)).as_bytes())
            .and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated a new auth server secret");
                Ok(secret)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(io_error)?;
                ServerSecret::from_file_text(path, &text)
            }
            Err(e) => Err(io_error(e)),
        }
    }

    fn from_file_text(path: &Path, text: &str) -> Result<ServerSecret, AuthError> {
        let mut bytes = vec![0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| {
            AuthError::CorruptSecretFile {
                path: path.to_path_buf(),
            }
        })?;
        Ok(ServerSecret(bytes))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A sub-key for one purpose: HMAC-SHA256(secret, label).
    pub(crate) fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(label);
        mac.finalize().into_bytes().into()
    }
}

/// A unique sibling of `path`: the temporary file is hard-linked into place,
/// so it must never be shared with another writer.
fn temp_path(path: &Path) -> PathBuf {
    use rand::Rng as _;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp.{}.{:016x}",
        std::process::id(),
        rand::rng().next_u64()
    ));
    path.with_file_name(name)
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = AuthConfig::default();
        assert_eq!(c.problems(), vec![]);
        assert_eq!(c.algorithms, vec![Algorithm::Sha256, Algorithm::Md5]);
        assert_eq!(c.nonce_lifetime(), Duration::from_secs(300));
        assert_eq!(
            c.database_url(Path::new("voxline-data")),
            "sqlite://voxline-data/voxline.db"
        );
    }

    #[test]
    fn parses_toml_and_rejects_unknown_keys() {
        let c: AuthConfig = toml::from_str(
            r#"
            secret = "0123456789abcdef0123"
            nonce_lifetime_secs = 60
            algorithms = ["MD5"]
            db_url = "postgres://voxline:pw@db.example.net/voxline"
            cache_ttl_secs = 0
            "#,
        )
        .unwrap();
        assert_eq!(c.nonce_lifetime_secs, 60);
        assert_eq!(c.algorithms, vec![Algorithm::Md5]);
        assert_eq!(c.cache_size, DEFAULT_CACHE_SIZE);
        assert!(c.validate().is_ok());
        let debug = format!("{c:?}");
        assert!(!debug.contains("0123456789abcdef0123"), "{debug}");
        assert!(!debug.contains(":pw@"), "{debug}");

        let err = toml::from_str::<AuthConfig>("nonce_lifetime = 60").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = toml::from_str::<AuthConfig>("algorithms = [\"SHA-512\"]").unwrap_err();
        assert!(err.to_string().contains("SHA-512"), "{err}");
    }

    #[test]
    fn reports_every_problem() {
        let c = AuthConfig {
            secret: Some("short".into()),
            nonce_lifetime_secs: 0,
            algorithms: vec![Algorithm::Md5, Algorithm::Md5],
            db_url: Some("redis://x".into()),
            db_timeout_ms: 0,
            nc_table_size: 1,
            ..AuthConfig::default()
        };
        assert_eq!(
            c.problems(),
            vec![
                ConfigError::SecretTooShort(5),
                ConfigError::DuplicateAlgorithm("MD5"),
                ConfigError::ZeroNonceLifetime,
                ConfigError::NcTableTooSmall {
                    min: replay::MIN_CAPACITY,
                    got: 1
                },
                ConfigError::ZeroDbTimeout,
                ConfigError::DbUrlScheme("redis://x".into()),
            ]
        );
        let empty = AuthConfig {
            algorithms: vec![],
            ..AuthConfig::default()
        };
        assert_eq!(empty.validate(), Err(ConfigError::NoAlgorithms));
    }

    #[test]
    fn secret_is_generated_once_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested/data");
        let config = AuthConfig::default();
        let first = config.server_secret(&data_dir).unwrap();
        let second = config.server_secret(&data_dir).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.as_bytes().len(), 32);
        let path = data_dir.join(ServerSecret::FILE_NAME);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 1);
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            config.server_secret(&data_dir),
            Err(AuthError::CorruptSecretFile { .. })
        ));
    }

    #[test]
    fn configured_secret_wins() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuthConfig {
            secret: Some("a cluster-wide secret".into()),
            ..AuthConfig::default()
        };
        let secret = config.server_secret(dir.path()).unwrap();
        assert_eq!(secret.as_bytes(), b"a cluster-wide secret");
        assert!(!dir.path().join(ServerSecret::FILE_NAME).exists());
        assert_ne!(secret.derive(b"a"), secret.derive(b"b"));
    }

    #[test]
    fn concurrent_creation_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth-secret");
        let secrets: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || ServerSecret::load_or_create(&path).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(secrets.windows(2).all(|w| w[0] == w[1]));
    }
}
