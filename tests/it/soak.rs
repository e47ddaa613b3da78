//! The soak test, not in the default run: three nodes on a RabbitMQ and a
//! Redis of the test's own (the Redis keeps an append-only file, as a
//! production one would), users connected over WebSocket and SockJS who
//! come and go, mixed traffic, and faults on a schedule: RabbitMQ and Redis
//! restarts and a node killed with SIGKILL (and a fresh one started). At the
//! end every user stays connected for a while, then the test reports, for
//! each kind of message, how many were accepted (a RECEIPT, an HTTP 2xx, a
//! publisher confirm), delivered, lost, redelivered (came again, marked
//! `redelivered:true`, because the ACK of an earlier delivery was lost with
//! its connection: at least once, as promised) and duplicated (came again
//! looking new), and fails unless none was lost or duplicated.
//!
//! Run it (30 minutes; SOAK_SECONDS sets the time, SOAK_USERS the users):
//!
//! ```text
//! SOAK_SECONDS=1800 cargo test --release --test it soak:: -- --ignored --nocapture
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use stomp_parser::{Command, Decoded, Frame, FrameDecoder, Limits, Version, encoded_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::node_process::NodeProcess;
use crate::support::own_services::{OwnRabbitMq, OwnRedis, free_port};

/// How long a sender waits for a message to be accepted.
const ACCEPT_PATIENCE: Duration = Duration::from_secs(20);
/// Time between faults.
const FAULT_EVERY: Duration = Duration::from_secs(40);
/// How long every user stays connected at the end, for what was kept.
const DRAIN: Duration = Duration::from_secs(30);
const NODES: usize = 3;
const USER_DESTINATION: &str = "/user/queue/soak";
const JOBS: &str = "/queue/soak.jobs";
const NEWS: &str = "/topic/soak.news";

/// The kinds of message, by how they were sent and what is promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// A STOMP SEND to `/user/{name}/...` with `persist:true`.
    UserStomp,
    /// `POST /api/v1/users/{name}/messages` with `persist: true`.
    UserApi,
    /// A publish to `stomp.dispatch` with `stomp-persist: true`.
    Dispatch,
    /// A SEND to a shared queue, consumed with client acks.
    Queue,
    /// A SEND to a topic: at most once per subscriber, so only duplicates
    /// count.
    Topic,
}

impl Kind {
    fn parse(tag: &str) -> Option<Kind> {
        [
            Kind::UserStomp,
            Kind::UserApi,
            Kind::Dispatch,
            Kind::Queue,
            Kind::Topic,
        ]
        .into_iter()
        .find(|kind| kind.tag() == tag)
    }

    fn tag(self) -> &'static str {
        match self {
            Kind::UserStomp => "stomp",
            Kind::UserApi => "api",
            Kind::Dispatch => "dispatch",
            Kind::Queue => "queue",
            Kind::Topic => "topic",
        }
    }
}

/// What was sent and what arrived, by message id (`{kind}:{seq}`).
#[derive(Default)]
struct Ledger {
    sent: Mutex<HashMap<Kind, u64>>,
    accepted: Mutex<HashMap<String, Kind>>,
    /// Deliveries of each id, and how many of them came again looking new
    /// (without `redelivered:true`); a topic message's id includes the
    /// receiving session, whose duplicates are what counts.
    delivered: Mutex<HashMap<String, Deliveries>>,
    next: AtomicU64,
}

