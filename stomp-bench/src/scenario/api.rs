//! API: the per-user delivery of [`super::per_user`], sent through the
//! relay's HTTP API instead of STOMP, as a backend service would: one user
//! per `POST /api/v1/users/{user}/messages`, or `--batch` users per
//! `POST /api/v1/messages`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;

use super::{Bench, Subscription, gather_while_sending, note, open_subscribed, start_receiving};
use crate::cli::Sizes;
use crate::client::AckMode;
use crate::destination::ServerKind;
use crate::error::BenchError;
use crate::http::HttpClient;
use crate::latency::LatencySummary;
use crate::process::ProcessWatch;
use crate::report::Report;
use crate::stamp::RunClock;

/// The most users one `POST /api/v1/messages` may name (the relay's limit).
const MAX_BATCH: usize = 10_000;

/// One request: the users it addresses.
struct Request {
    users: std::ops::Range<usize>,
}

pub async fn run(bench: &Bench, sizes: &Sizes) -> Result<Report, BenchError> {
    if bench.receiving.server != ServerKind::Relay {
        return Err(BenchError::Http(
            "the api scenario drives stomp-relay's HTTP API: use --server relay".to_owned(),
        ));
    }
    let run = bench.run_id();
    let batch = sizes.batch.map(|batch| batch.clamp(1, MAX_BATCH));
    let users: Arc<Vec<String>> = Arc::new(
        (0..sizes.receivers)
            .map(|n| format!("u{n}-{run}"))
            .collect(),
    );
    note(
        bench,
        format_args!(
            "api: {} receivers x {} rounds, {}, {} connections",
            sizes.receivers,
            sizes.rounds,
            batch.map_or("one user per request".to_owned(), |batch| format!(
                "{batch} users per request"
            )),
            sizes.http_connections
        ),
    );
    let opened = open_subscribed(bench, sizes.receivers, 100, |n| Subscription {
        login: Some(users[n].clone()),
        destination: "/user/queue/bench".to_owned(),
        extra_headers: "",
        ack: AckMode::Auto,
    })
    .await?;

    let chunk = batch.unwrap_or(1);
    let requests: Arc<Vec<Request>> = Arc::new(
        (0..sizes.rounds)
            .flat_map(|_| {
                (0..sizes.receivers)
                    .step_by(chunk)
                    .map(move |first| Request {
                        users: first..(first + chunk).min(sizes.receivers),
                    })
            })
            .collect(),
    );
    let http = HttpClient::new(sizes.http_connections);
    let origin = bench.sending.http_origin();
    let next_request = Arc::new(AtomicUsize::new(0));

    let clock = RunClock::start();
    let receivers = start_receiving(opened.clients, sizes.rounds, clock, AckMode::Auto);
    let watch = ProcessWatch::start(&bench.processes);
    let started = Instant::now();
    let mut posting = tokio::task::JoinSet::new();
    for _ in 0..sizes.http_connections.max(1) {
        {
            let (http, origin, users, requests, next_request, body_bytes) = (
                http.clone(),
                origin.clone(),
                users.clone(),
                requests.clone(),
                next_request.clone(),
                sizes.body_bytes,
            );
            posting.spawn(async move {
                while let Some(request) = requests.get(next_request.fetch_add(1, Ordering::Relaxed))
                {
                    let body = clock.stamped_body(body_bytes);
                    let (url, json) = match batch {
                        None => (
                            format!(
                                "{origin}/api/v1/users/{}/messages",
                                users[request.users.start]
                            ),
                            json!({ "destination": "/user/queue/bench", "body": body }),
                        ),
                        Some(_) => (
                            format!("{origin}/api/v1/messages"),
                            json!({
                                "destination": "/user/queue/bench",
                                "body": body,
                                "users": &users[request.users.clone()],
                            }),
                        ),
                    };
                    let answer = http.post_json(&url, Bytes::from(json.to_string())).await?;
                    if !answer.status.is_success() {
                        return Err(BenchError::Http(format!(
                            "{url} answered {}: {}",
                            answer.status,
                            String::from_utf8_lossy(&answer.body)
                        )));
                    }
                }
                Ok::<_, BenchError>(())
            });
        }
    }
    let (latencies, last) = gather_while_sending(receivers, posting, bench.patience).await?;
    let messages = (sizes.receivers * sizes.rounds) as u64;
    let processes = watch.usage(messages, None);
    let mut report = Report::new(
        "api",
        &bench.context,
        json!({
            "receivers": sizes.receivers,
            "rounds": sizes.rounds,
            "batch": batch,
            "requests": requests.len(),
            "http_connections": sizes.http_connections,
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
