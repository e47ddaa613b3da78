//! The relay under attack. Hostile clients send malformed, truncated and
//! oversize frames, trickle frames, idle without logging in, break every
//! limit, reach for other sessions' subscriptions and acks, forge their
//! sender and subscribe to wildcards that would catch other users' private
//! messages. Each gets an ERROR frame and the close (or simply nothing),
//! while bystanders on the same node keep receiving every message, in
//! order. Then destination ACLs and the HTTP API's logins.

use std::time::Duration;

use stomp_parser::{Command, Frame};
use tokio::task::JoinHandle;

use crate::support::credentials::{SECRET, claims, hs256, temp_file, users_file};
use crate::support::{self, Mode, PATIENCE, QUIET, StompClient, TestRelay};

/// The limits of the adversarial relay, small enough to reach quickly.
const HOSTILE_LIMITS: &[&str] = &[
    "--max-frame-size",
    "4096",
    "--max-body-size",
    "2048",
    "--max-headers",
    "8",
    "--max-header-size",
    "256",
    "--max-subscriptions",
    "4",
    "--max-unacked",
    "3",
    "--max-transactions",
    "2",
    "--max-transaction-frames",
    "2",
    "--frame-timeout",
    "1",
    "--connect-timeout",
    "1",
];

/// Clients that only listen, and a publisher that feeds them a numbered
/// message every few milliseconds for as long as the attacks last: two on
/// a topic and one on a user destination (`u-` bodies).
struct Bystanders {
    stop: tokio::sync::oneshot::Sender<()>,
    publisher: JoinHandle<usize>,
    readers: Vec<(String, JoinHandle<Vec<String>>)>,
    /// The session whose user destination the publisher feeds.
    pub watcher_session: String,
}

/// The body that tells readers the feed is over.
const END: &str = "end";

impl Bystanders {
    /// Bystanders of a relay without authentication.
    async fn start(relay: &TestRelay, feed: &str) -> Bystanders {
        Bystanders::start_with(relay, feed, |_| "secret".to_owned()).await
    }

    /// Bystanders whose passcode for a user is `passcode(user)`.
    async fn start_with(
        relay: &TestRelay,
        feed: &str,
        passcode: impl Fn(&str) -> String,
    ) -> Bystanders {
        let mut readers = Vec::new();
        for name in ["topic-1", "topic-2"] {
            let mut client = StompClient::connect_with_login(relay, name, &passcode(name)).await;
            client
                .subscribe("feed", &format!("/topic/{feed}"), "auto")
                .await;
            readers.push((name.to_owned(), tokio::spawn(read_until_end(client))));
        }
        let watcher_name = format!("watcher-{feed}");
        let (mut watcher, watcher_session) =
            StompClient::connect_with_session(relay, &watcher_name, &passcode(&watcher_name)).await;
        watcher.subscribe("feed", "/user/queue/feed", "auto").await;
        readers.push(("user".to_owned(), tokio::spawn(read_until_end(watcher))));

        let mut publisher =
            StompClient::connect_with_login(relay, "publisher", &passcode("publisher")).await;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (topic, user) = (
            format!("/topic/{feed}"),
            format!("/user/watcher-{feed}/queue/feed"),
        );
        let publisher = tokio::spawn(async move {
            let mut sent = 0;
            loop {
                publisher.publish(&topic, &sent.to_string()).await;
                publisher.publish(&user, &format!("u-{sent}")).await;
                sent += 1;
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            publisher.publish(&topic, END).await;
            publisher.publish(&user, END).await;
            sent
        });
        Bystanders {
            stop,
            publisher,
            readers,
            watcher_session,
        }
    }

    /// Stops the feed and checks that every bystander got all of it, in
    /// order.
    async fn finish(self) {
        // A little more feed after the last attack, for its effects to show.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = self.stop.send(());
        let sent = self.publisher.await.expect("the publisher ran");
        assert!(
            sent > 10,
            "the feed ran during the attacks ({sent} messages)"
        );
        for (name, reader) in self.readers {
            let received = reader.await.expect("the reader ran");
            let prefix = if name == "user" { "u-" } else { "" };
            let expected: Vec<String> = (0..sent).map(|n| format!("{prefix}{n}")).collect();
            assert_eq!(
                received, expected,
                "bystander {name} lost or reordered messages"
            );
        }
    }
}

async fn read_until_end(mut client: StompClient) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let frame = client.recv_within(Duration::from_secs(30)).await;
        let Some(frame) = frame else {
            panic!("a bystander was cut off after {} messages", bodies.len());
        };
        assert_eq!(frame.command, Command::Message, "{frame:?}");
        let body = String::from_utf8_lossy(&frame.body).into_owned();
        if body == END {
            return bodies;
        }
        bodies.push(body);
    }
}

