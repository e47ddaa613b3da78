//! The registry of a single embedded node, in memory.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{NodeRecord, Registry, RegistryError, SessionLocation, SessionRecord};
use crate::broker::SessionId;

/// User -> session -> record, behind a mutex never held across an `.await`.
#[derive(Debug)]
pub struct MemoryRegistry {
    users: Mutex<HashMap<String, HashMap<SessionId, SessionRecord>>>,
    /// The one node there is.
    node: NodeRecord,
}

impl MemoryRegistry {
    /// The registry of the node `node`, listening on `address`.
    pub fn new(node: &str, address: &str) -> MemoryRegistry {
        MemoryRegistry {
            users: Mutex::default(),
            node: NodeRecord {
                node: node.to_owned(),
                address: address.to_owned(),
                started_at: super::unix_millis(),
                sessions: 0,
            },
        }
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn register(&self, record: &SessionRecord) -> Result<(), RegistryError> {
        self.users
            .lock()
            .entry(record.user.clone())
            .or_default()
            .insert(record.session, record.clone());
        Ok(())
    }

    async fn update_destinations(&self, record: &SessionRecord) -> Result<(), RegistryError> {
        if let Some(registered) = self
            .users
            .lock()
            .get_mut(&record.user)
            .and_then(|sessions| sessions.get_mut(&record.session))
        {
            registered.destinations = record.destinations.clone();
        }
        Ok(())
    }

    async fn unregister(&self, record: &SessionRecord) -> Result<(), RegistryError> {
        let mut users = self.users.lock();
        if let Some(sessions) = users.get_mut(&record.user) {
            sessions.remove(&record.session);
            if sessions.is_empty() {
                users.remove(&record.user);
            }
        }
        Ok(())
    }

    async fn all_sessions(&self) -> Result<Vec<SessionRecord>, RegistryError> {
        Ok(self
            .users
            .lock()
            .values()
            .flat_map(|sessions| sessions.values().cloned())
            .collect())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        let sessions = self.users.lock().values().map(HashMap::len).sum();
        Ok(vec![NodeRecord {
            sessions,
            ..self.node.clone()
        }])
    }

    async fn sessions_of(&self, user: &str) -> Result<Vec<SessionRecord>, RegistryError> {
        let mut sessions: Vec<SessionRecord> = self
            .users
            .lock()
            .get(user)
            .map(|sessions| sessions.values().cloned().collect())
            .unwrap_or_default();
        sessions.sort_by_key(|record| record.connected_at);
        Ok(sessions)
    }

    async fn locate(&self, user: &str) -> Result<Vec<SessionLocation>, RegistryError> {
        Ok(self
            .users
            .lock()
            .get(user)
            .map(|sessions| {
                sessions
                    .values()
                    .map(|record| SessionLocation {
                        session: record.session,
                        node: record.node.clone(),
                        destinations: record.destinations.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn record(user: &str, connected_at: u64) -> SessionRecord {
        SessionRecord {
            session: Uuid::new_v4(),
            user: user.into(),
            node: "n1".into(),
            connected_at,
            destinations: Vec::new(),
        }
    }

    #[tokio::test]
    async fn sessions_come_and_go_per_user() {
        let registry = MemoryRegistry::new("n1", "127.0.0.1:1");
        let (tab1, tab2, other) = (record("alice", 1), record("alice", 2), record("bob", 3));
        for r in [&tab2, &tab1, &other] {
            registry.register(r).await.unwrap();
        }
        assert_eq!(
            registry.sessions_of("alice").await.unwrap(),
            [tab1.clone(), tab2.clone()]
        );
        registry.unregister(&tab1).await.unwrap();
        assert_eq!(
            registry.sessions_of("alice").await.unwrap(),
            std::slice::from_ref(&tab2)
        );
        registry.unregister(&tab2).await.unwrap();
        assert!(registry.sessions_of("alice").await.unwrap().is_empty());
        assert!(registry.users.lock().get("alice").is_none());
        assert_eq!(registry.nodes().await.unwrap()[0].sessions, 1);
    }

    #[tokio::test]
    async fn a_session_is_located_with_the_destinations_it_listens_to() {
        let registry = MemoryRegistry::new("n1", "127.0.0.1:1");
        let mut tab = record("alice", 1);
        registry.register(&tab).await.unwrap();
        tab.destinations = vec!["alerts".into(), "inbox".into()];
        registry.update_destinations(&tab).await.unwrap();
        let found = registry.locate("alice").await.unwrap();
        assert!(found[0].listens_to("inbox"));
        assert!(!found[0].listens_to("news"));
    }
}
