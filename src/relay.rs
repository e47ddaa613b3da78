//! One node's parts, wired together: the broker, the registry, dispatch,
//! and what its connections run with. Built once at start, whole: a node
//! cannot exist without its authentication and ACL.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::auth::acl::Acl;
use crate::broker::Broker;
use crate::broker::embedded::{EmbeddedBroker, EmbeddedLimits};
use crate::dispatch::Dispatcher;
use crate::dispatch::offline::memory::MemoryOfflineStore;
use crate::dispatch::offline::{OfflineLimits, OfflineStore};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::registry::memory::MemoryRegistry;
use crate::session::{SessionContext, SessionSettings};
use crate::transport::connection::commands::SessionServices;
use crate::transport::connection::local::LocalSessions;
use crate::transport::connection::{ConnectionContext, ConnectionSettings};

/// The services of one node.
pub struct Relay {
    pub node_id: String,
    pub broker: Arc<dyn Broker>,
    pub registry: Arc<dyn Registry>,
    pub dispatcher: Dispatcher,
    /// How logins are checked (`--auth`); the HTTP API checks its own
    /// logins with it too.
    pub auth: Authenticator,
    pub metrics: Metrics,
    /// What each client connection runs with.
    pub connections: Arc<ConnectionContext>,
}

/// How a node checks who clients are and where they may go.
pub struct Security {
    pub auth: Authenticator,
    pub acl: Acl,
}

/// The settings of a node's connections and sessions.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub connection: ConnectionSettings,
    pub session: SessionSettings,
}

impl Relay {
    pub fn new(
        node_id: String,
        broker: Arc<dyn Broker>,
        registry: Arc<dyn Registry>,
        offline: Arc<dyn OfflineStore>,
        settings: Settings,
        security: Security,
        metrics: Metrics,
    ) -> Relay {
        let dispatcher =
            Dispatcher::new(registry.clone(), broker.clone(), offline, metrics.clone());
        let services = SessionServices {
            node_id: node_id.clone(),
            broker: broker.clone(),
            registry: registry.clone(),
            dispatcher: dispatcher.clone(),
            auth: security.auth.clone(),
            sessions: LocalSessions::default(),
            metrics: metrics.clone(),
        };
        let connections = ConnectionContext {
            settings: settings.connection,
            session: SessionContext::new(settings.session, security.acl),
            services: Arc::new(services),
            metrics: metrics.clone(),
        };
        Relay {
            node_id,
            broker,
            registry,
            dispatcher,
            auth: security.auth,
            metrics,
            connections: Arc::new(connections),
        }
    }

    /// A single node with the in-process broker and the in-memory registry
    /// and offline store; `address` is what it listens on.
    pub fn embedded(
        node_id: String,
        address: &str,
        settings: Settings,
        offline: OfflineLimits,
        security: Security,
    ) -> Relay {
        let registry = MemoryRegistry::new(&node_id, address);
        let metrics = Metrics::default();
        let offline = MemoryOfflineStore::new(offline, metrics.offline_dropped.clone());
        Relay::new(
            node_id,
            Arc::new(EmbeddedBroker::new(EmbeddedLimits::default())),
            Arc::new(registry),
            Arc::new(offline),
            settings,
            security,
            metrics,
        )
    }

    /// This node's sessions, for ending one from outside its connection.
    pub fn sessions(&self) -> &LocalSessions {
        &self.connections.services.sessions
    }
}