/// Opens a connection, sends `bytes` as they are and expects an ERROR
/// whose `message` is `summary`, then the close.
async fn refused_raw(relay: &TestRelay, bytes: &[u8], summary: &str) {
    let mut client = StompClient::open(relay).await;
    client.send_raw(bytes).await;
    expect_refusal(&mut client, summary, &String::from_utf8_lossy(bytes)).await;
}

async fn expect_refusal(client: &mut StompClient, summary: &str, what: &str) -> Frame {
    let error = client.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some(summary), "{what}: {error:?}");
    error
}

/// Connected as `login`, then `bytes` sent as they are.
async fn connected_then_raw(relay: &TestRelay, login: &str, bytes: &[u8]) -> StompClient {
    let mut client = StompClient::connect(relay, Some(login)).await;
    client.send_raw(bytes).await;
    client
}

#[tokio::test]
async fn hostile_clients_are_refused_while_bystanders_keep_receiving() {
    let relay = TestRelay::start_with(Mode::Embedded, HOSTILE_LIMITS);
    let bystanders = Bystanders::start(&relay, "feed").await;

    // Frames no parser should take.
    refused_raw(&relay, b"HELLO\n\n\0", "Bad command").await;
    refused_raw(&relay, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "Bad command").await;
    refused_raw(
        &relay,
        b"CONNECT\naccept-version:1.2\nlogin:\xff\xfe\n\n\0",
        "malformed frame received",
    )
    .await;
    refused_raw(
        &relay,
        b"CONNECT\naccept-version:1.2\nlogin:a\0b\n\n\0",
        "Bad CONNECT",
    )
    .await;
    let mut escaper = connected_then_raw(
        &relay,
        "escaper",
        b"SEND\ndestination:/topic/feed\nbad\\xescape:1\n\nx\0",
    )
    .await;
    expect_refusal(
        &mut escaper,
        "malformed frame received",
        "an undefined escape",
    )
    .await;

    // Out of order, or not a client's to send.
    refused_raw(
        &relay,
        b"SEND\ndestination:/topic/feed\n\nearly\0",
        "Illegal command",
    )
    .await;
    refused_raw(
        &relay,
        b"MESSAGE\ndestination:/topic/feed\n\nfake\0",
        "unexpected frame",
    )
    .await;
    let mut twice = connected_then_raw(&relay, "twice", b"CONNECT\naccept-version:1.2\n\n\0").await;
    expect_refusal(&mut twice, "protocol error", "a second CONNECT").await;

    // Each limit of a frame, refused as soon as it is known: a huge
    // content-length before its body arrives.
    for (bytes, what) in [
        (
            b"SEND\ndestination:/topic/feed\ncontent-length:99999999999\n\n".to_vec(),
            "huge content-length",
        ),
        (
            [
                b"SEND\ndestination:/topic/feed\n\n".as_slice(),
                &[b'x'; 5000],
                b"\0",
            ]
            .concat(),
            "frame size",
        ),
        (
            [
                b"SEND\ndestination:/topic/feed\ncontent-length:3000\n\n".as_slice(),
                &[b'x'; 3000],
                b"\0",
            ]
            .concat(),
            "body size",
        ),
        (
            format!(
                "SEND\ndestination:/topic/feed\n{}\nx\0",
                (0..9).map(|n| format!("h{n}:v\n")).collect::<String>()
            )
            .into_bytes(),
            "header count",
        ),
        (
            format!(
                "SEND\ndestination:/topic/feed\nh:{}\n\nx\0",
                "v".repeat(300)
            )
            .into_bytes(),
            "header size",
        ),
    ] {
        let mut client = connected_then_raw(&relay, "oversize", &bytes).await;
        expect_refusal(&mut client, "malformed frame received", what).await;
    }

    // A frame cut off by a vanishing client delivers nothing (the
    // bystanders' count shows it), and the node carries on.
    let mut vanishing = StompClient::connect(&relay, Some("vanishing")).await;
    vanishing
        .send_raw(b"SEND\ndestination:/topic/feed\ncontent-length:10\n\nhal")
        .await;
    drop(vanishing);

    // Slowloris: a frame begun and never finished; and a connection that
    // never logs in.
    let mut trickle = StompClient::connect(&relay, Some("trickle")).await;
    trickle.send_raw(b"SEND\ndestination:/topic/fe").await;
    expect_refusal(&mut trickle, "frame timeout", "a frame begun and left").await;
    let mut idle = StompClient::open(&relay).await;
    expect_refusal(&mut idle, "connect timeout", "an idle connection").await;

    // Session limits.
    let mut hoarder = StompClient::connect(&relay, Some("hoarder")).await;
    for id in 0..4 {
        hoarder
            .subscribe(&id.to_string(), "/topic/hoard", "auto")
            .await;
    }
    hoarder
        .send(subscribe_frame("4", "/topic/hoard", "auto"))
        .await;
    expect_refusal(
        &mut hoarder,
        "too many subscriptions",
        "a fifth subscription",
    )
    .await;

    let mut hoarder = StompClient::connect(&relay, Some("hoarder")).await;
    for transaction in ["t1", "t2", "t3"] {
        hoarder
            .send(Frame::new(Command::Begin).header("transaction", transaction))
            .await;
    }
    expect_refusal(
        &mut hoarder,
        "Transaction limit exceeded",
        "a third transaction",
    )
    .await;
    let mut hoarder = StompClient::connect(&relay, Some("hoarder")).await;
    hoarder
        .send(Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    for n in 0..3 {
        hoarder
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/held")
                    .header("transaction", "t")
                    .body(n.to_string()),
            )
            .await;
    }
    expect_refusal(&mut hoarder, "Transaction too large", "a third held frame").await;

    let queue = relay.queue("unacked");
    let mut lazy = StompClient::connect(&relay, Some("lazy")).await;
    lazy.subscribe("q", &queue, "client-individual").await;
    let mut feeder = StompClient::connect(&relay, Some("feeder")).await;
    for n in 0..5 {
        feeder.publish(&queue, &n.to_string()).await;
    }
    for _ in 0..3 {
        assert_eq!(lazy.recv().await.command, Command::Message);
    }
    expect_refusal(
        &mut lazy,
        "too many unacknowledged messages",
        "a fourth unacked message",
    )
    .await;

    // Another session's subscription and acks are out of reach.
    let private_queue = relay.queue("private-acks");
    let mut victim = StompClient::connect(&relay, Some("victim")).await;
    victim
        .subscribe("mine", &private_queue, "client-individual")
        .await;
    feeder.publish(&private_queue, "for the victim").await;
    let message = victim.recv().await;
    let ack_id = message.get("ack").expect("an ack header").to_owned();
    let mut thief = StompClient::connect(&relay, Some("thief")).await;
    thief
        .send(Frame::new(Command::Ack).header("id", &ack_id))
        .await;
    expect_refusal(
        &mut thief,
        "Message not found",
        "ACK of another session's message",
    )
    .await;
    let mut thief = StompClient::connect(&relay, Some("thief")).await;
    thief
        .send(Frame::new(Command::Unsubscribe).header("id", "mine"))
        .await;
    expect_refusal(
        &mut thief,
        "No subscription found",
        "UNSUBSCRIBE of another's",
    )
    .await;
    victim
        .send(
            Frame::new(Command::Ack)
                .header("id", &ack_id)
                .header("receipt", "acked"),
        )
        .await;
    victim.expect_receipt("acked").await;

    // The relay's own queues (dispatch, sessions, nodes) and the default
    // exchange are out of reach whatever the ACL.
    for (frame, summary) in [
        (
            Frame::new(Command::Send)
                .header("destination", "/queue/stomp.dispatch")
                .header("stomp-user", "victim")
                .body("injected"),
            "access refused",
        ),
        (
            subscribe_frame("n", "/amq/queue/stomp.node.test", "auto"),
            "access refused",
        ),
        (
            Frame::new(Command::Send)
                .header("destination", "/exchange/amq.default/stomp.dispatch")
                .body("injected"),
            "access refused",
        ),
        (
            subscribe_frame("d", "/topic/x", "auto")
                .header("durable", "true")
                .header(
                    "x-queue-name",
                    format!("stomp.session.{}", bystanders.watcher_session),
                ),
            "Invalid header",
        ),
    ] {
        let mut client = StompClient::connect(&relay, Some("intruder")).await;
        client.send(frame).await;
        expect_refusal(&mut client, summary, "a reserved queue").await;
    }

    // The relay, not the client, names the sender.
    let mut reader = StompClient::connect(&relay, Some("reader")).await;
    reader.subscribe("f", "/topic/forged", "auto").await;
    let mut forger = StompClient::connect(&relay, Some("mallory")).await;
    forger
        .send(
            Frame::new(Command::Send)
                .header("destination", "/topic/forged")
                .header("user-name", "watcher-feed")
                .header("session", &bystanders.watcher_session)
                .body("trust me"),
        )
        .await;
    let forged = reader.recv().await;
    assert_eq!(forged.get("user-name"), Some("mallory"), "{forged:?}");
    assert_ne!(
        forged.get("session"),
        Some(bystanders.watcher_session.as_str())
    );

    eavesdroppers_hear_no_private_messages(&relay, &bystanders.watcher_session).await;

    bystanders.finish().await;
}

