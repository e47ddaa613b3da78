//! The cluster's registry in Redis, with the keys of `ARCHITECTURE.md`
//! under the configured prefix (default `stomp:`):
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `{prefix}node:{nodeId}` | string with TTL | the node is alive (JSON: address, start time, sessions) |
//! | `{prefix}user:{user}` | hash | sessionId -> nodeId, every live session of the user |
//! | `{prefix}session:{sessionId}` | hash | `user`, `node`, `connected-at` |
//!
//! Nodes ask each other to end sessions (a newer login replaces an older
//! one) over the Redis channel `{prefix}evict:{nodeId}`, which each node
//! subscribes to; the message is the session id.
//!
//! Liveness is per node: each node refreshes its key well within the TTL.
//! Sessions of a node whose key has expired are skipped by lookups and
//! removed lazily, and a janitor sweeps what lookups never touch. No
//! command or pipeline here needs two keys of different hash slots to be
//! atomic, so the same code works on Redis Cluster.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, PubSub};
use tokio::sync::mpsc;

use super::{NodeRecord, Registry, RegistryError, SessionLocation, SessionRecord};
use crate::broker::SessionId;
use crate::error::{Chain, source_of};
use crate::metrics::LinkMetrics;

/// How a node keeps itself known.
#[derive(Debug, Clone)]
pub struct NodeLiveness {
    pub node: String,
    /// What the node key's value says the node serves.
    pub address: String,
    /// The node key expires this long after its last refresh.
    pub ttl: Duration,
}

/// The Redis registry of one node.
#[derive(Clone)]
pub struct RedisRegistry {
    redis: ConnectionManager,
    prefix: Arc<str>,
    liveness: Arc<NodeLiveness>,
    /// This node's registered sessions, written again whenever Redis is
    /// found to have lost them (a restart: it may keep nothing on disk).
    registered: Arc<Mutex<HashMap<SessionId, SessionRecord>>>,
    started_at: u64,
    /// Sessions of this node that others asked to end, until the server
    /// takes them.
    evictions: Arc<Mutex<Option<mpsc::Receiver<SessionId>>>>,
    /// Other nodes found alive, and when.
    seen_alive: Arc<Mutex<HashMap<String, Instant>>>,
    /// Whether Redis answers the heartbeat, for `/metrics`.
    link: LinkMetrics,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beat {
    /// The node's key was there and is refreshed.
    KeyRefreshed,
    /// The node's key was gone (the first beat, or Redis lost it) and is
    /// written again, with the node's sessions.
    KeyWritten,
}

/// How soon a node tries Redis again after a heartbeat failed.
const RETRY_BEAT: Duration = Duration::from_millis(500);

/// Another node found alive is remembered as alive for this fraction of the
/// node TTL (1 s of the default 15 s).
const LIVENESS_MEMORY: u32 = 15;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Evictions waiting to be carried out; more wait in Redis's socket.
const EVICTION_BACKLOG: usize = 256;

/// The error of a Redis command that failed while the registry tried to
/// `what`.
fn unavailable(what: &'static str) -> impl FnOnce(redis::RedisError) -> RegistryError {
    move |error| RegistryError::Unavailable {
        what,
        source: source_of(error),
    }
}

impl RedisRegistry {
    /// Connects, announces the node, and starts its heartbeat and janitor.
    pub async fn connect(
        url: &str,
        prefix: &str,
        liveness: NodeLiveness,
        link: LinkMetrics,
    ) -> Result<RedisRegistry, RegistryError> {
        let client = redis::Client::open(url).map_err(unavailable("open a Redis client"))?;
        let redis = tokio::time::timeout(Duration::from_secs(10), client.get_connection_manager())
            .await
            .map_err(|elapsed| RegistryError::Unavailable {
                what: "connect to Redis within 10 s",
                source: source_of(elapsed),
            })?
            .map_err(unavailable("connect to Redis"))?;
        let (evicted, evictions) = mpsc::channel(EVICTION_BACKLOG);
        let registry = RedisRegistry {
            redis,
            prefix: Arc::from(prefix),
            liveness: Arc::new(liveness),
            registered: Arc::default(),
            started_at: super::unix_millis(),
            evictions: Arc::new(Mutex::new(Some(evictions))),
            seen_alive: Arc::default(),
            link,
        };
        let channel = registry.eviction_channel(&registry.liveness.node);
        // Subscribed before the node is announced, so that no eviction for
        // it is published into the void.
        let pubsub = subscribe(&client, &channel).await?;
        registry.heartbeat().await?;
        registry.link.connected.set(1);
        tokio::spawn(registry.clone().keep_alive());
        tokio::spawn(listen_for_evictions(client, channel, pubsub, evicted));
        Ok(registry)
    }

