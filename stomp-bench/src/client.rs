//! A lean STOMP 1.2 client over WebSocket: it connects from one of several
//! loopback source addresses, speaks only the frames a benchmark needs, and
//! reads deliveries by counting frames rather than parsing them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};

use crate::destination::ServerKind;
use crate::error::BenchError;
use crate::frames::{self, FrameScanner};
use crate::stamp::{self, RunClock};

/// The STOMP subprotocol offered in the WebSocket handshake.
const SUBPROTOCOL: &str = "v12.stomp";

/// The local addresses connections are spread over. One source address has
/// about 28 000 ephemeral ports, and a closed connection keeps its port in
/// TIME_WAIT for a minute, so runs of 15 000 sessions after one another
/// need several: Linux answers on all of 127.0.0.0/8.
#[derive(Debug)]
struct SourceAddresses {
    count: u8,
    next: AtomicUsize,
}

impl SourceAddresses {
    /// The address the next connection binds to, or none when the server
    /// is not on loopback (then the kernel picks, as usual).
    fn next_for(&self, server: SocketAddr) -> Option<SocketAddr> {
        if !server.ip().is_loopback() || !server.is_ipv4() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) % usize::from(self.count);
        let last = u8::try_from(n + 1).unwrap_or(1);
        Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))
    }
}

/// The server a run drives and how its clients log in.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: ServerKind,
    pub url: String,
    addr: SocketAddr,
    login: String,
    passcode: Option<String>,
    host: String,
    sources: Arc<SourceAddresses>,
}

/// How a target is reached, as the command line gives it.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    pub url: String,
    pub server: ServerKind,
    pub login: String,
    pub passcode: Option<String>,
    pub host: String,
    pub source_addresses: u8,
}

impl Target {
    pub async fn resolve(options: &TargetOptions) -> Result<Target, BenchError> {
        let bad_url = || BenchError::BadUrl {
            url: options.url.clone(),
        };
        let uri: Uri = options.url.parse().map_err(|_| bad_url())?;
        if uri.scheme_str() != Some("ws") {
            return Err(bad_url());
        }
        let host = uri.host().ok_or_else(bad_url)?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| BenchError::Connect {
                what: options.url.clone(),
                source,
            })?
            .next()
            .ok_or_else(bad_url)?;
        Ok(Target {
            server: options.server,
            url: options.url.clone(),
            addr,
            login: options.login.clone(),
            passcode: options.passcode.clone(),
            host: options.host.clone(),
            sources: Arc::new(SourceAddresses {
                count: options.source_addresses.max(1),
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// The HTTP origin of a `ws://host:port/...` URL (for the relay's API).
    pub fn http_origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A STOMP session logged in as `login` (the target's `--login` when
    /// none), CONNECTED already read.
    pub async fn open(&self, login: Option<&str>) -> Result<StompClient, BenchError> {
        let socket = match self.sources.next_for(self.addr) {
            Some(source) => {
                let socket = TcpSocket::new_v4().map_err(|e| self.connect_error(e))?;
                socket.bind(source).map_err(|e| self.connect_error(e))?;
                socket
            }
            None if self.addr.is_ipv4() => {
                TcpSocket::new_v4().map_err(|e| self.connect_error(e))?
            }
            None => TcpSocket::new_v6().map_err(|e| self.connect_error(e))?,
        };
        let stream = socket
            .connect(self.addr)
            .await
            .map_err(|e| self.connect_error(e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| self.connect_error(e))?;
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(BenchError::Handshake)?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(BenchError::Handshake)?;
        let mut client = StompClient {
            socket,
            scanner: FrameScanner::default(),
        };
        let login = login.unwrap_or(&self.login);
        let passcode = self
            .passcode
            .as_deref()
            .map_or(String::new(), |passcode| format!("passcode:{passcode}\n"));
        client
            .send(format!(
                "CONNECT\naccept-version:1.2\nhost:{}\nheart-beat:0,0\nlogin:{login}\n{passcode}\n\0",
                self.host
            ))
            .await?;
        client.expect("CONNECTED").await?;
        Ok(client)
    }

    fn connect_error(&self, source: std::io::Error) -> BenchError {
        BenchError::Connect {
            what: self.url.clone(),
            source,
        }
    }
}

/// How a subscriber acknowledges what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    Auto,
    /// Cumulative ACKs, one every [`ACK_EVERY`] messages.
    Client,
}

/// Client acks are sent cumulatively every this many messages.
pub const ACK_EVERY: usize = 50;

impl AckMode {
    fn header(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
        }
    }
}

/// What one receiver saw: a latency per stamped message, and when the last
/// of them arrived.
#[derive(Debug, Default)]
pub struct Arrivals {
    pub latencies_ns: Vec<u64>,
    pub last: Option<Instant>,
}

/// One connected STOMP session.
pub struct StompClient {
    socket: WebSocketStream<TcpStream>,
    scanner: FrameScanner,
}

impl StompClient {
    /// Sends one frame now.
    pub async fn send(&mut self, frame: String) -> Result<(), BenchError> {
        Ok(self.socket.send(Message::text(frame)).await?)
    }

    /// Queues one frame; [`StompClient::flush`] writes what is queued.
    pub async fn feed(&mut self, frame: String) -> Result<(), BenchError> {
        Ok(self.socket.feed(Message::text(frame)).await?)
    }

    pub async fn flush(&mut self) -> Result<(), BenchError> {
        Ok(self.socket.flush().await?)
    }

    /// Subscribes to `destination` and waits for the receipt.
    pub async fn subscribe(
        &mut self,
        destination: &str,
        ack: AckMode,
        extra_headers: &str,
    ) -> Result<(), BenchError> {
        self.send(format!(
            "SUBSCRIBE\nid:0\ndestination:{destination}\nack:{}\n{extra_headers}receipt:s\n\n\0",
            ack.header()
        ))
        .await?;
        self.expect("RECEIPT").await
    }

    /// Reads one frame and checks that it is a `command`; an ERROR is
    /// returned with its message.
    async fn expect(&mut self, command: &'static str) -> Result<(), BenchError> {
        loop {
            let data = self.next_message(command).await?;
            let mut first: Option<Result<(), BenchError>> = None;
            self.scanner.push(&data, |frame| {
                if first.is_none() {
                    first = Some(check_command(frame, command));
                }
            });
            if let Some(outcome) = first {
                return outcome;
            }
        }
    }

    /// The next WebSocket message's bytes.
    async fn next_message(
        &mut self,
        waiting_for: &'static str,
    ) -> Result<bytes::Bytes, BenchError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.into()),
                Some(Ok(Message::Binary(data))) => return Ok(data),
                Some(Ok(Message::Close(_))) | None => {
                    return Err(BenchError::Closed { waiting_for });
                }
                // Pings are answered by tungstenite on the next read.
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(error.into()),
            }
        }
    }

