//! `voxline run`: wires the configured roles into one process.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use voxline_admin::AdminServer;
use voxline_auth::DigestAuth;
use voxline_location::{LocationConfig, LocationStore};
use voxline_proxy::Proxy;
use voxline_proxy::calls::CallControl;
use voxline_registrar::Registrar;
use voxline_relay::{Relay, RelayHandle};
use voxline_server::{Core, LocalIdentity, ServerConfig, ServerRequest, SipServer, SipService};
use voxline_sip::{Message, Method, Uri};
use voxline_sip_auth::SipAuth;
use voxline_transaction::{Peer, TimerConfig, TryingPolicy};

use crate::config::{LogFormat, NodeConfig, RoleName};

pub fn run(cfg: NodeConfig) -> ExitCode {
    init_logging(&cfg);
    if let Err(e) = crate::allocator::spawn_purge_tick() {
        return crate::fail(&e);
    }
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
    relay: Option<Arc<RelayHandle>>,
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
        node.relay = Some(Arc::new(relay));
    }
    let mut location = None;
    let mut calls = None;
    let mut media = None;
    let mut edge = None;
    let mut _edge_tasks = None;
    let mut replication = None;
    let sip_roles = [RoleName::Edge, RoleName::Registrar, RoleName::Proxy];
    if sip_roles.iter().any(|r| cfg.has_role(*r)) {
        let local_relay = node.relay.as_ref().map(|r| r.ng_udp_addr());
        let service = build_service(&cfg, local_relay).await?;
        replication = start_replication(&cfg, &service.location).await?;
        location = Some(service.location.clone());
        edge = service.edge.clone();
        calls = service.calls.clone();
        media = service.media.clone();
        let server = SipServer::start(server_config(&cfg), Arc::new(service)).await?;
        if let Some(calls) = &calls {
            tokio::spawn(calls.clone().run_maintenance(server.core().clone()));
        }
        for l in server.local_addrs() {
            tracing::info!(transport = %l.transport, address = %l.address, "SIP listener ready");
        }
        // The edge role: probing and keep-alives run on the SIP core.
        if let Some(e) = &edge {
            _edge_tasks = Some(e.start(server.core().clone()));
        }
        node.sip = Some(server);
    }
    if cfg.admin.enabled {
        let routes = crate::api::routes(Arc::new(crate::api::ApiState {
            name: cfg.node.name.clone(),
            roles: cfg
                .node
                .roles
                .iter()
                .map(|r| format!("{r:?}").to_lowercase())
                .collect(),
            started: std::time::Instant::now(),
            core: node.sip.as_ref().map(|s| s.core().clone()),
            location,
            relay: node.relay.clone(),
            calls: calls.clone(),
            media,
            edge,
            partitions: cfg.partition_map().map(|m| (m, cfg.node.name.clone())),
        }));
        let routes = routes.merge(crate::api::replication_routes(replication.clone()));
        let admin = AdminServer::start(cfg.admin.listen, metrics, routes).await?;
        tracing::info!(address = %admin.local_addr(), "admin listener ready");
        node.admin = Some(admin);
    }
    tracing::info!(name = %cfg.node.name, roles = ?cfg.node.roles, "node running");
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(c) = &calls {
        c.shutdown().await;
    }
    if let Some(s) = node.sip.take() {
        s.shutdown();
    }
    if let Some(r) = node.relay.take().and_then(|r| Arc::try_unwrap(r).ok()) {
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
        overload: cfg.overload.clone(),
        ..ServerConfig::default()
    }
}

/// The location store of the node: memory persisted in the data
/// directory unless the config names another place or Redis.
async fn open_location(cfg: &NodeConfig) -> anyhow::Result<LocationStore> {
    let mut lc: LocationConfig = cfg.location.clone();
    if lc.backend == "memory" && lc.data_dir.is_none() {
        lc.data_dir = Some(cfg.node.data_dir.join("location"));
    }
    let store = LocationStore::open(&lc)
        .await
        .map_err(|e| anyhow::anyhow!("location store: {e}"))?;
    store.spawn_maintenance(&lc);
    if let LocationStore::Memory(_) = &store {
        // Counting is O(1) in memory (Redis would scan: left to the admin API).
        let s = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Ok(c) = s.count(voxline_location::Timestamp::now()).await {
                    metrics::gauge!("voxline_registrations_aors").set(c.aors as f64);
                    metrics::gauge!("voxline_registrations_bindings").set(c.bindings as f64);
                }
            }
        });
    }
    Ok(store)
}

