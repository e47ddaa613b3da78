//! Three relay processes sharing one RabbitMQ and one Redis, clients spread
//! over them: what reaches whom, read from each node's own counters, and
//! what happens when a node dies without a word (SIGKILL).
//!
//! Each scenario runs on the shared Redis (`shared_redis::`) and, unchanged,
//! on a Redis Cluster of three masters started for each test
//! (`redis_cluster::`): every key, pipeline and script of the registry, the
//! offline store and the history keeps to one hash slot.

use std::time::{Duration, Instant};

use crate::support::node_process::{Cluster, NodeProcess};
use crate::support::{StompClient, http};

scenario_tests! {
    shared_redis: Cluster::start,
    redis_cluster: Cluster::start_on_redis_cluster;
    [
        a_user_message_travels_only_to_the_node_of_its_user,
        a_user_on_two_nodes_receives_on_both,
        an_offline_user_gets_kept_messages_later_in_order_on_any_node,
        a_session_back_on_another_node_replays_what_it_missed,
        broadcasts_and_topics_reach_every_client_on_every_node_exactly_once,
        a_killed_node_leaves_presence_within_the_ttl_and_its_users_go_offline,
        a_login_on_another_node_replaces_the_older_session_there,
        the_dispatch_answer_counts_only_sessions_listening_there,
    ]
}

/// How a scenario starts its nodes: `count` of them, each with `flags`.
type StartCluster = fn(count: usize, flags: &[&str]) -> Cluster;

const JSON: (&str, &str) = ("content-type", "application/json");
const DELIVERED: &str = "stomp_relay_messages_delivered_total";

/// A user name no other test run uses.
fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// POSTs `request` to `path` on `node`; answers the JSON.
async fn post(node: &NodeProcess, path: &str, request: serde_json::Value) -> serde_json::Value {
    let answer = http(node, "POST", path, &[JSON], &request.to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

/// Each node's count of MESSAGE frames written to clients.
async fn delivered(cluster: &Cluster) -> Vec<u64> {
    let mut counts = Vec::new();
    for node in &cluster.nodes {
        counts.push(node.metric(DELIVERED).await);
    }
    counts
}

/// What each node delivered since it counted `before`.
async fn delivered_since(cluster: &Cluster, before: &[u64]) -> Vec<u64> {
    let now = delivered(cluster).await;
    now.iter()
        .zip(before)
        .map(|(now, before)| now - before)
        .collect()
}

async fn a_user_message_travels_only_to_the_node_of_its_user(start_cluster: StartCluster) {
    let cluster = start_cluster(3, &[]);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let user = unique("carla");
    let mut carla = StompClient::connect(c, Some(&user)).await;
    carla
        .subscribe("n", "/user/queue/notifications", "auto")
        .await;
    // Clients on A and B listening to the same destination, as other users.
    let mut others = Vec::new();
    for node in [a, b] {
        let mut other = StompClient::connect(node, Some(&unique("other"))).await;
        other
            .subscribe("n", "/user/queue/notifications", "auto")
            .await;
        others.push(other);
    }
    let before = delivered(&cluster).await;

    let path = format!("/api/v1/users/{user}/messages");
    let sent = post(
        a,
        &path,
        serde_json::json!({"destination": "notifications", "body": "for carla"}),
    )
    .await;
    assert_eq!(sent["sessions"], 1, "{sent}");
    assert_eq!(carla.recv_body().await, "for carla");
    carla.expect_nothing().await;
    for other in &mut others {
        other.expect_nothing().await;
    }
    assert_eq!(
        delivered_since(&cluster, &before).await,
        [0, 0, 1],
        "only node C delivers it"
    );
}

async fn a_user_on_two_nodes_receives_on_both(start_cluster: StartCluster) {
    let cluster = start_cluster(3, &[]);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let user = unique("dina");
    let mut tabs = Vec::new();
    for node in [a, b] {
        let mut tab = StompClient::connect(node, Some(&user)).await;
        tab.subscribe("n", "/user/queue/n", "auto").await;
        tabs.push(tab);
    }
    let before = delivered(&cluster).await;
    // Through a client's SEND on the third node this time.
    let mut sender = StompClient::connect(c, Some(&unique("sender"))).await;
    sender
        .publish(&format!("/user/{user}/queue/n"), "to both tabs")
        .await;
    for tab in &mut tabs {
        assert_eq!(tab.recv_body().await, "to both tabs");
        tab.expect_nothing().await;
    }
    assert_eq!(delivered_since(&cluster, &before).await, [1, 1, 0]);
}

async fn an_offline_user_gets_kept_messages_later_in_order_on_any_node(
    start_cluster: StartCluster,
) {
    let cluster = start_cluster(3, &[]);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let user = unique("ola");
    let path = format!("/api/v1/users/{user}/messages");
    for (n, node) in [a, b, a, c].into_iter().enumerate() {
        let request =
            serde_json::json!({"destination": "inbox", "body": format!("m{n}"), "persist": true});
        assert_eq!(post(node, &path, request).await["kept"], 1);
    }
    let mut ola = StompClient::connect(c, Some(&user)).await;
    ola.subscribe("in", "/user/queue/inbox", "auto").await;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(ola.recv_body().await);
    }
    assert_eq!(bodies, ["m0", "m1", "m2", "m3"]);
    ola.expect_nothing().await;
}

/// Her connection to one node is cut; messages sent through another go on;
/// she comes back on the third with her last position and gets exactly what
/// she missed, then what comes live.
async fn a_session_back_on_another_node_replays_what_it_missed(start_cluster: StartCluster) {
    let cluster = start_cluster(3, &[]);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let user = unique("rhea");
    let path = format!("/api/v1/users/{user}/messages");
    let send = |node, body: &str| {
        let request = serde_json::json!({"destination": "feed", "body": body});
        post(node, &path, request)
    };
    let mut rhea = StompClient::connect(a, Some(&user)).await;
    rhea.subscribe("f", "/user/queue/feed", "auto").await;
    send(b, "m1").await;
    let first = rhea.recv().await;
    let position = first.get("x-stream-offset").expect("a position").to_owned();
    drop(rhea);
    for n in 2..=4 {
        send(b, &format!("m{n}")).await;
    }
    let mut rhea = StompClient::connect(c, Some(&user)).await;
    rhea.send(
        stomp_parser::Frame::new(stomp_parser::Command::Subscribe)
            .header("id", "f")
            .header("destination", "/user/queue/feed")
            .header("x-stream-offset", &position)
            .header("receipt", "back"),
    )
    .await;
    rhea.expect_receipt("back").await;
    send(a, "m5").await;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(rhea.recv_body().await);
    }
    assert_eq!(bodies, ["m2", "m3", "m4", "m5"]);
    rhea.expect_nothing().await;
}