fn subscribe_frame(id: &str, destination: &str, ack: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
        .header("ack", ack)
}

/// Wildcards that would match the session keys of the watcher
/// (`stomp.{node}.{session}.feed`) catch topic traffic but never a `u-`
/// message; naming such a key outright is refused.
async fn eavesdroppers_hear_no_private_messages(relay: &TestRelay, watcher_session: &str) {
    // Subscribed without waiting for receipts: the first wildcards hear
    // the topic feed before the later ones are answered.
    let mut eavesdropper = StompClient::connect(relay, Some("eve")).await;
    for (id, destination) in [
        "/topic/#",
        "/topic/*",
        "/topic/*.#",
        "/topic/#.feed",
        "/exchange/amq.topic/#",
        "/exchange/amq.topic/*",
    ]
    .iter()
    .enumerate()
    {
        let id = id.to_string();
        eavesdropper
            .send(subscribe_frame(&id, destination, "auto"))
            .await;
        if id == "3" {
            // Four subscriptions is the limit here; the rest on another
            // connection.
            let heard = listen(eavesdropper).await;
            assert!(
                heard.iter().all(|body| !body.starts_with("u-")),
                "{heard:?}"
            );
            eavesdropper = StompClient::connect(relay, Some("eve")).await;
        }
    }
    let heard = listen(eavesdropper).await;
    assert!(
        heard.iter().all(|body| !body.starts_with("u-")),
        "{heard:?}"
    );

    let mut direct = StompClient::connect(relay, Some("eve")).await;
    let key = format!("/topic/{}", relay.session_key(watcher_session, "feed"));
    direct.send(subscribe_frame("x", &key, "auto")).await;
    expect_refusal(
        &mut direct,
        "Invalid destination",
        "a user key named outright",
    )
    .await;
}

