//! Voxline media relay: the control plane of the `relay` role, a drop-in for
//! rtpengine driven over the ng protocol.
//!
//! - [`config::RelayConfig`]: settings (serde, documented in
//!   `docs/relay-config.md`).
//! - [`Relay::start`]: binds ng over UDP (and TCP), starts the forwarding
//!   workers ([`voxline_relay_dataplane`]) and the session timer; returns a
//!   [`RelayHandle`] with the bound addresses, [`RelayHandle::stats`] and
//!   [`RelayHandle::shutdown`].
//! - [`session::SessionTable`]: the sans-IO session core;
//!   [`ports::PortPool`]: port allocation; [`fairness::FairQueue`]: per-source
//!   fairness for ng commands.
//! - [`client::NgClient`]: async ng client (for the proxy role).
//!
//! Metrics (through the `metrics` facade): `voxline_relay_sessions`,
//! `voxline_relay_streams`, `voxline_relay_ng_commands_total{command}`,
//! `voxline_relay_ng_duplicates_total`, `voxline_relay_ng_malformed_total`,
//! `voxline_relay_ng_dropped_total`, `voxline_relay_sessions_ended_total{reason}`,
//! `voxline_relay_packets_total`, `voxline_relay_bytes_total`,
//! `voxline_relay_packet_errors_total`, `voxline_relay_packets_forwarded_total`,
//! `voxline_relay_ports_used{interface}`, with `io = "raw"`
//! `voxline_relay_raw_sent_total`, `voxline_relay_raw_unrouted_total`
//! (datagrams read by the raw sockets that no stream took) and
//! `voxline_relay_raw_dropped_total` (dropped at a full raw socket queue), and from RTCP SR/RR reports
//! `voxline_relay_rtcp_streams`, `voxline_relay_rtcp_fraction_lost_avg` (0–1)
//! and `voxline_relay_rtcp_jitter_max` (timestamp units).

