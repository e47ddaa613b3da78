//! STOMP over SockJS as `sockjs-client` 1.6 and `@stomp/stompjs` speak it
//! under Node: runs `tests/js/sockjs.test.mjs` (one test per SockJS
//! transport: websocket, xhr-streaming, xhr-polling, eventsource) against a
//! relay started here, in both modes.
//!
//! Needs Node.js; installs the locked npm packages of `tests/js` when they
//! are missing. Fails loudly without them rather than skipping.

use crate::support::{self, Mode, TestRelay, sockjs_message, sockjs_xhr};

#[test]
fn sockjs_clients_speak_to_an_embedded_relay() {
    run_sockjs_client(Mode::Embedded);
}

#[test]
fn sockjs_clients_speak_to_a_cluster_relay() {
    run_sockjs_client(Mode::Cluster);
}

fn run_sockjs_client(mode: Mode) {
    let relay = TestRelay::start(mode);
    let url = format!("http://{}/sockjs", relay.addr);
    support::run_node_tests("sockjs.test.mjs", &[("RELAY_SOCKJS_URL", url)]);
}

/// A client that stops polling is taken for gone after the disconnect
/// delay (5 s): its STOMP session ends, and with it its registry entry and
/// what it listened to (a message to its user reaches no session).
async fn an_abandoned_sockjs_session_is_cleaned_up(mode: Mode) {
    let relay = TestRelay::start(mode);
    let sockjs_session = uuid::Uuid::new_v4().simple().to_string();
    let user = format!("abandoned-{}", &sockjs_session[..8]);
    assert_eq!(sockjs_xhr(&relay, &sockjs_session, "xhr", "").await, "o\n");
    let connect = sockjs_message(&format!("CONNECT\naccept-version:1.2\nlogin:{user}\n\n"));
    sockjs_xhr(&relay, &sockjs_session, "xhr_send", &connect).await;
    let connected = sockjs_xhr(&relay, &sockjs_session, "xhr", "").await;
    assert!(connected.starts_with("a[\"CONNECTED\\n"), "{connected}");
    let subscribe = sockjs_message("SUBSCRIBE\nid:0\ndestination:/user/queue/inbox\nreceipt:r\n\n");
    sockjs_xhr(&relay, &sockjs_session, "xhr_send", &subscribe).await;
    let receipt = sockjs_xhr(&relay, &sockjs_session, "xhr", "").await;
    assert!(receipt.contains("RECEIPT"), "{receipt}");

    let presence_path = format!("/api/v1/users/{user}/sessions");
    let sessions =
        |answer: support::HttpAnswer| answer.json()["sessions"].as_array().map_or(0, Vec::len);
    assert_eq!(
        sessions(support::http(&relay, "GET", &presence_path, &[], "").await),
        1
    );
    let reached = || async {
        let path = format!("/api/v1/users/{user}/messages");
        let json = [("content-type", "application/json")];
        let probe = r#"{"destination": "inbox", "body": "probe"}"#;
        support::http(&relay, "POST", &path, &json, probe)
            .await
            .json()["sessions"]
            .as_u64()
    };
    assert_eq!(reached().await, Some(1), "listening while the client polls");

    // The client vanishes: no more polls.
    let abandoned = std::time::Instant::now();
    while sessions(support::http(&relay, "GET", &presence_path, &[], "").await) > 0 {
        assert!(
            abandoned.elapsed() < std::time::Duration::from_secs(8),
            "the abandoned session is still registered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        abandoned.elapsed() >= std::time::Duration::from_secs(4),
        "not before the delay"
    );
    assert_eq!(reached().await, Some(0), "no longer listening");
    // The SockJS session answers its close frame, then is forgotten.
    let closed = sockjs_xhr(&relay, &sockjs_session, "xhr", "").await;
    assert!(closed == "o\n" || closed.starts_with("c["), "{closed}");
}

/// An `xhr_send` over the size limit gets its 413, however much it carries
/// (the relay reads it on rather than reset the connection under the
/// client), and its session the ERROR that says why and the close, as a
/// WebSocket's would: 20 times, 20 MiB each.
async fn an_oversized_xhr_send_gets_its_413_and_its_session_the_error(mode: Mode) {
    let relay = TestRelay::start(mode);
    let too_much = sockjs_message(&format!(
        "SEND\ndestination:/topic/big\n\n{}",
        "x".repeat(20 * 1024 * 1024)
    ));
    for attempt in 0..20 {
        let sockjs_session = uuid::Uuid::new_v4().simple().to_string();
        assert_eq!(sockjs_xhr(&relay, &sockjs_session, "xhr", "").await, "o\n");
        let connect = sockjs_message("CONNECT\naccept-version:1.2\n\n");
        sockjs_xhr(&relay, &sockjs_session, "xhr_send", &connect).await;
        let connected = sockjs_xhr(&relay, &sockjs_session, "xhr", "").await;
        assert!(connected.starts_with("a[\"CONNECTED"), "{connected}");
        let path = format!("/sockjs/000/{sockjs_session}/xhr_send");
        let refused = support::http(&relay, "POST", &path, &[], &too_much).await;
        assert_eq!(refused.status, 413, "attempt {attempt}: {}", refused.body);
        let mut seen = String::new();
        for _ in 0..10 {
            seen.push_str(&sockjs_xhr(&relay, &sockjs_session, "xhr", "").await);
            if seen.contains("c[") {
                break;
            }
        }
        assert!(
            seen.contains("message:frame too large"),
            "attempt {attempt}: {seen}"
        );
        assert!(
            seen.contains(r#"c[1009,"Message too big"]"#),
            "attempt {attempt}: {seen}"
        );
    }
}

#[tokio::test]
async fn an_oversized_xhr_send_gets_its_413_and_its_session_the_error_embedded() {
    an_oversized_xhr_send_gets_its_413_and_its_session_the_error(Mode::Embedded).await;
}

#[tokio::test]
async fn an_oversized_xhr_send_gets_its_413_and_its_session_the_error_in_a_cluster() {
    an_oversized_xhr_send_gets_its_413_and_its_session_the_error(Mode::Cluster).await;
}

#[tokio::test]
async fn an_abandoned_sockjs_session_is_cleaned_up_embedded() {
    an_abandoned_sockjs_session_is_cleaned_up(Mode::Embedded).await;
}

#[tokio::test]
async fn an_abandoned_sockjs_session_is_cleaned_up_in_a_cluster() {
    an_abandoned_sockjs_session_is_cleaned_up(Mode::Cluster).await;
}
