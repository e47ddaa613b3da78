//! The raw WebSocket endpoint (`--ws-path`, `/ws` by default).
//!
//! The relay answers the upgrade itself rather than through warp's `ws`
//! filter, for two reasons. warp never answers `Sec-WebSocket-Protocol`,
//! and browsers and Node's `ws` fail the handshake when an offered
//! subprotocol is not answered. And warp cannot set tungstenite's read
//! buffer, whose 128 KiB default is zeroed on the first read: 136 KiB of
//! resident memory for every idle connection, measured, where 4 KiB does.
//!
//! STOMP clients offer `v12.stomp`, `v11.stomp` and `v10.stomp`; the highest
//! offered is answered. Clients that offer none are served too.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use stomp_parser::Version;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::admission::{ForwardedTicket, Ticket};
use super::{Response, query_parameter};

use super::connection::writer::{Closing, TransportWriter};
use super::connection::{
    self, ConnectionContext, LINGER_BYTES, LINGER_TIME, Lingering, ReceiveEnd, Transport,
    TransportClosed, TransportReader,
};
use crate::shutdown::Shutdown;

/// Room above the largest frame for the WebSocket message that carries it
/// (a message may also carry several small frames and heart-beats).
const MESSAGE_SLACK: usize = 64 * 1024;
/// Bytes read from the socket at a time; messages larger than this still
/// arrive whole, the buffer grows for them. Every connection holds this
/// much for as long as it lives, idle or not, so it is sized for the small
/// frames browsers send: a burst of them still takes a few per read.
const READ_BUFFER: usize = 1024;
/// Bytes of queued messages written in one go: the writer feeds every
/// ready frame and flushes once, so a burst costs one syscall per this much
/// rather than one per frame. An idle connection's buffer stays empty.
const WRITE_BATCH: usize = 64 * 1024;

/// True for a request that asks to become a WebSocket.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    has_token(request, header::CONNECTION, "upgrade")
        && has_token(request, header::UPGRADE, "websocket")
}

/// Whether one of the request's `name` headers lists `token` (any case).
pub fn has_token<B>(request: &Request<B>, name: header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// A WebSocket connection accepted by [`accept`].
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Answers a WebSocket upgrade request and, once the connection is
/// upgraded, serves STOMP on it.
pub fn upgrade<B>(
    request: Request<B>,
    connections: Arc<ConnectionContext>,
    shutdown: Shutdown,
) -> Response {
    let max_message = connections
        .settings
        .limits
        .max_frame_size
        .saturating_add(MESSAGE_SLACK);
    let subprotocol =
        offered_subprotocols(request.headers()).and_then(|offered| choose_subprotocol(&offered));
    let access_token = query_parameter(request.uri().query(), "access_token");
    accept(request, max_message, subprotocol, move |socket| {
        let transport = WebSocketTransport {
            socket,
            access_token,
        };
        connection::serve(transport, connections, shutdown)
    })
}

/// Answers a WebSocket upgrade request with `subprotocol` and, once the
/// connection is upgraded, runs `serve` on it (STOMP here, SockJS framing
/// in [`super::sockjs`]). Messages are limited to `max_message` bytes.
pub fn accept<B, F, Fut>(
    mut request: Request<B>,
    max_message: usize,
    subprotocol: Option<&'static str>,
    serve: F,
) -> Response
where
    F: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let headers = request.headers();
    if request.method() != Method::GET {
        return refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade must be a GET",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        let mut response = refusal(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "the WebSocket upgrade lacks Sec-WebSocket-Key",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    // The connection keeps its place among the node's connections.
    let ticket = request.extensions().get::<Arc<Ticket>>().cloned();
    let forwarded = request.extensions().get::<Arc<ForwardedTicket>>().cloned();
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_write_buffer_size(max_message.saturating_mul(2))
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve(socket).await;
                drop((ticket, forwarded));
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });

    let mut response = Response::new(super::full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(subprotocol) = subprotocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(subprotocol),
        );
    }
    response
}

fn refusal(status: StatusCode, reason: &'static str) -> Response {
    let mut response = Response::new(super::full(reason));
    *response.status_mut() = status;
    response
}

