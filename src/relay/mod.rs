//! The node: its one set of services ([`Node`]), the runner that carries
//! out a session's commands against them ([`runner`]), and the sessions
//! connected here ([`local_sessions`]).
//!
//! The transport drives sessions and hands their commands to a
//! [`runner::CommandRunner`]; what the commands do (authenticate, register,
//! subscribe, publish, send to users, forget kept messages, replace older
//! logins) is decided here, against the broker, the registry and dispatch.
//! Nothing here knows a socket, a URL or an HTTP request.

pub mod local_sessions;
pub mod runner;

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use crate::auth::Authenticator;
use crate::broker::embedded::{EmbeddedBroker, EmbeddedLimits};
use crate::broker::{Broker, SessionId};
use crate::dispatch::Dispatcher;
use crate::dispatch::offline::memory::MemoryOfflineStore;
use crate::dispatch::offline::{OfflineLimits, OfflineStore};
use crate::history::memory::MemoryHistory;
use crate::history::{Histories, HistorySettings};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::registry::memory::MemoryRegistry;
use local_sessions::LocalSessions;

/// The services of one node, built once at start and shared by every
/// session's runner; the transport reaches them only through the handles
/// it is given (a connection's runner, the HTTP API's own set).
pub struct Node {
    pub id: String,
    pub broker: Arc<dyn Broker>,
    pub registry: Arc<dyn Registry>,
    pub dispatcher: Dispatcher,
    /// How logins are checked (`--auth`); the HTTP API checks its own
    /// logins with it too.
    pub auth: Authenticator,
    /// This node's sessions, for ending one from outside its connection.
    pub sessions: LocalSessions,
    pub metrics: Metrics,
}

impl Node {
    pub fn new(
        id: String,
        broker: Arc<dyn Broker>,
        registry: Arc<dyn Registry>,
        offline: Arc<dyn OfflineStore>,
        history: Option<Histories>,
        auth: Authenticator,
        metrics: Metrics,
    ) -> Node {
        let dispatcher = Dispatcher::new(
            registry.clone(),
            broker.clone(),
            offline,
            history,
            metrics.clone(),
        );
        Node {
            id,
            broker,
            registry,
            dispatcher,
            auth,
            sessions: LocalSessions::default(),
            metrics,
        }
    }

    /// A single node with the in-process broker and the in-memory registry,
    /// offline store and history; `address` is what it listens on.
    pub fn embedded(
        id: String,
        address: &str,
        offline: OfflineLimits,
        history: HistorySettings,
        auth: Authenticator,
    ) -> Node {
        let registry = MemoryRegistry::new(&id, address);
        let metrics = Metrics::default();
        let offline = MemoryOfflineStore::new(offline, metrics.offline_dropped.clone());
        let history = history.enabled().then(|| Histories {
            topics: history.topics.clone(),
            store: Arc::new(MemoryHistory::new(history)),
        });
        Node::new(
            id,
            Arc::new(EmbeddedBroker::new(
                EmbeddedLimits::default(),
                metrics.unclaimed.clone(),
            )),
            Arc::new(registry),
            Arc::new(offline),
            history,
            auth,
            metrics,
        )
    }

    /// Ends the sessions of this node that other nodes asked to end (a
    /// newer login of their user elsewhere), for as long as the node lives.
    pub async fn carry_out_evictions(node: Weak<Node>, mut evictions: mpsc::Receiver<SessionId>) {
        while let Some(session) = evictions.recv().await {
            let Some(node) = node.upgrade() else { return };
            if !node.sessions.evict(session) {
                tracing::debug!(%session, "asked to end a session that is not here (any more)");
            }
        }
    }
}
