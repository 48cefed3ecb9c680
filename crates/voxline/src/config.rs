//! The node configuration: one TOML file, every key documented in
//! `docs/config.md`, unknown keys rejected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use voxline_admin::AdminConfig;
use voxline_auth::AuthConfig;
use voxline_cdr::CdrConfig;
use voxline_config::{Problems, Validate, Validator};
use voxline_dialog::DialogConfig;
use voxline_edge::{DispatcherConfig, EdgeConfig};
use voxline_location::LocationConfig;
use voxline_media::MediaConfig;
use voxline_partition::{PartitionMap, PartitionsConfig};
use voxline_proxy::ProxyConfig;
use voxline_registrar::RegistrarConfig;
use voxline_relay::RelayConfig;
use voxline_replication::ReplicationConfig;
use voxline_transaction::TransportKind;

/// The embedded all-in-one default (`voxline run` without `--config`).
pub const DEFAULT_CONFIG: &str = include_str!("../../../examples/all-in-one.toml");

/// Name used for the embedded default in messages.
pub const DEFAULT_ORIGIN: &str = "<embedded default>";

/// A role a node can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// Public SIP entry: load balancing, Path, NAT handling, flood protection.
    Edge,
    /// REGISTER processing, digest auth, user location.
    Registrar,
    /// Call routing.
    Proxy,
    /// RTP/RTCP media relay controlled over ng.
    Relay,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// `[node]`
    pub node: NodeSection,
    /// `[log]`
    pub log: LogSection,
    /// `[sip]`
    pub sip: SipSection,
    /// `[registrar]`
    pub registrar: RegistrarConfig,
    /// `[proxy]`
    pub proxy: ProxyConfig,
    /// `[dialog]`
    pub dialog: DialogConfig,
    /// `[auth]`
    pub auth: AuthConfig,
    /// `[location]`
    pub location: LocationConfig,
    /// `[relay]`
    pub relay: RelayConfig,
    /// `[media]`: the relays the proxy anchors calls on (docs/media.md).
    pub media: MediaConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[overload]`
    pub overload: voxline_overload::OverloadConfig,
    /// `[cdr]`: call detail records (docs/cdr.md).
    pub cdr: CdrConfig,
    /// `[edge]`: the edge role (see docs/edge.md).
    pub edge: EdgeConfig,
    /// `[dispatcher]`: the edge's destination sets and health checks.
    pub dispatcher: DispatcherConfig,
    /// `[partitions]`: which registrar node serves which users (absent:
    /// every node serves every user).
    pub partitions: Option<PartitionsConfig>,
    /// `[replication]`: location replication to peer sites
    /// (docs/deployment.md); absent: this site stands alone.
    pub replication: Option<ReplicationConfig>,
}

/// `[node]`: identity, roles and storage of this process.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Node name in logs and metrics.
    pub name: String,
    /// Roles this node runs.
    pub roles: Vec<RoleName>,
    /// Directory for SQLite files, snapshots and logs.
    pub data_dir: PathBuf,
    /// Runtime worker threads (0: one per CPU).
    pub threads: usize,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: "voxline".into(),
            roles: vec![RoleName::Registrar, RoleName::Proxy, RoleName::Relay],
            data_dir: PathBuf::from("./voxline-data"),
            threads: 0,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter (`info`, `voxline_server=debug,info`); the
    /// `VOXLINE_LOG` environment variable overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[sip]`: listeners, domains and protocol settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipSection {
    /// Domains whose subscribers this node serves.
    pub domains: Vec<String>,
    /// Extra host names that address this node (besides its listener IPs).
    pub aliases: Vec<String>,
    /// Listening sockets.
    pub listen: Vec<ListenEntry>,
    /// Server / User-Agent header value.
    pub server_header: String,
    /// Most live transactions; above it new requests get 503.
    pub max_transactions: usize,
    /// Transaction table shards (0: one per CPU).
    pub shards: usize,
    /// `[sip.timers]`
    pub timers: TimersSection,
    /// `[sip.transport]`
    pub transport: TransportSection,
}

