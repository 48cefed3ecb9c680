//! `voxline ctl`: a terminal view of a running node's admin API.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Subcommand;
use voxline_admin::client;

/// What to ask the node.
#[derive(Subcommand)]
pub enum Action {
    /// Counters and gauges of the node.
    Stats,
    /// Registered bindings (of one address-of-record, or a page of all).
    Registrations {
        /// `user@domain`.
        #[arg(long)]
        aor: Option<String>,
    },
    /// Calls in progress.
    Calls,
    /// Media relays and their sessions.
    Relays,
    /// Dispatcher destinations and their health.
    Dispatcher,
    /// Prometheus metrics, as scraped.
    Metrics,
    /// Stop taking new calls and registrations; finish what is in progress
    /// (`--off` to take traffic again).
    Drain {
        /// Leave drain mode.
        #[arg(long)]
        off: bool,
    },
}

pub fn run(admin: SocketAddr, action: Action) -> ExitCode {
    let (method, path) = match &action {
        Action::Stats => ("GET", "/api/v1/stats".to_owned()),
        Action::Registrations { aor: Some(aor) } => {
            ("GET", format!("/api/v1/registrations?aor={}", encode(aor)))
        }
        Action::Registrations { aor: None } => ("GET", "/api/v1/registrations".to_owned()),
        Action::Calls => ("GET", "/api/v1/calls".to_owned()),
        Action::Relays => ("GET", "/api/v1/relays".to_owned()),
        Action::Dispatcher => ("GET", "/api/v1/dispatcher".to_owned()),
        Action::Metrics => ("GET", "/metrics".to_owned()),
        Action::Drain { .. } => ("POST", "/api/v1/drain".to_owned()),
    };
    let rt = match crate::runtime(1) {
        Ok(rt) => rt,
        Err(e) => return crate::fail(&e),
    };
    let body = match action {
        Action::Drain { off } => Some(format!("{{\"on\":{}}}", !off)),
        _ => None,
    };
    match rt.block_on(client::request(admin, method, &path, body.as_deref())) {
        Ok(body) => {
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or(body)),
                Err(_) => print!("{body}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => crate::fail(&e),
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