impl Ledger {
    fn new_id(&self, kind: Kind) -> String {
        *self.sent.lock().unwrap().entry(kind).or_default() += 1;
        format!(
            "{}:{}",
            kind.tag(),
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn accept(&self, id: &str, kind: Kind) {
        self.accepted.lock().unwrap().insert(id.to_owned(), kind);
    }

    fn deliver(&self, id: String, frame: &Frame) {
        let mut delivered = self.delivered.lock().unwrap();
        let deliveries = delivered.entry(id).or_default();
        if deliveries.times > 0 && frame.get("redelivered") != Some("true") {
            deliveries.looking_new += 1;
        }
        deliveries.times += 1;
    }

    /// Per kind: sent, accepted, delivered (distinct), lost, redelivered,
    /// duplicated.
    fn report(&self) -> Vec<(Kind, [u64; 6])> {
        let sent = self.sent.lock().unwrap();
        let accepted = self.accepted.lock().unwrap();
        let delivered = self.delivered.lock().unwrap();
        let mut rows: HashMap<Kind, [u64; 6]> = HashMap::new();
        for (kind, count) in sent.iter() {
            rows.entry(*kind).or_default()[0] = *count;
        }
        for (id, kind) in accepted.iter() {
            let row = rows.entry(*kind).or_default();
            row[1] += 1;
            if *kind != Kind::Topic && !delivered.contains_key(id) {
                row[3] += 1;
            }
        }
        for (id, deliveries) in delivered.iter() {
            let Some(kind) = id.split(':').next().and_then(Kind::parse) else {
                continue;
            };
            let row = rows.entry(kind).or_default();
            row[2] += 1;
            row[4] += u64::from(deliveries.times - 1 - deliveries.looking_new);
            row[5] += u64::from(deliveries.looking_new);
        }
        let mut rows: Vec<_> = rows.into_iter().collect();
        rows.sort();
        rows
    }
}

#[derive(Default)]
struct Deliveries {
    times: u32,
    looking_new: u32,
}

/// The live nodes clients may connect to.
type Nodes = Arc<RwLock<Vec<SocketAddr>>>;

fn any_node(nodes: &Nodes) -> Option<SocketAddr> {
    let nodes = nodes.read().unwrap();
    (!nodes.is_empty()).then(|| nodes[fastrand::usize(..nodes.len())])
}

/// A STOMP session over a WebSocket, raw or in SockJS framing, whose every
/// failure is an `Err` (nodes die under it).
struct Client {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    sockjs: bool,
    decoder: FrameDecoder,
}

type Failed = Box<dyn std::error::Error + Send + Sync>;

impl Client {
    async fn connect(
        node: SocketAddr,
        login: Option<&str>,
        sockjs: bool,
    ) -> Result<Client, Failed> {
        let url = if sockjs {
            let session = uuid::Uuid::new_v4().simple();
            format!("ws://{node}/sockjs/000/{session}/websocket")
        } else {
            format!("ws://{node}/ws")
        };
        let (socket, _) = tokio::time::timeout(
            ACCEPT_PATIENCE,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await??;
        let mut client = Client {
            socket,
            sockjs,
            decoder: FrameDecoder::new(Limits::UNLIMITED),
        };
        let mut connect = Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", "localhost")
            .header("heart-beat", "0,0");
        if let Some(login) = login {
            connect = connect.header("login", login).header("passcode", "soak");
        }
        client.send(connect).await?;
        match client.next(ACCEPT_PATIENCE).await? {
            Some(frame) if frame.command == Command::Connected => Ok(client),
            other => Err(format!("no CONNECTED: {other:?}").into()),
        }
    }

    async fn send(&mut self, frame: Frame) -> Result<(), Failed> {
        let bytes = encoded_frame(&frame, Version::V1_2)?;
        let text = String::from_utf8(bytes.to_vec())?;
        let text = if self.sockjs {
            serde_json::to_string(&[text])?
        } else {
            text
        };
        Ok(self.socket.send(Message::text(text)).await?)
    }

    /// The next frame, `None` when `patience` passes first.
    async fn next(&mut self, patience: Duration) -> Result<Option<Frame>, Failed> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match self.decoder.decode()? {
                Some(Decoded::Frame(frame)) => return Ok(Some(frame)),
                Some(Decoded::HeartBeat) => continue,
                None => {}
            }
            let message = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err("closed".into()),
                Ok(Some(message)) => message?,
            };
            if message.is_close() {
                return Err("closed".into());
            }
            let data = message.into_data();
            if !self.sockjs {
                self.decoder.push(data);
                continue;
            }
            // SockJS: `o`, `h`, `a[...]` (messages), `c[...]` (closed).
            match data.first() {
                Some(b'a') => {
                    let messages: Vec<String> = serde_json::from_slice(&data[1..])?;
                    for message in messages {
                        self.decoder.push(bytes::Bytes::from(message));
                    }
                }
                Some(b'c') => return Err("closed by SockJS".into()),
                _ => {}
            }
        }
    }