/// The bodies a client receives in a second.
async fn listen(mut client: StompClient) -> Vec<String> {
    let mut heard = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, client.recv_within(PATIENCE)).await {
        heard.push(String::from_utf8_lossy(&frame.body).into_owned());
    }
    heard
}

#[tokio::test]
async fn wildcards_in_cluster_mode_hear_no_private_messages() {
    let relay = TestRelay::start_with(Mode::Cluster, HOSTILE_LIMITS);
    let feed = format!("feed{}", relay.id);
    let bystanders = Bystanders::start(&relay, &feed).await;
    eavesdroppers_hear_no_private_messages(&relay, &bystanders.watcher_session).await;
    bystanders.finish().await;
}

#[tokio::test]
async fn a_slow_reader_is_closed_or_has_messages_dropped_as_configured() {
    for (policy, dropped) in [("close", false), ("drop", true)] {
        let relay = TestRelay::start_with(
            Mode::Embedded,
            &["--max-pending-messages", "8", "--slow-consumer", policy],
        );
        // A raw socket that completes the handshake and CONNECT, then
        // never reads again: the kernel's buffers fill, then the outbox.
        let mut sleeper = StompClient::connect(&relay, Some("sleeper")).await;
        sleeper.subscribe("s", "/topic/flood", "auto").await;
        let mut flood = StompClient::connect(&relay, Some("flood")).await;
        let body = "x".repeat(60_000);
        for _ in 0..400 {
            flood.publish("/topic/flood", &body).await;
        }
        flood
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/other")
                    .header("receipt", "done"),
            )
            .await;
        flood.expect_receipt("done").await;
        let metrics = support::http(&relay, "GET", "/metrics", &[], "").await.body;
        let counter = |name: &str| -> f64 {
            metrics
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse().ok())
                .unwrap_or(0.0)
        };
        let slow_errors = counter("stomp_relay_session_errors_total{reason=\"slow consumer\"}");
        if dropped {
            assert!(
                counter("stomp_relay_messages_dropped_total") > 0.0,
                "{metrics}"
            );
            assert_eq!(slow_errors, 0.0, "{metrics}");
        } else {
            assert_eq!(slow_errors, 1.0, "{metrics}");
        }
        drop(sleeper);
    }
}

