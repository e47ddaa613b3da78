//! What a node counts, served as Prometheus text at `/metrics` (with the
//! HTTP API's access rule). Counters are per node: summed over the nodes
//! they describe the cluster, and read one by one they show which node did
//! what (a user-targeted message should move only the counters of the node
//! its user is on).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The node's counters, shared by its sessions; cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    /// STOMP sessions open now (WebSocket connections past the upgrade).
    pub connections: Gauge,
    pub connections_total: Counter,
    pub frames_received: Counter,
    /// MESSAGE frames written to clients.
    pub messages_delivered: Counter,
    /// Deliveries dropped because their client read too slowly
    /// (`--slow-consumer drop`).
    pub messages_dropped: Counter,
    /// Sessions ended with an ERROR frame, by its `message` header.
    pub errors: Family<Vec<(String, String)>, Counter>,
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
    /// 1 while the node's RabbitMQ connection is up with everything on it
    /// restored, 0 while it is away (cluster mode).
    pub broker_connected: Gauge,
    /// Times the node connected to RabbitMQ again after losing it.
    pub broker_reconnects: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("stomp_relay");
        let metrics = Metrics {
            registry: std::sync::Arc::default(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            frames_received: Counter::default(),
            messages_delivered: Counter::default(),
            messages_dropped: Counter::default(),
            errors: Family::default(),
            dispatched_sessions: Counter::default(),
            dispatched_offline_users: Counter::default(),
            dispatched_to_everyone: Counter::default(),
            offline_kept: Counter::default(),
            offline_delivered: Counter::default(),
            offline_dropped: Counter::default(),
            broker_connected: Gauge::default(),
            broker_reconnects: Counter::default(),
        };
        registry.register(
            "connections",
            "STOMP connections open now",
            metrics.connections.clone(),
        );
        registry.register(
            "connections",
            "STOMP connections accepted",
            metrics.connections_total.clone(),
        );
        registry.register(
            "frames_received",
            "STOMP frames received from clients",
            metrics.frames_received.clone(),
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
            "session_errors",
            "Sessions ended by an ERROR frame, by reason",
            metrics.errors.clone(),
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
        registry.register(
            "offline_dropped",
            "Kept messages dropped, oldest first, to stay within the per-user and node bounds (embedded mode)",
            metrics.offline_dropped.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while the connection to RabbitMQ is up and restored, 0 while it is away",
            metrics.broker_connected.clone(),
        );
        registry.register(
            "broker_reconnects",
            "Connections to RabbitMQ made again after one was lost",
            metrics.broker_reconnects.clone(),
        );
        Metrics {
            registry: std::sync::Arc::new(registry),
            ..metrics
        }
    }
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
        self.errors
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let metrics = Metrics::default();
        metrics.connections_total.inc();
        metrics.connections.inc();
        metrics.error("heart-beat timeout");
        let text = metrics.render();
        assert!(text.contains("stomp_relay_connections_total 1"), "{text}");
        assert!(text.contains("stomp_relay_connections 1"), "{text}");
        assert!(
            text.contains(r#"stomp_relay_session_errors_total{reason="heart-beat timeout"} 1"#),
            "{text}"
        );
    }
}
