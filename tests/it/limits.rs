//! Limits on what one client controls, each enforced while everyone else
//! is served: frames per second, connections per address, connections that
//! never send a request, HTTP headers that never finish, WebSocket messages
//! over the size limit, and the origins whose pages may connect.

use std::time::Duration;

use stomp_parser::{Command, Frame};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{self, Mode, RelayAddress, StompClient, TestRelay};

/// A message over --max-frame-size, 20 and 64 MiB sent in one WebSocket
/// message by a real client (Node's `ws`), and 20 MiB over SockJS's
/// WebSocket transport, 20 times each: the ERROR and the close (1009, or
/// SockJS's `c[1009,...]`) reach it every time
/// (`tests/js/oversize.test.mjs`).
#[test]
fn an_oversized_message_always_gets_its_error_and_close_1009() {
    for mode in [Mode::Embedded, Mode::Cluster] {
        let relay = TestRelay::start(mode);
        let sockjs = format!("ws://{}/sockjs", relay.addr);
        support::run_node_tests(
            "oversize.test.mjs",
            &[
                ("RELAY_WS_URL", relay.ws_url()),
                ("RELAY_SOCKJS_WS", sockjs),
            ],
        );
    }
}

#[tokio::test]
async fn a_client_sending_too_many_frames_is_stopped_and_others_are_not() {
    let relay = TestRelay::start_with(Mode::Embedded, &["--max-frames-per-second", "20"]);
    let mut bystander = StompClient::connect(&relay, Some("calm")).await;
    bystander.subscribe("t", "/topic/flood", "auto").await;
    let mut flooder = StompClient::connect(&relay, Some("flooder")).await;
    let mut burst = Vec::new();
    for n in 0..60 {
        let frame = Frame::new(Command::Send)
            .header("destination", "/topic/elsewhere")
            .body(format!("{n}"));
        burst.extend(
            stomp_parser::encoded_frame(&frame, stomp_parser::Version::V1_2).expect("a frame"),
        );
    }
    flooder.send_raw(&burst).await;
    let error = flooder.expect_error_then_close().await;
    assert_eq!(error.get("message"), Some("too many frames"));
    assert!(String::from_utf8_lossy(&error.body).contains("more than 20 frames in a second"));

    let mut sender = StompClient::connect(&relay, Some("sender")).await;
    sender.publish("/topic/flood", "still served").await;
    assert_eq!(bystander.recv_body().await, "still served");
}

#[tokio::test]
async fn connections_past_the_per_address_limit_get_a_503() {
    let relay = TestRelay::start_with(Mode::Embedded, &["--max-connections-per-ip", "3"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(StompClient::connect(&relay, None).await);
    }
    let refused = tokio_tungstenite::connect_async(relay.ws_url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!(
            "expected a 503, got {:?}",
            other.map(|(_, response)| response.status())
        ),
    }
    // A place freed is a place for the next connection.
    drop(open.pop());
    let mut admitted = None;
    for _ in 0..50 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(relay.ws_url()).await {
            admitted = Some(socket);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted.is_some(), "a freed place is given again");
    let mut first = open.remove(0);
    first.publish("/topic/x", "the others are served").await;
}

#[tokio::test]
async fn http_headers_trickled_in_time_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = TestRelay::start_with(Mode::Embedded, &["--connect-timeout", "1"]);
    let mut stream = tokio::net::TcpStream::connect(relay.addr)
        .await
        .expect("the relay accepts");
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("a partial request is written");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the relay closed the connection");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn only_allowed_origins_may_open_sessions() {
    let relay = TestRelay::start_with(
        Mode::Embedded,
        &[
            "--allowed-origins",
            "https://good.example, https://also.example",
        ],
    );
    let attempt = |origin: Option<&'static str>| {
        let mut request = relay.ws_url().into_client_request().expect("a request");
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("a header"));
        }
        tokio_tungstenite::connect_async(request)
    };
    assert!(attempt(Some("https://good.example")).await.is_ok());
    assert!(attempt(Some("https://also.example")).await.is_ok());
    assert!(attempt(None).await.is_ok(), "tools send no Origin");
    match attempt(Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!(
            "expected a 403, got {:?}",
            other.map(|(_, response)| response.status())
        ),
    }
    let sockjs = support::http(
        &relay,
        "GET",
        "/sockjs/info",
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert_eq!(sockjs.status, 403);
}

