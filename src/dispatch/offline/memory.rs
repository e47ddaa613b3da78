//! The offline store of a single embedded node, in memory: lost when the
//! node stops, as everything else of an embedded node is. Bounded per user
//! and for the whole node, in messages and in bytes: past a bound the
//! oldest kept message of the node goes first, counted.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

use super::{OfflineError, OfflineLimits, OfflineMessage, OfflineStore};
use crate::broker::Message;

/// How many keeps pass between sweeps of expired users, so that users who
/// never come back do not stay in memory.
const SWEEP_EVERY: u64 = 1024;

/// User -> kept messages, behind a mutex never held across an `.await`.
#[derive(Debug)]
pub struct MemoryOfflineStore {
    limits: OfflineLimits,
    state: Mutex<State>,
    /// Messages dropped to keep within a bound.
    dropped: Counter,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<Arc<str>, UserMessages>,
    /// Every kept message's id, oldest first, with its user: which message
    /// goes when the node is full.
    order: BTreeMap<u64, Arc<str>>,
    /// What the kept messages take, as [`size`] counts it.
    bytes: usize,
    next_id: u64,
}

#[derive(Debug)]
struct UserMessages {
    /// Oldest first.
    messages: VecDeque<Stored>,
    expires_at: Instant,
}

#[derive(Debug)]
struct Stored {
    id: u64,
    /// The user-destination name it was sent to.
    name: String,
    message: Message,
    /// Sent live when kept, or read since: see [`OfflineMessage::shown`].
    shown: bool,
}

/// What a kept message takes: its body, headers and destination name.
fn size(stored: &Stored) -> usize {
    stored.message.body.len() + stored.message.headers.text_len() + stored.name.len()
}

impl State {
    /// Forgets one kept message of `user`'s, found by `is_it`.
    fn remove(&mut self, user: &str, is_it: impl Fn(&Stored) -> bool) -> Option<Stored> {
        let messages = &mut self.users.get_mut(user)?.messages;
        let index = messages.iter().position(is_it)?;
        let kept = messages.remove(index)?;
        if messages.is_empty() {
            self.users.remove(user);
        }
        self.order.remove(&kept.id);
        self.bytes -= size(&kept);
        Some(kept)
    }

    /// Forgets everything kept for `user`.
    fn remove_user(&mut self, user: &str) {
        if let Some(kept) = self.users.remove(user) {
            for kept in kept.messages {
                self.order.remove(&kept.id);
                self.bytes -= size(&kept);
            }
        }
    }

    /// Drops the node's oldest kept message; false when nothing is kept.
    fn drop_oldest(&mut self) -> bool {
        let Some((&id, user)) = self.order.first_key_value() else {
            return false;
        };
        let user = user.clone();
        self.remove(&user, |kept| kept.id == id).is_some()
    }
}

impl MemoryOfflineStore {
    /// A store within `limits`, counting what it drops to stay within them
    /// in `dropped`.
    pub fn new(limits: OfflineLimits, dropped: Counter) -> MemoryOfflineStore {
        MemoryOfflineStore {
            limits,
            state: Mutex::default(),
            dropped,
        }
    }
}

#[async_trait]
impl OfflineStore for MemoryOfflineStore {
    async fn keep(
        &self,
        user: &str,
        name: &str,
        message: &Message,
        sent_live: bool,
    ) -> Result<String, OfflineError> {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = state.next_id;
        if id.is_multiple_of(SWEEP_EVERY) {
            let expired: Vec<Arc<str>> = state
                .users
                .iter()
                .filter(|(_, kept)| kept.expires_at <= now)
                .map(|(user, _)| user.clone())
                .collect();
            for user in expired {
                state.remove_user(&user);
            }
        }
        if state
            .users
            .get(user)
            .is_some_and(|kept| kept.expires_at <= now)
        {
            state.remove_user(user);
        }
        let user: Arc<str> = match state.users.get_key_value(user) {
            Some((known, _)) => known.clone(),
            None => Arc::from(user),
        };
        let kept = Stored {
            id,
            name: name.to_owned(),
            message: message.clone(),
            shown: sent_live,
        };
        state.bytes += size(&kept);
        state.order.insert(id, user.clone());
        let messages = state
            .users
            .entry(user.clone())
            .or_insert_with(|| UserMessages {
                messages: VecDeque::new(),
                expires_at: now,
            });
        messages.expires_at = now + self.limits.ttl;
        messages.messages.push_back(kept);
        let over_user_cap = messages.messages.len() > self.limits.max_messages;
        if over_user_cap {
            let oldest = messages.messages.front().map(|kept| kept.id);
            if let Some(oldest) = oldest {
                state.remove(&user, |kept| kept.id == oldest);
                self.dropped.inc();
            }
        }
        while (state.order.len() > self.limits.max_node_messages
            || state.bytes > self.limits.max_node_bytes)
            && state.drop_oldest()
        {
            self.dropped.inc();
        }
        Ok(id.to_string())
    }

