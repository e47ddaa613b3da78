//! The scenarios, one file each, and what they share: opening many
//! subscribed sessions a few at a time, and gathering what the receivers
//! saw within the run's patience.

pub mod api;
pub mod burst;
pub mod connect;
pub mod dispatch;
pub mod fan_out;
pub mod idle;
pub mod per_user;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::client::{AckMode, Arrivals, StompClient, Target};
use crate::error::BenchError;
use crate::process::ServerProcess;
use crate::report::RunContext;

/// Runs one scenario and returns its report.
pub async fn run(
    scenario: crate::cli::Scenario,
    bench: &Bench,
    sizes: &crate::cli::Sizes,
) -> Result<crate::report::Report, BenchError> {
    use crate::cli::Scenario;
    match scenario {
        Scenario::FanOut => fan_out::run(bench, sizes).await,
        Scenario::PerUser => per_user::run(bench, sizes).await,
        Scenario::Api => api::run(bench, sizes).await,
        Scenario::Dispatch => dispatch::run(bench, sizes).await,
        Scenario::Connect => connect::run(bench, sizes).await,
        Scenario::Idle => idle::run(bench, sizes).await,
        Scenario::Burst => burst::run(bench, sizes).await,
    }
}

/// Everything a scenario needs to know about where it runs.
#[derive(Debug, Clone)]
pub struct Bench {
    /// Where receivers, subscribers and held sessions connect.
    pub receiving: Target,
    /// Where senders, publishers and HTTP API calls go: the same server as
    /// `receiving`, or another node of its cluster, so that every message
    /// crosses RabbitMQ on its way.
    pub sending: Target,
    /// RabbitMQ, where the dispatch scenario's service publishes.
    pub amqp_url: String,
    /// The server processes whose CPU and memory the report gives.
    pub processes: Vec<ServerProcess>,
    pub context: RunContext,
    /// How long a phase (setting up, receiving) may take before the run
    /// gives up: a server that drops messages must not hang the bench.
    pub patience: Duration,
    /// Starts every name the run creates on the server (users, queues),
    /// so that whoever cleans up can find them.
    pub tag: String,
}

impl Bench {
    /// A fresh id for one run, beginning with the bench's tag.
    pub fn run_id(&self) -> String {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{}{}", self.tag, &random[..8])
    }
}

/// What one session subscribes to as it is opened.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub login: Option<String>,
    pub destination: String,
    pub extra_headers: &'static str,
    pub ack: AckMode,
}

/// Sessions opened and subscribed, with how long each took (from the TCP
/// connect to the SUBSCRIBE's receipt) and how long all took.
pub struct Opened {
    pub clients: Vec<StompClient>,
    pub set_up_ns: Vec<u64>,
    pub elapsed: Duration,
}

/// Opens `count` sessions, `concurrency` at a time, session `n` subscribed
/// as `subscription(n)` says.
pub async fn open_subscribed(
    bench: &Bench,
    count: usize,
    concurrency: usize,
    subscription: impl Fn(usize) -> Subscription,
) -> Result<Opened, BenchError> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let tasks: Vec<JoinHandle<Result<(StompClient, u64), BenchError>>> = (0..count)
        .map(|n| {
            let (target, permits, subscription) =
                (bench.receiving.clone(), permits.clone(), subscription(n));
            tokio::spawn(async move {
                // The semaphore is never closed, so acquiring cannot fail.
                let _permit = permits.acquire_owned().await.ok();
                let began = Instant::now();
                let mut client = target.open(subscription.login.as_deref()).await?;
                client
                    .subscribe(
                        &subscription.destination,
                        subscription.ack,
                        subscription.extra_headers,
                    )
                    .await?;
                let took = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
                Ok((client, took))
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + bench.patience;
    let mut opened = Opened {
        clients: Vec::with_capacity(count),
        set_up_ns: Vec::with_capacity(count),
        elapsed: Duration::ZERO,
    };
    let mut tasks = tasks.into_iter();
    while let Some(task) = tasks.next() {
        let outcome = tokio::time::timeout_at(deadline, task).await;
        let failure = match outcome {
            Ok(Ok(Ok((client, took)))) => {
                opened.clients.push(client);
                opened.set_up_ns.push(took);
                continue;
            }
            Ok(Ok(Err(error))) => error,
            Ok(Err(join)) => BenchError::Task(join),
            Err(_) => BenchError::Timeout {
                what: format!("opening {count} sessions ({} opened)", opened.clients.len()),
                after: bench.patience,
            },
        };
        tasks.for_each(|task| task.abort());
        return Err(failure);
    }
    opened.elapsed = started.elapsed();
    Ok(opened)
}

/// Each client reads `expected` stamped messages on a task of its own.
pub fn start_receiving(
    clients: Vec<StompClient>,
    expected: usize,
    clock: crate::stamp::RunClock,
    ack: AckMode,
) -> Vec<JoinHandle<Result<Arrivals, BenchError>>> {
    clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let arrivals = client.receive(expected, clock, ack).await;
                // Dropped here: the run is over for this session.
                arrivals
            })
        })
        .collect()
}

/// Every receiver's latencies and when the last message arrived.
pub async fn gather(
    receivers: Vec<JoinHandle<Result<Arrivals, BenchError>>>,
    patience: Duration,
) -> Result<(Vec<u64>, Instant), BenchError> {
    let deadline = tokio::time::Instant::now() + patience;
    let total = receivers.len();
    let mut latencies = Vec::new();
    let mut last = Instant::now();
    let mut finished = 0;
    let mut receivers = receivers.into_iter();
    while let Some(receiver) = receivers.next() {
        let failure = match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(Ok(arrivals))) => {
                latencies.extend(arrivals.latencies_ns);
                if let Some(at) = arrivals.last {
                    last = if finished == 0 { at } else { last.max(at) };
                }
                finished += 1;
                continue;
            }
            Ok(Ok(Err(error))) => error,
            Ok(Err(join)) => BenchError::Task(join),
            Err(_) => BenchError::Timeout {
                what: format!("the deliveries ({finished} of {total} receivers had all theirs)"),
                after: patience,
            },
        };
        receivers.for_each(|receiver| receiver.abort());
        return Err(failure);
    }
    Ok((latencies, last))
}

/// [`gather`], failing as soon as one of `senders` fails: a sender the
/// server refused sends nothing more, and its receivers would wait in vain.
/// Senders that finish are fine; the rest are stopped when the receivers
/// are done.
pub async fn gather_while_sending(
    receivers: Vec<JoinHandle<Result<Arrivals, BenchError>>>,
    mut senders: tokio::task::JoinSet<Result<(), BenchError>>,
    patience: Duration,
) -> Result<(Vec<u64>, Instant), BenchError> {
    let receiving: Vec<_> = receivers.iter().map(JoinHandle::abort_handle).collect();
    let gathering = gather(receivers, patience);
    tokio::pin!(gathering);
    loop {
        let failure = tokio::select! {
            gathered = &mut gathering => return gathered,
            Some(joined) = senders.join_next() => match joined {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error,
                Err(join) => BenchError::Task(join),
            },
        };
        receiving.iter().for_each(|receiver| receiver.abort());
        return Err(failure);
    }
}

/// A note on stderr, for the person watching the run.
pub fn note(bench: &Bench, text: impl std::fmt::Display) {
    eprintln!("[{}] {text}", bench.context.label);
}
