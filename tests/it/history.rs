//! Positions and replay, as a page that reconnects sees them: every message
//! to a user destination carries its position (`x-stream-offset`), and a
//! SUBSCRIBE that gives one gets what it missed, in order, none twice, then
//! the live messages; in cluster mode on another node than the one it
//! left. Each scenario runs in embedded mode and in cluster mode.

use std::time::Duration;

use stomp_parser::{Command, Frame};

use crate::support::{Mode, RelayAddress, StompClient, TestRelay, http};

scenario_tests! {
    embedded: Mode::Embedded,
    cluster: Mode::Cluster;
    [
        a_session_that_comes_back_gets_exactly_what_it_missed,
        a_replay_while_messages_keep_coming_has_no_gap_and_nothing_twice,
        a_position_older_than_the_history_says_the_replay_is_not_complete,
        a_replay_starts_at_first_last_next_an_offset_or_a_time,
        without_a_history_there_are_no_positions_and_no_replay,
        replayed_messages_are_acknowledged_like_live_ones,
        a_topic_with_a_history_replays_what_a_subscriber_missed,
        a_replay_for_a_user_without_a_history_is_complete,
    ]
}

const NEWS: &str = "/user/queue/news";

/// A second node beside `relay` in cluster mode (the one a reconnecting
/// client lands on); the node itself in embedded mode.
fn other_node(relay: &TestRelay, mode: Mode, flags: &[&str]) -> Option<TestRelay> {
    (mode == Mode::Cluster).then(|| TestRelay::start_beside_with(relay, flags))
}

/// Sends `body` to `user`'s news through the HTTP API.
async fn send(relay: &impl RelayAddress, user: &str, body: &str) {
    let json = serde_json::json!({ "destination": NEWS, "body": body });
    post(relay, &format!("/api/v1/users/{user}/messages"), json).await;
}

/// POSTs `json` to the HTTP API's `path`; answers the JSON it answered.
async fn post(relay: &impl RelayAddress, path: &str, json: serde_json::Value) -> serde_json::Value {
    let headers = [("content-type", "application/json")];
    let answer = http(relay, "POST", path, &headers, &json.to_string()).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    answer.json()
}

/// Subscribes to the news, with `x-stream-offset: start` when given.
async fn subscribe_from(client: &mut StompClient, start: Option<&str>) {
    subscribe_to(client, NEWS, start).await;
}

/// SUBSCRIBEs to `destination`, with `x-stream-offset: start` when given,
/// and waits for its RECEIPT.
async fn subscribe_to(client: &mut StompClient, destination: &str, start: Option<&str>) {
    let mut frame = Frame::new(Command::Subscribe)
        .header("id", "s")
        .header("destination", destination)
        .header("receipt", "subscribed");
    if let Some(start) = start {
        frame = frame.header("x-stream-offset", start);
    }
    client.send(frame).await;
    client.expect_receipt("subscribed").await;
}

/// The next MESSAGE: its body, and its position.
async fn next_message(client: &mut StompClient) -> (String, Option<u64>) {
    let frame = client.recv().await;
    assert_eq!(frame.command, Command::Message, "{frame:?}");
    (
        String::from_utf8_lossy(&frame.body).into_owned(),
        frame
            .get("x-stream-offset")
            .map(|position| position.parse().expect("a position is a number")),
    )
}

async fn bodies(client: &mut StompClient, count: usize) -> Vec<String> {
    let mut bodies = Vec::with_capacity(count);
    for _ in 0..count {
        bodies.push(next_message(client).await.0);
    }
    bodies
}

async fn a_session_that_comes_back_gets_exactly_what_it_missed(mode: Mode) {
    let relay = TestRelay::start(mode);
    let other = other_node(&relay, mode, &[]);
    let back_to = other.as_ref().unwrap_or(&relay);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, None).await;
    let mut last = 0;
    for n in 1..=3 {
        send(&relay, "ann", &format!("m{n}")).await;
        let (body, position) = next_message(&mut ann).await;
        assert_eq!(body, format!("m{n}"));
        let position = position.expect("a user message carries its position");
        assert!(position > last, "positions grow: {position} after {last}");
        last = position;
    }
    // Her connection is cut: no DISCONNECT.
    drop(ann);
    for n in 4..=8 {
        send(&relay, "ann", &format!("m{n}")).await;
    }
    let mut ann = StompClient::connect(back_to, Some("ann")).await;
    subscribe_from(&mut ann, Some(&last.to_string())).await;
    let first = ann.recv().await;
    assert_eq!(first.get("x-stream-recovered"), None, "{first:?}");
    assert_eq!(String::from_utf8_lossy(&first.body), "m4");
    let replayed_position: u64 = first
        .get("x-stream-offset")
        .expect("a replayed message carries its position")
        .parse()
        .expect("a number");
    assert!(replayed_position > last);
    assert_eq!(bodies(&mut ann, 4).await, ["m5", "m6", "m7", "m8"]);
    send(&relay, "ann", "m9").await;
    send(back_to, "ann", "m10").await;
    assert_eq!(bodies(&mut ann, 2).await, ["m9", "m10"]);
    ann.expect_nothing().await;
}

