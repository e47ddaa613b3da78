//! Sessions over a WebSocket (`/{server}/{session}/websocket`, with SockJS
//! framing, on RFC 6455 or [`super::hixie76`]), and the raw WebSocket at
//! `/websocket` (no SockJS framing: STOMP as on `--ws-path`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, header};

use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::reply::{method_not_allowed, not_found, text};
use super::session::Session;
use super::{Application, Context, frame, hixie76};
use crate::transport::websocket::{self, Socket};
use crate::transport::{RequestBody, Response, query_parameter};

impl Context<'_> {
    pub(super) fn raw_websocket(&self, request: Request<RequestBody>) -> Response {
        if !self.settings().websocket {
            return not_found();
        }
        if let Some(refusal) = websocket_refusal(&request) {
            return refusal;
        }
        match self.settings().application {
            Application::Stomp => {
                websocket::upgrade(request, self.connections.clone(), self.shutdown.clone())
            }
            #[cfg(feature = "sockjs-protocol-test")]
            application => {
                websocket::accept(request, self.settings().max_send, None, move |socket| {
                    super::protocol_test::raw_service(socket, application)
                })
            }
        }
    }
    /// `/{server}/{session}/websocket`: a session of its own, carried by
    /// one WebSocket, with SockJS framing.
    pub(super) fn session_websocket(&self, request: Request<RequestBody>) -> Response {
        if !self.settings().websocket {
            return not_found();
        }
        if let Some(refusal) = websocket_refusal(&request) {
            return refusal;
        }
        let (session, channel) = Session::open(self.settings().application.echoes(), None);
        let access_token = query_parameter(request.uri().query(), "access_token");
        self.start_application(channel.with_access_token(access_token));
        let heartbeat = self.settings().heartbeat;
        if hixie76::is_hixie76(&request) {
            return hixie76::accept(request, move |socket| {
                carry_session(socket, session, heartbeat)
            });
        }
        websocket::accept(request, self.settings().max_send, None, move |socket| {
            carry_session(socket, session, heartbeat)
        })
    }
}

/// A connection that carries text frames: a WebSocket, or its 2010 draft.
pub trait FrameSocket: Send {
    fn send_text(&mut self, text: String) -> impl Future<Output = std::io::Result<()>> + Send;

    /// The next text frame, or why there is none.
    fn receive_text(&mut self) -> impl Future<Output = Received> + Send;

    fn close(&mut self) -> impl Future<Output = ()> + Send;

    /// After the close that refused a frame too large: reads and drops
    /// what the client still sends, for a while, so that the ERROR and the
    /// close reach it rather than a reset connection.
    fn linger(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// What a [`FrameSocket`] received.
pub enum Received {
    Text(String),
    /// A frame over the size limit, refused at its header.
    TooLarge,
    /// The connection is closed or broken.
    Closed,
}

impl FrameSocket for Socket {
    async fn send_text(&mut self, text: String) -> std::io::Result<()> {
        self.send(Message::text(text))
            .await
            .map_err(std::io::Error::other)
    }

    async fn receive_text(&mut self) -> Received {
        loop {
            match self.next().await {
                Some(Ok(Message::Text(text))) => return Received::Text(text.as_str().to_owned()),
                Some(Err(WsError::Capacity(_))) => return Received::TooLarge,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Received::Closed,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn close(&mut self) {
        if SinkExt::close(self).await.is_ok() {
            await_close_reply(self).await;
        }
    }

    async fn linger(&mut self) {
        let _ = SinkExt::close(self).await;
        websocket::drop_what_comes(self.get_mut()).await;
    }
}

/// After sending a close frame, waits (briefly) for the client's before
/// the TCP close, so that the client reads the code and reason rather than
/// a reset connection.
pub(super) async fn await_close_reply(socket: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_PATIENCE, async {
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                return;
            }
        }
    })
    .await;
}

/// How long a closing WebSocket waits for the client's close frame.
const CLOSE_PATIENCE: Duration = Duration::from_secs(1);

/// Runs a SockJS session over a WebSocket: `o`, then frames both ways; a
/// message that is not a JSON array of strings ends it.
async fn carry_session(mut socket: impl FrameSocket, session: Arc<Session>, heartbeat: Duration) {
    if socket.send_text(frame::OPEN.to_owned()).await.is_err() {
        session.close(frame::INTERRUPTED);
        return;
    }
    // Cleared once the client sent a frame too large: the session then
    // says why and closes, and what the client still sends is dropped.
    let mut reading = true;
    loop {
        tokio::select! {
            (frame, last) = session.next_frame(heartbeat) => {
                if socket.send_text(frame).await.is_err() {
                    session.close(frame::INTERRUPTED);
                    return;
                }
                if last {
                    if reading {
                        socket.close().await;
                    } else {
                        socket.linger().await;
                    }
                    return;
                }
            }
            text = socket.receive_text(), if reading => match text {
                Received::Text(text) if text.is_empty() => {}
                Received::Text(text) => match frame::decode_messages(text.as_bytes()) {
                    Ok(messages) => {
                        session.receive_from_client(messages).await;
                    }
                    Err(_) => {
                        session.close(frame::INTERRUPTED);
                        socket.close().await;
                        return;
                    }
                },
                Received::TooLarge => {
                    session.refuse_too_large();
                    reading = false;
                }
                Received::Closed => {
                    session.close(frame::INTERRUPTED);
                    return;
                }
            },
        }
    }
}

/// Why a request to a WebSocket path cannot be upgraded, as SockJS servers
/// answer it.
fn websocket_refusal<B>(request: &Request<B>) -> Option<Response> {
    if request.method() != Method::GET {
        return Some(method_not_allowed("GET"));
    }
    let reason = if !websocket::has_token(request, header::UPGRADE, "websocket") {
        "Can \"Upgrade\" only to \"WebSocket\"."
    } else if !websocket::has_token(request, header::CONNECTION, "upgrade") {
        "\"Connection\" must be \"Upgrade\"."
    } else {
        return None;
    };
    Some(text(
        StatusCode::BAD_REQUEST,
        "text/plain; charset=UTF-8",
        reason,
    ))
}