/// How long the relay took to close `stream` after it sent `opening`.
async fn closed_after(relay: &TestRelay, opening: &[u8]) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(relay.addr)
        .await
        .expect("the relay accepts");
    stream.write_all(opening).await.expect("written");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the relay closed the connection that sent {opening:?}"
    );
    started.elapsed()
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_after_the_connect_timeout() {
    let relay = TestRelay::start_with(Mode::Embedded, &["--connect-timeout", "1"]);
    for opening in [&b""[..], b"PRI * HTTP/2.0\r\n", b"P"] {
        let waited = closed_after(&relay, opening).await;
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{opening:?}: {waited:?}"
        );
    }
}

#[tokio::test]
async fn http_2_is_served_only_when_asked_for() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    for (flags, speaks_http2) in [(&[][..], false), (&["--http2"][..], true)] {
        let relay = TestRelay::start_with(Mode::Embedded, flags);
        let mut stream = tokio::net::TcpStream::connect(relay.addr)
            .await
            .expect("the relay accepts");
        // One write: a relay that does not speak HTTP/2 closes after the
        // preface, and a second write could then find the connection reset.
        stream
            .write_all(&[PREFACE, SETTINGS].concat())
            .await
            .expect("written");
        let mut answer = [0u8; 9];
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer)).await;
        let answered_settings = matches!(read, Ok(Ok(n)) if n >= 4 && answer[3] == 4);
        assert_eq!(answered_settings, speaks_http2, "{flags:?}: {answer:?}");
    }
}

#[tokio::test]
async fn a_websocket_message_over_the_limit_gets_an_error_then_close_1009() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let relay = TestRelay::start_with(Mode::Embedded, &["--max-frame-size", "1024"]);
    let mut bystander = StompClient::connect(&relay, None).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(relay.ws_url())
        .await
        .expect("a WebSocket");
    socket
        .send(Message::text("CONNECT\naccept-version:1.2\n\n\0"))
        .await
        .expect("sent");
    let connected = socket.next().await.expect("an answer").expect("a message");
    assert!(connected.to_text().unwrap().starts_with("CONNECTED"));
    let huge = format!("SEND\ndestination:/topic/x\n\n{}\0", "x".repeat(200_000));
    socket.send(Message::text(huge)).await.expect("sent");
    let error = socket.next().await.expect("an answer").expect("a message");
    let error = error.to_text().expect("text");
    assert!(error.starts_with("ERROR\n"), "{error}");
    assert!(error.contains("message:frame too large"), "{error}");
    assert!(error.contains("1024-byte frame limit"), "{error}");
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a close with code 1009, got {other:?}"),
    }
    bystander.publish("/topic/y", "others are served").await;
}

/// Opens a WebSocket as if forwarded for `client` by a proxy; the HTTP
/// status it was refused with, if it was.
async fn open_forwarded(
    relay: &TestRelay,
    client: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let mut request = relay.ws_url().into_client_request().expect("a request");
    request
        .headers_mut()
        .insert("x-forwarded-for", client.parse().expect("a header"));
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_count_each_forwarded_client() {
    let relay = TestRelay::start_with(
        Mode::Embedded,
        &[
            "--max-connections-per-ip",
            "1",
            "--trusted-proxies",
            "127.0.0.1",
        ],
    );
    let first = open_forwarded(&relay, "203.0.113.1")
        .await
        .expect("admitted");
    let _second = open_forwarded(&relay, "203.0.113.2")
        .await
        .expect("admitted");
    assert_eq!(open_forwarded(&relay, "203.0.113.1").await.err(), Some(503));
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(socket) = open_forwarded(&relay, "203.0.113.1").await {
            again = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a freed place is given again");
    // The API's loopback rule is for the forwarded client, not the proxy.
    let forwarded = [("x-forwarded-for", "203.0.113.9")];
    let api = support::http(&relay, "GET", "/api/v1/users", &forwarded, "").await;
    assert_eq!(api.status, 401);
    let local = support::http(&relay, "GET", "/api/v1/users", &[], "").await;
    assert_eq!(local.status, 200);
}

#[tokio::test]
async fn forwarding_headers_from_anyone_else_are_ignored() {
    let relay = TestRelay::start_with(Mode::Embedded, &["--max-connections-per-ip", "1"]);
    let _first = open_forwarded(&relay, "203.0.113.1")
        .await
        .expect("admitted");
    assert_eq!(open_forwarded(&relay, "203.0.113.2").await.err(), Some(503));
    // And with no limit set, none applies: it is off by default.
    let relay = TestRelay::start(Mode::Embedded);
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(StompClient::connect(&relay, None).await);
    }
}
