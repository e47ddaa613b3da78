//! The node's configuration: command-line flags ([`cli`]), each also read
//! from a `STOMP_RELAY_*` environment variable and from the `--config` TOML
//! file (`file`). A flag wins over its variable, the variable over the file.
//!
//! What they say is read once, at start, into a [`Config`] whose fields are
//! each layer's own settings, so that every layer gets its share whole and
//! none reads another's.

mod cli;
mod file;
mod parse;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, Parser};
use ipnet::IpNet;
use stomp_parser::Limits;

use crate::broker::amqp::{AmqpSettings, DispatchQueueType, UserKeyBinding};
use crate::dispatch::offline::OfflineLimits;
use crate::history::{HistorySettings, HistoryTopics};
use crate::registry::redis::connection::RedisAddress;
use crate::session::SessionSettings;
use crate::session::connect::HeartBeatBounds;
use crate::transport::connection::ConnectionSettings;
use crate::transport::routes::RouteSettings;
pub use cli::{
    AuthMode, AuthOptions, Cli, ClusterOptions, ConnectionOptions, HistoryOptions, LimitOptions,
    LogFormat, LogOptions, OfflineOptions, QueueType, Routing, SecondLogin, ServerOptions,
};
pub use file::FileError;
use parse::{as_usize, listed};

/// The resolved configuration the server runs with, a field per layer.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: String,
    pub mode: Mode,
    pub log_format: LogFormat,
    pub listener: ListenerSettings,
    pub routes: RouteSettings,
    pub connection: ConnectionSettings,
    pub session: SessionSettings,
    pub auth: AuthOptions,
    /// The HTTP API's bearer token (`--api-token`), if any.
    pub api_token: Option<String>,
    pub offline: OfflineLimits,
    pub history: HistorySettings,
}

/// How the node accepts TCP connections.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub listen: SocketAddr,
    /// Serve HTTP/2 with prior knowledge beside HTTP/1.1.
    pub http2: bool,
    /// Connections in all, and per client address (0: no limit).
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Whose forwarding headers name the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Over how long a stopping node tells its clients to go.
    pub drain_period: Duration,
}

/// Where the node keeps messages and presence.
#[derive(Debug, Clone)]
pub enum Mode {
    /// One node: in-process broker, in-memory registry.
    Embedded,
    /// Any number of nodes sharing RabbitMQ and Redis.
    Cluster(ClusterSettings),
}

/// RabbitMQ and Redis, as a cluster node uses them.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// One broker, or the nodes of a RabbitMQ cluster, in the order they
    /// are tried.
    pub amqp_urls: Vec<String>,
    pub amqp: AmqpSettings,
    pub redis: RedisAddress,
    /// Prefix of every Redis key the node writes.
    pub redis_prefix: String,
    /// How long the node's key in Redis outlives its last refresh.
    pub node_ttl: Duration,
}

