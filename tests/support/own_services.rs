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
/// cluster's node tables in `dir`.
pub struct OwnRedisCluster {
    pub masters: Vec<OwnRedis>,
    dir: PathBuf,
}

impl OwnRedisCluster {
    pub fn start(dir: PathBuf) -> OwnRedisCluster {
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
        self.masters
            .iter()
            .map(OwnRedis::url)
            .collect::<Vec<_>>()
            .join(",")
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
    name: String,
    dist_port: u16,
    child: Option<Child>,
}

impl OwnRabbitMq {
    pub fn start(dir: PathBuf) -> OwnRabbitMq {
        std::fs::create_dir_all(&dir).expect("a directory for RabbitMQ");
        let port = free_port();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("writable");
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .expect("writable");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("writable");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let mut rabbitmq = OwnRabbitMq {
            port,
            name: format!("test-{}@localhost", &suffix[..8]),
            dist_port: free_port(),
            dir,
            child: None,
        };
        rabbitmq.restart();
        rabbitmq
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts it again (after [`OwnRabbitMq::stop`]) and waits until it
    /// takes connections.
    pub fn restart(&mut self) {
        let dir = &self.dir;
        let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server runs (install rabbitmq-server)");
        self.child = Some(child);
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

impl Drop for OwnRabbitMq {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
