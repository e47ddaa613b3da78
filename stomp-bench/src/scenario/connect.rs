//! Connect: sessions set up as fast as the server lets them, a few at a
//! time: TCP, WebSocket handshake, CONNECT -> CONNECTED, SUBSCRIBE ->
//! RECEIPT. What a reconnect storm (a deploy, a network blip) costs.

use std::time::Duration;

use serde_json::json;

use super::{Bench, Subscription, note, open_subscribed};
use crate::cli::Sizes;
use crate::client::AckMode;
use crate::destination::ServerKind;
use crate::error::BenchError;
use crate::latency::LatencySummary;
use crate::process::ProcessWatch;
use crate::report::Report;

/// Session `n`'s subscription: its own user destination (or transient
/// queue), or with `topic` one topic all share.
pub fn session_subscription(bench: &Bench, run: &str, n: usize, topic: bool) -> Subscription {
    if topic {
        return Subscription {
            login: None,
            destination: ServerKind::topic(run),
            extra_headers: "",
            ack: AckMode::Auto,
        };
    }
    let destination = bench.receiving.server.private_destination(run, n, "x");
    Subscription {
        login: destination.login,
        destination: destination.subscribe_to,
        extra_headers: destination.extra_headers,
        ack: AckMode::Auto,
    }
}

pub async fn run(bench: &Bench, sizes: &Sizes) -> Result<Report, BenchError> {
    let run = bench.run_id();
    note(
        bench,
        format_args!(
            "connect: {} sessions, {} at a time, {}",
            sizes.clients,
            sizes.concurrency,
            if sizes.topic {
                "one topic"
            } else {
                "each its own destination"
            }
        ),
    );
    let watch = ProcessWatch::start(&bench.processes);
    let opened = open_subscribed(bench, sizes.clients, sizes.concurrency, |n| {
        session_subscription(bench, &run, n, sizes.topic)
    })
    .await?;
    let processes = watch.usage(sizes.clients as u64, None);
    let mut report = Report::new(
        "connect",
        &bench.context,
        json!({
            "clients": sizes.clients,
            "concurrency": sizes.concurrency,
            "topic": sizes.topic,
        }),
        "session",
        sizes.clients as u64,
        opened.elapsed.as_secs_f64(),
        processes,
    );
    report.latency = LatencySummary::of(opened.set_up_ns);
    close_all(opened.clients).await;
    Ok(report)
}

/// Closes sessions a few hundred at a time, so that the server sees clean
/// closes rather than thousands of resets at once.
pub async fn close_all(clients: Vec<crate::client::StompClient>) {
    let mut clients = clients.into_iter().peekable();
    while clients.peek().is_some() {
        let batch: Vec<_> = clients
            .by_ref()
            .take(500)
            .map(|client| tokio::spawn(client.close(Duration::from_secs(2))))
            .collect();
        for closing in batch {
            let _ = closing.await;
        }
    }
}
