//! Each user's recent messages (and each of some topics'), with their
//! positions, so that a session that reconnects (to any node) gets what it
//! missed: the histories of [`memory`] in embedded mode, of [`redis`] (one
//! stream per user or topic) in cluster mode.
//!
//! Every message dispatched to a user destination is written here once per
//! user, before it is handed to the user's sessions, and a message
//! published to a topic that keeps a history (`--history-topics`) once,
//! before it is published; each carries its position there as the MESSAGE
//! header `x-stream-offset`. A position is
//! the time the message was written, in milliseconds, and a sequence
//! number within that millisecond (`ms << 16 | seq`): positions only grow,
//! per user, on every node, and a time (`timestamp=T`) is a position too.
//!
//! A history is bounded by count (`--history-size` per user) and by age
//! (`--history-ttl`). It is not the offline store: that one keeps a message
//! for a user with no session at all until a session delivers it (and
//! forgets it then); a history keeps every message for a while whether it
//! was delivered or not, and forgets by count and age only.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use stomp_parser::Headers;

use crate::broker::Message;
use crate::broker::topic_pattern::TopicPattern;

/// The MESSAGE header that gives a message's position, and the SUBSCRIBE
/// header that asks for what came after one (RabbitMQ's names for a
/// stream's offsets).
pub const POSITION_HEADER: &str = "x-stream-offset";

/// The MESSAGE header, on the first MESSAGE of a replaying subscription,
/// that says the history no longer held everything after the position
/// asked for.
pub const RECOVERED_HEADER: &str = "x-stream-recovered";

/// How much each history holds, and which topics keep one.
#[derive(Debug, Clone)]
pub struct HistorySettings {
    /// Messages per user (or topic), at most (0: no history).
    pub size: usize,
    /// How long a message stays (zero: no history).
    pub ttl: Duration,
    /// Messages, and bytes, an embedded node keeps in all histories
    /// together.
    pub max_node_messages: usize,
    pub max_node_bytes: usize,
    pub topics: HistoryTopics,
}

impl HistorySettings {
    pub fn enabled(&self) -> bool {
        self.size > 0 && !self.ttl.is_zero()
    }
}

/// Whose history: a user's (every user destination of the user in one),
/// or a topic's (`--history-topics`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    User(String),
    /// A routing key of `amq.topic` (`/topic/{key}`).
    Topic(String),
}

/// The topics that keep a history: `/topic/` patterns, with `*` for one
/// word and `#` (or `**`) for any number of them, as AMQP topics match.
#[derive(Debug, Clone, Default)]
pub struct HistoryTopics {
    patterns: Vec<TopicPattern>,
}

impl HistoryTopics {
    /// The patterns of `--history-topics`; refuses one not under `/topic/`.
    pub fn parse(patterns: &[String]) -> Result<HistoryTopics, String> {
        let patterns = patterns
            .iter()
            .map(|pattern| {
                let key = pattern
                    .strip_prefix("/topic/")
                    .filter(|key| !key.is_empty())
                    .ok_or_else(|| format!("{pattern:?} is not a /topic/ pattern"))?;
                let words: Vec<&str> = key
                    .split('.')
                    .map(|word| if word == "**" { "#" } else { word })
                    .collect();
                Ok(TopicPattern::new(&words.join(".")))
            })
            .collect::<Result<_, String>>()?;
        Ok(HistoryTopics { patterns })
    }

    /// Whether the topic `key` keeps a history: a key of its own (a
    /// wildcard subscription has no one history to replay).
    pub fn keep(&self, key: &str) -> bool {
        !TopicPattern::new(key).is_wildcard()
            && self.patterns.iter().any(|pattern| pattern.matches(key))
    }
}

/// A node's histories: where they are kept, and which topics keep one.
#[derive(Clone)]
pub struct Histories {
    pub store: Arc<dyn History>,
    pub topics: HistoryTopics,
}

/// A message's place in its user's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

/// Bits of a position that number the messages of one millisecond.
const SEQUENCE_BITS: u32 = 16;

impl Position {
    /// The position of the `sequence`th message written at `millis`; `None`
    /// past 65 535 messages to one user in one millisecond.
    pub fn new(millis: u64, sequence: u64) -> Option<Position> {
        (sequence < 1 << SEQUENCE_BITS && millis < 1 << (64 - SEQUENCE_BITS))
            .then_some(Position(millis << SEQUENCE_BITS | sequence))
    }

