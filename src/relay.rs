//! What every session of a node shares: the broker, the registry, dispatch
//! and the settings sessions run with.

use std::sync::Arc;
use std::time::Duration;

use stomp_parser::Limits;

use crate::auth::Authenticator;
use crate::auth::acl::Acl;
use crate::broker::Broker;
use crate::broker::embedded::{EmbeddedBroker, EmbeddedLimits};
use crate::config::{SecondLogin, SlowConsumer};
use crate::dispatch::Dispatcher;
use crate::dispatch::offline::memory::MemoryOfflineStore;
use crate::dispatch::offline::{OfflineLimits, OfflineStore};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::registry::memory::MemoryRegistry;
use crate::session::local::LocalSessions;

/// Per-session settings, from the configuration.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The server's heart-beat offer, in ms: how often it can send, how
    /// often it wants to hear from the client (CONNECTED's `heart-beat`).
    pub heart_beat: (u32, u32),
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Deliveries a session may have waiting to be written; past it the
    /// client is too slow and is disconnected.
    pub outbox_capacity: usize,
    /// What a full outbox does (`--slow-consumer`).
    pub slow_consumer: SlowConsumer,
    pub max_subscriptions: usize,
    /// Messages a session may hold delivered and unacknowledged.
    pub max_unacked: usize,
    /// How long a frame may take to arrive once its first byte has: a
    /// client that trickles a frame (slowloris) or stops halfway is cut.
    pub frame_timeout: Duration,
    /// Open transactions per session, and frames held by each.
    pub max_transactions: usize,
    pub max_transaction_frames: usize,
    /// Frame limits of the parser.
    pub limits: Limits,
    pub second_login: SecondLogin,
    /// Frames a client may send per second, in bursts of as many (0: no
    /// limit).
    pub max_frames_per_second: u32,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            heart_beat: (10_000, 10_000),
            connect_timeout: Duration::from_secs(10),
            outbox_capacity: 1024,
            slow_consumer: SlowConsumer::Close,
            max_subscriptions: 256,
            max_unacked: 1000,
            frame_timeout: Duration::from_secs(30),
            max_transactions: 16,
            max_transaction_frames: 1024,
            limits: Limits::default(),
            second_login: SecondLogin::Allow,
            max_frames_per_second: 1_000,
        }
    }
}

/// The services of one node, shared by all its sessions.
pub struct Relay {
    pub node_id: String,
    pub broker: Arc<dyn Broker>,
    pub registry: Arc<dyn Registry>,
    pub dispatcher: Dispatcher,
    /// This node's sessions, for ending one from outside its connection.
    pub sessions: LocalSessions,
    /// How logins are checked (`--auth`).
    pub auth: Authenticator,
    /// Where clients may subscribe and send (`--acl-file`, or the defaults
    /// of the authentication mode).
    pub acl: Acl,
    pub settings: SessionSettings,
    pub metrics: Metrics,
}

impl Relay {
    pub fn new(
        node_id: String,
        broker: Arc<dyn Broker>,
        registry: Arc<dyn Registry>,
        offline: Arc<dyn OfflineStore>,
        settings: SessionSettings,
    ) -> Relay {
        let metrics = Metrics::default();
        Relay {
            node_id,
            dispatcher: Dispatcher::new(registry.clone(), broker.clone(), offline, metrics.clone()),
            metrics,
            broker,
            registry,
            sessions: LocalSessions::default(),
            auth: Authenticator::None,
            acl: Acl::allow_all(),
            settings,
        }
    }

    /// A single node with the in-process broker and the in-memory registry
    /// and offline store; `address` is what it listens on.
    pub fn embedded(
        node_id: String,
        address: &str,
        settings: SessionSettings,
        offline: OfflineLimits,
    ) -> Relay {
        let registry = MemoryRegistry::new(&node_id, address);
        Relay::new(
            node_id,
            Arc::new(EmbeddedBroker::new(EmbeddedLimits::default())),
            Arc::new(registry),
            Arc::new(MemoryOfflineStore::new(offline)),
            settings,
        )
    }
}
