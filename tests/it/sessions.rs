//! STOMP sessions over WebSocket, as real clients see them: connecting,
//! every destination kind, acks, transactions, receipts, and every ERROR
//! case (each followed by the close) while other clients keep receiving.
//!
//! Each scenario runs against a relay in embedded mode and in cluster mode
//! (`embedded::` and `cluster::`). Queue and topic names are made unique
//! per test, since RabbitMQ is shared.

use std::time::Duration;

use stomp_parser::{Command, Frame, Version};

use crate::support::{Mode, StompClient, TestRelay};

scenario_tests! {
    embedded: Mode::Embedded,
    cluster: Mode::Cluster;
    [
        connect_negotiates_version_heart_beat_and_user,
        the_highest_stomp_subprotocol_offered_is_answered,
        an_unsupported_version_gets_an_error_then_the_close,
        a_topic_message_reaches_every_subscriber,
        wildcards_match_as_amqp_topics_do,
        subscriptions_of_one_session_each_get_their_copy,
        queue_consumers_compete_for_messages,
        queue_messages_wait_for_a_consumer,
        user_destinations_reach_only_that_users_sessions,
        nobody_subscribes_to_another_sessions_user_key,
        a_nack_redelivers_to_a_client_individual_subscription,
        a_nack_without_requeue_discards_the_message,
        a_topic_nack_redelivers_to_the_same_subscription,
        a_topic_prefetch_count_bounds_the_unacknowledged_messages,
        unacked_queue_messages_go_to_another_consumer_after_a_disconnect,
        a_client_ack_covers_every_earlier_message,
        a_transaction_holds_sends_until_commit_and_drops_them_on_abort,
        acks_in_a_transaction_take_effect_at_commit,
        error_cases_close_only_the_offending_connection,
        an_error_echoes_the_receipt_of_the_frame_that_caused_it,
        frames_split_across_messages_and_packed_in_one_work,
        binary_bodies_go_out_as_binary_messages,
        heart_beats_run_as_the_client_asks_but_not_below_the_floor,
        heart_beats_flow_both_ways_and_a_silent_client_is_dropped,
        a_client_that_keeps_its_heart_beat_stays,
        a_connection_that_never_connects_is_closed,
        a_receipt_answers_any_frame_and_disconnect_closes_after_it,
        stomp_1_1_acks_by_message_id_and_escapes_headers,
        an_exchange_without_a_routing_key_round_trips_unchanged,
        a_burst_of_sends_is_slowed_down_not_refused,
        a_stomp_1_2_ack_names_its_message_by_id_only,
        shutdown_tells_clients_then_closes,
        a_stopping_node_tells_its_clients_to_go_over_its_drain_period,
        replies_to_a_temp_queue_reach_the_asking_session,
        sends_in_flight_keep_their_order_and_receipts_follow_them,
        a_send_right_after_a_subscribe_is_heard_by_it,
        deleting_a_durable_subscription_cancels_whoever_else_consumes_it,
        a_durable_subscription_keeps_messages_and_is_shared_by_its_id,
        x_queue_name_gives_a_topic_subscription_a_queue_reachable_by_name,
        a_send_may_name_its_own_user_as_user_id,
        a_send_with_queue_arguments_reaches_the_queue,
    ]
}

fn frame(command: Command, headers: &[(&str, &str)]) -> Frame {
    headers
        .iter()
        .fold(Frame::new(command), |frame, (name, value)| {
            frame.header(name, value)
        })
}

async fn connect_negotiates_version_heart_beat_and_user(mode: Mode) {
    let relay = TestRelay::start(mode);
    for (accept, expected) in [("1.0,1.1,1.2", "1.2"), ("1.1", "1.1"), ("1.0", "1.0")] {
        let mut client = StompClient::open(&relay).await;
        assert_eq!(client.subprotocol.as_deref(), Some("v12.stomp"));
        client
            .send(frame(
                Command::Connect,
                &[
                    ("accept-version", accept),
                    ("host", "h"),
                    ("login", "alice"),
                    ("heart-beat", "0,0"),
                ],
            ))
            .await;
        let connected = client.recv().await;
        assert_eq!(connected.command, Command::Connected);
        assert_eq!(connected.get("version"), Some(expected));
        // Asked for none, it runs none, and says so.
        assert_eq!(connected.get("heart-beat"), Some("0,0"));
        assert_eq!(connected.get("user-name"), Some("alice"));
        assert!(connected.get("server").unwrap().starts_with("stomp-relay/"));
        assert!(uuid::Uuid::parse_str(connected.get("session").unwrap()).is_ok());
    }
    // A 1.0 client that sends no accept-version, with the STOMP command too.
    let mut client = StompClient::open_offering(&relay, None).await;
    assert_eq!(client.subprotocol, None);
    client.send(frame(Command::Stomp, &[])).await;
    let connected = client.recv().await;
    assert_eq!(connected.get("version"), Some("1.0"));
    assert_eq!(connected.get("user-name"), None);
}

async fn the_highest_stomp_subprotocol_offered_is_answered(mode: Mode) {
    let relay = TestRelay::start(mode);
    let client = StompClient::open_offering(&relay, Some("v10.stomp, v11.stomp")).await;
    assert_eq!(client.subprotocol.as_deref(), Some("v11.stomp"));
}

async fn an_unsupported_version_gets_an_error_then_the_close(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::open(&relay).await;
    client
        .send(frame(Command::Connect, &[("accept-version", "2.0,3.1")]))
        .await;
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("Version mismatch"));
    assert_eq!(&error.body[..], b"Supported versions are 1.0,1.1,1.2\n");
}