impl Default for SipSection {
    fn default() -> Self {
        SipSection {
            domains: vec!["localhost".into(), "127.0.0.1".into()],
            aliases: Vec::new(),
            listen: vec![
                ListenEntry {
                    transport: "udp".into(),
                    address: SocketAddr::from(([127, 0, 0, 1], 5060)),
                },
                ListenEntry {
                    transport: "tcp".into(),
                    address: SocketAddr::from(([127, 0, 0, 1], 5060)),
                },
            ],
            server_header: concat!("Voxline/", env!("CARGO_PKG_VERSION")).into(),
            max_transactions: 1_000_000,
            shards: 0,
            timers: TimersSection::default(),
            transport: TransportSection::default(),
        }
    }
}

/// One `[[sip.listen]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenEntry {
    /// `udp` or `tcp`.
    pub transport: String,
    /// `ip:port`.
    pub address: SocketAddr,
}

/// `[sip.timers]`: RFC 3261 base timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimersSection {
    /// T1, the round-trip estimate, ms.
    pub t1_ms: u64,
    /// T2, the cap on non-INVITE retransmit intervals, ms.
    pub t2_ms: u64,
    /// T4, the time a message may stay in the network, ms.
    pub t4_ms: u64,
}

impl Default for TimersSection {
    fn default() -> Self {
        TimersSection {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

/// `[sip.transport]`: socket tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSection {
    /// UDP sockets per listener (0: one per CPU).
    pub udp_workers: usize,
    /// Kernel receive buffer per UDP socket, bytes.
    pub udp_recv_buffer: usize,
    /// Largest message accepted, bytes.
    pub max_message_size: usize,
    /// Most TCP connections.
    pub tcp_max_connections: usize,
    /// Idle TCP connections are closed after this many seconds.
    pub tcp_idle_timeout_secs: u64,
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            udp_workers: 0,
            udp_recv_buffer: 4 << 20,
            max_message_size: 65_535,
            tcp_max_connections: 10_000,
            tcp_idle_timeout_secs: 600,
        }
    }
}

