//! Measures relay nodes from outside, as clients see them, and prints the
//! figures (nothing is asserted):
//!
//! - session set-up: CONNECT -> CONNECTED -> SUBSCRIBE (with receipt)
//!   completions per second;
//! - fan-out: deliveries per second to 1 000 WebSocket subscribers of one
//!   topic, with auto acks (the node queue) and with client acks (a session
//!   queue per subscriber), and the CPU the relay and RabbitMQ spend per
//!   delivery;
//! - memory: resident memory per idle connected STOMP session at 5 000
//!   sessions, of the relay and, in cluster mode, of RabbitMQ;
//! - per-user messages: one sender SENDs to `/user/{name}/queue/bench` of
//!   1 000 receivers, 10 rounds, as fast as it can write; messages per
//!   second until the last arrives, and the CPU of relay, RabbitMQ and
//!   Redis per message.
//!
//! `cargo bench --bench relay` measures embedded mode, then cluster mode
//! (RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379; skipped with a
//! note when they do not answer). Words after `--` pick scenarios by name
//! (`set-up`, `fan-out`, `memory`, `per-user`); `STOMP_RELAY_BIN` names
//! another build of the relay to measure (an older commit, say). The relay runs as its own process, the
//! release-built binary, so its CPU and memory are read from `/proc`
//! without the clients' share. Clients, relay and RabbitMQ share this
//! machine's cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use stomp_parser::{Decoded, FrameDecoder, Limits};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[path = "../tests/support/mod.rs"]
mod support;

use support::RelayAddress;
use support::node_process::{NodeProcess, Process, client_runtime, services_answer};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SUBSCRIBERS: usize = 1_000;
const MESSAGES: usize = 200;
const BODY_BYTES: usize = 100;
const SETUPS: usize = 1_000;
const IDLE_SESSIONS: usize = 5_000;
/// Client acks are sent cumulatively every this many messages.
const ACK_EVERY: usize = 50;
const RECEIVERS: usize = 1_000;
const ROUNDS: usize = 10;
/// SENDs the per-user sender writes before each flush.
const SEND_BATCH: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Embedded,
    Cluster,
}

/// A relay of `mode` in its own process, heart-beats off.
fn start_relay(mode: Mode) -> NodeProcess {
    let node_id = format!("bench-{}", uuid::Uuid::new_v4().simple());
    // Thousands of sessions come from this one address.
    let flags = [
        "--heart-beat",
        "0,0",
        "--max-connections-per-ip",
        "0",
        // One sender writes thousands of frames a second.
        "--max-frames-per-second",
        "0",
    ];
    match mode {
        Mode::Embedded => NodeProcess::start(&node_id, &flags),
        Mode::Cluster => NodeProcess::start_clustered(&node_id, &format!("{node_id}:"), &flags),
    }
}

/// A connected STOMP 1.2 session of user `bench`; CONNECTED already read.
async fn session(url: &str) -> Socket {
    session_of(url, "bench").await
}

/// A connected STOMP 1.2 session of `user`; CONNECTED already read.
async fn session_of(url: &str, user: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the handshake succeeds");
    socket
        .send(Message::text(format!(
            "CONNECT\naccept-version:1.2\nheart-beat:0,0\nlogin:{user}\n\n\0"
        )))
        .await
        .expect("CONNECT is sent");
    count_frames(&mut socket, 1).await;
    socket
}

async fn subscribe(socket: &mut Socket, destination: &str, ack: &str) {
    let frame = format!("SUBSCRIBE\nid:s\ndestination:{destination}\nack:{ack}\nreceipt:r\n\n\0");
    socket
        .send(Message::text(frame))
        .await
        .expect("SUBSCRIBE is sent");
    count_frames(socket, 1).await;
}

/// Reads until `count` frames have arrived, counting their NUL terminators
/// (the bench's bodies have none), so that the client costs little.
async fn count_frames(socket: &mut Socket, count: usize) {
    let mut seen = 0;
    while seen < count {
        match socket.next().await {
            Some(Ok(message)) => seen += message.into_data().iter().filter(|&&b| b == 0).count(),
            other => panic!("the relay closed the connection: {other:?}"),
        }
    }
}

/// Reads `count` MESSAGEs, acknowledging cumulatively every [`ACK_EVERY`].
async fn receive_acking(socket: &mut Socket, count: usize) {
    let mut decoder = FrameDecoder::new(Limits::UNLIMITED);
    let mut seen = 0;
    while seen < count {
        match socket.next().await {
            Some(Ok(message)) => decoder.push(message.into_data()),
            other => panic!("the relay closed the connection: {other:?}"),
        }
        while let Some(Decoded::Frame(frame)) = decoder.decode().expect("well-formed frames") {
            seen += 1;
            if seen % ACK_EVERY == 0 || seen == count {
                let id = frame.get("ack").expect("an ack id");
                socket
                    .send(Message::text(format!("ACK\nid:{id}\n\n\0")))
                    .await
                    .expect("ACK is sent");
            }
        }
    }
}

