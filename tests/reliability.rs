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
