//! Messages kept for users who were not there to receive them.
//!
//! A dispatched message that asks to be kept (`persist`) and reaches none of
//! its user's sessions is stored here, per user, in arrival order. When the
//! user next subscribes to that user destination, the session delivers what
//! was kept, oldest first, and the store forgets each message once it is
//! delivered (for `ack:auto`) or acknowledged (for client acks).
//!
//! Both stores are capped per user (the oldest message goes first) and
//! expire a user's messages a while after the last one was kept: Redis for a
//! cluster ([`redis::RedisOfflineStore`], key `{prefix}offline:{user}`, a
//! stream), memory for the embedded node ([`memory::MemoryOfflineStore`]).

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use stomp_parser::Headers;

use crate::broker::Message;

/// How much a store keeps per user, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct OfflineLimits {
    /// Messages kept per user; past it the oldest is dropped.
    pub max_messages: usize,
    /// A user's messages are dropped this long after the last one was kept.
    pub ttl: Duration,
    /// Messages, and bytes of them, the embedded node's store keeps in all;
    /// past either the node's oldest is dropped. (Redis bounds its own
    /// memory: `maxmemory`.)
    pub max_node_messages: usize,
    pub max_node_bytes: usize,
}

impl Default for OfflineLimits {
    fn default() -> OfflineLimits {
        OfflineLimits {
            max_messages: 1000,
            ttl: Duration::from_secs(24 * 60 * 60),
            max_node_messages: 100_000,
            max_node_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A kept message and the id the store forgets it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    pub id: String,
    pub message: Message,
    /// It may have reached a session before: it was sent to live sessions
    /// when it was kept, or was read from the store already. A session
    /// shows it as `redelivered:true` then.
    pub shown: bool,
}

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfflineError {
    #[error("the offline message store is unavailable: {0}")]
    Unavailable(String),
}

/// What keeping a message once for a request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keeping {
    /// Kept by this id: newly, or still kept from an earlier try.
    Kept(String),
    /// An earlier try kept it and it has been delivered since.
    Delivered,
}

/// Where messages for absent users wait.
#[async_trait]
pub trait OfflineStore: Send + Sync + 'static {
    /// Keeps `message` for `user`'s user destination `name`; answers the id
    /// it is kept by. `sent_live`: it is also being sent to live sessions
    /// (so it may have been shown when it is next read).
    async fn keep(
        &self,
        user: &str,
        name: &str,
        message: &Message,
        sent_live: bool,
    ) -> Result<String, OfflineError>;

    /// [`OfflineStore::keep`], once per `request` and user: a request
    /// carried out again finds what its first try kept. A store that no
    /// request reaches twice (the embedded node's, which has no
    /// `stomp.dispatch`) keeps it anew.
    async fn keep_once(
        &self,
        user: &str,
        name: &str,
        message: &Message,
        request: &str,
        sent_live: bool,
    ) -> Result<Keeping, OfflineError> {
        let _ = request;
        self.keep(user, name, message, sent_live)
            .await
            .map(Keeping::Kept)
    }

    /// What is kept for `user` at `name`, oldest first; what it answers
    /// counts as shown from then on.
    async fn kept(&self, user: &str, name: &str) -> Result<Vec<OfflineMessage>, OfflineError>;

    /// Forgets delivered messages of `user`.
    async fn forget(&self, user: &str, ids: &[String]) -> Result<(), OfflineError>;
}

fn headers_from_json(text: &[u8]) -> Result<Headers, OfflineError> {
    crate::history::headers_from_json(text)
        .map_err(|error| OfflineError::Unavailable(format!("a kept message is damaged: {error}")))
}
