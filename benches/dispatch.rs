//! Measures user-targeted delivery across a cluster and prints the figures
//! (nothing is asserted): three relay processes (the release binary) share
//! RabbitMQ and Redis, 1 000 users are connected, spread over the nodes,
//! each subscribed to `/user/queue/bench`, and messages for single users go
//!
//! - through the HTTP API (`POST /api/v1/users/{user}/messages`, spread over
//!   the three nodes), then
//! - through `stomp.dispatch` (a service publishing with `stomp-user`),
//!
//! each with 64 messages in flight (what the cluster carries) and then one
//! at a time (latency unloaded).
//!
//! For each: messages per second from the first publish to the last
//! receipt, and the latency from publishing a message to its user's client
//! reading it (p50, p99, max). Every message carries its send time; clients,
//! relays, RabbitMQ and Redis share this machine's cores.
//!
//! `cargo bench --bench dispatch` (RabbitMQ on 127.0.0.1:5672 and Redis on
//! 127.0.0.1:6379).

// The tests' helpers, of which a benchmark needs only a few.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use stomp_parser::Command;
use tokio::sync::mpsc;

use support::node_process::{Cluster, NodeProcess};
use support::{StompClient, amqp};

const NODES: usize = 3;
const USERS: usize = 1_000;
/// Each way is measured twice: loaded, with many messages in flight (what
/// the cluster can carry), and one message at a time (latency unloaded).
const LOADS: [Load; 2] = [
    Load {
        messages: 20_000,
        in_flight: 64,
    },
    Load {
        messages: 2_000,
        in_flight: 1,
    },
];

/// How many messages to send, and how many HTTP requests (or unconfirmed
/// AMQP publishes) may be in flight at a time.
#[derive(Clone, Copy)]
struct Load {
    messages: usize,
    in_flight: usize,
}

/// The moment every send time is measured from.
fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Connects every user and spawns a reader per client, which sends the
/// latency of each message it reads to `latencies`.
async fn connect_users(cluster: &Cluster, epoch: Instant) -> mpsc::UnboundedReceiver<Duration> {
    let (latency_tx, latencies) = mpsc::unbounded_channel();
    for user in 0..USERS {
        let node = &cluster.nodes[user % NODES];
        let mut client = StompClient::connect(node, Some(&format!("user-{user}"))).await;
        client.subscribe("b", "/user/queue/bench", "auto").await;
        let latency_tx = latency_tx.clone();
        tokio::spawn(async move {
            while let Some(frame) = client.recv_within(Duration::from_secs(600)).await {
                if frame.command != Command::Message {
                    continue;
                }
                let sent = std::str::from_utf8(&frame.body)
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok())
                    .unwrap_or(0);
                let latency = Duration::from_nanos(nanos_since(epoch).saturating_sub(sent));
                if latency_tx.send(latency).is_err() {
                    return;
                }
            }
        });
    }
    latencies
}

/// Whether RabbitMQ and Redis answer where cluster mode expects them: the
/// benchmark skips the cluster when not, where a test would fail.
fn services_answer() -> bool {
    std::net::TcpStream::connect("127.0.0.1:5672").is_ok()
        && std::net::TcpStream::connect("127.0.0.1:6379").is_ok()
}

/// The runtime the clients run on: two workers, as many as the machine has
/// cores.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A process whose CPU time is read from `/proc`.
struct Process(u32);

impl Process {
    /// The first process whose command line contains `pattern` (`pgrep -f`).
    fn find(pattern: &str) -> Option<Process> {
        let output = std::process::Command::new("pgrep")
            .args(["-f", pattern])
            .output()
            .ok()?;
        let pid = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()?;
        Some(Process(pid))
    }

    /// RabbitMQ's Erlang VM.
    fn rabbitmq() -> Option<Process> {
        Process::find("beam.smp")
    }

    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).unwrap_or_default();
        // utime and stime, fields 14 and 15, counted after the command name.
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
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }
}

/// The CPU time the relays, RabbitMQ and Redis spend during a phase.
struct CpuMeter {
    parts: Vec<(&'static str, Vec<Process>)>,
    before: Vec<Duration>,
}

impl CpuMeter {
    fn start(cluster: &Cluster) -> CpuMeter {
        let relays = cluster
            .nodes
            .iter()
            .map(|node| Process(node.child.id()))
            .collect();
        let parts = vec![
            ("relays", relays),
            (
                "RabbitMQ",
                Process::rabbitmq().into_iter().collect::<Vec<_>>(),
            ),
            (
                "Redis",
                Process::find("redis-server")
                    .into_iter()
                    .collect::<Vec<_>>(),
            ),
        ];
        let before = parts.iter().map(|(_, processes)| cpu(processes)).collect();
        CpuMeter { parts, before }
    }

