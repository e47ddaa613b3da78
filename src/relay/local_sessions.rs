//! The sessions of this node, by id, so that a session can be told to end
//! from outside its connection: a newer login of the same user with
//! `--second-login replace`, on this node or (through the registry) on
//! another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::broker::SessionId;

/// Session id -> the signal that ends it; a mutex never held across an
/// `.await`.
#[derive(Debug, Default)]
pub struct LocalSessions {
    sessions: Mutex<HashMap<SessionId, Arc<Notify>>>,
}

impl LocalSessions {
    fn sessions(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<Notify>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `session` reachable by [`LocalSessions::evict`]; `eviction`
    /// fires when it is asked to end.
    pub fn insert(&self, session: SessionId, eviction: Arc<Notify>) {
        self.sessions().insert(session, eviction);
    }

    pub fn remove(&self, session: SessionId) {
        self.sessions().remove(&session);
    }

    /// Asks `session` to end, if it is here; answers whether it was.
    pub fn evict(&self, session: SessionId) -> bool {
        match self.sessions().get(&session) {
            Some(eviction) => {
                // A stored permit: the session ends even if it is busy now.
                eviction.notify_one();
                true
            }
            None => false,
        }
    }
}
