//! `[replication]` configuration (documented in docs/config.md and
//! docs/deployment.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use voxline_config::{Validate, Validator};

/// Shortest shared secret accepted, in bytes.
pub const SECRET_MIN: usize = 16;

/// Location replication between sites.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Name of this site (peers name it in their `[[replication.peers]]`).
    pub site: String,
    /// Address of the replication listener peers send their changes to.
    /// Put it on the inter-site network; it serves nothing else.
    pub listen: SocketAddr,
    /// Shared secret of the replication mesh, inline (prefer `secret_file`).
    pub secret: Option<String>,
    /// File holding the shared secret (surrounding whitespace is ignored).
    pub secret_file: Option<PathBuf>,
    /// The peer sites.
    pub peers: Vec<PeerConfig>,
    /// Most changes kept for peers that are behind (one per binding: a newer
    /// change to the same binding replaces the older one). Beyond it the
    /// oldest writes are dropped and the peer gets a full resync.
    pub journal_max_entries: usize,
    /// Most changes in one request to a peer.
    pub batch_max: usize,
    /// Addresses-of-record per page of a full resync.
    pub resync_page: usize,
    /// Send everything to every peer when the node starts (it cannot know
    /// what it sent before it stopped).
    pub resync_on_start: bool,
    /// First retry delay after a failed request, ms (doubles up to
    /// `retry_max_ms`).
    pub retry_min_ms: u64,
    /// Longest retry delay, ms.
    pub retry_max_ms: u64,
    /// Timeout of one request (connect included), ms.
    pub request_timeout_ms: u64,
    /// An empty request is sent after this much idle time, so the link
    /// state is known even without traffic, ms.
    pub heartbeat_ms: u64,
    /// Requests signed further than this from our clock are refused, s.
    pub max_clock_skew_secs: u64,
    /// Replicated changes applied concurrently by the receiver (grouped by
    /// address-of-record, so one AOR's changes stay in order).
    pub apply_lanes: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            site: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            secret: None,
            secret_file: None,
            peers: Vec::new(),
            journal_max_entries: 200_000,
            batch_max: 500,
            resync_page: 200,
            resync_on_start: true,
            retry_min_ms: 100,
            retry_max_ms: 5_000,
            request_timeout_ms: 5_000,
            heartbeat_ms: 1_000,
            max_clock_skew_secs: 300,
            apply_lanes: 8,
        }
    }
}

/// One `[[replication.peers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer site's name (its `replication.site`).
    pub name: String,
    /// Its nodes' replication listeners, `host:port`, tried in order.
    pub addresses: Vec<String>,
}

/// Why the secret cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Neither `secret` nor `secret_file` is set.
    #[error("set replication.secret_file (or replication.secret)")]
    Missing,
    /// The file cannot be read.
    #[error("cannot read replication secret file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The secret is too short.
    #[error("the replication secret must be at least {SECRET_MIN} bytes")]
    TooShort,
}

impl ReplicationConfig {
    /// The shared secret: the file's content, else the inline value.
    pub fn load_secret(&self) -> Result<Vec<u8>, SecretError> {
        let secret = match (&self.secret_file, &self.secret) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|source| SecretError::Read {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .as_bytes()
                .to_vec(),
            (None, Some(s)) => s.trim().as_bytes().to_vec(),
            (None, None) => return Err(SecretError::Missing),
        };
        if secret.len() < SECRET_MIN {
            return Err(SecretError::TooShort);
        }
        Ok(secret)
    }
}

