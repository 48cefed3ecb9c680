//! `voxline run`: wires the configured roles into one process.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use voxline_admin::AdminServer;
use voxline_relay::{Relay, RelayHandle};
use voxline_server::{LocalIdentity, ServerConfig, ServerRequest, SipServer, SipService};
use voxline_transaction::{TimerConfig, TryingPolicy};

use crate::config::{LogFormat, NodeConfig, RoleName};

pub fn run(cfg: NodeConfig) -> ExitCode {
    init_logging(&cfg);
    let rt = match crate::runtime(cfg.node.threads) {
        Ok(rt) => rt,
        Err(e) => return crate::fail(&e),
    };
    match rt.block_on(serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            crate::fail(&format!("{e:#}"))
        }
    }
}

fn init_logging(cfg: &NodeConfig) {
    let filter = std::env::var("VOXLINE_LOG").unwrap_or_else(|_| cfg.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The running parts of a node.
struct Node {
    sip: Option<SipServer>,
    relay: Option<RelayHandle>,
    admin: Option<AdminServer>,
}

async fn serve(cfg: NodeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.node.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data_dir {}: {e}",
            cfg.node.data_dir.display()
        )
    })?;
    let metrics = voxline_admin::install_metrics()?;
    let mut node = Node {
        sip: None,
        relay: None,
        admin: None,
    };
    if cfg.has_role(RoleName::Relay) {
        let relay = Relay::start(cfg.relay.clone()).await?;
        tracing::info!(address = %relay.ng_udp_addr(), "ng listener ready");
        node.relay = Some(relay);
    }
    let sip_roles = [RoleName::Edge, RoleName::Registrar, RoleName::Proxy];
    if sip_roles.iter().any(|r| cfg.has_role(*r)) {
        let server = SipServer::start(server_config(&cfg), Arc::new(Unrouted)).await?;
        for l in server.local_addrs() {
            tracing::info!(transport = %l.transport, address = %l.address, "SIP listener ready");
        }
        node.sip = Some(server);
    }
    if cfg.admin.enabled {
        let routes = Router::new().route(
            "/api/v1/stats",
            get(|| async { axum::Json(serde_json::json!({})) }),
        );
        let admin = AdminServer::start(cfg.admin.listen, metrics, routes).await?;
        tracing::info!(address = %admin.local_addr(), "admin listener ready");
        node.admin = Some(admin);
    }
    tracing::info!(name = %cfg.node.name, roles = ?cfg.node.roles, "node running");
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(s) = node.sip.take() {
        s.shutdown();
    }
    if let Some(r) = node.relay.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), r.shutdown()).await;
    }
    if let Some(a) = node.admin.take() {
        a.shutdown();
    }
    Ok(())
}

/// The SIP core settings from the `[sip]` section.
pub fn server_config(cfg: &NodeConfig) -> ServerConfig {
    let t = &cfg.sip.timers;
    let proxying = cfg.has_role(RoleName::Proxy) || cfg.has_role(RoleName::Edge);
    ServerConfig {
        transport: cfg.transport_config(),
        timers: TimerConfig::with_base(
            Duration::from_millis(t.t1_ms),
            Duration::from_millis(t.t2_ms),
            Duration::from_millis(t.t4_ms),
        ),
        trying: if proxying {
            TryingPolicy::Immediate
        } else {
            TryingPolicy::After(Duration::from_millis(200))
        },
        max_transactions: cfg.sip.max_transactions,
        shards: cfg.sip.shards,
        identity: LocalIdentity::new(&cfg.sip.domains, &cfg.sip.aliases),
        server_header: cfg.sip.server_header.clone(),
        ..ServerConfig::default()
    }
}

/// Until the roles are wired: every request not answered by the core gets
/// 501 (OPTIONS to the node itself is answered by the core).
struct Unrouted;

impl SipService for Unrouted {
    fn on_request(&self, req: ServerRequest) {
        let _ = req.respond(501);
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
