//! The histories of an embedded node: each user's (and topic's) messages
//! in memory, dropped by count as they are written, by age as they are
//! read or written (and every [`SWEEP_EVERY`] writes for every history, so
//! that those that get nothing more do not stay), and the node's oldest
//! past its caps on all histories' messages and bytes together.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    History, HistoryError, HistorySettings, Owner, POSITION_HEADER, Position, Replay, StartAt,
    horizon, now_millis, recovered,
};
use crate::broker::Message;

/// Writes between two sweeps of every history.
const SWEEP_EVERY: usize = 1024;

/// What an entry costs besides its name, headers and body.
const ENTRY_OVERHEAD: usize = 64;

pub struct MemoryHistory {
    limits: HistorySettings,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    histories: HashMap<Owner, OwnHistory>,
    /// Every history's entries, oldest first, for the node's caps; some
    /// may be gone already (dropped by their history's count or age).
    order: VecDeque<(Owner, Position)>,
    /// What all histories hold.
    held: Held,
    writes_since_sweep: usize,
}

/// Entries, and their bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    entries: usize,
    bytes: usize,
}

impl std::ops::AddAssign for Held {
    fn add_assign(&mut self, other: Held) {
        self.entries += other.entries;
        self.bytes += other.bytes;
    }
}

impl std::ops::SubAssign for Held {
    fn sub_assign(&mut self, other: Held) {
        self.entries = self.entries.saturating_sub(other.entries);
        self.bytes = self.bytes.saturating_sub(other.bytes);
    }
}

impl State {
    /// Drops the node's oldest entries while more than the caps are held.
    fn cap(&mut self, limits: &HistorySettings) {
        while self.held.entries > limits.max_node_messages
            || self.held.bytes > limits.max_node_bytes
        {
            let Some((owner, position)) = self.order.pop_front() else {
                return;
            };
            let Some(history) = self.histories.get_mut(&owner) else {
                continue;
            };
            if history
                .entries
                .front()
                .is_some_and(|entry| entry.position == position)
            {
                self.held -= history.drop_oldest();
            }
        }
        // What histories dropped themselves stays in the order until then.
        if self.order.len() > 2 * limits.max_node_messages.max(self.held.entries) {
            let histories = &self.histories;
            self.order.retain(|(owner, position)| {
                histories.get(owner).is_some_and(|history| {
                    history
                        .entries
                        .binary_search_by_key(position, |entry| entry.position)
                        .is_ok()
                })
            });
        }
    }
}

struct OwnHistory {
    entries: VecDeque<Entry>,
    /// The last position given, so that positions grow within one
    /// millisecond too.
    last: Position,
    /// The last position that may have been dropped (by count, age or the
    /// node's caps).
    dropped: Position,
}

struct Entry {
    position: Position,
    name: String,
    message: Message,
}

impl Entry {
    fn held(&self) -> Held {
        let headers: usize = self
            .message
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        Held {
            entries: 1,
            bytes: ENTRY_OVERHEAD + self.name.len() + headers + self.message.body.len(),
        }
    }
}

impl OwnHistory {
    fn new(limits: &HistorySettings, now: u64) -> OwnHistory {
        OwnHistory {
            entries: VecDeque::new(),
            last: Position(0),
            dropped: horizon(limits.ttl, now),
        }
    }

    /// Drops its oldest entry; answers what it held.
    fn drop_oldest(&mut self) -> Held {
        match self.entries.pop_front() {
            Some(entry) => {
                self.dropped = self.dropped.max(entry.position);
                entry.held()
            }
            None => Held::default(),
        }
    }

    /// Drops what is older than the TTL; answers what went.
    fn expire(&mut self, limits: &HistorySettings, now: u64) -> Held {
        let oldest = horizon(limits.ttl, now);
        let mut gone = Held::default();
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.position <= oldest)
        {
            gone += self.drop_oldest();
        }
        gone
    }

    /// Whether it is needed still: it holds entries, or it lost some
    /// younger than the TTL (which a replay must be told of).
    fn needed(&self, limits: &HistorySettings, now: u64) -> bool {
        !self.entries.is_empty() || self.dropped > horizon(limits.ttl, now)
    }
}

impl MemoryHistory {
    pub fn new(limits: HistorySettings) -> MemoryHistory {
        MemoryHistory {
            limits,
            state: Mutex::default(),
        }
    }
}

#[async_trait]
impl History for MemoryHistory {
    async fn append(
        &self,
        owner: &Owner,
        name: &str,
        message: &Message,
    ) -> Result<Position, HistoryError> {
        let now = now_millis();
        let limits = &self.limits;
        let mut state = self.state.lock();
        let state = &mut *state;
        state.writes_since_sweep += 1;
        if state.writes_since_sweep >= SWEEP_EVERY {
            state.writes_since_sweep = 0;
            let mut expired = Held::default();
            state.histories.retain(|_, history| {
                expired += history.expire(limits, now);
                history.needed(limits, now)
            });
            state.held -= expired;
        }
        let history = state
            .histories
            .entry(owner.clone())
            .or_insert_with(|| OwnHistory::new(limits, now));
        state.held -= history.expire(limits, now);
        let position = Position::at(now).max(Position(history.last.0 + 1));
        history.last = position;
        let entry = Entry {
            position,
            name: name.to_owned(),
            message: message.clone(),
        };
        state.held += entry.held();
        history.entries.push_back(entry);
        while history.entries.len() > limits.size {
            state.held -= history.drop_oldest();
        }
        state.order.push_back((owner.clone(), position));
        state.cap(limits);
        Ok(position)
    }

