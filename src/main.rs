//! The `stomp-relay` binary: flags, variables and file -> [`Config`] ->
//! [`BoundServer`].

use std::io::IsTerminal;

use anyhow::Context;
use stomp_relay::config::{Config, ConfigError, LogFormat};
use stomp_relay::server::BoundServer;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: the relay allocates many
/// small, short-lived buffers per message across threads, where glibc's
/// malloc spent a fifth of the relay's CPU (perf, one sender to 1 000
/// users), and it keeps idle sessions smaller.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(config) => config,
        Err(ConfigError::Arguments(error)) => error.exit(),
        Err(error @ ConfigError::File(_)) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    init_logging(config.log_format);
    let server = BoundServer::bind(config)
        .await
        .context("stomp-relay could not start")?;
    // On a worker rather than the main thread: an accepted connection's
    // task then starts on the worker that accepted it, not on another
    // thread that must be woken for it.
    tokio::spawn(server.run(shutdown_signal()))
        .await
        .context("the server stopped abnormally")
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: a file, journald or `docker logs` gets
    // plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
