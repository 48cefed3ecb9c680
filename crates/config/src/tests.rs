use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Registrar {
    min_expires: u32,
    max_expires: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listen {
    transport: String,
    address: std::net::SocketAddr,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Sip {
    listen: Vec<Listen>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Root {
    sip: Sip,
    registrar: Registrar,
    domains: Vec<String>,
}

impl Validate for Registrar {
    fn validate(&self, v: &mut Validator) {
        if self.min_expires > self.max_expires {
            v.error("min_expires", "must not exceed `max_expires`");
        }
    }
}

impl Validate for Root {
    fn validate(&self, v: &mut Validator) {
        v.section("registrar", &self.registrar);
        if self.domains.is_empty() {
            v.error("domains", "at least one domain is required");
        }
    }
}

#[test]
fn good_config_loads() {
    let text = r#"
domains = ["localhost"]
[registrar]
min_expires = 60
max_expires = 3600
[[sip.listen]]
transport = "udp"
address = "127.0.0.1:5060"
"#;
    let root: Root = load("good.toml", text).unwrap();
    assert_eq!(root.sip.listen.len(), 1);
    assert_eq!(root.sip.listen[0].transport, "udp");
    assert_eq!(root.sip.listen[0].address.port(), 5060);
    assert_eq!(root.registrar.max_expires, 3600);
}

#[test]
fn syntax_error_has_line() {
    let err = load::<Root>("bad.toml", "domains = [\"a\"]\n[registrar\n").unwrap_err();
    assert_eq!(err.len(), 1);
    let p = err.iter().next().unwrap();
    assert_eq!(p.line, 2, "{err}");
}

#[test]
fn every_problem_is_reported_with_key_and_line() {
    let text = r#"domains = ["localhost"]
[registrar]
min_expires = "soon"
max_expires = 3600
colour = "blue"
[[sip.listen]]
transport = "udp"
address = "not an address"
"#;
    let err = load::<Root>("bad.toml", text).unwrap_err();
    let shown = err.to_string();
    assert!(err.len() >= 3, "{shown}");
    let keys: Vec<_> = err.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert!(keys.contains(&("registrar.min_expires", 3)), "{shown}");
    assert!(
        keys.iter().any(|(k, l)| k.contains("colour") && *l == 5),
        "{shown}"
    );
    assert!(
        keys.iter()
            .any(|(k, l)| k.starts_with("sip.listen") && *l == 8),
        "{shown}"
    );
    assert!(!shown.contains("missing field"), "{shown}");
    assert_eq!(err.len(), 3, "{shown}");
    assert!(shown.contains("bad.toml:3:"), "{shown}");
}

#[test]
fn semantic_problems_are_located() {
    let text = "domains = []\n[registrar]\nmin_expires = 600\nmax_expires = 60\n";
    let err = load::<Root>("sem.toml", text).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.len(), 2, "{shown}");
    assert!(shown.contains("sem.toml:1:1: key `domains`"), "{shown}");
    assert!(
        shown.contains("sem.toml:3:1: key `registrar.min_expires`: must not exceed"),
        "{shown}"
    );
}

#[test]
fn key_path_round_trip() {
    let p = KeyPath::parse("sip.listen[1].address");
    assert_eq!(p.to_string(), "sip.listen[1].address");
    assert_eq!(KeyPath::parse("sip.listen.1.address"), p);
}
