//! Dispatch: the per-user delivery of [`super::api`], asked for by a
//! backend service over AMQP instead of HTTP, as docs/clients.md shows it:
//! one request per user, published to the `stomp.dispatch` exchange with
//! `stomp-user` and `stomp-destination` headers, with publisher confirms
//! and at most `--in-flight` requests unconfirmed. The relay's nodes take
//! the requests off the `stomp.dispatch` queue as competing consumers.
//! Cluster mode only: Web-STOMP and an embedded relay have no
//! `stomp.dispatch`.

use std::collections::VecDeque;
use std::time::Instant;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};
use serde_json::json;

use super::{Bench, Subscription, gather_while_sending, note, open_subscribed, start_receiving};
use crate::cli::Sizes;
use crate::client::AckMode;
use crate::destination::ServerKind;
use crate::error::BenchError;
use crate::latency::LatencySummary;
use crate::process::ProcessWatch;
use crate::report::Report;
use crate::stamp::RunClock;

/// The exchange services publish dispatch requests to.
const DISPATCH_EXCHANGE: &str = "stomp.dispatch";
/// The user destination every request names, which the receivers
/// subscribe to.
const DESTINATION: &str = "/user/queue/bench";

pub async fn run(bench: &Bench, sizes: &Sizes) -> Result<Report, BenchError> {
    if bench.receiving.server != ServerKind::Relay {
        return Err(BenchError::Amqp {
            what: "run the dispatch scenario",
            reason: "stomp.dispatch is stomp-relay's (in cluster mode): use --server relay"
                .to_owned(),
        });
    }
    let run = bench.run_id();
    let in_flight = sizes.in_flight.max(1);
    let users: Vec<String> = (0..sizes.receivers)
        .map(|n| format!("u{n}-{run}"))
        .collect();
    note(
        bench,
        format_args!(
            "dispatch: {} receivers x {} rounds, one user per request, {in_flight} in flight, through {DISPATCH_EXCHANGE}",
            sizes.receivers, sizes.rounds
        ),
    );
    let opened = open_subscribed(bench, sizes.receivers, 100, |n| Subscription {
        login: Some(users[n].clone()),
        destination: DESTINATION.to_owned(),
        extra_headers: "",
        ack: AckMode::Auto,
    })
    .await?;
    let (connection, channel) = connect(&bench.amqp_url).await?;

    let clock = RunClock::start();
    let receivers = start_receiving(opened.clients, sizes.rounds, clock, AckMode::Auto);
    let watch = ProcessWatch::start(&bench.processes);
    let started = Instant::now();
    let mut publishing = tokio::task::JoinSet::new();
    let (rounds, body_bytes) = (sizes.rounds, sizes.body_bytes);
    publishing.spawn(async move {
        publish(&channel, &users, rounds, in_flight, body_bytes, clock).await
    });
    let gathered = gather_while_sending(receivers, publishing, bench.patience).await;
    // The service's connection ends with the run, as a clean close rather
    // than a dropped socket RabbitMQ would log.
    let _ = connection.close(200, "the run is over".into()).await;
    let (latencies, last) = gathered?;
    let messages = (sizes.receivers * sizes.rounds) as u64;
    let processes = watch.usage(messages, None);
    let mut report = Report::new(
        "dispatch",
        &bench.context,
        json!({
            "receivers": sizes.receivers,
            "rounds": sizes.rounds,
            "in_flight": in_flight,
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

/// A connection to RabbitMQ as a service opens one, and a channel in
/// confirm mode.
async fn connect(amqp_url: &str) -> Result<(Connection, Channel), BenchError> {
    let failed = |what| {
        move |error: lapin::Error| BenchError::Amqp {
            what,
            reason: error.to_string(),
        }
    };
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .map_err(failed("connect"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(failed("open a channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(failed("turn publisher confirms on"))?;
    Ok((connection, channel))
}

/// Publishes `rounds` requests to each of `users`, each body stamped as it
/// is published, keeping at most `in_flight` unconfirmed: a closed loop,
/// like the API scenario's HTTP requests.
async fn publish(
    channel: &Channel,
    users: &[String],
    rounds: usize,
    in_flight: usize,
    body_bytes: usize,
    clock: RunClock,
) -> Result<(), BenchError> {
    let mut unconfirmed = VecDeque::with_capacity(in_flight);
    for _ in 0..rounds {
        for user in users {
            if unconfirmed.len() == in_flight
                && let Some(oldest) = unconfirmed.pop_front()
            {
                confirmed(oldest).await?;
            }
            let mut headers = FieldTable::default();
            headers.insert(
                "stomp-user".into(),
                AMQPValue::LongString(user.as_str().into()),
            );
            headers.insert(
                "stomp-destination".into(),
                AMQPValue::LongString(DESTINATION.into()),
            );
            let body = clock.stamped_body(body_bytes);
            let confirm = channel
                .basic_publish(
                    DISPATCH_EXCHANGE.into(),
                    "".into(),
                    // Mandatory: with no relay's stomp.dispatch queue bound,
                    // the request comes back rather than vanishing.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body.as_bytes(),
                    BasicProperties::default().with_headers(headers),
                )
                .await
                .map_err(|error| BenchError::Amqp {
                    what: "publish to stomp.dispatch",
                    reason: error.to_string(),
                })?;
            unconfirmed.push_back(confirm);
        }
    }
    for confirm in unconfirmed {
        confirmed(confirm).await?;
    }
    Ok(())
}

/// Waits for RabbitMQ to take one request into the `stomp.dispatch` queue.
async fn confirmed(confirm: PublisherConfirm) -> Result<(), BenchError> {
    let refused = |reason: &str| BenchError::Amqp {
        what: "hand a request to stomp.dispatch",
        reason: reason.to_owned(),
    };
    match confirm.await {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(_))) => Err(refused(
            "the exchange routes to no queue (is a relay in cluster mode running?)",
        )),
        Ok(Confirmation::Nack(_)) => Err(refused("RabbitMQ refused it (nack)")),
        Ok(Confirmation::NotRequested) => Err(refused("publisher confirms are off")),
        Err(error) => Err(refused(&error.to_string())),
    }
}
