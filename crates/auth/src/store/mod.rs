//! The subscriber store: one code path over SQLite, PostgreSQL and MySQL
//! (a small enum over the three sqlx pools), with a short-TTL read cache in
//! front of lookups.

mod cache;
mod sql;

use std::borrow::Cow;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use voxline_sqldb::{OpenOptions, SqlPool, with_pool, within};

pub use voxline_sqldb::Dialect;

use crate::config::{AuthConfig, redact_url};
use crate::digest::{Algorithm, Ha1, StoredCredentials};
use crate::error::{AuthError, StoreFailure};
use cache::{Cached, CredentialCache};
use sql::{MIGRATIONS, Statements, statements};

/// How a store behaves; [`StoreOptions::from`] an [`AuthConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Time one operation may take (connection included) before it fails
    /// with [`AuthError::StoreUnavailable`].
    pub timeout: Duration,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long lookups are cached (zero: no cache).
    pub cache_ttl: Duration,
    /// How many lookups are cached.
    pub cache_size: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions::from(&AuthConfig::default())
    }
}

impl From<&AuthConfig> for StoreOptions {
    fn from(config: &AuthConfig) -> StoreOptions {
        StoreOptions {
            timeout: config.db_timeout(),
            max_connections: config.db_max_connections.max(1),
            cache_ttl: config.cache_ttl(),
            cache_size: config.cache_size,
        }
    }
}

/// One subscriber to provision with [`SubscriberStore::import`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewSubscriber<'a> {
    /// The user part (case-sensitive).
    pub username: &'a str,
    /// The domain (stored lowercase).
    pub domain: &'a str,
    /// The SIP password (only its HA1 hashes are stored).
    pub password: &'a str,
}

/// What [`SubscriberStore::import`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Subscribers that did not exist before.
    pub added: u64,
    /// Existing subscribers whose password was set.
    pub updated: u64,
}

/// A provisioned subscriber as listed (no credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscriber {
    /// The user part (case-sensitive).
    pub username: String,
    /// The domain, lowercase.
    pub domain: String,
    /// When it was added.
    pub created_at: SystemTime,
    /// When its password was last set.
    pub updated_at: SystemTime,
}

/// Splits `user@domain` (an optional `sip:` prefix is ignored) for the CLI.
pub fn parse_address(address: &str) -> Result<(&str, &str), AuthError> {
    let bare = address.strip_prefix("sip:").unwrap_or(address);
    match bare.split_once('@') {
        Some((user, domain)) if !user.is_empty() && !domain.is_empty() => Ok((user, domain)),
        _ => Err(AuthError::InvalidAddress(address.to_string())),
    }
}

fn validate_username(username: &str) -> Result<(), AuthError> {
    let ok = !username.is_empty()
        && username.chars().count() <= 64
        && !username
            .chars()
            .any(|c| c == ':' || c == '@' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidUsername(username.to_string()))
    }
}

fn normalize_domain(domain: &str) -> Result<String, AuthError> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && !domain
            .chars()
            .any(|c| matches!(c, '@' | '/' | '"' | '\\') || c.is_whitespace() || c.is_control());
    if ok {
        Ok(domain.to_ascii_lowercase())
    } else {
        Err(AuthError::InvalidDomain(domain.to_string()))
    }
}

/// The cache counters, registered once (created on first use, after the
/// node has installed its recorder).
struct CacheMetrics {
    hits: metrics::Counter,
    misses: metrics::Counter,
}

static CACHE_METRICS: LazyLock<CacheMetrics> = LazyLock::new(|| CacheMetrics {
    hits: metrics::counter!("voxline_auth_cache_hits_total"),
    misses: metrics::counter!("voxline_auth_cache_misses_total"),
});

fn lower(domain: &str) -> Cow<'_, str> {
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(domain.to_ascii_lowercase())
    } else {
        Cow::Borrowed(domain)
    }
}

