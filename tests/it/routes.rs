//! The node's routing table (`src/transport/routes.rs`) as a client meets
//! it: each route answers what it serves, at the paths the flags give, and
//! a path no route serves is a 404.

use crate::support::{self, Mode, TestRelay, http};

#[tokio::test]
async fn every_route_of_the_table_answers_at_its_path() {
    let relay = TestRelay::start(Mode::Embedded);
    let get = |path: &'static str| http(&relay, "GET", path, &[], "");

    let websocket = get("/ws").await;
    assert_eq!(websocket.status, 426, "a plain GET is told to upgrade");
    let client = support::StompClient::connect(&relay, Some("routes")).await;
    assert_eq!(client.subprotocol.as_deref(), Some("v12.stomp"));

    assert_eq!(get("/sockjs").await.body, "Welcome to SockJS!\n");
    assert_eq!(get("/sockjs/info").await.json()["websocket"], true);
    assert!(get("/api/v1/nodes").await.json()["nodes"].is_array());
    assert!(get("/metrics").await.body.contains("stomp_relay"));
    assert_eq!(get("/healthz").await.body, "ok");
    assert_eq!(get("/readyz").await.body, "ready");
    let page = get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"), "{}", page.body);
    assert_eq!(get("/config.json").await.json()["sockjs_path"], "/sockjs");
    // The libraries from npm, not the stand-ins of a build without Node.js.
    let stompjs = get("/vendor/stomp.umd.min.js").await.body;
    assert!(stompjs.contains("StompJs"), "{stompjs}");
    let sockjs = get("/vendor/sockjs.min.js").await.body;
    assert!(sockjs.contains("SockJS"), "{sockjs}");

    assert_eq!(get("/nowhere").await.status, 404);
    assert_eq!(get("/sockjs-not").await.status, 404, "not under /sockjs");
    let wrong_method = http(&relay, "POST", "/healthz", &[], "").await;
    assert_eq!(wrong_method.status, 405);
}

#[tokio::test]
async fn the_session_routes_follow_their_flags() {
    let relay = TestRelay::start_with(
        Mode::Embedded,
        &["--ws-path", "/stomp/ws", "--sockjs-path", "/stomp/sockjs"],
    );
    let get = |path: &'static str| http(&relay, "GET", path, &[], "");
    assert_eq!(get("/stomp/ws").await.status, 426);
    assert_eq!(get("/stomp/sockjs/info").await.status, 200);
    assert_eq!(get("/ws").await.status, 404);
    assert_eq!(get("/sockjs/info").await.status, 404);
    let config = get("/config.json").await.json();
    assert_eq!(config["ws_path"], "/stomp/ws");
    assert_eq!(config["sockjs_path"], "/stomp/sockjs");
}
