//! The sessions of this node, by id, so that a session can be told to end
//! from outside its connection: a newer login of the same user with
//! `--second-login replace`, on this node or (through the registry) on
//! another.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::broker::SessionId;

/// Session id -> the signal that ends it; a mutex never held across an
/// `.await`.
#[derive(Debug, Default)]
pub struct LocalSessions {
    sessions: Mutex<HashMap<SessionId, Arc<Notify>>>,
}

impl LocalSessions {
    /// Makes `session` reachable by [`LocalSessions::evict`]; `eviction`
    /// fires when it is asked to end.
    pub fn insert(&self, session: SessionId, eviction: Arc<Notify>) {
        self.sessions.lock().insert(session, eviction);
    }

    pub fn remove(&self, session: SessionId) {
        self.sessions.lock().remove(&session);
    }

    /// Asks `session` to end, if it is here; answers whether it was.
    pub fn evict(&self, session: SessionId) -> bool {
        match self.sessions.lock().get(&session) {
            Some(eviction) => {
                // A stored permit: the session ends even if it is busy now.
                eviction.notify_one();
                true
            }
            None => false,
        }
    }
}