async fn a_topic_message_reaches_every_subscriber(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut subscribers = Vec::new();
    for n in 0..20 {
        let mut client = StompClient::connect(&relay, Some(&format!("user{n}"))).await;
        client.subscribe("s", "/topic/chat.general", "auto").await;
        subscribers.push(client);
    }
    let mut sender = StompClient::connect(&relay, Some("sender")).await;
    sender.publish("/topic/chat.general", "hello all").await;
    for client in &mut subscribers {
        let message = client.recv().await;
        assert_eq!(message.command, Command::Message);
        assert_eq!(message.get("destination"), Some("/topic/chat.general"));
        assert_eq!(message.get("subscription"), Some("s"));
        assert_eq!(message.get("content-length"), Some("9"));
        assert_eq!(message.get("content-type"), Some("text/plain"));
        assert_eq!(message.get("user-name"), Some("sender"));
        assert!(message.get("message-id").is_some());
        assert_eq!(&message.body[..], b"hello all");
    }
}

async fn wildcards_match_as_amqp_topics_do(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut star = StompClient::connect(&relay, None).await;
    star.subscribe("star", "/topic/chat.*", "auto").await;
    let mut hash = StompClient::connect(&relay, None).await;
    hash.subscribe("hash", "/topic/chat.#", "auto").await;
    let mut sender = StompClient::connect(&relay, None).await;

    sender.publish("/topic/chat.room1", "one word").await;
    assert_eq!(star.recv_body().await, "one word");
    assert_eq!(hash.recv_body().await, "one word");
    sender
        .publish("/topic/chat.room1.thread", "two words")
        .await;
    assert_eq!(hash.recv_body().await, "two words");
    star.expect_nothing().await;
    sender.publish("/topic/news.x", "elsewhere").await;
    star.expect_nothing().await;
    hash.expect_nothing().await;
}

async fn subscriptions_of_one_session_each_get_their_copy(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::connect(&relay, None).await;
    client.subscribe("exact", "/topic/a.b", "auto").await;
    client.subscribe("wild", "/topic/a.*", "auto").await;
    client.publish("/topic/a.b", "twice").await;
    let mut seen = vec![
        client.recv().await.get("subscription").unwrap().to_owned(),
        client.recv().await.get("subscription").unwrap().to_owned(),
    ];
    seen.sort();
    assert_eq!(seen, ["exact", "wild"]);
}

async fn queue_consumers_compete_for_messages(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut first = StompClient::connect(&relay, None).await;
    first
        .subscribe("q", relay.queue("jobs").as_str(), "auto")
        .await;
    let mut second = StompClient::connect(&relay, None).await;
    second
        .subscribe("q", relay.queue("jobs").as_str(), "auto")
        .await;
    let mut sender = StompClient::connect(&relay, None).await;
    for n in 0..10 {
        sender
            .publish(relay.queue("jobs").as_str(), &format!("job {n}"))
            .await;
    }
    let mut received = Vec::new();
    for client in [&mut first, &mut second] {
        let mut mine = 0;
        while let Some(message) = client.recv_within(Duration::from_millis(500)).await {
            assert_eq!(
                message.get("destination"),
                Some(relay.queue("jobs").as_str())
            );
            received.push(String::from_utf8(message.body.to_vec()).unwrap());
            mine += 1;
        }
        assert!(mine >= 3, "one consumer got only {mine} of 10");
    }
    received.sort();
    let mut expected: Vec<String> = (0..10).map(|n| format!("job {n}")).collect();
    expected.sort();
    assert_eq!(received, expected, "each message exactly once");
}

async fn queue_messages_wait_for_a_consumer(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut sender = StompClient::connect(&relay, None).await;
    sender.publish(relay.queue("later").as_str(), "kept").await;
    let mut consumer = StompClient::connect(&relay, None).await;
    consumer
        .subscribe("q", relay.queue("later").as_str(), "auto")
        .await;
    assert_eq!(consumer.recv_body().await, "kept");
}

async fn user_destinations_reach_only_that_users_sessions(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut alice_tab1 = StompClient::connect(&relay, Some("alice")).await;
    alice_tab1
        .subscribe("p", "/user/queue/private", "auto")
        .await;
    let mut alice_tab2 = StompClient::connect(&relay, Some("alice")).await;
    alice_tab2
        .subscribe("p", "/user/queue/private", "auto")
        .await;
    let mut eve = StompClient::connect(&relay, Some("eve")).await;
    eve.subscribe("all", "/topic/#", "auto").await;
    eve.subscribe("one", "/topic/*", "auto").await;
    eve.subscribe("mine", "/user/queue/private", "auto").await;

    let mut bob = StompClient::connect(&relay, Some("bob")).await;
    bob.publish("/user/alice/queue/private", "for alice").await;
    for tab in [&mut alice_tab1, &mut alice_tab2] {
        let message = tab.recv().await;
        assert_eq!(message.get("destination"), Some("/user/queue/private"));
        assert_eq!(message.get("user-name"), Some("bob"));
        assert_eq!(&message.body[..], b"for alice");
    }
    eve.expect_nothing().await;
}

async fn nobody_subscribes_to_another_sessions_user_key(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut eve = StompClient::connect(&relay, Some("eve")).await;
    let key = format!(
        "/topic/{}",
        relay.session_key(&uuid::Uuid::new_v4().to_string(), "private")
    );
    eve.send(frame(
        Command::Subscribe,
        &[("id", "x"), ("destination", &key)],
    ))
    .await;
    let error = eve.expect_error_then_close().await;
    assert!(String::from_utf8_lossy(&error.body).contains("reserved for the relay"));
}

async fn a_nack_redelivers_to_a_client_individual_subscription(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut consumer = StompClient::connect(&relay, None).await;
    consumer
        .subscribe("q", relay.queue("retry").as_str(), "client-individual")
        .await;
    let mut sender = StompClient::connect(&relay, None).await;
    sender
        .publish(relay.queue("retry").as_str(), "try me")
        .await;

    let first = consumer.recv().await;
    let ack_id = first.get("ack").expect("an ack header in 1.2").to_owned();
    assert_eq!(first.get("redelivered"), Some("false"));
    consumer
        .send(frame(Command::Nack, &[("id", &ack_id)]))
        .await;
    let again = consumer.recv().await;
    assert_eq!(&again.body[..], b"try me");
    assert_eq!(again.get("redelivered"), Some("true"));
    let again_id = again.get("ack").unwrap().to_owned();
    consumer
        .send(frame(
            Command::Ack,
            &[("id", &again_id), ("receipt", "acked")],
        ))
        .await;
    consumer.expect_receipt("acked").await;
    consumer.expect_nothing().await;
}