pub mod client;
pub mod config;
mod control;
pub mod fairness;
pub mod ports;
pub mod replication;
mod server;
pub mod session;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{ConfigError, InterfaceConfig, RedisConfig, RelayConfig, RelayIo};
pub use control::RelayStats;
pub use replication::{RedisStatus, Takeover};
use tokio::sync::watch;
use voxline_relay_dataplane::{Dataplane, DataplaneConfig, DataplaneError, ForwardingIo, unix_ms};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Invalid configuration.
    #[error("invalid relay configuration: {0}")]
    Config(#[from] ConfigError),
    /// An ng listener could not bind.
    #[error("binding ng {proto} on {addr}: {source}")]
    Bind {
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The forwarding workers could not start.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// `io = "raw"` but the raw sockets could not be opened.
    #[error("relay.io = \"raw\"")]
    RawIo(#[source] DataplaneError),
    /// The Redis client could not be set up (the connection itself is made
    /// in the background: a relay starts while Redis is down).
    #[error("relay.redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Entry point of the relay role.
#[derive(Debug)]
pub struct Relay;

/// A running relay.
#[derive(Debug)]
pub struct RelayHandle {
    ng_udp: SocketAddr,
    ng_tcp: Option<SocketAddr>,
    control: Arc<Mutex<control::Control>>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    link: Option<replication::Link>,
    link_status: Option<Arc<replication::LinkStatus>>,
}

impl std::fmt::Debug for control::Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

/// How often session timers are checked.
const TIMER_PERIOD: Duration = Duration::from_millis(500);

impl Relay {
    /// Validates `config`, binds the ng listeners, starts the workers.
    pub async fn start(config: RelayConfig) -> Result<RelayHandle, RelayError> {
        config.validate()?;
        let udp = bind_ng_udp(config.ng_udp, false).map_err(|source| RelayError::Bind {
            proto: "udp",
            addr: config.ng_udp,
            source,
        })?;
        let ng_udp = udp.local_addr().map_err(|source| RelayError::Bind {
            proto: "udp",
            addr: config.ng_udp,
            source,
        })?;
        let tcp = match config.ng_tcp {
            Some(addr) => Some(bind_ng_tcp(addr, false).map_err(|source| RelayError::Bind {
                proto: "tcp",
                addr,
                source,
            })?),
            None => None,
        };
        let ng_tcp = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let streams_hint = usize::from(config.port_max.saturating_sub(config.port_min)) + 1;
        reserve_fd_table(&udp, streams_hint * config.interfaces.len() + 64);
        let (hook_tx, hook_rx) = tokio::sync::mpsc::unbounded_channel();
        let hook: Option<voxline_relay_dataplane::StandbyHook> = config.redis.as_ref().map(|_| {
            let hook: voxline_relay_dataplane::StandbyHook = Arc::new(move |key| {
                let _ = hook_tx.send(key);
            });
            hook
        });
        let dataplane = Dataplane::start_with_hook(
            DataplaneConfig {
                workers: config.workers,
                streams_hint: streams_hint * config.interfaces.len(),
                io: match config.io {
                    config::RelayIo::Sockets => ForwardingIo::Sockets,
                    config::RelayIo::Raw => ForwardingIo::Raw {
                        port_min: config.port_min,
                        port_max: config.port_max,
                    },
                },
            },
            hook,
        )
        .map_err(|e| match e {
            DataplaneError::Raw(_) => RelayError::RawIo(e),
            e => RelayError::Dataplane(e),
        })?;
        let table = session::SessionTable::new(&config);
        let control = Arc::new(Mutex::new(control::Control::new(
            table,
            dataplane,
            (config.port_min, config.port_max),
            unix_ms(),
        )));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let link = match &config.redis {
            Some(redis) => {
                let (writes_tx, writes_rx) = tokio::sync::mpsc::unbounded_channel();
                let (takeovers_tx, takeovers_rx) = tokio::sync::mpsc::unbounded_channel();
                server::with_control(&control, |c| {
                    c.set_replica(control::Replica::new(
                        redis,
                        writes_tx.clone(),
                        takeovers_tx,
                    ));
                });
                let link = replication::start(replication::LinkParts {
                    config: redis.clone(),
                    control: control.clone(),
                    writes_tx,
                    writes_rx,
                    takeovers_rx,
                    hook_rx,
                    ng_udp,
                    ng_tcp,
                    ng_queue_per_source: config.ng_queue_per_source,
                    shutdown: shutdown_rx.clone(),
                })?;
                tracing::info!(relay_id = %redis.relay_id, url = %redis.url, standby = redis.standby, "relay replication through Redis");
                Some(link)
            }
            None => None,
        };
        let link_status = link.as_ref().map(|l| l.status.clone());
        let mut tasks = vec![
            tokio::spawn(server::run_udp(
                udp,
                control.clone(),
                config.ng_queue_per_source,
                shutdown_rx.clone(),
            )),
            tokio::spawn(server::run_timer(
                control.clone(),
                TIMER_PERIOD,
                shutdown_rx.clone(),
            )),
        ];
        if let Some(l) = tcp {
            tasks.push(tokio::spawn(server::run_tcp(
                l,
                control.clone(),
                shutdown_rx,
            )));
        }
        tracing::info!(%ng_udp, ?ng_tcp, "relay started");
        Ok(RelayHandle {
            ng_udp,
            ng_tcp,
            control,
            shutdown_tx,
            tasks,
            link,
            link_status,
        })
    }
}

/// Grows the process's descriptor table once, to `fds` entries (at most
/// the open-files limit): every media port is a socket. The kernel grows
/// the table by doubling as descriptors are opened and, in a threaded
/// process, waits for an RCU grace period (10-20 ms here) at every
/// doubling while holding up the thread that opened the socket: the first
/// thousands of calls after a start stalled ng handling for ~100 ms in
/// total. Best effort: nothing happens if the limit is low or it fails.
fn reserve_fd_table(any: &impl std::os::fd::AsFd, fds: usize) {
    use nix::sys::resource::{Resource, getrlimit};
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let top = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .min(fds)
        .saturating_sub(1);
    let Ok(top) = i32::try_from(top) else {
        return;
    };
    if top < 1024 {
        return;
    }
    // A descriptor numbered `top` or higher makes the table that big; it is
    // closed at once (the table never shrinks).
    if let Err(e) = rustix::io::fcntl_dupfd_cloexec(any, top) {
        tracing::debug!(error = %e, top, "descriptor table not pre-grown");
    }
}

/// Binds the ng UDP socket with a large receive buffer, so bursts (and
/// floods) are queued for the fair scheduler rather than dropped by the
/// kernel. `freebind`: also if the address is not (yet) local (a taken-over
/// relay's address).
pub(crate) fn bind_ng_udp(
    addr: SocketAddr,
    freebind: bool,
) -> std::io::Result<tokio::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Capped by net.core.rmem_max; best effort.
    let _ = socket.set_recv_buffer_size(4 << 20);
    if freebind {
        set_freebind(&socket, addr);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Binds an ng TCP listener (`SO_REUSEADDR`, so a dead relay's connections
/// in TIME_WAIT do not block a takeover).
pub(crate) fn bind_ng_tcp(
    addr: SocketAddr,
    freebind: bool,
) -> std::io::Result<tokio::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if freebind {
        set_freebind(&socket, addr);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

fn set_freebind(socket: &socket2::Socket, addr: SocketAddr) {
    let r = if addr.is_ipv4() {
        socket.set_freebind_v4(true)
    } else {
        socket.set_freebind_v6(true)
    };
    if let Err(e) = r {
        tracing::debug!(%addr, error = %e, "IP_FREEBIND not set");
    }
}

impl RelayHandle {
    /// Bound ng UDP address.
    pub fn ng_udp_addr(&self) -> SocketAddr {
        self.ng_udp
    }

    /// Bound ng TCP address, if enabled.
    pub fn ng_tcp_addr(&self) -> Option<SocketAddr> {
        self.ng_tcp
    }

    /// Current numbers.
    pub fn stats(&self) -> RelayStats {
        let mut s = match self.control.lock() {
            Ok(c) => c.stats(),
            Err(p) => p.into_inner().stats(),
        };
        s.redis = self.link_status.as_ref().map(|l| l.snapshot());
        s
    }

    /// Ends all sessions, closes all sockets and stops all tasks and
    /// workers. With `[relay.redis]` the sessions stay in Redis (the last
    /// changes are flushed): a standby takes them over when the heartbeat
    /// stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(link) = self.link {
            link.join().await;
        }
        let control = self.control;
        let _ = tokio::task::spawn_blocking(move || {
            let mut c = match control.lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            c.shutdown(unix_ms());
        })
        .await;
    }
}
