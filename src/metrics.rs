//! What a node counts, served as Prometheus text at `/metrics` (with the
//! HTTP API's access rule). Counters are per node: summed over the nodes
//! they describe the cluster, and read one by one they show which node did
//! what (a user-targeted message should move only the counters of the node
//! its user is on).

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use stomp_parser::Command;

/// A metric's labels: name and value pairs.
type Labels = Vec<(String, String)>;

fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_owned(), value.to_owned())]
}

/// The node's counters, shared by its sessions; cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    /// Client connections open now and accepted, by transport
    /// (`websocket`, `sockjs`).
    connections: Family<Labels, Gauge>,
    connections_total: Family<Labels, Counter>,
    /// STOMP sessions past CONNECTED, and the subscriptions they hold.
    pub sessions: Gauge,
    pub subscriptions: Gauge,
    pub frames_received: FrameCounters,
    pub frames_sent: FrameCounters,
    /// MESSAGE frames written to clients.
    pub messages_delivered: Counter,
    /// Deliveries dropped because their client read too slowly
    /// (`--slow-consumer drop`).
    pub messages_dropped: Counter,
    /// Messages for a session (its key) that found it gone, or not
    /// subscribed to their name: dropped by the user-key guard.
    pub unclaimed: Counter,
    /// How long a delivery waited in its session's outbox, from the broker
    /// handing it over to the session taking it (one in
    /// [`DELIVERY_SAMPLE`]).
    pub delivery_seconds: Histogram,
    /// Sessions ended with an ERROR frame, by its `message` header.
    errors: Family<Labels, Counter>,
    /// Messages for users, from request to published, and how each ended.
    pub dispatch_seconds: Histogram,
    pub dispatch: DispatchOutcomes,
    /// Sessions a dispatched message reached.
    pub dispatched_sessions: Counter,
    /// Addressed users a dispatched message reached in no session.
    pub dispatched_offline_users: Counter,
    /// Messages to everyone published (by this node; every node delivers
    /// them, uncounted here).
    pub dispatched_to_everyone: Counter,
    /// Messages kept for offline users, and kept messages delivered later.
    pub offline_kept: Counter,
    pub offline_delivered: Counter,
    /// Kept messages dropped to stay within the store's bounds.
    pub offline_dropped: Counter,
    /// The node's connection to RabbitMQ, and to Redis (cluster mode).
    pub broker: LinkMetrics,
    pub redis: LinkMetrics,
}

/// Deliveries of a session of which one has its wait measured: a histogram
/// takes a lock, which every delivery of a fan-out would contend for.
pub const DELIVERY_SAMPLE: u64 = 16;

/// What a node counts of one of its connections to RabbitMQ or Redis.
#[derive(Debug, Clone, Default)]
pub struct LinkMetrics {
    /// 1 while connected (for RabbitMQ: with everything restored), 0 while
    /// away.
    pub connected: Gauge,
    /// Connections made again after one was lost.
    pub reconnects: Counter,
}

/// STOMP frames by command, each counter found without a lookup.
#[derive(Clone)]
pub struct FrameCounters {
    family: Family<Labels, Counter>,
    by_command: [Counter; Command::ALL.len()],
}

impl FrameCounters {
    fn new() -> FrameCounters {
        let family = Family::<Labels, Counter>::default();
        let by_command = Command::ALL.map(|command| {
            family
                .get_or_create(&label("command", command.as_str()))
                .clone()
        });
        FrameCounters { family, by_command }
    }

    pub fn count(&self, command: Command) {
        if let Some(index) = Command::ALL.iter().position(|known| *known == command) {
            self.by_command[index].inc();
        }
    }
}

/// How dispatches (messages for users) ended.
#[derive(Clone)]
pub struct DispatchOutcomes {
    family: Family<Labels, Counter>,
    /// Reached at least one session.
    pub delivered: Counter,
    /// Reached no session and was kept for later (`persist`).
    pub kept: Counter,
    /// Reached no session and was not kept.
    pub offline: Counter,
    /// Could not be carried out (RabbitMQ or Redis away).
    pub failed: Counter,
}

impl DispatchOutcomes {
    fn new() -> DispatchOutcomes {
        let family = Family::<Labels, Counter>::default();
        let outcome = |name: &str| family.get_or_create(&label("outcome", name)).clone();
        DispatchOutcomes {
            delivered: outcome("delivered"),
            kept: outcome("kept"),
            offline: outcome("offline"),
            failed: outcome("failed"),
            family,
        }
    }
}

