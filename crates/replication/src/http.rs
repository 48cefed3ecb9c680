//! HTTP/1.1 for the link: the replication listener's routes (axum) and a
//! keep-alive client to a peer's listeners (hyper), failing over between a
//! peer site's addresses.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use voxline_location::Timestamp;

use crate::auth::{Key, MAC_HEADER, NODE_HEADER, SITE_HEADER, Signed, TIME_HEADER};
use crate::inbound::{Inbound, Sender};
use crate::wire::{BatchReply, CHANGES_PATH};

/// Largest request body accepted.
pub const BODY_MAX: usize = 64 << 20;

/// The replication listener's routes.
pub fn router(inbound: Arc<Inbound>) -> Router {
    Router::new()
        .route(CHANGES_PATH, post(changes))
        .layer(DefaultBodyLimit::max(BODY_MAX))
        .with_state(inbound)
}

fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The sender a request claims to come from (None: headers missing).
pub fn sender_of(h: &HeaderMap) -> Option<Sender> {
    Some(Sender {
        site: header(h, SITE_HEADER)?.to_owned(),
        node: header(h, NODE_HEADER)?.to_owned(),
        time_ms: header(h, TIME_HEADER)?.parse().ok()?,
        mac: header(h, MAC_HEADER)?.to_owned(),
    })
}

async fn changes(State(inbound): State<Arc<Inbound>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(sender) = sender_of(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            "missing replication authentication headers\n",
        )
            .into_response();
    };
    match inbound.receive(&sender, &body, Timestamp::now()).await {
        Ok(reply) => axum::Json(reply).into_response(),
        Err(e) => {
            tracing::warn!(site = %sender.site, node = %sender.node, error = %e, "replication request refused");
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, format!("{e}\n")).into_response()
        }
    }
}

/// Why a request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No address of the peer accepted a connection.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address tried last.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// HTTP-level failure (connection reset, protocol error).
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("HTTP request: {0}")]
    Request(#[from] axum::http::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer refused the request.
    #[error("peer answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// First line of the body.
        body: String,
    },
    /// The peer's reply is not a batch reply.
    #[error("unreadable reply: {0}")]
    Reply(#[from] serde_json::Error),
}

/// A keep-alive client to one peer site's replication listeners.
pub struct PeerClient {
    addresses: Vec<String>,
    current: usize,
    conn: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
    site: String,
    node: String,
    key: Key,
}

impl PeerClient {
    /// A client sending as `site`/`node` to `addresses` (tried in order).
    pub fn new(
        addresses: Vec<String>,
        timeout: Duration,
        site: &str,
        node: &str,
        key: Key,
    ) -> Self {
        PeerClient {
            addresses,
            current: 0,
            conn: None,
            timeout,
            site: site.to_owned(),
            node: node.to_owned(),
            key,
        }
    }

    /// The address in use (or tried next).
    pub fn address(&self) -> Option<&str> {
        self.addresses.get(self.current).map(String::as_str)
    }

    /// Send a batch body; the reply on 2xx.
    pub async fn send(&mut self, body: Vec<u8>) -> Result<BatchReply, SendError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.send_inner(body)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.failed();
                Err(e)
            }
            Err(_) => {
                self.failed();
                Err(SendError::Timeout(timeout))
            }
        }
    }

    /// After a failure: drop the connection and try the peer's next
    /// address next time.
    fn failed(&mut self) {
        self.conn = None;
        if !self.addresses.is_empty() {
            self.current = (self.current + 1) % self.addresses.len();
        }
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let mut last = None;
        for _ in 0..self.addresses.len().max(1) {
            let Some(address) = self.addresses.get(self.current).cloned() else {
                break;
            };
            match TcpStream::connect(address.as_str()).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    return Ok(sender);
                }
                Err(source) => {
                    tracing::debug!(%address, error = %source, "replication connect failed");
                    last = Some(SendError::Connect { address, source });
                    self.current = (self.current + 1) % self.addresses.len().max(1);
                }
            }
        }
        Err(last.unwrap_or_else(|| SendError::Connect {
            address: String::new(),
            source: std::io::Error::other("no address configured"),
        }))
    }

    async fn send_inner(&mut self, body: Vec<u8>) -> Result<BatchReply, SendError> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().await?,
        };
        conn.ready().await?;
        let time_ms = Timestamp::now().as_millis();
        let mac = self.key.sign(
            &Signed {
                site: &self.site,
                node: &self.node,
                time_ms,
                path: CHANGES_PATH,
            },
            &body,
        );
        let request = axum::http::Request::post(CHANGES_PATH)
            .header("host", self.address().unwrap_or("peer"))
            .header("content-type", "application/octet-stream")
            .header(SITE_HEADER, &self.site)
            .header(NODE_HEADER, &self.node)
            .header(TIME_HEADER, time_ms.to_string())
            .header(MAC_HEADER, mac)
            .body(Full::new(Bytes::from(body)))?;
        let response = conn.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        self.conn = Some(conn);
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(SendError::Status {
                status: status.as_u16(),
                body: text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}
