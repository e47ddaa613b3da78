//! Idle: many sessions, each with a subscription of its own, doing nothing.
//! What holding a user's connection costs in memory: how many users one
//! server can hold.

use std::time::Duration;

use serde_json::json;

use super::connect::{close_all, session_subscription};
use super::{Bench, note, open_subscribed};
use crate::cli::Sizes;
use crate::error::BenchError;
use crate::latency::LatencySummary;
use crate::process::ProcessWatch;
use crate::report::Report;

/// How long the servers are left to settle (free what the set-up
/// allocated, finish background work) before memory is read.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(bench: &Bench, sizes: &Sizes) -> Result<Report, BenchError> {
    let run = bench.run_id();
    note(
        bench,
        format_args!(
            "idle: {} sessions, {} at a time",
            sizes.sessions, sizes.concurrency
        ),
    );
    tokio::time::sleep(SETTLE).await;
    let watch = ProcessWatch::start(&bench.processes);
    let opened = open_subscribed(bench, sizes.sessions, sizes.concurrency, |n| {
        session_subscription(bench, &run, n, sizes.topic)
    })
    .await?;
    tokio::time::sleep(SETTLE).await;
    let sessions = sizes.sessions as u64;
    let processes = watch.usage(sessions, Some(sessions));
    let mut report = Report::new(
        "idle",
        &bench.context,
        json!({
            "sessions": sizes.sessions,
            "concurrency": sizes.concurrency,
            "topic": sizes.topic,
        }),
        "session",
        sessions,
        opened.elapsed.as_secs_f64(),
        processes,
    );
    report.latency = LatencySummary::of(opened.set_up_ns);
    note(bench, "idle: closing the sessions");
    close_all(opened.clients).await;
    Ok(report)
}
