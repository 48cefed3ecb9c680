//! The SIP core of a Voxline node.
//!
//! Every received message takes the same path, whatever roles the node runs:
//!
//! 1. the transport hands over bytes ([`voxline_transport::Receiver`]);
//! 2. the message is framed (unframeable requests get a 400 when one can be
//!    addressed, everything else is dropped and counted);
//! 3. requests are validated (400/416/420/505... with a reason phrase) and
//!    noted with the `received`/`rport` values of their top Via
//!    ([`voxline_sip::ReceivedStamp`]: written into every response and
//!    forwarded copy, not into the request's own bytes); OPTIONS addressed
//!    to the node itself is answered statelessly;
//! 4. the sharded transaction table absorbs retransmissions, matches ACK and
//!    CANCEL, and routes responses to their client transactions;
//! 5. new requests go to the node's [`SipService`] (registrar, proxy, edge),
//!    which answers through the [`ServerRequest`] it is given and sends its
//!    own requests through [`Core::send_request`].
//!
//! Timers run on one task per transaction shard.

mod client;
mod core;
mod eager;
mod identity;
mod overload;
mod request;
mod routing;
mod service;
mod shard;
mod stateless_tag;

pub use client::{ClientEvent, ClientEvents, ClientSink, OutgoingRequest};
pub use core::{Core, ServerError};
pub use eager::spawn_eager;
pub use identity::LocalIdentity;
pub use request::{ServerRequest, forwarded_response};
pub use routing::response_peer;
pub use service::SipService;
pub use voxline_overload::{AdmissionState, OverloadConfig};

use std::sync::Arc;

use voxline_transaction::{TimerConfig, TryingPolicy};
use voxline_transport::{ListenSpec, TransportConfig, Transports};

/// Settings of the SIP core.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listeners and transport tuning.
    pub transport: TransportConfig,
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// When to send 100 Trying for INVITE.
    pub trying: TryingPolicy,
    /// Most live transactions across all shards; beyond it requests get 503.
    pub max_transactions: usize,
    /// Transaction table shards (0: one per CPU).
    pub shards: usize,
    /// The domains and host names this node is responsible for.
    pub identity: LocalIdentity,
    /// Value of the Server / User-Agent header the node writes.
    pub server_header: String,
    /// Option tags the node supports (Require / Proxy-Require checks).
    pub supported: Vec<String>,
    /// Overload protection (`[overload]`).
    pub overload: voxline_overload::OverloadConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            transport: TransportConfig::default(),
            timers: TimerConfig::default(),
            trying: TryingPolicy::After(std::time::Duration::from_millis(200)),
            max_transactions: 1 << 20,
            shards: 0,
            identity: LocalIdentity::default(),
            server_header: concat!("Voxline/", env!("CARGO_PKG_VERSION")).to_owned(),
            supported: vec!["path".into(), "outbound".into()],
            overload: voxline_overload::OverloadConfig::default(),
        }
    }
}

/// A running SIP core: its transports and transaction shards.
pub struct SipServer {
    core: Arc<Core>,
    transports: Transports,
}

impl SipServer {
    /// Binds the listeners and starts serving `service`.
    pub async fn start(
        config: ServerConfig,
        service: Arc<dyn SipService>,
    ) -> Result<Self, ServerError> {
        let core = Core::new(&config, service);
        let receiver = Arc::new(core::CoreReceiver(core.clone()));
        let mut transport = config.transport.clone();
        transport.udp_priority_queue |= config.overload.enabled && config.overload.priority_queue;
        let transports = Transports::start(transport, receiver).await?;
        core.attach(transports.handle(), transports.local_addrs());
        Ok(SipServer { core, transports })
    }

    /// The core, for services that send requests or inspect state.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The bound listeners.
    pub fn local_addrs(&self) -> &[ListenSpec] {
        self.transports.local_addrs()
    }

    /// Stops receiving and closes connections.
    pub fn shutdown(self) {
        self.core.stop();
        self.transports.shutdown();
    }
}
