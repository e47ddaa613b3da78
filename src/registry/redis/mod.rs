//! The cluster's registry in Redis, with the keys of `docs/architecture.md`
//! (Redis keys) under the configured prefix (default `stomp:`). A name in
//! braces is the key's hash tag, so that on a Redis Cluster all keys of one
//! user, or of one node, share a slot:
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `{prefix}node:{nodeId}` | string with TTL | the node is alive (JSON: address, start time, sessions) |
//! | `{prefix}node-sessions:{nodeId}` | hash | sessionId -> `{connected-at} {user}`, every session of the node |
//! | `{prefix}nodes` | set | every node that may still have sessions in Redis |
//! | `{prefix}user:{user}` | hash | sessionId -> `{nodeId}` and, on a line each, the user destinations the session listens to; every live session of the user |
//!
//! Nodes ask each other to end sessions (a newer login replaces an older
//! one) over the Redis channel `{prefix}evict:{nodeId}`, which each node
//! subscribes to; the message is the session id.
//!
//! Liveness is per node: each node refreshes its key well within the TTL.
//! Sessions of a node whose key has expired are skipped by lookups and
//! removed lazily, and a janitor sweeps what lookups never touch, from the
//! dead node's own list of sessions. No command, pipeline or script here
//! touches keys of two hash slots, and nothing scans the key space, so the
//! same code works on one server and on a Redis Cluster: what needs keys of
//! several users or nodes sends one command per key, all at once on the
//! multiplexed connection.

pub mod connection;
mod keys;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::PubSub;
use tokio::sync::mpsc;

use self::connection::{RedisAddress, RedisConnection, Subscriber};
use self::keys::{
    Keys, node_entry, node_of_user_entry, parse_node_entry, parse_user_entry, user_entry,
};
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
    redis: RedisConnection,
    keys: Keys,
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
    /// Set when the node withdraws; held through each heartbeat, so that
    /// none lists the node again after it has gone.
    withdrawn: Arc<tokio::sync::Mutex<bool>>,
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

/// Commands of one batch in flight at once; a batch of more (the sessions
/// of a node, written again or swept) goes in waves of this many.
const BATCH_IN_FLIGHT: usize = 512;

/// Fields of one HSET when a node's sessions are written again.
const FIELDS_PER_WRITE: usize = 1000;