    /// Reads `expected` MESSAGEs, noting each one's latency by `clock` and,
    /// with client acks, acknowledging cumulatively.
    pub async fn receive(
        &mut self,
        expected: usize,
        clock: RunClock,
        ack: AckMode,
    ) -> Result<Arrivals, BenchError> {
        let mut arrivals = Arrivals {
            latencies_ns: Vec::with_capacity(expected),
            last: None,
        };
        let mut seen = 0;
        let mut acked = 0;
        while seen < expected {
            let data = self.next_message("MESSAGE").await?;
            let now = clock.now();
            let mut refused = None;
            let mut last_ack_id = None;
            seen += self.scanner.push(&data, |frame| {
                if frames::command(frame) == b"ERROR" {
                    refused = Some(error_text(frame));
                    return;
                }
                if let Some(sent) = stamp::decode(frames::body(frame)) {
                    arrivals.latencies_ns.push(now.saturating_sub(sent));
                }
                if ack == AckMode::Client {
                    last_ack_id = frames::header(frame, "ack").map(str::to_owned);
                }
            });
            if let Some(refused) = refused {
                return Err(BenchError::Refused(refused));
            }
            // Cumulative: one ACK covers every message before it, so one
            // per WebSocket message that crosses a multiple of ACK_EVERY.
            if let Some(id) = last_ack_id
                && (seen / ACK_EVERY > acked / ACK_EVERY || seen >= expected)
            {
                self.send(format!("ACK\nid:{id}\n\n\0")).await?;
                acked = seen;
            }
        }
        arrivals.last = Some(Instant::now());
        Ok(arrivals)
    }

    /// Reads until the server sends an ERROR or closes the connection: a
    /// sender that writes and never reads would not notice otherwise.
    pub async fn until_refused(&mut self) -> BenchError {
        loop {
            let data = match self
                .next_message("the end of the run (a sender stays connected until then)")
                .await
            {
                Ok(data) => data,
                Err(error) => return error,
            };
            let mut refused = None;
            self.scanner.push(&data, |frame| {
                if frames::command(frame) == b"ERROR" {
                    refused = Some(error_text(frame));
                }
            });
            if let Some(refused) = refused {
                return BenchError::Refused(refused);
            }
        }
    }

    /// Ends the session without waiting for the server.
    pub async fn close(mut self, patience: Duration) {
        let _ = tokio::time::timeout(patience, self.socket.close(None)).await;
    }
}

fn check_command(frame: &[u8], command: &'static str) -> Result<(), BenchError> {
    match frames::command(frame) {
        found if found == command.as_bytes() => Ok(()),
        b"ERROR" => Err(BenchError::Refused(error_text(frame))),
        other => Err(BenchError::Refused(format!(
            "expected {command}, got {}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// What an ERROR frame says: its `message` header and its body.
fn error_text(frame: &[u8]) -> String {
    let message = frames::header(frame, "message").unwrap_or("");
    let body = String::from_utf8_lossy(frames::body(frame));
    format!("{message} {}", body.trim()).trim().to_owned()
}