/// A site or peer name: letters, digits, `-`, `_`, `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `host:port` with a numeric port and a non-empty host.
fn valid_address(a: &str) -> bool {
    match a.rsplit_once(':') {
        Some((host, port)) => {
            !host.trim_matches(['[', ']']).is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

impl Validate for ReplicationConfig {
    fn validate(&self, v: &mut Validator) {
        if !valid_name(&self.site) {
            v.error(
                "site",
                "name this site (letters, digits, `-`, `_`, `.`; at most 64)",
            );
        }
        if self.peers.is_empty() {
            v.error("peers", "name at least one peer site");
        }
        for (i, p) in self.peers.iter().enumerate() {
            if !valid_name(&p.name) {
                v.error(
                    &format!("peers[{i}].name"),
                    "a site name (letters, digits, `-`, `_`, `.`)",
                );
            } else if p.name == self.site {
                v.error(
                    &format!("peers[{i}].name"),
                    "a peer cannot have this site's own name",
                );
            }
            if self.peers[..i].iter().any(|o| o.name == p.name) {
                v.error(
                    &format!("peers[{i}].name"),
                    format!("peer {:?} is listed twice", p.name),
                );
            }
            if p.addresses.is_empty() {
                v.error(
                    &format!("peers[{i}].addresses"),
                    "name at least one replication listener of the peer",
                );
            }
            for (j, a) in p.addresses.iter().enumerate() {
                if !valid_address(a) {
                    v.error(
                        &format!("peers[{i}].addresses[{j}]"),
                        format!("{a:?} is not host:port"),
                    );
                }
            }
        }
        match (&self.secret, &self.secret_file) {
            (None, None) => v.error("secret_file", "the replication link needs a shared secret"),
            (Some(s), None) if s.trim().len() < SECRET_MIN => {
                v.error("secret", format!("must be at least {SECRET_MIN} bytes"))
            }
            (Some(_), Some(_)) => v.error("secret", "set either secret or secret_file, not both"),
            _ => {}
        }
        if self.journal_max_entries < 1000 {
            v.error("journal_max_entries", "must be at least 1000");
        }
        if !(1..=10_000).contains(&self.batch_max) {
            v.error("batch_max", "must be between 1 and 10000");
        }
        if !(1..=10_000).contains(&self.resync_page) {
            v.error("resync_page", "must be between 1 and 10000");
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            v.error(
                "retry_max_ms",
                "retry_min_ms must be positive and retry_max_ms at least retry_min_ms",
            );
        }
        if self.request_timeout_ms < 100 {
            v.error("request_timeout_ms", "must be at least 100");
        }
        if self.heartbeat_ms < 50 {
            v.error("heartbeat_ms", "must be at least 50");
        }
        if self.max_clock_skew_secs == 0 {
            v.error("max_clock_skew_secs", "must be positive");
        }
        if !(1..=256).contains(&self.apply_lanes) {
            v.error("apply_lanes", "must be between 1 and 256");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> String {
        match voxline_config::load::<ReplicationConfig>("t.toml", text) {
            Ok(_) => String::new(),
            Err(p) => p.to_string(),
        }
    }

    const GOOD: &str = r#"
site = "fra"
listen = "10.0.0.1:7700"
secret = "0123456789abcdef0123"
[[peers]]
name = "ber"
addresses = ["10.1.0.1:7700", "repl.ber.example.net:7700"]
"#;

    #[test]
    fn a_good_section_loads() {
        let c: ReplicationConfig = voxline_config::load("t.toml", GOOD).unwrap();
        assert_eq!(c.site, "fra");
        assert_eq!(c.peers[0].addresses.len(), 2);
        assert_eq!(c.load_secret().unwrap(), b"0123456789abcdef0123");
        assert_eq!(c.journal_max_entries, 200_000);
    }

    #[test]
    fn every_problem_is_reported() {
        let p = problems(
            r#"
site = "a b"
secret = "short"
journal_max_entries = 10
batch_max = 0
[[peers]]
name = "a b"
addresses = ["nohost", "h:0"]
[[peers]]
name = "a b"
addresses = []
"#,
        );
        for key in [
            "key `site`",
            "key `secret`",
            "key `journal_max_entries`",
            "key `batch_max`",
            "key `peers[0].addresses[0]`",
            "key `peers[0].addresses[1]`",
            "key `peers[1].name`",
            "key `peers[1].addresses`",
        ] {
            assert!(p.contains(key), "{key} missing in:\n{p}");
        }
    }

    #[test]
    fn a_peer_named_like_the_site_and_a_missing_secret_are_refused() {
        let p = problems("site = \"a\"\n[[peers]]\nname = \"a\"\naddresses = [\"127.0.0.1:1\"]\n");
        assert!(p.contains("own name"), "{p}");
        assert!(p.contains("shared secret"), "{p}");
        assert!(problems("bogus = 1\n").contains("bogus"));
    }

    #[test]
    fn the_secret_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  abcdefghijklmnopqrstuvwxyz\n").unwrap();
        let c = ReplicationConfig {
            secret_file: Some(path),
            ..ReplicationConfig::default()
        };
        assert_eq!(c.load_secret().unwrap(), b"abcdefghijklmnopqrstuvwxyz");
        let missing = ReplicationConfig {
            secret_file: Some(dir.path().join("nope")),
            ..ReplicationConfig::default()
        };
        assert!(matches!(
            missing.load_secret(),
            Err(SecretError::Read { .. })
        ));
        assert!(matches!(
            ReplicationConfig::default().load_secret(),
            Err(SecretError::Missing)
        ));
    }
}
