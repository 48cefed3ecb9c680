//! `[edge]` and `[dispatcher]` configuration.

use serde::Deserialize;
use voxline_config::{Validate, Validator};
use voxline_sip::{SipUri, Uri};

/// `[edge]`: how the edge treats requests from clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// The dispatcher set that receives requests from clients.
    pub set: String,
    /// The set for REGISTER, when it differs from `set`.
    pub register_set: Option<String>,
    /// Record-Route dialog-creating requests so that in-dialog requests
    /// pass the edge (which holds the clients' NAT bindings).
    pub record_route: bool,
    /// Key that signs the flow tokens in Path and Record-Route (at least 16
    /// characters; share it between edges that take over each other's
    /// address). Unset: generated once into `<data_dir>/edge-flow-secret`.
    pub flow_secret: Option<String>,
    /// Milliseconds a destination may stay silent (no response at all)
    /// before the request is sent to the next destination.
    pub failover_timeout_ms: u64,
    /// Seconds between NAT keep-alives to a registered client (0: none).
    pub keepalive_interval_secs: u64,
    /// `options` (an OPTIONS request) or `crlf` (CRLFCRLF).
    pub keepalive_method: KeepaliveMethod,
    /// `nated`: only clients detected behind NAT; `all`: every registered flow.
    pub keepalive_targets: KeepaliveTargets,
    /// Most flows kept for keep-alives; registrations beyond it get none.
    pub keepalive_max_flows: usize,
    /// Timer C for INVITE at the edge, seconds (RFC 3261 §16.6: > 180).
    pub timer_c_secs: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            set: "default".into(),
            register_set: None,
            record_route: true,
            flow_secret: None,
            failover_timeout_ms: 2000,
            keepalive_interval_secs: 30,
            keepalive_method: KeepaliveMethod::Options,
            keepalive_targets: KeepaliveTargets::Nated,
            keepalive_max_flows: 1_000_000,
            timer_c_secs: 180,
        }
    }
}

/// What a NAT keep-alive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepaliveMethod {
    /// An OPTIONS request (answered by most phones; refreshes UDP bindings both ways).
    Options,
    /// A double CRLF (RFC 5626 §4.4.1 style), the cheapest refresh.
    Crlf,
}

/// Which registered clients get keep-alives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepaliveTargets {
    /// Clients whose Via or Contact shows a NAT between them and the edge.
    Nated,
    /// Every registered flow.
    All,
}

/// `[dispatcher]`: destination sets and their health checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Milliseconds between OPTIONS probes to each destination (0: no probing).
    pub probe_interval_ms: u64,
    /// Milliseconds a probe may take before it counts as failed.
    pub probe_timeout_ms: u64,
    /// Consecutive failures (probes or requests) that make a destination inactive.
    pub down_threshold: u32,
    /// Consecutive successful probes that make a destination active again.
    pub up_threshold: u32,
    /// Response codes to a probe that count as alive (besides 2xx).
    pub probe_ok_codes: Vec<u16>,
    /// The sets.
    pub sets: Vec<SetConfig>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            probe_interval_ms: 2000,
            probe_timeout_ms: 1000,
            down_threshold: 2,
            up_threshold: 2,
            probe_ok_codes: Vec::new(),
            sets: Vec::new(),
        }
    }
}

/// One `[[dispatcher.sets]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// Name the `[edge]` section refers to.
    pub name: String,
    /// How a destination is chosen.
    pub algorithm: Algorithm,
    /// The destinations, in failover order for `round-robin` and `weighted` ties.
    pub destinations: Vec<DestinationConfig>,
}

/// How a set picks the first destination for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Hash over the address-of-record (To of REGISTER, Request-URI
    /// otherwise): a user's REGISTER and the calls to that user reach the
    /// same node. With `[partitions]`, the partition's primary, then its backup.
    HashAor,
    /// Hash over the Call-ID: every request of a dialog reaches the same node.
    HashCallId,
    /// Each destination in turn.
    RoundRobin,
    /// At random, in proportion to the weights.
    Weighted,
}

impl Algorithm {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HashAor => "hash-aor",
            Algorithm::HashCallId => "hash-call-id",
            Algorithm::RoundRobin => "round-robin",
            Algorithm::Weighted => "weighted",
        }
    }
}

/// One `[[dispatcher.sets.destinations]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// `sip:host:port[;transport=tcp]` (an IP address: no DNS at dispatch time).
    pub uri: String,
    /// The node's name (its `[node] name`; `[partitions]` refers to it).
    /// Default: the URI.
    #[serde(default)]
    pub name: Option<String>,
    /// Share for `weighted` (0: only when the others are down).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl DestinationConfig {
    /// The name used in logs, metrics, the admin API and `[partitions]`.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.uri)
    }
}

impl EdgeConfig {
    /// The set for REGISTER.
    pub fn register_set(&self) -> &str {
        self.register_set.as_deref().unwrap_or(&self.set)
    }
}

