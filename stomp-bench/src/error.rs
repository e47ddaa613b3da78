//! What can stop a benchmark run, told so that the person running it knows
//! which side failed: the network, the server under test, or this machine.

use std::time::Duration;

use tokio_tungstenite::tungstenite;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{url} is not a ws:// URL with a host and port")]
    BadUrl { url: String },

    #[error("cannot connect to {what}: {source}")]
    Connect {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the WebSocket handshake failed: {0}")]
    Handshake(#[source] tungstenite::Error),

    #[error("the WebSocket failed: {0}")]
    WebSocket(#[from] tungstenite::Error),

    #[error("the server closed the connection while the client waited for {waiting_for}")]
    Closed { waiting_for: &'static str },

    #[error("the server answered with an ERROR frame: {0}")]
    Refused(String),

    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },

    #[error("HTTP request failed: {0}")]
    Http(String),

    #[error("the relay at {binary} did not start: {reason}")]
    RelayStart { binary: String, reason: String },

    #[error("RabbitMQ: cannot {what}: {reason}")]
    Amqp { what: &'static str, reason: String },

    #[error(
        "relays other than this run's consume stomp.dispatch ({consumers:?}): they would take some of its requests and find none of its users"
    )]
    SharedDispatchQueue { consumers: Vec<String> },

    #[error("{command} failed: {reason}")]
    Tool { command: String, reason: String },

    #[error("a client task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
