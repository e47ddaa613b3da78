//! A node on a three-node RabbitMQ cluster of the test's own, losing the
//! broker node it is connected to while its clients keep receiving. Needs
//! rabbitmq-server installed, and Redis on 127.0.0.1:6379.

use std::time::{Duration, Instant};

use crate::support::node_process::NodeProcess;
use crate::support::own_services::OwnRabbitMqCluster;
use crate::support::{self, StompClient};

/// A name no other test run uses.
fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Asks for `body` to reach `user` through `stomp.dispatch`, as a service
/// would, until the broker confirms it: while a quorum queue elects a new
/// leader it refuses publishes for a moment.
async fn dispatch(channel: &lapin::Channel, user: &str, body: &str) {
    let mut headers = lapin::types::FieldTable::default();
    for (name, value) in [("stomp-user", user), ("stomp-destination", "n")] {
        headers.insert(
            name.into(),
            lapin::types::AMQPValue::LongString(value.into()),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let properties = lapin::BasicProperties::default().with_headers(headers.clone());
        let body = body.as_bytes();
        if support::publish_mandatory(channel, "stomp.dispatch", "", body, properties).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stomp.dispatch took no request for 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_node_whose_broker_node_dies_moves_to_another_and_its_clients_keep_receiving() {
    let dir = std::env::temp_dir().join(format!(
        "stomp-relay-rabbitmq-cluster-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut brokers = tokio::task::spawn_blocking(move || OwnRabbitMqCluster::start(dir))
        .await
        .expect("the RabbitMQ cluster starts");
    assert_eq!(brokers.running_nodes(0).len(), 3, "one cluster of three");
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let urls = brokers.urls();
    let flags = [
        "--amqp-url",
        &urls,
        "--redis-url",
        support::REDIS_URL,
        "--redis-prefix",
        &prefix,
    ]
    .map(str::to_owned);
    let node = tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        NodeProcess::start("rabbitmq-cluster", &flags)
    })
    .await
    .expect("the node starts");
    assert_eq!(
        brokers.queue_type(2, "stomp.dispatch").as_deref(),
        Some("quorum"),
        "stomp.dispatch is replicated"
    );

    let user = unique("bea");
    let mut bea = StompClient::connect(&node, Some(&user)).await;
    bea.subscribe("n", "/user/queue/n", "auto").await;
    let topic = unique("news");
    let mut reader = StompClient::connect(&node, None).await;
    reader
        .subscribe("t", &format!("/topic/{topic}"), "auto")
        .await;
    // The relay is on the broker node its node id chose; the service
    // publishes through another, which stays.
    let own = brokers
        .node_carrying(0, "stomp-relay rabbitmq-cluster")
        .expect("the relay's connection is listed");
    let service = (own + 1) % brokers.nodes.len();
    let (_connection, channel) = support::amqp_at(&brokers.nodes[service].url()).await;
    dispatch(&channel, &user, "before").await;
    assert_eq!(bea.recv_body().await, "before");
    let (channel, topic) = (&channel, topic.as_str());
    let news = |body: &'static str| async move {
        let properties = lapin::BasicProperties::default();
        support::publish_mandatory(channel, "amq.topic", topic, body.as_bytes(), properties).await
    };
    assert!(news("before").await);
    assert_eq!(reader.recv_body().await, "before");

    // The broker node the relay is on dies.
    brokers.nodes[own].stop();
    let killed_at = Instant::now();
    for n in 0..5 {
        dispatch(channel, &user, &format!("during {n}")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // None of the requests that came while the node moved is lost: they
    // waited in the quorum queue, on the broker nodes that stayed.
    for n in 0..5 {
        assert_eq!(bea.recv_body().await, format!("during {n}"));
    }
    // Topic messages come again once the node queue is bound on the broker
    // node the node moved to (what was published before is gone with the
    // node queue).
    loop {
        news("after").await;
        if let Some(frame) = reader.recv_within(Duration::from_millis(200)).await {
            assert_eq!(&frame.body[..], b"after");
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "topic messages did not come again"
        );
    }
    assert_eq!(node.metric("stomp_relay_broker_reconnects_total").await, 1);
    assert_eq!(brokers.running_nodes(service).len(), 2);
    drop((bea, reader, node));
    support::delete_redis_keys(&prefix).await;
}