impl NodeConfig {
    /// Loads and validates a file.
    pub fn load_file(path: &Path) -> Result<NodeConfig, LoadError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| LoadError::Read(path.to_owned(), e))?;
        Self::load_str(&path.display().to_string(), &text).map_err(LoadError::Invalid)
    }

    /// Loads and validates TOML text read from `origin`.
    pub fn load_str(origin: &str, text: &str) -> Result<NodeConfig, Problems> {
        voxline_config::load(origin, text)
    }

    /// The embedded default.
    pub fn embedded_default() -> Result<NodeConfig, Problems> {
        Self::load_str(DEFAULT_ORIGIN, DEFAULT_CONFIG)
    }

    /// Whether the node runs `role`.
    pub fn has_role(&self, role: RoleName) -> bool {
        self.node.roles.contains(&role)
    }

    /// The transport settings of the SIP core.
    pub fn transport_config(&self) -> voxline_transport::TransportConfig {
        let t = &self.sip.transport;
        voxline_transport::TransportConfig {
            listen: self
                .sip
                .listen
                .iter()
                .filter_map(|l| {
                    Some(voxline_transport::ListenSpec {
                        transport: TransportKind::parse(&l.transport)?,
                        address: l.address,
                    })
                })
                .collect(),
            udp_workers: t.udp_workers,
            udp_recv_buffer: t.udp_recv_buffer,
            max_message_size: t.max_message_size,
            tcp_max_connections: t.tcp_max_connections,
            tcp_idle_timeout: Duration::from_secs(t.tcp_idle_timeout_secs),
            ..voxline_transport::TransportConfig::default()
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// The file has problems.
    Invalid(Problems),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            LoadError::Invalid(p) => write!(f, "{p}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl Validate for NodeConfig {
    fn validate(&self, v: &mut Validator) {
        v.section("node", &self.node);
        v.section("sip", &self.sip);
        v.section("registrar", &self.registrar);
        v.section("proxy", &self.proxy);
        v.section("overload", &self.overload);
        v.section("cdr", &self.cdr);
        v.section("dialog", &self.dialog);
        MediaRules(self).validate(v);
        v.section("", &EdgeRules(self));
        ReplicationRules(self).validate(v);
        for problem in self.auth.problems() {
            v.error("auth", problem.to_string());
        }
        if self.has_role(RoleName::Relay) {
            v.section("relay", &RelayRules(&self.relay));
        }
        if self.has_role(RoleName::Registrar) && self.sip.domains.is_empty() {
            v.error(
                "sip.domains",
                "the registrar role needs at least one domain",
            );
        }
    }
}

impl Validate for NodeSection {
    fn validate(&self, v: &mut Validator) {
        if self.roles.is_empty() {
            v.error(
                "roles",
                "name at least one role: edge, registrar, proxy, relay",
            );
        }
        for (i, r) in self.roles.iter().enumerate() {
            if self.roles[..i].contains(r) {
                v.error("roles", format!("role {r:?} is listed twice"));
            }
        }
        if self.name.trim().is_empty() {
            v.error("name", "must not be empty");
        }
    }
}

impl Validate for SipSection {
    fn validate(&self, v: &mut Validator) {
        if self.listen.is_empty() {
            v.error("listen", "at least one listener is required");
        }
        for (i, l) in self.listen.iter().enumerate() {
            match TransportKind::parse(&l.transport) {
                Some(TransportKind::Udp | TransportKind::Tcp) => {}
                _ => v.error(
                    &format!("listen[{i}].transport"),
                    format!(
                        "unsupported transport {:?}: use \"udp\" or \"tcp\"",
                        l.transport
                    ),
                ),
            }
            for (j, other) in self.listen[..i].iter().enumerate() {
                if other.address == l.address && other.transport.eq_ignore_ascii_case(&l.transport)
                {
                    v.error(
                        &format!("listen[{i}].address"),
                        format!("duplicates listen[{j}] ({} {})", l.transport, l.address),
                    );
                }
            }
        }
        for (i, d) in self.domains.iter().enumerate() {
            if d.trim().is_empty() || d.contains(char::is_whitespace) {
                v.error(
                    &format!("domains[{i}]"),
                    "a domain is a host name or IP address",
                );
            }
        }
        if self.max_transactions < 64 {
            v.error("max_transactions", "must be at least 64");
        }
        let t = &self.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms {
            v.error("timers.t2_ms", "T1 must be positive and T2 at least T1");
        }
        if self.transport.max_message_size < 1500 || self.transport.max_message_size > 65_535 {
            v.error(
                "transport.max_message_size",
                "must be between 1500 and 65535",
            );
        }
        if self.transport.tcp_max_connections == 0 {
            v.error("transport.tcp_max_connections", "must be positive");
        }
    }
}

/// `[media]`, and that an empty relay list has the node's own relay to use.
struct MediaRules<'a>(&'a NodeConfig);

impl Validate for MediaRules<'_> {
    fn validate(&self, v: &mut Validator) {
        let c = self.0;
        v.section("media", &c.media);
        if c.has_role(RoleName::Proxy)
            && c.media.enabled
            && c.media.relays.is_empty()
            && !c.has_role(RoleName::Relay)
        {
            v.error(
                "media.relays",
                "empty means this node's own relay, but the node does not run the relay role: list relays or set media.enabled = false",
            );
        }
    }
}

struct RelayRules<'a>(&'a RelayConfig);

impl Validate for RelayRules<'_> {
    fn validate(&self, v: &mut Validator) {
        let r = self.0;
        if r.port_min >= r.port_max {
            v.error("port_min", "must be below port_max");
        }
        if r.interfaces.is_empty() {
            v.error("interfaces", "at least one interface is required");
        }
        if r.timeout_secs == 0 {
            v.error("timeout_secs", "must be positive");
        }
    }
}

// ----- [edge], [dispatcher], [partitions] (docs/edge.md) -----------------

impl NodeConfig {
    /// The partition map of `[partitions]`, if the section is present and valid.
    pub fn partition_map(&self) -> Option<PartitionMap> {
        self.partitions
            .as_ref()
            .and_then(|p| PartitionMap::from_config(p).ok())
    }
}

/// Rules that span `[edge]`, `[dispatcher]`, `[partitions]` and the roles.
struct EdgeRules<'a>(&'a NodeConfig);

