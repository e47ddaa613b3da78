//! What the integration tests share: a relay node started for one test, and
//! a STOMP client over a real WebSocket (tokio-tungstenite).
//!
//! The same tests run against cluster mode by changing how [`TestRelay`]
//! starts the node ([`Mode`]), not the tests (`scenario_tests!` in
//! `main.rs`). Cluster mode needs RabbitMQ on 127.0.0.1:5672 and Redis on
//! 127.0.0.1:6379 and fails without them. Every test that runs relays on
//! that RabbitMQ waits for its [`SharedTurn`], since a `/topic/#`
//! subscriber there sees every test's messages; each relay uses its own
//! node id and Redis prefix, and deletes the shared queues it named when it
//! stops.

pub mod credentials;
pub mod node_process;
pub mod own_services;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use stomp_parser::{Command, Decoded, Frame, FrameDecoder, Limits, Version, encoded_frame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use stomp_relay::config::Config;
use stomp_relay::server::BoundServer;

/// How long a test waits for something it expects.
pub const PATIENCE: Duration = Duration::from_secs(5);
/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// RabbitMQ and Redis as the tests find them on this machine.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How a test's relay keeps messages and presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Cluster,
}

/// Whether a test holds the [`SharedTurn`].
static SHARED_BUSY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A test's turn at the shared RabbitMQ (see the module documentation):
/// taken by a cluster-mode [`TestRelay`] and a [`node_process::Cluster`]
/// themselves, and by a test that starts relay processes there by hand.
/// `Send`, unlike a mutex guard, so that a test may stop its relay from
/// another thread.
pub struct SharedTurn;

impl SharedTurn {
    /// Waits until no other test holds the turn.
    pub fn take() -> SharedTurn {
        use std::sync::atomic::Ordering;
        while SHARED_BUSY.swap(true, Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
        SharedTurn
    }
}

impl Drop for SharedTurn {
    fn drop(&mut self) {
        SHARED_BUSY.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// A relay node running on its own thread and runtime, listening on a free
/// loopback port. Stopped (gracefully) when dropped.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub mode: Mode,
    /// Unique per relay: suffix of its queue names, part of its Redis
    /// prefix, and of its node id (`test-{id}`).
    pub id: String,
    pub redis_prefix: String,
    queues: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _turn: Option<SharedTurn>,
}

impl TestRelay {
    pub fn start(mode: Mode) -> TestRelay {
        TestRelay::start_with(mode, &[])
    }

    /// Starts a node with extra command-line flags.
    pub fn start_with(mode: Mode, flags: &[&str]) -> TestRelay {
        let turn = (mode == Mode::Cluster).then(SharedTurn::take);
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let redis_prefix = format!("test:{id}:");
        TestRelay::launch(mode, flags, id, redis_prefix, turn)
    }

    /// The routing key of `session`'s user destination `name` on this node,
    /// as a service publishes to it (docs/clients.md).
    pub fn session_key(&self, session: &str, name: &str) -> String {
        format!("stomp.test-{}.{session}.{name}", self.id)
    }

    /// A second cluster node beside `first`: same RabbitMQ, same Redis
    /// prefix, its own node id.
    pub fn start_beside(first: &TestRelay) -> TestRelay {
        TestRelay::start_beside_with(first, &[])
    }

    /// [`TestRelay::start_beside`] with extra command-line flags.
    pub fn start_beside_with(first: &TestRelay, flags: &[&str]) -> TestRelay {
        assert_eq!(
            first.mode,
            Mode::Cluster,
            "only cluster nodes have neighbours"
        );
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        TestRelay::launch(Mode::Cluster, flags, id, first.redis_prefix.clone(), None)
    }