/// Buckets from 100 µs to about 100 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 4.0, 11))
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("stomp_relay");
        let metrics = Metrics {
            registry: std::sync::Arc::default(),
            connections: Family::default(),
            connections_total: Family::default(),
            sessions: Gauge::default(),
            subscriptions: Gauge::default(),
            frames_received: FrameCounters::new(),
            frames_sent: FrameCounters::new(),
            messages_delivered: Counter::default(),
            messages_dropped: Counter::default(),
            unclaimed: Counter::default(),
            delivery_seconds: latency_histogram(),
            errors: Family::default(),
            dispatch_seconds: latency_histogram(),
            dispatch: DispatchOutcomes::new(),
            dispatched_sessions: Counter::default(),
            dispatched_offline_users: Counter::default(),
            dispatched_to_everyone: Counter::default(),
            offline_kept: Counter::default(),
            offline_delivered: Counter::default(),
            offline_dropped: Counter::default(),
            broker: LinkMetrics::default(),
            redis: LinkMetrics::default(),
        };
        registry.register(
            "connections",
            "Client connections open now, by transport",
            metrics.connections.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted, by transport",
            metrics.connections_total.clone(),
        );
        registry.register(
            "sessions",
            "STOMP sessions past CONNECTED open now",
            metrics.sessions.clone(),
        );
        registry.register(
            "subscriptions",
            "Subscriptions the open sessions hold",
            metrics.subscriptions.clone(),
        );
        registry.register(
            "frames_received",
            "STOMP frames received from clients, by command",
            metrics.frames_received.family.clone(),
        );
        registry.register(
            "frames_sent",
            "STOMP frames sent to clients, by command",
            metrics.frames_sent.family.clone(),
        );
        registry.register(
            "messages_delivered",
            "MESSAGE frames sent to clients",
            metrics.messages_delivered.clone(),
        );
        registry.register(
            "messages_dropped",
            "Deliveries dropped because their client read too slowly",
            metrics.messages_dropped.clone(),
        );
        registry.register(
            "user_messages_unclaimed",
            "Messages for a session that found it gone, or not subscribed to their user destination: dropped",
            metrics.unclaimed.clone(),
        );
        registry.register("delivery_seconds", "Time a delivery waited for its session, from the broker handing it over (one delivery in 16 of each session)", metrics.delivery_seconds.clone());
        registry.register(
            "session_errors",
            "Sessions ended by an ERROR frame, by reason",
            metrics.errors.clone(),
        );
        registry.register(
            "dispatch_seconds",
            "Time a message for users took from request to published",
            metrics.dispatch_seconds.clone(),
        );
        registry.register(
            "dispatch",
            "Messages for users, by outcome: delivered, kept, offline, failed",
            metrics.dispatch.family.clone(),
        );
        registry.register(
            "dispatched_sessions",
            "Sessions that dispatched messages reached",
            metrics.dispatched_sessions.clone(),
        );
        registry.register(
            "dispatched_offline_users",
            "Users that dispatched messages reached in no session",
            metrics.dispatched_offline_users.clone(),
        );
        registry.register(
            "dispatched_to_everyone",
            "Messages to everyone published, one each whatever the number of nodes and sessions",
            metrics.dispatched_to_everyone.clone(),
        );
        registry.register(
            "offline_kept",
            "Messages kept for users who had no session listening",
            metrics.offline_kept.clone(),
        );
        registry.register(
            "offline_delivered",
            "Kept messages delivered when their user subscribed",
            metrics.offline_delivered.clone(),
        );
        registry.register("offline_dropped", "Kept messages dropped, oldest first, to stay within the per-user and node bounds (embedded mode)", metrics.offline_dropped.clone());
        registry.register(
            "broker_connected",
            "1 while the connection to RabbitMQ is up and restored, 0 while it is away",
            metrics.broker.connected.clone(),
        );
        registry.register(
            "broker_reconnects",
            "Connections to RabbitMQ made again after one was lost",
            metrics.broker.reconnects.clone(),
        );
        registry.register(
            "redis_connected",
            "1 while Redis answers this node, 0 while it does not (cluster mode)",
            metrics.redis.connected.clone(),
        );
        registry.register(
            "redis_reconnects",
            "Times Redis was found again after it had stopped answering or had come back empty (a restart)",
            metrics.redis.reconnects.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; the version in its label",
            build_info(),
        );
        Metrics {
            registry: std::sync::Arc::new(registry),
            ..metrics
        }
    }
}

fn build_info() -> Family<Labels, Gauge> {
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&label("version", env!("CARGO_PKG_VERSION")))
        .set(1);
    info
}

impl Metrics {
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub fn error(&self, reason: &str) {
        self.errors.get_or_create(&label("reason", reason)).inc();
    }

    /// The open-connections gauge and accepted counter of `transport`.
    pub fn connection_of(&self, transport: &str) -> (Gauge, Counter) {
        let labels = label("transport", transport);
        (
            self.connections.get_or_create(&labels).clone(),
            self.connections_total.get_or_create(&labels).clone(),
        )
    }

    pub fn observe_dispatch(&self, took: Duration) {
        self.dispatch_seconds.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let metrics = Metrics::default();
        let (open, accepted) = metrics.connection_of("websocket");
        open.inc();
        accepted.inc();
        metrics.frames_received.count(Command::Send);
        metrics.error("heart-beat timeout");
        let text = metrics.render();
        assert!(
            text.contains(r#"stomp_relay_connections_total{transport="websocket"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"stomp_relay_connections{transport="websocket"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"stomp_relay_frames_received_total{command="SEND"} 1"#),
            "{text}"
        );
        assert!(text.contains("# HELP stomp_relay_sessions "), "{text}");
        assert!(
            text.contains(r#"stomp_relay_session_errors_total{reason="heart-beat timeout"} 1"#),
            "{text}"
        );
    }
}