impl Validate for EdgeRules<'_> {
    fn validate(&self, v: &mut Validator) {
        let c = self.0;
        if let Some(p) = &c.partitions {
            v.section("partitions", p);
        }
        if !c.has_role(RoleName::Edge) {
            return;
        }
        if c.has_role(RoleName::Registrar) || c.has_role(RoleName::Proxy) {
            v.error(
                "node.roles",
                "the edge role runs on its own node, in front of registrar/proxy nodes",
            );
        }
        v.section("edge", &c.edge);
        v.section("dispatcher", &c.dispatcher);
        if c.dispatcher.sets.is_empty() {
            v.error(
                "dispatcher.sets",
                "the edge role needs at least one dispatcher set",
            );
            return;
        }
        for (key, name) in [
            ("edge.set", Some(c.edge.set.as_str())),
            ("edge.register_set", c.edge.register_set.as_deref()),
        ] {
            if let Some(name) = name
                && !c.dispatcher.sets.iter().any(|s| s.name == name)
            {
                v.error(key, format!("no [[dispatcher.sets]] is named {name:?}"));
            }
        }
        if let Some(map) = c.partition_map()
            && let Err(e) = voxline_edge::Dispatcher::new(&c.dispatcher, Some(&map))
        {
            v.error("partitions", e.to_string());
        }
    }
}

/// `[replication]`, and that the node keeps a user location to replicate.
struct ReplicationRules<'a>(&'a NodeConfig);

impl Validate for ReplicationRules<'_> {
    fn validate(&self, v: &mut Validator) {
        let c = self.0;
        let Some(r) = &c.replication else { return };
        v.section("replication", r);
        if !c.has_role(RoleName::Registrar) && !c.has_role(RoleName::Proxy) {
            v.error(
                "replication",
                "replication needs the registrar or proxy role (it replicates their user location)",
            );
        }
        if c.admin.enabled && c.admin.listen == r.listen {
            v.error(
                "replication.listen",
                "must differ from admin.listen (peers reach only the replication listener)",
            );
        }
    }
}

#[cfg(test)]
mod replication_tests {
    use super::*;

    const SECTION: &str = r#"
[replication]
site = "a"
listen = "127.0.0.1:7700"
secret = "0123456789abcdef0123"
[[replication.peers]]
name = "b"
addresses = ["127.0.0.2:7700"]
"#;

    #[test]
    fn the_section_loads_and_is_checked() {
        let c = NodeConfig::load_str("t.toml", SECTION).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(c.replication.map(|r| r.site), Some("a".to_owned()));
        let relay_only = format!("[node]\nroles = [\"relay\"]\n{SECTION}");
        let p = NodeConfig::load_str("t.toml", &relay_only)
            .unwrap_err()
            .to_string();
        assert!(p.contains("registrar or proxy role"), "{p}");
        let clash = format!("[admin]\nlisten = \"127.0.0.1:7700\"\n{SECTION}");
        let p = NodeConfig::load_str("t.toml", &clash)
            .unwrap_err()
            .to_string();
        assert!(p.contains("key `replication.listen`"), "{p}");
        let bad = SECTION.replace("name = \"b\"", "name = \"a\"");
        let p = NodeConfig::load_str("t.toml", &bad)
            .unwrap_err()
            .to_string();
        assert!(p.contains("key `replication.peers[0].name`"), "{p}");
    }
}

#[cfg(test)]
mod media_tests {
    use super::*;

    #[test]
    fn media_defaults_to_the_built_in_relay() {
        let c = NodeConfig::embedded_default().unwrap_or_else(|p| panic!("{p}"));
        assert!(c.media.enabled);
        let relays = c.media.effective_relays(Some(c.relay.ng_udp));
        assert_eq!(relays.len(), 1);
        assert_eq!(relays[0].address, c.relay.ng_udp);
    }

