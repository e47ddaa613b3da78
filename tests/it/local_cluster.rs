//! `docker/run-local-cluster.sh`, compose.yaml's topology as plain
//! processes, as an operator starts it: three nodes on the shared RabbitMQ
//! and Redis, nginx in front. Through nginx, WebSockets upgrade, a SockJS
//! session's requests all reach the node that holds it, and a user message
//! crosses nodes; SIGHUP restarts the nodes one at a time without a message
//! lost; SIGTERM stops every process.
//!
//! Needs Debian's nginx (`./test.sh` installs it); fails without it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, RelayAddress, SharedTurn, StompClient, sockjs_message, sockjs_xhr};

/// An address to test through: nginx, or one node.
struct Address(SocketAddr);

impl RelayAddress for Address {
    fn addr(&self) -> SocketAddr {
        self.0
    }
}

/// A first port with three free ones from it, and one more for nginx.
fn free_ports() -> (u16, u16) {
    for _ in 0..50 {
        let first = 20_000 + fastrand::u16(..20_000);
        let all_free =
            (0..4).all(|offset| TcpListener::bind(("127.0.0.1", first + offset)).is_ok());
        if all_free {
            return (first, first + 3);
        }
    }
    panic!("no four free ports in a row");
}

/// The script, running; stopped with SIGTERM when dropped.
struct LocalCluster {
    script: Child,
    /// Its logs and nginx's files, removed once it stopped cleanly.
    dir: std::path::PathBuf,
}

impl LocalCluster {
    /// Starts the script; `settings` are more of its variables.
    fn start(
        name: &str,
        redis_prefix: &str,
        (first, front): (u16, u16),
        settings: &[(&str, &str)],
    ) -> LocalCluster {
        assert!(
            Command::new("nginx").arg("-v").output().is_ok(),
            "no nginx: install Debian's nginx (./test.sh does)"
        );
        let dir = std::env::temp_dir().join(format!("stomp-relay-{name}"));
        let mut script = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docker/run-local-cluster.sh"
        ))
        .env("STOMP_RELAY_BIN", env!("CARGO_BIN_EXE_stomp-relay"))
        .env("FIRST_PORT", first.to_string())
        .env("FRONT_PORT", front.to_string())
        .env("CLUSTER_NAME", name)
        .env("CLUSTER_DIR", &dir)
        .env("STOMP_RELAY_REDIS_PREFIX", redis_prefix)
        .envs(settings.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the script starts");
        let mut lines = BufReader::new(script.stdout.take().expect("its output")).lines();
        let mut said = String::new();
        for line in lines.by_ref() {
            let line = line.expect("the script's output");
            said.push_str(&line);
            said.push('\n');
            if line.starts_with("cluster ready") {
                // Read on, or the script dies of SIGPIPE when it says it stops.
                std::thread::spawn(move || lines.for_each(drop));
                let mut cluster = LocalCluster { script, dir };
                if !said.contains("nginx on") {
                    cluster.stop();
                    panic!("the cluster came up without nginx in front:\n{said}");
                }
                return cluster;
            }
        }
        let _ = script.kill();
        let _ = script.wait();
        panic!("the script ended before the cluster was ready:\n{said}");
    }

    /// SIGTERM, as Ctrl-C or a supervisor would; true when it exited 0.
    fn stop(&mut self) -> bool {
        let pid = self.script.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.script.try_wait() {
                if status.success() {
                    let _ = std::fs::remove_dir_all(&self.dir);
                }
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.script.kill();
        false
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if matches!(self.script.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

#[tokio::test]
async fn the_local_cluster_script_serves_three_nodes_behind_nginx() {
    let _turn = SharedTurn::take();
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let name = format!("local-{id}");
    let redis_prefix = format!("test:{id}:");
    let (first, front_port) = free_ports();
    let mut cluster = LocalCluster::start(&name, &redis_prefix, (first, front_port), &[]);
    let front = Address(SocketAddr::from(([127, 0, 0, 1], front_port)));
    let node = |n: u16| Address(SocketAddr::from(([127, 0, 0, 1], first + n - 1)));

    let nodes = support::http(&front, "GET", "/api/v1/nodes", &[], "").await;
    for n in 1..=3 {
        assert!(
            nodes.body.contains(&format!("\"{name}-{n}\"")),
            "{}",
            nodes.body
        );
    }
    assert!(nodes.head.contains("nginx"), "answered through nginx");

    // A WebSocket through nginx, a user message to a user on node 3.
    let mut bob = StompClient::connect(&node(3), Some("bob")).await;
    bob.subscribe("inbox", "/user/queue/inbox", "auto").await;
    let mut alice = StompClient::connect(&front, Some("alice")).await;
    alice.publish("/user/bob/queue/inbox", "hello bob").await;
    assert_eq!(bob.recv_body().await, "hello bob");

    // SockJS over xhr: each session's requests must reach one node, or its
    // xhr_send and polls would find no session (404) on the others.
    for _ in 0..6 {
        let session = uuid::Uuid::new_v4().simple().to_string();
        assert_eq!(sockjs_xhr(&front, &session, "xhr", "").await, "o\n");
        let connect = sockjs_message("CONNECT\naccept-version:1.2\nlogin:carol\n\n");
        sockjs_xhr(&front, &session, "xhr_send", &connect).await;
        let connected = sockjs_xhr(&front, &session, "xhr", "").await;
        assert!(connected.starts_with("a[\"CONNECTED"), "{connected}");
        let disconnect = sockjs_message("DISCONNECT\n\n");
        sockjs_xhr(&front, &session, "xhr_send", &disconnect).await;
    }

    drop((alice, bob));
    assert!(cluster.stop(), "the script stops cleanly on SIGTERM");
    for n in 1..=3 {
        assert!(
            TcpListener::bind(node(n).addr()).is_ok(),
            "node {n} has stopped listening"
        );
    }
    support::delete_redis_keys(&redis_prefix).await;
}

/// A rolling deploy loses nothing: while the script restarts its nodes one
/// at a time (SIGHUP), each telling its clients to go over its drain
/// period, 100 STOMP.js pages behind nginx, each sent a message a second,
/// reconnect with their last position and get every message once, in
/// order (`tests/js/rolling-restart.test.mjs`).
#[test]
fn a_rolling_restart_behind_nginx_loses_nothing_and_repeats_nothing() {
    let _turn = SharedTurn::take();
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let name = format!("rolling-{id}");
    let redis_prefix = format!("test:{id}:");
    let (first, front_port) = free_ports();
    let mut cluster = LocalCluster::start(
        &name,
        &redis_prefix,
        (first, front_port),
        &[("STOMP_RELAY_DRAIN_PERIOD", "2")],
    );
    support::run_node_tests(
        "rolling-restart.test.mjs",
        &[
            ("RELAY_FRONT", format!("http://127.0.0.1:{front_port}")),
            ("RELAY_CLUSTER_PID", cluster.script.id().to_string()),
            ("RELAY_USER_PREFIX", name.clone()),
        ],
    );
    assert!(cluster.stop(), "the script stops cleanly on SIGTERM");
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(support::delete_redis_keys(&redis_prefix));
}