async fn a_replay_while_messages_keep_coming_has_no_gap_and_nothing_twice(mode: Mode) {
    const MESSAGES: usize = 300;
    let flags = ["--history-size", "1000"];
    let relay = TestRelay::start_with(mode, &flags);
    let other = other_node(&relay, mode, &flags);
    let back_to = other.as_ref().unwrap_or(&relay);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, None).await;
    let sender = {
        let origin = relay.addr;
        tokio::spawn(async move {
            for n in 0..MESSAGES {
                send(&origin, "ann", &n.to_string()).await;
            }
        })
    };
    // She leaves a while into it, and comes back while it goes on.
    let mut last = None;
    for n in 0..20 {
        let (body, position) = next_message(&mut ann).await;
        assert_eq!(body, n.to_string());
        last = position;
    }
    drop(ann);
    let last = last.expect("a position");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ann = StompClient::connect(back_to, Some("ann")).await;
    subscribe_from(&mut ann, Some(&last.to_string())).await;
    let expected: Vec<String> = (20..MESSAGES).map(|n| n.to_string()).collect();
    assert_eq!(bodies(&mut ann, expected.len()).await, expected);
    sender.await.expect("the sender");
    ann.expect_nothing().await;
}

async fn a_position_older_than_the_history_says_the_replay_is_not_complete(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--history-size", "3"]);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, None).await;
    send(&relay, "ann", "m1").await;
    let (_, first) = next_message(&mut ann).await;
    drop(ann);
    for n in 2..=6 {
        send(&relay, "ann", &format!("m{n}")).await;
    }
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, Some(&first.expect("a position").to_string())).await;
    let message = ann.recv().await;
    assert_eq!(
        message.get("x-stream-recovered"),
        Some("false"),
        "{message:?}"
    );
    assert_eq!(String::from_utf8_lossy(&message.body), "m4");
    let rest = ann.recv().await;
    assert_eq!(
        rest.get("x-stream-recovered"),
        None,
        "only the first says so"
    );
    assert_eq!(String::from_utf8_lossy(&rest.body), "m5");
    assert_eq!(bodies(&mut ann, 1).await, ["m6"]);
    ann.expect_nothing().await;
}

async fn a_replay_starts_at_first_last_next_an_offset_or_a_time(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, None).await;
    let mut positions = Vec::new();
    for n in 1..=3 {
        send(&relay, "ann", &format!("m{n}")).await;
        positions.push(next_message(&mut ann).await.1.expect("a position"));
    }
    drop(ann);
    let seconds = (positions[0] >> 16) / 1000;
    let cases: [(String, &[&str]); 6] = [
        ("first".to_owned(), &["m1", "m2", "m3"]),
        ("last".to_owned(), &["m3"]),
        ("next".to_owned(), &[]),
        (format!("offset={}", positions[1]), &["m2", "m3"]),
        (format!("timestamp={seconds}"), &["m1", "m2", "m3"]),
        (format!("timestamp={}", seconds + 3600), &[]),
    ];
    for (start, expected) in cases {
        let mut ann = StompClient::connect(&relay, Some("ann")).await;
        subscribe_from(&mut ann, Some(&start)).await;
        assert_eq!(bodies(&mut ann, expected.len()).await, expected, "{start}");
        ann.expect_nothing().await;
    }
}

async fn without_a_history_there_are_no_positions_and_no_replay(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--history-size", "0"]);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, None).await;
    send(&relay, "ann", "m1").await;
    let (body, position) = next_message(&mut ann).await;
    assert_eq!((body.as_str(), position), ("m1", None));
    drop(ann);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, Some("first")).await;
    ann.expect_nothing().await;
}