    async fn kept(&self, user: &str, name: &str) -> Result<Vec<OfflineMessage>, OfflineError> {
        let mut state = self.state.lock();
        let Some(kept) = state.users.get_mut(user) else {
            return Ok(Vec::new());
        };
        if kept.expires_at <= Instant::now() {
            state.remove_user(user);
            return Ok(Vec::new());
        }
        Ok(kept
            .messages
            .iter_mut()
            .filter(|kept| kept.name == name)
            .map(|kept| OfflineMessage {
                id: kept.id.to_string(),
                message: kept.message.clone(),
                shown: std::mem::replace(&mut kept.shown, true),
            })
            .collect())
    }

    async fn forget(&self, user: &str, ids: &[String]) -> Result<(), OfflineError> {
        let ids: HashSet<u64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        let mut state = self.state.lock();
        for id in ids {
            state.remove(user, |kept| kept.id == id);
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

    fn bodies(kept: &[OfflineMessage]) -> Vec<&[u8]> {
        kept.iter().map(|kept| &kept.message.body[..]).collect()
    }

    #[tokio::test]
    async fn messages_are_kept_per_destination_in_order_until_forgotten() {
        let store = MemoryOfflineStore::new(OfflineLimits::default(), Counter::default());
        store
            .keep("alice", "inbox", &message("1"), false)
            .await
            .unwrap();
        store
            .keep("alice", "alerts", &message("a"), false)
            .await
            .unwrap();
        store
            .keep("alice", "inbox", &message("2"), false)
            .await
            .unwrap();
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
    async fn a_message_sent_live_or_read_before_counts_as_shown() {
        let store = MemoryOfflineStore::new(OfflineLimits::default(), Counter::default());
        store
            .keep("alice", "inbox", &message("offline"), false)
            .await
            .unwrap();
        store
            .keep("alice", "inbox", &message("live"), true)
            .await
            .unwrap();
        let shown =
            |kept: Vec<OfflineMessage>| kept.iter().map(|kept| kept.shown).collect::<Vec<_>>();
        assert_eq!(
            shown(store.kept("alice", "inbox").await.unwrap()),
            [false, true]
        );
        assert_eq!(
            shown(store.kept("alice", "inbox").await.unwrap()),
            [true, true]
        );
    }

    #[tokio::test]
    async fn the_oldest_message_goes_past_the_cap() {
        let store = MemoryOfflineStore::new(
            OfflineLimits {
                max_messages: 2,
                ..OfflineLimits::default()
            },
            Counter::default(),
        );
        for body in ["1", "2", "3"] {
            store
                .keep("alice", "inbox", &message(body), false)
                .await
                .unwrap();
        }
        assert_eq!(
            bodies(&store.kept("alice", "inbox").await.unwrap()),
            [b"2", b"3"]
        );
    }

    #[tokio::test]
    async fn messages_expire_after_the_ttl() {
        let store = MemoryOfflineStore::new(
            OfflineLimits {
                ttl: Duration::from_millis(20),
                ..OfflineLimits::default()
            },
            Counter::default(),
        );
        store
            .keep("alice", "inbox", &message("1"), false)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(store.kept("alice", "inbox").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_node_s_oldest_message_goes_past_the_node_s_bounds_counted() {
        let dropped = Counter::default();
        let store = MemoryOfflineStore::new(
            OfflineLimits {
                max_node_messages: 3,
                ..OfflineLimits::default()
            },
            dropped.clone(),
        );
        for (user, body) in [("ann", "1"), ("bob", "2"), ("ann", "3"), ("cy", "4")] {
            store
                .keep(user, "inbox", &message(body), false)
                .await
                .unwrap();
        }
        assert_eq!(dropped.get(), 1);
        assert_eq!(bodies(&store.kept("ann", "inbox").await.unwrap()), [b"3"]);
        assert_eq!(bodies(&store.kept("bob", "inbox").await.unwrap()), [b"2"]);

        // Bytes: each message here takes its body, "k" + "v" and "inbox".
        let dropped = Counter::default();
        let store = MemoryOfflineStore::new(
            OfflineLimits {
                max_node_bytes: 2 * (3 + 2 + 5),
                ..OfflineLimits::default()
            },
            dropped.clone(),
        );
        for (user, body) in [("ann", "one"), ("bob", "two"), ("cy", "six")] {
            store
                .keep(user, "inbox", &message(body), false)
                .await
                .unwrap();
        }
        assert_eq!(dropped.get(), 1);
        assert!(store.kept("ann", "inbox").await.unwrap().is_empty());
        // Forgetting gives its room back.
        let kept = store.kept("bob", "inbox").await.unwrap();
        store.forget("bob", &[kept[0].id.clone()]).await.unwrap();
        store
            .keep("dee", "inbox", &message("ten"), false)
            .await
            .unwrap();
        assert_eq!(dropped.get(), 1);
        assert_eq!(store.state.lock().bytes, 2 * (3 + 2 + 5));
        assert_eq!(store.state.lock().order.len(), 2);
    }
}
