//! The cluster's histories: one Redis stream per user,
//! `{prefix}history:{user}` (the braces are literal: the user is the hash
//! tag, as in the registry's and the offline store's keys), and one per
//! topic that keeps one, `{prefix}history-topic:{key}`, shared by every
//! node, so that a session gets what it missed on whichever node it comes
//! back to.
//!
//! An entry holds the user-destination name (`d`), the headers (`h`, see
//! [`super::headers_to_json`]) and the body (`b`); its stream id is its
//! position (`ms-seq`, Redis's own clock). A write is one `XADD ... MAXLEN`
//! (the count) and a `PEXPIRE` of the key (a user who gets nothing more
//! costs nothing a TTL later), pipelined; entries older than the TTL that
//! the count still holds are left out when read. What a stream drops is
//! always its oldest, so when it has dropped any (`entries-added` beyond
//! its `length`, Redis 7) the last it may have dropped is the entry before
//! its first; when it has not, what it may have lost is what an earlier
//! stream of the user held, which expired a TTL after its last entry.

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    History, HistoryError, HistorySettings, Owner, POSITION_HEADER, Position, Replay, StartAt,
    headers_from_json, headers_to_json, horizon, now_millis, recovered,
};
use crate::broker::Message;
use crate::registry::redis::connection::RedisConnection;

/// How long a node remembers which position a `stomp.dispatch` request's
/// message got, as the offline store remembers what it kept.
const REQUEST_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// A write once per request: an earlier write's id when there was one.
/// KEYS: the stream, the request's key. ARGV: the count, the TTL in ms,
/// the destination name, headers, body, the request key's TTL in ms.
static APPEND_ONCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local prior = redis.call('GET', KEYS[2])
          if prior then return prior end
          local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'd', ARGV[3], 'h', ARGV[4], 'b', ARGV[5])
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          redis.call('SET', KEYS[2], id, 'PX', ARGV[6])
          return id",
    )
});

/// KEYS: the user's stream. ARGV: the exclusive start (`(ms-seq`, or `-`
/// for all), the destination name. Answers nil when there is no stream
/// (Lua's `false`); else whether it has dropped entries off its front (`1` or `0`;
/// `?` without Redis 7's `entries-added`), the id of its first entry, and
/// its entries for the name after the start.
static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return false end
          local info, fields = redis.call('XINFO', 'STREAM', KEYS[1]), {}
          for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
          local trimmed = '?'
          if fields['entries-added'] then
            trimmed = tonumber(fields['entries-added']) > tonumber(fields['length']) and '1' or '0'
          end
          local first = fields['first-entry']
          local answer = {}
          for _, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], '+')) do
            local entry_fields = entry[2]
            for i = 1, #entry_fields, 2 do
              if entry_fields[i] == 'd' and entry_fields[i + 1] == ARGV[2] then
                answer[#answer + 1] = entry
                break
              end
            end
          end
          return {trimmed, first and first[1] or '', answer}",
    )
});

/// One stream entry: its id, and its fields and values in turn.
type StreamEntry = (String, Vec<Vec<u8>>);

pub struct RedisHistory {
    redis: RedisConnection,
    prefix: String,
    limits: HistorySettings,
}

impl RedisHistory {
    pub fn new(redis: RedisConnection, prefix: &str, limits: HistorySettings) -> RedisHistory {
        RedisHistory {
            redis,
            prefix: prefix.to_owned(),
            limits,
        }
    }

    fn key(&self, owner: &Owner) -> String {
        match owner {
            Owner::User(user) => format!("{}history:{{{user}}}", self.prefix),
            Owner::Topic(key) => format!("{}history-topic:{{{key}}}", self.prefix),
        }
    }

    /// Where the position of `request`'s message to `owner` is remembered:
    /// in the hash slot of `owner`'s stream.
    fn request_key(&self, owner: &Owner, request: &str) -> String {
        match owner {
            Owner::User(user) => format!("{}history-request:{{{user}}}:{request}", self.prefix),
            Owner::Topic(key) => {
                format!("{}history-topic-request:{{{key}}}:{request}", self.prefix)
            }
        }
    }
}

fn unavailable(error: redis::RedisError) -> HistoryError {
    HistoryError::Unavailable(error.to_string())
}

/// The position of a stream id (`ms-seq`).
fn position_of(id: &str) -> Result<Position, HistoryError> {
    let damaged = || HistoryError::Damaged(format!("a stream id {id:?}"));
    let (millis, sequence) = id.split_once('-').ok_or_else(damaged)?;
    let millis = millis.parse().map_err(|_| damaged())?;
    let sequence = sequence.parse().map_err(|_| damaged())?;
    Position::new(millis, sequence).ok_or_else(damaged)
}

