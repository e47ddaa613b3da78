//! The HTTP API as a service sees it: messages to users and topics,
//! presence, access rules, and clear refusals, against a relay in embedded
//! mode and in cluster mode (`embedded::` and `cluster::`).

use stomp_parser::Command;

use crate::support::{self, Mode, StompClient, TestRelay, http};

scenario_tests! {
    embedded: Mode::Embedded,
    cluster: Mode::Cluster;
    [
        a_user_message_reaches_every_session_of_that_user_only,
        a_short_destination_and_a_text_body_work_too,
        a_message_for_an_offline_user_says_so,
        a_topic_message_reaches_its_subscribers,
        presence_lists_a_users_sessions,
        bad_requests_get_a_clear_refusal,
        with_a_token_set_the_api_requires_it,
        the_live_nodes_are_listed_with_their_sessions,
        a_message_to_several_users_or_to_everyone,
        a_message_to_everyone_reaches_each_subscription_of_its_destination_once,
        the_openapi_description_matches_the_routes,
        metrics_count_what_the_node_did,
        http_is_answered_as_clients_expect,
        no_web_page_drives_the_api_of_a_node_without_a_token,
        what_a_message_says_it_did_it_did,
    ]
}

const JSON: (&str, &str) = ("content-type", "application/json");

async fn a_user_message_reaches_every_session_of_that_user_only(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut tab1 = StompClient::connect(&relay, Some("alice")).await;
    tab1.subscribe("n", "/user/queue/notifications", "auto")
        .await;
    let mut tab2 = StompClient::connect(&relay, Some("alice")).await;
    tab2.subscribe("n", "/user/queue/notifications", "auto")
        .await;
    let mut bob = StompClient::connect(&relay, Some("bob")).await;
    bob.subscribe("n", "/user/queue/notifications", "auto")
        .await;
    bob.subscribe("all", "/topic/#", "auto").await;

    let body = r#"{"destination": "/user/queue/notifications", "body": {"text": "hi"}, "headers": {"x-kind": "greeting"}}"#;
    let answer = http(
        &relay,
        "POST",
        "/api/v1/users/alice/messages",
        &[JSON],
        body,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json(),
        serde_json::json!({"sessions": 2, "offline_users": 0, "kept": 0})
    );
    for tab in [&mut tab1, &mut tab2] {
        let message = tab.recv().await;
        assert_eq!(message.command, Command::Message);
        assert_eq!(
            message.get("destination"),
            Some("/user/queue/notifications")
        );
        assert_eq!(message.get("content-type"), Some("application/json"));
        assert_eq!(message.get("x-kind"), Some("greeting"));
        assert_eq!(&message.body[..], br#"{"text":"hi"}"#);
    }
    bob.expect_nothing().await;
}

async fn a_short_destination_and_a_text_body_work_too(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut carol = StompClient::connect(&relay, Some("carol")).await;
    carol.subscribe("n", "/user/queue/alerts", "auto").await;
    let body = r#"{"destination": "alerts", "body": "plain text"}"#;
    let answer = http(
        &relay,
        "POST",
        "/api/v1/users/carol/messages",
        &[JSON],
        body,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let message = carol.recv().await;
    assert_eq!(&message.body[..], b"plain text");
    assert_eq!(message.get("content-type"), Some("text/plain"));
}

async fn a_message_for_an_offline_user_says_so(mode: Mode) {
    let relay = TestRelay::start(mode);
    let body = r#"{"destination": "notifications", "body": "anyone?"}"#;
    let answer = http(
        &relay,
        "POST",
        "/api/v1/users/nobody/messages",
        &[JSON],
        body,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        serde_json::json!({"sessions": 0, "offline_users": 1, "kept": 0})
    );
    // Connected but not subscribed to that destination counts as offline.
    let _erin = StompClient::connect(&relay, Some("erin")).await;
    let answer = http(&relay, "POST", "/api/v1/users/erin/messages", &[JSON], body).await;
    assert_eq!(
        answer.json(),
        serde_json::json!({"sessions": 0, "offline_users": 1, "kept": 0})
    );
}

async fn a_topic_message_reaches_its_subscribers(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut reader = StompClient::connect(&relay, None).await;
    reader.subscribe("t", "/topic/prices.eur", "auto").await;
    let answer = http(
        &relay,
        "POST",
        "/api/v1/topics/prices.eur/messages",
        &[JSON],
        r#"{"body": 1.25}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let message = reader.recv().await;
    assert_eq!(message.get("destination"), Some("/topic/prices.eur"));
    assert_eq!(&message.body[..], b"1.25");
}

async fn presence_lists_a_users_sessions(mode: Mode) {
    let relay = TestRelay::start(mode);
    let _tab1 = StompClient::connect(&relay, Some("dora")).await;
    let _tab2 = StompClient::connect(&relay, Some("dora")).await;
    let answer = http(&relay, "GET", "/api/v1/users/dora/sessions", &[], "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sessions = answer.json()["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sessions.len(), 2, "{}", answer.body);
    for session in sessions {
        assert!(uuid::Uuid::parse_str(session["session"].as_str().unwrap()).is_ok());
        assert!(session["node"].as_str().unwrap().starts_with("test-"));
        assert!(session["connected_at"].as_u64().unwrap() > 1_700_000_000_000);
    }
    let encoded = http(&relay, "GET", "/api/v1/users/d%6Fra/sessions", &[], "").await;
    assert_eq!(encoded.json()["user"], "dora");
    let nobody = http(&relay, "GET", "/api/v1/users/nobody/sessions", &[], "").await;
    assert_eq!(nobody.json()["sessions"], serde_json::json!([]));
    let online = http(&relay, "GET", "/api/v1/users", &[], "").await.json();
    let dora = online["users"]
        .as_array()
        .and_then(|users| users.iter().find(|u| u["user"] == "dora").cloned());
    assert_eq!(
        dora,
        Some(serde_json::json!({"user": "dora", "sessions": 2})),
        "{online}"
    );
}

async fn bad_requests_get_a_clear_refusal(mode: Mode) {
    let relay = TestRelay::start(mode);
    let cases = [
        (
            "POST",
            "/api/v1/users/a/messages",
            "{not json",
            400,
            "invalid JSON",
        ),
        (
            "POST",
            "/api/v1/users/a/messages",
            r#"{"destination": "x", "body": "b", "colour": 1}"#,
            400,
            "unknown field `colour`",
        ),
        (
            "POST",
            "/api/v1/users/a/messages",
            r#"{"body": "b"}"#,
            400,
            "missing field `destination`",
        ),
        (
            "POST",
            "/api/v1/users/a/messages",
            r#"{"destination": "/topic/x", "body": "b"}"#,
            400,
            "is not /user/queue/",
        ),
        (
            "POST",
            "/api/v1/messages",
            r#"{"destination": "x", "body": "b", "all": true, "persist": true}"#,
            400,
            "persist keeps messages for named users",
        ),
        (
            "POST",
            "/api/v1/topics/x/messages",
            r#"{"body": "b", "destination": "y"}"#,
            400,
            "unknown field",
        ),
        ("GET", "/api/v1/users/a/messages", "", 405, "answers POST"),
        (
            "POST",
            "/api/v1/users/a/messages",
            r#"["notifications", "hi", {}, true]"#,
            400,
            "expected an object",
        ),
        (
            "POST",
            "/api/v1/topics/x/messages",
            "[null]",
            400,
            "expected an object",
        ),
        (
            "POST",
            "/api/v1/users/%0A/messages",
            r#"{"destination": "x", "body": "b", "persist": true}"#,
            400,
            "not a user name",
        ),
        (
            "POST",
            "/api/v1/users/%00/messages",
            r#"{"destination": "x", "body": "b", "persist": true}"#,
            400,
            "not a user name",
        ),
        (
            "GET",
            "/api/v1/users/%07/sessions",
            "",
            400,
            "not a user name",
        ),
        (
            "POST",
            "/api/v1/users/a/messages",
            r#"{"destination": "x", "body": "b", "headers": {"a:b": "c"}}"#,
            400,
            "cannot be sent",
        ),
        ("GET", "/api/v1/nowhere", "", 404, "no such API route"),
    ];
    for (method, path, body, status, says) in cases {
        let answer = http(&relay, method, path, &[JSON], body).await;
        assert_eq!(
            answer.status, status,
            "{method} {path} {body}: {}",
            answer.body
        );
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains(says),
            "{method} {path}: {error:?} lacks {says:?}"
        );
    }
    let huge = format!(
        r#"{{"destination": "x", "body": "{}"}}"#,
        "x".repeat(70_000)
    );
    let answer = http(&relay, "POST", "/api/v1/users/a/messages", &[JSON], &huge).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
}

async fn with_a_token_set_the_api_requires_it(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--api-token", "s3cret"]);
    let body = r#"{"destination": "x", "body": "b"}"#;
    let path = "/api/v1/users/a/messages";
    let none = http(&relay, "POST", path, &[JSON], body).await;
    assert_eq!(none.status, 401);
    assert!(none.json()["error"].as_str().unwrap().contains("Bearer"));
    let wrong = http(
        &relay,
        "POST",
        path,
        &[JSON, ("authorization", "Bearer guess")],
        body,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let right = http(
        &relay,
        "POST",
        path,
        &[JSON, ("authorization", "Bearer s3cret")],
        body,
    )
    .await;
    assert_eq!(right.status, 200, "{}", right.body);
}

async fn the_live_nodes_are_listed_with_their_sessions(mode: Mode) {
    let relay = TestRelay::start(mode);
    let _erin = StompClient::connect(&relay, Some("erin")).await;
    let answer = http(&relay, "GET", "/api/v1/nodes", &[], "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let nodes = answer.json()["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let me = nodes
        .iter()
        .find(|node| node["node"] == format!("test-{}", relay.id))
        .unwrap_or_else(|| panic!("this node is not listed: {}", answer.body));
    assert_eq!(me["address"], relay.addr.to_string());
    assert!(me["started_at"].as_u64().unwrap() > 1_700_000_000_000);
    // A cluster node says its count at its next heartbeat; an embedded one now.
    assert!(me["sessions"].as_u64().is_some());
}

async fn a_message_to_several_users_or_to_everyone(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut clients = Vec::new();
    for user in ["fay", "gus", "hal"] {
        let mut client = StompClient::connect(&relay, Some(user)).await;
        client.subscribe("n", "/user/queue/news", "auto").await;
        clients.push(client);
    }
    // Connected, but not listening to that destination: counted offline.
    let _deaf = StompClient::connect(&relay, Some("ida")).await;

    let body = r#"{"destination": "news", "body": "two of you", "users": ["fay", "gus", "ida", "nobody"]}"#;
    let answer = http(&relay, "POST", "/api/v1/messages", &[JSON], body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json(),
        serde_json::json!({"sessions": 2, "offline_users": 2, "kept": 0})
    );
    assert_eq!(clients[0].recv_body().await, "two of you");
    assert_eq!(clients[1].recv_body().await, "two of you");
    clients[2].expect_nothing().await;

    let body = r#"{"destination": "/user/queue/news", "body": "everyone", "all": true}"#;
    let answer = http(&relay, "POST", "/api/v1/messages", &[JSON], body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), serde_json::json!({"published": true}));
    for client in &mut clients {
        assert_eq!(client.recv_body().await, "everyone");
    }

    let neither = r#"{"destination": "news", "body": "?"}"#;
    let answer = http(&relay, "POST", "/api/v1/messages", &[JSON], neither).await;
    assert_eq!(answer.status, 400);
}

async fn a_message_to_everyone_reaches_each_subscription_of_its_destination_once(mode: Mode) {
    let relay = TestRelay::start(mode);
    // Every node on this RabbitMQ gets messages to everyone: a name of this
    // test's own keeps other tests' sessions out of it.
    let name = format!("news.{}", uuid::Uuid::new_v4().simple());
    let mut listeners = Vec::new();
    for (user, destination) in [
        ("lea", format!("/user/queue/{name}")),
        ("lea", format!("/user/topic/{name}")),
        ("max", format!("/user/queue/{name}")),
    ] {
        let mut client = StompClient::connect(&relay, Some(user)).await;
        client.subscribe("n", &destination, "auto").await;
        listeners.push((client, destination));
    }
    let mut twice = StompClient::connect(&relay, Some("ned")).await;
    twice
        .subscribe("a", &format!("/user/queue/{name}"), "auto")
        .await;
    twice
        .subscribe("b", &format!("/user/queue/{name}"), "client")
        .await;
    let mut deaf = StompClient::connect(&relay, Some("ola")).await;
    let mut elsewhere = StompClient::connect(&relay, Some("pat")).await;
    elsewhere
        .subscribe("y", &format!("/user/queue/{name}.y"), "auto")
        .await;
    let mut wide = StompClient::connect(&relay, Some("quin")).await;
    wide.subscribe("all", "/topic/#", "auto").await;

    let body = serde_json::json!({"destination": format!("/user/queue/{name}"), "body": "to all", "all": true});
    let answer = http(
        &relay,
        "POST",
        "/api/v1/messages",
        &[JSON],
        &body.to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), serde_json::json!({"published": true}));
    for (client, destination) in &mut listeners {
        let message = client.recv().await;
        assert_eq!(&message.body[..], b"to all");
        assert_eq!(
            message.get("destination"),
            Some(destination.as_str()),
            "as subscribed"
        );
        client.expect_nothing().await;
    }
    let mut subscriptions = Vec::new();
    for _ in 0..2 {
        let message = twice.recv().await;
        assert_eq!(&message.body[..], b"to all");
        subscriptions.push(message.get("subscription").map(str::to_owned));
    }
    subscriptions.sort();
    assert_eq!(
        subscriptions,
        [Some("a".to_owned()), Some("b".to_owned())],
        "one copy per subscription"
    );
    twice.expect_nothing().await;
    deaf.expect_nothing().await;
    elsewhere.expect_nothing().await;
    wide.expect_nothing().await;
}

async fn the_openapi_description_matches_the_routes(mode: Mode) {
    let relay = TestRelay::start(mode);
    let answer = http(&relay, "GET", "/api/v1/openapi.json", &[], "").await;
    assert_eq!(answer.status, 200);
    let description = answer.json();
    assert_eq!(description["openapi"], "3.1.0");
    let paths = description["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let expected = [
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/users/{user}/sessions"),
        ("HEAD", "/api/v1/nodes"),
        ("HEAD", "/api/v1/openapi.json"),
        ("HEAD", "/api/v1/users"),
        ("HEAD", "/api/v1/users/{user}/sessions"),
        ("POST", "/api/v1/messages"),
        ("POST", "/api/v1/topics/{key}/messages"),
        ("POST", "/api/v1/users/{user}/messages"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, expected,
        "the description lists exactly the API's routes"
    );
    // And every documented route answers as documented, not 404 or 405.
    for (method, path) in &documented {
        let concrete = path
            .replace("{user}", "someone")
            .replace("{key}", "some.topic");
        let answer = http(&relay, method, &concrete, &[JSON], "{}").await;
        let operation = &paths[path.as_str()][method.to_lowercase().as_str()];
        let listed = operation["responses"]
            .get(answer.status.to_string())
            .is_some();
        assert!(
            listed,
            "{method} {path} answered {} which it does not document: {}",
            answer.status, answer.body
        );
    }
}

async fn metrics_count_what_the_node_did(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut kim = StompClient::connect(&relay, Some("kim")).await;
    kim.subscribe("n", "/user/queue/n", "auto").await;
    let body = r#"{"destination": "n", "body": "counted"}"#;
    http(&relay, "POST", "/api/v1/users/kim/messages", &[JSON], body).await;
    assert_eq!(kim.recv_body().await, "counted");
    let answer = http(&relay, "GET", "/metrics", &[], "").await;
    assert_eq!(answer.status, 200);
    for line in [
        r#"stomp_relay_connections{transport="websocket"} 1"#,
        r#"stomp_relay_connections_total{transport="websocket"} 1"#,
        "stomp_relay_sessions 1",
        "stomp_relay_subscriptions 1",
        r#"stomp_relay_frames_received_total{command="SUBSCRIBE"} 1"#,
        r#"stomp_relay_frames_sent_total{command="MESSAGE"} 1"#,
        "stomp_relay_messages_delivered_total 1",
        r#"stomp_relay_dispatch_total{outcome="delivered"} 1"#,
        "stomp_relay_dispatch_seconds_count 1",
        "stomp_relay_dispatched_sessions_total 1",
    ] {
        assert!(
            answer.body.lines().any(|l| l == line),
            "{line:?} missing from:\n{}",
            answer.body
        );
    }
    for metric in answer
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
    {
        let name = metric.split(' ').next().unwrap_or_default();
        assert!(name.starts_with("stomp_"), "{metric}");
        let help = format!("# HELP {name} ");
        assert!(answer.body.contains(&help), "{name} has no HELP");
    }
    // The other routes still answer.
    assert_eq!(http(&relay, "GET", "/healthz", &[], "").await.status, 200);
}

async fn http_is_answered_as_clients_expect(mode: Mode) {
    let relay = TestRelay::start_with(mode, &["--api-token", "s3cret"]);
    let token = ("authorization", "bearer s3cret");
    // Authentication comes first, and says how to authenticate.
    let anonymous = http(&relay, "TRACE", "/api/v1/users", &[], "").await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    // A method the route does not answer: 405, saying which it does.
    let trace = http(&relay, "TRACE", "/api/v1/users", &[token], "").await;
    assert_eq!(trace.status, 405);
    assert_eq!(trace.header("allow"), Some("GET, HEAD"));
    let get = http(&relay, "GET", "/api/v1/messages", &[token], "").await;
    assert_eq!(get.header("allow"), Some("POST"));
    // HEAD wherever GET.
    let head = http(&relay, "HEAD", "/api/v1/users", &[token], "").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    // Bodies are JSON, said so, chunked or not.
    let body = r#"{"body": "b"}"#;
    let untyped = http(&relay, "POST", "/api/v1/topics/t/messages", &[token], body).await;
    assert_eq!(untyped.status, 415, "{}", untyped.body);
    let form = ("content-type", "application/x-www-form-urlencoded");
    let form = http(
        &relay,
        "POST",
        "/api/v1/topics/t/messages",
        &[token, form],
        body,
    )
    .await;
    assert_eq!(form.status, 415);
    let chunked = format!(
        "POST /api/v1/topics/t/messages HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer s3cret\r\ncontent-type: application/json; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = support::http_raw(&relay, &chunked).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let huge = format!("{{\"body\": \"{}\"}}", "x".repeat(70_000));
    let chunked = format!(
        "POST /api/v1/topics/t/messages HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer s3cret\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{huge}\r\n0\r\n\r\n",
        huge.len()
    );
    assert_eq!(support::http_raw(&relay, &chunked).await.status, 413);
}

async fn no_web_page_drives_the_api_of_a_node_without_a_token(mode: Mode) {
    let relay = TestRelay::start(mode);
    let body = r#"{"destination": "x", "body": "b", "all": true}"#;
    let page = ("origin", "https://evil.example");
    let forged = http(&relay, "POST", "/api/v1/messages", &[JSON, page], body).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let simple = ("content-type", "text/plain");
    let simple = http(&relay, "POST", "/api/v1/messages", &[simple], body).await;
    assert_eq!(simple.status, 415, "a CORS simple request is refused too");
    let tool = http(&relay, "POST", "/api/v1/messages", &[JSON], body).await;
    assert_eq!(tool.status, 200, "{}", tool.body);
}

async fn what_a_message_says_it_did_it_did(mode: Mode) {
    let relay = TestRelay::start(mode);
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    ann.subscribe("n", "/user/queue/n", "auto").await;
    // The relay's own headers are the relay's: a wrong content-length
    // cannot make the frame unsendable after the answer counted it.
    let body = r#"{"destination": "n", "body": "hello", "headers": {"content-length": "2", "x-kind": "greeting"}}"#;
    let answer = http(&relay, "POST", "/api/v1/users/ann/messages", &[JSON], body).await;
    assert_eq!(answer.json()["sessions"], 1, "{}", answer.body);
    let message = ann.recv().await;
    assert_eq!(&message.body[..], b"hello");
    assert_eq!(message.get("x-kind"), Some("greeting"));
    // A user named many times gets one copy.
    let many = serde_json::json!({"destination": "n", "body": "once", "users": vec!["ann"; 1000]});
    let answer = http(
        &relay,
        "POST",
        "/api/v1/messages",
        &[JSON],
        &many.to_string(),
    )
    .await;
    assert_eq!(answer.json()["sessions"], 1, "{}", answer.body);
    assert_eq!(ann.recv_body().await, "once");
    ann.expect_nothing().await;
}

/// Embedded mode only: Redis bounds its own memory.
#[tokio::test]
async fn the_offline_store_of_a_node_is_bounded_oldest_first_and_counted() {
    let relay = TestRelay::start_with(Mode::Embedded, &["--offline-max-node-messages", "2"]);
    for (user, body) in [("ann", "1"), ("bob", "2"), ("cy", "3")] {
        let message = format!(r#"{{"destination": "inbox", "body": "{body}", "persist": true}}"#);
        let path = format!("/api/v1/users/{user}/messages");
        let answer = http(&relay, "POST", &path, &[JSON], &message).await;
        assert_eq!(answer.json()["kept"], 1, "{}", answer.body);
    }
    let metrics = http(&relay, "GET", "/metrics", &[], "").await.body;
    assert!(
        metrics
            .lines()
            .any(|line| line == "stomp_relay_offline_dropped_total 1"),
        "{metrics}"
    );
    let mut ann = StompClient::connect(&relay, Some("ann")).await;
    ann.subscribe("i", "/user/queue/inbox", "auto").await;
    ann.expect_nothing().await;
    let mut cy = StompClient::connect(&relay, Some("cy")).await;
    cy.subscribe("i", "/user/queue/inbox", "auto").await;
    assert_eq!(cy.recv_body().await, "3");
}