/// Takes a dead node's list of sessions, unless the node came back: the
/// node key and the list share the node's hash slot, so one script sees
/// both. KEYS: the node key, its list. Answers the list, flat.
static TAKE_DEAD_NODES_SESSIONS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
          local sessions = redis.call('HGETALL', KEYS[2])
          redis.call('DEL', KEYS[2])
          return sessions",
    )
});

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
        address: &RedisAddress,
        prefix: &str,
        liveness: NodeLiveness,
        link: LinkMetrics,
    ) -> Result<RedisRegistry, RegistryError> {
        let (redis, subscriber) = RedisConnection::connect(address).await?;
        let (evicted, evictions) = mpsc::channel(EVICTION_BACKLOG);
        let registry = RedisRegistry {
            redis,
            keys: Keys {
                prefix: Arc::from(prefix),
            },
            liveness: Arc::new(liveness),
            registered: Arc::default(),
            started_at: super::unix_millis(),
            evictions: Arc::new(Mutex::new(Some(evictions))),
            seen_alive: Arc::default(),
            link,
            withdrawn: Arc::default(),
        };
        let channel = registry.keys.eviction_channel(&registry.liveness.node);
        // Subscribed before the node is announced, so that no eviction for
        // it is published into the void.
        let pubsub = subscriber.subscribe(&channel).await?;
        registry.heartbeat().await?;
        registry.link.connected.set(1);
        tokio::spawn(registry.clone().keep_alive());
        tokio::spawn(listen_for_evictions(subscriber, channel, pubsub, evicted));
        Ok(registry)
    }

    /// The connection this registry uses, for the node's other Redis users
    /// (the offline store).
    pub fn connection(&self) -> RedisConnection {
        self.redis.clone()
    }

    /// Runs one command, on keys of one slot.
    async fn one<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
        what: &'static str,
    ) -> Result<T, RegistryError> {
        command
            .query_async(&mut self.redis.clone())
            .await
            .map_err(unavailable(what))
    }

    /// Runs `commands` at once, each on keys of one slot, and answers their
    /// replies in order: one round trip for a batch on one server, and on a
    /// cluster each command goes to its own shard.
    async fn each<T: redis::FromRedisValue + Send>(
        &self,
        commands: Vec<redis::Cmd>,
        what: &'static str,
    ) -> Result<Vec<T>, RegistryError> {
        let mut replies = Vec::with_capacity(commands.len());
        for wave in commands.chunks(BATCH_IN_FLIGHT) {
            let requests = wave.iter().map(|command| self.one(command, what));
            replies.extend(futures_util::future::try_join_all(requests).await?);
        }
        Ok(replies)
    }

    /// Refreshes this node's key. Had Redis lost it (restarted empty, or
    /// the node stalled past its TTL and others swept its sessions), the
    /// node's sessions are written again at once.
    async fn heartbeat(&self) -> Result<Beat, RegistryError> {
        let node = &self.liveness.node;
        let sessions = self.registered.lock().len();
        let value = serde_json::json!({
            "address": self.liveness.address,
            "started_at": self.started_at,
            "sessions": sessions,
        })
        .to_string();
        let ttl = self.liveness.ttl.as_millis().max(1) as u64;
        let mut refresh = redis::cmd("SET");
        refresh
            .arg(self.keys.node(node))
            .arg(value)
            .arg("PX")
            .arg(ttl)
            .arg("GET");
        // Listed at every beat, not only when the key was gone: a sweep
        // that found this node dead just before it came back unlists it.
        let listed = redis::Cmd::sadd(self.keys.nodes(), node);
        let (before, ()) = tokio::try_join!(
            self.one::<Option<String>>(&refresh, "refresh this node's key"),
            self.one(&listed, "list this node"),
        )?;
        if before.is_some() {
            return Ok(Beat::KeyRefreshed);
        }
        if sessions > 0 {
            // Copied only now, not on every heartbeat.
            let records: Vec<SessionRecord> = self.registered.lock().values().cloned().collect();
            self.write_again(&records).await?;
            tracing::warn!(
                sessions = records.len(),
                "Redis had lost this node's key: its sessions are registered again"
            );
        }
        Ok(Beat::KeyWritten)
    }

    /// Writes this node's list of sessions anew, and each session into its
    /// user's hash.
    async fn write_again(&self, records: &[SessionRecord]) -> Result<(), RegistryError> {
        let list = self.keys.node_sessions(&self.liveness.node);
        // One slot, the node's: the stale list goes in the same MULTI as
        // the first part of the new one.
        let mut pipe = redis::pipe();
        pipe.atomic().del(&list).ignore();
        for chunk in records.chunks(FIELDS_PER_WRITE) {
            let fields: Vec<(String, String)> = chunk
                .iter()
                .map(|record| (record.session.to_string(), node_entry(record)))
                .collect();
            pipe.hset_multiple(&list, &fields).ignore();
        }
        pipe.query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(unavailable("register this node's sessions again"))?;
        let users = records
            .iter()
            .map(|record| {
                let session = record.session.to_string();
                redis::Cmd::hset(self.keys.user(&record.user), session, user_entry(record))
            })
            .collect();
        self.each::<()>(users, "register this node's sessions again")
            .await?;
        Ok(())
    }

    /// Heartbeat three times per TTL, and every half second while Redis does
    /// not answer, so that it gets this node's sessions back as soon as it
    /// does; sweep dead nodes' sessions every few TTLs. Stops when the last
    /// handle of the registry is dropped.
    async fn keep_alive(self) {
        let every = self.liveness.ttl / 3;
        let mut beats: u64 = 0;
        loop {
            let withdrawn = self.withdrawn.lock().await;
            if *withdrawn || Arc::strong_count(&self.liveness) == 1 {
                return;
            }
            let beat = self.heartbeat().await;
            drop(withdrawn);
            let pause = match beat {
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

    /// The nodes among `nodes` whose keys still exist. This node is alive;
    /// another node seen alive within [`LIVENESS_MEMORY`] of the TTL is
    /// taken as still alive without asking Redis again, which spares every
    /// dispatch a round trip. A node that died in that moment only costs a
    /// publish that reaches no queue (its queue went with it).
    async fn live_nodes<'a>(
        &self,
        nodes: impl Iterator<Item = &'a str>,
    ) -> Result<HashSet<String>, RegistryError> {
        let now = Instant::now();
        let memory = self.liveness.ttl / LIVENESS_MEMORY;
        let mut live = HashSet::new();
        let mut unknown = Vec::new();
        {
            let seen = self.seen_alive.lock();
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
        let exists = unknown
            .iter()
            .map(|node| redis::Cmd::exists(self.keys.node(node)))
            .collect();
        let alive: Vec<bool> = self.each(exists, "check which nodes are alive").await?;
        let mut seen = self.seen_alive.lock();
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

    /// Every node listed, and which of them are alive.
    async fn listed_nodes(&self) -> Result<(Vec<String>, HashSet<String>), RegistryError> {
        let members = redis::Cmd::smembers(self.keys.nodes());
        let listed: Vec<String> = self.one(&members, "list the nodes").await?;
        let live = self.live_nodes(listed.iter().map(String::as_str)).await?;
        Ok((listed, live))
    }

    /// The listed nodes that are alive, each with its reply to the command
    /// `on_node` makes for it.
    async fn ask_live_nodes<T: redis::FromRedisValue + Send>(
        &self,
        on_node: impl Fn(&str) -> redis::Cmd,
        what: &'static str,
    ) -> Result<Vec<(String, T)>, RegistryError> {
        let (listed, live) = self.listed_nodes().await?;
        let nodes: Vec<String> = listed
            .into_iter()
            .filter(|node| live.contains(node))
            .collect();
        let commands = nodes.iter().map(|node| on_node(node)).collect();
        let replies = self.each(commands, what).await?;
        Ok(nodes.into_iter().zip(replies).collect())
    }

    /// Forgets sessions of dead nodes, from each dead node's own list;
    /// answers how many no lookup had forgotten yet.
    pub async fn sweep(&self) -> Result<usize, RegistryError> {
        let (listed, live) = self.listed_nodes().await?;
        let mut removed = 0;
        for node in listed.iter().filter(|node| !live.contains(*node)) {
            let mut take = TAKE_DEAD_NODES_SESSIONS.prepare_invoke();
            take.key(self.keys.node(node))
                .key(self.keys.node_sessions(node));
            let sessions: Vec<(String, String)> = take
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(unavailable("take a dead node's sessions"))?;
            let forget = sessions
                .iter()
                .filter_map(|(session, entry)| {
                    let (_, user) = parse_node_entry(entry)?;
                    Some(redis::Cmd::hdel(self.keys.user(user), session))
                })
                .collect();
            let forgotten: Vec<usize> = self.each(forget, "forget a dead node's sessions").await?;
            let unlist = redis::Cmd::srem(self.keys.nodes(), node);
            self.one::<()>(&unlist, "unlist a dead node").await?;
            removed += forgotten.iter().sum::<usize>();
        }
        Ok(removed)
    }
}

/// Passes on the session ids published on this node's eviction channel,
/// subscribing again whenever the connection drops, until the registry is
/// gone.
async fn listen_for_evictions(
    subscriber: Subscriber,
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
        match subscriber.subscribe(&channel).await {
            Ok(subscribed) => pubsub = Some(subscribed),
            Err(error) => {
                tracing::warn!(%channel, error = %Chain(&error), "cannot subscribe to evictions")
            }
        }
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn register(&self, record: &SessionRecord) -> Result<(), RegistryError> {
        let session = record.session.to_string();
        let node_sessions = self.keys.node_sessions(&record.node);
        let listed = redis::Cmd::hset(node_sessions, &session, node_entry(record));
        let located = redis::Cmd::hset(self.keys.user(&record.user), &session, user_entry(record));
        let node_listed = redis::Cmd::sadd(self.keys.nodes(), &record.node);
        // Listed first: a node that dies in between leaves an entry that
        // its sweep removes, never a user's session that no sweep finds.
        self.each::<()>(vec![node_listed, listed], "register a session")
            .await?;
        self.one::<()>(&located, "register a session").await?;
        self.registered
            .lock()
            .insert(record.session, record.clone());
        Ok(())
    }

    async fn update_destinations(&self, record: &SessionRecord) -> Result<(), RegistryError> {
        // Kept first, so that a node whose sessions Redis lost writes this
        // back with them.
        match self.registered.lock().get_mut(&record.session) {
            Some(registered) => registered.destinations = record.destinations.clone(),
            None => return Ok(()),
        }
        let session = record.session.to_string();
        let located = redis::Cmd::hset(self.keys.user(&record.user), session, user_entry(record));
        self.one(&located, "record what a session listens to").await
    }

    async fn unregister(&self, record: &SessionRecord) -> Result<(), RegistryError> {
        // Forgotten here whatever Redis answers, so that a recovery does
        // not bring it back.
        self.registered.lock().remove(&record.session);
        let session = record.session.to_string();
        let located = redis::Cmd::hdel(self.keys.user(&record.user), &session);
        let listed = redis::Cmd::hdel(self.keys.node_sessions(&record.node), &session);
        self.each::<()>(vec![located, listed], "unregister a session")
            .await?;
        Ok(())
    }

    async fn sessions_of(&self, user: &str) -> Result<Vec<SessionRecord>, RegistryError> {
        let located = self.locate(user).await?;
        let connected_at = located
            .iter()
            .map(|found| {
                let list = self.keys.node_sessions(&found.node);
                redis::Cmd::hget(list, found.session.to_string())
            })
            .collect();
        let entries: Vec<Option<String>> = self
            .each(connected_at, "read when a user's sessions connected")
            .await?;
        let mut records: Vec<SessionRecord> = located
            .into_iter()
            .zip(entries)
            .map(|(found, entry)| SessionRecord {
                session: found.session,
                user: user.to_owned(),
                node: found.node,
                destinations: found.destinations,
                connected_at: entry
                    .as_deref()
                    .and_then(parse_node_entry)
                    .map_or(0, |(connected_at, _)| connected_at),
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
        let reads = users
            .iter()
            .map(|user| redis::Cmd::hgetall(self.keys.user(user)))
            .collect();
        let sessions: Vec<HashMap<String, String>> =
            self.each(reads, "read users' sessions").await?;
        let nodes: Vec<&str> = sessions
            .iter()
            .flat_map(HashMap::values)
            .map(|entry| node_of_user_entry(entry))
            .collect();
        let live = self.live_nodes(nodes.into_iter()).await?;
        let mut cleanup = Vec::new();
        let mut found = Vec::with_capacity(users.len());
        for (user, sessions) in users.iter().zip(sessions) {
            let mut alive = Vec::with_capacity(sessions.len());
            let mut dead = Vec::new();
            for (session, entry) in sessions {
                let node = node_of_user_entry(&entry);
                if !live.contains(node) {
                    dead.push(session);
                } else if let Ok(session) = SessionId::try_parse(&session) {
                    let (node, destinations) = parse_user_entry(&entry);
                    alive.push(SessionLocation {
                        session,
                        node: node.to_owned(),
                        destinations,
                    });
                }
            }
            if !dead.is_empty() {
                cleanup.push(redis::Cmd::hdel(self.keys.user(user), dead));
            }
            found.push(alive);
        }
        // The dead nodes' own lists go with the next sweep.
        self.each::<()>(cleanup, "forget users' sessions on dead nodes")
            .await?;
        Ok(found)
    }

    async fn all_sessions(&self) -> Result<Vec<SessionRecord>, RegistryError> {
        let read = |node: &str| redis::Cmd::hgetall(self.keys.node_sessions(node));
        let lists: Vec<(String, HashMap<String, String>)> =
            self.ask_live_nodes(read, "read the sessions").await?;
        Ok(lists
            .into_iter()
            .flat_map(|(node, list)| {
                list.into_iter().filter_map(move |(session, entry)| {
                    let (connected_at, user) = parse_node_entry(&entry)?;
                    Some(SessionRecord {
                        session: SessionId::try_parse(&session).ok()?,
                        user: user.to_owned(),
                        node: node.clone(),
                        connected_at,
                        destinations: Vec::new(),
                    })
                })
            })
            .collect())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        let read = |node: &str| redis::Cmd::get(self.keys.node(node));
        // A key may expire between the check and the read.
        let values: Vec<(String, Option<String>)> =
            self.ask_live_nodes(read, "read the node keys").await?;
        let mut records: Vec<NodeRecord> = values
            .into_iter()
            .filter_map(|(node, value)| {
                let fields: serde_json::Value = serde_json::from_str(&value?).unwrap_or_default();
                Some(NodeRecord {
                    node,
                    address: fields["address"].as_str().unwrap_or_default().to_owned(),
                    started_at: fields["started_at"].as_u64().unwrap_or_default(),
                    sessions: fields["sessions"].as_u64().unwrap_or_default() as usize,
                })
            })
            .collect();
        records.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(records)
    }

    async fn evict(&self, session: SessionId, node: &str) -> Result<(), RegistryError> {
        let channel = self.keys.eviction_channel(node);
        let publish = redis::Cmd::publish(channel, session.to_string());
        self.one(&publish, "ask a node to end a session").await
    }

    fn evictions(&self) -> Option<mpsc::Receiver<SessionId>> {
        self.evictions.lock().take()
    }

    async fn shutdown(&self) {
        *self.withdrawn.lock().await = true;
        let node = &self.liveness.node;
        let mut withdraw = vec![redis::Cmd::del(self.keys.node(node))];
        // Sessions still registered are left for a sweep to find.
        if self.registered.lock().is_empty() {
            withdraw.push(redis::Cmd::srem(self.keys.nodes(), node));
        }
        let _ = self.each::<()>(withdraw, "withdraw this node").await;
    }
}
