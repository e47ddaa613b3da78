//! Fan-out: one publisher, many subscribers of one topic. What a broadcast
//! (a price tick, a notice to everyone) costs per delivery.

use std::time::Instant;

use serde_json::json;

use super::{Bench, Subscription, gather_while_sending, note, open_subscribed, start_receiving};
use crate::cli::Sizes;
use crate::client::StompClient;
use crate::destination::ServerKind;
use crate::error::BenchError;
use crate::latency::LatencySummary;
use crate::process::ProcessWatch;
use crate::report::Report;
use crate::stamp::RunClock;

/// SENDs a sender queues before it flushes them to the socket in one go.
pub const SEND_BATCH: usize = 100;

/// Starts `publisher` sending `messages` stamped bodies of `body_bytes` to
/// `topic`, in batches; the task then waits, failing once the server
/// refuses the publisher.
pub fn publish_stamped(
    mut publisher: StompClient,
    topic: String,
    messages: usize,
    body_bytes: usize,
    clock: RunClock,
) -> tokio::task::JoinSet<Result<(), BenchError>> {
    let mut sending = tokio::task::JoinSet::new();
    sending.spawn(async move {
        for sent in 1..=messages {
            let body = clock.stamped_body(body_bytes);
            publisher
                .feed(format!(
                    "SEND\ndestination:{topic}\ncontent-length:{}\n\n{body}\0",
                    body.len()
                ))
                .await?;
            if sent % SEND_BATCH == 0 {
                publisher.flush().await?;
            }
        }
        publisher.flush().await?;
        Err(publisher.until_refused().await)
    });
    sending
}

pub async fn run(bench: &Bench, sizes: &Sizes) -> Result<Report, BenchError> {
    let run = bench.run_id();
    let topic = ServerKind::topic(&run);
    note(
        bench,
        format_args!(
            "fan-out: {} subscribers of {topic}, ack:{:?}",
            sizes.subscribers, sizes.ack
        ),
    );
    let opened = open_subscribed(bench, sizes.subscribers, 100, |_| Subscription {
        login: None,
        destination: topic.clone(),
        extra_headers: "",
        ack: sizes.ack,
    })
    .await?;
    let publisher = bench.sending.open(None).await?;

    let clock = RunClock::start();
    let receivers = start_receiving(opened.clients, sizes.messages, clock, sizes.ack);
    let watch = ProcessWatch::start(&bench.processes);
    let started = Instant::now();
    let sending = publish_stamped(
        publisher,
        topic.clone(),
        sizes.messages,
        sizes.body_bytes,
        clock,
    );
    let (latencies, last) = gather_while_sending(receivers, sending, bench.patience).await?;
    let deliveries = (sizes.subscribers * sizes.messages) as u64;
    let processes = watch.usage(deliveries, None);
    let mut report = Report::new(
        "fan-out",
        &bench.context,
        json!({
            "subscribers": sizes.subscribers,
            "messages": sizes.messages,
            "body_bytes": sizes.body_bytes,
            "ack": sizes.ack,
        }),
        "delivery",
        deliveries,
        last.saturating_duration_since(started).as_secs_f64(),
        processes,
    );
    report.latency = LatencySummary::of(latencies);
    Ok(report)
}
