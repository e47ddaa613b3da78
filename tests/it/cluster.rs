//! Cluster mode as RabbitMQ, Redis and other AMQP clients see it: header
//! mapping both ways with a plain AMQP client, cleanup after a disconnect,
//! two nodes sharing one RabbitMQ, node-queue bindings that follow the
//! subscriptions, and the AMQP broker's pipelined, ordered publishing.
//! Needs RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379; fails
//! without them.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use lapin::options::{
    BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use prometheus_client::metrics::counter::Counter;
use redis::AsyncCommands;
use stomp_parser::{Command, Frame, Headers};
use stomp_relay::broker::amqp::{AmqpBroker, AmqpSettings};
use stomp_relay::broker::destination::Destination;
use stomp_relay::broker::queue_options::QueueOptions;
use stomp_relay::broker::{
    AckMode, Broker, Message, OrderKey, Outbox, PublishTarget, SessionAddress, SlowConsumer,
    SubscriptionSpec,
};
use stomp_relay::metrics::LinkMetrics;

use crate::support::{
    self, AMQP_URL, Mode, PATIENCE, REDIS_URL, StompClient, TestRelay, amqp, http,
    publish_mandatory, queue_exists,
};

/// Publishes to `amq.topic`; true when RabbitMQ found a queue for it.
async fn publish_topic(
    channel: &Channel,
    key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> bool {
    publish_mandatory(channel, "amq.topic", key, body, properties).await
}

/// The body of the next message on `queue`, taken with `basic.get`.
async fn next_body(channel: &Channel, queue: &str) -> Vec<u8> {
    next_message(channel, queue).await.data
}

/// The next message on `queue`, taken with `basic.get`.
async fn next_message(channel: &Channel, queue: &str) -> lapin::message::Delivery {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let got = channel
                .basic_get(
                    queue.into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic.get");
            if let Some(message) = got {
                return message.delivery;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a message on {queue} within {PATIENCE:?}"))
}

/// Declares a queue of this connection only (`""`: named by RabbitMQ) and
/// answers its name.
async fn exclusive_queue(channel: &Channel, name: &str) -> String {
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), exclusive, FieldTable::default())
        .await
        .expect("an exclusive queue")
        .name()
        .to_string()
}

fn unique(name: &str) -> String {
    format!("{name}.{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test]
async fn a_plain_amqp_publish_reaches_stomp_subscribers_with_its_headers() {
    let relay = TestRelay::start(Mode::Cluster);
    let key = unique("chat");
    let mut subscriber = StompClient::connect(&relay, None).await;
    subscriber
        .subscribe("s", &format!("/topic/{key}"), "auto")
        .await;

    let (_connection, channel) = amqp().await;
    let mut headers = FieldTable::default();
    headers.insert("x-team".into(), AMQPValue::LongString("blue".into()));
    headers.insert("x-count".into(), AMQPValue::LongInt(3));
    headers.insert("x-big".into(), AMQPValue::LongLongInt(1 << 40));
    headers.insert("x-flag".into(), AMQPValue::Boolean(true));
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("identity".into())
        .with_correlation_id("c-42".into())
        .with_delivery_mode(2)
        .with_priority(4)
        .with_expiration("60000".into())
        .with_message_id("m-1".into())
        .with_timestamp(1_700_000_000)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("billing".into())
        .with_reply_to("amq.rabbitmq.reply-to.abc".into())
        .with_headers(headers);
    assert!(publish_topic(&channel, &key, br#"{"hello":"stomp"}"#, properties).await);

    let message = subscriber.recv().await;
    assert_eq!(message.command, Command::Message);
    assert_eq!(
        message.get("destination"),
        Some(format!("/topic/{key}").as_str())
    );
    assert_eq!(&message.body[..], br#"{"hello":"stomp"}"#);
    assert_eq!(message.get("content-type"), Some("application/json"));
    assert_eq!(message.get("correlation-id"), Some("c-42"));
    assert_eq!(message.get("persistent"), Some("true"));
    assert_eq!(message.get("x-team"), Some("blue"));
    assert_eq!(message.get("x-count"), Some("3"));
    for (header, value) in [
        ("content-encoding", "identity"),
        ("priority", "4"),
        ("expiration", "60000"),
        ("amqp-message-id", "m-1"),
        ("timestamp", "1700000000"),
        ("type", "order.created"),
        ("user-id", "guest"),
        ("app-id", "billing"),
        ("x-big", "1099511627776"),
        // An AMQP client's reply queue, which a STOMP client can answer.
        ("reply-to", "/reply-queue/amq.rabbitmq.reply-to.abc"),
    ] {
        assert_eq!(message.get(header), Some(value), "{header}");
    }
    assert_eq!(message.get("x-flag"), None, "RabbitMQ leaves booleans out");
    assert_ne!(message.get("message-id"), Some("m-1"));
}

#[tokio::test]
async fn a_stomp_reply_reaches_the_queue_an_amqp_requester_named() {
    let relay = TestRelay::start(Mode::Cluster);
    let (_connection, channel) = amqp().await;
    let replies = exclusive_queue(&channel, &unique("replies")).await;
    let key = unique("rpc");
    let mut service = StompClient::connect(&relay, None).await;
    service
        .subscribe("s", &format!("/topic/{key}"), "auto")
        .await;
    let request = BasicProperties::default().with_reply_to(replies.as_str().into());
    assert!(publish_topic(&channel, &key, b"ping", request).await);
    let asked = service.recv().await;
    let reply_to = asked.get("reply-to").expect("a reply-to").to_owned();
    assert_eq!(reply_to, format!("/reply-queue/{replies}"));
    service.publish(&reply_to, "pong").await;
    assert_eq!(next_body(&channel, &replies).await, b"pong");
}

#[tokio::test]
async fn a_stomp_send_reaches_a_plain_amqp_consumer_with_its_headers() {
    let relay = TestRelay::start(Mode::Cluster);
    let key = unique("orders");
    let (_connection, channel) = amqp().await;
    let queue = exclusive_queue(&channel, "").await;
    channel
        .queue_bind(
            queue.as_str().into(),
            "amq.topic".into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bound");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consuming");

    let mut sender = StompClient::connect(&relay, Some("alice")).await;
    sender
        .send(
            Frame::new(Command::Send)
                .header("destination", format!("/topic/{key}"))
                .header("content-type", "text/plain")
                .header("priority", "7")
                .header("persistent", "true")
                .header("correlation-id", "c-7")
                .header("reply-to", "/queue/answers")
                .header("expiration", "60000")
                .header("amqp-message-id", "m-7")
                .header("timestamp", "1700000000")
                .header("type", "order.placed")
                .header("app-id", "shop")
                .header("user-id", "alice")
                .header("x-trace", "t-1")
                .body("order 1"),
        )
        .await;
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery within 5 s")
        .expect("a delivery")
        .expect("no error");
    assert_eq!(delivery.data, b"order 1");
    let properties = &delivery.properties;
    assert_eq!(
        properties.content_type().as_ref().map(ShortString::as_str),
        Some("text/plain")
    );
    assert_eq!(properties.priority(), &Some(7));
    assert_eq!(properties.delivery_mode(), &Some(2));
    assert_eq!(properties.timestamp(), &Some(1_700_000_000));
    let property = |value: &Option<ShortString>| value.as_ref().map(|v| v.as_str().to_owned());
    assert_eq!(
        property(properties.correlation_id()).as_deref(),
        Some("c-7")
    );
    assert_eq!(
        property(properties.reply_to()).as_deref(),
        Some("/queue/answers")
    );
    assert_eq!(property(properties.expiration()).as_deref(), Some("60000"));
    assert_eq!(property(properties.message_id()).as_deref(), Some("m-7"));
    assert_eq!(property(properties.kind()).as_deref(), Some("order.placed"));
    assert_eq!(property(properties.app_id()).as_deref(), Some("shop"));
    let headers = properties.headers().as_ref().expect("a header table");
    let text = |name: &str| match headers.inner().get(name) {
        Some(AMQPValue::LongString(value)) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        _ => None,
    };
    assert_eq!(text("x-trace").as_deref(), Some("t-1"));
    // The relay's AMQP user is not the client: the login it checked goes
    // as a header, which RabbitMQ does not check against the connection.
    assert_eq!(text("user-id").as_deref(), Some("alice"));
    assert_eq!(
        text("user-name").as_deref(),
        Some("alice"),
        "the relay stamps the sender"
    );
}

#[tokio::test]
async fn a_disconnected_session_leaves_no_binding_and_no_redis_entry() {
    for routing in ["node", "session"] {
        let relay = TestRelay::start_with(Mode::Cluster, &["--routing", routing]);
        let (mut client, session) =
            StompClient::connect_with_session(&relay, "carol", "secret").await;
        client.subscribe("p", "/user/queue/private", "auto").await;

        let mut redis = redis::Client::open(REDIS_URL)
            .expect("a Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers on 127.0.0.1:6379");
        let user_key = format!("{}user:{{carol}}", relay.redis_prefix);
        let node_key = format!("{}node-sessions:{{test-{}}}", relay.redis_prefix, relay.id);
        let sessions: std::collections::HashMap<String, String> =
            redis.hgetall(&user_key).await.unwrap();
        assert!(sessions.contains_key(&session), "{sessions:?}");
        let entry: Option<String> = redis.hget(&node_key, &session).await.unwrap();
        assert!(entry.is_some_and(|entry| entry.ends_with(" carol")));
        let queue = format!("stomp.session.{session}");
        assert_eq!(
            queue_exists(&queue).await,
            routing == "session",
            "a session queue exists while connected only with --routing session"
        );
        let (_connection, channel) = amqp().await;
        // A service publishes to the session's key on amq.topic.
        let key = relay.session_key(&session, "private");
        assert!(publish_topic(&channel, &key, b"here", BasicProperties::default()).await);
        assert_eq!(client.recv_body().await, "here");

        client
            .send(Frame::new(Command::Disconnect).header("receipt", "bye"))
            .await;
        client.expect_receipt("bye").await;
        client.expect_closed().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!queue_exists(&queue).await, "no session queue is left");
        // With --routing session its queue has gone; on the node queue the
        // node drops it, and counts it.
        let unclaimed = metric(&relay, "stomp_relay_user_messages_unclaimed_total").await;
        let routed = publish_topic(&channel, &key, b"gone", BasicProperties::default()).await;
        assert_eq!(routed, routing == "node", "({routing})");
        if routed {
            let expected = Some(unclaimed.unwrap_or_default() + 1.0);
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while metric(&relay, "stomp_relay_user_messages_unclaimed_total").await != expected {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the dropped message is counted"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let user_exists: bool = redis.exists(&user_key).await.unwrap();
        let listed: bool = redis.hexists(&node_key, &session).await.unwrap();
        assert!(!user_exists && !listed, "the Redis entries are gone");
    }
}

/// With `--routing session` a NACK goes back to the session queue, and
/// RabbitMQ gives it again to every subscription of the session that matches
/// it; with keys on the node queue the relay holds each subscription's
/// delivery and gives it again to that one alone.
#[tokio::test]
async fn user_destinations_ack_and_redeliver_per_subscription() {
    let relay = TestRelay::start(Mode::Cluster);
    let (mut alice, session) = StompClient::connect_with_session(&relay, "alice", "secret").await;
    alice
        .subscribe("acked", "/user/queue/jobs", "client-individual")
        .await;
    alice.subscribe("plain", "/user/queue/jobs", "auto").await;
    let mut other = StompClient::connect(&relay, Some("alice")).await;
    other
        .subscribe("acked", "/user/queue/jobs", "client-individual")
        .await;

    let (_connection, channel) = amqp().await;
    let key = relay.session_key(&session, "jobs");
    assert!(publish_topic(&channel, &key, b"job 1", BasicProperties::default()).await);
    let mut acked = None;
    for _ in 0..2 {
        let message = alice.recv().await;
        assert_eq!(&message.body[..], b"job 1");
        assert_eq!(message.get("destination"), Some("/user/queue/jobs"));
        if message.get("subscription") == Some("acked") {
            acked = Some(message.get("ack").expect("an ack id").to_owned());
        }
    }
    let acked = acked.expect("the acking subscription got it");
    alice
        .send(Frame::new(Command::Nack).header("id", &acked))
        .await;
    let again = alice.recv().await;
    assert_eq!(again.get("subscription"), Some("acked"));
    assert_eq!(again.get("redelivered"), Some("true"));
    let id = again.get("ack").expect("an ack id").to_owned();
    alice
        .send(
            Frame::new(Command::Ack)
                .header("id", &id)
                .header("receipt", "done"),
        )
        .await;
    alice.expect_receipt("done").await;
    alice.expect_nothing().await;
    other.expect_nothing().await;
}

/// Whether RabbitMQ has a queue of this name.
#[tokio::test]
async fn two_nodes_deliver_a_topic_message_to_every_subscriber_exactly_once() {
    // Two nodes of one cluster: the first holds the cluster turn, so the
    // second is started beside it by hand.
    let first = TestRelay::start(Mode::Cluster);
    let second = TestRelay::start_beside(&first);
    let key = unique("news");
    let topic = format!("/topic/{key}");
    let mut subscribers = Vec::new();
    for (n, relay) in [&first, &second, &first, &second].into_iter().enumerate() {
        let mut client = StompClient::connect(relay, None).await;
        let ack = if n < 2 { "auto" } else { "client-individual" };
        client.subscribe("s", &topic, ack).await;
        subscribers.push((client, ack));
    }
    // A second subscription on the same key and node shares the binding.
    let mut wildcard = StompClient::connect(&second, None).await;
    wildcard
        .subscribe("w", &format!("/topic/{key}.#"), "auto")
        .await;

    let mut sender = StompClient::connect(&first, None).await;
    sender.publish(&topic, "breaking").await;
    for (client, ack) in &mut subscribers {
        let message = client.recv().await;
        assert_eq!(&message.body[..], b"breaking");
        if *ack != "auto" {
            let id = message.get("ack").expect("an ack id").to_owned();
            client
                .send(Frame::new(Command::Ack).header("id", &id))
                .await;
        }
        client.expect_nothing().await;
    }
    assert_eq!(wildcard.recv_body().await, "breaking");
    wildcard.expect_nothing().await;
}

/// A message to everyone is one publish: each node gives it to its own
/// sessions subscribed to that user destination, once per subscription,
/// whether user keys are bound to the node queue or to session queues, and
/// whether it came through the HTTP API or `stomp.dispatch`.
#[tokio::test]
async fn two_nodes_deliver_a_message_to_everyone_once_per_subscription() {
    for routing in ["node", "session"] {
        let flags = ["--routing", routing];
        let first = TestRelay::start_with(Mode::Cluster, &flags);
        let second = TestRelay::start_beside_with(&first, &flags);
        // Every node on this RabbitMQ gets messages to everyone, those of
        // other tests too: a name of this test's own.
        let name = unique("news");
        let destination = format!("/user/queue/{name}");
        let mut listeners = Vec::new();
        for relay in [&first, &second] {
            let mut client = StompClient::connect(relay, Some(&unique("fan"))).await;
            client.subscribe("n", &destination, "auto").await;
            listeners.push(client);
        }
        let mut acking = StompClient::connect(&second, Some(&unique("ack"))).await;
        acking
            .subscribe("n", &destination, "client-individual")
            .await;
        let mut elsewhere = StompClient::connect(&first, Some(&unique("other"))).await;
        elsewhere
            .subscribe("y", &format!("{destination}.y"), "auto")
            .await;
        let mut wide = StompClient::connect(&second, Some("eve")).await;
        wide.subscribe("all", "/topic/#", "auto").await;

        let request =
            serde_json::json!({"destination": destination, "body": "by api", "all": true});
        let json = ("content-type", "application/json");
        let answer = http(
            &first,
            "POST",
            "/api/v1/messages",
            &[json],
            &request.to_string(),
        )
        .await;
        assert_eq!(answer.json(), serde_json::json!({"published": true}));
        let (_connection, channel) = amqp().await;
        let mut headers = FieldTable::default();
        for (header, value) in [("stomp-all", "true"), ("stomp-destination", name.as_str())] {
            headers.insert(header.into(), AMQPValue::LongString(value.into()));
        }
        let properties = BasicProperties::default().with_headers(headers);
        assert!(publish_mandatory(&channel, "stomp.dispatch", "", b"by amqp", properties).await);

        for client in &mut listeners {
            let mut bodies = [client.recv_body().await, client.recv_body().await];
            bodies.sort();
            assert_eq!(bodies, ["by amqp", "by api"], "{routing}");
            client.expect_nothing().await;
        }
        let mut bodies = Vec::new();
        let mut nacked = None;
        for _ in 0..2 {
            let message = acking.recv().await;
            bodies.push(String::from_utf8(message.body.to_vec()).unwrap());
            nacked = message.get("ack").map(str::to_owned);
        }
        bodies.sort();
        assert_eq!(bodies, ["by amqp", "by api"], "{routing}");
        // A NACK gives it again to that subscription.
        let nacked = nacked.expect("an ack id");
        acking
            .send(Frame::new(Command::Nack).header("id", &nacked))
            .await;
        let again = acking.recv().await;
        assert_eq!(again.get("redelivered"), Some("true"), "{routing}");
        acking.expect_nothing().await;
        elsewhere.expect_nothing().await;
        wide.expect_nothing().await;
    }
}

/// The node queue's bindings, as `{source}\t{routing key}` rows.
fn node_queue_bindings(relay: &TestRelay) -> Vec<String> {
    let queue = format!("stomp.node.test-{}", relay.id);
    rabbitmqctl_rows(
        "bindings",
        &["source_name", "destination_name", "routing_key"],
    )
    .into_iter()
    .filter_map(|row| {
        let mut columns = row.split('\t');
        let (source, destination, key) = (columns.next()?, columns.next()?, columns.next()?);
        (destination == queue).then(|| format!("{source}\t{key}"))
    })
    .collect()
}

/// RabbitMQ learns nothing of user subscriptions: the node queue has one
/// binding for every session key of the node, made when the node starts,
/// and sessions that come, subscribe and go leave its bindings as they were.
#[tokio::test]
async fn user_subscriptions_cost_rabbitmq_no_binding() {
    let relay = TestRelay::start(Mode::Cluster);
    let before = node_queue_bindings(&relay);
    let own = format!("stomp.users\tstomp.test-{}.#", relay.id);
    assert!(before.contains(&own), "{before:?}");
    let mut clients = Vec::new();
    for n in 0..20 {
        let mut client = StompClient::connect(&relay, Some(&unique("many"))).await;
        client.subscribe("a", "/user/queue/inbox", "auto").await;
        client
            .subscribe("b", &format!("/user/topic/feed.{n}"), "client")
            .await;
        clients.push(client);
    }
    assert_eq!(node_queue_bindings(&relay), before);
    drop(clients);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node_queue_bindings(&relay), before);
}

#[tokio::test]
async fn a_node_queue_binding_goes_with_its_last_subscriber() {
    let relay = TestRelay::start(Mode::Cluster);
    let key = unique("ephemeral");
    let (_connection, channel) = amqp().await;
    assert!(!publish_topic(&channel, &key, b"nobody", BasicProperties::default()).await);

    let mut first = StompClient::connect(&relay, None).await;
    first.subscribe("a", &format!("/topic/{key}"), "auto").await;
    let mut second = StompClient::connect(&relay, None).await;
    second
        .subscribe("b", &format!("/topic/{key}"), "auto")
        .await;
    assert!(publish_topic(&channel, &key, b"both", BasicProperties::default()).await);
    assert_eq!(first.recv_body().await, "both");
    assert_eq!(second.recv_body().await, "both");

    first
        .send(
            Frame::new(Command::Unsubscribe)
                .header("id", "a")
                .header("receipt", "u"),
        )
        .await;
    first.expect_receipt("u").await;
    assert!(publish_topic(&channel, &key, b"one left", BasicProperties::default()).await);
    assert_eq!(second.recv_body().await, "one left");
    second
        .send(
            Frame::new(Command::Unsubscribe)
                .header("id", "b")
                .header("receipt", "u"),
        )
        .await;
    second.expect_receipt("u").await;
    assert!(
        !publish_topic(&channel, &key, b"gone", BasicProperties::default()).await,
        "the node queue is no longer bound to the key"
    );
}

#[tokio::test]
async fn an_amqp_publish_to_a_session_key_reaches_only_that_session() {
    let relay = TestRelay::start(Mode::Cluster);
    let (mut alice, session) = StompClient::connect_with_session(&relay, "alice", "secret").await;
    alice.subscribe("p", "/user/queue/alerts", "auto").await;
    let mut eve = StompClient::connect(&relay, Some("eve")).await;
    eve.subscribe("all", "/topic/#", "auto").await;
    eve.subscribe("one", "/topic/*", "auto").await;

    let (_connection, channel) = amqp().await;
    let key = relay.session_key(&session, "alerts");
    assert!(
        publish_topic(
            &channel,
            &key,
            b"for alice only",
            BasicProperties::default()
        )
        .await
    );
    let message = alice.recv().await;
    assert_eq!(message.get("destination"), Some("/user/queue/alerts"));
    assert_eq!(&message.body[..], b"for alice only");
    // Straight to the users exchange, as dispatch publishes.
    let properties = BasicProperties::default();
    assert!(publish_mandatory(&channel, "stomp.users", &key, b"again", properties).await);
    assert_eq!(alice.recv_body().await, "again");
    eve.expect_nothing().await;
}

#[tokio::test]
async fn a_durable_subscription_keeps_messages_while_its_user_is_away() {
    let relay = TestRelay::start(Mode::Cluster);
    let key = unique("digest");
    let topic = format!("/topic/{key}");
    let subscribe = |receipt: &str| {
        Frame::new(Command::Subscribe)
            .header("id", "daily")
            .header("destination", &topic)
            .header("durable", "true")
            .header("ack", "client-individual")
            .header("x-max-length", "100")
            .header("receipt", receipt)
    };
    let mut dave = StompClient::connect(&relay, Some("dave")).await;
    dave.send(subscribe("s1")).await;
    dave.expect_receipt("s1").await;
    dave.send(Frame::new(Command::Disconnect).header("receipt", "bye"))
        .await;
    dave.expect_receipt("bye").await;

    let mut sender = StompClient::connect(&relay, None).await;
    sender.publish(&topic, "while you were away").await;
    let queue = "stomp.durable.4.dave.daily";
    assert!(
        queue_exists(queue).await,
        "the durable queue outlives the session"
    );

    let mut dave = StompClient::connect(&relay, Some("dave")).await;
    dave.send(subscribe("s2")).await;
    dave.expect_receipt("s2").await;
    let message = dave.recv().await;
    assert_eq!(&message.body[..], b"while you were away");
    assert_eq!(message.get("destination"), Some(topic.as_str()));
    dave.send(Frame::new(Command::Ack).header("id", message.get("ack").unwrap()))
        .await;
    dave.send(
        Frame::new(Command::Unsubscribe)
            .header("id", "daily")
            .header("durable", "true")
            .header("receipt", "u"),
    )
    .await;
    dave.expect_receipt("u").await;
    assert!(
        !queue_exists(queue).await,
        "UNSUBSCRIBE with durable:true deletes it"
    );
}

/// Closes the node's AMQP connection, as a broker restart or a network
/// cut would, found by the node id its name carries.
fn close_amqp_connection_of(relay: &TestRelay) {
    let node = format!("stomp-relay test-{}", relay.id);
    let pid = rabbitmqctl_rows("connections", &["pid", "client_properties"])
        .iter()
        .find(|row| row.contains(&node))
        .and_then(|row| row.split('\t').next().map(str::to_owned))
        .unwrap_or_else(|| panic!("no connection named {node:?}"));
    let closed = std::process::Command::new("rabbitmqctl")
        .args(["close_connection", &pid, "test: the broker goes away"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(closed.status.success());
}

/// A counter or gauge of the node's `/metrics`.
async fn metric(relay: &TestRelay, name: &str) -> Option<f64> {
    let text = http(relay, "GET", "/metrics", &[], "").await.body;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_node_that_loses_rabbitmq_connects_again_and_its_clients_keep_receiving() {
    rides_through_a_lost_connection(&[]).await;
}

#[tokio::test]
async fn session_queues_are_made_again_after_a_lost_connection() {
    rides_through_a_lost_connection(&["--routing", "session"]).await;
}

/// A node started with `flags` loses its connection to RabbitMQ while
/// clients subscribe to a user destination, a topic, a queue (with a
/// message awaiting its ACK) and an exchange.
async fn rides_through_a_lost_connection(flags: &[&str]) {
    let relay = TestRelay::start_with(Mode::Cluster, flags);
    let user = unique("rider");
    let topic = format!("/topic/{}", unique("ride"));
    let queue = relay.queue("ride");
    let mut rider = StompClient::connect(&relay, Some(&user)).await;
    rider.subscribe("n", "/user/queue/n", "auto").await;
    let mut reader = StompClient::connect(&relay, None).await;
    reader.subscribe("t", &topic, "auto").await;
    let mut worker = StompClient::connect(&relay, None).await;
    worker.subscribe("q", &queue, "client-individual").await;
    let exchange = format!("/exchange/amq.direct/{}", unique("ride"));
    let mut listener = StompClient::connect(&relay, None).await;
    listener.subscribe("x", &exchange, "auto").await;
    let mut sender = StompClient::connect(&relay, None).await;
    sender.publish(&queue, "unacknowledged").await;
    let first = worker.recv().await;
    assert_eq!(&first.body[..], b"unacknowledged");
    assert_eq!(first.get("redelivered"), Some("false"));
    assert_eq!(
        metric(&relay, "stomp_relay_broker_connected").await,
        Some(1.0)
    );

    close_amqp_connection_of(&relay);
    // What awaited an ACK comes again, marked, once the consumer is back.
    let again = worker.recv().await;
    assert_eq!(&again.body[..], b"unacknowledged");
    assert_eq!(again.get("redelivered"), Some("true"));
    let deadline = std::time::Instant::now() + PATIENCE;
    while metric(&relay, "stomp_relay_broker_reconnects_total").await != Some(1.0) {
        assert!(std::time::Instant::now() < deadline, "no reconnect counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&relay, "stomp_relay_broker_connected").await,
        Some(1.0)
    );
    let ready = http(&relay, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let dispatching = format!("stomp.dispatch\tdispatch.stomp.node.test-{}", relay.id);
    let consumers = rabbitmqctl_rows("consumers", &["queue_name", "consumer_tag"]);
    assert!(consumers.contains(&dispatching), "{consumers:?}");
    // The node queue's one binding for its sessions' keys is made again.
    let own = format!("stomp.users\tstomp.test-{}.#", relay.id);
    assert_eq!(
        node_queue_bindings(&relay).contains(&own),
        flags.is_empty(),
        "{flags:?}"
    );

    // Every kind of subscription receives what is published after.
    sender.publish(&topic, "topic after").await;
    assert_eq!(reader.recv_body().await, "topic after");
    sender.publish(&queue, "queue after").await;
    assert_eq!(worker.recv_body().await, "queue after");
    sender.publish(&exchange, "exchange after").await;
    assert_eq!(listener.recv_body().await, "exchange after");
    let json = [("content-type", "application/json")];
    let body = r#"{"destination": "n", "body": "user after"}"#;
    let path = format!("/api/v1/users/{user}/messages");
    let sent = http(&relay, "POST", &path, &json, body).await;
    assert_eq!(sent.json()["sessions"], 1, "{}", sent.body);
    assert_eq!(rider.recv_body().await, "user after");
    // A user subscription made after the reconnect is bound too.
    rider.subscribe("m", "/user/queue/m", "auto").await;
    sender
        .publish(&format!("/user/{user}/queue/m"), "new binding")
        .await;
    assert_eq!(rider.recv_body().await, "new binding");
}

#[tokio::test]
async fn a_subscription_whose_queue_is_deleted_ends_with_rabbitmqs_error() {
    let relay = TestRelay::start(Mode::Cluster);
    let queue = relay.queue("deleted");
    let mut worker = StompClient::connect(&relay, None).await;
    worker.subscribe("q", &queue, "auto").await;
    let name = queue.trim_start_matches("/queue/").to_owned();
    support::delete_queues(&[name]).await;
    let error = worker.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("Server cancelled subscription"));
    assert_eq!(error.get("subscription"), Some("q"));
    let body = String::from_utf8_lossy(&error.body).into_owned();
    assert!(body.contains(&queue), "{body}");
}

#[tokio::test]
async fn a_persisted_dispatch_request_carried_out_twice_delivers_once_and_is_in_the_history_once() {
    let relay = TestRelay::start(Mode::Cluster);
    let user = unique("once");
    let (_connection, channel) = amqp().await;
    let request = |body: &'static [u8], id: &str| {
        let mut headers = FieldTable::default();
        for (name, value) in [
            ("stomp-user", user.as_str()),
            ("stomp-destination", "inbox"),
            ("stomp-persist", "true"),
        ] {
            headers.insert(name.into(), AMQPValue::LongString(value.into()));
        }
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_message_id(id.into());
        publish_mandatory(&channel, "stomp.dispatch", "", body, properties)
    };
    // Kept for an offline user: the request again (as RabbitMQ redelivers
    // one whose node died) keeps nothing more.
    let offline_id = unique("request");
    assert!(request(b"kept once", &offline_id).await);
    assert!(request(b"kept once", &offline_id).await);
    let mut reader = StompClient::connect(&relay, Some(&user)).await;
    reader.subscribe("in", "/user/queue/inbox", "auto").await;
    assert_eq!(reader.recv_body().await, "kept once");
    // Delivered live: the request again delivers nothing more.
    let live_id = unique("request");
    assert!(request(b"live once", &live_id).await);
    assert_eq!(reader.recv_body().await, "live once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(request(b"live once", &live_id).await);
    reader.expect_nothing().await;
    // Each is in the user's history once.
    let mut replaying = StompClient::connect(&relay, Some(&user)).await;
    replaying
        .send(
            Frame::new(Command::Subscribe)
                .header("id", "all")
                .header("destination", "/user/queue/inbox")
                .header("x-stream-offset", "first")
                .header("receipt", "replaying"),
        )
        .await;
    replaying.expect_receipt("replaying").await;
    assert_eq!(replaying.recv_body().await, "kept once");
    assert_eq!(replaying.recv_body().await, "live once");
    replaying.expect_nothing().await;
    support::delete_redis_keys(&relay.redis_prefix).await;
}

#[tokio::test]
async fn a_service_dispatches_to_a_user_through_rabbitmq() {
    let relay = TestRelay::start(Mode::Cluster);
    let user = unique("jo");
    let mut jo = StompClient::connect(&relay, Some(&user)).await;
    jo.subscribe("n", "/user/queue/notifications", "auto").await;
    let mut eve = StompClient::connect(&relay, Some("eve")).await;
    eve.subscribe("all", "/topic/#", "auto").await;

    let (_connection, channel) = amqp().await;
    let publish = |headers: FieldTable, body: &'static [u8]| {
        let properties = BasicProperties::default().with_headers(headers);
        publish_mandatory(&channel, "stomp.dispatch", "", body, properties)
    };
    // Without a destination the request is refused and not retried.
    let mut bad = FieldTable::default();
    bad.insert(
        "stomp-user".into(),
        AMQPValue::LongString(user.as_str().into()),
    );
    assert!(publish(bad, b"lost").await, "stomp.dispatch takes it");

    let mut headers = FieldTable::default();
    headers.insert(
        "stomp-user".into(),
        AMQPValue::LongString(user.as_str().into()),
    );
    headers.insert(
        "stomp-destination".into(),
        AMQPValue::LongString("/user/queue/notifications".into()),
    );
    headers.insert("x-kind".into(), AMQPValue::LongString("invoice".into()));
    assert!(publish(headers, b"your invoice").await);

    let message = jo.recv().await;
    assert_eq!(&message.body[..], b"your invoice");
    assert_eq!(
        message.get("destination"),
        Some("/user/queue/notifications")
    );
    assert_eq!(message.get("x-kind"), Some("invoice"));
    assert_eq!(
        message.get("stomp-user"),
        None,
        "routing headers are not passed on"
    );
    jo.expect_nothing().await;
    eve.expect_nothing().await;
    // stomp-persist keeps a message for an offline user, on any node; as
    // an AMQP boolean too, as Spring's setHeader("stomp-persist", true)
    // sends it.
    let absent = unique("kay");
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("stomp-user", absent.as_str()),
        ("stomp-destination", "inbox"),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    headers.insert("stomp-persist".into(), AMQPValue::Boolean(true));
    assert!(publish(headers, b"kept for later").await);
    let mut kay = StompClient::connect(&relay, Some(&absent)).await;
    let mut kept = None;
    // The request is dispatched asynchronously: retry until it was kept.
    for _ in 0..50 {
        kay.subscribe("in", "/user/queue/inbox", "auto").await;
        kept = kay.recv_within(std::time::Duration::from_millis(100)).await;
        if kept.is_some() {
            break;
        }
        kay.send(Frame::new(Command::Unsubscribe).header("id", "in"))
            .await;
    }
    let kept = kept.expect("the kept message arrives");
    assert_eq!(&kept.body[..], b"kept for later");
    assert_eq!(kept.get("stomp-persist"), None);
}

/// An AMQP broker of its own, for tests that drive the `Broker` trait
/// directly; its node queue goes with its connection.
async fn amqp_broker() -> AmqpBroker {
    AmqpBroker::connect(
        &[AMQP_URL.to_owned()],
        &unique("test-broker"),
        AmqpSettings::default(),
        LinkMetrics::default(),
        Default::default(),
    )
    .await
    .expect("RabbitMQ answers on 127.0.0.1:5672")
}

fn text(body: String) -> Message {
    Message {
        headers: Headers::default(),
        body: Bytes::from(body),
    }
}

/// A queue of the test's, which RabbitMQ removes a minute after its last
/// use should the test fail before deleting it.
async fn declare_test_queue(channel: &Channel, queue: &str) {
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), arguments)
        .await
        .expect("the test queue is declared");
}

async fn delete_test_queue(channel: &Channel, queue: &str) {
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("the test queue is deleted");
}

/// A user subscription of `session` to `name`, as a SUBSCRIBE makes it.
fn user_subscription(name: &str) -> SubscriptionSpec {
    let text = format!("/user/queue/{name}");
    SubscriptionSpec {
        id: "sub".into(),
        destination_text: text.as_str().into(),
        destination: Destination::parse(&text).expect("a user destination"),
        ack: AckMode::Auto,
        prefetch: None,
        queue: QueueOptions::default(),
    }
}

/// What is ready at once for several sessions of one node goes to it as one
/// envelope: one AMQP message on the node's key, which the node unpacks. A
/// session that left meanwhile does not get its part, and the node counts
/// it; the others do.
#[tokio::test]
async fn an_envelope_reaches_the_sessions_still_there_and_counts_the_rest() {
    let node = unique("test-broker");
    let unclaimed = Counter::default();
    let broker = AmqpBroker::connect(
        &[AMQP_URL.to_owned()],
        &node,
        AmqpSettings::default(),
        LinkMetrics::default(),
        unclaimed.clone(),
    )
    .await
    .expect("RabbitMQ answers on 127.0.0.1:5672");
    // A probe beside the node queue: what RabbitMQ carries on the node's
    // envelope key.
    let (_connection, channel) = amqp().await;
    let probe = unique("stomp-test.envelopes");
    declare_test_queue(&channel, &probe).await;
    channel
        .queue_bind(
            probe.as_str().into(),
            "stomp.users".into(),
            // The node's id has a dot, which its word writes `~`.
            format!("stomp.{}", node.replace('.', "~")).as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the probe is bound");

    let sessions: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    let mut outboxes = Vec::new();
    for &session in &sessions {
        let (outbox, received, _alarm) =
            Outbox::channel(16, SlowConsumer::Close, Counter::default());
        broker.attach(session, outbox).await.expect("attached");
        broker
            .subscribe(session, &user_subscription("inbox"))
            .await
            .expect("subscribed");
        outboxes.push(received);
    }
    // Gone between the registry's answer and the delivery.
    broker.detach(sessions[2]).await;
    let addresses: Vec<SessionAddress<'_>> = sessions
        .iter()
        .map(|&session| SessionAddress {
            node: &node,
            session,
        })
        .collect();
    broker
        .publish_to_sessions("inbox", &addresses, text("for each".into()))
        .await
        .expect("handed over")
        .await
        .expect("RabbitMQ took it");

    for received in &outboxes[..2] {
        let offered = tokio::time::timeout(PATIENCE, received.recv_async())
            .await
            .expect("delivered in time")
            .expect("a delivery");
        assert_eq!(&offered.delivery.message.body[..], b"for each");
        assert_eq!(&*offered.delivery.destination, "/user/queue/inbox");
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while unclaimed.get() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the part for the session that left is counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let carried = next_message(&channel, &probe).await;
    assert_eq!(
        carried
            .properties
            .content_type()
            .as_ref()
            .map(|t| t.as_str()),
        Some("application/vnd.stomp-relay.envelope"),
        "one message carried all three"
    );
    delete_test_queue(&channel, &probe).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn publishes_with_one_order_key_arrive_in_order_while_their_confirms_are_outstanding() {
    let broker = amqp_broker().await;
    let (_connection, channel) = amqp().await;
    let queue = unique("stomp-test.order");
    declare_test_queue(&channel, &queue).await;

    let order = OrderKey::of(&queue);
    let mut confirms = Vec::new();
    for n in 0..1000 {
        let target = PublishTarget::Queue {
            name: queue.clone(),
            declare: None,
        };
        let confirm = broker
            .publish(order, target, text(n.to_string()))
            .await
            .expect("the publish is handed over");
        confirms.push(confirm);
    }
    try_join_all(confirms)
        .await
        .expect("RabbitMQ confirms every publish");

    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "order-check".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the test queue is consumed");
    for n in 0..1000 {
        let delivery = tokio::time::timeout(PATIENCE, consumer.next())
            .await
            .expect("every message arrives in time")
            .expect("the consumer goes on")
            .expect("a delivery");
        assert_eq!(
            String::from_utf8_lossy(&delivery.data),
            n.to_string(),
            "messages arrive in the order they were handed over"
        );
    }
    delete_test_queue(&channel, &queue).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_nack_without_requeue_dead_letters_where_the_queue_says() {
    let relay = TestRelay::start(Mode::Cluster);
    let (source, dead) = (unique("dlx-source"), unique("dlx-dead"));
    let (_connection, channel) = amqp().await;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead.as_str().into()),
    );
    for (queue, arguments) in [(&source, arguments), (&dead, FieldTable::default())] {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                arguments,
            )
            .await
            .expect("a queue");
    }
    let destination = format!("/amq/queue/{source}");
    let mut client = StompClient::connect(&relay, None).await;
    client
        .subscribe("q", &destination, "client-individual")
        .await;
    client.publish(&destination, "unwanted").await;
    let message = client.recv().await;
    let ack = message.get("ack").expect("an ack header").to_owned();
    client
        .send(
            Frame::new(Command::Nack)
                .header("id", &ack)
                .header("requeue", "false"),
        )
        .await;
    assert_eq!(next_body(&channel, &dead).await, b"unwanted");
    client.expect_nothing().await;
    support::delete_queues(&[source, dead]).await;
}

#[tokio::test]
async fn a_send_declares_its_queue_with_the_arguments_it_carries() {
    let relay = TestRelay::start(Mode::Cluster);
    let queue = unique("send-args");
    let mut client = StompClient::connect(&relay, None).await;
    let receipt = "declared";
    client
        .send(
            Frame::new(Command::Send)
                .header("destination", format!("/queue/{queue}"))
                .header("x-max-length", "10")
                .header("x-queue-type", "classic")
                .header("receipt", receipt)
                .body("first"),
        )
        .await;
    client.expect_receipt(receipt).await;
    let declare = |max_length: i64| {
        let queue = queue.clone();
        async move {
            let (connection, channel) = amqp().await;
            let mut arguments = FieldTable::default();
            arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(max_length));
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("classic".into()),
            );
            let durable = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            let declared = channel
                .queue_declare(queue.as_str().into(), durable, arguments)
                .await
                .map(|queue| queue.message_count());
            let _ = connection.close(200, "checked".into()).await;
            declared
        }
    };
    assert_eq!(declare(10).await.expect("the same arguments agree"), 1);
    assert!(
        declare(11).await.is_err(),
        "other arguments are refused: the queue has the SEND's"
    );
    support::delete_queues(&[queue]).await;
}

/// Whether RabbitMQ has `queue` as a durable queue of `kind`: declaring it
/// again with another type fails.
async fn queue_is_of_type(queue: &str, kind: &str) -> bool {
    let (connection, channel) = amqp().await;
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let same = channel
        .queue_declare(queue.into(), durable, arguments)
        .await
        .is_ok();
    let _ = connection.close(200, "checked".into()).await;
    same
}

#[tokio::test]
async fn quorum_and_stream_queues_are_declared_and_read_as_subscribers_ask() {
    let relay = TestRelay::start(Mode::Cluster);
    let (quorum, stream) = (unique("quorum"), unique("stream"));
    let mut client = StompClient::connect(&relay, None).await;
    client
        .send(
            Frame::new(Command::Subscribe)
                .header("id", "q")
                .header("destination", format!("/queue/{quorum}"))
                .header("x-queue-type", "quorum")
                .header("ack", "client-individual")
                .header("receipt", "q"),
        )
        .await;
    client.expect_receipt("q").await;
    client
        .publish(&format!("/queue/{quorum}"), "to quorum")
        .await;
    assert_eq!(client.recv_body().await, "to quorum");
    assert!(queue_is_of_type(&quorum, "quorum").await);

    // A stream keeps what was sent before anyone subscribed, and a
    // subscriber reads it from where x-stream-offset says.
    for body in ["first", "second"] {
        let receipt = format!("sent-{body}");
        client
            .send(
                Frame::new(Command::Send)
                    .header("destination", format!("/queue/{stream}"))
                    .header("x-queue-type", "stream")
                    .header("receipt", &receipt)
                    .body(body),
            )
            .await;
        client.expect_receipt(&receipt).await;
    }
    assert!(queue_is_of_type(&stream, "stream").await);
    let mut reader = StompClient::connect(&relay, None).await;
    reader
        .send(
            Frame::new(Command::Subscribe)
                .header("id", "s")
                .header("destination", format!("/queue/{stream}"))
                .header("ack", "client")
                .header("prefetch-count", "10")
                .header("x-stream-offset", "first")
                .header("receipt", "s"),
        )
        .await;
    reader.expect_receipt("s").await;
    assert_eq!(reader.recv_body().await, "first");
    assert_eq!(reader.recv_body().await, "second");
    support::delete_queues(&[quorum, stream]).await;
}

/// Rows of `rabbitmqctl list_{what}` with `columns`, tab-separated.
fn rabbitmqctl_rows(what: &str, columns: &[&str]) -> Vec<String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args([&format!("list_{what}"), "-q", "--no-table-headers"])
        .args(columns)
        .output()
        .expect("rabbitmqctl runs (it comes with RabbitMQ)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_node_queue_is_capped_and_acknowledged_under_a_prefetch_so_that_lapin_buffers_little() {
    let relay = TestRelay::start(Mode::Cluster);
    let queue = format!("stomp.node.test-{}", relay.id);
    let consumers = rabbitmqctl_rows(
        "consumers",
        &["queue_name", "ack_required", "prefetch_count"],
    );
    let node = consumers
        .iter()
        .find(|row| row.starts_with(&format!("{queue}\t")))
        .unwrap_or_else(|| panic!("no consumer of {queue} in {consumers:?}"));
    assert_eq!(node, &format!("{queue}\ttrue\t4096"));
    // And RabbitMQ holds a bounded backlog for it.
    let queues = rabbitmqctl_rows("queues", &["name", "arguments"]);
    let declared = queues
        .iter()
        .find(|row| row.starts_with(&format!("{queue}\t")))
        .unwrap_or_else(|| panic!("no {queue} in {queues:?}"));
    assert!(
        declared.contains("x-max-length") && declared.contains("100000"),
        "{declared}"
    );
    // Everything fanned out is acknowledged, whole batches and the rest.
    let key = unique("acked");
    let mut reader = StompClient::connect(&relay, None).await;
    reader
        .subscribe("t", &format!("/topic/{key}"), "auto")
        .await;
    let mut sender = StompClient::connect(&relay, None).await;
    for n in 0..300 {
        sender
            .send(
                Frame::new(Command::Send)
                    .header("destination", format!("/topic/{key}"))
                    .body(n.to_string()),
            )
            .await;
    }
    for n in 0..300 {
        assert_eq!(reader.recv_body().await, n.to_string());
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let queues = rabbitmqctl_rows("queues", &["name", "messages_unacknowledged"]);
        if queues.contains(&format!("{queue}\t0")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{queues:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