    async fn read(
        &self,
        owner: &Owner,
        name: &str,
        start: StartAt,
    ) -> Result<Replay, HistoryError> {
        let now = now_millis();
        let mut state = self.state.lock();
        let state = &mut *state;
        let Some(history) = state.histories.get_mut(owner) else {
            return Ok(Replay {
                messages: Vec::new(),
                recovered: recovered(start, horizon(self.limits.ttl, now)),
            });
        };
        state.held -= history.expire(&self.limits, now);
        let after = start.after().unwrap_or(Position(0));
        let mut messages: Vec<(Position, Message)> = history
            .entries
            .iter()
            .filter(|entry| entry.position > after && entry.name == name)
            .map(|entry| {
                let mut message = entry.message.clone();
                message
                    .headers
                    .set(POSITION_HEADER, &entry.position.to_string());
                (entry.position, message)
            })
            .collect();
        if start == StartAt::Last {
            messages = messages.split_off(messages.len().saturating_sub(1));
        }
        Ok(Replay {
            messages,
            recovered: recovered(start, history.dropped),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn history(size: usize) -> MemoryHistory {
        MemoryHistory::new(HistorySettings {
            size,
            ttl: Duration::from_secs(600),
            max_node_messages: 8,
            max_node_bytes: 1024 * 1024,
            topics: Default::default(),
        })
    }

    fn user(name: &str) -> Owner {
        Owner::User(name.to_owned())
    }

    fn message(body: &str) -> Message {
        Message {
            headers: Default::default(),
            body: body.as_bytes().to_vec().into(),
        }
    }

    fn bodies(replay: &Replay) -> Vec<String> {
        replay
            .messages
            .iter()
            .map(|(_, message)| String::from_utf8_lossy(&message.body).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn positions_grow_and_a_replay_gives_what_came_after_one() {
        let history = history(10);
        let mut positions = Vec::new();
        for n in 0..5 {
            positions.push(
                history
                    .append(&user("ann"), "a", &message(&n.to_string()))
                    .await
                    .unwrap(),
            );
        }
        history
            .append(&user("ann"), "b", &message("other"))
            .await
            .unwrap();
        history
            .append(&user("bob"), "a", &message("bob's"))
            .await
            .unwrap();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));

        let replay = history
            .read(&user("ann"), "a", StartAt::After(positions[1]))
            .await
            .unwrap();
        assert_eq!(bodies(&replay), ["2", "3", "4"]);
        assert!(replay.recovered);
        let from = history
            .read(&user("ann"), "a", StartAt::From(positions[1]))
            .await
            .unwrap();
        assert_eq!(bodies(&from), ["1", "2", "3", "4"]);
        let last = history
            .read(&user("ann"), "a", StartAt::Last)
            .await
            .unwrap();
        assert_eq!(bodies(&last), ["4"]);
        let first = history
            .read(&user("ann"), "a", StartAt::First)
            .await
            .unwrap();
        assert_eq!(first.messages.len(), 5);
        let since = StartAt::Since {
            millis: positions[0].millis(),
        };
        assert_eq!(
            history
                .read(&user("ann"), "a", since)
                .await
                .unwrap()
                .messages
                .len(),
            5
        );
    }

    #[tokio::test]
    async fn a_start_older_than_what_the_count_kept_is_not_recovered() {
        let history = history(3);
        let first = history
            .append(&user("ann"), "a", &message("0"))
            .await
            .unwrap();
        for n in 1..5 {
            history
                .append(&user("ann"), "a", &message(&n.to_string()))
                .await
                .unwrap();
        }
        let replay = history
            .read(&user("ann"), "a", StartAt::After(first))
            .await
            .unwrap();
        assert_eq!(bodies(&replay), ["2", "3", "4"]);
        assert!(!replay.recovered, "1 was pushed out");
    }

    #[tokio::test]
    async fn past_the_node_cap_the_oldest_of_any_user_go() {
        let history = history(10);
        let first = history
            .append(&user("ann"), "a", &message("ann's"))
            .await
            .unwrap();
        for n in 0..8 {
            history
                .append(&user("bob"), "a", &message(&n.to_string()))
                .await
                .unwrap();
        }
        let ann = history
            .read(&user("ann"), "a", StartAt::From(first))
            .await
            .unwrap();
        assert!(ann.messages.is_empty() && !ann.recovered);
        let bob = history
            .read(&user("bob"), "a", StartAt::First)
            .await
            .unwrap();
        assert_eq!(bob.messages.len(), 8);
    }

    #[tokio::test]
    async fn past_the_node_bytes_cap_the_oldest_go_and_a_replay_says_so() {
        let history = MemoryHistory::new(HistorySettings {
            size: 100,
            ttl: Duration::from_secs(600),
            max_node_messages: 100,
            max_node_bytes: 3 * (ENTRY_OVERHEAD + 1 + 1000),
            topics: Default::default(),
        });
        let big = "x".repeat(1000);
        let first = history
            .append(&user("ann"), "a", &message(&big))
            .await
            .unwrap();
        for _ in 0..3 {
            history
                .append(&user("ann"), "a", &message(&big))
                .await
                .unwrap();
        }
        let replay = history
            .read(&user("ann"), "a", StartAt::From(first))
            .await
            .unwrap();
        assert_eq!(replay.messages.len(), 3);
        assert!(!replay.recovered);
    }

    #[tokio::test]
    async fn a_user_without_history_was_complete_only_after_a_recent_position() {
        let history = history(3);
        let now = now_millis();
        let recent = history
            .read(&user("ann"), "a", StartAt::After(Position::at(now - 1000)))
            .await
            .unwrap();
        assert!(recent.recovered && recent.messages.is_empty());
        let old = history
            .read(
                &user("ann"),
                "a",
                StartAt::After(Position::at(now - 3_600_000)),
            )
            .await
            .unwrap();
        assert!(!old.recovered);
    }
}