fn unix_secs(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_unix_secs(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

const PADDING_MD5: &str = "0123456789abcdef0123456789abcdef";
const PADDING_SHA256: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Subscribers and their HA1 values in SQL.
pub struct SubscriberStore {
    pool: SqlPool,
    sql: &'static Statements,
    cache: Option<CredentialCache>,
    timeout: Duration,
    started: Instant,
    /// Seconds since `started` of the last outage warning (rate limit).
    last_warning: AtomicU64,
}

impl std::fmt::Debug for SubscriberStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberStore")
            .field("dialect", &self.pool.dialect())
            .field("timeout", &self.timeout)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl SubscriberStore {
    /// Opens (and migrates) the database at `url` with default options:
    /// `sqlite://path/voxline.db` (file and directory created if missing,
    /// WAL mode), `postgres://user:pass@host/db` or `mysql://user:pass@host/db`.
    pub async fn open(url: &str) -> Result<SubscriberStore, AuthError> {
        SubscriberStore::open_with(url, &StoreOptions::default()).await
    }

    /// Validates `config` and opens the database it names (or
    /// `<data_dir>/voxline.db`).
    pub async fn from_config(
        config: &AuthConfig,
        data_dir: &Path,
    ) -> Result<SubscriberStore, AuthError> {
        config.validate()?;
        let store =
            SubscriberStore::open_with(&config.database_url(data_dir), &StoreOptions::from(config))
                .await?;
        if config.preload {
            let loaded = store.preload().await?;
            tracing::info!(subscribers = loaded, "subscriber credentials preloaded");
        }
        Ok(store)
    }

    /// Loads every subscriber's credentials into the lookup cache (as far
    /// as it holds them); returns how many were loaded. Without a cache,
    /// nothing is loaded.
    pub async fn preload(&self) -> Result<usize, AuthError> {
        let Some(cache) = &self.cache else {
            return Ok(0);
        };
        let query = self.sql.all_credentials;
        // Reading a whole table may take longer than one lookup may.
        let limit = self.timeout.max(Duration::from_secs(60));
        let rows: Vec<(String, String, String, String)> = within(limit, async {
            with_pool!(&self.pool, |p| sqlx::query_as(query).fetch_all(p).await)
        })
        .await
        .map_err(|f| self.unavailable("preload", f))?;
        let now = Instant::now();
        let mut loaded = 0;
        for (username, domain, md5, sha256) in rows {
            if loaded >= cache.capacity() {
                tracing::warn!(
                    cache_size = cache.capacity(),
                    "more subscribers than the lookup cache holds; the rest is looked up on demand"
                );
                break;
            }
            let (Some(md5), Some(sha256)) = (
                Ha1::from_hex(Algorithm::Md5, &md5),
                Ha1::from_hex(Algorithm::Sha256, &sha256),
            ) else {
                continue;
            };
            cache.insert(
                &username,
                &domain,
                Some(StoredCredentials { md5, sha256 }),
                now,
            );
            loaded += 1;
        }
        Ok(loaded)
    }

    /// Opens (and migrates) the database at `url`.
    pub async fn open_with(
        url: &str,
        options: &StoreOptions,
    ) -> Result<SubscriberStore, AuthError> {
        let timeout = options.timeout;
        let open = OpenOptions {
            timeout,
            max_connections: options.max_connections,
        };
        let pool = SqlPool::open(url, &open, &MIGRATIONS).await?;
        let dialect = pool.dialect();
        let cache = (!options.cache_ttl.is_zero() && options.cache_size > 0)
            .then(|| CredentialCache::new(options.cache_ttl, options.cache_size));
        tracing::debug!(dialect = dialect.name(), url = %redact_url(url), "subscriber store open");
        Ok(SubscriberStore {
            pool,
            sql: statements(dialect),
            cache,
            timeout,
            started: Instant::now(),
            last_warning: AtomicU64::new(u64::MAX),
        })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// Closes the pool's connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn run<T>(
        &self,
        operation: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreFailure> {
        within(self.timeout, operation).await
    }

    /// Counts the outage and logs it (at most once a second).
    fn unavailable(&self, operation: &'static str, failure: StoreFailure) -> AuthError {
        metrics::counter!("voxline_auth_store_unavailable_total", "operation" => operation)
            .increment(1);
        let second = self.started.elapsed().as_secs();
        let last = self.last_warning.load(Ordering::Relaxed);
        if last != second
            && self
                .last_warning
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dialect = self.dialect().name(),
                operation,
                error = %failure,
                "subscriber store unavailable"
            );
        }
        AuthError::StoreUnavailable(failure)
    }

    /// The stored credentials of `username@domain` (username
    /// case-sensitive, domain not), `None` if there is no such subscriber.
    /// Served from the cache when fresh; misses are cached too.
    pub async fn lookup(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<StoredCredentials>, AuthError> {
        // Longer names cannot be provisioned (64 characters, 253 for a
        // domain): answer without touching the cache or the database, so
        // floods of junk names cannot fill either.
        if username.len() > 4 * 64 || domain.len() > 253 {
            return Ok(None);
        }
        let domain = lower(domain);
        if let Some(cache) = &self.cache {
            if let Cached::Hit(value) = cache.get(username, &domain, Instant::now()) {
                CACHE_METRICS.hits.increment(1);
                return Ok(value);
            }
            CACHE_METRICS.misses.increment(1);
        }
        // Boxed: a cache hit, which never waits, then builds a future of a
        // few words instead of one sized for the database query.
        Box::pin(self.lookup_in_database(username, domain)).await
    }

    /// [`SubscriberStore::lookup`] past the cache: asks the database and
    /// caches the answer.
    async fn lookup_in_database(
        &self,
        username: &str,
        domain: Cow<'_, str>,
    ) -> Result<Option<StoredCredentials>, AuthError> {
        let query = self.sql.lookup;
        let row: Option<(String, String)> = self
            .run(async {
                with_pool!(&self.pool, |p| {
                    sqlx::query_as(query)
                        .bind(username)
                        .bind(domain.as_ref())
                        .fetch_optional(p)
                        .await
                })
            })
            .await
            .map_err(|f| self.unavailable("lookup", f))?;
        let value = match row {
            None => {
                // Mirror the work of a found row (two strings decoded and
                // checked) so that unknown users cost what known ones do.
                let padding = (PADDING_MD5.to_string(), PADDING_SHA256.to_string());
                std::hint::black_box((
                    Ha1::from_hex(Algorithm::Md5, &padding.0),
                    Ha1::from_hex(Algorithm::Sha256, &padding.1),
                ));
                None
            }
            Some((md5, sha256)) => {
                let corrupt = || AuthError::CorruptCredentials {
                    username: username.to_string(),
                    domain: domain.to_string(),
                };
                Some(StoredCredentials {
                    md5: Ha1::from_hex(Algorithm::Md5, &md5).ok_or_else(corrupt)?,
                    sha256: Ha1::from_hex(Algorithm::Sha256, &sha256).ok_or_else(corrupt)?,
                })
            }
        };
        if let Some(cache) = &self.cache {
            cache.insert(username, &domain, value, Instant::now());
        }
        Ok(value)
    }

    /// Adds a subscriber; fails with [`AuthError::SubscriberExists`] if
    /// `username@domain` is already provisioned. Only HA1 values are stored.
    pub async fn add(&self, username: &str, domain: &str, password: &str) -> Result<(), AuthError> {
        validate_username(username)?;
        let domain = normalize_domain(domain)?;
        if password.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        let credentials = StoredCredentials::from_password(username, &domain, password);
        let now = unix_secs(SystemTime::now());
        let query = self.sql.insert;
        let result = self
            .run(async {
                with_pool!(&self.pool, |p| {
                    sqlx::query(query)
                        .bind(username)
                        .bind(domain.as_str())
                        .bind(credentials.md5.as_hex())
                        .bind(credentials.sha256.as_hex())
                        .bind(now)
                        .bind(now)
                        .execute(p)
                        .await
                        .map(|_| ())
                })
            })
            .await;
        self.invalidate(username, &domain);
        match result {
            Ok(()) => Ok(()),
            Err(StoreFailure::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                Err(AuthError::SubscriberExists {
                    username: username.to_string(),
                    domain,
                })
            }
            Err(failure) => Err(self.unavailable("add", failure)),
        }
    }

    /// Removes a subscriber; [`AuthError::SubscriberNotFound`] if absent.
    pub async fn remove(&self, username: &str, domain: &str) -> Result<(), AuthError> {
        let domain = lower(domain);
        let query = self.sql.delete;
        let affected = self
            .run(async {
                with_pool!(&self.pool, |p| {
                    sqlx::query(query)
                        .bind(username)
                        .bind(domain.as_ref())
                        .execute(p)
                        .await
                        .map(|r| r.rows_affected())
                })
            })
            .await
            .map_err(|f| self.unavailable("remove", f))?;
        self.invalidate(username, &domain);
        if affected == 0 {
            return Err(AuthError::SubscriberNotFound {
                username: username.to_string(),
                domain: domain.into_owned(),
            });
        }
        Ok(())
    }

    /// Sets a new password; [`AuthError::SubscriberNotFound`] if absent.
    pub async fn set_password(
        &self,
        username: &str,
        domain: &str,
        password: &str,
    ) -> Result<(), AuthError> {
        if password.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        let domain = lower(domain);
        let credentials = StoredCredentials::from_password(username, &domain, password);
        let now = unix_secs(SystemTime::now());
        let query = self.sql.update_ha1;
        let affected = self
            .run(async {
                with_pool!(&self.pool, |p| {
                    sqlx::query(query)
                        .bind(credentials.md5.as_hex())
                        .bind(credentials.sha256.as_hex())
                        .bind(now)
                        .bind(username)
                        .bind(domain.as_ref())
                        .execute(p)
                        .await
                        .map(|r| r.rows_affected())
                })
            })
            .await
            .map_err(|f| self.unavailable("set_password", f))?;
        self.invalidate(username, &domain);
        if affected == 0 {
            return Err(AuthError::SubscriberNotFound {
                username: username.to_string(),
                domain: domain.into_owned(),
            });
        }
        Ok(())
    }

    /// Provisions many subscribers in one database transaction (bulk
    /// import): each is added, or gets its password changed when it exists
    /// already, so an import can be run again. Every entry is checked
    /// first; an invalid one fails the whole batch before anything is
    /// written. Keep batches to a few thousand entries.
    pub async fn import(&self, batch: &[NewSubscriber<'_>]) -> Result<Imported, AuthError> {
        let mut rows = Vec::with_capacity(batch.len());
        for entry in batch {
            validate_username(entry.username)?;
            let domain = normalize_domain(entry.domain)?;
            if entry.password.is_empty() {
                return Err(AuthError::EmptyPassword);
            }
            let credentials =
                StoredCredentials::from_password(entry.username, &domain, entry.password);
            rows.push((
                entry.username,
                domain,
                credentials.md5.as_hex().to_owned(),
                credentials.sha256.as_hex().to_owned(),
            ));
        }
        let now = unix_secs(SystemTime::now());
        let (update, insert) = (self.sql.update_ha1, self.sql.insert);
        let write = async {
            with_pool!(&self.pool, |p| {
                let mut tx = p.begin().await?;
                let mut imported = Imported::default();
                for (username, domain, md5, sha256) in &rows {
                    let changed = sqlx::query(update)
                        .bind(md5.as_str())
                        .bind(sha256.as_str())
                        .bind(now)
                        .bind(*username)
                        .bind(domain.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if changed > 0 {
                        imported.updated += 1;
                        continue;
                    }
                    sqlx::query(insert)
                        .bind(*username)
                        .bind(domain.as_str())
                        .bind(md5.as_str())
                        .bind(sha256.as_str())
                        .bind(now)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    imported.added += 1;
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(imported)
            })
        };
        // A batch may take longer than one lookup is allowed to.
        let limit = self.timeout.max(Duration::from_secs(60));
        let result = within(limit, write).await;
        if let Some(cache) = &self.cache {
            cache.clear();
        }
        result.map_err(|f| self.unavailable("import", f))
    }

    /// Subscribers of one domain, or of all domains, sorted by domain and
    /// username.
    pub async fn list(&self, domain: Option<&str>) -> Result<Vec<Subscriber>, AuthError> {
        type Row = (String, String, i64, i64);
        let rows: Vec<Row> = match domain {
            None => {
                let query = self.sql.list_all;
                self.run(async {
                    with_pool!(&self.pool, |p| sqlx::query_as(query).fetch_all(p).await)
                })
                .await
            }
            Some(domain) => {
                let domain = lower(domain);
                let query = self.sql.list_domain;
                self.run(async {
                    with_pool!(&self.pool, |p| {
                        sqlx::query_as(query)
                            .bind(domain.as_ref())
                            .fetch_all(p)
                            .await
                    })
                })
                .await
            }
        }
        .map_err(|f| self.unavailable("list", f))?;
        Ok(rows
            .into_iter()
            .map(|(username, domain, created, updated)| Subscriber {
                username,
                domain,
                created_at: from_unix_secs(created),
                updated_at: from_unix_secs(updated),
            })
            .collect())
    }

    fn invalidate(&self, username: &str, domain: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(username, domain);
        }
    }

    /// Empties the lookup cache (so the next lookups see the database).
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("alice@localhost").unwrap(),
            ("alice", "localhost")
        );
        assert_eq!(
            parse_address("sip:bob@Example.COM").unwrap(),
            ("bob", "Example.COM")
        );
        assert!(parse_address("alice").is_err());
        assert!(parse_address("@localhost").is_err());
        assert!(parse_address("alice@").is_err());
    }

    #[test]
    fn validation() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("+4930123456").is_ok());
        for bad in ["", "a:b", "a@b", "a b", "a\u{0}b", &"x".repeat(65)] {
            assert!(
                matches!(validate_username(bad), Err(AuthError::InvalidUsername(_))),
                "{bad:?}"
            );
        }
        assert_eq!(normalize_domain("LocalHost").unwrap(), "localhost");
        assert_eq!(normalize_domain("[::1]").unwrap(), "[::1]");
        for bad in ["", "a@b", "a/b", "a b", "a\"b", &"x".repeat(254)] {
            assert!(
                matches!(normalize_domain(bad), Err(AuthError::InvalidDomain(_))),
                "{bad:?}"
            );
        }
    }
}