async fn setup_rate(mode: Mode, destination: &str) {
    let relay = start_relay(mode);
    let connecting = Arc::new(Semaphore::new(50));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SETUPS {
        let (url, connecting, destination) =
            (relay.ws_url(), connecting.clone(), destination.to_owned());
        tasks.push(tokio::spawn(async move {
            let _permit = connecting.acquire_owned().await.expect("open");
            let mut socket = session(&url).await;
            subscribe(&mut socket, &destination, "auto").await;
            socket
        }));
    }
    let mut sockets = Vec::new();
    for task in tasks {
        sockets.push(task.await.expect("set up"));
    }
    let elapsed = started.elapsed();
    println!(
        "  set-up: {SETUPS} x CONNECT -> CONNECTED -> SUBSCRIBE {destination} (50 at a time): {:.0} sessions/s",
        SETUPS as f64 / elapsed.as_secs_f64()
    );
    for mut socket in sockets {
        let _ = socket.close(None).await;
    }
}

async fn fan_out(mode: Mode, ack: &'static str) {
    let relay = start_relay(mode);
    let topic = format!("/topic/bench.{}", uuid::Uuid::new_v4().simple());
    let ready = Arc::new(Barrier::new(SUBSCRIBERS + 1));
    let connecting = Arc::new(Semaphore::new(100));
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let (url, ready, connecting, topic) = (
            relay.ws_url(),
            ready.clone(),
            connecting.clone(),
            topic.clone(),
        );
        subscribers.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await.expect("open");
            let mut socket = session(&url).await;
            subscribe(&mut socket, &topic, ack).await;
            drop(permit);
            ready.wait().await;
            if ack == "auto" {
                count_frames(&mut socket, MESSAGES).await;
            } else {
                receive_acking(&mut socket, MESSAGES).await;
            }
            Instant::now()
        }));
    }
    ready.wait().await;

    let mut publisher = session(&relay.ws_url()).await;
    let body = "x".repeat(BODY_BYTES);
    let (relay_process, rabbitmq) = (Process(relay.pid()), Process::rabbitmq());
    let relay_before = relay_process.cpu();
    let rabbitmq_before = rabbitmq.as_ref().map(Process::cpu);
    let started = Instant::now();
    for _ in 0..MESSAGES {
        let send = format!("SEND\ndestination:{topic}\ncontent-length:{BODY_BYTES}\n\n{body}\0");
        publisher
            .send(Message::text(send))
            .await
            .expect("SEND is sent");
    }
    let mut finished = started;
    for subscriber in subscribers {
        finished = finished.max(subscriber.await.expect("the subscriber finishes"));
    }
    let elapsed = finished - started;
    let deliveries = (SUBSCRIBERS * MESSAGES) as f64;
    let relay_cpu = relay_process.cpu().saturating_sub(relay_before);
    println!(
        "  fan-out, ack:{ack}: {SUBSCRIBERS} subscribers x {MESSAGES} messages of {BODY_BYTES} B: {:.0} deliveries/s; relay CPU {:.2} us/delivery",
        deliveries / elapsed.as_secs_f64(),
        relay_cpu.as_secs_f64() * 1e6 / deliveries
    );
    if mode == Mode::Cluster
        && let (Some(rabbitmq), Some(before)) = (rabbitmq, rabbitmq_before)
    {
        let cpu = rabbitmq.cpu().saturating_sub(before);
        println!(
            "    RabbitMQ CPU {:.2} us per delivery, {:.1} us per published message",
            cpu.as_secs_f64() * 1e6 / deliveries,
            cpu.as_secs_f64() * 1e6 / MESSAGES as f64
        );
    }
}

async fn idle_memory(mode: Mode, subscription: Option<&'static str>) {
    let relay = start_relay(mode);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (relay_process, rabbitmq) = (Process(relay.pid()), Process::rabbitmq());
    let relay_before = relay_process.rss();
    let rabbitmq_before = rabbitmq.as_ref().map(Process::rss);
    let connecting = Arc::new(Semaphore::new(100));
    let mut tasks = Vec::new();
    for _ in 0..IDLE_SESSIONS {
        let (url, connecting) = (relay.ws_url(), connecting.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = connecting.acquire_owned().await.expect("open");
            let mut socket = session(&url).await;
            if let Some(destination) = subscription {
                subscribe(&mut socket, destination, "auto").await;
            }
            socket
        }));
    }
    let mut sessions = Vec::new();
    for task in tasks {
        sessions.push(task.await.expect("the session connects"));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let per_session = |after: u64, before: u64| {
        after.saturating_sub(before) as f64 / IDLE_SESSIONS as f64 / 1024.0
    };
    let what = subscription.map_or("no subscription".to_owned(), |d| {
        format!("subscribed to {d}")
    });
    println!(
        "  memory, {IDLE_SESSIONS} idle sessions ({what}): relay {:.1} KiB per session ({:.0} MiB in all)",
        per_session(relay_process.rss(), relay_before),
        relay_process.rss() as f64 / 1048576.0
    );
    if mode == Mode::Cluster
        && let (Some(rabbitmq), Some(before)) = (rabbitmq, rabbitmq_before)
    {
        println!(
            "    RabbitMQ {:.1} KiB per session",
            per_session(rabbitmq.rss(), before)
        );
    }
    for mut socket in sessions {
        let _ = socket.close(None).await;
    }
}

