//! How a node rides through what goes wrong around it. Needs RabbitMQ on
//! 127.0.0.1:5672 and Redis on 127.0.0.1:6379; fails without them. A test
//! that starts nodes on that RabbitMQ takes the [`SharedTurn`] first.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stomp_parser::{Command, Frame};

use crate::support::node_process::NodeProcess;
use crate::support::own_services::{OwnRabbitMq, OwnRedis, free_port};
use crate::support::{self, PATIENCE, SharedTurn, StompClient};

/// A TCP forwarder to a service, on a port of its own, that the test can
/// cut (every connection it carries is closed, and new ones are closed as
/// they come) and mend: the service, as the node sees it, goes away and
/// comes back.
struct Forwarder {
    port: u16,
    open: Arc<AtomicBool>,
    carried: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    fn start(target: &'static str) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let open = Arc::new(AtomicBool::new(true));
        let carried = Arc::new(Mutex::new(Vec::new()));
        let (is_open, streams) = (open.clone(), carried.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !is_open.load(Ordering::Acquire) {
                    continue;
                }
                let Ok(service) = TcpStream::connect(target) else {
                    continue;
                };
                let handle = |stream: &TcpStream| stream.try_clone().expect("a handle");
                if let Ok(mut streams) = streams.lock() {
                    streams.push(handle(&client));
                    streams.push(handle(&service));
                }
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                pipe(handle(&client), handle(&service));
                pipe(service, client);
            }
        });
        Forwarder {
            port,
            open,
            carried,
        }
    }

    /// A forwarder that is cut until `delay` has passed: a service that
    /// comes up late.
    fn appearing_after(target: &'static str, delay: Duration) -> Forwarder {
        let forwarder = Forwarder::start(target);
        forwarder.cut();
        let open = forwarder.open.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            open.store(true, Ordering::Release);
        });
        forwarder
    }

    fn cut(&self) {
        self.open.store(false, Ordering::Release);
        if let Ok(mut streams) = self.carried.lock() {
            for stream in streams.drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    fn mend(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// Whether it carries a connection now.
    fn carries(&self) -> bool {
        self.carried.lock().is_ok_and(|streams| !streams.is_empty())
    }
}

#[tokio::test]
async fn a_node_started_before_rabbitmq_and_redis_waits_for_them() {
    let _turn = SharedTurn::take();
    let delay = Duration::from_secs(2);
    let amqp = Forwarder::appearing_after("127.0.0.1:5672", delay);
    let redis = Forwarder::appearing_after("127.0.0.1:6379", delay);
    let started = Instant::now();
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp.port);
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let flags = [
        "--amqp-url",
        &amqp_url,
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        &prefix,
    ];
    let mut node = NodeProcess::spawn("late-services", &flags);
    // While it waits, it is alive but not ready, and says for what.
    let deadline = Instant::now() + PATIENCE;
    while node.answers("/healthz") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the waiting node answers /healthz"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let readiness = support::http(&node, "GET", "/readyz", &[], "").await;
    assert_eq!(readiness.status, 503);
    assert_eq!(readiness.body, "starting: waiting for RabbitMQ");
    while node.answers("/readyz") != Some(200) {
        assert!(
            Instant::now() < started + 4 * PATIENCE,
            "the node is ready once they are there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= delay, "it waited for them");
    let mut client = StompClient::connect(&node, Some("early")).await;
    client.subscribe("t", "/topic/late.services", "auto").await;
    client.publish("/topic/late.services", "served").await;
    assert_eq!(client.recv_body().await, "served");
    node.kill();
    support::delete_redis_keys(&prefix).await;
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

/// A node on the shared RabbitMQ and the Redis at `redis_url`.
async fn node_on_redis(name: &'static str, redis_url: String) -> NodeProcess {
    tokio::task::spawn_blocking(move || {
        NodeProcess::start(
            name,
            &["--amqp-url", support::AMQP_URL, "--redis-url", &redis_url],
        )
    })
    .await
    .expect("the node starts")
}

#[tokio::test]
async fn after_redis_restarts_empty_the_node_registers_its_sessions_again() {
    let _turn = SharedTurn::take();
    let mut redis = OwnRedis::start(free_port());
    let node = node_on_redis("redis-restart", redis.url()).await;
    let mut alice = StompClient::connect(&node, Some("alice")).await;
    alice.subscribe("n", "/user/queue/n", "auto").await;
    assert_eq!(sessions_of(&node, "alice").await, Ok(1));

    redis.stop();
    // While Redis is away, a message for alice is refused, not lost.
    let body = r#"{"destination": "n", "body": "during"}"#;
    let json = [("content-type", "application/json")];
    let refused = support::http(&node, "POST", "/api/v1/users/alice/messages", &json, body).await;
    assert_eq!(refused.status, 503, "{}", refused.body);

    redis.restart();
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
    assert_eq!(node.metric("stomp_relay_redis_connected").await, 1);
    assert!(node.metric("stomp_relay_redis_reconnects_total").await >= 1);
    let failed = r#"stomp_relay_dispatch_total{outcome="failed"}"#;
    assert!(node.metric(failed).await >= 1);
    drop(redis);
}

/// A session that ends while Redis is away leaves presence once Redis is
/// back with what it held: its node tries the unregister again.
#[tokio::test]
async fn a_session_that_ends_while_redis_is_away_leaves_presence_when_it_is_back() {
    let _turn = SharedTurn::take();
    let dir = std::env::temp_dir().join(format!(
        "stomp-relay-redis-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("a directory for Redis");
    let mut redis = OwnRedis::start_durable(free_port(), &dir);
    let node = node_on_redis("unregister-later", redis.url()).await;
    let mut alice = StompClient::connect(&node, Some("alice")).await;
    alice.subscribe("n", "/user/queue/n", "auto").await;
    assert_eq!(sessions_of(&node, "alice").await, Ok(1));

    redis.stop();
    drop(alice);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Back with everything it had, alice's entry included.
    redis.restart();
    // The node tries again with growing waits (1, 2, 4, 8 s ...).
    let deadline = Instant::now() + Duration::from_secs(45);
    while sessions_of(&node, "alice").await != Ok(0) {
        assert!(
            Instant::now() < deadline,
            "alice's ended session is still present"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(node);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/readyz`'s status.
async fn readiness(node: &NodeProcess) -> u16 {
    support::http(node, "GET", "/readyz", &[], "").await.status
}

#[tokio::test]
async fn while_rabbitmq_is_away_the_node_is_not_ready_and_a_send_waits_for_it() {
    let _turn = SharedTurn::take();
    let rabbitmq = Forwarder::start("127.0.0.1:5672");
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", rabbitmq.port);
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let node_prefix = prefix.clone();
    let mut node = tokio::task::spawn_blocking(move || {
        NodeProcess::start(
            "rabbitmq-away",
            &[
                "--amqp-url",
                &amqp_url,
                "--redis-url",
                support::REDIS_URL,
                "--redis-prefix",
                &node_prefix,
            ],
        )
    })
    .await
    .expect("the node starts");
    let topic = format!("/topic/away.{}", uuid::Uuid::new_v4().simple());
    let mut reader = StompClient::connect(&node, None).await;
    reader.subscribe("t", &topic, "auto").await;
    let mut sender = StompClient::connect(&node, None).await;
    assert_eq!(readiness(&node).await, 200);

    rabbitmq.cut();
    let deadline = Instant::now() + Duration::from_secs(5);
    while readiness(&node).await != 503 {
        assert!(Instant::now() < deadline, "/readyz still says ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = support::http(&node, "GET", "/healthz", &[], "").await;
    assert_eq!(health.status, 200, "the node itself is healthy");
    sender
        .send(
            Frame::new(Command::Send)
                .header("destination", topic.as_str())
                .header("receipt", "away")
                .body("sent while away"),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(readiness(&node).await, 503);

    rabbitmq.mend();
    // Published once the broker is back, and only then acknowledged.
    sender.expect_receipt("away").await;
    assert_eq!(reader.recv_body().await, "sent while away");
    assert_eq!(readiness(&node).await, 200);
    node.kill();
    support::delete_redis_keys(&prefix).await;
}

/// A new subscriber of `queue` on `node`, and the body of the first
/// message it gets, which must be a redelivery; acknowledged.
async fn redelivered(node: &NodeProcess, queue: &str, ack: &str) -> (StompClient, String) {
    let mut worker = StompClient::connect(node, None).await;
    worker.subscribe("q", queue, ack).await;
    let again = worker.recv().await;
    assert_eq!(again.get("redelivered"), Some("true"));
    let id = again.get("ack").expect("an ack id");
    worker
        .send(
            Frame::new(Command::Ack)
                .header("id", id)
                .header("receipt", "acked"),
        )
        .await;
    worker.expect_receipt("acked").await;
    (worker, String::from_utf8_lossy(&again.body).into_owned())
}

#[tokio::test]
async fn a_queue_message_left_unacknowledged_comes_again_after_a_disconnect_or_a_killed_node() {
    let _turn = SharedTurn::take();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let (first_prefix, second_prefix) = (prefix.clone(), prefix.clone());
    let mut first = tokio::task::spawn_blocking(move || {
        NodeProcess::start_clustered("unacked-first", &first_prefix, &[])
    })
    .await
    .expect("the first node starts");
    let second = tokio::task::spawn_blocking(move || {
        NodeProcess::start_clustered("unacked-second", &second_prefix, &[])
    })
    .await
    .expect("the second node starts");
    let name = format!("unacked.{}", uuid::Uuid::new_v4().simple());
    let queue = format!("/queue/{name}");
    let mut sender = StompClient::connect(&second, None).await;

    // A client that goes without acknowledging.
    let mut leaving = StompClient::connect(&first, None).await;
    leaving.subscribe("q", &queue, "client-individual").await;
    sender.publish(&queue, "left by a client").await;
    assert_eq!(leaving.recv_body().await, "left by a client");
    drop(leaving);
    let (mut heir, body) = redelivered(&second, &queue, "client-individual").await;
    assert_eq!(body, "left by a client");
    let unsubscribe = Frame::new(Command::Unsubscribe)
        .header("id", "q")
        .header("receipt", "off");
    heir.send(unsubscribe).await;
    heir.expect_receipt("off").await;

    // A node killed while its client had not acknowledged.
    let mut stranded = StompClient::connect(&first, None).await;
    stranded.subscribe("q", &queue, "client").await;
    sender.publish(&queue, "left by a node").await;
    assert_eq!(stranded.recv_body().await, "left by a node");
    first.kill();
    let (_heir, body) = redelivered(&second, &queue, "client").await;
    assert_eq!(body, "left by a node");
    support::delete_queues(&[name]).await;
    support::delete_redis_keys(&prefix).await;
}

#[tokio::test]
async fn a_persisted_message_whose_node_is_killed_before_the_ack_reaches_its_user_on_another() {
    let _turn = SharedTurn::take();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let (first_prefix, second_prefix) = (prefix.clone(), prefix.clone());
    let mut first = tokio::task::spawn_blocking(move || {
        NodeProcess::start_clustered("kept-first", &first_prefix, &[])
    })
    .await
    .expect("the first node starts");
    let second = tokio::task::spawn_blocking(move || {
        NodeProcess::start_clustered("kept-second", &second_prefix, &[])
    })
    .await
    .expect("the second node starts");
    let user = format!("vic-{}", uuid::Uuid::new_v4().simple());
    let mut vic = StompClient::connect(&first, Some(&user)).await;
    vic.subscribe("in", "/user/queue/inbox", "client-individual")
        .await;
    let json = [("content-type", "application/json")];
    let body = r#"{"destination": "inbox", "body": "in flight", "persist": true}"#;
    let path = format!("/api/v1/users/{user}/messages");
    let sent = support::http(&second, "POST", &path, &json, body).await;
    assert_eq!(sent.json()["sessions"], 1, "{}", sent.body);
    let shown = vic.recv().await;
    assert_eq!(&shown.body[..], b"in flight");
    first.kill();
    // The user comes back on the other node: it is there, once, saying
    // that it may have been seen, under the message-id it was shown with.
    let mut back = StompClient::connect(&second, Some(&user)).await;
    back.subscribe("in", "/user/queue/inbox", "auto").await;
    let again = back.recv().await;
    assert_eq!(&again.body[..], b"in flight");
    assert_eq!(again.get("redelivered"), Some("true"));
    assert_eq!(again.get("message-id"), shown.get("message-id"));
    back.expect_nothing().await;
    support::delete_redis_keys(&prefix).await;
}

/// Given several RabbitMQ addresses (the nodes of a RabbitMQ cluster), a
/// node connects to the first that answers and, when its broker goes away,
/// to the next, restoring its topology there: its clients keep receiving.
/// Two forwarders to one broker stand in for two broker nodes.
#[tokio::test]
async fn a_node_given_several_brokers_moves_to_the_next_when_its_own_goes_away() {
    let _turn = SharedTurn::take();
    let first = Forwarder::start("127.0.0.1:5672");
    let second = Forwarder::start("127.0.0.1:5672");
    let url =
        |forwarder: &Forwarder| format!("amqp://guest:guest@127.0.0.1:{}/%2f", forwarder.port);
    let brokers = format!("{},{}", url(&first), url(&second));
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let start = |name: &'static str| {
        let (brokers, prefix) = (brokers.clone(), prefix.clone());
        tokio::task::spawn_blocking(move || {
            NodeProcess::start(
                name,
                &[
                    "--amqp-url",
                    &brokers,
                    "--redis-url",
                    support::REDIS_URL,
                    "--redis-prefix",
                    &prefix,
                ],
            )
        })
    };
    let mut node = start("brokers").await.expect("the node starts");
    let topic = format!("/topic/brokers.{}", uuid::Uuid::new_v4().simple());
    let mut reader = StompClient::connect(&node, None).await;
    reader.subscribe("t", &topic, "auto").await;
    let mut sender = StompClient::connect(&node, None).await;
    sender.publish(&topic, "before").await;
    assert_eq!(reader.recv_body().await, "before");

    // The node starts at a broker of its own (its node id decides).
    let own = if first.carries() { &first } else { &second };
    assert!(own.carries(), "the node is connected through one of them");
    own.cut();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.metric("stomp_relay_broker_reconnects_total").await != 1 {
        assert!(
            Instant::now() < deadline,
            "the node did not move to the second broker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sender.publish(&topic, "after").await;
    assert_eq!(reader.recv_body().await, "after");

    // A node started while one broker is away starts on the other.
    let mut late = start("brokers-late").await.expect("the node starts");
    assert_eq!(readiness(&late).await, 200);
    late.kill();
    node.kill();
    support::delete_redis_keys(&prefix).await;
}

/// A `stomp.dispatch` request that comes while Redis is away is tried
/// again, not lost: a persisted one reaches its user exactly once when
/// Redis is back, live, or kept (Redis came back empty: until the node has
/// written its sessions again the user looks offline) for the next
/// subscribe. On a RabbitMQ of the test's own, so that no other test's
/// node takes the request.
#[tokio::test]
async fn a_dispatch_request_that_comes_while_redis_is_away_reaches_its_user_when_it_is_back() {
    let dir = std::env::temp_dir().join(format!(
        "stomp-relay-rabbitmq-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let rabbitmq = tokio::task::spawn_blocking(move || OwnRabbitMq::start(dir))
        .await
        .expect("RabbitMQ starts");
    let mut redis = OwnRedis::start(free_port());
    let (amqp_url, redis_url) = (rabbitmq.url(), redis.url());
    let node = tokio::task::spawn_blocking(move || {
        NodeProcess::start(
            "dispatch-redis-away",
            &["--amqp-url", &amqp_url, "--redis-url", &redis_url],
        )
    })
    .await
    .expect("the node starts");
    let mut alice = StompClient::connect(&node, Some("alice")).await;
    alice.subscribe("n", "/user/queue/n", "auto").await;

    redis.stop();
    let (connection, channel) = support::amqp_at(&rabbitmq.url()).await;
    let mut headers = lapin::types::FieldTable::default();
    for (name, value) in [
        ("stomp-user", "alice"),
        ("stomp-destination", "n"),
        ("stomp-persist", "true"),
    ] {
        headers.insert(
            name.into(),
            lapin::types::AMQPValue::LongString(value.into()),
        );
    }
    let properties = lapin::BasicProperties::default()
        .with_headers(headers)
        .with_message_id("away-1".into());
    let queued =
        support::publish_mandatory(&channel, "stomp.dispatch", "", b"while away", properties).await;
    assert!(queued, "stomp.dispatch takes the request");
    tokio::time::sleep(Duration::from_secs(2)).await;

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sessions_of(&node, "alice").await != Ok(1) {
        assert!(Instant::now() < deadline, "alice was not registered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = match alice.recv_within(Duration::from_secs(3)).await {
        Some(live) => live,
        None => {
            alice
                .send(Frame::new(Command::Unsubscribe).header("id", "n"))
                .await;
            alice.subscribe("m", "/user/queue/n", "auto").await;
            alice.recv().await
        }
    };
    assert_eq!(&delivered.body[..], b"while away");
    alice.expect_nothing().await;
    drop((connection, node, redis, rabbitmq));
}
