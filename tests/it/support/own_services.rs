//! RabbitMQ and Redis servers of a test's own, on ports of their own, for
//! tests that stop and restart them without disturbing the shared ones.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port, with nothing listening on it.
pub fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("an address").port()
}

/// A list flag's value.
fn comma_separated(urls: impl Iterator<Item = String>) -> String {
    urls.collect::<Vec<_>>().join(",")
}

/// Waits until something accepts connections on `port`.
fn await_port(port: u16, what: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis server of the test's own. Without `--appendonly`, restarting it
/// empties it, as a restart of the shared one would.
pub struct OwnRedis {
    pub port: u16,
    arguments: Vec<String>,
    child: Option<Child>,
}

impl OwnRedis {
    /// Keeping nothing on disk.
    pub fn start(port: u16) -> OwnRedis {
        OwnRedis::launch(port, Vec::new())
    }

    /// Keeping every write in an append-only file in `dir`, as a production
    /// Redis would, so that a restart loses nothing.
    pub fn start_durable(port: u16, dir: &std::path::Path) -> OwnRedis {
        let dir = dir.to_string_lossy().into_owned();
        OwnRedis::launch(
            port,
            vec!["--appendonly".into(), "yes".into(), "--dir".into(), dir],
        )
    }

    fn launch(port: u16, extra: Vec<String>) -> OwnRedis {
        let mut arguments: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
            .map(str::to_owned)
            .to_vec();
        arguments.extend(["--save".to_owned(), String::new()]);
        if extra.is_empty() {
            arguments.extend(["--appendonly", "no"].map(str::to_owned));
        }
        arguments.extend(extra);
        let mut redis = OwnRedis {
            port,
            arguments,
            child: None,
        };
        redis.restart();
        redis
    }

    /// Starts it again (after [`OwnRedis::stop`]).
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.arguments)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (install redis-server)");
        self.child = Some(child);
        await_port(self.port, "redis-server", Duration::from_secs(10));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of the test's own: three masters, no replicas, each
/// with its own port and cluster bus port, keeping nothing on disk but the
/// cluster's node tables, in a temporary directory of its own.
pub struct OwnRedisCluster {
    pub masters: Vec<OwnRedis>,
    dir: PathBuf,
}

impl OwnRedisCluster {
    pub fn start() -> OwnRedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "stomp-relay-test-redis-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for Redis Cluster");
        let masters: Vec<OwnRedis> = (0..3)
            .map(|_| {
                let port = free_port();
                let table = dir.join(format!("nodes-{port}.conf"));
                let clustered = [
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &free_port().to_string(),
                    "--cluster-config-file",
                    &table.to_string_lossy(),
                ]
                .map(str::to_owned)
                .to_vec();
                OwnRedis::launch(port, clustered)
            })
            .collect();
        let addresses: Vec<String> = masters
            .iter()
            .map(|master| format!("127.0.0.1:{}", master.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs (install redis-tools)");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = OwnRedisCluster { masters, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.is_ok() {
            assert!(Instant::now() < deadline, "the Redis Cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Every master says `cluster_state:ok`: all slots are served.
    fn is_ok(&self) -> bool {
        self.masters.iter().all(|master| {
            Command::new("redis-cli")
                .args(["-p", &master.port.to_string(), "cluster", "info"])
                .output()
                .is_ok_and(|info| {
                    String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok")
                })
        })
    }

    /// `--redis-cluster-nodes`' value: every master.
    pub fn urls(&self) -> String {
        comma_separated(self.masters.iter().map(OwnRedis::url))
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        self.masters.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ node of the test's own: its own node name, ports, data and
/// configuration (no plugins), so that stopping it touches nothing else.
/// Its data stays across [`OwnRabbitMq::stop`] and [`OwnRabbitMq::restart`],
/// as a restarted broker's would.
pub struct OwnRabbitMq {
    pub port: u16,
    dir: PathBuf,
    pub name: String,
    dist_port: u16,
    /// The Erlang cookie's home, shared by the nodes of one cluster.
    home: Option<PathBuf>,
    child: Option<Child>,
}

impl OwnRabbitMq {
    pub fn start(dir: PathBuf) -> OwnRabbitMq {
        let mut rabbitmq = OwnRabbitMq::configure(dir, None);
        rabbitmq.restart();
        rabbitmq
    }

    /// Writes the node's configuration (its own, empty, so that the
    /// machine's broker's is not read); starts nothing.
    fn configure(dir: PathBuf, home: Option<PathBuf>) -> OwnRabbitMq {
        std::fs::create_dir_all(&dir).expect("a directory for RabbitMQ");
        let port = free_port();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("writable");
        std::fs::write(dir.join("rabbitmq.conf"), "").expect("writable");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("writable");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        OwnRabbitMq {
            port,
            name: format!("test-{}@localhost", &suffix[..8]),
            dist_port: free_port(),
            dir,
            home,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts it again (after [`OwnRabbitMq::stop`]) and waits until it
    /// takes connections.
    pub fn restart(&mut self) {
        self.spawn();
        self.await_started();
    }

    fn spawn(&mut self) {
        let dir = &self.dir;
        let mut command = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
        command
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"));
        if let Some(home) = &self.home {
            command.env("HOME", home);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server runs (install rabbitmq-server)");
        self.child = Some(child);
    }

    fn await_started(&self) {
        await_port(self.port, "rabbitmq-server", Duration::from_secs(60));
    }

    /// Stops the broker process at once, as a crash or `kill` would.
    pub fn stop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A RabbitMQ cluster of three nodes of the test's own, sharing an Erlang
/// cookie: started alone, then nodes 2 and 3 joined to node 1 with
/// `rabbitmqctl join_cluster`.
pub struct OwnRabbitMqCluster {
    pub nodes: Vec<OwnRabbitMq>,
    dir: PathBuf,
}

impl OwnRabbitMqCluster {
    pub fn start(dir: PathBuf) -> OwnRabbitMqCluster {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("a directory for the cookie");
        let cookie = home.join(".erlang.cookie");
        std::fs::write(&cookie, uuid::Uuid::new_v4().simple().to_string()).expect("writable");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))
            .expect("the cookie is private");
        let mut nodes: Vec<OwnRabbitMq> = (1..=3)
            .map(|n| OwnRabbitMq::configure(dir.join(format!("node-{n}")), Some(home.clone())))
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        for node in &nodes {
            node.await_started();
        }
        let cluster = OwnRabbitMqCluster { nodes, dir };
        let first = cluster.nodes[0].name.clone();
        for joining in 1..cluster.nodes.len() {
            cluster.ctl(joining, &["stop_app"]);
            cluster.ctl(joining, &["join_cluster", &first]);
            cluster.ctl(joining, &["start_app"]);
        }
        cluster
    }

    /// `--amqp-url`'s value: every node, the first first.
    pub fn urls(&self) -> String {
        comma_separated(self.nodes.iter().map(OwnRabbitMq::url))
    }

    /// Runs `rabbitmqctl {arguments}` against node `asked`; answers what
    /// it printed, and fails the test when it fails.
    fn ctl(&self, asked: usize, arguments: &[&str]) -> Vec<u8> {
        let node = &self.nodes[asked];
        let output = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(["-n", &node.name])
            .args(arguments)
            .env("HOME", self.dir.join("home"))
            .env("RABBITMQ_CONF_ENV_FILE", node.dir.join("rabbitmq-env.conf"))
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            output.status.success(),
            "rabbitmqctl {arguments:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// What `rabbitmqctl {arguments} --formatter json` prints.
    fn ctl_json(&self, asked: usize, arguments: &[&str]) -> serde_json::Value {
        let arguments = [arguments, &["--formatter", "json"]].concat();
        serde_json::from_slice(&self.ctl(asked, &arguments)).unwrap_or_default()
    }

    /// Which node carries the AMQP connection named `name` (a relay names
    /// its connection `stomp-relay {node id}`), as node `asked` sees it.
    pub fn node_carrying(&self, asked: usize, name: &str) -> Option<usize> {
        let connections = self.ctl_json(asked, &["list_connections", "port", "client_properties"]);
        let named = |connection: &&serde_json::Value| {
            connection["client_properties"]
                .as_array()
                .is_some_and(|properties| {
                    properties
                        .iter()
                        .any(|property| property[0] == "connection_name" && property[2] == name)
                })
        };
        let port = connections.as_array()?.iter().find(named)?["port"].as_u64()?;
        self.nodes
            .iter()
            .position(|node| u64::from(node.port) == port)
    }

    /// The nodes running in the cluster, as node `asked` sees it.
    pub fn running_nodes(&self, asked: usize) -> Vec<serde_json::Value> {
        let status = self.ctl_json(asked, &["cluster_status"]);
        status["running_nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The type of the queue `name`, as node `asked` sees it.
    pub fn queue_type(&self, asked: usize, name: &str) -> Option<String> {
        let queues = self.ctl_json(asked, &["list_queues", "name", "type"]);
        queues.as_array()?.iter().find_map(|queue| {
            (queue["name"] == name).then(|| queue["type"].as_str().map(str::to_owned))?
        })
    }
}

impl Drop for OwnRabbitMqCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for OwnRabbitMq {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
