//! The cluster's history: one Redis stream per user,
//! `{prefix}history:{user}` (the braces are literal: the user is the hash
//! tag, as in the registry's and the offline store's keys), shared by every
//! node, so that a session gets what it missed on whichever node it comes
//! back to.
//!
//! An entry holds the user-destination name (`d`), the headers (`h`, see
//! [`super::headers_to_json`]) and the body (`b`); its stream id is its
//! position (`ms-seq`, Redis's own clock). One script writes it, drops
//! what the count (`MAXLEN`) and the age (`XTRIM MINID`) leave out, and
//! refreshes the key's TTL, so that a user who gets nothing more costs
//! nothing after it. What a stream dropped is always its oldest, so the
//! entry before its first is the last it may have dropped when it has
//! dropped any (`entries-added` beyond its `length`, Redis 7); a stream made
//! anew records the last position that may have expired before it
//! (`XSETID ... MAXDELETEDID`), so that a replay from before it says it is
//! not complete.

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    History, HistoryError, HistoryLimits, POSITION_HEADER, Position, Replay, StartAt,
    headers_from_json, headers_to_json, horizon, now_millis, recovered,
};
use crate::broker::Message;
use crate::registry::redis::connection::RedisConnection;

/// KEYS: the user's stream. ARGV: the count, the TTL in ms, the
/// destination name, headers, body. Answers the entry's id.
static APPEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local existed = redis.call('EXISTS', KEYS[1])
          local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'd', ARGV[3], 'h', ARGV[4], 'b', ARGV[5])
          local now = redis.call('TIME')
          local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
          if oldest < 0 then oldest = 0 end
          if existed == 0 then
            redis.call('XSETID', KEYS[1], id, 'MAXDELETEDID', oldest .. '-0')
          end
          redis.call('XTRIM', KEYS[1], 'MINID', oldest .. '-0')
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return id",
    )
});

/// KEYS: the user's stream. ARGV: the exclusive start (`(ms-seq`, or `-`
/// for all), the destination name. Answers nothing when there is no
/// stream; else the last id that may have been dropped (Redis 7's
/// `max-deleted-entry-id`, which `XSETID` sets when the stream is made,
/// or, when entries were trimmed off its front, the id before its first),
/// and its entries for the name. Without Redis 7's fields, `?`.
static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
          local info, fields = redis.call('XINFO', 'STREAM', KEYS[1]), {}
          for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
          local dropped, first = fields['max-deleted-entry-id'], fields['first-entry']
          if not dropped or not fields['entries-added'] then
            dropped = '?'
          elseif tonumber(fields['entries-added']) > tonumber(fields['length']) then
            dropped = first and ('<' .. first[1]) or fields['last-generated-id']
          end
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
          return {dropped, answer}",
    )
});

/// One stream entry: its id, and its fields and values in turn.
type StreamEntry = (String, Vec<Vec<u8>>);

pub struct RedisHistory {
    redis: RedisConnection,
    prefix: String,
    limits: HistoryLimits,
}

impl RedisHistory {
    pub fn new(redis: RedisConnection, prefix: &str, limits: HistoryLimits) -> RedisHistory {
        RedisHistory {
            redis,
            prefix: prefix.to_owned(),
            limits,
        }
    }

    fn key(&self, user: &str) -> String {
        format!("{}history:{{{user}}}", self.prefix)
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
        user: &str,
        name: &str,
        message: &Message,
    ) -> Result<Position, HistoryError> {
        let mut redis = self.redis.clone();
        let id: String = APPEND
            .key(self.key(user))
            .arg(self.limits.size)
            .arg(self.limits.ttl.as_millis().max(1) as u64)
            .arg(name)
            .arg(headers_to_json(&message.headers))
            .arg(&message.body[..])
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        position_of(&id)
    }

    async fn read(&self, user: &str, name: &str, start: StartAt) -> Result<Replay, HistoryError> {
        let mut redis = self.redis.clone();
        let from = match start.after() {
            Some(after) => format!("({}", stream_id(after)),
            None => "-".to_owned(),
        };
        let answer: Option<(String, Vec<StreamEntry>)> = READ
            .key(self.key(user))
            .arg(from)
            .arg(name)
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        let Some((dropped, entries)) = answer else {
            return Ok(Replay {
                messages: Vec::new(),
                recovered: recovered(start, horizon(self.limits.ttl, now_millis())),
            });
        };
        // Without Redis 7's record of what was dropped, a replay cannot
        // tell that it is complete.
        let dropped = match dropped.strip_prefix('<') {
            Some(first) => position_of(first).map(Position::before),
            None => position_of(&dropped),
        }
        .unwrap_or(Position(u64::MAX));
        let mut messages = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let position = position_of(&id)?;
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