impl Validate for EdgeConfig {
    fn validate(&self, v: &mut Validator) {
        if self.set.trim().is_empty() {
            v.error("set", "must name a dispatcher set");
        }
        if let Some(s) = &self.flow_secret
            && s.len() < 16
        {
            v.error("flow_secret", "must be at least 16 characters");
        }
        if self.failover_timeout_ms == 0 {
            v.error("failover_timeout_ms", "must be positive");
        }
        if self.timer_c_secs == 0 {
            v.error("timer_c_secs", "must be positive");
        }
    }
}

impl Validate for DispatcherConfig {
    fn validate(&self, v: &mut Validator) {
        if self.probe_interval_ms > 0 && self.probe_timeout_ms == 0 {
            v.error("probe_timeout_ms", "must be positive when probing");
        }
        if self.down_threshold == 0 {
            v.error("down_threshold", "must be at least 1");
        }
        if self.up_threshold == 0 {
            v.error("up_threshold", "must be at least 1");
        }
        for (i, c) in self.probe_ok_codes.iter().enumerate() {
            if !(100..700).contains(c) {
                v.error(&format!("probe_ok_codes[{i}]"), "not a SIP status code");
            }
        }
        for (i, set) in self.sets.iter().enumerate() {
            if self.sets[..i].iter().any(|s| s.name == set.name) {
                v.error(
                    &format!("sets[{i}].name"),
                    format!("set {:?} is defined twice", set.name),
                );
            }
            v.section(&format!("sets[{i}]"), set);
        }
    }
}

impl Validate for SetConfig {
    fn validate(&self, v: &mut Validator) {
        if self.name.trim().is_empty() {
            v.error("name", "must not be empty");
        }
        if self.destinations.is_empty() {
            v.error("destinations", "a set needs at least one destination");
        }
        for (i, d) in self.destinations.iter().enumerate() {
            let key = format!("destinations[{i}]");
            match Uri::parse(&d.uri) {
                Ok(Uri::Sip(u)) if u.host.ip().is_some() => {
                    if u.user.is_some() {
                        v.error(&format!("{key}.uri"), "a destination URI has no user part");
                    }
                }
                _ => v.error(
                    &format!("{key}.uri"),
                    "must be a sip: URI with an IP address (sip:192.0.2.10:5060)",
                ),
            }
            if self.destinations[..i]
                .iter()
                .any(|o| o.display_name() == d.display_name())
            {
                v.error(
                    &format!("{key}.name"),
                    format!("destination {:?} is listed twice", d.display_name()),
                );
            }
        }
        if self.algorithm == Algorithm::Weighted && self.destinations.iter().all(|d| d.weight == 0)
        {
            v.error("destinations", "weighted sets need a positive weight");
        }
    }
}

/// Parses a destination URI (validated already) into its SIP form.
pub(crate) fn destination_uri(uri: &str) -> Option<SipUri<'_>> {
    match Uri::parse(uri) {
        Ok(Uri::Sip(u)) => Some(u),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses_and_validates() {
        let text = r#"
            probe_interval_ms = 500
            probe_timeout_ms = 300
            down_threshold = 1
            up_threshold = 3
            probe_ok_codes = [404]
            [[sets]]
            name = "registrars"
            algorithm = "hash-aor"
            [[sets.destinations]]
            uri = "sip:127.0.0.2:5060"
            name = "reg1"
            [[sets.destinations]]
            uri = "sip:127.0.0.3:5060;transport=tcp"
            name = "reg2"
            weight = 3
        "#;
        let c: DispatcherConfig = voxline_config::load("d.toml", text).unwrap();
        assert_eq!(c.sets[0].algorithm, Algorithm::HashAor);
        assert_eq!(c.sets[0].destinations[1].weight, 3);
        assert_eq!(c.sets[0].destinations[0].weight, 1);
        let e: EdgeConfig = voxline_config::load(
            "e.toml",
            "set = \"registrars\"\nkeepalive_method = \"crlf\"\nkeepalive_targets = \"all\"\n",
        )
        .unwrap();
        assert_eq!(e.keepalive_method, KeepaliveMethod::Crlf);
        assert_eq!(e.register_set(), "registrars");
    }

    #[test]
    fn problems_are_reported_with_keys() {
        let text = r#"
            down_threshold = 0
            [[sets]]
            name = "a"
            algorithm = "weighted"
            [[sets.destinations]]
            uri = "sip:reg1.example.com"
            weight = 0
            [[sets.destinations]]
            uri = "sip:reg1.example.com"
            weight = 0
        "#;
        let p = voxline_config::load::<DispatcherConfig>("d.toml", text)
            .unwrap_err()
            .to_string();
        assert!(p.contains("down_threshold"), "{p}");
        assert!(p.contains("sets[0].destinations[0].uri"), "{p}");
        assert!(p.contains("sets[0].destinations[1].name"), "{p}");
        assert!(p.contains("positive weight"), "{p}");
        let p = voxline_config::load::<DispatcherConfig>(
            "d.toml",
            "[[sets]]\nname = \"a\"\nalgorithm = \"fastest\"\ndestinations = []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(p.contains("sets"), "{p}");
        let p = voxline_config::load::<EdgeConfig>("e.toml", "flow_secret = \"short\"\n")
            .unwrap_err()
            .to_string();
        assert!(p.contains("flow_secret"), "{p}");
    }
}
