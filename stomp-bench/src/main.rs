//! stomp-bench: drives a STOMP-over-WebSocket server from outside and
//! prints what it measured, one JSON object per run on stdout (notes for
//! people go to stderr). `compare` starts stomp-relay itself and measures
//! it beside RabbitMQ Web-STOMP; see docs/performance.md.

mod cli;
mod client;
mod compare;
mod destination;
mod error;
mod frames;
mod http;
mod latency;
mod leftovers;
mod process;
mod relay_process;
mod report;
mod scenario;
mod stamp;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Command, Scenario};
use client::{Target, TargetOptions};
use process::ServerProcess;
use report::RunContext;
use scenario::Bench;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    raise_open_file_limit();
    // Two workers: the clients share this machine's cores with the servers
    // they measure, and must not crowd them out.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let scenario = match &cli.command {
        Command::Compare(args) => {
            return Ok(compare::run(&cli.connection, &cli.sizes, args).await?);
        }
        Command::FanOut => Scenario::FanOut,
        Command::PerUser => Scenario::PerUser,
        Command::Api => Scenario::Api,
        Command::Dispatch => Scenario::Dispatch,
        Command::Connect => Scenario::Connect,
        Command::Idle => Scenario::Idle,
        Command::Burst => Scenario::Burst,
    };
    let connection = &cli.connection;
    let options = |url: &str| TargetOptions {
        url: url.to_owned(),
        server: connection.server,
        login: connection.login.clone(),
        passcode: connection.passcode.clone(),
        host: connection.host.clone(),
        source_addresses: connection.source_addresses,
    };
    let receiving = Target::resolve(&options(&connection.url)).await?;
    let send_url = connection.send_url.as_ref().unwrap_or(&connection.url);
    let sending = Target::resolve(&options(send_url)).await?;
    let random = uuid::Uuid::new_v4().simple().to_string();
    let bench = Bench {
        context: RunContext::new(
            connection.label.clone().unwrap_or(connection.url.clone()),
            &receiving,
            &sending,
        ),
        receiving,
        sending,
        amqp_url: connection.amqp_url.clone(),
        processes: connection
            .pids
            .iter()
            .map(|(name, pid)| ServerProcess::new(name.clone(), *pid))
            .collect(),
        patience: Duration::from_secs(connection.timeout),
        tag: format!("sb{}-", &random[..6]),
    };
    let report = scenario::run(scenario, &bench, &cli.sizes)
        .await
        .with_context(|| format!("{} against {} failed", scenario.name(), connection.url))?;
    report.print();
    Ok(())
}

/// Raises the open-file limit to the hard limit: every session is a socket,
/// and the idle scenario holds 15 000 of them.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 20_000 => eprintln!(
            "note: at most {limit} open files (the hard limit): raise it (ulimit -Hn) for runs of more sessions"
        ),
        Ok(_) => {}
        Err(error) => eprintln!("note: the open-file limit cannot be raised: {error}"),
    }
}
