//! The admin listener: a small HTTP server for operators and tools.
//!
//! It serves `GET /metrics` (Prometheus text format, from the process-wide
//! `metrics` recorder installed by [`install_metrics`]), `GET /health`, and
//! whatever JSON routes the node's roles contribute as an [`axum::Router`].
//! [`client`] is the matching HTTP client used by `voxline ctl`.

pub mod client;

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tokio::net::TcpListener;

/// `[admin]` section of the node configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Whether the admin listener runs.
    pub enabled: bool,
    /// Address of the HTTP listener. Keep it on a management network.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding the listener failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// Address asked for.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another metrics recorder is already installed in this process.
    #[error("metrics recorder already installed: {0}")]
    Recorder(String),
}

/// Installs the process-wide Prometheus recorder (once per process) and
/// returns the handle that renders it.
pub fn install_metrics() -> Result<PrometheusHandle, AdminError> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| AdminError::Recorder(e.to_string()))
}

/// A running admin listener.
pub struct AdminServer {
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Binds `listen` and serves `/metrics`, `/health` and `routes`.
    pub async fn start(
        listen: SocketAddr,
        metrics: PrometheusHandle,
        routes: Router,
    ) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| AdminError::Bind {
                address: listen,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| AdminError::Bind {
            address: listen,
            source,
        })?;
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let body = metrics.render();
                    async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
                }),
            )
            .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
            .merge(routes)
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n").into_response() });
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
        Ok(AdminServer { local, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops serving.
    pub fn shutdown(self) {
        self.task.abort();
    }
}
