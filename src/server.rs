//! Wiring: binds the listener, mounts every route, runs until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use warp::Filter;

use crate::config::{Config, Mode};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A node whose listener is bound but which serves nothing yet. Binding
/// first lets the caller learn the real address (tests listen on port 0) and
/// report a taken port as an error rather than a panic.
pub struct BoundServer {
    listener: TcpListener,
    config: Config,
}

impl BoundServer {
    /// Binds `config.listen`.
    pub async fn bind(config: Config) -> Result<BoundServer, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(BoundServer { listener, config })
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Config {
            node_id,
            mode,
            ws_path,
            ..
        } = &self.config;
        let mode = match mode {
            Mode::Embedded => "embedded (in-process broker, in-memory registry)",
            Mode::Cluster { .. } => "cluster (RabbitMQ and Redis)",
        };
        match self.listener.local_addr() {
            Ok(addr) => tracing::info!(%addr, %node_id, ws_path, mode, "stomp-relay listening"),
            Err(error) => tracing::warn!(%error, "listening on an unknown address"),
        }

        let healthz = warp::path!("healthz").and(warp::get()).map(healthy);
        warp::serve(healthz)
            .incoming(self.listener)
            .graceful(shutdown)
            .run()
            .await;
        tracing::info!("stomp-relay stopped");
    }
}

/// `/healthz`: the process is up and serving HTTP.
fn healthy() -> &'static str {
    "ok"
}