    fn launch(
        mode: Mode,
        flags: &[&str],
        id: String,
        redis_prefix: String,
        turn: Option<SharedTurn>,
    ) -> TestRelay {
        // RUST_LOG=debug shows the relay's log in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let node_id = format!("test-{id}");
        let mut args = vec![
            "stomp-relay",
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            &node_id,
        ];
        if mode == Mode::Cluster {
            args.extend_from_slice(&[
                "--amqp-url",
                AMQP_URL,
                "--redis-url",
                REDIS_URL,
                "--redis-prefix",
                &redis_prefix,
            ]);
        }
        // A test stops its node with clients still connected: told at once,
        // unless the test is about the drain.
        if !flags.contains(&"--drain-period") {
            args.extend_from_slice(&["--drain-period", "0"]);
        }
        args.extend_from_slice(flags);
        let config = Config::from_args(args).expect("the test's flags are valid");
        let queues = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let to_delete = queues.clone();
        // The first node of a test's cluster cleans its Redis prefix up.
        let owned_prefix = (mode == Mode::Cluster && turn.is_some()).then(|| redis_prefix.clone());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the relay");
            runtime.block_on(async move {
                let server = match BoundServer::bind(config).await {
                    Ok(server) => server,
                    Err(error) => panic!("the relay cannot start: {error}"),
                };
                addr_tx
                    .send(server.local_addr().expect("an address"))
                    .expect("the test waits");
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await;
                if mode == Mode::Cluster {
                    let names = to_delete
                        .lock()
                        .map(|names| names.clone())
                        .unwrap_or_default();
                    delete_queues(&names).await;
                }
                if let Some(prefix) = owned_prefix {
                    delete_redis_keys(&prefix).await;
                }
            });
        });
        let addr = addr_rx.recv_timeout(PATIENCE).expect("the relay started");
        TestRelay {
            addr,
            mode,
            id,
            redis_prefix,
            queues,
            stop: Some(stop),
            thread: Some(thread),
            _turn: turn,
        }
    }

    /// `/queue/{name}.{id}`: a shared queue of this test only, deleted when
    /// the relay stops.
    pub fn queue(&self, name: &str) -> String {
        let unique = format!("{name}.{}", self.id);
        if let Ok(mut queues) = self.queues.lock() {
            queues.push(unique.clone());
        }
        format!("/queue/{unique}")
    }

    /// Stops the node as SIGTERM would, and waits until it has.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where a relay node listens, whether it runs in the test's process
/// ([`TestRelay`]) or in its own ([`node_process::NodeProcess`]).
pub trait RelayAddress {
    fn addr(&self) -> SocketAddr;

    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr())
    }
}

/// A node's address alone, for a task that outlives the borrow of its
/// [`TestRelay`].
impl RelayAddress for SocketAddr {
    fn addr(&self) -> SocketAddr {
        *self
    }
}

