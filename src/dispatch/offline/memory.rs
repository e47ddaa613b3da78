//! The offline store of a single embedded node, in memory: lost when the
//! node stops, as everything else of an embedded node is.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;

use super::{KeptMessage, OfflineError, OfflineLimits, OfflineStore};
use crate::broker::Message;

/// How many keeps pass between sweeps of expired users, so that users who
/// never come back do not stay in memory.
const SWEEP_EVERY: u64 = 1024;

/// User -> kept messages, behind a mutex never held across an `.await`.
#[derive(Debug)]
pub struct MemoryOfflineStore {
    limits: OfflineLimits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<String, UserMessages>,
    next_id: u64,
}

#[derive(Debug)]
struct UserMessages {
    /// (id, destination name, message), oldest first.
    messages: VecDeque<(u64, String, Message)>,
    expires_at: Instant,
}

impl MemoryOfflineStore {
    pub fn new(limits: OfflineLimits) -> MemoryOfflineStore {
        MemoryOfflineStore {
            limits,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl OfflineStore for MemoryOfflineStore {
    async fn keep(&self, user: &str, name: &str, message: &Message) -> Result<(), OfflineError> {
        let now = Instant::now();
        let mut state = self.state();
        state.next_id += 1;
        let id = state.next_id;
        if id.is_multiple_of(SWEEP_EVERY) {
            state.users.retain(|_, kept| kept.expires_at > now);
        }
        let kept = state
            .users
            .entry(user.to_owned())
            .or_insert_with(|| UserMessages {
                messages: VecDeque::new(),
                expires_at: now,
            });
        if kept.expires_at <= now {
            kept.messages.clear();
        }
        kept.expires_at = now + self.limits.ttl;
        kept.messages
            .push_back((id, name.to_owned(), message.clone()));
        while kept.messages.len() > self.limits.max_messages {
            kept.messages.pop_front();
        }
        Ok(())
    }

    async fn kept(&self, user: &str, name: &str) -> Result<Vec<KeptMessage>, OfflineError> {
        let mut state = self.state();
        let Some(kept) = state.users.get(user) else {
            return Ok(Vec::new());
        };
        if kept.expires_at <= Instant::now() {
            state.users.remove(user);
            return Ok(Vec::new());
        }
        Ok(kept
            .messages
            .iter()
            .filter(|(_, kept_name, _)| kept_name == name)
            .map(|(id, _, message)| KeptMessage {
                id: id.to_string(),
                message: message.clone(),
            })
            .collect())
    }

    async fn forget(&self, user: &str, ids: &[String]) -> Result<(), OfflineError> {
        let ids: HashSet<u64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        let mut state = self.state();
        if let Some(kept) = state.users.get_mut(user) {
            kept.messages.retain(|(id, _, _)| !ids.contains(id));
            if kept.messages.is_empty() {
                state.users.remove(user);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn message(body: &'static str) -> Message {
        Message {
            headers: [("k", "v")].into_iter().collect(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn bodies(kept: &[KeptMessage]) -> Vec<&[u8]> {
        kept.iter().map(|kept| &kept.message.body[..]).collect()
    }

    #[tokio::test]
    async fn messages_are_kept_per_destination_in_order_until_forgotten() {
        let store = MemoryOfflineStore::new(OfflineLimits::default());
        store.keep("alice", "inbox", &message("1")).await.unwrap();
        store.keep("alice", "alerts", &message("a")).await.unwrap();
        store.keep("alice", "inbox", &message("2")).await.unwrap();
        let inbox = store.kept("alice", "inbox").await.unwrap();
        assert_eq!(bodies(&inbox), [b"1", b"2"]);
        assert_eq!(inbox[0].message, message("1"));
        assert!(store.kept("bob", "inbox").await.unwrap().is_empty());

        store.forget("alice", &[inbox[0].id.clone()]).await.unwrap();
        assert_eq!(bodies(&store.kept("alice", "inbox").await.unwrap()), [b"2"]);
        assert_eq!(
            bodies(&store.kept("alice", "alerts").await.unwrap()),
            [b"a"]
        );
    }

    #[tokio::test]
    async fn the_oldest_message_goes_past_the_cap() {
        let store = MemoryOfflineStore::new(OfflineLimits {
            max_messages: 2,
            ..OfflineLimits::default()
        });
        for body in ["1", "2", "3"] {
            store.keep("alice", "inbox", &message(body)).await.unwrap();
        }
        assert_eq!(
            bodies(&store.kept("alice", "inbox").await.unwrap()),
            [b"2", b"3"]
        );
    }

    #[tokio::test]
    async fn messages_expire_after_the_ttl() {
        let store = MemoryOfflineStore::new(OfflineLimits {
            ttl: Duration::from_millis(20),
            ..OfflineLimits::default()
        });
        store.keep("alice", "inbox", &message("1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(store.kept("alice", "inbox").await.unwrap().is_empty());
    }
}
