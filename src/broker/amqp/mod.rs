//! The cluster broker, on RabbitMQ through lapin: node-level topic
//! fan-out, with the exchanges and queues of `docs/architecture.md` (AMQP
//! objects).
//!
//! - **Node queue** `stomp.node.{nodeId}` (exclusive, auto-delete): bound to
//!   `amq.topic` once per distinct key among this node's topic
//!   subscriptions, and (with [`UserKeyBinding::NodeQueue`], the default)
//!   once to `stomp.users` for every session key of the node
//!   (`stomp.{node}.#`, see [`SessionKey`](super::destination::SessionKey)); its deliveries are fanned out
//!   in-process by the [`Router`], whose user-key guard gives a session key
//!   to the session it names only. RabbitMQ does O(nodes) work per topic
//!   message, not O(subscribers), and learns nothing of sessions: no queue
//!   and no binding per session. For subscriptions with client acks the
//!   relay holds each delivery until its ACK and gives it again on NACK, to
//!   that subscription alone, and loses it with the session, as an
//!   exclusive session queue would. (Measured: topic subscriptions with
//!   acks through session queues cost RabbitMQ 194 us per delivery and
//!   capped fan-out at 7k deliveries/s; setting up a session with a user
//!   subscription cost relay, RabbitMQ and Redis 5.1 ms of CPU with a queue
//!   per session, 1.4 ms with a binding on the node queue.)
//! - **Session queue** `stomp.session.{sessionId}` (exclusive, auto-delete,
//!   capped), only with [`UserKeyBinding::SessionQueue`]: declared when a
//!   session first subscribes to a user destination (or a temp queue), and
//!   bound once to its session keys (`stomp.{node}.{session}.#`). A
//!   per-session router matches its deliveries to that session's
//!   subscriptions only, which is the user-key guard for this queue.
//! - **Dedicated consumers** for `/queue/` (a durable shared queue),
//!   `/amq/queue/` (an existing queue) and `/exchange/` (an exclusive queue
//!   of the subscription, bound to the exchange, so any exchange type
//!   matches as RabbitMQ matches it).
//!
//! Sessions share a few channels: never a connection or channel per
//! session. Delivery tags are per channel, so acks settle one delivery at a
//! time (never `multiple`), which keeps a cumulative STOMP ack from touching
//! another session's deliveries. Publishes are pipelined: handed over in
//! order per [`OrderKey`], confirmed later.
//!
//! When the connection is lost the node stays up: it connects again and
//! restores, from its own state, everything the old connection carried
//! (`recovery`).
//!
//! By concern: `connection` (the connection and its channel slots),
//! `recovery` (reconnecting and restoring), `topology` (declares, binds,
//! existence checks, the node and session queues),
//! `consumers` (node-queue fan-out, session-queue and dedicated delivery),
//! `acks` (deliveries awaiting a client's ACK), `publisher`, and
//! `dispatch_queue` (`stomp.dispatch`); this file holds the broker's state
//! and its [`Broker`] implementation.

mod acks;
mod connection;
mod consumers;
mod dispatch_queue;
mod envelope;
mod postman;
pub mod properties;
mod publisher;
mod recovery;
mod topology;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use lapin::options::QueueDeclareOptions;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::destination::{
    Destination, EVERYONE_EXCHANGE, INBOUND_EXCHANGE, SessionKey, TOPIC_EXCHANGE, USERS_EXCHANGE,
};
use super::router::{self, BindingKey, Router};
use super::{
    AckTag, Broker, BrokerError, Confirm, Delivery, DispatchOutcome, DispatchRequest, Message,
    OrderKey, Outbox, PublishTarget, SessionAddress, SessionId, Settlement, SubscriptionSpec,
};
use acks::{Held, Ledger, settle_at_source};
use connection::{ChannelSlot, Link};
use consumers::{Shown, subscriber_of};
use postman::Postman;
use publisher::{PublisherLane, confirmed};
use topology::{Existing, KNOWN_EXCHANGES, exclusive_queue};

