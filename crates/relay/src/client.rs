//! A tokio ng client over UDP, for the SIP proxy to drive a Voxline relay or
//! rtpengine: `client.offer(&params).await -> Result<OfferReply, NgError>`.
//! Retransmits with the same cookie per [`RetransmitPolicy`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use voxline_ng::Value;
use voxline_ng::client::{
    CookieGenerator, DeleteReply, Exchange, ExchangeAction, NgError, OfferReply, RetransmitPolicy,
    check_result, decode_reply, query_from_body,
};
use voxline_ng::command::{CommandKind, DeleteRequest, MediaRequest, QueryRequest};
use voxline_ng::reply::CallStats;

type Pending = Arc<Mutex<HashMap<Vec<u8>, oneshot::Sender<Vec<u8>>>>>;

/// An ng client bound to one server address.
#[derive(Debug)]
pub struct NgClient {
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    cookies: Mutex<CookieGenerator>,
    policy: RetransmitPolicy,
    pending: Pending,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for NgClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
/// A proxy has hundreds of commands in flight; the default buffer (about
/// 200 KiB, some 100 replies with SDP) overflowed in bursts of answers, and a
/// command whose replies were dropped three times marked its relay down.
const RECV_BUFFER: usize = 4 << 20;

/// An ephemeral UDP socket at `local` with [`RECV_BUFFER`] of room.
fn bind_with_room(local: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        tracing::debug!(error = %e, "ng client receive buffer left at its default");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    UdpSocket::from_std(socket.into())
}

impl NgClient {
    /// Binds an ephemeral local socket towards `server`.
    pub async fn connect(
        server: SocketAddr,
        policy: RetransmitPolicy,
    ) -> Result<NgClient, NgError> {
        let local: SocketAddr = if server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = Arc::new(bind_with_room(local)?);
        let pending: Pending = Arc::default();
        let reader = {
            let socket = socket.clone();
            let pending = pending.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                        continue;
                    };
                    if from != server {
                        continue;
                    }
                    let data = buf.get(..n).unwrap_or_default();
                    let Some(space) = data.iter().position(|&b| b == b' ') else {
                        continue;
                    };
                    let cookie = data.get(..space).unwrap_or_default();
                    let tx = pending.lock().ok().and_then(|mut p| p.remove(cookie));
                    if let Some(tx) = tx {
                        let _ = tx.send(data.to_vec());
                    }
                }
            })
        };
        Ok(NgClient {
            socket,
            server,
            cookies: Mutex::new(CookieGenerator::new()),
            policy,
            pending,
            reader,
        })
    }

    /// Sends `body` and waits for the reply (retransmitting); returns the raw
    /// reply body.
    pub async fn request(&self, body: &Value<'_>) -> Result<Value<'static>, NgError> {
        let cookie = self
            .cookies
            .lock()
            .map(|mut g| g.next_cookie())
            .map_err(|_| NgError::MalformedReply("cookie generator poisoned".into()))?;
        let (tx, mut rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(cookie.clone().into_bytes(), tx);
        }
        let mut exchange = Exchange::new(cookie.clone(), body, self.policy);
        let result = loop {
            match exchange.poll(std::time::Instant::now()) {
                ExchangeAction::Send(d) => {
                    self.socket.send_to(d, self.server).await?;
                }
                ExchangeAction::Wait(deadline) => {
                    tokio::select! {
                        r = &mut rx => match r {
                            Ok(datagram) => break decode_reply(&datagram).map(|m| m.body.into_owned()),
                            Err(_) => break Err(NgError::MalformedReply("reply channel closed".into())),
                        },
                        _ = tokio::time::sleep_until(deadline.into()) => {}
                    }
                }
                ExchangeAction::TimedOut { attempts } => break Err(NgError::Timeout { attempts }),
                ExchangeAction::Done => {
                    break Err(NgError::MalformedReply("exchange finished".into()));
                }
            }
        };
        if let Ok(mut p) = self.pending.lock() {
            p.remove(cookie.as_bytes());
        }
        result
    }

    /// `ping` → Ok if `pong`.
    pub async fn ping(&self) -> Result<(), NgError> {
        let body = self
            .request(&Value::dict().with("command", Value::str("ping")))
            .await?;
        check_result(&body).map(|_| ())
    }

    /// `offer`.
    pub async fn offer(&self, params: &MediaRequest) -> Result<OfferReply, NgError> {
        let body = self.request(&params.to_value(CommandKind::Offer)).await?;
        OfferReply::from_body(&body)
    }

    /// `answer`.
    pub async fn answer(&self, params: &MediaRequest) -> Result<OfferReply, NgError> {
        let body = self.request(&params.to_value(CommandKind::Answer)).await?;
        OfferReply::from_body(&body)
    }

    /// `delete`.
    pub async fn delete(&self, params: &DeleteRequest) -> Result<DeleteReply, NgError> {
        let body = self.request(&params.to_value()).await?;
        DeleteReply::from_body(&body)
    }

    /// `query`.
    pub async fn query(&self, params: &QueryRequest) -> Result<CallStats, NgError> {
        let body = self.request(&params.to_value()).await?;
        query_from_body(&body)
    }
}
