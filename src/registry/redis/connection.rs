//! The node's way to Redis: one server (`--redis-url`) or a Redis Cluster
//! (`--redis-cluster-nodes`), behind one connection type, so that the
//! registry and the offline store run the same commands on either.
//!
//! On a cluster every command goes to the shard of its key; a pipeline or
//! script must keep to one hash slot, which the key names of the registry
//! and the offline store see to. Evictions travel by classic pub/sub, which
//! a cluster carries to subscribers on every shard, so the node subscribes
//! on whichever of the given nodes answers.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::unavailable;
use crate::error::source_of;
use crate::registry::RegistryError;

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddress {
    /// One server (or a proxy in front of several).
    Server(String),
    /// Some nodes of a Redis Cluster; the rest is learnt from them.
    Cluster(Vec<String>),
}

impl RedisAddress {
    /// The URLs it names: the server's, or the cluster nodes'.
    pub fn urls(&self) -> &[String] {
        match self {
            RedisAddress::Server(url) => std::slice::from_ref(url),
            RedisAddress::Cluster(urls) => urls,
        }
    }
}

/// How long the node waits for Redis to take its first connection.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// A multiplexed connection to Redis that reconnects by itself; cheap to
/// clone, and every clone shares the connection.
#[derive(Clone)]
pub enum RedisConnection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Connects to `address`; also answers what the node subscribes with.
    pub async fn connect(
        address: &RedisAddress,
    ) -> Result<(RedisConnection, Subscriber), RegistryError> {
        let clients = address
            .urls()
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable("open a Redis client"))?;
        let connecting = async {
            match address {
                RedisAddress::Server(_) => clients[0]
                    .get_connection_manager_with_config(reconnecting())
                    .await
                    .map(RedisConnection::Server),
                RedisAddress::Cluster(urls) => redis::cluster::ClusterClient::new(urls.clone())?
                    .get_async_connection()
                    .await
                    .map(RedisConnection::Cluster),
            }
        };
        let connection = tokio::time::timeout(CONNECT_PATIENCE, connecting)
            .await
            .map_err(|elapsed| RegistryError::Unavailable {
                what: "connect to Redis within 10 s",
                source: source_of(elapsed),
            })?
            .map_err(unavailable("connect to Redis"))?;
        Ok((connection, Subscriber { clients }))
    }
}

/// How the connection to one Redis server is made again once lost. A
/// command given while it is being made waits for it, so it is kept short:
/// with the crate's six attempts, a request to a node whose Redis is away
/// waited seconds for an answer (a client's 503) instead of getting it at
/// once. The next command after a failed round tries again, and the node's
/// heartbeat gives one every few seconds.
fn reconnecting() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Server(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Server(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Server(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Opens pub/sub connections: to the one server, or to the first cluster
/// node that answers.
pub struct Subscriber {
    clients: Vec<redis::Client>,
}

impl Subscriber {
    /// A connection subscribed to `channel`.
    pub async fn subscribe(&self, channel: &str) -> Result<PubSub, RegistryError> {
        let mut failure = None;
        for client in &self.clients {
            let subscribed = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match subscribed.await {
                Ok(pubsub) => return Ok(pubsub),
                Err(error) => failure = Some(error),
            }
        }
        Err(RegistryError::Unavailable {
            what: "subscribe to evictions",
            source: failure.and_then(source_of),
        })
    }
}