async fn build_service(
    cfg: &NodeConfig,
    local_relay: Option<std::net::SocketAddr>,
) -> anyhow::Result<NodeService> {
    let location = open_location(cfg).await?;
    let digest = DigestAuth::from_config(&cfg.auth, &cfg.node.data_dir)
        .await
        .map_err(|e| anyhow::anyhow!("subscriber database: {e}"))?;
    let auth = SipAuth::new(Arc::new(digest));
    let registrar = cfg.has_role(RoleName::Registrar).then(|| {
        Arc::new(Registrar::new(
            cfg.registrar.clone(),
            location.clone(),
            Some(auth.clone()),
        ))
    });
    let (calls, media) = match cfg.has_role(RoleName::Proxy) {
        true => {
            let (calls, media) = build_call_control(cfg, local_relay).await?;
            (Some(Arc::new(calls)), media)
        }
        false => (None, None),
    };
    let proxy = cfg.has_role(RoleName::Proxy).then(|| {
        Proxy::with_calls(
            cfg.proxy.clone(),
            Some(location.clone()),
            Some(auth.clone()),
            calls.clone(),
        )
    });
    let edge = match cfg.has_role(RoleName::Edge) {
        true => {
            let secret = voxline_edge::flow_secret(&cfg.edge, &cfg.node.data_dir)?;
            let map = cfg.partition_map();
            Some(voxline_edge::Edge::new(
                cfg.edge.clone(),
                &cfg.dispatcher,
                map.as_ref(),
                &secret,
            )?)
        }
        false => None,
    };
    let partitions = cfg
        .has_role(RoleName::Registrar)
        .then(|| cfg.partition_map().map(|m| (m, cfg.node.name.clone())))
        .flatten();
    Ok(NodeService {
        edge,
        partitions,
        registrar,
        proxy,
        location,
        calls,
        media,
    })
}

/// Dialogs, media anchoring (`[media]`) and call records (`[cdr]`) of the
/// proxy; with it the relay set the calls are anchored on (for the admin API).
async fn build_call_control(
    cfg: &NodeConfig,
    local_relay: Option<std::net::SocketAddr>,
) -> anyhow::Result<(CallControl, Option<Arc<voxline_media::MediaControl>>)> {
    let control = if cfg.media.enabled && (local_relay.is_some() || !cfg.media.relays.is_empty()) {
        let control = voxline_media::MediaControl::start(&cfg.media, local_relay)
            .await
            .map_err(|e| anyhow::anyhow!("media relays: {e}"))?;
        Some(Arc::new(control))
    } else {
        None
    };
    let media: Option<Arc<dyn voxline_proxy::calls::MediaAnchor>> = control.as_ref().map(|c| {
        let quiet = cfg.dialog.inactivity_check_secs.max(cfg.relay.timeout_secs);
        Arc::new(crate::call_hooks::RelayAnchor::new(c.clone(), quiet))
            as Arc<dyn voxline_proxy::calls::MediaAnchor>
    });
    let recorder: Option<Arc<dyn voxline_proxy::calls::CallRecorder>> = if cfg.cdr.enabled {
        let options = voxline_cdr::WriterOptions::from_config(&cfg.cdr, &cfg.node.data_dir)
            .map_err(|e| anyhow::anyhow!("cdr: {e}"))?;
        let writer =
            voxline_cdr::CdrWriter::start(options).map_err(|e| anyhow::anyhow!("cdr: {e}"))?;
        Some(Arc::new(crate::call_hooks::CdrSink::new(
            writer,
            cfg.node.name.clone(),
        )))
    } else {
        None
    };
    Ok((
        CallControl::new(cfg.dialog.clone(), media, recorder),
        control,
    ))
}

/// Dispatches requests to the node's roles: REGISTER for our domains to
/// the registrar, everything else to the proxy.
struct NodeService {
    registrar: Option<Arc<Registrar>>,
    proxy: Option<Proxy>,
    location: LocationStore,
    /// The edge role (then every request goes to it).
    edge: Option<voxline_edge::Edge>,
    /// `[partitions]` and this node's name: REGISTERs are counted by the
    /// node's role for the user's partition.
    partitions: Option<(voxline_partition::PartitionMap, String)>,
    calls: Option<Arc<CallControl>>,
    /// The relay set the proxy's calls are anchored on.
    media: Option<Arc<voxline_media::MediaControl>>,
}

