//! The cluster's offline store: one Redis stream per user,
//! `{prefix}offline:{user}`, shared by every node, so that a message kept by
//! one node is delivered by whichever node the user comes back to.
//!
//! Each entry holds the user-destination name (`d`), the headers (`h`, see
//! [`super::headers_to_json`]) and the body (`b`). `XADD ... MAXLEN` caps the
//! stream and `PEXPIRE`, refreshed with every keep, drops a user's messages
//! when none has come for the TTL; both run in one `MULTI` on the one key,
//! so this works on Redis Cluster too.

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::{KeptMessage, OfflineError, OfflineLimits, OfflineStore, headers_from_json};
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
