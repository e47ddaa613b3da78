//! How a node rides through what goes wrong around it. Needs RabbitMQ on
//! 127.0.0.1:5672 and Redis on 127.0.0.1:6379; fails without them.

mod support;

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::StompClient;
use support::node_process::NodeProcess;

/// A free loopback port, with nothing listening on it.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("an address").port()
}

/// After `delay`, forwards every connection to `port` to `target`: a
/// service that comes up late.
fn appears_later(port: u16, target: &'static str, delay: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port is still free");
        for client in listener.incoming().flatten() {
            let Ok(service) = TcpStream::connect(target) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            pipe(
                client.try_clone().expect("a handle"),
                service.try_clone().expect("a handle"),
            );
            pipe(service, client);
        }
    });
}

#[tokio::test]
async fn a_node_started_before_rabbitmq_and_redis_waits_for_them() {
    let (amqp, redis) = (free_port(), free_port());
    let delay = Duration::from_secs(2);
    appears_later(amqp, "127.0.0.1:5672", delay);
    appears_later(redis, "127.0.0.1:6379", delay);
    let started = Instant::now();
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:{amqp}/%2f");
    let redis_url = format!("redis://127.0.0.1:{redis}");
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let node_prefix = prefix.clone();
    let mut node = tokio::task::spawn_blocking(move || {
        NodeProcess::start(
            "late-services",
            &[
                "--amqp-url",
                &amqp_url,
                "--redis-url",
                &redis_url,
                "--redis-prefix",
                &node_prefix,
            ],
        )
    })
    .await
    .expect("the node starts once they are there");
    assert!(started.elapsed() >= delay, "it waited for them");
    let mut client = StompClient::connect(&node, Some("early")).await;
    client.subscribe("t", "/topic/late.services", "auto").await;
    client.publish("/topic/late.services", "served").await;
    assert_eq!(client.recv_body().await, "served");
    node.kill();
    support::delete_redis_keys(&prefix).await;
}

/// A Redis server of the test's own, on its own port, keeping nothing on
/// disk: restarting it empties it, as a restart of the shared one would.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { port, child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many sessions `/api/v1/users/{user}/sessions` lists, or the status
/// it answered instead.
async fn sessions_of(node: &NodeProcess, user: &str) -> Result<usize, u16> {
    let path = format!("/api/v1/users/{user}/sessions");
    let answer = support::http(node, "GET", &path, &[], "").await;
    if answer.status != 200 {
        return Err(answer.status);
    }
    Ok(answer.json()["sessions"].as_array().map_or(0, Vec::len))
}

#[tokio::test]
async fn after_redis_restarts_empty_the_node_registers_its_sessions_again() {
    let mut redis = OwnRedis::start(free_port());
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let node = {
        let redis_url = redis_url.clone();
        tokio::task::spawn_blocking(move || {
            NodeProcess::start(
                "redis-restart",
                &["--amqp-url", support::AMQP_URL, "--redis-url", &redis_url],
            )
        })
        .await
        .expect("the node starts")
    };
    let mut alice = StompClient::connect(&node, Some("alice")).await;
    alice.subscribe("n", "/user/queue/n", "auto").await;
    assert_eq!(sessions_of(&node, "alice").await, Ok(1));

    redis.stop();
    // While Redis is away, a message for alice is refused, not lost.
    let body = r#"{"destination": "n", "body": "during"}"#;
    let json = [("content-type", "application/json")];
    let refused = support::http(&node, "POST", "/api/v1/users/alice/messages", &json, body).await;
    assert_eq!(refused.status, 503, "{}", refused.body);

    let redis = OwnRedis::start(redis.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions_of(&node, "alice").await != Ok(1) {
        assert!(
            Instant::now() < deadline,
            "alice's session was not registered again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = r#"{"destination": "n", "body": "after"}"#;
    let sent = support::http(&node, "POST", "/api/v1/users/alice/messages", &json, body).await;
    assert_eq!(sent.json()["sessions"], 1, "{}", sent.body);
    assert_eq!(alice.recv_body().await, "after");
    drop(redis);
}
