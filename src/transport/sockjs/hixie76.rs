//! The WebSocket draft of 2010 (hixie-76) on SockJS session URLs, as SockJS
//! servers still answer it: some proxies (haproxy in its old mode) and old
//! browsers speak nothing else. Its handshake hides a challenge in two
//! keys and eight bytes sent after the request; frames are text between a
//! 0x00 and a 0xFF byte.

use std::io;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{FrameSocket, Received};
use crate::transport::admission::{ForwardedTicket, Ticket};
use crate::transport::{Response, full};

/// Whether a WebSocket request is a hixie-76 one.
pub fn is_hixie76<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key("sec-websocket-key1") && headers.contains_key("sec-websocket-key2")
}

/// The number a hixie-76 key stands for: its digits divided by its spaces.
fn key_number(key: &str) -> Option<u32> {
    let digits: String = key.chars().filter(char::is_ascii_digit).collect();
    let spaces = u64::try_from(key.chars().filter(|&c| c == ' ').count()).ok()?;
    let number: u64 = digits.parse().ok()?;
    if spaces == 0 || !number.is_multiple_of(spaces) {
        return None;
    }
    u32::try_from(number / spaces).ok()
}

/// The 16 bytes that answer the handshake's challenge.
fn challenge_answer(key1: u32, key2: u32, key3: &[u8; 8]) -> [u8; 16] {
    let mut hasher = Md5::new();
    hasher.update(key1.to_be_bytes());
    hasher.update(key2.to_be_bytes());
    hasher.update(key3);
    hasher.finalize().into()
}

/// Answers a hixie-76 upgrade and, once the client's challenge bytes are
/// in and answered, runs `serve` on the connection.
pub fn accept<B, F, Fut>(mut request: Request<B>, serve: F) -> Response
where
    F: FnOnce(Hixie76Socket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let headers = request.headers();
    let key = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(key_number)
    };
    let (Some(key1), Some(key2)) = (key("sec-websocket-key1"), key("sec-websocket-key2")) else {
        let mut response = Response::new(full("invalid Sec-WebSocket-Key1 or Key2"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let origin = headers.get(header::ORIGIN).cloned();
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let location = format!("ws://{host}{}", request.uri().path());
    let ticket = request.extensions().get::<Arc<Ticket>>().cloned();
    let forwarded = request.extensions().get::<Arc<ForwardedTicket>>().cloned();
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        let mut key3 = [0u8; 8];
        if io.read_exact(&mut key3).await.is_err() {
            return;
        }
        let answer = challenge_answer(key1, key2, &key3);
        if io.write_all(&answer).await.is_err() {
            return;
        }
        serve(Hixie76Socket {
            io,
            received: Vec::new(),
        })
        .await;
        drop((ticket, forwarded));
    });

    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers: &mut HeaderMap = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Some(origin) = origin {
        headers.insert("sec-websocket-origin", origin);
    }
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert("sec-websocket-location", location);
    }
    response
}

/// A hixie-76 connection: text frames only.
pub struct Hixie76Socket {
    io: TokioIo<Upgraded>,
    /// Bytes read and not yet a whole frame; kept here rather than in a
    /// read in progress, so that a receive may be abandoned at any await.
    received: Vec<u8>,
}

/// The longest frame read; a client sending more is cut off.
const MAX_FRAME: usize = 1024 * 1024;

impl Hixie76Socket {
    /// The first whole frame received, if any; an error for bytes that are
    /// no text frame (0xFF 0x00 closes).
    fn take_frame(&mut self) -> Result<Option<String>, ()> {
        match self.received.first() {
            None => return Ok(None),
            Some(0x00) => {}
            Some(_) => return Err(()),
        }
        let Some(end) = self.received.iter().position(|&byte| byte == 0xff) else {
            return Ok(None);
        };
        let frame: Vec<u8> = self.received.drain(..=end).collect();
        String::from_utf8(frame[1..end].to_vec())
            .map(Some)
            .map_err(|_| ())
    }
}

impl FrameSocket for Hixie76Socket {
    async fn send_text(&mut self, text: String) -> io::Result<()> {
        let mut frame = Vec::with_capacity(text.len() + 2);
        frame.push(0x00);
        frame.extend_from_slice(text.as_bytes());
        frame.push(0xff);
        self.io.write_all(&frame).await
    }

    async fn receive_text(&mut self) -> Received {
        loop {
            match self.take_frame() {
                Ok(Some(text)) => return Received::Text(text),
                Ok(None) => {}
                Err(_) => return Received::Closed,
            }
            if self.received.len() > MAX_FRAME {
                return Received::Closed;
            }
            let mut chunk = [0u8; 4096];
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return Received::Closed,
                Ok(read) => self.received.extend_from_slice(&chunk[..read]),
            }
        }
    }

    async fn close(&mut self) {
        let _ = self.io.write_all(&[0xff, 0x00]).await;
        let _ = self.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_of_the_protocol_suites_haproxy_test_is_answered() {
        let key1 = key_number("4 @1  46546xW%0l 1 5").unwrap();
        let key2 = key_number("12998 5 Y3 1  .P00").unwrap();
        let expected = [
            0xca, b'4', 0x00, 0xd8, 0xa5, 0x08, b'G', 0x97, b',', 0xd5, b'q', b'Z', 0xba, 0xbf,
            b'C', b'{',
        ];
        assert_eq!(challenge_answer(key1, key2, b"aaaaaaaa"), expected);
        assert_eq!(key_number("nospaces1"), None);
    }
}