    #[test]
    fn media_section_loads_and_is_checked() {
        let text = r#"
[node]
roles = ["proxy"]
[media]
relays = [{ address = "10.0.0.1:22222", weight = 2 }, { address = "10.0.0.2:22222" }]
[media.offer]
address = "sip-source"
[[media.direction]]
source = ["10.0.0.0/8"]
direction = ["external", "internal"]
"#;
        let c = NodeConfig::load_str("t.toml", text).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(c.media.relays.len(), 2);
        assert_eq!(c.media.direction.len(), 1);
        let no_relay = "[node]\nroles = [\"proxy\"]\n";
        let p = NodeConfig::load_str("t.toml", no_relay)
            .unwrap_err()
            .to_string();
        assert!(p.contains("key `media.relays`"), "{p}");
        let off = "[node]\nroles = [\"proxy\"]\n[media]\nenabled = false\n";
        assert!(NodeConfig::load_str("t.toml", off).is_ok());
        let bad = "[media]\ntimeout_ms = 0\n[media.offer]\nreplace = [\"session-connection\"]\n";
        let p = NodeConfig::load_str("t.toml", bad).unwrap_err().to_string();
        assert!(p.contains("t.toml:2:1: key `media.timeout_ms`"), "{p}");
        assert!(p.contains("key `media.offer.replace`"), "{p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_matches_design() {
        let c = NodeConfig::embedded_default().unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(c.sip.domains, ["localhost", "127.0.0.1"]);
        let listen: Vec<_> = c
            .sip
            .listen
            .iter()
            .map(|l| (l.transport.as_str(), l.address.to_string()))
            .collect();
        assert!(listen.contains(&("udp", "127.0.0.1:5060".to_owned())));
        assert!(listen.contains(&("tcp", "127.0.0.1:5060".to_owned())));
        assert!(
            c.has_role(RoleName::Registrar)
                && c.has_role(RoleName::Proxy)
                && c.has_role(RoleName::Relay)
        );
        assert_eq!(c.node.data_dir, PathBuf::from("./voxline-data"));
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.relay.ng_udp.to_string(), "127.0.0.1:22222");
        assert_eq!((c.relay.port_min, c.relay.port_max), (30000, 39999));
    }

    /// Every `examples/*.toml` passes `voxline check` (and the relay's own
    /// start-up checks), and is listed in docs/config.md.
    #[test]
    fn every_example_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.extension().is_some_and(|e| e == "toml") {
                names.push(path);
            }
        }
        names.sort();
        assert!(names.len() >= 10, "examples found: {names:?}");
        let doc = include_str!("../../../docs/config.md");
        for path in &names {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let c = NodeConfig::load_file(path).unwrap_or_else(|e| panic!("{e}"));
            if c.has_role(RoleName::Relay) {
                c.relay.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            if name.starts_with("site-") {
                let peers = c.replication.as_ref().map_or(1, |r| r.peers.len());
                assert_eq!(peers, 1, "{name}");
            }
            assert!(
                doc.contains(&format!("(../examples/{name})")),
                "docs/config.md does not list examples/{name}"
            );
        }
        let names: Vec<_> = names
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        for (example, role) in [
            ("all-in-one.toml", RoleName::Registrar),
            ("edge.toml", RoleName::Edge),
            ("proxy-node.toml", RoleName::Proxy),
            ("relay.toml", RoleName::Relay),
        ] {
            assert!(names.contains(&example), "examples/{example} is missing");
            let c = NodeConfig::load_file(&dir.join(example)).unwrap_or_else(|e| panic!("{e}"));
            assert!(c.has_role(role), "{example}");
        }
    }

    #[test]
    fn problems_name_key_and_line() {
        let text = "[node]\nroles = [\"registrar\", \"registrar\"]\n[sip]\nmax_transactions = 1\nbogus = 3\n";
        let p = NodeConfig::load_str("t.toml", text)
            .unwrap_err()
            .to_string();
        assert!(p.contains("t.toml:2:1: key `node.roles`"), "{p}");
        assert!(p.contains("t.toml:4:1: key `sip.max_transactions`"), "{p}");
        assert!(p.contains("t.toml:5:1: key `sip.bogus`"), "{p}");
    }
}