use crate::metrics::LinkMetrics;

/// Tunables of the AMQP broker.
#[derive(Debug, Clone, Copy)]
pub struct AmqpSettings {
    /// Channels that carry consumers (sessions are spread over them).
    pub consumer_channels: usize,
    /// Channels, in confirm mode, that carry publishes.
    pub publisher_channels: usize,
    /// Unacknowledged deliveries per consumer when SUBSCRIBE names none.
    pub default_prefetch: u16,
    /// Messages a session queue holds before dropping its oldest; also the
    /// most messages the relay holds for a session until their ACKs.
    pub session_queue_length: u32,
    /// Messages the node queue holds before RabbitMQ drops its oldest.
    pub node_queue_length: u32,
    /// What a session's user-destination keys are bound to.
    pub user_keys: UserKeyBinding,
    /// The type `stomp.dispatch` is declared with, where it does not exist.
    pub dispatch_queue: DispatchQueueType,
}

/// The type of the `stomp.dispatch` queue (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchQueueType {
    /// Replicated over the broker nodes of a RabbitMQ cluster: dispatch
    /// survives the loss of one of them.
    Quorum,
    /// On one broker node: for a single RabbitMQ that cannot host quorum
    /// queues.
    Classic,
}

impl DispatchQueueType {
    fn x_queue_type(self) -> &'static str {
        match self {
            DispatchQueueType::Quorum => "quorum",
            DispatchQueueType::Classic => "classic",
        }
    }
}

/// What a session's keys (`stomp.{node}.{session}.{name}` on `stomp.users`)
/// are bound to. Either way client acks and redelivery work per
/// subscription, and a key reaches only the session it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKeyBinding {
    /// The node queue, delivered in-process: one binding for every session
    /// of the node, no queue, binding or consumer per session. RabbitMQ
    /// routes every user message into one queue per node.
    NodeQueue,
    /// A queue per session, with its own consumer and one binding.
    SessionQueue,
}

impl Default for AmqpSettings {
    fn default() -> AmqpSettings {
        AmqpSettings {
            consumer_channels: 4,
            publisher_channels: 4,
            default_prefetch: 100,
            session_queue_length: 10_000,
            node_queue_length: 100_000,
            user_keys: UserKeyBinding::NodeQueue,
            dispatch_queue: DispatchQueueType::Quorum,
        }
    }
}

/// The RabbitMQ-backed broker of a cluster node.
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

struct Inner {
    link: Link,
    link_metrics: LinkMetrics,
    /// Messages for a session that found it gone, or not subscribed to
    /// their name: dropped.
    unclaimed: Counter,
    node_id: String,
    node_queue: String,
    /// The key of envelopes for this node.
    envelope_key: String,
    /// Deliveries to sessions, grouped per node.
    postman: Postman,
    /// Declares, binds and deletes.
    admin: ChannelSlot,
    /// Publisher lanes; an [`OrderKey`] picks one.
    publishers: Vec<PublisherLane>,
    consumers: Vec<ChannelSlot>,
    /// Fan-out of the node queue.
    router: Mutex<Router>,
    /// Keeps node-queue binds and unbinds in the order the router decided
    /// them.
    binding: tokio::sync::Mutex<()>,
    sessions: Mutex<HashMap<SessionId, SessionState>>,
    /// Exchanges and queues known to exist (`exchange:x`, `queue:y`).
    known: Mutex<HashSet<String>>,
    next_consumer: AtomicU64,
    settings: AmqpSettings,
    /// Taken (to write) while the topology is restored on a new connection,
    /// and (to read) by what changes it for a session, so that a session's
    /// subscribe or detach never interleaves with its restoration.
    topology: tokio::sync::RwLock<()>,
    /// Where `stomp.dispatch` requests go, once they are asked for: kept,
    /// so that a new connection's consumer feeds the same dispatcher.
    dispatch: Mutex<Option<mpsc::Sender<DispatchRequest>>>,
}