impl NodeService {
    fn is_local_register(req: &ServerRequest) -> bool {
        let msg = req.message();
        msg.method() == Some(Method::Register)
            && match msg.request_uri() {
                Ok(Uri::Sip(u)) => req
                    .core()
                    .identity()
                    .is_local_domain(u.host_str.trim_matches(['[', ']'])),
                _ => false,
            }
    }
}

impl SipService for NodeService {
    fn on_request(&self, req: ServerRequest) {
        if let Some(edge) = &self.edge {
            let edge = edge.clone();
            tokio::spawn(async move { edge.handle(req).await });
            return;
        }
        if let Some((map, name)) = &self.partitions
            && req.message().method() == Some(Method::Register)
            && let Ok((user, domain)) = voxline_registrar::request::address_of_record(req.message())
        {
            let p = map.partition_of(&format!("{user}@{domain}"));
            metrics::counter!(
                "voxline_partition_registers_total",
                "partition" => p.to_string(),
                "role" => map.role_of(name, p).as_str(),
            )
            .increment(1);
        }
        // A request without a transaction is a REGISTER `stateless` found
        // local (its Request-URI is not parsed a third time).
        if (req.id().is_none() || Self::is_local_register(&req))
            && let Some(registrar) = &self.registrar
        {
            // Polled here first: with the memory store and cached
            // credentials a REGISTER is answered without a task. The
            // handler's own future, not one wrapped around it, which would
            // hold the request twice (and copy it once more).
            let core = req.core().clone();
            voxline_server::spawn_eager(
                registrar
                    .clone()
                    .handle(req, move |d| core.identity().is_local_domain(d)),
            );
            return;
        }
        match &self.proxy {
            Some(proxy) => voxline_server::spawn_eager(proxy.clone().handle(req)),
            None => {
                let _ = req.send(
                    req.response(403, "Forbidden - this node does not route requests")
                        .build(),
                );
            }
        }
    }

    fn batch_begin(&self) {
        // The location log is written once per receive batch, before its
        // answers leave. Only with a stateless registrar: a REGISTER whose
        // 200 was withheld (the write failed) is then handled anew when
        // retransmitted, never answered from a transaction's memory. A
        // REGISTER's change and its answer fall in the same batch: the
        // memory store never waits, so nothing lies between the two (a
        // handler that waited for the database ends outside any batch, and
        // its change is written at once).
        if self.edge.is_none() && self.registrar.as_ref().is_some_and(|r| r.is_stateless()) {
            self.location.begin_batch();
        }
    }

    fn batch_commit(&self) -> bool {
        self.location.commit_batch().is_ok()
    }

    fn stateless(&self, core: &Arc<Core>, request: &Message) -> bool {
        // REGISTER for our domains without a transaction ([registrar]
        // stateless): a retransmission gets the same answer again.
        self.edge.is_none()
            && self.registrar.as_ref().is_some_and(|r| r.is_stateless())
            && request.method() == Some(Method::Register)
            && matches!(request.request_uri(), Ok(Uri::Sip(u))
                if core.identity().is_local_domain(u.host_str.trim_matches(['[', ']'])))
    }

    fn on_ack(&self, core: &Arc<Core>, ack: Message, peer: Peer) {
        if let Some(edge) = &self.edge {
            edge.handle_ack(core, &ack, &peer);
            return;
        }
        if let Some(proxy) = &self.proxy {
            proxy.handle_ack(core, &ack, &peer);
        }
    }

    fn on_stray_response(&self, core: &Arc<Core>, response: Message, _peer: Peer) {
        if let Some(edge) = &self.edge {
            edge.handle_stray_response(core, &response);
            return;
        }
        if let Some(proxy) = &self.proxy {
            proxy.handle_stray_response(core, &response);
        }
    }
}

/// Location replication to the peer sites (`[replication]`), started
/// before the SIP listeners so that every change is journaled.
async fn start_replication(
    cfg: &NodeConfig,
    location: &LocationStore,
) -> anyhow::Result<Option<Arc<voxline_replication::Replication>>> {
    let Some(rc) = &cfg.replication else {
        return Ok(None);
    };
    let r = voxline_replication::Replication::start(rc, &cfg.node.name, location.clone())
        .await
        .map_err(|e| anyhow::anyhow!("replication: {e}"))?;
    tracing::info!(address = %r.local_addr(), site = %rc.site, "replication listener ready");
    Ok(Some(Arc::new(r)))
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
