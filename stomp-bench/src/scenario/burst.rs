//! Burst: far more published at once than some subscribers read. What a
//! server holds when clients fall behind: its memory before, at the peak
//! of, and after a burst of `--burst-mib` MiB to one topic with `--slow`
//! subscribers that never read and one that reads everything.

use std::time::{Duration, Instant};

use serde_json::json;

use super::fan_out::publish_stamped;
use super::{Bench, Subscription, gather_while_sending, note, open_subscribed, start_receiving};
use crate::cli::Sizes;
use crate::client::AckMode;
use crate::destination::ServerKind;
use crate::error::BenchError;
use crate::latency::LatencySummary;
use crate::process::{PeakSampler, ProcessWatch};
use crate::report::Report;
use crate::stamp::RunClock;

/// How long the servers are left to free what the burst took before
/// memory is read again.
const SETTLE: Duration = Duration::from_secs(3);

pub async fn run(bench: &Bench, sizes: &Sizes) -> Result<Report, BenchError> {
    let run = bench.run_id();
    let topic = ServerKind::topic(&run);
    let body_bytes = sizes.burst_body_bytes.max(20);
    let messages = (sizes.burst_mib * 1_048_576).div_ceil(body_bytes);
    note(
        bench,
        format_args!(
            "burst: {messages} messages of {body_bytes} bytes to {topic}, {} subscribers that never read, one that reads",
            sizes.slow
        ),
    );
    let subscription = |_| Subscription {
        login: None,
        destination: topic.clone(),
        extra_headers: "",
        ack: AckMode::Auto,
    };
    let slow = open_subscribed(bench, sizes.slow, 50, subscription).await?;
    let reader = open_subscribed(bench, 1, 1, subscription).await?;
    let publisher = bench.sending.open(None).await?;

    let watch = ProcessWatch::start(&bench.processes);
    let peaks = PeakSampler::start(&bench.processes);
    let clock = RunClock::start();
    let receivers = start_receiving(reader.clients, messages, clock, AckMode::Auto);
    let started = Instant::now();
    let sending = publish_stamped(publisher, topic.clone(), messages, body_bytes, clock);
    let (latencies, last) = gather_while_sending(receivers, sending, bench.patience).await?;
    // The slow subscribers leave (those the server has not closed already).
    drop(slow.clients);
    tokio::time::sleep(SETTLE).await;
    let peaks = peaks.finish().await;
    let mut processes = watch.usage(messages as u64, None);
    for usage in &mut processes {
        usage.rss_peak_mib = peaks
            .iter()
            .find(|(name, _)| *name == usage.name)
            .map(|(_, bytes)| *bytes as f64 / 1_048_576.0);
    }
    let mut report = Report::new(
        "burst",
        &bench.context,
        json!({
            "burst_mib": sizes.burst_mib,
            "body_bytes": body_bytes,
            "messages": messages,
            "slow_subscribers": sizes.slow,
        }),
        "message",
        messages as u64,
        last.saturating_duration_since(started).as_secs_f64(),
        processes,
    );
    report.latency = LatencySummary::of(latencies);
    Ok(report)
}
