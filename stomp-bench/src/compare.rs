//! `compare`: the one side-by-side measurement we document. Per scenario it
//! starts a fresh relay in embedded mode, one in cluster mode and two
//! cluster nodes, measures each and RabbitMQ Web-STOMP alike, prints every
//! run's report, then a table of the relays' figures over Web-STOMP's. It
//! finds the server processes itself, so that cluster mode's CPU is the
//! relays', RabbitMQ's and Redis's together, and cleans up what it made.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{CompareArgs, Connection, Contender, Scenario, Sizes};
use crate::client::{Target, TargetOptions};
use crate::destination::ServerKind;
use crate::error::BenchError;
use crate::leftovers;
use crate::process::ServerProcess;
use crate::relay_process::{ClusterServices, RelayProcess};
use crate::report::{Report, RunContext};
use crate::scenario::{self, Bench};

/// Users per request when compare runs the API scenario batched.
const COMPARE_BATCH: usize = 100;
/// The queue every relay of a RabbitMQ takes dispatch requests from.
const DISPATCH_QUEUE: &str = "stomp.dispatch";
/// How long RabbitMQ may take to delete a run's auto-delete queues.
const QUEUE_CLEANUP_PATIENCE: Duration = Duration::from_secs(120);

/// One scenario as compare runs it (the API scenario runs twice: one user
/// per request, and batched).
#[derive(Debug, Clone)]
struct Variant {
    scenario: Scenario,
    name: String,
    sizes: Sizes,
}

fn variants(scenarios: &[Scenario], sizes: &Sizes) -> Vec<Variant> {
    let mut variants = Vec::new();
    for &scenario in scenarios {
        if scenario == Scenario::Api {
            for batch in [None, Some(sizes.batch.unwrap_or(COMPARE_BATCH))] {
                variants.push(Variant {
                    scenario,
                    name: match batch {
                        None => "api (1 user per request)".to_owned(),
                        Some(batch) => format!("api ({batch} users per request)"),
                    },
                    sizes: Sizes {
                        batch,
                        ..sizes.clone()
                    },
                });
            }
        } else {
            let name = match scenario {
                Scenario::FanOut => format!("fan-out (ack:{:?})", sizes.ack).to_lowercase(),
                Scenario::Dispatch => format!("dispatch ({} in flight)", sizes.in_flight.max(1)),
                other => other.name().to_owned(),
            };
            variants.push(Variant {
                scenario,
                name,
                sizes: sizes.clone(),
            });
        }
    }
    variants
}