async fn broadcasts_and_topics_reach_every_client_on_every_node_exactly_once(
    start_cluster: StartCluster,
) {
    let cluster = start_cluster(3, &[]);
    let topic = unique("scores");
    // Every node on this RabbitMQ gets messages to everyone, those of other
    // tests too: a name of this test's own.
    let news = unique("news");
    let mut clients = Vec::new();
    for node in &cluster.nodes {
        for _ in 0..2 {
            let mut client = StompClient::connect(node, Some(&unique("fan"))).await;
            client
                .subscribe("n", &format!("/user/queue/{news}"), "auto")
                .await;
            client
                .subscribe("t", &format!("/topic/{topic}"), "auto")
                .await;
            clients.push(client);
        }
    }
    let before = delivered(&cluster).await;
    let everyone = serde_json::json!({"destination": news, "body": "to all", "all": true});
    let sent = post(&cluster.nodes[1], "/api/v1/messages", everyone).await;
    assert_eq!(sent, serde_json::json!({"published": true}));
    let on_topic = serde_json::json!({"body": "goal"});
    post(
        &cluster.nodes[2],
        &format!("/api/v1/topics/{topic}/messages"),
        on_topic,
    )
    .await;
    for client in &mut clients {
        let mut bodies = [client.recv_body().await, client.recv_body().await];
        bodies.sort();
        assert_eq!(bodies, ["goal", "to all"]);
        client.expect_nothing().await;
    }
    assert_eq!(
        delivered_since(&cluster, &before).await,
        [4, 4, 4],
        "two clients per node, two messages each"
    );
}