#[tokio::test]
async fn sockjs_sessions_past_the_limit_get_a_503() {
    let relay = TestRelay::start_with(Mode::Embedded, &["--max-sockjs-sessions", "2"]);
    let open = |session: &'static str| {
        let relay = &relay;
        async move {
            support::http(
                relay,
                "POST",
                &format!("/sockjs/000/{session}/xhr"),
                &[],
                "",
            )
            .await
            .status
        }
    };
    assert_eq!(open("a").await, 200);
    assert_eq!(open("b").await, 200);
    assert_eq!(open("c").await, 503);
    let send = support::http(&relay, "POST", "/sockjs/000/a/xhr_send", &[], "[\"x\"]").await;
    assert_eq!(send.status, 204, "an open session is still served");
}

/// A relay checking HS256 tokens whose roles are in `realm_access.roles`.
fn acl_relay(acl: &str) -> TestRelay {
    let acl = temp_file("acl.toml", acl);
    TestRelay::start_with(
        Mode::Embedded,
        &[
            "--auth",
            "jwt",
            "--jwt-secret",
            SECRET,
            "--jwt-roles-claim",
            "realm_access.roles",
            "--acl-file",
            &acl,
        ],
    )
}

async fn connect_with_token(relay: &TestRelay, user: &str, roles: &[&str]) -> StompClient {
    let token = hs256(
        &claims(user, serde_json::json!({"realm_access": {"roles": roles}})),
        SECRET,
    );
    StompClient::connect_with_login(relay, user, &token).await
}

#[tokio::test]
async fn acls_grant_by_role_and_the_defaults_hold_the_rest() {
    let relay = acl_relay(
        r#"
        [[rule]]
        roles = ["ops"]
        allow = ["/exchange/**", "/amq/queue/**"]

        [[rule]]
        users = ["carol"]
        actions = ["subscribe"]
        deny = ["/topic/admin.**"]
        "#,
    );
    // A wildcard does not widen what carol may read.
    let mut wide = connect_with_token(&relay, "carol", &[]).await;
    wide.subscribe("all", "/topic/#", "auto").await;
    let mut sender = connect_with_token(&relay, "dan", &[]).await;
    for topic in ["/topic/admin.keys", "/topic/chat.hello"] {
        sender
            .send(
                Frame::new(Command::Send)
                    .header("destination", topic)
                    .body(topic),
            )
            .await;
    }
    assert_eq!(wide.recv_body().await, "/topic/chat.hello");
    assert!(wide.recv_within(QUIET).await.is_none());
    let mut ops = connect_with_token(&relay, "olga", &["ops"]).await;
    ops.subscribe("x", "/exchange/amq.topic/ops.*", "auto")
        .await;

    let mut carol = connect_with_token(&relay, "carol", &[]).await;
    carol.subscribe("t", "/topic/chat.#", "auto").await;
    carol.subscribe("u", "/user/queue/inbox", "auto").await;
    carol
        .send(
            Frame::new(Command::Send)
                .header("destination", "/app/orders")
                .header("receipt", "app"),
        )
        .await;
    carol.expect_receipt("app").await;

    for (frame, what) in [
        (
            subscribe_frame("a", "/topic/admin.keys", "auto"),
            "a denied topic",
        ),
        (
            subscribe_frame("e", "/exchange/amq.topic/ops.x", "auto"),
            "an exchange without the grant",
        ),
        (
            Frame::new(Command::Send)
                .header("destination", "/user/olga/queue/inbox")
                .body("hi"),
            "another user's destination",
        ),
        (
            Frame::new(Command::Send)
                .header("destination", "/amq/queue/orders")
                .body("x"),
            "an existing queue without the grant",
        ),
    ] {
        let mut client = connect_with_token(&relay, "carol", &[]).await;
        client.send(frame).await;
        let error = expect_refusal(&mut client, "access refused", what).await;
        assert!(
            String::from_utf8_lossy(&error.body).contains("user \"carol\" may not"),
            "{error:?}"
        );
    }
    // A refused frame inside a transaction is refused when it arrives.
    let mut client = connect_with_token(&relay, "carol", &[]).await;
    client
        .send(Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    client
        .send(
            Frame::new(Command::Send)
                .header("destination", "/exchange/amq.topic/x")
                .header("transaction", "t"),
        )
        .await;
    expect_refusal(
        &mut client,
        "access refused",
        "a SEND held in a transaction",
    )
    .await;

    // Olga still receives on her granted exchange subscription.
    carol
        .send(
            Frame::new(Command::Send)
                .header("destination", "/topic/ops.alert")
                .body("disk full"),
        )
        .await;
    assert_eq!(ops.recv_body().await, "disk full");
    assert!(
        carol.recv_within(QUIET).await.is_none(),
        "chat.# is not ops.alert"
    );
}

#[tokio::test]
async fn the_http_api_answers_logins_with_the_api_role() {
    let users = users_file();
    let relay = TestRelay::start_with(
        Mode::Embedded,
        &[
            "--auth",
            "users",
            "--users-file",
            &users,
            "--api-token",
            "t0ken",
        ],
    );
    use base64::Engine;
    let basic = |credentials: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    };
    let status = |authorization: String| {
        let relay = &relay;
        async move {
            support::http(
                relay,
                "GET",
                "/api/v1/nodes",
                &[("authorization", &authorization)],
                "",
            )
            .await
            .status
        }
    };
    assert_eq!(status("Bearer t0ken".into()).await, 200);
    assert_eq!(
        status(basic("olga:operations")).await,
        200,
        "olga has the api role"
    );
    assert_eq!(
        status(basic("alice:wonderland")).await,
        401,
        "alice has not"
    );
    assert_eq!(status(basic("olga:wrong")).await, 401);
    assert_eq!(status("Bearer wrong".into()).await, 401);
    let anonymous = support::http(&relay, "GET", "/api/v1/nodes", &[], "").await;
    assert_eq!(
        anonymous.status, 401,
        "a token is set: loopback is not enough"
    );
}