    /// Sends `frame` with a receipt and waits for it, handing frames that
    /// come first to `other`.
    async fn with_receipt(
        &mut self,
        frame: Frame,
        receipt: &str,
        mut other: impl FnMut(Frame),
    ) -> Result<bool, Failed> {
        self.send(frame.header("receipt", receipt)).await?;
        let deadline = Instant::now() + ACCEPT_PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await? {
                Some(frame) if frame.command == Command::Receipt => {
                    return Ok(frame.get("receipt-id") == Some(receipt));
                }
                Some(frame) if frame.command == Command::Error => return Ok(false),
                Some(frame) => other(frame),
                None => break,
            }
        }
        Ok(false)
    }
}

/// One user: connects to any node (SockJS for odd users), subscribes to its
/// user destination and the jobs queue (both with client acks) and the
/// news topic,
/// and records what arrives; leaves after a while (usually saying goodbye,
/// sometimes dropping the connection), and comes back.
async fn user(
    n: usize,
    nodes: Nodes,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
) {
    let name = format!("soak-user-{n}");
    let mut sessions = 0u64;
    while !stop.load(Ordering::Acquire) {
        let Some(node) = any_node(&nodes) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        sessions += 1;
        let session = format!("{n}.{sessions}");
        let _ = stay(&name, &session, node, n % 2 == 1, &ledger, &stop, &drain).await;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..1000))).await;
    }
}

async fn stay(
    name: &str,
    session: &str,
    node: SocketAddr,
    sockjs: bool,
    ledger: &Ledger,
    stop: &AtomicBool,
    drain: &AtomicBool,
) -> Result<(), Failed> {
    let mut client = Client::connect(node, Some(name), sockjs).await?;
    // Client acks where at least once is promised: with ack:auto, what
    // was written to a connection that then drops is gone.
    for (id, destination, ack) in [
        ("u", USER_DESTINATION, "client-individual"),
        ("j", JOBS, "client-individual"),
        ("t", NEWS, "auto"),
    ] {
        let subscribe = Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", destination)
            .header("ack", ack);
        client.send(subscribe).await?;
    }
    let leave_at = Instant::now() + Duration::from_secs(fastrand::u64(5..40));
    loop {
        let draining = drain.load(Ordering::Acquire);
        if stop.load(Ordering::Acquire) || (!draining && Instant::now() >= leave_at) {
            break;
        }
        let Some(frame) = client.next(Duration::from_millis(500)).await? else {
            continue;
        };
        let Some(body) = std::str::from_utf8(&frame.body).ok().map(str::to_owned) else {
            continue;
        };
        match frame.get("subscription") {
            Some("t") => ledger.deliver(format!("{body}@{session}"), &frame),
            Some(_) => {
                ledger.deliver(body, &frame);
                if let Some(ack) = frame.get("ack") {
                    client
                        .send(Frame::new(Command::Ack).header("id", ack))
                        .await?;
                }
            }
            None => {}
        }
    }
    if fastrand::u8(..10) < 8 {
        // A goodbye whose RECEIPT comes after everything sent before it.
        let goodbye = Frame::new(Command::Disconnect);
        client
            .with_receipt(goodbye, "bye", |frame| {
                if let Ok(body) = std::str::from_utf8(&frame.body) {
                    // The others, unacknowledged, come again.
                    if frame.get("subscription") == Some("t") {
                        ledger.deliver(format!("{body}@{session}"), &frame);
                    }
                }
            })
            .await?;
    }
    Ok(())
}

