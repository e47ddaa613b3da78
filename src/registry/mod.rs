//! Who is connected where: user -> sessions -> node, and the user
//! destinations each session listens to. Dispatch reads it to find a
//! user's live sessions that listen where a message goes; presence answers
//! from it.
//!
//! The in-memory registry ([`memory::MemoryRegistry`]) serves a single node;
//! the Redis registry serves a cluster with the keys of
//! `docs/architecture.md` (Redis keys).

pub mod memory;
pub mod redis;

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::broker::SessionId;
use crate::error::{ClientText, ErrorSource};

/// One live session, as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub session: SessionId,
    /// The authenticated user; anonymous sessions are not registered.
    pub user: String,
    pub node: String,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    /// The user destinations (names) the session is subscribed to, each
    /// once, in order.
    pub destinations: Vec<String>,
}

/// Where one live session is and what it listens to: all dispatch needs to
/// reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLocation {
    pub session: SessionId,
    pub node: String,
    /// The user destinations it is subscribed to.
    pub destinations: Vec<String>,
}

impl SessionLocation {
    /// Whether the session is subscribed to the user destination `name`.
    pub fn listens_to(&self, name: &str) -> bool {
        self.destinations.iter().any(|listened| listened == name)
    }
}

/// A live node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRecord {
    pub node: String,
    /// What the node listens on.
    pub address: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    /// Sessions of named users connected to it.
    pub sessions: usize,
}

/// Why the registry could not answer. Its `Display`, with the sources
/// below it (see [`crate::error::Chain`]), is for the log;
/// [`RegistryError::client_text`] is what a client may be shown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry's store could not be reached, or failed, while the
    /// registry tried to `what`.
    #[error("the session registry could not {what}")]
    Unavailable {
        what: &'static str,
        #[source]
        source: Option<ErrorSource>,
    },
}

impl RegistryError {
    /// The short text a client may be shown.
    pub fn client_text(&self) -> &'static str {
        match self {
            RegistryError::Unavailable { .. } => "the session registry is unavailable",
        }
    }
}

impl ClientText for RegistryError {
    fn client_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(RegistryError::client_text(self))
    }
}

/// What sessions and dispatch need from the registry.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    async fn register(&self, record: &SessionRecord) -> Result<(), RegistryError>;

    async fn unregister(&self, record: &SessionRecord) -> Result<(), RegistryError>;

    /// Writes again which user destinations a registered session listens
    /// to (`record.destinations`), beside its entry, so that dispatch
    /// reaches, and counts, only sessions that listen where a message goes.
    async fn update_destinations(&self, record: &SessionRecord) -> Result<(), RegistryError>;

    /// The live sessions of a user, on every node, oldest first (presence).
    async fn sessions_of(&self, user: &str) -> Result<Vec<SessionRecord>, RegistryError>;

    /// The live sessions of a user and their nodes, in no order: what
    /// dispatch needs, with less to read than [`Registry::sessions_of`].
    async fn locate(&self, user: &str) -> Result<Vec<SessionLocation>, RegistryError>;

    /// [`Registry::locate`] for each of `users`, in their order, in one
    /// round trip where the registry is remote.
    async fn locate_many(
        &self,
        users: &[&str],
    ) -> Result<Vec<Vec<SessionLocation>>, RegistryError> {
        let mut found = Vec::with_capacity(users.len());
        for user in users {
            found.push(self.locate(user).await?);
        }
        Ok(found)
    }

    /// Every live session of every user, on every node.
    async fn all_sessions(&self) -> Result<Vec<SessionRecord>, RegistryError>;

    /// The live nodes.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, RegistryError>;

    /// Asks `node`, another node, to end `session` (a newer login of its
    /// user replaces it). A single node has no other node to
    /// ask.
    async fn evict(&self, _session: SessionId, _node: &str) -> Result<(), RegistryError> {
        Ok(())
    }

    /// The sessions of this node that other nodes asked to end; the server
    /// takes this once and ends them. `None` where no other node can ask.
    fn evictions(&self) -> Option<mpsc::Receiver<SessionId>> {
        None
    }

    /// Withdraws this node when it stops.
    async fn shutdown(&self) {}
}

/// Now, in milliseconds since the Unix epoch: how the registry dates
/// sessions and nodes.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_told_that_the_registry_is_unavailable_and_the_log_why() {
        let error = RegistryError::Unavailable {
            what: "register a session",
            source: crate::error::source_of(std::io::Error::other("READONLY replica")),
        };
        assert_eq!(error.client_text(), "the session registry is unavailable");
        assert_eq!(
            crate::error::Chain(&error).to_string(),
            "the session registry could not register a session: READONLY replica"
        );
    }
}
