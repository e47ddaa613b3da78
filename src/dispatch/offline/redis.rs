//! The cluster's offline store: one Redis stream per user,
//! `{prefix}offline:{user}`, shared by every node, so that a message kept by
//! one node is delivered by whichever node the user comes back to.
//!
//! Each entry holds the user-destination name (`d`), the headers (`h`, see
//! [`crate::history::headers_to_json`]), the body (`b`) and whether it was sent to
//! live sessions too (`l`, `1` or `0`). `XADD ... MAXLEN` caps the stream
//! and `PEXPIRE`, refreshed with every keep, drops a user's messages when
//! none has come for the TTL; both run in one `MULTI` on the one key. The
//! ids of entries read already are the set `{prefix}offline-shown:{user}`,
//! which lives as long as the stream.
//! A `stomp.dispatch` request with a message id also records which entry it
//! kept, under `{prefix}offline-request:{user}:{id}`, in the same script as
//! the keep. The braces are literal: the user is the hash tag of each key,
//! so that the scripts, which take two keys of one user, run on a Redis
//! Cluster.

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Keeping, OfflineError, OfflineLimits, OfflineMessage, OfflineStore, headers_from_json,
};
use crate::broker::Message;
use crate::history::headers_to_json;
use crate::history::redis::add_message;
use crate::registry::redis::connection::RedisConnection;

/// The offline store of a cluster node.
#[derive(Clone)]
pub struct RedisOfflineStore {
    redis: RedisConnection,
    prefix: String,
    limits: OfflineLimits,
}

fn unavailable(error: redis::RedisError) -> OfflineError {
    OfflineError::Unavailable(error.to_string())
}

/// XDEL and SREM, and the stream goes once empty rather than linger until
/// its TTL; one script, so that a keep in between cannot be lost with it.
/// KEYS: the user's stream, its shown set.
static FORGET: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"redis.call('XDEL', KEYS[1], unpack(ARGV))
          redis.call('SREM', KEYS[2], unpack(ARGV))
          if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end",
    )
});

/// The entries kept for one destination name, each with whether it may
/// have been shown (sent live, or read before), marking them read. The
/// shown set is pruned of entries the cap dropped, and expires with the
/// stream. KEYS: the user's stream, its shown set. ARGV: the stream's cap,
/// the destination name.
static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local answer, still_shown = {}, {}
          for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])) do
            local id, fields, name, live = entry[1], entry[2], nil, false
            for i = 1, #fields, 2 do
              if fields[i] == 'd' then name = fields[i + 1] end
              if fields[i] == 'l' then live = fields[i + 1] == '1' end
            end
            local before = redis.call('SISMEMBER', KEYS[2], id) == 1
            if before then still_shown[#still_shown + 1] = id end
            if name == ARGV[2] then
              if not before then redis.call('SADD', KEYS[2], id) end
              answer[#answer + 1] = {id, fields, (live or before) and 1 or 0}
            end
          end
          if redis.call('SCARD', KEYS[2]) > #still_shown + #answer then
            redis.call('DEL', KEYS[2])
            for _, entry in ipairs(answer) do redis.call('SADD', KEYS[2], entry[1]) end
            if #still_shown > 0 then redis.call('SADD', KEYS[2], unpack(still_shown)) end
          end
          local ttl = redis.call('PTTL', KEYS[1])
          if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
          return answer",
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
/// key's, in ms, and whether it is sent live (`1` or `0`).
static KEEP_ONCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local prior = redis.call('GET', KEYS[2])
          if prior then
            if #redis.call('XRANGE', KEYS[1], prior, prior) > 0 then return {'kept', prior} end
            return {'delivered', ''}
          end
          local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'd', ARGV[2], 'h', ARGV[3], 'b', ARGV[4], 'l', ARGV[7])
          redis.call('PEXPIRE', KEYS[1], ARGV[5])
          redis.call('SET', KEYS[2], id, 'PX', ARGV[6])
          return {'kept', id}",
    )
});

/// One entry as [`READ`] answers it: the id, the flat list of field names
/// and values, and 1 when it may have been shown.
type ReadEntry = (String, Vec<Vec<u8>>, u8);

impl RedisOfflineStore {
    pub fn new(redis: RedisConnection, prefix: &str, limits: OfflineLimits) -> RedisOfflineStore {
        RedisOfflineStore {
            redis,
            prefix: prefix.to_owned(),
            limits,
        }
    }

    fn key(&self, user: &str) -> String {
        format!("{}offline:{{{user}}}", self.prefix)
    }

    fn shown_key(&self, user: &str) -> String {
        format!("{}offline-shown:{{{user}}}", self.prefix)
    }
}

fn live_flag(sent_live: bool) -> &'static str {
    if sent_live { "1" } else { "0" }
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
        sent_live: bool,
    ) -> Result<String, OfflineError> {
        let key = self.key(user);
        let ttl = self.limits.ttl.as_millis().max(1) as u64;
        let mut redis = self.redis.clone();
        add_message(
            redis::pipe().atomic(),
            &key,
            self.limits.max_messages,
            name,
            message,
        )
        .arg("l")
        .arg(live_flag(sent_live))
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
        sent_live: bool,
    ) -> Result<Keeping, OfflineError> {
        let mut redis = self.redis.clone();
        let (outcome, id): (String, String) = KEEP_ONCE
            .key(self.key(user))
            .key(format!(
                "{}offline-request:{{{user}}}:{request}",
                self.prefix
            ))
            .arg(self.limits.max_messages)
            .arg(name)
            .arg(headers_to_json(&message.headers))
            .arg(&message.body[..])
            .arg(self.limits.ttl.as_millis().max(1) as u64)
            .arg(REQUEST_MEMORY.as_millis() as u64)
            .arg(live_flag(sent_live))
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        Ok(match outcome.as_str() {
            "delivered" => Keeping::Delivered,
            _ => Keeping::Kept(id),
        })
    }

    async fn kept(&self, user: &str, name: &str) -> Result<Vec<OfflineMessage>, OfflineError> {
        let mut redis = self.redis.clone();
        let entries: Vec<ReadEntry> = READ
            .key(self.key(user))
            .key(self.shown_key(user))
            .arg(self.limits.max_messages)
            .arg(name)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        let mut kept = Vec::new();
        for (id, fields, shown) in entries {
            if let Some(message) = entry_message(name, &fields)? {
                kept.push(OfflineMessage {
                    id,
                    message,
                    shown: shown == 1,
                });
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
            .key(self.shown_key(user))
            .arg(ids)
            .invoke_async::<()>(&mut redis)
            .await
            .map_err(unavailable)
    }
}