struct SessionState {
    outbox: Outbox,
    /// Index of this session's consumer channel.
    channel: usize,
    acks: Ledger,
    session_queue: Option<SessionQueue>,
    dedicated: HashMap<Arc<str>, DedicatedConsumer>,
}

struct SessionQueue {
    name: String,
    /// This session's bindings on its queue: user destinations and temp
    /// queues.
    router: Router,
}

struct DedicatedConsumer {
    consumer_tag: String,
    /// The subscription's own queue, deleted when it ends.
    own_queue: Option<String>,
    /// What it was made from, to make it again on a new connection.
    spec: SubscriptionSpec,
}

impl AmqpBroker {
    /// Connects, declares the node queue and the inbound exchange, starts
    /// fanning out the node queue, and keeps the connection up from then on.
    /// Connects to the first of `urls` (the nodes of a RabbitMQ cluster, or
    /// one broker) that answers.
    pub async fn connect(
        urls: &[String],
        node_id: &str,
        settings: AmqpSettings,
        link_metrics: LinkMetrics,
        unclaimed: Counter,
    ) -> Result<AmqpBroker, BrokerError> {
        let (link, events) = Link::open(urls, node_id).await?;
        let admin = ChannelSlot::open(&link, false).await?;
        let mut publishers = Vec::new();
        let mut lanes = Vec::new();
        for _ in 0..settings.publisher_channels.max(1) {
            let (publisher, lane) = PublisherLane::open(&link).await?;
            publishers.push(publisher);
            lanes.push(lane);
        }
        let mut consumers = Vec::new();
        for _ in 0..settings.consumer_channels.max(1) {
            consumers.push(ChannelSlot::open(&link, false).await?);
        }
        let mut known: HashSet<String> = KNOWN_EXCHANGES
            .iter()
            .map(|e| format!("exchange:{e}"))
            .collect();
        known.insert(format!("exchange:{INBOUND_EXCHANGE}"));
        known.insert(format!("exchange:{EVERYONE_EXCHANGE}"));
        known.insert(format!("exchange:{USERS_EXCHANGE}"));
        let (postman, postman_task) = Postman::open();
        let inner = Arc::new(Inner {
            link,
            link_metrics,
            unclaimed,
            node_id: node_id.to_owned(),
            node_queue: format!("stomp.node.{node_id}"),
            envelope_key: SessionKey::envelope_key(node_id),
            postman,
            admin,
            publishers,
            consumers,
            router: Mutex::default(),
            binding: tokio::sync::Mutex::new(()),
            sessions: Mutex::default(),
            known: Mutex::new(known),
            next_consumer: AtomicU64::new(0),
            settings,
            topology: tokio::sync::RwLock::new(()),
            dispatch: Mutex::default(),
        });
        inner.set_up_node().await?;
        for lane in lanes {
            tokio::spawn(lane.run(Arc::downgrade(&inner)));
        }
        tokio::spawn(postman_task.run(Arc::downgrade(&inner)));
        inner.link_metrics.connected.set(1);
        tokio::spawn(recovery::keep_connected(Arc::downgrade(&inner), events));
        Ok(AmqpBroker { inner })
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn attach(&self, session: SessionId, outbox: Outbox) -> Result<(), BrokerError> {
        let channel = self.inner.session_channel(session);
        self.inner.sessions.lock().insert(
            session,
            SessionState {
                outbox,
                channel,
                acks: Ledger::default(),
                session_queue: None,
                dedicated: HashMap::new(),
            },
        );
        Ok(())
    }

    async fn detach(&self, session: SessionId) {
        let inner = &self.inner;
        let _topology = inner.topology.read().await;
        // Removed first: deliveries that still arrive find no session and
        // are given back at once.
        let Some(mut state) = inner.sessions.lock().remove(&session) else {
            return;
        };
        for consumer in state.dedicated.values() {
            inner.cancel(state.channel, &consumer.consumer_tag).await;
        }
        // After the cancels, so that RabbitMQ does not hand the requeued
        // messages straight back to this session's consumers.
        for released in state.acks.release(None) {
            settle_at_source(released).await;
        }
        for consumer in state.dedicated.values() {
            if let Some(queue) = &consumer.own_queue {
                inner.delete_queue(queue).await;
            }
        }
        if let Some(queue) = &state.session_queue {
            inner.delete_queue(&queue.name).await;
        }
        let _binding = inner.binding.lock().await;
        let unused = inner.router.lock().unbind_session(session);
        for key in unused {
            inner.unbind(&inner.node_queue, &key).await;
        }
    }

    async fn subscribe(
        &self,
        session: SessionId,
        spec: &SubscriptionSpec,
    ) -> Result<(), BrokerError> {
        let inner = &self.inner;
        inner.link.until_up().await?;
        let _topology = inner.topology.read().await;
        let subscriber = subscriber_of(session, spec);
        if let Some(prefetch) = spec.prefetch
            && spec.ack.needs_ack()
            && inner.fans_out(spec)
            && let Some(state) = inner.sessions.lock().get_mut(&session)
        {
            // Set before the binding, so that its first delivery counts.
            let capacity = inner.settings.session_queue_length as usize;
            state.acks.limit(&spec.id, prefetch, capacity);
        }
        match &spec.destination {
            Destination::Topic { key } if spec.queue.name.is_none() => {
                let binding = BindingKey {
                    exchange: TOPIC_EXCHANGE.to_owned(),
                    key: key.clone(),
                };
                inner
                    .bind_node_queue(session, &spec.id, binding, |router| {
                        router.bind(TOPIC_EXCHANGE, router::ExchangeKind::Topic, key, subscriber)
                    })
                    .await
            }
            // The node queue's one binding reaches every session key of
            // this node already.
            Destination::OwnUser { name }
                if inner.settings.user_keys == UserKeyBinding::NodeQueue =>
            {
                inner.router.lock().bind_user(name, subscriber);
                Ok(())
            }
            Destination::OwnUser { name } => {
                inner.ensure_session_queue(session).await?;
                with_session_router(inner, session, |router| router.bind_user(name, subscriber))
            }
            // The rest has a consumer of its own, or is refused there.
            _ => inner.subscribe_dedicated(session, spec).await,
        }
    }

    async fn unsubscribe(
        &self,
        session: SessionId,
        spec: &SubscriptionSpec,
        discard: bool,
    ) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let _topology = inner.topology.read().await;
        let own_queue = spec.queue.name.is_some()
            && matches!(
                spec.destination,
                Destination::Topic { .. } | Destination::Exchange { .. }
            );
        match &spec.destination {
            Destination::Topic { .. } if !own_queue => {
                inner.unbind_node_queue(session, &spec.id).await
            }
            // No binding of its own to remove.
            Destination::OwnUser { .. }
                if inner.settings.user_keys == UserKeyBinding::NodeQueue =>
            {
                inner.router.lock().unbind(session, &spec.id);
            }
            Destination::OwnUser { .. } => {
                let _ =
                    with_session_router(inner, session, |router| router.unbind(session, &spec.id));
            }
            _ => {
                let removed = {
                    let mut sessions = inner.sessions.lock();
                    sessions.get_mut(&session).and_then(|state| {
                        state.dedicated.remove(&spec.id).map(|c| (state.channel, c))
                    })
                };
                if let Some((channel, consumer)) = removed {
                    inner.cancel(channel, &consumer.consumer_tag).await;
                    if let Some(queue) = &consumer.own_queue {
                        inner.delete_queue(queue).await;
                    }
                }
                if discard
                    && own_queue
                    && spec.queue.durable
                    && let Some(queue) = &spec.queue.name
                {
                    inner.delete_queue(queue).await;
                }
            }
        }
        // After the cancel, so that the requeued messages go to others.
        inner.release_unacked(session, &spec.id).await;
        Ok(())
    }

