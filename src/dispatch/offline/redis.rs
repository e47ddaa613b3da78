//! The cluster's offline store: one Redis stream per user,
//! `{prefix}offline:{user}`, shared by every node, so that a message kept by
//! one node is delivered by whichever node the user comes back to.
//!
//! Each entry holds the user-destination name (`d`), the headers (`h`, see
//! [`super::headers_to_json`]) and the body (`b`). `XADD ... MAXLEN` caps the
//! stream and `PEXPIRE`, refreshed with every keep, drops a user's messages
//! when none has come for the TTL; both run in one `MULTI` on the one key.
//! A `stomp.dispatch` request with a message id also records which entry it
//! kept, under `{prefix}offline-request:{user}:{id}`, in the same script as
//! the keep (two keys: on Redis Cluster they would need one hash tag).

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::{Keeping, KeptMessage, OfflineError, OfflineLimits, OfflineStore, headers_from_json};
use crate::broker::Message;

/// The offline store of a cluster node.
#[derive(Clone)]
pub struct RedisOfflineStore {
    redis: ConnectionManager,
    prefix: String,
    limits: OfflineLimits,
}

fn unavailable(error: redis::RedisError) -> OfflineError {
    OfflineError::Unavailable(error.to_string())
}

/// XDEL, and the stream goes once empty rather than linger until its TTL;
/// one script, so that a keep in between cannot be lost with it.
static FORGET: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"redis.call('XDEL', KEYS[1], unpack(ARGV))
          if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end",
    )
});

/// How long a node remembers which `stomp.dispatch` request kept which
/// message: longer than RabbitMQ takes to redeliver a request whose node
/// died, short enough that busy dispatch leaves few keys behind.
const REQUEST_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// Keeps a message once per request: what an earlier try kept is answered
/// (`kept`, its id, while still in the stream; `delivered` once forgotten).
/// KEYS: the user's stream, the request's key. ARGV: the stream's cap,
/// the destination name, headers, body, the stream's TTL and the request
/// key's, in ms.
static KEEP_ONCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local prior = redis.call('GET', KEYS[2])
          if prior then
            if #redis.call('XRANGE', KEYS[1], prior, prior) > 0 then return {'kept', prior} end
            return {'delivered', ''}
          end
          local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'd', ARGV[2], 'h', ARGV[3], 'b', ARGV[4])
          redis.call('PEXPIRE', KEYS[1], ARGV[5])
          redis.call('SET', KEYS[2], id, 'PX', ARGV[6])
          return {'kept', id}",
    )
});

/// One stream entry as XRANGE returns it: the id and the flat list of
/// field names and values.
type StreamEntry = (String, Vec<Vec<u8>>);

impl RedisOfflineStore {
    pub fn new(redis: ConnectionManager, prefix: &str, limits: OfflineLimits) -> RedisOfflineStore {
        RedisOfflineStore {
            redis,
            prefix: prefix.to_owned(),
            limits,
        }
    }

    fn key(&self, user: &str) -> String {
        format!("{}offline:{user}", self.prefix)
    }
}

/// The message of an entry kept for `name`; `None` for another destination.
fn entry_message(name: &str, fields: &[Vec<u8>]) -> Result<Option<Message>, OfflineError> {
    let field = |wanted: &[u8]| {
        fields
            .chunks_exact(2)
            .find(|pair| pair[0] == wanted)
            .map(|pair| pair[1].as_slice())
    };
    if field(b"d") != Some(name.as_bytes()) {
        return Ok(None);
    }
    Ok(Some(Message {
        headers: headers_from_json(field(b"h").unwrap_or(b"[]"))?,
        body: Bytes::copy_from_slice(field(b"b").unwrap_or_default()),
    }))
}

#[async_trait]
impl OfflineStore for RedisOfflineStore {
    async fn keep(
        &self,
        user: &str,
        name: &str,
        message: &Message,
    ) -> Result<String, OfflineError> {
        let key = self.key(user);
        let ttl = self.limits.ttl.as_millis().max(1) as u64;
        let mut redis = self.redis.clone();
        redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg(self.limits.max_messages)
            .arg("*")
            .arg("d")
            .arg(name)
            .arg("h")
            .arg(super::headers_to_json(&message.headers))
            .arg("b")
            .arg(&message.body[..])
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl)
            .ignore()
            .query_async::<(String,)>(&mut redis)
            .await
            .map(|(id,)| id)
            .map_err(unavailable)
    }

    async fn keep_once(
        &self,
        user: &str,
        name: &str,
        message: &Message,
        request: &str,
    ) -> Result<Keeping, OfflineError> {
        let mut redis = self.redis.clone();
        let (outcome, id): (String, String) = KEEP_ONCE
            .key(self.key(user))
            .key(format!("{}offline-request:{user}:{request}", self.prefix))
            .arg(self.limits.max_messages)
            .arg(name)
            .arg(super::headers_to_json(&message.headers))
            .arg(&message.body[..])
            .arg(self.limits.ttl.as_millis().max(1) as u64)
            .arg(REQUEST_MEMORY.as_millis() as u64)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        Ok(match outcome.as_str() {
            "delivered" => Keeping::Delivered,
            _ => Keeping::Kept(id),
        })
    }

    async fn kept(&self, user: &str, name: &str) -> Result<Vec<KeptMessage>, OfflineError> {
        let mut redis = self.redis.clone();
        let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
            .arg(self.key(user))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(self.limits.max_messages)
            .query_async(&mut redis)
            .await
            .map_err(unavailable)?;
        let mut kept = Vec::new();
        for (id, fields) in entries {
            if let Some(message) = entry_message(name, &fields)? {
                kept.push(KeptMessage { id, message });
            }
        }
        Ok(kept)
    }

    async fn forget(&self, user: &str, ids: &[String]) -> Result<(), OfflineError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut redis = self.redis.clone();
        FORGET
            .key(self.key(user))
            .arg(ids)
            .invoke_async::<()>(&mut redis)
            .await
            .map_err(unavailable)
    }
}