/// `docs/config.md` is the one reference: every key the loader accepts has
/// a row there, and every row names a key the loader accepts.
#[cfg(test)]
mod docs_tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    const DOC: &str = include_str!("../../../docs/config.md");
    const PROBE: &str = "__probe__";

    /// One table of the file: its path and, per component, whether that
    /// component is an array of tables (`[[...]]`).
    type TablePath = Vec<(String, bool)>;

    fn dotted(path: &[(String, bool)]) -> String {
        path.iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }

    /// A file that puts the key `PROBE` into the table `path` (creating the
    /// arrays of tables on the way).
    fn probe_text(path: &[(String, bool)]) -> String {
        let mut text = String::new();
        for (i, (_, array)) in path.iter().enumerate() {
            let prefix = dotted(&path[..=i]);
            if *array {
                text.push_str(&format!("[[{prefix}]]\n"));
            } else if i + 1 == path.len() {
                text.push_str(&format!("[{prefix}]\n"));
            }
        }
        text.push_str(&format!("{PROBE} = 1\n"));
        text
    }

    /// The keys serde expects in the table `path` (from its "unknown field"
    /// message), or `None` if `path` is not a table with known fields.
    fn fields_of(path: &[(String, bool)]) -> Option<Vec<String>> {
        let problems = match NodeConfig::load_str("probe.toml", &probe_text(path)) {
            Ok(_) => return None,
            Err(p) => p.to_string(),
        };
        let needle = format!("unknown field `{PROBE}`");
        let line = problems.lines().find(|l| l.contains(&needle))?;
        let rest = &line[line.find(&needle)? + needle.len()..];
        Some(
            rest.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Every table reachable from the root, with its keys; keys that are
    /// tables themselves are explored too.
    fn accepted_tables() -> BTreeMap<String, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        let mut todo: Vec<TablePath> = vec![Vec::new()];
        while let Some(path) = todo.pop() {
            let keys = fields_of(&path)
                .unwrap_or_else(|| panic!("cannot list the keys of [{}]", dotted(&path)));
            for key in &keys {
                for array in [false, true] {
                    let mut sub = path.clone();
                    sub.push((key.clone(), array));
                    if fields_of(&sub).is_some() {
                        todo.push(sub);
                    }
                }
            }
            out.insert(dotted(&path), keys.into_iter().collect());
        }
        out
    }

    /// The documented tables: a heading naming `` `[path]` `` or
    /// `` `[[path]]` `` (or several, for tables with the same keys) starts
    /// one, and each table row's first cell names a key in backticks.
    fn documented_tables() -> BTreeMap<String, Vec<(String, Vec<String>)>> {
        let mut out: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
        let mut current: Vec<String> = Vec::new();
        for line in DOC.lines() {
            if line.starts_with('#') {
                current = line
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .filter(|s| s.starts_with('['))
                    .map(|s| s.trim_matches(['[', ']']).to_owned())
                    .collect();
                for c in &current {
                    out.entry(c.clone()).or_default();
                }
                continue;
            }
            let Some(row) = line.strip_prefix("| `") else {
                continue;
            };
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect();
            let key = row.split('`').next().unwrap_or_default().to_owned();
            for section in &current {
                if let Some(rows) = out.get_mut(section) {
                    rows.push((key.clone(), cells.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_key_is_documented_in_config_md() {
        let accepted = accepted_tables();
        let documented = documented_tables();
        let mut missing = Vec::new();
        for (table, keys) in &accepted {
            if table.is_empty() {
                continue;
            }
            let Some(rows) = documented.get(table) else {
                missing.push(format!("no heading `[{table}]`"));
                continue;
            };
            for key in keys {
                let is_table = accepted.contains_key(&format!("{table}.{key}"));
                if !is_table && !rows.iter().any(|(k, _)| k == key) {
                    missing.push(format!("{table}.{key}"));
                }
            }
        }
        for key in &accepted[""] {
            if !documented.contains_key(key) {
                missing.push(format!("no heading `[{key}]`"));
            }
        }
        assert!(
            missing.is_empty(),
            "docs/config.md lacks: {}",
            missing.join(", ")
        );
    }

    #[test]
    fn config_md_names_only_accepted_keys_with_defaults() {
        let accepted = accepted_tables();
        let mut wrong = Vec::new();
        for (table, rows) in documented_tables() {
            let Some(keys) = accepted.get(&table) else {
                wrong.push(format!("`[{table}]` is not a table of the file"));
                continue;
            };
            for (key, cells) in rows {
                if !keys.contains(&key) {
                    wrong.push(format!("{table}.{key} is not a key"));
                }
                if cells.len() < 4 || cells[2].is_empty() {
                    wrong.push(format!(
                        "{table}.{key}: the row needs key, type, default and meaning"
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "docs/config.md: {}", wrong.join("; "));
    }
}