    /// CPU per message of each part since the start.
    fn per_message(&self, messages: usize) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .zip(&self.before)
            .map(|((name, processes), before)| {
                let spent = cpu(processes).saturating_sub(*before);
                format!(
                    "{name} {:.0} us",
                    spent.as_secs_f64() * 1e6 / messages.max(1) as f64
                )
            })
            .collect();
        parts.join(", ")
    }
}

fn cpu(processes: &[Process]) -> Duration {
    processes.iter().map(Process::cpu).sum()
}

/// Waits for `count` receipts; prints the rate since `started`, the
/// latency percentiles and the CPU spent per message.
async fn report(
    what: &str,
    started: Instant,
    cpu: CpuMeter,
    latencies: &mut mpsc::UnboundedReceiver<Duration>,
    count: usize,
) {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        match tokio::time::timeout(Duration::from_secs(30), latencies.recv()).await {
            Ok(Some(latency)) => seen.push(latency),
            _ => break,
        }
    }
    let elapsed = started.elapsed();
    seen.sort();
    let percentile = |p: f64| {
        seen.get(((seen.len() as f64 * p) as usize).min(seen.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "  {what}: {} of {count} messages received in {:.2} s = {:.0} msgs/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        seen.len(),
        elapsed.as_secs_f64(),
        seen.len() as f64 / elapsed.as_secs_f64(),
        percentile(0.50).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
        seen.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!("    CPU per message: {}", cpu.per_message(seen.len()));
}

/// Keeps one HTTP/1.1 connection to `node` and posts messages taken from
/// `next` until `messages` were posted.
async fn post_messages(
    node: &NodeProcess,
    messages: usize,
    next: Arc<AtomicUsize>,
    epoch: Instant,
) {
    let stream = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("the node accepts");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP connection");
    tokio::spawn(connection);
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= messages {
            return;
        }
        let body = serde_json::json!({
            "destination": "bench",
            "body": nanos_since(epoch).to_string(),
        })
        .to_string();
        let request = http::Request::post(format!("/api/v1/users/user-{}/messages", n % USERS))
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a request");
        sender.ready().await.expect("the connection stays open");
        let response = sender.send_request(request).await.expect("an answer");
        let status = response.status();
        let answer = response.into_body().collect().await.expect("a body");
        assert_eq!(status, 200, "{:?}", answer.to_bytes());
    }
}

async fn through_http_api(
    cluster: &Cluster,
    load: Load,
    latencies: &mut mpsc::UnboundedReceiver<Duration>,
    epoch: Instant,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = CpuMeter::start(cluster);
    let started = Instant::now();
    let mut posters = Vec::new();
    for worker in 0..load.in_flight {
        let node = &cluster.nodes[worker % NODES];
        posters.push(post_messages(node, load.messages, next.clone(), epoch));
    }
    futures_util::future::join_all(posters).await;
    let what = format!("HTTP API, {} in flight", load.in_flight);
    report(&what, started, cpu, latencies, load.messages).await;
}

async fn through_stomp_dispatch(
    cluster: &Cluster,
    load: Load,
    latencies: &mut mpsc::UnboundedReceiver<Duration>,
    epoch: Instant,
) {
    let (connection, channel) = amqp().await;
    let cpu = CpuMeter::start(cluster);
    let started = Instant::now();
    let mut unconfirmed = Vec::with_capacity(load.in_flight);
    for n in 0..load.messages {
        let mut headers = FieldTable::default();
        headers.insert(
            "stomp-user".into(),
            AMQPValue::LongString(format!("user-{}", n % USERS).as_str().into()),
        );
        headers.insert(
            "stomp-destination".into(),
            AMQPValue::LongString("bench".into()),
        );
        let body = nanos_since(epoch).to_string();
        let confirm = channel
            .basic_publish(
                "stomp.dispatch".into(),
                "".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_headers(headers),
            )
            .await
            .expect("publish");
        unconfirmed.push(confirm);
        if unconfirmed.len() == load.in_flight {
            for confirm in unconfirmed.drain(..) {
                confirm.await.expect("confirmed");
            }
        }
    }
    for confirm in unconfirmed {
        confirm.await.expect("confirmed");
    }
    let what = format!("stomp.dispatch, {} in flight", load.in_flight);
    report(&what, started, cpu, latencies, load.messages).await;
    let _ = connection.close(200, "done".into()).await;
}

fn main() {
    if !services_answer() {
        println!("dispatch: skipped, RabbitMQ or Redis does not answer on 127.0.0.1");
        return;
    }
    client_runtime().block_on(async {
        let cluster = Cluster::start(NODES, &[]);
        let epoch = Instant::now();
        let connecting = Instant::now();
        let mut latencies = connect_users(&cluster, epoch).await;
        println!(
            "dispatch: {NODES} nodes, {USERS} users connected in {:.1} s",
            connecting.elapsed().as_secs_f64()
        );
        for load in LOADS {
            through_http_api(&cluster, load, &mut latencies, epoch).await;
            through_stomp_dispatch(&cluster, load, &mut latencies, epoch).await;
        }
    });
}