/// Every subprotocol offered, across repeated headers.
fn offered_subprotocols(headers: &HeaderMap) -> Option<String> {
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!offered.is_empty()).then(|| offered.join(","))
}

/// The highest STOMP version among the offered subprotocols.
pub fn choose_subprotocol(offered: &str) -> Option<&'static str> {
    offered
        .split(',')
        .filter_map(Version::from_subprotocol)
        .max()
        .map(Version::subprotocol)
}

/// A WebSocket as a session transport. Frames whose bytes are valid UTF-8
/// (all but those with binary bodies) go out as text messages, the others
/// as binary messages; both kinds are accepted in.
struct WebSocketTransport<S> {
    socket: WebSocketStream<S>,
    access_token: Option<String>,
}

impl<S> Transport for WebSocketTransport<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Reader = SplitStream<WebSocketStream<S>>;
    type Writer = SplitSink<WebSocketStream<S>, Message>;

    const KIND: &'static str = "websocket";

    fn split(self) -> (Self::Reader, Self::Writer) {
        let (sink, stream) = self.socket.split();
        (stream, sink)
    }

    fn access_token(&self) -> Option<String> {
        self.access_token.clone()
    }

    fn linger(reader: Self::Reader, writer: Self::Writer) -> Lingering {
        Box::pin(async move {
            let Ok(mut socket) = reader.reunite(writer) else {
                return;
            };
            drop_what_comes(socket.get_mut()).await;
        })
    }
}

/// Reads and drops what a client refused for a message too large still
/// sends, for [`LINGER_TIME`] and [`LINGER_BYTES`] at most: past that
/// message the bytes are no WebSocket frames the parser could read.
pub async fn drop_what_comes(io: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut sink = [0u8; 8 * 1024];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(read) => left = left.saturating_sub(read),
            }
        }
    })
    .await;
}

impl<S> TransportReader for SplitStream<WebSocketStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    async fn receive(&mut self) -> Result<Bytes, ReceiveEnd> {
        loop {
            let message = match self.next().await {
                Some(Ok(message)) => message,
                Some(Err(WsError::Capacity(_))) => return Err(ReceiveEnd::TooLarge),
                Some(Err(_)) | None => return Err(ReceiveEnd::Closed),
            };
            match message {
                Message::Text(text) => return Ok(Bytes::from(text)),
                Message::Binary(bytes) => return Ok(bytes),
                Message::Close(_) => return Err(ReceiveEnd::Closed),
                // Pings are answered by tungstenite; pongs need nothing.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

impl<S> TransportWriter for SplitSink<WebSocketStream<S>, Message>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    async fn send(&mut self, frames: Vec<Bytes>) -> Result<(), TransportClosed> {
        // Each frame is one WebSocket message; they are written together.
        for frame in frames {
            let message = match String::from_utf8(Vec::from(frame)) {
                Ok(text) => Message::text(text),
                Err(binary) => Message::binary(binary.into_bytes()),
            };
            self.feed(message).await.map_err(|_| TransportClosed)?;
        }
        self.flush().await.map_err(|_| TransportClosed)
    }

    async fn close(&mut self, why: Closing) {
        if why == Closing::TooLarge {
            let frame = CloseFrame {
                code: CloseCode::Size,
                reason: "message too large".into(),
            };
            let _ = SinkExt::send(self, Message::Close(Some(frame))).await;
        }
        let _ = SinkExt::close(self).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_stomp_subprotocol_offered_is_chosen() {
        assert_eq!(
            choose_subprotocol("v10.stomp, v11.stomp, v12.stomp"),
            Some("v12.stomp")
        );
        assert_eq!(choose_subprotocol("v11.stomp,v10.stomp"), Some("v11.stomp"));
        assert_eq!(choose_subprotocol("mqtt, v10.stomp"), Some("v10.stomp"));
        assert_eq!(choose_subprotocol("mqtt"), None);
    }

    #[test]
    fn upgrade_requests_are_recognised() {
        let request = Request::get("/ws")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(is_upgrade(&request));
        let plain = Request::get("/ws").body(()).unwrap();
        assert!(!is_upgrade(&plain));
    }
}