/// The stream id of a position.
fn stream_id(position: Position) -> String {
    format!("{}-{}", position.millis(), position.sequence())
}

/// Appends to `pipe` the `XADD` of `message`, sent to the destination
/// `name`, to the stream `key` capped at `cap` entries, as the stores write
/// a message: fields `d` (the name), `h` (the headers) and `b` (the body);
/// more fields may follow.
pub(crate) fn add_message<'a>(
    pipe: &'a mut redis::Pipeline,
    key: &str,
    cap: usize,
    name: &str,
    message: &Message,
) -> &'a mut redis::Pipeline {
    pipe.cmd("XADD")
        .arg(key)
        .arg("MAXLEN")
        .arg(cap)
        .arg("*")
        .arg("d")
        .arg(name)
        .arg("h")
        .arg(headers_to_json(&message.headers))
        .arg("b")
        .arg(&message.body[..])
}

fn field<'a>(fields: &'a [Vec<u8>], wanted: &[u8]) -> Option<&'a [u8]> {
    fields
        .chunks_exact(2)
        .find(|pair| pair[0] == wanted)
        .map(|pair| pair[1].as_slice())
}

#[async_trait]
impl History for RedisHistory {
    async fn append(
        &self,
        owner: &Owner,
        name: &str,
        message: &Message,
    ) -> Result<Position, HistoryError> {
        let key = self.key(owner);
        let mut redis = self.redis.clone();
        let (id,): (String,) =
            add_message(&mut redis::pipe(), &key, self.limits.size, name, message)
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(self.limits.ttl.as_millis().max(1) as u64)
                .ignore()
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
        position_of(&id)
    }

    async fn append_once(
        &self,
        owner: &Owner,
        name: &str,
        message: &Message,
        request: &str,
    ) -> Result<Position, HistoryError> {
        let mut redis = self.redis.clone();
        let id: String = APPEND_ONCE
            .key(self.key(owner))
            .key(self.request_key(owner, request))
            .arg(self.limits.size)
            .arg(self.limits.ttl.as_millis().max(1) as u64)
            .arg(name)
            .arg(headers_to_json(&message.headers))
            .arg(&message.body[..])
            .arg(REQUEST_MEMORY.as_millis() as u64)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        position_of(&id)
    }

    async fn read(
        &self,
        owner: &Owner,
        name: &str,
        start: StartAt,
    ) -> Result<Replay, HistoryError> {
        let mut redis = self.redis.clone();
        let from = match start.after() {
            Some(after) => format!("({}", stream_id(after)),
            None => "-".to_owned(),
        };
        let answer: Option<(String, String, Vec<StreamEntry>)> = READ
            .key(self.key(owner))
            .arg(from)
            .arg(name)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        let now = now_millis();
        let oldest_kept = horizon(self.limits.ttl, now);
        let Some((trimmed, first, entries)) = answer else {
            return Ok(Replay {
                messages: Vec::new(),
                recovered: recovered(start, oldest_kept),
            });
        };
        let mut dropped = match (trimmed.as_str(), position_of(&first)) {
            // What a stream drops is always its oldest.
            ("1", Ok(first)) => first.before(),
            // Nothing dropped since it was made: what it may have lost is
            // what an earlier stream of the user held, which expired a
            // TTL after its last entry, before this one's first.
            ("0", Ok(first)) => horizon(self.limits.ttl, first.millis() + 1),
            // Without Redis 7's count of entries added, a replay cannot
            // tell that it is complete.
            _ => Position(u64::MAX),
        };
        let mut messages = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let position = position_of(&id)?;
            // Older than the TTL: gone, though the count kept it.
            if position <= oldest_kept {
                dropped = dropped.max(position);
                continue;
            }
            let mut headers = headers_from_json(field(&fields, b"h").unwrap_or(b"[]"))
                .map_err(|error| HistoryError::Damaged(error.to_string()))?;
            headers.set(POSITION_HEADER, &position.to_string());
            let body = Bytes::copy_from_slice(field(&fields, b"b").unwrap_or_default());
            messages.push((position, Message { headers, body }));
        }
        if start == StartAt::Last {
            messages = messages.split_off(messages.len().saturating_sub(1));
        }
        Ok(Replay {
            messages,
            recovered: recovered(start, dropped),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_and_its_stream_id_are_one() {
        let position = position_of("1700000000000-3").unwrap();
        assert_eq!(position, Position::new(1_700_000_000_000, 3).unwrap());
        assert_eq!(stream_id(position), "1700000000000-3");
        assert!(position_of("0-0").is_ok());
        assert!(position_of("x").is_err());
        assert!(position_of("1-70000").is_err());
    }
}
