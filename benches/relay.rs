//! Measures a relay node from outside, as clients see it, and prints the
//! figures (nothing is asserted):
//!
//! - fan-out: deliveries per second to 1 000 WebSocket subscribers of one
//!   topic, and the relay's CPU time per delivery;
//! - memory: the relay's resident memory per idle connected STOMP session,
//!   at 5 000 sessions.
//!
//! `cargo bench --bench relay`. The relay runs as its own process (the
//! release-built binary), so its CPU and memory are read from `/proc`
//! without the clients' share. Clients and relay share this machine's cores.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SUBSCRIBERS: usize = 1_000;
const MESSAGES: usize = 200;
const BODY_BYTES: usize = 100;
const IDLE_SESSIONS: usize = 5_000;

struct RelayProcess {
    child: Child,
    url: String,
}

impl RelayProcess {
    fn start() -> RelayProcess {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("an address").port()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_stomp-relay"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--heart-beat",
                "0,0",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the relay binary starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the relay did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RelayProcess {
            child,
            url: format!("ws://127.0.0.1:{port}/ws"),
        }
    }

    /// Resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// User plus system CPU time consumed so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
        let clock_ticks_per_second = 100;
        Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock_ticks_per_second)
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connected STOMP 1.2 session; CONNECTED already read.
async fn session(url: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the handshake succeeds");
    socket
        .send(Message::text(
            "CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0",
        ))
        .await
        .expect("CONNECT is sent");
    frames(&mut socket, 1).await;
    socket
}

/// Reads until `count` frames have arrived, counting their NUL terminators
/// (the bench's bodies have none), so that the client costs little.
async fn frames(socket: &mut Socket, count: usize) {
    let mut seen = 0;
    while seen < count {
        match socket.next().await {
            Some(Ok(message)) => seen += message.into_data().iter().filter(|&&b| b == 0).count(),
            other => panic!("the relay closed the connection: {other:?}"),
        }
    }
}

async fn fan_out() {
    let relay = RelayProcess::start();
    let ready = Arc::new(Barrier::new(SUBSCRIBERS + 1));
    let connecting = Arc::new(Semaphore::new(100));
    let mut subscribers = Vec::new();
    for n in 0..SUBSCRIBERS {
        let (url, ready, connecting) = (relay.url.clone(), ready.clone(), connecting.clone());
        subscribers.push(tokio::spawn(async move {
            let permit = connecting
                .acquire_owned()
                .await
                .expect("the semaphore stays open");
            let mut socket = session(&url).await;
            let subscribe =
                format!("SUBSCRIBE\nid:{n}\ndestination:/topic/bench.fanout\nreceipt:r\n\n\0");
            socket
                .send(Message::text(subscribe))
                .await
                .expect("SUBSCRIBE is sent");
            frames(&mut socket, 1).await;
            drop(permit);
            ready.wait().await;
            frames(&mut socket, MESSAGES).await;
            Instant::now()
        }));
    }
    ready.wait().await;

    let mut publisher = session(&relay.url).await;
    let body = "x".repeat(BODY_BYTES);
    let cpu_before = relay.cpu();
    let started = Instant::now();
    for _ in 0..MESSAGES {
        let send = format!(
            "SEND\ndestination:/topic/bench.fanout\ncontent-length:{BODY_BYTES}\n\n{body}\0"
        );
        publisher
            .send(Message::text(send))
            .await
            .expect("SEND is sent");
    }
    let mut finished = started;
    for subscriber in subscribers {
        finished = finished.max(subscriber.await.expect("the subscriber task ends"));
    }
    let elapsed = finished - started;
    let cpu = relay.cpu().saturating_sub(cpu_before);
    let deliveries = (SUBSCRIBERS * MESSAGES) as f64;
    println!(
        "fan-out: {SUBSCRIBERS} subscribers x {MESSAGES} messages of {BODY_BYTES} B on one topic"
    );
    println!(
        "  {deliveries:.0} deliveries in {:.3} s = {:.0} deliveries/s",
        elapsed.as_secs_f64(),
        deliveries / elapsed.as_secs_f64()
    );
    println!(
        "  relay CPU {:.3} s = {:.2} us per delivery (clients share the 2 cores)",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / deliveries
    );
}

async fn idle_memory() {
    let relay = RelayProcess::start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = relay.rss();
    let connecting = Arc::new(Semaphore::new(100));
    let mut sessions = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..IDLE_SESSIONS {
        let (url, connecting) = (relay.url.clone(), connecting.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = connecting
                .acquire_owned()
                .await
                .expect("the semaphore stays open");
            session(&url).await
        }));
    }
    for task in tasks {
        sessions.push(task.await.expect("the session connects"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = relay.rss();
    let per_session = loaded.saturating_sub(baseline) as f64 / IDLE_SESSIONS as f64;
    println!("memory: {IDLE_SESSIONS} idle connected sessions");
    println!(
        "  relay RSS {:.1} MiB before, {:.1} MiB after = {:.1} KiB per idle session",
        baseline as f64 / 1048576.0,
        loaded as f64 / 1048576.0,
        per_session / 1024.0
    );
    drop(sessions);
}

fn main() {
    // `cargo bench` passes flags such as --bench; this bench has none.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        fan_out().await;
        idle_memory().await;
    });
}