async fn a_nack_without_requeue_discards_the_message(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut consumer = StompClient::connect(&relay, None).await;
    let queue = relay.queue("discard");
    consumer
        .subscribe("q", queue.as_str(), "client-individual")
        .await;
    consumer.subscribe("t", "/topic/discard", "client").await;
    let mut sender = StompClient::connect(&relay, None).await;
    for body in ["drop me", "keep me"] {
        sender.publish(queue.as_str(), body).await;
    }
    sender.publish("/topic/discard", "drop this too").await;
    let mut received = Vec::new();
    for _ in 0..3 {
        let message = consumer.recv().await;
        let body = String::from_utf8_lossy(&message.body).into_owned();
        let ack = message.get("ack").unwrap().to_owned();
        // `False` as Python clients (stomp.py) write it, read as RabbitMQ
        // reads it.
        let requeue = if body == "drop me" { "false" } else { "False" };
        let (command, headers) = if body == "keep me" {
            (Command::Ack, vec![("id", ack.as_str())])
        } else {
            (
                Command::Nack,
                vec![("id", ack.as_str()), ("requeue", requeue)],
            )
        };
        consumer.send(frame(command, &headers)).await;
        received.push(body);
    }
    received.sort();
    assert_eq!(received, ["drop me", "drop this too", "keep me"]);
    // Neither discarded message comes back.
    consumer.expect_nothing().await;
}

async fn a_topic_nack_redelivers_to_the_same_subscription(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut consumer = StompClient::connect(&relay, None).await;
    consumer.subscribe("t", "/topic/alerts", "client").await;
    consumer.publish("/topic/alerts", "alert").await;
    let first = consumer.recv().await;
    consumer
        .send(frame(Command::Nack, &[("id", first.get("ack").unwrap())]))
        .await;
    let again = consumer.recv().await;
    assert_eq!(again.get("redelivered"), Some("true"));
    assert_eq!(again.get("subscription"), Some("t"));
}

async fn a_topic_prefetch_count_bounds_the_unacknowledged_messages(mode: Mode) {
    let relay = TestRelay::start(mode);
    let topic = format!("/topic/prefetch.{}", uuid::Uuid::new_v4().simple());
    let mut consumer = StompClient::connect(&relay, None).await;
    consumer
        .send(frame(
            Command::Subscribe,
            &[
                ("id", "t"),
                ("destination", &topic),
                ("ack", "client-individual"),
                ("prefetch-count", "5"),
                ("receipt", "subscribed"),
            ],
        ))
        .await;
    consumer.expect_receipt("subscribed").await;
    let mut sender = StompClient::connect(&relay, None).await;
    for n in 1..=7 {
        sender.publish(&topic, &n.to_string()).await;
    }
    let mut acks = Vec::new();
    for n in 1..=5 {
        let message = consumer.recv().await;
        assert_eq!(&message.body[..], n.to_string().as_bytes());
        acks.push(message.get("ack").unwrap().to_owned());
    }
    consumer.expect_nothing().await;
    // Each ACK makes room for one more, in order; a NACK's redelivery
    // comes before the messages that wait.
    consumer
        .send(frame(Command::Ack, &[("id", &acks[0])]))
        .await;
    assert_eq!(consumer.recv_body().await, "6");
    consumer
        .send(frame(Command::Nack, &[("id", &acks[1])]))
        .await;
    let again = consumer.recv().await;
    assert_eq!(
        (&again.body[..], again.get("redelivered")),
        (&b"2"[..], Some("true"))
    );
    consumer.expect_nothing().await;
    consumer
        .send(frame(Command::Ack, &[("id", &acks[2])]))
        .await;
    assert_eq!(consumer.recv_body().await, "7");
    consumer.expect_nothing().await;
}

async fn unacked_queue_messages_go_to_another_consumer_after_a_disconnect(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut leaving = StompClient::connect(&relay, None).await;
    leaving
        .subscribe("q", relay.queue("handover").as_str(), "client")
        .await;
    let mut sender = StompClient::connect(&relay, None).await;
    sender
        .publish(relay.queue("handover").as_str(), "one")
        .await;
    sender
        .publish(relay.queue("handover").as_str(), "two")
        .await;
    assert_eq!(leaving.recv_body().await, "one");
    assert_eq!(leaving.recv_body().await, "two");
    leaving
        .send(frame(Command::Disconnect, &[("receipt", "bye")]))
        .await;
    leaving.expect_receipt("bye").await;
    leaving.expect_closed().await;

    let mut staying = StompClient::connect(&relay, None).await;
    staying
        .subscribe("q", relay.queue("handover").as_str(), "client")
        .await;
    let first = staying.recv().await;
    assert_eq!(
        (&first.body[..], first.get("redelivered")),
        (&b"one"[..], Some("true"))
    );
    let second = staying.recv().await;
    assert_eq!(&second.body[..], b"two");
    assert_eq!(second.get("redelivered"), Some("true"));
}

async fn a_client_ack_covers_every_earlier_message(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut consumer = StompClient::connect(&relay, None).await;
    consumer
        .subscribe("q", relay.queue("cumulative").as_str(), "client")
        .await;
    let mut sender = StompClient::connect(&relay, None).await;
    for n in 0..3 {
        sender
            .publish(relay.queue("cumulative").as_str(), &n.to_string())
            .await;
    }
    let mut last = None;
    for _ in 0..3 {
        last = Some(consumer.recv().await);
    }
    let last_ack = last.unwrap().get("ack").unwrap().to_owned();
    consumer
        .send(frame(Command::Ack, &[("id", &last_ack)]))
        .await;
    consumer
        .send(frame(Command::Disconnect, &[("receipt", "done")]))
        .await;
    consumer.expect_receipt("done").await;

    // Nothing was left unacknowledged to hand to the next consumer.
    let mut next = StompClient::connect(&relay, None).await;
    next.subscribe("q", relay.queue("cumulative").as_str(), "client")
        .await;
    next.expect_nothing().await;
}