    async fn publish(
        &self,
        order: OrderKey,
        target: PublishTarget,
        message: Message,
    ) -> Result<Confirm<()>, BrokerError> {
        let inner = &self.inner;
        inner.link.until_up().await?;
        let (exchange, routing_key) = match target {
            PublishTarget::Exchange {
                exchange,
                routing_key,
            } => {
                inner.check_exists(Existing::Exchange(&exchange)).await?;
                (exchange, routing_key)
            }
            PublishTarget::Queue {
                name,
                declare: Some(options),
            } => {
                inner.ensure_shared_queue(&name, &options).await?;
                (String::new(), name)
            }
            PublishTarget::Queue {
                name,
                declare: None,
            } => {
                inner.check_exists(Existing::Queue(&name)).await?;
                (String::new(), name)
            }
        };
        let answer = inner
            .publisher(order)
            .publish(&exchange, &routing_key, message)
            .await?;
        Ok(Confirm::later(confirmed(answer)))
    }

    async fn publish_to_sessions(
        &self,
        name: &str,
        sessions: &[SessionAddress<'_>],
        message: Message,
    ) -> Result<Confirm<()>, BrokerError> {
        self.inner.link.until_up().await?;
        let answer = self.inner.postman.post(name, sessions, message).await?;
        Ok(Confirm::later(postman::taken(answer)))
    }

    async fn publish_to_everyone(
        &self,
        order: OrderKey,
        name: &str,
        message: Message,
    ) -> Result<Confirm<()>, BrokerError> {
        let target = PublishTarget::Exchange {
            exchange: EVERYONE_EXCHANGE.to_owned(),
            routing_key: name.to_owned(),
        };
        self.publish(order, target, message).await
    }

    async fn settle(
        &self,
        session: SessionId,
        tags: &[AckTag],
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let settled = {
            let mut sessions = inner.sessions.lock();
            let Some(state) = sessions.get_mut(&session) else {
                return Ok(());
            };
            state.acks.settle(tags, settlement)
        };
        let mut redeliver = Vec::new();
        for settled in settled {
            match settled.held {
                Held::Relay {
                    destination,
                    message,
                } if settled.settlement == Settlement::Nack => {
                    redeliver.push((settled.subscription, destination, message));
                }
                _ => settle_at_source(settled).await,
            }
        }
        // A NACKed topic message goes back to its subscription, if that
        // still exists (the router is locked before the sessions, always).
        let router = inner.router.lock();
        let mut sessions = inner.sessions.lock();
        if let Some(state) = sessions.get_mut(&session) {
            // With `--routing session` a message to everyone came to a
            // subscription of the session queue's router.
            redeliver.retain(|(subscription, _, _)| {
                router.is_bound(session, subscription)
                    || state
                        .session_queue
                        .as_ref()
                        .is_some_and(|queue| queue.router.is_bound(session, subscription))
            });
            for (subscription, destination, message) in redeliver {
                let max = inner.settings.session_queue_length;
                state.hold_and_offer(&subscription, true, destination, message, true, max);
            }
            state.acks.offer_ready(&state.outbox);
        }
        Ok(())
    }

    async fn dispatch_requests(
        &self,
    ) -> Result<Option<mpsc::Receiver<DispatchRequest>>, BrokerError> {
        let (requests, received) = mpsc::channel(usize::from(dispatch_queue::DISPATCH_PREFETCH));
        self.inner.consume_dispatch_queue(requests.clone()).await?;
        *self.inner.dispatch.lock() = Some(requests);
        Ok(Some(received))
    }

    fn is_ready(&self) -> bool {
        self.inner.link.is_up()
    }

    async fn shutdown(&self) {
        self.inner.link.close().await;
    }
}

impl Inner {
    /// Subscribes with a consumer of the subscription's own: on a shared
    /// queue, an existing queue, or a queue of its own bound to an exchange.
    async fn subscribe_dedicated(
        self: &Arc<Self>,
        session: SessionId,
        spec: &SubscriptionSpec,
    ) -> Result<(), BrokerError> {
        match &spec.destination {
            Destination::Topic { key } | Destination::Exchange { key, .. }
                if let Some(queue) = &spec.queue.name =>
            {
                let exchange = match &spec.destination {
                    Destination::Exchange { exchange, .. } => exchange.as_str(),
                    _ => TOPIC_EXCHANGE,
                };
                // As RabbitMQ's plugin declares them: a durable queue; or
                // one that goes with its last consumer, which on a topic
                // other connections may share by name.
                let options = match spec.destination {
                    _ if spec.queue.durable => QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    Destination::Topic { .. } => QueueDeclareOptions {
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    _ => exclusive_queue(),
                };
                self.subscribe_own_queue(session, spec, queue, options, exchange, key)
                    .await
            }
            Destination::Queue { name } => {
                self.ensure_shared_queue(name, &spec.queue).await?;
                self.consume_dedicated(session, spec, name, false, Shown::Subscribed)
                    .await
            }
            Destination::AmqQueue { name } => {
                self.verify_exists(Existing::Queue(name)).await?;
                self.consume_dedicated(session, spec, name, false, Shown::Subscribed)
                    .await
            }
            Destination::Exchange { exchange, key } => {
                let n = self.next_consumer.fetch_add(1, Ordering::Relaxed);
                let queue = format!("stomp.subscription.{session}.{n}");
                self.subscribe_own_queue(session, spec, &queue, exclusive_queue(), exchange, key)
                    .await
            }
            Destination::Topic { .. }
            | Destination::OwnUser { .. }
            | Destination::User { .. }
            | Destination::App { .. }
            | Destination::ReplyQueue { .. } => Err(BrokerError::refused(format!(
                "cannot subscribe to {}",
                spec.destination_text
            ))),
        }
    }

    /// Whether the relay fans a subscription's messages out from the node
    /// queue, rather than RabbitMQ delivering them from a queue of its own
    /// (whose consumer's prefetch RabbitMQ applies).
    fn fans_out(&self, spec: &SubscriptionSpec) -> bool {
        match spec.destination {
            Destination::Topic { .. } => spec.queue.name.is_none(),
            Destination::OwnUser { .. } => self.settings.user_keys == UserKeyBinding::NodeQueue,
            _ => false,
        }
    }

    /// Adds a subscription to the node queue's router with `add` (true when
    /// its key is new on this node), binding the node queue with `binding`
    /// when it is.
    async fn bind_node_queue(
        &self,
        session: SessionId,
        subscription: &str,
        binding: BindingKey,
        add: impl FnOnce(&mut Router) -> bool,
    ) -> Result<(), BrokerError> {
        let _binding = self.binding.lock().await;
        let first = add(&mut self.router.lock());
        if first && let Err(error) = self.bind(&self.node_queue, &binding).await {
            self.router.lock().unbind(session, subscription);
            return Err(error);
        }
        Ok(())
    }

    /// Removes a subscription from the node queue's router, unbinding its key
    /// when no other subscription of the node uses it.
    async fn unbind_node_queue(&self, session: SessionId, subscription: &str) {
        let _binding = self.binding.lock().await;
        let unused = self.router.lock().unbind(session, subscription);
        if let Some(key) = unused {
            self.unbind(&self.node_queue, &key).await;
        }
    }
}

/// Runs `change` on the session queue's router of a session.
fn with_session_router<T>(
    inner: &Inner,
    session: SessionId,
    change: impl FnOnce(&mut Router) -> T,
) -> Result<T, BrokerError> {
    let mut sessions = inner.sessions.lock();
    let queue = sessions
        .get_mut(&session)
        .and_then(|state| state.session_queue.as_mut())
        .ok_or_else(|| BrokerError::refused("the session is not attached"))?;
    Ok(change(&mut queue.router))
}