/// Sends, over STOMP, user messages, jobs and news in turn, each counted as
/// accepted once its RECEIPT comes.
async fn stomp_sender(users: usize, nodes: Nodes, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let mut client: Option<Client> = None;
    let mut turn = 0u64;
    while !stop.load(Ordering::Acquire) {
        if client.is_none() {
            let Some(node) = any_node(&nodes) else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            client = Client::connect(node, None, false).await.ok();
            continue;
        }
        turn += 1;
        let (kind, destination) = match turn % 3 {
            0 => (
                Kind::UserStomp,
                format!("/user/soak-user-{}/queue/soak", fastrand::usize(..users)),
            ),
            1 => (Kind::Queue, JOBS.to_owned()),
            _ => (Kind::Topic, NEWS.to_owned()),
        };
        let id = ledger.new_id(kind);
        let send = Frame::new(Command::Send)
            .header("destination", destination.as_str())
            .header("persist", "true")
            .body(id.clone());
        let Some(sender) = client.as_mut() else {
            continue;
        };
        match sender.with_receipt(send, &id, |_| {}).await {
            Ok(true) => ledger.accept(&id, kind),
            Ok(false) => {}
            Err(_) => client = None,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /api/v1/users/{user}/messages`, counted as accepted on a 2xx.
async fn api_sender(users: usize, nodes: Nodes, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        let Some(node) = any_node(&nodes) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let id = ledger.new_id(Kind::UserApi);
        let user = format!("soak-user-{}", fastrand::usize(..users));
        let body =
            serde_json::json!({"destination": "soak", "body": id, "persist": true}).to_string();
        let path = format!("/api/v1/users/{user}/messages");
        if let Ok(Ok(status)) =
            tokio::time::timeout(ACCEPT_PATIENCE, post(node, &path, &body)).await
            && (200..300).contains(&status)
        {
            ledger.accept(&id, Kind::UserApi);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One JSON POST, `Connection: close`; the status it answered.
async fn post(node: SocketAddr, path: &str, body: &str) -> Result<u16, Failed> {
    let mut stream = tokio::net::TcpStream::connect(node).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    Ok(answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or("no status line")?)
}

/// Publishes to `stomp.dispatch`, counted as accepted once confirmed.
async fn dispatch_sender(
    users: usize,
    amqp_url: String,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) {
    let mut channel: Option<(Connection, lapin::Channel)> = None;
    while !stop.load(Ordering::Acquire) {
        let Some((_, publishing)) = channel.as_ref() else {
            channel = open_confirming(&amqp_url).await.ok();
            if channel.is_none() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            continue;
        };
        let id = ledger.new_id(Kind::Dispatch);
        let mut headers = FieldTable::default();
        let user = format!("soak-user-{}", fastrand::usize(..users));
        for (name, value) in [
            ("stomp-user", user.as_str()),
            ("stomp-destination", "soak"),
            ("stomp-persist", "true"),
        ] {
            headers.insert(name.into(), AMQPValue::LongString(value.into()));
        }
        // With a message id, as the README asks: a request carried out
        // again is delivered once.
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_message_id(id.as_str().into());
        let published = publishing
            .basic_publish(
                "stomp.dispatch".into(),
                "".into(),
                BasicPublishOptions::default(),
                id.as_bytes(),
                properties,
            )
            .await;
        let confirmed = match published {
            Ok(confirm) => tokio::time::timeout(ACCEPT_PATIENCE, confirm).await,
            Err(_) => {
                channel = None;
                continue;
            }
        };
        match confirmed {
            Ok(Ok(confirmation)) if confirmation.is_ack() => ledger.accept(&id, Kind::Dispatch),
            Ok(Ok(_)) => {}
            _ => channel = None,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open_confirming(amqp_url: &str) -> Result<(Connection, lapin::Channel), Failed> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

/// The test's own services and nodes, which the faults restart.
struct Cluster {
    rabbitmq: OwnRabbitMq,
    redis: OwnRedis,
    nodes: Vec<NodeProcess>,
    started: usize,
}

impl Cluster {
    fn start_node(&mut self) -> NodeProcess {
        self.started += 1;
        let (amqp, redis) = (self.rabbitmq.url(), self.redis.url());
        NodeProcess::start(
            &format!("soak-{}", self.started),
            &[
                "--amqp-url",
                &amqp,
                "--redis-url",
                &redis,
                "--node-ttl",
                "5",
            ],
        )
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.addr).collect()
    }

    /// The next fault, in turn: a RabbitMQ restart, a Redis restart, a node
    /// killed (and a fresh one started in its place).
    fn fault(&mut self, turn: usize, nodes: &Nodes) -> &'static str {
        match turn % 3 {
            0 => {
                self.rabbitmq.stop();
                std::thread::sleep(Duration::from_secs(3));
                self.rabbitmq.restart();
                "RabbitMQ restarted"
            }
            1 => {
                self.redis.stop();
                std::thread::sleep(Duration::from_secs(2));
                self.redis.restart();
                "Redis restarted"
            }
            _ => {
                let victim = fastrand::usize(..self.nodes.len());
                let mut killed = self.nodes.remove(victim);
                *nodes.write().unwrap() = self.addresses();
                killed.kill();
                std::thread::sleep(Duration::from_secs(2));
                let fresh = self.start_node();
                self.nodes.push(fresh);
                *nodes.write().unwrap() = self.addresses();
                "a node killed and another started"
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs for SOAK_SECONDS (default 1800); see the file's doc comment"]
async fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    let users: usize = std::env::var("SOAK_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let dir = std::env::temp_dir().join(format!(
        "stomp-relay-soak-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let data = dir.clone();
    let mut cluster = tokio::task::spawn_blocking(move || {
        let rabbitmq = OwnRabbitMq::start(dir.join("rabbitmq"));
        std::fs::create_dir_all(dir.join("redis")).expect("a directory for Redis");
        let redis = OwnRedis::start_durable(free_port(), &dir.join("redis"));
        let mut cluster = Cluster {
            rabbitmq,
            redis,
            nodes: Vec::new(),
            started: 0,
        };
        for _ in 0..NODES {
            let node = cluster.start_node();
            cluster.nodes.push(node);
        }
        cluster
    })
    .await
    .expect("the services and nodes start");
    let nodes: Nodes = Arc::new(RwLock::new(cluster.addresses()));
    let ledger = Arc::new(Ledger::default());
    let (stop_sending, stop_users, drain) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..users {
        tasks.spawn(user(
            n,
            nodes.clone(),
            ledger.clone(),
            stop_users.clone(),
            drain.clone(),
        ));
    }
    let mut senders = tokio::task::JoinSet::new();
    senders.spawn(stomp_sender(
        users,
        nodes.clone(),
        ledger.clone(),
        stop_sending.clone(),
    ));
    senders.spawn(api_sender(
        users,
        nodes.clone(),
        ledger.clone(),
        stop_sending.clone(),
    ));
    senders.spawn(dispatch_sender(
        users,
        cluster.rabbitmq.url(),
        ledger.clone(),
        stop_sending.clone(),
    ));

    let started = Instant::now();
    let mut turn = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(
            FAULT_EVERY.min(Duration::from_secs(seconds).saturating_sub(started.elapsed())),
        )
        .await;
        if started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
        let nodes = nodes.clone();
        let (back, what) = tokio::task::spawn_blocking(move || {
            let what = cluster.fault(turn, &nodes);
            (cluster, what)
        })
        .await
        .expect("the fault is carried out");
        cluster = back;
        eprintln!("[soak {:>5}s] {what}", started.elapsed().as_secs());
        turn += 1;
    }
    stop_sending.store(true, Ordering::Release);
    while senders.join_next().await.is_some() {}
    // Everyone connected for a while, for what was kept for them.
    drain.store(true, Ordering::Release);
    tokio::time::sleep(DRAIN).await;
    stop_users.store(true, Ordering::Release);
    while tasks.join_next().await.is_some() {}

    eprintln!(
        "\nsoak: {seconds} s, {users} users over WebSocket and SockJS, {turn} faults, {NODES} nodes"
    );
    eprintln!(
        "{:<10} {:>9} {:>9} {:>10} {:>6} {:>12} {:>11}",
        "kind", "sent", "accepted", "delivered", "lost", "redelivered", "duplicated"
    );
    let report = ledger.report();
    for (kind, [sent, accepted, delivered, lost, redelivered, duplicated]) in &report {
        eprintln!(
            "{:<10} {sent:>9} {accepted:>9} {delivered:>10} {lost:>6} {redelivered:>12} {duplicated:>11}",
            kind.tag()
        );
    }
    let failed: Vec<_> = report
        .iter()
        .filter(|(_, row)| row[3] > 0 || row[5] > 0)
        .map(|(kind, _)| kind.tag())
        .collect();
    drop(cluster);
    let _ = std::fs::remove_dir_all(data);
    assert!(failed.is_empty(), "lost or duplicated: {failed:?}");
}