    /// The multiplexed connection this registry uses, for the node's other
    /// Redis users (the offline store).
    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    fn eviction_channel(&self, node: &str) -> String {
        format!("{}evict:{node}", self.prefix)
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}user:{user}", self.prefix)
    }

    fn session_key(&self, session: &str) -> String {
        format!("{}session:{session}", self.prefix)
    }

    /// Refreshes this node's key. Had Redis lost it (restarted empty, or
    /// the node stalled past its TTL and others swept its sessions), the
    /// node's sessions are written again at once.
    async fn heartbeat(&self) -> Result<Beat, RegistryError> {
        let sessions = lock(&self.registered).len();
        let value = serde_json::json!({
            "address": self.liveness.address,
            "started_at": self.started_at,
            "sessions": sessions,
        })
        .to_string();
        let mut redis = self.redis.clone();
        let ttl = self.liveness.ttl.as_millis().max(1) as u64;
        let before: Option<String> = redis::cmd("SET")
            .arg(self.node_key(&self.liveness.node))
            .arg(value)
            .arg("PX")
            .arg(ttl)
            .arg("GET")
            .query_async(&mut redis)
            .await
            .map_err(unavailable("refresh this node's key"))?;
        if before.is_some() {
            return Ok(Beat::KeyRefreshed);
        }
        if sessions > 0 {
            // Copied only now, not on every heartbeat.
            let records: Vec<SessionRecord> = lock(&self.registered).values().cloned().collect();
            let mut pipe = redis::pipe();
            for record in &records {
                self.write_session(&mut pipe, record);
            }
            pipe.query_async::<()>(&mut redis)
                .await
                .map_err(unavailable("register this node's sessions again"))?;
            tracing::warn!(
                sessions = records.len(),
                "Redis had lost this node's key: its sessions are registered again"
            );
        }
        Ok(Beat::KeyWritten)
    }

    /// Adds one session's keys to `pipe`.
    fn write_session(&self, pipe: &mut redis::Pipeline, record: &SessionRecord) {
        let session = record.session.to_string();
        pipe.hset(self.user_key(&record.user), &session, &record.node)
            .ignore();
        pipe.hset_multiple(
            self.session_key(&session),
            &[
                ("user", record.user.clone()),
                ("node", record.node.clone()),
                ("connected-at", record.connected_at.to_string()),
            ],
        )
        .ignore();
    }

    /// Heartbeat three times per TTL, and every half second while Redis does
    /// not answer, so that it gets this node's sessions back as soon as it
    /// does; sweep dead nodes' sessions every few TTLs. Stops when the last
    /// handle of the registry is dropped.
    async fn keep_alive(self) {
        let every = self.liveness.ttl / 3;
        let mut beats: u64 = 0;
        loop {
            if Arc::strong_count(&self.liveness) == 1 {
                return;
            }
            let pause = match self.heartbeat().await {
                Ok(beat) => {
                    // Away, or back empty from a restart.
                    let was_away = self.link.connected.set(1) == 0;
                    if was_away || beat == Beat::KeyWritten {
                        self.link.reconnects.inc();
                        tracing::info!("Redis answers this node again");
                    }
                    every
                }
                Err(error) => {
                    self.link.connected.set(0);
                    tracing::warn!(error = %Chain(&error), "cannot refresh this node's key in Redis");
                    RETRY_BEAT.min(every)
                }
            };
            beats += 1;
            if beats.is_multiple_of(9)
                && let Err(error) = self.sweep().await
            {
                tracing::warn!(error = %Chain(&error), "the registry janitor failed");
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Every key matching `pattern` (SCAN, never KEYS).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, RegistryError> {
        let mut redis = self.redis.clone();
        let mut keys = Vec::new();
        let mut iter: redis::AsyncIter<String> = redis
            .scan_match(pattern)
            .await
            .map_err(unavailable("scan its keys"))?;
        while let Some(key) = iter.next_item().await {
            keys.push(key.map_err(unavailable("scan its keys"))?);
        }
        Ok(keys)
    }

    /// The nodes among `nodes` whose keys still exist. This node is alive;
    /// another node seen alive within [`LIVENESS_MEMORY`] of the TTL is
    /// taken as still alive without asking Redis again, which spares every
    /// dispatch a round trip. A node that died in that moment only costs an
    /// unroutable publish (its session queues went with it).
    async fn live_nodes<'a>(
        &self,
        nodes: impl Iterator<Item = &'a str>,
    ) -> Result<HashSet<String>, RegistryError> {
        let now = Instant::now();
        let memory = self.liveness.ttl / LIVENESS_MEMORY;
        let mut live = HashSet::new();
        let mut unknown = Vec::new();
        {
            let seen = lock(&self.seen_alive);
            for node in nodes.collect::<HashSet<_>>() {
                let recent = seen
                    .get(node)
                    .is_some_and(|at| now.duration_since(*at) < memory);
                if node == self.liveness.node || recent {
                    live.insert(node.to_owned());
                } else {
                    unknown.push(node);
                }
            }
        }
        if unknown.is_empty() {
            return Ok(live);
        }
        let mut pipe = redis::pipe();
        for node in &unknown {
            pipe.exists(self.node_key(node));
        }
        let alive: Vec<bool> = pipe
            .query_async(&mut self.redis.clone())
            .await
            .map_err(unavailable("check which nodes are alive"))?;
        let mut seen = lock(&self.seen_alive);
        for (node, alive) in unknown.into_iter().zip(alive) {
            if alive {
                seen.insert(node.to_owned(), now);
                live.insert(node.to_owned());
            } else {
                seen.remove(node);
            }
        }
        Ok(live)
    }

    /// Every session key with its user, node and connect time, read in
    /// batches, and which of those nodes are alive.
    async fn session_entries(
        &self,
    ) -> Result<(Vec<(String, SessionOwner)>, HashSet<String>), RegistryError> {
        let mut redis = self.redis.clone();
        let keys = self.scan(&format!("{}session:*", self.prefix)).await?;
        let mut entries = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("HMGET")
                    .arg(key)
                    .arg("user")
                    .arg("node")
                    .arg("connected-at");
            }
            let owners: Vec<SessionOwner> = pipe
                .query_async(&mut redis)
                .await
                .map_err(unavailable("read the sessions"))?;
            entries.extend(chunk.iter().cloned().zip(owners));
        }
        let live = self
            .live_nodes(
                entries
                    .iter()
                    .filter_map(|(_, (_, node, _))| node.as_deref()),
            )
            .await?;
        Ok((entries, live))
    }