async fn a_transaction_holds_sends_until_commit_and_drops_them_on_abort(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut listener = StompClient::connect(&relay, None).await;
    listener.subscribe("s", "/topic/tx", "auto").await;
    let mut sender = StompClient::connect(&relay, None).await;

    sender
        .send(frame(Command::Begin, &[("transaction", "t1")]))
        .await;
    for body in ["a", "b"] {
        let receipt = format!("{body}-sent");
        sender
            .send(
                frame(
                    Command::Send,
                    &[
                        ("destination", "/topic/tx"),
                        ("transaction", "t1"),
                        ("receipt", &receipt),
                    ],
                )
                .body(body),
            )
            .await;
    }
    listener.expect_nothing().await;
    // Their receipts wait for the COMMIT too, as RabbitMQ's do.
    sender.expect_nothing().await;
    sender
        .send(frame(
            Command::Commit,
            &[("transaction", "t1"), ("receipt", "c")],
        ))
        .await;
    for receipt in ["a-sent", "b-sent", "c"] {
        sender.expect_receipt(receipt).await;
    }
    assert_eq!(listener.recv_body().await, "a");
    assert_eq!(listener.recv_body().await, "b");

    sender
        .send(frame(Command::Begin, &[("transaction", "t2")]))
        .await;
    sender
        .send(
            frame(
                Command::Send,
                &[
                    ("destination", "/topic/tx"),
                    ("transaction", "t2"),
                    ("receipt", "dropped"),
                ],
            )
            .body("never"),
        )
        .await;
    sender.expect_nothing().await;
    sender
        .send(frame(
            Command::Abort,
            &[("transaction", "t2"), ("receipt", "a")],
        ))
        .await;
    sender.expect_receipt("dropped").await;
    sender.expect_receipt("a").await;
    listener.expect_nothing().await;
}

async fn acks_in_a_transaction_take_effect_at_commit(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut consumer = StompClient::connect(&relay, None).await;
    consumer
        .subscribe("q", relay.queue("txack").as_str(), "client-individual")
        .await;
    consumer.publish(relay.queue("txack").as_str(), "m").await;
    let message = consumer.recv().await;
    consumer
        .send(frame(Command::Begin, &[("transaction", "t")]))
        .await;
    consumer
        .send(frame(
            Command::Ack,
            &[("id", message.get("ack").unwrap()), ("transaction", "t")],
        ))
        .await;
    consumer
        .send(frame(Command::Abort, &[("transaction", "t")]))
        .await;
    consumer
        .send(frame(Command::Disconnect, &[("receipt", "r")]))
        .await;
    consumer.expect_receipt("r").await;
    // The aborted ACK never happened: the message is redelivered.
    let mut next = StompClient::connect(&relay, None).await;
    next.subscribe("q", relay.queue("txack").as_str(), "client-individual")
        .await;
    assert_eq!(next.recv_body().await, "m");
}

async fn error_cases_close_only_the_offending_connection(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut bystander = StompClient::connect(&relay, None).await;
    bystander.subscribe("s", "/topic/alive", "auto").await;
    let mut publisher = StompClient::connect(&relay, None).await;

    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"SEND\ndestination:/topic/x\n\n\0".to_vec(), "Illegal command", "You must log in using CONNECT first"),
        (b"CONNECT\naccept-version:1.2\n\n\0HELLO\n\n\0".to_vec(), "Bad command", "Could not interpret command \"HELLO\""),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\n\nno destination\0".to_vec(), "Missing destination", "destination"),
        (b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/nowhere\n\n\0".to_vec(), "Unknown destination", "'/nowhere' is not a valid destination."),
        (b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/queue/a/b\n\n\0".to_vec(), "Invalid destination", "'/a/b' is not a valid queue destination"),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/topic/a/b\n\n\0".to_vec(), "Invalid destination", "'/a/b' is not a valid topic destination"),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/exchange/amq.topic/b/c\n\n\0".to_vec(), "Invalid destination", "'/amq.topic/b/c' is not a valid exchange destination"),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/queue/\n\n\0".to_vec(), "Invalid destination", "'/' is not a valid queue destination"),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/exchange\n\n\0".to_vec(), "Invalid destination", "'' is not a valid exchange destination"),
        (
            b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/b\n\n\0".to_vec(),
            "Duplicated subscription identifier",
            "A subscription identified by 'T_1' already exists.",
        ),
        (b"CONNECT\naccept-version:1.2\n\n\0MESSAGE\n\n\0".to_vec(), "unexpected frame", "MESSAGE"),
        (b"CONNECT\naccept-version:1.2\n\n\0CONNECT\naccept-version:1.2\n\n\0".to_vec(), "protocol error", "already connected"),
        (b"CONNECT\naccept-version:1.2\n\n\0ACK\nid:nope\n\n\0".to_vec(), "Message not found", "nope"),
        (b"CONNECT\naccept-version:1.2\n\n\0COMMIT\ntransaction:t\n\n\0".to_vec(), "Bad transaction", "\"t\""),
        (b"CONNECT\naccept-version:1.2\n\n\0UNSUBSCRIBE\nid:9\n\n\0".to_vec(), "No subscription found", "\"9\""),
        (b"CONNECT\naccept-version:1.0\n\n\0SUBSCRIBE\ndestination:/topic/a\npersistent:true\n\n\0".to_vec(), "Missing Header", "Header 'id' is required for durable subscriptions"),
        (b"CONNECT\naccept-version:1.2\nlogin:alice\n\n\0SEND\ndestination:/topic/a\nuser-id:bob\n\n\0".to_vec(), "access_refused", "user_id property set to 'bob' but authenticated user was 'alice'"),
        (b"CONNECT\naccept-version:1.2\nlogin:a\x01b\n\n\0".to_vec(), "Bad CONNECT", "is not a user name: it contains a control character"),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/user/bob/queue/x\na\\cb:v\n\n\0".to_vec(), "Invalid header", "cannot be sent to every STOMP version"),
        (b"CONNECT\naccept-version:1.2\n\n\0UNSUBSCRIBE\ndestination:/topic/a\ndurable:true\n\n\0".to_vec(), "Missing Header", "Header 'id' is required for durable subscriptions"),
        (b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/amq/queue/absent\n\n\0".to_vec(), "not_found", "no queue 'absent' in vhost '/'"),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/exchange/absent.x/k\n\n\0".to_vec(), "not_found", "no exchange 'absent.x' in vhost '/'"),
        (b"CONNECT\naccept-version:1.2\nheart-beat:x\n\n\0".to_vec(), "Invalid header", "heart-beat"),
        (b"CONNECT\naccept-version:1.2\nhost:/other\n\n\0".to_vec(), "Bad CONNECT", "Virtual host '/other' access denied"),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/topic/a\nmessage-id:1\n\n\0".to_vec(), "Invalid header", "'message-id' is not allowed on 'SEND'."),
        (b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/topic/a\nbad\\qescape:1\n\n\0".to_vec(), "malformed frame received", "escape"),
    ];
    for (n, (wire, summary, detail)) in cases.into_iter().enumerate() {
        let mut offender = StompClient::open(&relay).await;
        offender.send_raw(&wire).await;
        let error = loop {
            let frame = offender.recv().await;
            if frame.command != Command::Connected {
                break frame;
            }
        };
        assert_eq!(error.command, Command::Error, "case {n}");
        assert_eq!(error.get("message"), Some(summary), "case {n}: {error:?}");
        let body = String::from_utf8_lossy(&error.body).into_owned();
        assert!(body.contains(detail), "case {n}: {body:?} lacks {detail:?}");
        offender.expect_closed().await;

        publisher
            .publish("/topic/alive", &format!("still here {n}"))
            .await;
        assert_eq!(bystander.recv_body().await, format!("still here {n}"));
    }
}