    /// The first position of millisecond `millis`.
    pub fn at(millis: u64) -> Position {
        Position(millis.min((1 << (64 - SEQUENCE_BITS)) - 1) << SEQUENCE_BITS)
    }

    /// When it was written, in milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0 >> SEQUENCE_BITS
    }

    pub fn sequence(self) -> u64 {
        self.0 & ((1 << SEQUENCE_BITS) - 1)
    }

    /// The position just before this one (or this one, at zero).
    pub fn before(self) -> Position {
        Position(self.0.saturating_sub(1))
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a replay starts, as a SUBSCRIBE's `x-stream-offset` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// `first`: everything the history holds.
    First,
    /// `last`: the last message it holds, then what comes.
    Last,
    /// A position a MESSAGE gave (`1234`): what came after it.
    After(Position),
    /// `offset=N`: from position N on, N included.
    From(Position),
    /// `timestamp=T` (seconds since the epoch): what came from then on.
    Since { millis: u64 },
}

impl StartAt {
    /// The start a SUBSCRIBE header asks for; `None` for `next` (nothing
    /// but what comes) and for what it cannot read, which RabbitMQ's
    /// plugin ignores too.
    pub fn parse(value: &str) -> Option<StartAt> {
        match value {
            "first" => Some(StartAt::First),
            "last" => Some(StartAt::Last),
            _ => {
                if let Some(offset) = value.strip_prefix("offset=") {
                    offset.parse().ok().map(|n| StartAt::From(Position(n)))
                } else if let Some(seconds) = value.strip_prefix("timestamp=") {
                    let seconds: u64 = seconds.parse().ok()?;
                    Some(StartAt::Since {
                        millis: seconds.saturating_mul(1000),
                    })
                } else {
                    value.parse().ok().map(|n| StartAt::After(Position(n)))
                }
            }
        }
    }

    /// The last position before the replay, when the start names one: the
    /// replay is complete when the history still holds everything after it.
    pub fn after(self) -> Option<Position> {
        match self {
            StartAt::First | StartAt::Last => None,
            StartAt::After(position) => Some(position),
            StartAt::From(position) => Some(position.before()),
            StartAt::Since { millis } => Some(Position::at(millis).before()),
        }
    }
}

/// What a replay gives: the messages for one destination after its start,
/// oldest first, and whether they are all that came after it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Replay {
    pub messages: Vec<(Position, Message)>,
    /// False when the history no longer held some message after the start
    /// (pushed out by the count, or older than the TTL).
    pub recovered: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HistoryError {
    #[error("the history store is unavailable: {0}")]
    Unavailable(String),
    #[error("a message in the history is damaged: {0}")]
    Damaged(String),
}

/// Where histories are kept.
#[async_trait]
pub trait History: Send + Sync {
    /// Writes `message`, sent to `owner`'s destination `name` (a user
    /// destination's name; a topic's key), and answers its position.
    async fn append(
        &self,
        owner: &Owner,
        name: &str,
        message: &Message,
    ) -> Result<Position, HistoryError>;

    /// [`History::append`] once per `request` (a `stomp.dispatch`
    /// request's message id): a request carried out again (its node died
    /// before acknowledging it, or Redis or RabbitMQ failed on the way)
    /// answers the position its first write got. The embedded node, which
    /// has no `stomp.dispatch`, writes each time.
    async fn append_once(
        &self,
        owner: &Owner,
        name: &str,
        message: &Message,
        _request: &str,
    ) -> Result<Position, HistoryError> {
        self.append(owner, name, message).await
    }

    /// What `owner`'s history holds for `name` from `start` on, oldest
    /// first.
    async fn read(&self, owner: &Owner, name: &str, start: StartAt)
    -> Result<Replay, HistoryError>;
}

