//! Per-user: every receiver on a destination of its own, one or several
//! senders writing to each in turn. What private notifications cost: on the
//! relay through user destinations, on RabbitMQ through a transient queue
//! per receiver.

use std::time::Instant;

use serde_json::json;

use super::fan_out::SEND_BATCH;
use super::{Bench, Subscription, gather_while_sending, note, open_subscribed, start_receiving};
use crate::cli::Sizes;
use crate::client::AckMode;
use crate::destination::{PrivateDestination, ServerKind};
use crate::error::BenchError;
use crate::latency::LatencySummary;
use crate::process::ProcessWatch;
use crate::report::Report;
use crate::stamp::RunClock;

pub async fn run(bench: &Bench, sizes: &Sizes) -> Result<Report, BenchError> {
    let run = bench.run_id();
    let senders = sizes.senders.clamp(1, sizes.receivers.max(1));
    let destinations: Vec<PrivateDestination> = (0..sizes.receivers)
        .map(|n| bench.receiving.server.private_destination(&run, n, "bench"))
        .collect();
    note(
        bench,
        format_args!(
            "per-user: {senders} sender(s) -> {} receivers x {} rounds",
            sizes.receivers, sizes.rounds
        ),
    );
    let opened = open_subscribed(bench, sizes.receivers, 100, |n| Subscription {
        login: destinations[n].login.clone(),
        destination: destinations[n].subscribe_to.clone(),
        extra_headers: destinations[n].extra_headers,
        ack: AckMode::Auto,
    })
    .await?;
    let mut sender_clients = Vec::with_capacity(senders);
    for k in 0..senders {
        let login = match bench.receiving.server {
            ServerKind::Relay => Some(format!("sender{k}-{run}")),
            ServerKind::Rabbitmq => None,
        };
        sender_clients.push(bench.sending.open(login.as_deref()).await?);
    }

    let clock = RunClock::start();
    let receivers = start_receiving(opened.clients, sizes.rounds, clock, AckMode::Auto);
    let watch = ProcessWatch::start(&bench.processes);
    let started = Instant::now();
    let destinations = std::sync::Arc::new(destinations);
    let mut sending = tokio::task::JoinSet::new();
    for (k, mut sender) in sender_clients.into_iter().enumerate() {
        let (destinations, rounds, body_bytes) =
            (destinations.clone(), sizes.rounds, sizes.body_bytes);
        sending.spawn(async move {
            let mut written = 0;
            for _ in 0..rounds {
                // Sender k writes to receivers k, k + senders, ...
                for destination in destinations.iter().skip(k).step_by(senders) {
                    let body = clock.stamped_body(body_bytes);
                    sender
                        .feed(format!(
                            "SEND\ndestination:{}\n{}content-length:{}\n\n{body}\0",
                            destination.send_to,
                            destination.extra_headers,
                            body.len()
                        ))
                        .await?;
                    written += 1;
                    if written % SEND_BATCH == 0 {
                        sender.flush().await?;
                    }
                }
            }
            sender.flush().await?;
            Err(sender.until_refused().await)
        });
    }
    let (latencies, last) = gather_while_sending(receivers, sending, bench.patience).await?;
    let messages = (sizes.receivers * sizes.rounds) as u64;
    let processes = watch.usage(messages, None);
    let mut report = Report::new(
        "per-user",
        &bench.context,
        json!({
            "receivers": sizes.receivers,
            "rounds": sizes.rounds,
            "senders": senders,
            "body_bytes": sizes.body_bytes,
        }),
        "message",
        messages,
        last.saturating_duration_since(started).as_secs_f64(),
        processes,
    );
    report.latency = LatencySummary::of(latencies);
    Ok(report)
}