async fn an_error_echoes_the_receipt_of_the_frame_that_caused_it(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::connect(&relay, None).await;
    client
        .send(frame(Command::Send, &[("receipt", "r-7")]))
        .await;
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("receipt-id"), Some("r-7"));
}

async fn frames_split_across_messages_and_packed_in_one_work(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut listener = StompClient::connect(&relay, None).await;
    listener.subscribe("s", "/topic/pieces", "auto").await;
    let mut sender = StompClient::open(&relay).await;
    let wire = b"CONNECT\naccept-version:1.2\n\n\0\nSEND\ndestination:/topic/pieces\n\none\0SEND\ndestination:/topic/pieces\ncontent-length:3\n\ntwo\0\n";
    for piece in wire.chunks(7) {
        sender.send_raw(piece).await;
    }
    assert_eq!(sender.recv().await.command, Command::Connected);
    assert_eq!(listener.recv_body().await, "one");
    assert_eq!(listener.recv_body().await, "two");
    sender
        .send_raw(
            b"SEND\ndestination:/topic/pieces\n\nthree\0SEND\ndestination:/topic/pieces\n\nfour\0",
        )
        .await;
    assert_eq!(listener.recv_body().await, "three");
    assert_eq!(listener.recv_body().await, "four");
    // Stray NULs and EOLs between frames are skipped, as RabbitMQ skips them.
    sender
        .send_raw(b"\0\r\n\0SEND\ndestination:/topic/pieces\n\nfive\0\0\n")
        .await;
    assert_eq!(listener.recv_body().await, "five");
    sender
        .send(frame(Command::Disconnect, &[("receipt", "bye")]))
        .await;
    sender.expect_receipt("bye").await;
}

async fn binary_bodies_go_out_as_binary_messages(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::connect(&relay, None).await;
    client.subscribe("s", "/topic/bin", "auto").await;
    let body: &[u8] = &[0xff, 0x00, 0xfe];
    client
        .send(
            frame(
                Command::Send,
                &[("destination", "/topic/bin"), ("content-length", "3")],
            )
            .body(body.to_vec()),
        )
        .await;
    let message = client.recv().await;
    assert_eq!(&message.body[..], body);
    assert!(client.last_was_binary);
    assert_eq!(
        message.get("content-type"),
        Some("application/octet-stream")
    );
    client.publish("/topic/bin", "text").await;
    assert_eq!(client.recv_body().await, "text");
    assert!(!client.last_was_binary);
}

async fn heart_beats_run_as_the_client_asks_but_not_below_the_floor(mode: Mode) {
    let relay = TestRelay::start(mode);
    for (asked, agreed) in [
        ("1000,1000", "1000,1000"),
        ("5000,20000", "20000,5000"),
        ("0,200", "1000,0"),
        ("300,0", "0,1000"),
    ] {
        let mut client = StompClient::open(&relay).await;
        client
            .send(frame(
                Command::Connect,
                &[("accept-version", "1.2"), ("heart-beat", asked)],
            ))
            .await;
        let connected = client.recv().await;
        assert_eq!(connected.get("heart-beat"), Some(agreed), "asked {asked}");
    }
}

async fn heart_beats_flow_both_ways_and_a_silent_client_is_dropped(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--heart-beat-min", "100"]);
    let mut client = StompClient::open(&relay).await;
    client
        .send(frame(
            Command::Connect,
            &[("accept-version", "1.2"), ("heart-beat", "200,200")],
        ))
        .await;
    let connected = client.recv().await;
    assert_eq!(connected.get("heart-beat"), Some("200,200"));
    // The relay sends heart-beats while nothing else happens...
    assert!(client.recv_heart_beat(Duration::from_secs(2)).await);
    // ...and closes the connection of a client that broke its promise.
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("heart-beat timeout"));
}