impl RelayAddress for TestRelay {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tests/js`, with its locked npm packages installed (`npm ci`) when they
/// are missing.
pub fn js_packages() -> std::path::PathBuf {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !js.join("node_modules/sockjs-client").is_dir() {
        let installed = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&js)
            .status()
            .expect("npm runs (install Node.js 20 or later)");
        assert!(installed.success(), "`npm ci` in tests/js failed");
    }
    js
}

/// Runs one `node --test` file of `tests/js` with `env`, and fails the test
/// unless every Node test passed.
pub fn run_node_tests(file: &str, env: &[(&str, String)]) {
    let js = js_packages();
    let output = std::process::Command::new("node")
        .args(["--test", "--test-concurrency=1", file])
        .current_dir(&js)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .output()
        .expect("node runs (install Node.js 20 or later)");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{file} failed:\n{report}");
    assert!(report.contains("# fail 0"), "{report}");
}

/// Deletes every Redis key under a test's prefix (kept messages and the
/// like, which outlive the sessions).
pub async fn delete_redis_keys(prefix: &str) {
    let Ok(client) = redis::Client::open(REDIS_URL) else {
        return;
    };
    let Ok(mut redis) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await;
    }
}

/// A connection to RabbitMQ as a service would open one, and a channel in
/// confirm mode.
pub async fn amqp() -> (lapin::Connection, lapin::Channel) {
    amqp_at(AMQP_URL).await
}

/// [`amqp`] to the RabbitMQ at `url` (one of a test's own).
pub async fn amqp_at(url: &str) -> (lapin::Connection, lapin::Channel) {
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("RabbitMQ answers at {url}: {error}"));
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    (connection, channel)
}

/// Publishes with the mandatory flag and waits for the confirm; true when
/// RabbitMQ found a queue for it.
pub async fn publish_mandatory(
    channel: &lapin::Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    properties: lapin::BasicProperties,
) -> bool {
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            key.into(),
            lapin::options::BasicPublishOptions {
                mandatory: true,
                ..lapin::options::BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    confirmation.take_message().is_none()
}

/// Whether RabbitMQ has the queue `name` (exclusive to another connection
/// or not).
pub async fn queue_exists(name: &str) -> bool {
    let (connection, channel) = amqp().await;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..lapin::options::QueueDeclareOptions::default()
    };
    // An exclusive queue of another connection answers RESOURCE_LOCKED.
    let exists = match channel
        .queue_declare(name.into(), passive, lapin::types::FieldTable::default())
        .await
    {
        Ok(_) => true,
        Err(error) => error.to_string().contains("RESOURCE_LOCKED"),
    };
    let _ = connection.close(200, "checked".into()).await;
    exists
}

/// Deletes durable queues a test made RabbitMQ keep.
pub async fn delete_queues(names: &[String]) {
    use lapin::options::QueueDeleteOptions;
    if names.is_empty() {
        return;
    }
    let connection = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ answers");
    let channel = connection.create_channel().await.expect("a channel");
    for name in names {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "test cleanup".into()).await;
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A STOMP client over a real WebSocket.
pub struct StompClient {
    socket: Socket,
    decoder: FrameDecoder,
    version: Version,
    /// The subprotocol the server answered, if any.
    pub subprotocol: Option<String>,
    /// Whether the last message received was binary.
    pub last_was_binary: bool,
    /// MESSAGEs that arrived while a RECEIPT was awaited: STOMP does not
    /// order a RECEIPT before the messages its SEND causes.
    early: std::collections::VecDeque<Frame>,
}

impl StompClient {
    /// Opens the WebSocket, offering every STOMP subprotocol; no CONNECT yet.
    pub async fn open(relay: &impl RelayAddress) -> StompClient {
        StompClient::open_offering(relay, Some("v10.stomp, v11.stomp, v12.stomp")).await
    }

    pub async fn open_offering(
        relay: &impl RelayAddress,
        subprotocols: Option<&str>,
    ) -> StompClient {
        StompClient::open_url(&relay.ws_url(), subprotocols).await
    }

    /// Opens the WebSocket at `url` (a query such as `?access_token=`
    /// included), offering `subprotocols`; no CONNECT yet.
    pub async fn open_url(url: &str, subprotocols: Option<&str>) -> StompClient {
        let mut request = url.into_client_request().expect("a valid URL");
        if let Some(offered) = subprotocols {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                offered.parse().expect("a header value"),
            );
        }
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket handshake succeeds");
        let subprotocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        StompClient {
            socket,
            decoder: FrameDecoder::new(Limits::UNLIMITED),
            version: Version::V1_2,
            subprotocol,
            last_was_binary: false,
            early: Default::default(),
        }
    }

    /// Opens and CONNECTs with STOMP 1.2 as `login` (anonymous with `None`).
    pub async fn connect(relay: &impl RelayAddress, login: Option<&str>) -> StompClient {
        let mut client = StompClient::open(relay).await;
        let mut connect = Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", "localhost")
            .header("heart-beat", "0,0");
        if let Some(login) = login {
            connect = connect.header("login", login).header("passcode", "secret");
        }
        client.send(connect).await;
        let connected = client.recv().await;
        assert_eq!(connected.command, Command::Connected, "{connected:?}");
        client
    }

    /// Opens and CONNECTs with `login` and `passcode`.
    pub async fn connect_with_login(
        relay: &impl RelayAddress,
        login: &str,
        passcode: &str,
    ) -> StompClient {
        let mut client = StompClient::open(relay).await;
        let connect = Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("login", login)
            .header("passcode", passcode);
        client.send(connect).await;
        let connected = client.recv().await;
        assert_eq!(connected.command, Command::Connected, "{connected:?}");
        client
    }

    /// [`StompClient::connect`], also answering the session id CONNECTED
    /// gave.
    /// Connected as `login` (with `passcode`), and the session id.
    pub async fn connect_with_session(
        relay: &impl RelayAddress,
        login: &str,
        passcode: &str,
    ) -> (StompClient, String) {
        let mut client = StompClient::open(relay).await;
        client
            .send(
                Frame::new(Command::Connect)
                    .header("accept-version", "1.2")
                    .header("login", login)
                    .header("passcode", passcode),
            )
            .await;
        let connected = client.recv().await;
        let session = connected.get("session").expect("a session id").to_owned();
        (client, session)
    }

    pub fn set_version(&mut self, version: Version) {
        self.version = version;
        self.decoder.set_version(version);
    }

    pub async fn send(&mut self, frame: Frame) {
        let bytes = encoded_frame(&frame, self.version).expect("a representable frame");
        self.send_raw(&bytes).await;
    }

    /// Sends bytes as one text message (or binary, when not UTF-8).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let message = match std::str::from_utf8(bytes) {
            Ok(text) => Message::text(text),
            Err(_) => Message::binary(Bytes::copy_from_slice(bytes)),
        };
        self.socket
            .send(message)
            .await
            .expect("the relay accepts the message");
    }

    /// The next frame, skipping heart-beats; fails the test after
    /// [`PATIENCE`].
    pub async fn recv(&mut self) -> Frame {
        match self.recv_within(PATIENCE).await {
            Some(frame) => frame,
            None => panic!("no frame within {PATIENCE:?}"),
        }
    }

    /// The next frame within `patience`, or `None` (timeout or closed).
    pub async fn recv_within(&mut self, patience: Duration) -> Option<Frame> {
        tokio::time::timeout(patience, self.next_frame())
            .await
            .ok()
            .flatten()
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        if let Some(frame) = self.early.pop_front() {
            return Some(frame);
        }
        loop {
            match self
                .decoder
                .decode()
                .expect("the relay sends well-formed frames")
            {
                Some(Decoded::Frame(frame)) => return Some(frame),
                Some(Decoded::HeartBeat) => continue,
                None => {}
            }
            match self.socket.next().await? {
                Ok(message) if message.is_text() || message.is_binary() => {
                    self.last_was_binary = message.is_binary();
                    self.decoder.push(message.into_data());
                }
                Ok(message) if message.is_close() => return None,
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The next heart-beat or frame, as raw: true for a heart-beat.
    pub async fn recv_heart_beat(&mut self, patience: Duration) -> bool {
        let wait = async {
            loop {
                if let Some(item) = self.decoder.decode().expect("well-formed") {
                    return item == Decoded::HeartBeat;
                }
                match self.socket.next().await {
                    Some(Ok(message)) if message.is_text() || message.is_binary() => {
                        self.decoder.push(message.into_data());
                    }
                    Some(Ok(_)) => {}
                    _ => return false,
                }
            }
        };
        tokio::time::timeout(patience, wait).await.unwrap_or(false)
    }

    /// Expects an ERROR frame, then the connection closed by the relay.
    /// Returns the ERROR.
    pub async fn expect_error_then_close(&mut self) -> Frame {
        let error = self.recv().await;
        assert_eq!(error.command, Command::Error, "{error:?}");
        assert!(
            error.get("message").is_some(),
            "ERROR without message: {error:?}"
        );
        self.expect_closed().await;
        error
    }

    /// Expects the relay to close the connection.
    pub async fn expect_closed(&mut self) {
        let closed = tokio::time::timeout(PATIENCE, async {
            loop {
                match self.socket.next().await {
                    None | Some(Err(_)) => return,
                    Some(Ok(message)) if message.is_close() => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the relay did not close the connection");
    }

    pub async fn subscribe(&mut self, id: &str, destination: &str, ack: &str) {
        let frame = Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", destination)
            .header("ack", ack)
            .header("receipt", format!("sub-{id}"));
        self.send(frame).await;
        self.expect_receipt(&format!("sub-{id}")).await;
    }

    /// SENDs a text body and waits for its receipt, so that the message has
    /// been routed when this returns.
    pub async fn publish(&mut self, destination: &str, body: &str) {
        let receipt = format!("send-{}", uuid::Uuid::new_v4());
        let frame = Frame::new(Command::Send)
            .header("destination", destination)
            .header("receipt", &receipt)
            .body(body.to_owned());
        self.send(frame).await;
        self.expect_receipt(&receipt).await;
    }

    pub async fn expect_receipt(&mut self, receipt: &str) {
        let mut early = Vec::new();
        let frame = loop {
            let frame = self.recv().await;
            if frame.command != Command::Message {
                break frame;
            }
            early.push(frame);
        };
        self.early.extend(early);
        assert_eq!(frame.command, Command::Receipt, "{frame:?}");
        assert_eq!(frame.get("receipt-id"), Some(receipt));
    }

    /// The next MESSAGE's body, as text.
    pub async fn recv_body(&mut self) -> String {
        let frame = self.recv().await;
        assert_eq!(frame.command, Command::Message, "{frame:?}");
        String::from_utf8(frame.body.to_vec()).expect("a text body")
    }

    /// Asserts that no frame arrives for a short while.
    pub async fn expect_nothing(&mut self) {
        if let Some(frame) = self.recv_within(QUIET).await {
            panic!("expected nothing, got {frame:?}");
        }
    }
}

/// An HTTP answer: status, head and body.
pub struct HttpAnswer {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    pub body: String,
}

impl HttpAnswer {
    /// The value of header `name` (in any case), if the answer has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

impl HttpAnswer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

/// One HTTP/1.1 request to the relay, `Connection: close`, read whole.
pub async fn http(
    relay: &impl RelayAddress,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpAnswer {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    http_raw(relay, &request).await
}

/// One SockJS xhr request's body (`o`, `a[...]`, `c[...]`, or `h`) at
/// `/sockjs/000/{session}/{transport}`.
pub async fn sockjs_xhr(
    relay: &impl RelayAddress,
    session: &str,
    transport: &str,
    body: &str,
) -> String {
    let path = format!("/sockjs/000/{session}/{transport}");
    let answer = http(relay, "POST", &path, &[], body).await;
    assert!(
        answer.status < 300,
        "{path}: {} {}",
        answer.status,
        answer.body
    );
    answer.body
}

/// A STOMP frame as one SockJS message of an `xhr_send` body.
pub fn sockjs_message(frame: &str) -> String {
    serde_json::to_string(&[format!("{frame}\u{0}")]).expect("JSON")
}

/// Sends `request` as it is (it should ask `connection: close`) and reads
/// the answer.
pub async fn http_raw(relay: &impl RelayAddress, request: &str) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(relay.addr())
        .await
        .expect("the relay accepts");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunked(body)
    } else {
        body.to_owned()
    };
    HttpAnswer {
        status,
        head: head.to_owned(),
        body,
    }
}

/// The body of a `Transfer-Encoding: chunked` answer.
fn dechunked(mut chunked: &str) -> String {
    let mut body = String::new();
    while let Some((size, rest)) = chunked.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&rest[..size]);
        chunked = &rest[size + 2..];
    }
    body
}
