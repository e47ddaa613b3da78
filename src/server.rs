//! Wiring: binds the listener, builds the node's services, mounts every
//! route, and shuts down in order: stop accepting, tell every client,
//! wait for the sessions to end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use warp::Filter;

use crate::config::{Config, Mode};
use crate::relay::Relay;
use crate::shutdown;
use crate::transport::websocket;

/// How long shutdown waits for sessions to send their ERROR and close.
const DRAIN_PATIENCE: Duration = Duration::from_secs(10);

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cluster mode (--amqp-url, --redis-url) is not available in this build yet; run without them for embedded mode"
    )]
    ClusterUnavailable,
}

/// A node whose listener is bound but which serves nothing yet. Binding
/// first lets the caller learn the real address (tests listen on port 0) and
/// report a taken port as an error rather than a panic.
pub struct BoundServer {
    listener: TcpListener,
    config: Config,
    relay: Arc<Relay>,
}

impl BoundServer {
    /// Builds the node's services and binds `config.listen`.
    pub async fn bind(config: Config) -> Result<BoundServer, ServerError> {
        let relay = match &config.mode {
            Mode::Embedded => Relay::embedded(config.node_id.clone(), config.session_settings()),
            Mode::Cluster { .. } => return Err(ServerError::ClusterUnavailable),
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(BoundServer {
            listener,
            config,
            relay: Arc::new(relay),
        })
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` completes, then shuts down gracefully.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) {
        let Config {
            node_id,
            mode,
            ws_path,
            ..
        } = &self.config;
        let mode_name = match mode {
            Mode::Embedded => "embedded (in-process broker, in-memory registry)",
            Mode::Cluster { .. } => "cluster (RabbitMQ and Redis)",
        };
        match self.listener.local_addr() {
            Ok(addr) => {
                tracing::info!(%addr, %node_id, ws_path, mode = mode_name, "stomp-relay listening")
            }
            Err(error) => tracing::warn!(%error, "listening on an unknown address"),
        }

        let (trigger, shutdown) = shutdown::channel();
        let stomp = websocket::route(ws_path, self.relay.clone(), shutdown);
        let healthz = warp::path!("healthz").and(warp::get()).map(healthy);
        let routes = stomp.or(healthz);

        let signal = trigger.signal();
        warp::serve(routes)
            .incoming(self.listener)
            .graceful(async move {
                stop.await;
                tracing::info!("shutting down: no new connections; telling connected clients");
                signal.signal();
            })
            .run()
            .await;
        if !trigger.wait(DRAIN_PATIENCE).await {
            tracing::warn!("some sessions did not close within {DRAIN_PATIENCE:?}");
        }
        tracing::info!("stomp-relay stopped");
    }
}

/// `/healthz`: the process is up and serving HTTP.
fn healthy() -> &'static str {
    "ok"
}