async fn a_client_that_keeps_its_heart_beat_stays(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--heart-beat-min", "100"]);
    let mut client = StompClient::open(&relay).await;
    client
        .send(frame(
            Command::Connect,
            &[("accept-version", "1.2"), ("heart-beat", "200,0")],
        ))
        .await;
    client.recv().await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.send_raw(b"\n").await;
    }
    client.subscribe("s", "/topic/hb", "auto").await;
}

async fn a_connection_that_never_connects_is_closed(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--connect-timeout", "1"]);
    let mut client = StompClient::open(&relay).await;
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("connect timeout"));
}

async fn a_receipt_answers_any_frame_and_disconnect_closes_after_it(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::connect(&relay, None).await;
    client.subscribe("s", "/topic/r", "auto").await;
    client
        .send(frame(
            Command::Unsubscribe,
            &[("id", "s"), ("receipt", "u")],
        ))
        .await;
    client.expect_receipt("u").await;
    client
        .send(frame(
            Command::Begin,
            &[("transaction", "t"), ("receipt", "b")],
        ))
        .await;
    client.expect_receipt("b").await;
    client
        .send(frame(Command::Disconnect, &[("receipt", "d")]))
        .await;
    client.expect_receipt("d").await;
    client.expect_closed().await;
}

async fn stomp_1_1_acks_by_message_id_and_escapes_headers(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::open(&relay).await;
    client
        .send(frame(Command::Connect, &[("accept-version", "1.1")]))
        .await;
    assert_eq!(client.recv().await.get("version"), Some("1.1"));
    client.set_version(Version::V1_1);
    client
        .subscribe("s", relay.queue("v11").as_str(), "client")
        .await;
    client
        .send(
            frame(
                Command::Send,
                &[
                    ("destination", relay.queue("v11").as_str()),
                    ("note", "a:b\nc"),
                ],
            )
            .body("x"),
        )
        .await;
    let message = client.recv().await;
    assert_eq!(message.get("note"), Some("a:b\nc"));
    assert_eq!(message.get("ack"), None);
    let id = message.get("message-id").unwrap().to_owned();
    client
        .send(frame(
            Command::Ack,
            &[("message-id", &id), ("subscription", "s"), ("receipt", "k")],
        ))
        .await;
    client.expect_receipt("k").await;
}

async fn an_exchange_without_a_routing_key_round_trips_unchanged(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::connect(&relay, None).await;
    client.subscribe("f", "/exchange/amq.fanout", "auto").await;
    let body = format!("fanout {}", relay.id);
    client.publish("/exchange/amq.fanout", &body).await;
    // amq.fanout is the broker's, so other runs' messages may pass by too.
    loop {
        let message = client.recv().await;
        if message.body == body.as_bytes() {
            assert_eq!(message.get("destination"), Some("/exchange/amq.fanout"));
            break;
        }
    }
}

async fn a_burst_of_sends_is_slowed_down_not_refused(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut sender = StompClient::connect(&relay, None).await;
    let mut burst = Vec::new();
    for n in 0..10_000 {
        let mut send = frame(Command::Send, &[("destination", "/topic/burst")]).body(n.to_string());
        if n == 9_999 {
            send = send.header("receipt", "last");
        }
        burst.extend(stomp_parser::encoded_frame(&send, Version::V1_2).expect("a frame"));
    }
    sender.send_raw(&burst).await;
    sender.expect_receipt("last").await;
}

async fn a_stomp_1_2_ack_names_its_message_by_id_only(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::connect(&relay, None).await;
    client
        .subscribe("s", "/topic/acks", "client-individual")
        .await;
    client.publish("/topic/acks", "x").await;
    let message = client.recv().await;
    let message_id = message.get("message-id").unwrap().to_owned();
    client
        .send(frame(
            Command::Ack,
            &[("message-id", &message_id), ("subscription", "s")],
        ))
        .await;
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("Missing header"));
    assert!(
        String::from_utf8_lossy(&error.body).contains("'id'"),
        "{error:?}"
    );
}

async fn shutdown_tells_clients_then_closes(mode: Mode) {
    let mut relay = TestRelay::start(mode);
    let mut client = StompClient::connect(&relay, None).await;
    let stopping = std::thread::spawn(move || relay.stop());
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("server shutting down"));
    stopping.join().unwrap();
}

/// Each client is told at its own moment within `--drain-period`, and is
/// served until then: in cluster mode a message published (by a service,
/// over AMQP) a while into the drain reaches those not told yet.
async fn a_stopping_node_tells_its_clients_to_go_over_its_drain_period(mode: Mode) {
    const CLIENTS: usize = 24;
    let drain_period = Duration::from_secs(2);
    let mut relay = TestRelay::start_with(mode, &["--drain-period", "2"]);
    let key = format!("drain.{}", relay.id);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = StompClient::connect(&relay, None).await;
        client
            .subscribe("drain", &format!("/topic/{key}"), "auto")
            .await;
        clients.push(client);
    }
    let began = tokio::time::Instant::now();
    let stopping = std::thread::spawn(move || relay.stop());
    let told: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut messages = 0;
                loop {
                    let frame = client.recv().await;
                    if frame.command == Command::Message {
                        messages += 1;
                        continue;
                    }
                    assert_eq!(frame.command, Command::Error, "{frame:?}");
                    assert_eq!(frame.get("message"), Some("server shutting down"));
                    let at = began.elapsed();
                    client.expect_closed().await;
                    return (at, messages);
                }
            })
        })
        .collect();
    if mode == Mode::Cluster {
        tokio::time::sleep(drain_period / 2).await;
        let (_connection, channel) = crate::support::amqp().await;
        let routed = crate::support::publish_mandatory(
            &channel,
            "amq.topic",
            &key,
            b"still served",
            lapin::BasicProperties::default(),
        )
        .await;
        assert!(routed, "the draining node's queue is bound to {key}");
    }
    let mut told_at = Vec::new();
    let mut served_during_the_drain = 0;
    for client in told {
        let (at, messages) = client.await.expect("a client's task");
        told_at.push(at);
        served_during_the_drain += messages;
    }
    stopping.join().expect("the node stops");
    told_at.sort();
    let (first, last) = (told_at[0], told_at[CLIENTS - 1]);
    assert!(
        last - first >= drain_period / 4,
        "told within {:?} of each other: {told_at:?}",
        last - first
    );
    assert!(last <= drain_period + Duration::from_secs(2), "{told_at:?}");
    if mode == Mode::Cluster {
        assert!(served_during_the_drain > 0, "{told_at:?}");
    }
}

