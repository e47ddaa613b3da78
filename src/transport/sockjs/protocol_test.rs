//! The echo services SockJS conformance suites (ours,
//! `tests/js/sockjs-protocol.test.mjs`, and the protocol's own) expect beside
//! an endpoint: `/echo`, `/disabled_websocket_echo`,
//! `/cookie_needed_echo` and `/close`. They exist only in builds with the
//! `sockjs-protocol-test` feature, mounted by `--sockjs-protocol-test`
//! (`tests/it/sockjs_protocol.rs` runs the suite against them): a production
//! relay has no echo service for anyone to find.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::websocket::await_close_reply;
use super::{Application, EndpointSettings, frame};
use crate::transport::websocket::Socket;

impl EndpointSettings {
    /// The four services the suites expect, with their 4096-byte
    /// streaming limit.
    pub fn protocol_test_services() -> Vec<EndpointSettings> {
        let service = |prefix: &str, application| EndpointSettings {
            response_limit: 4096,
            ..EndpointSettings::new(prefix, application)
        };
        vec![
            service("/echo", Application::Echo),
            EndpointSettings {
                websocket: false,
                ..service("/disabled_websocket_echo", Application::Echo)
            },
            EndpointSettings {
                cookie_needed: true,
                ..service("/cookie_needed_echo", Application::Echo)
            },
            service("/close", Application::Close),
        ]
    }
}

/// The test suite's services on a raw WebSocket: `echo` sends back
/// every message, `close` closes at once.
pub(super) async fn raw_service(mut socket: Socket, application: Application) {
    if application == Application::Close {
        let close = CloseFrame {
            code: CloseCode::from(frame::GO_AWAY.code),
            reason: frame::GO_AWAY.reason.into(),
        };
        if socket.close(Some(close)).await.is_ok() {
            await_close_reply(&mut socket).await;
        }
        return;
    }
    while let Some(Ok(message)) = socket.next().await {
        if message.is_close() {
            return;
        }
        let echoed = message.is_text() || message.is_binary();
        if echoed && socket.send(message).await.is_err() {
            return;
        }
    }
}