/// One sender to [`RECEIVERS`] users, each on its own user destination.
async fn per_user(mode: Mode) {
    let relay = start_relay(mode);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let users: Vec<String> = (0..RECEIVERS).map(|n| format!("u{n}-{run}")).collect();
    let ready = Arc::new(Barrier::new(RECEIVERS + 1));
    let connecting = Arc::new(Semaphore::new(100));
    let mut receivers = Vec::new();
    for user in &users {
        let (url, ready, connecting, user) = (
            relay.ws_url(),
            ready.clone(),
            connecting.clone(),
            user.clone(),
        );
        receivers.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await.expect("open");
            let mut socket = session_of(&url, &user).await;
            subscribe(&mut socket, "/user/queue/bench", "auto").await;
            drop(permit);
            ready.wait().await;
            count_frames(&mut socket, ROUNDS).await;
            Instant::now()
        }));
    }
    ready.wait().await;

    let mut sender = session_of(&relay.ws_url(), "sender").await;
    let body = "x".repeat(BODY_BYTES);
    let processes = [
        ("relay", Some(Process(relay.pid()))),
        ("RabbitMQ", Process::rabbitmq()),
        ("Redis", Process::redis()),
    ];
    let before: Vec<Duration> = processes
        .iter()
        .map(|(_, process)| process.as_ref().map_or(Duration::ZERO, Process::cpu))
        .collect();
    let started = Instant::now();
    let mut written = 0;
    for _ in 0..ROUNDS {
        for user in &users {
            let send = format!(
                "SEND\ndestination:/user/{user}/queue/bench\ncontent-length:{BODY_BYTES}\n\n{body}\0"
            );
            sender
                .feed(Message::text(send))
                .await
                .expect("SEND is sent");
            written += 1;
            if written % SEND_BATCH == 0 {
                sender.flush().await.expect("SENDs are sent");
            }
        }
    }
    sender.flush().await.expect("SENDs are sent");
    let mut finished = started;
    for receiver in receivers {
        finished = finished.max(receiver.await.expect("the receiver finishes"));
    }
    let elapsed = finished - started;
    let messages = (RECEIVERS * ROUNDS) as f64;
    let cpu: Vec<String> = processes
        .iter()
        .zip(&before)
        .filter(|((name, _), _)| mode == Mode::Cluster || *name == "relay")
        .filter_map(|((name, process), before)| {
            let spent = process.as_ref()?.cpu().saturating_sub(*before);
            Some(format!(
                "{name} {:.0}",
                spent.as_secs_f64() * 1e6 / messages
            ))
        })
        .collect();
    println!(
        "  per-user: 1 sender -> {RECEIVERS} users x {ROUNDS} rounds, {BODY_BYTES} B: {:.0} messages/s; CPU us per message: {}",
        messages / elapsed.as_secs_f64(),
        cpu.join(", ")
    );
}

/// Whether the scenario `name` was asked for (all, when none was named).
fn wanted(name: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    named.is_empty() || named.iter().any(|arg| arg == name)
}

fn main() {
    client_runtime().block_on(async {
        println!("embedded mode");
        if wanted("set-up") {
            setup_rate(Mode::Embedded, "/topic/bench").await;
        }
        if wanted("fan-out") {
            fan_out(Mode::Embedded, "auto").await;
            fan_out(Mode::Embedded, "client").await;
        }
        if wanted("memory") {
            idle_memory(Mode::Embedded, None).await;
        }
        if wanted("per-user") {
            per_user(Mode::Embedded).await;
        }
        if !services_answer() {
            println!("cluster mode: skipped, RabbitMQ or Redis does not answer on 127.0.0.1");
            return;
        }
        println!("cluster mode");
        if wanted("set-up") {
            setup_rate(Mode::Cluster, "/topic/bench").await;
            setup_rate(Mode::Cluster, "/user/queue/bench").await;
        }
        if wanted("fan-out") {
            fan_out(Mode::Cluster, "auto").await;
            fan_out(Mode::Cluster, "client").await;
        }
        if wanted("memory") {
            idle_memory(Mode::Cluster, None).await;
            idle_memory(Mode::Cluster, Some("/user/queue/notifications")).await;
        }
        if wanted("per-user") {
            per_user(Mode::Cluster).await;
        }
    });
}
