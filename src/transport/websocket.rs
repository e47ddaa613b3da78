//! The raw WebSocket endpoint (`--ws-path`, `/ws` by default).
//!
//! STOMP clients offer the subprotocols `v12.stomp`, `v11.stomp` and
//! `v10.stomp`. warp never answers `Sec-WebSocket-Protocol` on its own, and
//! browsers and Node's `ws` fail the handshake when an offered subprotocol is
//! not answered, so the route picks the highest STOMP one offered and adds
//! the header itself. Clients that offer none are served too.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use stomp_parser::Version;
use warp::filters::BoxedFilter;
use warp::ws::{Message, WebSocket, Ws};
use warp::{Filter, Reply};

use crate::relay::Relay;
use crate::session::connection::{self, Transport, TransportClosed};
use crate::shutdown::Shutdown;

/// Room above the largest frame for the WebSocket message that carries it
/// (a message may also carry several small frames and heart-beats).
const MESSAGE_SLACK: usize = 64 * 1024;

/// The route serving STOMP over WebSocket at `path`.
pub fn route(path: &str, relay: Arc<Relay>, shutdown: Shutdown) -> BoxedFilter<(Box<dyn Reply>,)> {
    let path = path.to_owned();
    let max_message = relay
        .settings
        .limits
        .max_frame_size
        .saturating_add(MESSAGE_SLACK);
    warp::path::full()
        .and_then(move |full: warp::path::FullPath| {
            let matches = full.as_str() == path;
            async move {
                if matches {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one()
        .and(warp::ws())
        .and(warp::header::optional::<String>("sec-websocket-protocol"))
        .map(move |ws: Ws, offered: Option<String>| {
            let relay = relay.clone();
            let shutdown = shutdown.clone();
            let upgrade = ws
                .max_message_size(max_message)
                .max_frame_size(max_message)
                .on_upgrade(move |socket| {
                    connection::serve(WebSocketTransport { socket }, relay, shutdown)
                });
            match offered.as_deref().and_then(choose_subprotocol) {
                Some(chosen) => Box::new(warp::reply::with_header(
                    upgrade,
                    "sec-websocket-protocol",
                    chosen,
                )) as Box<dyn Reply>,
                None => Box::new(upgrade),
            }
        })
        .boxed()
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
struct WebSocketTransport {
    socket: WebSocket,
}

impl Transport for WebSocketTransport {
    async fn receive(&mut self) -> Option<Bytes> {
        loop {
            let message = self.socket.next().await?.ok()?;
            if message.is_text() || message.is_binary() {
                return Some(message.into_bytes());
            }
            if message.is_close() {
                return None;
            }
            // Pings are answered by the WebSocket layer; pongs need nothing.
        }
    }

    async fn send(&mut self, bytes: Bytes) -> Result<(), TransportClosed> {
        let message = match String::from_utf8(Vec::from(bytes)) {
            Ok(text) => Message::text(text),
            Err(binary) => Message::binary(binary.into_bytes()),
        };
        self.socket.send(message).await.map_err(|_| TransportClosed)
    }

    async fn close(&mut self) {
        let _ = SinkExt::close(&mut self.socket).await;
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
}