async fn replies_to_a_temp_queue_reach_the_asking_session(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut service = StompClient::connect(&relay, Some("service")).await;
    service
        .subscribe("requests", relay.queue("rpc").as_str(), "auto")
        .await;
    let mut asker = StompClient::connect(&relay, Some("asker")).await;
    asker
        .send(
            frame(
                Command::Send,
                &[
                    ("destination", relay.queue("rpc").as_str()),
                    ("reply-to", "/temp-queue/answers"),
                ],
            )
            .body("2+2?"),
        )
        .await;
    let request = service.recv().await;
    let reply_to = request.get("reply-to").unwrap().to_owned();
    assert!(reply_to.starts_with("/reply-queue/"), "{reply_to}");
    service.publish(&reply_to, "4").await;
    let reply = asker.recv().await;
    assert_eq!(&reply.body[..], b"4");
    assert_eq!(reply.get("destination"), Some("/temp-queue/answers"));
    assert_eq!(reply.get("subscription"), Some("/temp-queue/answers"));
    // A reply address reaches temp queues only, not user destinations.
    let forged = reply_to.replace("temp-queue.answers", "private");
    service
        .send(frame(Command::Send, &[("destination", &forged)]))
        .await;
    service.expect_error_then_close().await;
}

async fn sends_in_flight_keep_their_order_and_receipts_follow_them(mode: Mode) {
    const COUNT: usize = 300;
    let relay = TestRelay::start(mode);
    let queue = relay.queue("in-flight");
    let mut reader = StompClient::connect(&relay, Some("reader")).await;
    reader.subscribe("q", &queue, "auto").await;
    reader.subscribe("u", "/user/queue/in-flight", "auto").await;
    let mut sender = StompClient::connect(&relay, Some("sender")).await;
    // Every SEND goes out without waiting for anything: hundreds are in
    // flight at once, to a shared queue and through dispatch to a user.
    for n in 0..COUNT {
        for destination in [queue.as_str(), "/user/reader/queue/in-flight"] {
            let mut send =
                frame(Command::Send, &[("destination", destination)]).body(n.to_string());
            if n == COUNT / 2 && destination == queue {
                send = send.header("receipt", "middle");
            }
            sender.send(send).await;
        }
    }
    sender
        .send(frame(Command::Disconnect, &[("receipt", "end")]))
        .await;
    sender.expect_receipt("middle").await;
    sender.expect_receipt("end").await;
    sender.expect_closed().await;

    let mut received: [Vec<String>; 2] = Default::default();
    for _ in 0..2 * COUNT {
        let message = reader.recv().await;
        let slot = usize::from(message.get("subscription") == Some("u"));
        received[slot].push(String::from_utf8_lossy(&message.body).into_owned());
    }
    let expected: Vec<String> = (0..COUNT).map(|n| n.to_string()).collect();
    assert_eq!(
        received[0], expected,
        "the queue's messages in the order sent"
    );
    assert_eq!(
        received[1], expected,
        "the user's messages in the order sent"
    );
    reader.expect_nothing().await;
}

async fn a_send_right_after_a_subscribe_is_heard_by_it(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut client = StompClient::connect(&relay, None).await;
    // No receipt in between: the SEND must wait for the SUBSCRIBE before it.
    client
        .send(frame(
            Command::Subscribe,
            &[("id", "s"), ("destination", "/topic/echo.me")],
        ))
        .await;
    client
        .send(frame(Command::Send, &[("destination", "/topic/echo.me")]).body("hello".to_owned()))
        .await;
    assert_eq!(client.recv_body().await, "hello");
}

async fn deleting_a_durable_subscription_cancels_whoever_else_consumes_it(mode: Mode) {
    let relay = TestRelay::start(mode);
    let topic = format!("/topic/shared.{}", uuid::Uuid::new_v4().simple());
    let id = format!("shared-{}", uuid::Uuid::new_v4().simple());
    let subscribe = frame(
        Command::Subscribe,
        &[
            ("id", &id),
            ("destination", &topic),
            ("durable", "true"),
            ("receipt", "on"),
        ],
    );
    let mut deleter = StompClient::connect(&relay, Some("erin")).await;
    let mut bystander = StompClient::connect(&relay, Some("erin")).await;
    for client in [&mut deleter, &mut bystander] {
        client.send(subscribe.clone()).await;
        client.expect_receipt("on").await;
    }
    deleter
        .send(frame(
            Command::Unsubscribe,
            &[("id", &id), ("durable", "true"), ("receipt", "gone")],
        ))
        .await;
    deleter.expect_receipt("gone").await;
    let error = bystander.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("Server cancelled subscription"));
    assert_eq!(error.get("subscription"), Some(id.as_str()));
}

