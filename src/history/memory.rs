//! The histories of an embedded node: each user's (and topic's) messages
//! in memory,
//! dropped by count as they are written, by age as they are read or
//! written (and every [`SWEEP_EVERY`] writes for every history, so that
//! those that get nothing more do not stay), and the node's oldest past
//! its cap on all histories' messages together.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    History, HistoryError, HistorySettings, Owner, POSITION_HEADER, Position, Replay, StartAt,
    horizon, now_millis, recovered,
};
use crate::broker::Message;

/// Writes between two sweeps of every user's history.
const SWEEP_EVERY: usize = 1024;

pub struct MemoryHistory {
    limits: HistorySettings,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    histories: HashMap<Owner, OwnHistory>,
    /// Every history's entries, oldest first, for the node's cap; some may
    /// be gone already (dropped by their history's count or age).
    order: VecDeque<(Owner, Position)>,
    /// Entries held in all.
    held: usize,
    writes_since_sweep: usize,
}

impl State {
    /// Drops the node's oldest entries while more than `max` are held.
    fn cap(&mut self, max: usize) {
        while self.held > max {
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
                history.entries.pop_front();
                history.dropped = history.dropped.max(position);
                self.held -= 1;
            }
        }
        // What histories dropped themselves stays in the order until then.
        if self.order.len() > 2 * max.max(self.held) {
            let histories = &self.histories;
            self.order.retain(|(owner, position)| {
                histories.get(owner).is_some_and(|history| {
                    history
                        .entries
                        .iter()
                        .any(|entry| entry.position == *position)
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
    /// The last position that may have been dropped (by count or age).
    dropped: Position,
}

struct Entry {
    position: Position,
    name: String,
    message: Message,
}

impl OwnHistory {
    fn new(limits: &HistorySettings, now: u64) -> OwnHistory {
        OwnHistory {
            entries: VecDeque::new(),
            last: Position(0),
            dropped: horizon(limits.ttl, now),
        }
    }

    /// Drops what is older than the TTL; answers how many went.
    fn expire(&mut self, limits: &HistorySettings, now: u64) -> usize {
        let oldest = horizon(limits.ttl, now);
        let mut dropped = 0;
        while let Some(entry) = self.entries.front()
            && entry.position <= oldest
        {
            self.dropped = self.dropped.max(entry.position);
            self.entries.pop_front();
            dropped += 1;
        }
        dropped
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
            let mut expired = 0;
            state.histories.retain(|_, history| {
                expired += history.expire(limits, now);
                !history.entries.is_empty()
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
        history.entries.push_back(Entry {
            position,
            name: name.to_owned(),
            message: message.clone(),
        });
        state.held += 1;
        while history.entries.len() > limits.size {
            if let Some(dropped) = history.entries.pop_front() {
                history.dropped = history.dropped.max(dropped.position);
                state.held -= 1;
            }
        }
        state.order.push_back((owner.clone(), position));
        state.cap(limits.max_node_messages);
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