async fn a_killed_node_leaves_presence_within_the_ttl_and_its_users_go_offline(
    start_cluster: StartCluster,
) {
    let cluster_flags = ["--node-ttl", "3"];
    let mut cluster = start_cluster(3, &cluster_flags);
    let user = unique("zed");
    let mut zed = StompClient::connect(&cluster.nodes[2], Some(&user)).await;
    zed.subscribe("n", "/user/queue/n", "auto").await;
    let sessions_path = format!("/api/v1/users/{user}/sessions");
    let presence = http(&cluster.nodes[0], "GET", &sessions_path, &[], "").await;
    assert_eq!(
        presence.json()["sessions"].as_array().map(Vec::len),
        Some(1)
    );

    let killed_at = Instant::now();
    cluster.nodes[2].kill();
    drop(zed);
    let a = &cluster.nodes[0];

    // Dispatch takes the node for alive, and its session for reached, until
    // the node's key expires (the TTL, 3 s here) and the others notice
    // (within 1/15 of it).
    let path = format!("/api/v1/users/{user}/messages");
    let probe = serde_json::json!({"destination": "n", "body": "anyone?"});
    let offline = loop {
        let sent = post(a, &path, probe.clone()).await;
        if sent["sessions"] == 0 {
            break sent;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(4),
            "still delivered: {sent}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(offline["offline_users"], 1);

    // Presence forgets the node's sessions within its TTL (3 s).
    loop {
        let presence = http(a, "GET", &sessions_path, &[], "").await;
        if presence.json()["sessions"]
            .as_array()
            .is_some_and(Vec::is_empty)
        {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "the dead node's session is still present: {}",
            presence.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nodes = http(a, "GET", "/api/v1/nodes", &[], "").await.json();
    let listed: Vec<&str> = nodes["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|node| node["node"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !listed.contains(&cluster.nodes[2].node_id.as_str()),
        "{nodes}"
    );

    // A kept message waits for the user, who comes back on another node.
    let keep = serde_json::json!({"destination": "n", "body": "welcome back", "persist": true});
    let sent = post(a, &path, keep).await;
    assert_eq!(
        (sent["sessions"].as_u64(), sent["kept"].as_u64()),
        (Some(0), Some(1))
    );
    let mut zed = StompClient::connect(&cluster.nodes[1], Some(&user)).await;
    zed.subscribe("n", "/user/queue/n", "auto").await;
    assert_eq!(zed.recv_body().await, "welcome back");
}

async fn a_login_on_another_node_replaces_the_older_session_there(start_cluster: StartCluster) {
    let cluster = start_cluster(2, &["--second-login", "replace"]);
    let user = unique("lee");
    let mut old = StompClient::connect(&cluster.nodes[0], Some(&user)).await;
    old.subscribe("n", "/user/queue/n", "auto").await;
    let mut new = StompClient::connect(&cluster.nodes[1], Some(&user)).await;
    let error = old.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("session replaced"));

    new.subscribe("n", "/user/queue/n", "auto").await;
    let path = format!("/api/v1/users/{user}/messages");
    let sent = post(
        &cluster.nodes[0],
        &path,
        serde_json::json!({"destination": "n", "body": "only the new one"}),
    )
    .await;
    assert_eq!(sent["sessions"], 1, "{sent}");
    assert_eq!(new.recv_body().await, "only the new one");
}

/// Which user destinations a session listens to lives in the registry
/// beside it: a message for a user reaches, and is counted for, only the
/// sessions subscribed to its destination, whichever node they are on and
/// whatever the name holds.
async fn the_dispatch_answer_counts_only_sessions_listening_there(start_cluster: StartCluster) {
    let cluster = start_cluster(3, &[]);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let user = unique("dora");
    let odd = "a.#.*/ü x";
    let mut on_a = StompClient::connect(a, Some(&user)).await;
    on_a.subscribe("in", "/user/queue/inbox", "auto").await;
    on_a.subscribe("odd", &format!("/user/queue/{odd}"), "auto")
        .await;
    let mut on_b = StompClient::connect(b, Some(&user)).await;
    on_b.subscribe("al", "/user/queue/alerts", "auto").await;
    let mut on_c = StompClient::connect(c, Some(&user)).await;
    on_c.subscribe("in", "/user/queue/inbox", "auto").await;
    on_c.subscribe("in2", "/user/topic/inbox", "auto").await;
    // Two subscriptions to one name: the name stays listened to until the
    // last goes.
    on_c.send(
        stomp_parser::Frame::new(stomp_parser::Command::Unsubscribe)
            .header("id", "in")
            .header("receipt", "u1"),
    )
    .await;
    on_c.expect_receipt("u1").await;

    let path = format!("/api/v1/users/{user}/messages");
    let to = |name: &str, body: &str| serde_json::json!({"destination": name, "body": body});
    let answer = post(b, &path, to("inbox", "one")).await;
    assert_eq!(answer["sessions"], 2, "{answer}");
    assert_eq!(on_a.recv_body().await, "one");
    assert_eq!(on_c.recv_body().await, "one");

    on_c.send(
        stomp_parser::Frame::new(stomp_parser::Command::Unsubscribe)
            .header("id", "in2")
            .header("receipt", "u2"),
    )
    .await;
    on_c.expect_receipt("u2").await;
    let answer = post(c, &path, to("inbox", "two")).await;
    assert_eq!(answer["sessions"], 1, "{answer}");
    assert_eq!(on_a.recv_body().await, "two");

    let answer = post(a, &path, to(odd, "odd")).await;
    assert_eq!(answer["sessions"], 1, "{answer}");
    let message = on_a.recv().await;
    assert_eq!(&message.body[..], b"odd");
    assert_eq!(
        message.get("destination"),
        Some(format!("/user/queue/{odd}").as_str())
    );

    let answer = post(c, &path, to("elsewhere", "nobody")).await;
    assert_eq!(
        answer,
        serde_json::json!({"sessions": 0, "offline_users": 1, "kept": 0})
    );
    on_a.expect_nothing().await;
    on_b.expect_nothing().await;
    on_c.expect_nothing().await;
}