/// A client-acked subscription acknowledges replayed messages as it does
/// live ones. A kept message (`persist`) that the replay gave is not shown
/// again from the offline store; it stays kept, since its replayed copy's
/// ACK does not reach the store, and comes once more, as redelivered, to
/// the next subscription that reads the store.
async fn replayed_messages_are_acknowledged_like_live_ones(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, None).await;
    send(&relay, "ann", "m1").await;
    let (_, first) = next_message(&mut ann).await;
    drop(ann);
    send(&relay, "ann", "m2").await;
    let kept = serde_json::json!({ "destination": NEWS, "body": "m3", "persist": true });
    let answer = post(&relay, "/api/v1/users/ann/messages", kept).await;
    assert_eq!(answer["kept"], 1, "{answer}");

    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    let subscribe = Frame::new(Command::Subscribe)
        .header("id", "news")
        .header("destination", NEWS)
        .header("ack", "client-individual")
        .header("x-stream-offset", first.expect("a position").to_string())
        .header("receipt", "subscribed");
    ann.send(subscribe).await;
    ann.expect_receipt("subscribed").await;
    for expected in ["m2", "m3"] {
        let message = ann.recv().await;
        assert_eq!(String::from_utf8_lossy(&message.body), expected);
        let ack = message.get("ack").expect("an ack id").to_owned();
        ann.send(
            Frame::new(Command::Ack)
                .header("id", ack)
                .header("receipt", format!("acked-{expected}")),
        )
        .await;
        ann.expect_receipt(&format!("acked-{expected}")).await;
    }
    ann.expect_nothing().await;
    drop(ann);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, None).await;
    let again = ann.recv().await;
    assert_eq!(String::from_utf8_lossy(&again.body), "m3");
    assert_eq!(again.get("redelivered"), Some("true"), "{again:?}");
    drop(ann);
    // Shown to an auto-acked subscription, it is forgotten.
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    subscribe_from(&mut ann, None).await;
    ann.expect_nothing().await;
}

async fn a_topic_with_a_history_replays_what_a_subscriber_missed(mode: Mode) {
    let flags = ["--history-topics", "/topic/prices.**"];
    let relay = TestRelay::start_with(mode, &flags);
    let other = other_node(&relay, mode, &flags);
    let back_to = other.as_ref().unwrap_or(&relay);
    // Topics are shared by every test on this RabbitMQ: names of its own.
    let key = format!("prices.{}", relay.id);
    let topic = format!("/topic/{key}");
    let mut publisher = StompClient::connect(&relay, Some("publisher")).await;
    let mut reader = StompClient::connect(&relay, Some("reader")).await;
    subscribe_to(&mut reader, &topic, None).await;
    publisher.publish(&topic, "p1").await;
    let (body, position) = next_message(&mut reader).await;
    assert_eq!(body, "p1");
    let position = position.expect("a topic with a history gives positions");
    drop(reader);
    publisher.publish(&topic, "p2").await;
    let through_the_api = serde_json::json!({ "body": "p3" });
    post(
        back_to,
        &format!("/api/v1/topics/{key}/messages"),
        through_the_api,
    )
    .await;
    let mut reader = StompClient::connect(back_to, Some("reader")).await;
    subscribe_to(&mut reader, &topic, Some(&position.to_string())).await;
    publisher.publish(&topic, "p4").await;
    assert_eq!(bodies(&mut reader, 3).await, ["p2", "p3", "p4"]);
    reader.expect_nothing().await;

    // Another topic keeps none: no position, nothing replayed.
    let plain = format!("/topic/chat.{}", relay.id);
    let mut listener = StompClient::connect(&relay, Some("listener")).await;
    subscribe_to(&mut listener, &plain, None).await;
    publisher.publish(&plain, "c1").await;
    assert_eq!(next_message(&mut listener).await, ("c1".to_owned(), None));
}

/// A user nothing was sent to has no history (in Redis, no stream): a
/// replay from now on gives nothing and is complete.
async fn a_replay_for_a_user_without_a_history_is_complete(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut zoe = StompClient::connect(&relay, Some("zoe")).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    subscribe_from(&mut zoe, Some(&format!("timestamp={now}"))).await;
    send(&relay, "zoe", "z1").await;
    let message = zoe.recv().await;
    assert_eq!(message.get("x-stream-recovered"), None, "{message:?}");
    assert_eq!(String::from_utf8_lossy(&message.body), "z1");
}