#[tokio::test]
async fn forged_tokens_and_refused_destinations_leave_bystanders_undisturbed() {
    // The publisher may write to the watcher's user destination; nobody
    // else may write to another user's.
    let acl = temp_file(
        "acl.toml",
        "[[rule]]\nusers = [\"publisher\"]\nallow = [\"/user/**\"]\n",
    );
    let relay = TestRelay::start_with(
        Mode::Embedded,
        &[
            "--auth",
            "jwt",
            "--jwt-secret",
            SECRET,
            "--jwt-audience",
            "relay",
            "--acl-file",
            &acl,
        ],
    );
    let token = |user: &str| hs256(&claims(user, serde_json::json!({})), SECRET);
    let bystanders = Bystanders::start_with(&relay, "feed", token).await;

    let unsigned = {
        use base64::Engine;
        let encode = |json: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
        };
        let header = encode(serde_json::json!({"alg": "none", "typ": "JWT"}));
        let payload = encode(claims("publisher", serde_json::json!({})));
        format!("{header}.{payload}.")
    };
    for (passcode, what) in [
        (
            hs256(&claims("eve", serde_json::json!({"exp": 1})), SECRET),
            "expired",
        ),
        (
            hs256(&claims("eve", serde_json::json!({"aud": "other"})), SECRET),
            "another audience",
        ),
        (
            hs256(
                &claims("publisher", serde_json::json!({})),
                "guessed-secret-guessed-secret",
            ),
            "bad signature",
        ),
        (unsigned, "malformed"),
    ] {
        let mut client = StompClient::open(&relay).await;
        client
            .send(
                Frame::new(Command::Connect)
                    .header("accept-version", "1.2")
                    .header("passcode", &passcode),
            )
            .await;
        let error = expect_refusal(&mut client, "Bad CONNECT", what).await;
        assert!(
            String::from_utf8_lossy(&error.body).contains(what),
            "{what}: {error:?}"
        );
    }

    // A logged-in user writing into the watcher's private destination, or
    // reading an exchange without a grant, is refused.
    for frame in [
        Frame::new(Command::Send)
            .header("destination", "/user/watcher-feed/queue/feed")
            .body("u-forged"),
        subscribe_frame("x", "/exchange/amq.topic/#", "auto"),
    ] {
        let mut eve = StompClient::connect_with_login(&relay, "eve", &token("eve")).await;
        eve.send(frame).await;
        expect_refusal(&mut eve, "access refused", "eve").await;
    }
    bystanders.finish().await;
}