    /// Forgets sessions of dead nodes, wherever they are.
    pub async fn sweep(&self) -> Result<usize, RegistryError> {
        let (entries, live) = self.session_entries().await?;
        let mut cleanup = redis::pipe();
        let mut removed = 0;
        for (key, (user, node, _)) in &entries {
            if node.as_ref().is_some_and(|node| live.contains(node)) {
                continue;
            }
            cleanup.del(key).ignore();
            if let (Some(user), Some(session)) = (user, key.rsplit(':').next()) {
                cleanup.hdel(self.user_key(user), session).ignore();
            }
            removed += 1;
        }
        if removed > 0 {
            cleanup
                .query_async::<()>(&mut self.redis.clone())
                .await
                .map_err(unavailable("forget dead nodes' sessions"))?;
        }
        Ok(removed)
    }
}

async fn subscribe(client: &redis::Client, channel: &str) -> Result<PubSub, RegistryError> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(unavailable("subscribe to evictions"))?;
    pubsub
        .subscribe(channel)
        .await
        .map_err(unavailable("subscribe to evictions"))?;
    Ok(pubsub)
}

/// Passes on the session ids published on this node's eviction channel,
/// subscribing again whenever the connection drops, until the registry is
/// gone.
async fn listen_for_evictions(
    client: redis::Client,
    channel: String,
    pubsub: PubSub,
    evicted: mpsc::Sender<SessionId>,
) {
    let mut pubsub = Some(pubsub);
    loop {
        if let Some(subscribed) = pubsub.take() {
            let mut messages = subscribed.into_on_message();
            loop {
                let message = tokio::select! {
                    () = evicted.closed() => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                let session = message
                    .get_payload::<String>()
                    .ok()
                    .and_then(|text| SessionId::try_parse(&text).ok());
                if let Some(session) = session
                    && evicted.send(session).await.is_err()
                {
                    return;
                }
            }
            tracing::warn!(%channel, "lost the Redis subscription to evictions; subscribing again");
        }
        tokio::select! {
            () = evicted.closed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        match subscribe(&client, &channel).await {
            Ok(subscribed) => pubsub = Some(subscribed),
            Err(error) => {
                tracing::warn!(%channel, error = %Chain(&error), "cannot subscribe to evictions")
            }
        }
    }
}

/// A session hash's `user`, `node` and `connected-at`.
type SessionOwner = (Option<String>, Option<String>, Option<u64>);

#[async_trait]
impl Registry for RedisRegistry {
    async fn register(&self, record: &SessionRecord) -> Result<(), RegistryError> {
        let mut pipe = redis::pipe();
        self.write_session(&mut pipe, record);
        pipe.query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(unavailable("register a session"))?;
        lock(&self.registered).insert(record.session, record.clone());
        Ok(())
    }

    async fn unregister(&self, record: &SessionRecord) -> Result<(), RegistryError> {
        // Forgotten here whatever Redis answers, so that a recovery does
        // not bring it back.
        lock(&self.registered).remove(&record.session);
        let session = record.session.to_string();
        let mut pipe = redis::pipe();
        pipe.hdel(self.user_key(&record.user), &session).ignore();
        pipe.del(self.session_key(&session)).ignore();
        pipe.query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(unavailable("unregister a session"))?;
        Ok(())
    }

    async fn sessions_of(&self, user: &str) -> Result<Vec<SessionRecord>, RegistryError> {
        let located = self.locate(user).await?;
        if located.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for found in &located {
            pipe.hget(self.session_key(&found.session.to_string()), "connected-at");
        }
        let connected_at: Vec<Option<u64>> = pipe
            .query_async(&mut self.redis.clone())
            .await
            .map_err(unavailable("read when a user's sessions connected"))?;
        let mut records: Vec<SessionRecord> = located
            .into_iter()
            .zip(connected_at)
            .map(|(found, connected_at)| SessionRecord {
                session: found.session,
                user: user.to_owned(),
                node: found.node,
                connected_at: connected_at.unwrap_or(0),
            })
            .collect();
        records.sort_by_key(|record| record.connected_at);
        Ok(records)
    }

    async fn locate(&self, user: &str) -> Result<Vec<SessionLocation>, RegistryError> {
        let mut found = self.locate_many(&[user]).await?;
        Ok(found.pop().unwrap_or_default())
    }

    async fn locate_many(
        &self,
        users: &[&str],
    ) -> Result<Vec<Vec<SessionLocation>>, RegistryError> {
        let mut redis = self.redis.clone();
        let mut read = redis::pipe();
        for user in users {
            read.hgetall(self.user_key(user));
        }
        let sessions: Vec<HashMap<String, String>> = read
            .query_async(&mut redis)
            .await
            .map_err(unavailable("read users' sessions"))?;
        let live = self
            .live_nodes(sessions.iter().flat_map(|s| s.values().map(String::as_str)))
            .await?;
        let mut cleanup = redis::pipe();
        let mut any_dead = false;
        let mut found = Vec::with_capacity(users.len());
        for (user, sessions) in users.iter().zip(sessions) {
            let mut alive = Vec::with_capacity(sessions.len());
            for (session, node) in sessions {
                if !live.contains(&node) {
                    cleanup.hdel(self.user_key(user), &session).ignore();
                    cleanup.del(self.session_key(&session)).ignore();
                    any_dead = true;
                } else if let Ok(session) = SessionId::try_parse(&session) {
                    alive.push(SessionLocation { session, node });
                }
            }
            found.push(alive);
        }
        if any_dead {
            cleanup
                .query_async::<()>(&mut redis)
                .await
                .map_err(unavailable("forget users' sessions on dead nodes"))?;
        }
        Ok(found)
    }

    async fn all_sessions(&self) -> Result<Vec<SessionRecord>, RegistryError> {
        let (entries, live) = self.session_entries().await?;
        Ok(entries
            .into_iter()
            .filter_map(|(key, (user, node, connected_at))| {
                let node = node.filter(|node| live.contains(node))?;
                Some(SessionRecord {
                    session: SessionId::try_parse(key.rsplit(':').next()?).ok()?,
                    user: user?,
                    node,
                    connected_at: connected_at.unwrap_or(0),
                })
            })
            .collect())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        let mut redis = self.redis.clone();
        let keys = self.scan(&format!("{}node:*", self.prefix)).await?;
        let mut nodes = Vec::new();
        for key in keys {
            // A key may expire between the scan and the read.
            let value: Option<String> = redis
                .get(&key)
                .await
                .map_err(unavailable("read a node key"))?;
            let Some(value) = value else { continue };
            let fields: serde_json::Value = serde_json::from_str(&value).unwrap_or_default();
            nodes.push(NodeRecord {
                node: key[self.prefix.len() + "node:".len()..].to_owned(),
                address: fields["address"].as_str().unwrap_or_default().to_owned(),
                started_at: fields["started_at"].as_u64().unwrap_or_default(),
                sessions: fields["sessions"].as_u64().unwrap_or_default() as usize,
            });
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }

    async fn evict(&self, session: SessionId, node: &str) -> Result<(), RegistryError> {
        let mut redis = self.redis.clone();
        redis
            .publish::<_, _, ()>(self.eviction_channel(node), session.to_string())
            .await
            .map_err(unavailable("ask a node to end a session"))
    }

    fn evictions(&self) -> Option<mpsc::Receiver<SessionId>> {
        lock(&self.evictions).take()
    }

    async fn shutdown(&self) {
        let mut redis = self.redis.clone();
        let _: Result<(), _> = redis.del(self.node_key(&self.liveness.node)).await;
    }
}
