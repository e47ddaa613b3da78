//! A stomp-relay started by `compare`: its own process (so that its CPU and
//! memory are its own in `/proc`), on a free loopback port, with every limit
//! a benchmark would run into lifted.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::http::HttpClient;

/// Flags every relay gets. The bench connects thousands of sessions from a
/// few addresses, one sender writes thousands of frames a second, and a
/// fan-out subscriber may have every message of a run waiting at once.
/// (Heart-beats are off because the clients ask for none.)
const BENCH_FLAGS: &[&str] = &[
    "--max-connections",
    "0",
    "--max-connections-per-ip",
    "0",
    "--max-frames-per-second",
    "0",
    "--max-pending-messages",
    "100000",
];

/// How long a relay may take to be ready (`/readyz`) after it starts.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How long a relay may take to stop after SIGTERM before it is killed. A
/// cluster node that has just seen 15 000 sessions go is still withdrawing
/// them from Redis, and what it does not finish is left behind there.
const STOP_PATIENCE: Duration = Duration::from_secs(60);

/// RabbitMQ and Redis for a relay in cluster mode.
#[derive(Debug, Clone)]
pub struct ClusterServices {
    pub amqp_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
}

/// One relay process, stopped (SIGTERM) when dropped.
pub struct RelayProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl RelayProcess {
    /// Starts `binary` and waits until it is ready (`/readyz`).
    pub async fn start(
        binary: &Path,
        node_id: &str,
        cluster: Option<&ClusterServices>,
        extra_flags: &[String],
    ) -> Result<RelayProcess, BenchError> {
        let failed = |reason: String| BenchError::RelayStart {
            binary: binary.display().to_string(),
            reason,
        };
        let addr = free_loopback_port().map_err(|error| failed(error.to_string()))?;
        let mut command = Command::new(binary);
        command
            .args(["--listen", &addr.to_string(), "--node-id", node_id])
            .args(BENCH_FLAGS);
        if let Some(cluster) = cluster {
            command.args([
                "--amqp-url",
                &cluster.amqp_url,
                "--redis-url",
                &cluster.redis_url,
                "--redis-prefix",
                &cluster.redis_prefix,
            ]);
        }
        let child = command
            .args(extra_flags)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            // Stopped between scenarios, it need not spread its clients'
            // reconnects (a variable, which an older build ignores).
            .env("STOMP_RELAY_DRAIN_PERIOD", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|error| failed(error.to_string()))?;
        let mut relay = RelayProcess { child, addr };
        let http = HttpClient::new(1);
        let health = format!("http://{addr}/readyz");
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if let Ok(Some(status)) = relay.child.try_wait() {
                return Err(failed(format!("it exited with {status}")));
            }
            if http
                .get(&health)
                .await
                .is_ok_and(|answer| answer.status.is_success())
            {
                return Ok(relay);
            }
            if Instant::now() > deadline {
                relay.stop();
                return Err(failed(format!(
                    "{health} did not answer within {START_PATIENCE:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, so that a cluster node withdraws from Redis and deletes its
    /// RabbitMQ queues; SIGKILL if it takes too long.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let asked = Instant::now();
        while asked.elapsed() < STOP_PATIENCE {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                if asked.elapsed() > Duration::from_secs(5) {
                    eprintln!(
                        "relay {} took {:.1} s to stop after SIGTERM",
                        self.child.id(),
                        asked.elapsed().as_secs_f64()
                    );
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "relay {} did not stop within {STOP_PATIENCE:?} of SIGTERM; killing it",
            self.child.id()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback address with a port nobody listens on now.
fn free_loopback_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}