pub async fn run(
    connection: &Connection,
    sizes: &Sizes,
    args: &CompareArgs,
) -> Result<(), BenchError> {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let tag = format!("sb{}-", &random[..6]);
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let contenders = if args.only.is_empty() {
        Contender::ALL.to_vec()
    } else {
        args.only.clone()
    };
    eprintln!(
        "compare: run tag {tag}; relay {}; extra relay flags {:?}",
        args.relay_bin.display(),
        args.relay_args
    );
    let rabbitmq = ServerProcess::find("rabbitmq", "beam.smp");
    let redis = ServerProcess::find("redis", "redis-server");
    let web_stomp = web_stomp_target(connection, args).await;
    if let Err(error) = &web_stomp
        && contenders.contains(&Contender::WebStomp)
    {
        eprintln!(
            "compare: RabbitMQ Web-STOMP at {} does not answer ({error}); it is skipped",
            args.web_stomp_url
        );
    }

    let mut results: Vec<(Variant, Contender, Report)> = Vec::new();
    for variant in variants(&scenarios, sizes) {
        for &contender in &contenders {
            if !measures(contender, variant.scenario) {
                continue;
            }
            let bench_base = |receiving: Target, sending: Target, processes| Bench {
                context: RunContext::new(contender.label().to_owned(), &receiving, &sending),
                receiving,
                sending,
                amqp_url: connection.amqp_url.clone(),
                processes,
                patience: Duration::from_secs(connection.timeout),
                tag: tag.clone(),
            };
            let outcome = match contender {
                Contender::RelayEmbedded | Contender::RelayCluster | Contender::RelayTwoNodes => {
                    let cluster =
                        (contender != Contender::RelayEmbedded).then(|| ClusterServices {
                            amqp_url: connection.amqp_url.clone(),
                            redis_url: args.redis_url.clone(),
                            redis_prefix: format!("stomp-bench:{tag}:"),
                        });
                    let outcome = async {
                        let relays = start_relays(contender, &tag, args, cluster.as_ref()).await?;
                        if variant.scenario == Scenario::Dispatch {
                            dispatch_queue_is_ours(&tag)?;
                        }
                        let mut processes: Vec<ServerProcess> = relays
                            .iter()
                            .map(|relay| ServerProcess::new("relay", relay.pid()))
                            .collect();
                        if cluster.is_some() {
                            processes.extend(rabbitmq.iter().cloned());
                            processes.extend(redis.iter().cloned());
                        }
                        let target = |relay: &RelayProcess| {
                            let options = TargetOptions {
                                url: relay.ws_url(),
                                server: ServerKind::Relay,
                                login: "bench".to_owned(),
                                passcode: None,
                                host: connection.host.clone(),
                                source_addresses: connection.source_addresses,
                            };
                            async move { Target::resolve(&options).await }
                        };
                        // With two nodes, the receivers are on the second
                        // and the senders on the first.
                        let (first, last) = (&relays[0], &relays[relays.len() - 1]);
                        let bench =
                            bench_base(target(last).await?, target(first).await?, processes);
                        let report = scenario::run(variant.scenario, &bench, &variant.sizes).await;
                        // Stopped before the next run starts, and before its
                        // Redis keys are deleted.
                        drop(relays);
                        report
                    }
                    .await;
                    if let Some(cluster) = &cluster {
                        remove_redis_keys(&cluster.redis_url, &cluster.redis_prefix);
                    }
                    outcome
                }
                Contender::WebStomp => {
                    let Ok(target) = &web_stomp else { continue };
                    let processes = rabbitmq.iter().cloned().collect();
                    let outcome = scenario::run(
                        variant.scenario,
                        &bench_base(target.clone(), target.clone(), processes),
                        &variant.sizes,
                    )
                    .await;
                    await_queues_gone(&tag).await;
                    outcome
                }
            };
            match outcome {
                Ok(report) => {
                    report.print();
                    results.push((variant.clone(), contender, report));
                }
                Err(error) => {
                    eprintln!("[{}] {}: failed: {error}", contender.label(), variant.name)
                }
            }
            // The servers finish closing the last run's sessions.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    clean_up(&tag, &args.redis_url).await;
    let rows = ratio_rows(&results);
    print_table(&rows);
    match serde_json::to_string(&serde_json::json!({ "comparison": rows })) {
        Ok(line) => println!("{line}"),
        Err(error) => eprintln!("the comparison cannot be written as JSON: {error}"),
    }
    Ok(())
}

/// Whether compare runs `scenario` on `contender`: the HTTP API is the
/// relay's, and `stomp.dispatch` a relay cluster's (an embedded relay has
/// no RabbitMQ).
fn measures(contender: Contender, scenario: Scenario) -> bool {
    match scenario {
        Scenario::Api => contender != Contender::WebStomp,
        Scenario::Dispatch => matches!(
            contender,
            Contender::RelayCluster | Contender::RelayTwoNodes
        ),
        _ => true,
    }
}

/// Fails when relays other than this compare's consume `stomp.dispatch`
/// (those of other people's tests on a shared RabbitMQ): as competing
/// consumers they would take some of the run's requests, find none of its
/// users in their registry and drop them, and the receivers would wait in
/// vain. Consumer tags name their node, and this compare's node ids its
/// tag.
fn dispatch_queue_is_ours(tag: &str) -> Result<(), BenchError> {
    let consumers: Vec<String> = leftovers::rabbitmq_consumers(DISPATCH_QUEUE)?
        .into_iter()
        .filter(|consumer| !consumer.contains(tag))
        .collect();
    if consumers.is_empty() {
        Ok(())
    } else {
        Err(BenchError::SharedDispatchQueue { consumers })
    }
}

/// The relay nodes `contender` stands for, started and answering: one, or
/// two cluster nodes sharing RabbitMQ, Redis and the Redis prefix (so one
/// registry), each with a node id and port of its own.
async fn start_relays(
    contender: Contender,
    tag: &str,
    args: &CompareArgs,
    cluster: Option<&ClusterServices>,
) -> Result<Vec<RelayProcess>, BenchError> {
    let node_id = format!("stomp-bench-{tag}{}", contender.label());
    let node_ids = match contender {
        Contender::RelayTwoNodes => vec![format!("{node_id}-a"), format!("{node_id}-b")],
        _ => vec![node_id],
    };
    let mut relays = Vec::with_capacity(node_ids.len());
    for node_id in &node_ids {
        relays
            .push(RelayProcess::start(&args.relay_bin, node_id, cluster, &args.relay_args).await?);
    }
    Ok(relays)
}

/// Web-STOMP as the compare measures it, if it answers a CONNECT.
async fn web_stomp_target(
    connection: &Connection,
    args: &CompareArgs,
) -> Result<Target, BenchError> {
    let target = Target::resolve(&TargetOptions {
        url: args.web_stomp_url.clone(),
        server: ServerKind::Rabbitmq,
        login: args.web_stomp_login.clone(),
        passcode: Some(args.web_stomp_passcode.clone()),
        host: connection.host.clone(),
        source_addresses: connection.source_addresses,
    })
    .await?;
    let probe = tokio::time::timeout(Duration::from_secs(5), target.open(None))
        .await
        .map_err(|_| BenchError::Timeout {
            what: "a CONNECT".to_owned(),
            after: Duration::from_secs(5),
        })??;
    probe.close(Duration::from_secs(1)).await;
    Ok(target)
}

fn remove_redis_keys(redis_url: &str, prefix: &str) {
    match leftovers::delete_redis_keys(redis_url, prefix) {
        Ok(0) => {}
        Ok(count) => eprintln!("compare: deleted {count} Redis keys left under {prefix}"),
        Err(error) => eprintln!("compare: cannot clean Redis prefix {prefix}: {error}"),
    }
}

/// Queues of this compare's runs that RabbitMQ still has.
fn our_queues(tag: &str) -> Result<Vec<String>, BenchError> {
    Ok(leftovers::rabbitmq_queues()?
        .into_iter()
        .filter(|name| name.contains(tag))
        .collect())
}

/// Waits until RabbitMQ has deleted the run's auto-delete queues, so that
/// their deletion does not count against the next run.
async fn await_queues_gone(tag: &str) {
    let deadline = Instant::now() + QUEUE_CLEANUP_PATIENCE;
    while Instant::now() < deadline {
        match our_queues(tag) {
            Ok(queues) if queues.is_empty() => return,
            Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(error) => {
                eprintln!("compare: cannot list RabbitMQ's queues: {error}");
                return;
            }
        }
    }
}

/// Deletes whatever of this compare is left in Redis and RabbitMQ, and
/// says so.
async fn clean_up(tag: &str, redis_url: &str) {
    let prefix = format!("stomp-bench:{tag}");
    remove_redis_keys(redis_url, &prefix);
    match leftovers::redis_keys(redis_url, &prefix) {
        Ok(keys) if keys.is_empty() => eprintln!("compare: no Redis keys left under {prefix}"),
        Ok(keys) => eprintln!("compare: {} Redis keys left under {prefix}", keys.len()),
        Err(error) => eprintln!("compare: cannot check Redis: {error}"),
    }
    await_queues_gone(tag).await;
    match our_queues(tag) {
        Ok(queues) => {
            for queue in &queues {
                if let Err(error) = leftovers::delete_rabbitmq_queue(queue) {
                    eprintln!("compare: cannot delete queue {queue}: {error}");
                }
            }
            match our_queues(tag) {
                Ok(left) if left.is_empty() => eprintln!(
                    "compare: no RabbitMQ queues named with {tag} left ({} deleted by hand)",
                    queues.len()
                ),
                Ok(left) => eprintln!("compare: RabbitMQ queues left: {left:?}"),
                Err(error) => eprintln!("compare: cannot list RabbitMQ's queues: {error}"),
            }
        }
        Err(error) => eprintln!("compare: cannot list RabbitMQ's queues: {error}"),
    }
}

/// One line of the comparison: a figure of each contender and the relays'
/// ratios to Web-STOMP's.
#[derive(Debug, Serialize)]
struct RatioRow {
    scenario: String,
    metric: &'static str,
    relay_embedded: Option<f64>,
    relay_cluster: Option<f64>,
    relay_two_nodes: Option<f64>,
    web_stomp: Option<f64>,
    /// Which Web-STOMP run the ratios use (the API and dispatch scenarios
    /// have none of their own: their reference is Web-STOMP's per-user run).
    web_stomp_reference: String,
    cluster_over_web_stomp: Option<f64>,
    two_nodes_over_web_stomp: Option<f64>,
    embedded_over_web_stomp: Option<f64>,
}

fn ratio_rows(results: &[(Variant, Contender, Report)]) -> Vec<RatioRow> {
    let find = |name: &str, contender: Contender| {
        results
            .iter()
            .find(|(variant, c, _)| variant.name == name && *c == contender)
            .map(|(_, _, report)| report)
    };
    type Metric = (&'static str, fn(&Report) -> Option<f64>);
    let metrics: [Metric; 5] = [
        ("per second", |r| Some(r.per_second)),
        ("server CPU us per unit", |r| Some(r.cpu_us_per_unit)),
        ("p50 latency ms", |r| r.latency.map(|l| l.p50_us / 1000.0)),
        ("p99 latency ms", |r| r.latency.map(|l| l.p99_us / 1000.0)),
        ("memory KiB per session", |r| r.rss_per_session_kib),
    ];
    let mut variants: Vec<&Variant> = Vec::new();
    for (variant, _, _) in results {
        if !variants.iter().any(|seen| seen.name == variant.name) {
            variants.push(variant);
        }
    }
    let mut rows = Vec::new();
    for variant in variants {
        let name = variant.name.as_str();
        // The STOMP way of the same per-user delivery.
        let reference = match variant.scenario {
            Scenario::Api | Scenario::Dispatch => Scenario::PerUser.name(),
            _ => name,
        };
        let embedded = find(name, Contender::RelayEmbedded);
        let cluster = find(name, Contender::RelayCluster);
        let two_nodes = find(name, Contender::RelayTwoNodes);
        let web_stomp = find(reference, Contender::WebStomp);
        for (metric, value) in metrics {
            let (embedded, cluster, two_nodes, web_stomp) = (
                embedded.and_then(value),
                cluster.and_then(value),
                two_nodes.and_then(value),
                web_stomp.and_then(value),
            );
            if embedded.or(cluster).or(two_nodes).or(web_stomp).is_none() {
                continue;
            }
            // The API's requests are a few at a time (closed loop), the
            // STOMP senders' a burst: their latencies are not comparable.
            let comparable = reference == name || !metric.contains("latency");
            let over =
                |relay: Option<f64>| Some(relay? / web_stomp.filter(|w| *w != 0.0 && comparable)?);
            rows.push(RatioRow {
                scenario: name.to_owned(),
                metric,
                relay_embedded: embedded,
                relay_cluster: cluster,
                relay_two_nodes: two_nodes,
                web_stomp,
                web_stomp_reference: reference.to_owned(),
                cluster_over_web_stomp: over(cluster),
                two_nodes_over_web_stomp: over(two_nodes),
                embedded_over_web_stomp: over(embedded),
            });
        }
    }
    rows
}

/// The comparison as a Markdown table on stderr, for people.
fn print_table(rows: &[RatioRow]) {
    let figure = |value: Option<f64>| match value {
        None => "-".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    };
    let ratio = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.2}x"));
    eprintln!();
    eprintln!(
        "| scenario | metric | relay embedded | relay cluster | relay two nodes | Web-STOMP | cluster / Web-STOMP | two nodes / Web-STOMP | embedded / Web-STOMP |"
    );
    eprintln!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        let web_stomp = if row.web_stomp_reference == row.scenario || row.web_stomp.is_none() {
            figure(row.web_stomp)
        } else {
            format!("{} ({})", figure(row.web_stomp), row.web_stomp_reference)
        };
        eprintln!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.metric,
            figure(row.relay_embedded),
            figure(row.relay_cluster),
            figure(row.relay_two_nodes),
            web_stomp,
            ratio(row.cluster_over_web_stomp),
            ratio(row.two_nodes_over_web_stomp),
            ratio(row.embedded_over_web_stomp),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencySummary;

    fn report(label: &str, per_second: f64) -> Report {
        let context = RunContext {
            label: label.to_owned(),
            server: ServerKind::Relay,
            url: "ws://127.0.0.1:1/ws".to_owned(),
            send_url: None,
        };
        let mut report = Report::new(
            "any",
            &context,
            serde_json::Value::Null,
            "message",
            1,
            1.0,
            Vec::new(),
        );
        report.per_second = per_second;
        report.latency = LatencySummary::of(vec![2_000_000]);
        report
    }

    fn sizes() -> Sizes {
        use clap::Parser;
        crate::cli::Cli::parse_from(["stomp-bench", "per-user"]).sizes
    }

    #[test]
    fn only_relay_clusters_run_dispatch_and_web_stomp_runs_no_relay_api() {
        let runs = |scenario| {
            Contender::ALL
                .into_iter()
                .filter(|&contender| measures(contender, scenario))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            runs(Scenario::Dispatch),
            [Contender::RelayCluster, Contender::RelayTwoNodes]
        );
        assert!(!runs(Scenario::Api).contains(&Contender::WebStomp));
        assert_eq!(runs(Scenario::PerUser), Contender::ALL);
    }

    #[test]
    fn dispatch_is_set_against_web_stomp_per_user_without_latency_ratios() {
        let variant = |scenario| {
            variants(&[scenario], &sizes())
                .pop()
                .expect("a variant per scenario")
        };
        let (per_user, dispatch) = (variant(Scenario::PerUser), variant(Scenario::Dispatch));
        assert_eq!(dispatch.name, "dispatch (64 in flight)");
        let results = [
            (per_user, Contender::WebStomp, report("web-stomp", 100.0)),
            (
                dispatch.clone(),
                Contender::RelayCluster,
                report("relay-cluster", 300.0),
            ),
            (
                dispatch,
                Contender::RelayTwoNodes,
                report("relay-two-nodes", 200.0),
            ),
        ];
        let rows = ratio_rows(&results);
        let row = |metric| {
            rows.iter()
                .find(|row| row.scenario.starts_with("dispatch") && row.metric == metric)
                .expect("a dispatch row")
        };
        let rate = row("per second");
        assert_eq!(rate.web_stomp_reference, "per-user");
        assert_eq!(rate.web_stomp, Some(100.0));
        assert_eq!(rate.relay_embedded, None);
        assert_eq!(rate.cluster_over_web_stomp, Some(3.0));
        assert_eq!(rate.two_nodes_over_web_stomp, Some(2.0));
        let latency = row("p50 latency ms");
        assert_eq!(latency.relay_two_nodes, Some(2.0));
        assert_eq!(latency.two_nodes_over_web_stomp, None);
    }
}
