//! Relay nodes as separate processes of the real binary, for what one
//! process cannot show: several nodes with their own counters, a node
//! killed with SIGKILL, and (in the benchmarks) a relay's own CPU time. A [`Cluster`] of them shares RabbitMQ, Redis and one Redis
//! prefix, holds the [`SharedTurn`] while it runs, and deletes that
//! prefix's keys when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::own_services::OwnRedisCluster;
use super::{AMQP_URL, REDIS_URL, RelayAddress, SharedTurn, http};

/// One relay process.
pub struct NodeProcess {
    /// The benchmark reads the process's CPU time in `/proc` by its id.
    pub child: Child,
    pub addr: SocketAddr,
    pub node_id: String,
}

impl RelayAddress for NodeProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl NodeProcess {
    /// Starts a node in cluster mode on the shared Redis and waits until it
    /// answers `/healthz`.
    pub fn start_clustered(node_id: &str, redis_prefix: &str, flags: &[&str]) -> NodeProcess {
        let redis = ["--redis-url", REDIS_URL];
        NodeProcess::start_clustered_on(redis, node_id, redis_prefix, flags)
    }

    /// [`NodeProcess::start_clustered`] on the Redis that `redis` names
    /// (flag and value).
    pub fn start_clustered_on(
        redis: [&str; 2],
        node_id: &str,
        redis_prefix: &str,
        flags: &[&str],
    ) -> NodeProcess {
        let cluster = [
            "--amqp-url",
            AMQP_URL,
            redis[0],
            redis[1],
            "--redis-prefix",
            redis_prefix,
        ];
        NodeProcess::start(node_id, &[&cluster[..], flags].concat())
    }

    /// Starts a node with `flags` on a free loopback port and waits until it
    /// is ready (`/readyz`).
    pub fn start(node_id: &str, flags: &[&str]) -> NodeProcess {
        let node = NodeProcess::spawn(node_id, flags);
        let deadline = Instant::now() + Duration::from_secs(20);
        while node.answers("/readyz") != Some(200) {
            assert!(Instant::now() < deadline, "node {node_id} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    /// Starts a node with `flags` on a free loopback port, without waiting
    /// for it.
    pub fn spawn(node_id: &str, flags: &[&str]) -> NodeProcess {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("an address").port()
        };
        let listen = format!("127.0.0.1:{port}");
        // A benchmark may measure another build of the relay side by side.
        let binary =
            std::env::var("STOMP_RELAY_BIN").unwrap_or(env!("CARGO_BIN_EXE_stomp-relay").into());
        let child = Command::new(binary)
            .args(["--listen", &listen, "--node-id", node_id])
            .args(flags)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            // Stopped with clients still connected, it tells them at once
            // (a variable, which an older build measured beside it ignores).
            .env("STOMP_RELAY_DRAIN_PERIOD", "0")
            .stdout(Stdio::null())
            .spawn()
            .expect("the relay binary starts");
        NodeProcess {
            child,
            addr: listen.parse().expect("an address"),
            node_id: node_id.to_owned(),
        }
    }

    /// The status `GET {path}` gets, once something answers.
    pub fn answers(&self, path: &str) -> Option<u16> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.get(9..12)?.parse().ok()
    }

    /// The value of one of the node's Prometheus counters or gauges.
    pub async fn metric(&self, name: &str) -> u64 {
        let answer = http(self, "GET", "/metrics", &[], "").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer
            .body
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is not among the metrics:\n{}", answer.body))
    }

    /// Kills the process with SIGKILL: no goodbye to Redis or RabbitMQ.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // SIGTERM, so that the node withdraws from Redis and RabbitMQ; a
        // node the test killed is gone already.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg(self.child.id().to_string())
                .status();
        }
        let _ = self.child.wait();
    }
}

/// Nodes sharing one Redis prefix.
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    pub redis_prefix: String,
    /// The Redis Cluster the nodes use instead of the shared Redis.
    redis_cluster: Option<OwnRedisCluster>,
    _turn: SharedTurn,
}

impl Cluster {
    /// `count` nodes on the shared Redis, each started with `flags`.
    pub fn start(count: usize, flags: &[&str]) -> Cluster {
        Cluster::launch(None, count, flags)
    }

    /// `count` nodes on a three-master Redis Cluster of their own.
    pub fn start_on_redis_cluster(count: usize, flags: &[&str]) -> Cluster {
        Cluster::launch(Some(OwnRedisCluster::start()), count, flags)
    }

    fn launch(redis_cluster: Option<OwnRedisCluster>, count: usize, flags: &[&str]) -> Cluster {
        let turn = SharedTurn::take();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let redis_prefix = format!("test:{id}:");
        let cluster_nodes = redis_cluster.as_ref().map(OwnRedisCluster::urls);
        let redis = match &cluster_nodes {
            Some(urls) => ["--redis-cluster-nodes", urls.as_str()],
            None => ["--redis-url", REDIS_URL],
        };
        let nodes = (0..count)
            .map(|n| {
                let node_id = format!("test-{id}-{n}");
                NodeProcess::start_clustered_on(redis, &node_id, &redis_prefix, flags)
            })
            .collect();
        Cluster {
            nodes,
            redis_prefix,
            redis_cluster,
            _turn: turn,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        if self.redis_cluster.take().is_some() {
            return;
        }
        let prefix = self.redis_prefix.clone();
        // Drop may run inside a test's runtime, which cannot block on
        // another future; a thread of its own can.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(super::delete_redis_keys(&prefix));
            }
        })
        .join();
    }
}