async fn a_durable_subscription_keeps_messages_and_is_shared_by_its_id(mode: Mode) {
    let relay = TestRelay::start(mode);
    let key = format!("digest.{}", uuid::Uuid::new_v4().simple());
    let topic = format!("/topic/{key}");
    let id = format!("daily-{}", uuid::Uuid::new_v4().simple());
    let subscribe = |receipt: &str| {
        frame(
            Command::Subscribe,
            &[
                ("id", &id),
                ("destination", &topic),
                ("durable", "true"),
                ("receipt", receipt),
            ],
        )
    };
    let mut dave = StompClient::connect(&relay, Some("dave")).await;
    dave.send(subscribe("s1")).await;
    dave.expect_receipt("s1").await;
    dave.send(frame(Command::Disconnect, &[("receipt", "bye")]))
        .await;
    dave.expect_receipt("bye").await;

    let mut sender = StompClient::connect(&relay, None).await;
    sender.publish(&topic, "while you were away").await;

    let mut first = StompClient::connect(&relay, Some("dave")).await;
    first.send(subscribe("s2")).await;
    first.expect_receipt("s2").await;
    let kept = first.recv().await;
    assert_eq!(&kept.body[..], b"while you were away");
    assert_eq!(kept.get("destination"), Some(topic.as_str()));
    // A second connection with the same id shares the subscription's
    // queue: the two compete for its messages.
    let mut second = StompClient::connect(&relay, Some("dave")).await;
    second.send(subscribe("s3")).await;
    second.expect_receipt("s3").await;
    for body in ["one", "two"] {
        sender.publish(&topic, body).await;
    }
    let mut bodies = vec![first.recv_body().await, second.recv_body().await];
    bodies.sort();
    assert_eq!(bodies, ["one", "two"]);

    // A plain UNSUBSCRIBE leaves it; one with durable:true deletes it, and
    // nothing is kept after. (Deleted under a subscriber, it would end that
    // subscriber's session with `Server cancelled subscription`.)
    second
        .send(frame(
            Command::Unsubscribe,
            &[("id", &id), ("receipt", "left")],
        ))
        .await;
    second.expect_receipt("left").await;
    first
        .send(frame(
            Command::Unsubscribe,
            &[("id", &id), ("durable", "true"), ("receipt", "gone")],
        ))
        .await;
    first.expect_receipt("gone").await;
    sender.publish(&topic, "nobody keeps this").await;
    first.send(subscribe("s4")).await;
    first.expect_receipt("s4").await;
    first.expect_nothing().await;
    first
        .send(frame(
            Command::Unsubscribe,
            &[("id", &id), ("durable", "true"), ("receipt", "clean")],
        ))
        .await;
    first.expect_receipt("clean").await;
}

async fn x_queue_name_gives_a_topic_subscription_a_queue_reachable_by_name(mode: Mode) {
    let relay = TestRelay::start(mode);
    let key = format!("named.{}", uuid::Uuid::new_v4().simple());
    let topic = format!("/topic/{key}");
    let queue = format!("orders-{}", uuid::Uuid::new_v4().simple());
    let mut consumer = StompClient::connect(&relay, None).await;
    consumer
        .send(frame(
            Command::Subscribe,
            &[
                ("id", "named"),
                ("destination", &topic),
                ("x-queue-name", &queue),
                ("receipt", "subscribed"),
            ],
        ))
        .await;
    consumer.expect_receipt("subscribed").await;
    let mut sender = StompClient::connect(&relay, None).await;
    sender.publish(&topic, "by topic").await;
    let by_topic = consumer.recv().await;
    assert_eq!(&by_topic.body[..], b"by topic");
    assert_eq!(by_topic.get("destination"), Some(topic.as_str()));
    // A publisher that knows only the queue's name reaches it too.
    sender
        .publish(&format!("/amq/queue/{queue}"), "by queue name")
        .await;
    let by_name = consumer.recv().await;
    assert_eq!(&by_name.body[..], b"by queue name");
    let queue_destination = format!("/queue/{queue}");
    assert_eq!(by_name.get("destination"), Some(queue_destination.as_str()));
    // The queue goes with its last consumer.
    consumer
        .send(frame(
            Command::Unsubscribe,
            &[("id", "named"), ("receipt", "left")],
        ))
        .await;
    consumer.expect_receipt("left").await;
    sender
        .send(frame(
            Command::Subscribe,
            &[
                ("id", "late"),
                ("destination", &format!("/amq/queue/{queue}")),
            ],
        ))
        .await;
    let error = sender.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("not_found"));
}

async fn a_send_may_name_its_own_user_as_user_id(mode: Mode) {
    let relay = TestRelay::start(mode);
    let topic = format!("/topic/user-id.{}", uuid::Uuid::new_v4().simple());
    let mut alice = StompClient::connect(&relay, Some("alice")).await;
    alice.subscribe("t", &topic, "auto").await;
    let receipt = "sent";
    alice
        .send(frame(
            Command::Send,
            &[
                ("destination", &topic),
                ("user-id", "alice"),
                ("receipt", receipt),
            ],
        ))
        .await;
    alice.expect_receipt(receipt).await;
    let message = alice.recv().await;
    assert_eq!(message.get("user-id"), Some("alice"));
    assert_eq!(message.get("user-name"), Some("alice"));
}

async fn a_send_with_queue_arguments_reaches_the_queue(mode: Mode) {
    let relay = TestRelay::start(mode);
    let queue = relay.queue("with-arguments");
    let mut client = StompClient::connect(&relay, None).await;
    client
        .send(frame(
            Command::Send,
            &[
                ("destination", &queue),
                ("x-max-length", "10"),
                ("x-message-ttl", "60000"),
                ("receipt", "sent"),
            ],
        ))
        .await;
    client.expect_receipt("sent").await;
    client.subscribe("q", &queue, "auto").await;
    let message = client.recv().await;
    // Queue arguments are forwarded as headers too, as RabbitMQ does.
    assert_eq!(message.get("x-max-length"), Some("10"));
    // A bad number is refused, naming the header.
    client
        .send(frame(
            Command::Send,
            &[("destination", &queue), ("x-max-length", "many")],
        ))
        .await;
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("Invalid header"));
}