/// Headers as the stores (the history, the offline store) write them: a
/// JSON array of `[name, value]` pairs, which keeps order and repeats.
pub(crate) fn headers_to_json(headers: &Headers) -> String {
    let pairs: Vec<(&str, &str)> = headers.iter().collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn headers_from_json(text: &[u8]) -> Result<Headers, serde_json::Error> {
    let pairs: Vec<(String, String)> = serde_json::from_slice(text)?;
    Ok(pairs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect())
}

/// Milliseconds since the epoch, now.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The last position that may have expired by `now_millis`: a history
/// made anew (its user's had expired, or there was none) may have lost
/// anything up to it, and held everything after it.
fn horizon(ttl: Duration, now_millis: u64) -> Position {
    Position::at(now_millis.saturating_sub(ttl.as_millis() as u64)).before()
}

/// Whether a replay from `start` is complete in a history that may have
/// lost everything up to `dropped`.
fn recovered(start: StartAt, dropped: Position) -> bool {
    start.after().is_none_or(|after| after >= dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_keep_a_history_by_pattern_and_never_for_a_wildcard() {
        let topics =
            HistoryTopics::parse(&["/topic/prices.**".to_owned(), "/topic/news".to_owned()])
                .unwrap();
        assert!(topics.keep("prices.eur") && topics.keep("prices.eur.spot"));
        assert!(topics.keep("news") && !topics.keep("news.sport"));
        assert!(!topics.keep("prices.*") && !topics.keep("chat"));
        assert!(HistoryTopics::parse(&["/queue/x".to_owned()]).is_err());
        assert!(HistoryTopics::parse(&["/topic/".to_owned()]).is_err());
    }

    #[test]
    fn headers_keep_order_and_repeats_through_json() {
        let headers: Headers = [("a", "1"), ("b", "x:y"), ("a", "2")].into_iter().collect();
        let text = headers_to_json(&headers);
        assert_eq!(headers_from_json(text.as_bytes()).unwrap(), headers);
        assert!(headers_from_json(b"{").is_err());
    }

    #[test]
    fn a_position_is_a_time_and_a_sequence_in_order() {
        let first = Position::new(1_700_000_000_000, 0).unwrap();
        let second = Position::new(1_700_000_000_000, 1).unwrap();
        let later = Position::new(1_700_000_000_001, 0).unwrap();
        assert!(first < second && second < later);
        assert_eq!((second.millis(), second.sequence()), (1_700_000_000_000, 1));
        assert_eq!(Position::at(1_700_000_000_001), later);
        assert_eq!(Position::new(1, 1 << 16), None);
    }

    #[test]
    fn the_start_is_read_in_rabbitmqs_forms_and_as_a_position() {
        assert_eq!(StartAt::parse("first"), Some(StartAt::First));
        assert_eq!(StartAt::parse("last"), Some(StartAt::Last));
        assert_eq!(StartAt::parse("next"), None);
        assert_eq!(
            StartAt::parse("offset=42"),
            Some(StartAt::From(Position(42)))
        );
        assert_eq!(
            StartAt::parse("timestamp=1700000000"),
            Some(StartAt::Since {
                millis: 1_700_000_000_000
            })
        );
        assert_eq!(StartAt::parse("42"), Some(StartAt::After(Position(42))));
        assert_eq!(StartAt::parse("offset=x"), None);
        assert_eq!(StartAt::parse("-1"), None);
        assert_eq!(StartAt::parse("soon"), None);
    }

    #[test]
    fn every_start_but_first_and_last_names_the_position_before_it() {
        assert_eq!(StartAt::From(Position(42)).after(), Some(Position(41)));
        assert_eq!(StartAt::After(Position(42)).after(), Some(Position(42)));
        assert_eq!(
            StartAt::Since { millis: 5 }.after(),
            Some(Position::at(5).before())
        );
        assert_eq!(StartAt::First.after(), None);
    }

    #[test]
    fn a_replay_is_complete_when_nothing_after_its_start_was_dropped() {
        let now = 1_700_000_600_000;
        let dropped = horizon(Duration::from_secs(600), now);
        assert_eq!(dropped, Position::at(1_700_000_000_000).before());
        assert!(recovered(StartAt::After(Position::at(now - 1000)), dropped));
        assert!(!recovered(
            StartAt::After(Position::at(now - 601_000)),
            dropped
        ));
        assert!(recovered(
            StartAt::Since {
                millis: 1_700_000_000_000
            },
            dropped
        ));
        assert!(recovered(StartAt::First, Position(u64::MAX)));
    }
}