impl Config {
    /// The configuration from the command line (`args`, the program's name
    /// first), the `STOMP_RELAY_*` variables and the `--config` file.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = Cli::command();
        // A first reading, forgiving, for --config and for which options the
        // command line or the environment already set: those the file must
        // not override. Help, version and real errors come from the second.
        let first = command
            .clone()
            .ignore_errors(true)
            .try_get_matches_from(&args);
        let (Ok(first), Some((program, rest))) = (first, args.split_first()) else {
            return Ok(Cli::try_parse_from(&args)?.into());
        };
        let Some(path) = first.get_one::<PathBuf>("config") else {
            return Ok(Cli::try_parse_from(&args)?.into());
        };
        let set_elsewhere = |id: &str| {
            matches!(
                first.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        let from_file = file::arguments(&command, path, set_elsewhere)?;
        let args = std::iter::once(program.clone())
            .chain(from_file)
            .chain(rest.iter().cloned());
        Ok(Cli::try_parse_from(args)?.into())
    }
}

/// Why the node cannot start with the configuration it was given.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A bad flag or variable, or `--help` and `--version`: clap words
    /// and prints it.
    #[error(transparent)]
    Arguments(#[from] clap::Error),
    #[error(transparent)]
    File(#[from] FileError),
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Config {
        let Cli {
            config: _,
            server,
            cluster,
            auth,
            connections,
            limits,
            offline,
            history,
            log,
        } = cli;
        let node_id = cluster
            .node_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // Each pattern was checked as it was read.
        let history_topics = HistoryTopics::parse(&history.history_topics).unwrap_or_default();
        let limits_of_frames = Limits {
            max_frame_size: limits.max_frame_size,
            max_headers: limits.max_headers,
            max_header_line: limits.max_header_size,
            max_body: limits.max_body_size,
        };
        Config {
            node_id,
            mode: mode(cluster),
            log_format: log.log_format,
            listener: ListenerSettings {
                listen: server.listen,
                http2: server.http2,
                max_connections: connections.max_connections,
                max_connections_per_ip: connections.max_connections_per_ip,
                trusted_proxies: connections.trusted_proxies,
                drain_period: Duration::from_secs(server.drain_period),
            },
            routes: RouteSettings {
                ws_path: server.ws_path,
                sockjs_path: server.sockjs_path,
                allowed_origins: server
                    .allowed_origins
                    .into_iter()
                    .map(|origin| origin.trim().trim_end_matches('/').to_owned())
                    .filter(|origin| !origin.is_empty())
                    .collect(),
                max_sockjs_sessions: connections.max_sockjs_sessions,
                max_connections_per_ip: connections.max_connections_per_ip,
                max_frame_size: limits.max_frame_size,
                #[cfg(feature = "sockjs-protocol-test")]
                sockjs_protocol_test: server.sockjs_protocol_test,
            },
            connection: ConnectionSettings {
                connect_timeout: Duration::from_secs(connections.connect_timeout),
                max_pending_messages: limits.max_pending_messages,
                slow_consumer: limits.slow_consumer,
                frame_timeout: Duration::from_secs(connections.frame_timeout),
                limits: limits_of_frames,
                max_frames_per_second: limits.max_frames_per_second,
                max_in_flight: limits.max_in_flight,
            },
            session: SessionSettings {
                heart_beat: HeartBeatBounds {
                    min: connections.heart_beat_min,
                    max: connections.heart_beat_max,
                },
                max_subscriptions: limits.max_subscriptions,
                max_unacked: limits.max_unacked,
                max_transactions: limits.max_transactions,
                max_transaction_frames: limits.max_transaction_frames,
                replace_older_logins: connections.second_login == SecondLogin::Replace,
                virtual_host: connections.virtual_host,
                replay: (history.history_size > 0 && history.history_ttl > 0)
                    .then(|| history_topics.clone()),
            },
            auth,
            api_token: server.api_token.filter(|token| !token.is_empty()),
            offline: OfflineLimits {
                max_messages: as_usize(offline.offline_max_messages),
                ttl: Duration::from_secs(offline.offline_ttl),
                max_node_messages: as_usize(offline.offline_max_node_messages),
                max_node_bytes: as_usize(offline.offline_max_node_bytes),
            },
            history: HistorySettings {
                size: as_usize(history.history_size),
                ttl: Duration::from_secs(history.history_ttl),
                max_node_messages: as_usize(history.history_max_node_messages),
                max_node_bytes: as_usize(history.history_max_node_bytes),
                topics: history_topics,
            },
        }
    }
}

/// Cluster mode when both RabbitMQ and Redis are given (clap's `requires`
/// already refused one without the other), else embedded.
fn mode(cluster: ClusterOptions) -> Mode {
    let amqp_urls = listed(cluster.amqp_url);
    let redis_cluster_nodes = listed(cluster.redis_cluster_nodes);
    let redis = match cluster.redis_url {
        Some(url) => RedisAddress::Server(url),
        None if !redis_cluster_nodes.is_empty() => RedisAddress::Cluster(redis_cluster_nodes),
        None => return Mode::Embedded,
    };
    if amqp_urls.is_empty() {
        return Mode::Embedded;
    }
    Mode::Cluster(ClusterSettings {
        amqp_urls,
        amqp: AmqpSettings {
            default_prefetch: cluster.amqp_prefetch,
            node_queue_length: cluster.node_queue_length,
            user_keys: match cluster.routing {
                Routing::Node => UserKeyBinding::NodeQueue,
                Routing::Session => UserKeyBinding::SessionQueue,
            },
            dispatch_queue: match cluster.dispatch_queue_type {
                QueueType::Quorum => DispatchQueueType::Quorum,
                QueueType::Classic => DispatchQueueType::Classic,
            },
            ..AmqpSettings::default()
        },
        redis,
        redis_prefix: cluster.redis_prefix,
        node_ttl: Duration::from_secs(cluster.node_ttl),
    })
}
