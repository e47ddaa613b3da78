//! The cluster broker, on RabbitMQ through lapin: scheme three with
//! node-level topic fan-out, as `ARCHITECTURE.md` lays out.
//!
//! - **Node queue** `stomp.node.{nodeId}` (exclusive, auto-delete): bound to
//!   `amq.topic` once per distinct key among this node's topic
//!   subscriptions; its deliveries are fanned out in-process by the
//!   [`Router`]. RabbitMQ does O(nodes) work per message, not O(subscribers).
//!   For subscriptions with client acks the relay holds each delivery until
//!   its ACK and gives it again on NACK, as an exclusive session queue would,
//!   and loses it with the session, as an exclusive queue does. (This
//!   departs from `ARCHITECTURE.md`, which routes those subscriptions
//!   through session queues: measured, that cost RabbitMQ 194 us per
//!   delivery and capped fan-out at 7k deliveries/s.)
//! - **Session queue** `stomp.session.{sessionId}` (exclusive, auto-delete,
//!   capped), declared when a session first needs it: its user destinations
//!   (`{name}-user{sessionId}`) and temp queues. A per-session router
//!   matches its deliveries to that session's subscriptions only, which is
//!   the user-key guard for this queue.
//! - **Dedicated consumers** for `/queue/` (a durable shared queue),
//!   `/amq/queue/` (an existing queue) and `/exchange/` (an exclusive queue
//!   of the subscription, bound to the exchange, so any exchange type
//!   matches as RabbitMQ matches it).
//!
//! Sessions share a few channels: never a connection or channel per
//! session. Delivery tags are per channel, so acks settle one delivery at a
//! time (never `multiple`), which keeps a cumulative STOMP ack from touching
//! another session's deliveries. Publishes wait for the publisher confirm.

pub mod properties;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use tokio::sync::mpsc;

use super::destination::{Destination, INBOUND_EXCHANGE, TOPIC_EXCHANGE, UserKey};
use super::queue_options::{QueueArgument, QueueOptions};
use super::router::{self, BindingKey, Router, Subscriber};
use super::{
    AckTag, Broker, BrokerError, Delivery, DispatchOutcome, DispatchRequest, Message, Outbox,
    PublishTarget, SessionId, Settlement, SubscriptionSpec,
};

/// Tunables of the AMQP broker.
#[derive(Debug, Clone, Copy)]
pub struct AmqpSettings {
    /// Channels that carry consumers (sessions are spread over them).
    pub consumer_channels: usize,
    /// Channels, in confirm mode, that carry publishes.
    pub publisher_channels: usize,
    /// Unacknowledged deliveries per consumer when SUBSCRIBE names none.
    pub default_prefetch: u16,
    /// Messages a session queue holds before dropping its oldest.
    pub session_queue_length: u32,
}

impl Default for AmqpSettings {
    fn default() -> AmqpSettings {
        AmqpSettings {
            consumer_channels: 4,
            publisher_channels: 4,
            default_prefetch: 100,
            session_queue_length: 10_000,
        }
    }
}

/// The durable exchange and queue where services ask for dispatch.
const DISPATCH: &str = "stomp.dispatch";
/// Dispatch requests a node holds unacknowledged: enough to keep every
/// dispatch lane busy (see `crate::dispatch::DISPATCH_LANES`).
const DISPATCH_PREFETCH: u16 = 128;

/// Exchanges every RabbitMQ has, plus the relay's own.
const KNOWN_EXCHANGES: &[&str] = &[
    "",
    "amq.topic",
    "amq.direct",
    "amq.fanout",
    "amq.headers",
    "amq.match",
];

/// The RabbitMQ-backed broker of a cluster node.
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    node_queue: String,
    /// Declares, binds and deletes.
    admin: ChannelSlot,
    publishers: Vec<ChannelSlot>,
    next_publisher: AtomicUsize,
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
    /// Set, with the reason, when the connection fails.
    lost: tokio::sync::watch::Sender<Option<String>>,
}

struct SessionState {
    outbox: Outbox,
    /// Index of this session's consumer channel.
    channel: usize,
    next_tag: u64,
    unacked: HashMap<AckTag, Unacked>,
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
}

/// A delivery awaiting the client's ACK.
struct Unacked {
    subscription: Arc<str>,
    held: Held,
}

/// Who holds a delivery until the client settles it.
enum Held {
    /// RabbitMQ, for a delivery from a queue: settled there.
    Amqp {
        acker: Acker,
        /// When one AMQP delivery became several MESSAGEs (several matching
        /// subscriptions on the session queue), it is settled once all are.
        group: Option<Arc<AckGroup>>,
    },
    /// The relay, for a topic message fanned out from the node queue to a
    /// subscription with client acks: kept until ACK, delivered again on
    /// NACK, gone with the session, as an exclusive queue of the session
    /// would do it, at the cost of a node-queue delivery.
    Relay {
        destination: Arc<str>,
        message: Arc<Message>,
    },
}

struct AckGroup {
    remaining: AtomicUsize,
    settled: AtomicBool,
}

/// A channel that is replaced when RabbitMQ closes it (a refused declare or
/// publish closes the channel it ran on).
struct ChannelSlot {
    channel: tokio::sync::Mutex<Channel>,
    confirms: bool,
}

impl ChannelSlot {
    async fn open(connection: &Connection, confirms: bool) -> Result<ChannelSlot, BrokerError> {
        Ok(ChannelSlot {
            channel: tokio::sync::Mutex::new(open_channel(connection, confirms).await?),
            confirms,
        })
    }

    /// The channel, reopened first if it was closed. The lock is held while
    /// the caller works on it, so that consumers and their prefetch are set
    /// up one at a time per channel.
    async fn lock(
        &self,
        connection: &Connection,
    ) -> Result<tokio::sync::MutexGuard<'_, Channel>, BrokerError> {
        let mut channel = self.channel.lock().await;
        if !channel.status().connected() {
            *channel = open_channel(connection, self.confirms).await?;
        }
        Ok(channel)
    }

    async fn get(&self, connection: &Connection) -> Result<Channel, BrokerError> {
        Ok(self.lock(connection).await?.clone())
    }
}

async fn open_channel(connection: &Connection, confirms: bool) -> Result<Channel, BrokerError> {
    let channel = connection.create_channel().await.map_err(unavailable)?;
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
    }
    Ok(channel)
}

fn unavailable(error: lapin::Error) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AmqpBroker {
    /// Connects, declares the node queue and the inbound exchange, and
    /// starts fanning out the node queue.
    pub async fn connect(
        url: &str,
        node_id: &str,
        settings: AmqpSettings,
    ) -> Result<AmqpBroker, BrokerError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("stomp-relay {node_id}").into());
        let connection = Connection::connect(url, properties)
            .await
            .map_err(unavailable)?;
        let events = connection.events_listener();
        let admin = ChannelSlot::open(&connection, false).await?;
        let mut publishers = Vec::new();
        for _ in 0..settings.publisher_channels.max(1) {
            publishers.push(ChannelSlot::open(&connection, true).await?);
        }
        let mut consumers = Vec::new();
        for _ in 0..settings.consumer_channels.max(1) {
            consumers.push(ChannelSlot::open(&connection, false).await?);
        }
        let node_queue = format!("stomp.node.{node_id}");
        {
            let channel = admin.get(&connection).await?;
            channel
                .queue_declare(
                    node_queue.as_str().into(),
                    exclusive_queue(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    INBOUND_EXCHANGE.into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        let fan_out_channel = open_channel(&connection, false).await?;
        let node_consumer = fan_out_channel
            .basic_consume(
                node_queue.as_str().into(),
                format!("node.{node_id}").into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let mut known: HashSet<String> = KNOWN_EXCHANGES
            .iter()
            .map(|e| format!("exchange:{e}"))
            .collect();
        known.insert(format!("exchange:{INBOUND_EXCHANGE}"));
        let inner = Arc::new(Inner {
            connection,
            node_queue,
            admin,
            publishers,
            next_publisher: AtomicUsize::new(0),
            consumers,
            router: Mutex::default(),
            binding: tokio::sync::Mutex::new(()),
            sessions: Mutex::default(),
            known: Mutex::new(known),
            next_consumer: AtomicU64::new(0),
            settings,
            lost: tokio::sync::watch::Sender::new(None),
        });
        tokio::spawn(watch_connection(Arc::downgrade(&inner), events));
        tokio::spawn(fan_out_node_queue(
            Arc::downgrade(&inner),
            node_consumer,
            fan_out_channel,
        ));
        Ok(AmqpBroker { inner })
    }
}

/// Records the first connection error, which ends this node's usefulness:
/// exclusive queues, consumers and unacknowledged deliveries die with the
/// connection.
async fn watch_connection(
    inner: Weak<Inner>,
    events: impl futures_util::Stream<Item = lapin::Event>,
) {
    futures_util::pin_mut!(events);
    while let Some(event) = events.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match event {
            // A soft error closes one channel (a refused declare, say), which
            // the channel slots reopen; anything else ends the connection.
            lapin::Event::Error(error) if error.is_amqp_soft_error() => {
                tracing::debug!(%error, "RabbitMQ closed a channel");
            }
            lapin::Event::Error(error) => {
                inner.lost.send_replace(Some(error.to_string()));
                return;
            }
            lapin::Event::ConnectionBlocked(reason) => {
                tracing::warn!(%reason, "RabbitMQ blocks publishing (resource alarm)");
            }
            lapin::Event::ConnectionUnblocked => {
                tracing::info!("RabbitMQ accepts publishing again")
            }
            _ => {}
        }
    }
}

fn exclusive_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    }
}

/// An exchange or queue that must exist before it is used.
#[derive(Debug, Clone, Copy)]
enum Existing<'a> {
    Exchange(&'a str),
    Queue(&'a str),
}

/// Delivers the node queue's messages to this node's topic subscriptions,
/// holding those that await a client ack. Keeps `channel` open as long as
/// it consumes.
async fn fan_out_node_queue(inner: Weak<Inner>, mut consumer: Consumer, _channel: Channel) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let message = Arc::new(properties::from_amqp(&delivery.properties, delivery.data));
        let router = lock(&inner.router);
        let route = router.route(delivery.exchange.as_str(), delivery.routing_key.as_str());
        let mut sessions = lock(&inner.sessions);
        for subscriber in route.subscribers {
            if let Some(state) = sessions.get_mut(&subscriber.session) {
                state.hold_and_offer(
                    &subscriber.subscription,
                    subscriber.needs_ack,
                    route.destination.clone(),
                    message.clone(),
                    false,
                    inner.settings.session_queue_length,
                );
            }
        }
    }
}

/// Turns `stomp.dispatch` deliveries into [`DispatchRequest`]s, and settles
/// each once dispatch says how it went: acked only after its publishes were
/// confirmed, so a node that dies mid-dispatch loses nothing (RabbitMQ
/// redelivers it to another node). Keeps `channel` open while it consumes.
async fn read_dispatch_requests(
    mut consumer: Consumer,
    _channel: Channel,
    requests: mpsc::Sender<DispatchRequest>,
) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let mut message = properties::from_amqp(&delivery.properties, delivery.data);
        let take = |message: &mut Message, name: &str| {
            let value = message.headers.get(name).map(str::to_owned);
            message.headers.remove(name);
            value
        };
        let user = take(&mut message, "stomp-user");
        let users = take(&mut message, "stomp-users");
        let all = take(&mut message, "stomp-all").as_deref() == Some("true");
        let persist = take(&mut message, "stomp-persist").as_deref() == Some("true");
        let destination = take(&mut message, "stomp-destination");
        let users: Vec<String> = user
            .into_iter()
            .chain(
                users
                    .iter()
                    .flat_map(|list| list.split(',').map(|u| u.trim().to_owned())),
            )
            .filter(|user| !user.is_empty())
            .collect();
        let Some(destination) = destination.filter(|_| all || !users.is_empty()) else {
            tracing::warn!(
                "a stomp.dispatch message without stomp-destination and stomp-user(s) or stomp-all was dropped"
            );
            let _ = delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await;
            continue;
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        let request = DispatchRequest {
            users,
            all,
            persist,
            destination,
            message,
            done,
        };
        if requests.send(request).await.is_err() {
            let _ = delivery.acker.nack(requeue()).await;
            return;
        }
        let acker = delivery.acker;
        tokio::spawn(async move {
            let _ = match outcome.await {
                Ok(DispatchOutcome::Dispatched) => acker.ack(BasicAckOptions::default()).await,
                Ok(DispatchOutcome::Invalid) => {
                    acker.reject(BasicRejectOptions { requeue: false }).await
                }
                Ok(DispatchOutcome::Retry) | Err(_) => acker.nack(requeue()).await,
            };
        });
    }
}

/// Delivers a session queue's messages to the subscriptions of that session
/// they match.
async fn deliver_session_queue(inner: Weak<Inner>, session: SessionId, mut consumer: Consumer) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let message = Arc::new(properties::from_amqp(&delivery.properties, delivery.data));
        let acker = delivery.acker;
        // Some(true): delivered, nothing to acknowledge later; None: the
        // session has gone.
        let settled_now = {
            let mut sessions = lock(&inner.sessions);
            sessions.get_mut(&session).map(|state| {
                let targets = match &state.session_queue {
                    Some(queue) => queue
                        .router
                        .targets(delivery.exchange.as_str(), delivery.routing_key.as_str()),
                    None => Vec::new(),
                };
                let acked = targets.iter().filter(|(s, _)| s.needs_ack).count();
                let group = (acked > 1).then(|| {
                    Arc::new(AckGroup {
                        remaining: AtomicUsize::new(acked),
                        settled: AtomicBool::new(false),
                    })
                });
                for (subscriber, destination) in targets {
                    let ack = subscriber.needs_ack.then(|| {
                        let held = Held::Amqp {
                            acker: acker.clone(),
                            group: group.clone(),
                        };
                        state.expect_ack(&subscriber.subscription, held)
                    });
                    let _ = state.outbox.offer(Delivery {
                        subscription: subscriber.subscription,
                        destination,
                        message: message.clone(),
                        ack,
                        redelivered: delivery.redelivered,
                    });
                }
                acked == 0
            })
        };
        match settled_now {
            Some(true) => {
                let _ = acker.ack(BasicAckOptions::default()).await;
            }
            Some(false) => {}
            None => {
                // The session left; its queue is being deleted.
                let _ = acker.nack(requeue()).await;
                return;
            }
        }
    }
}

impl SessionState {
    /// Offers a topic message fanned out by the relay, holding it when the
    /// subscription acks. Past `max_held` unacknowledged messages the
    /// session gets no more of them, as a capped queue would drop them.
    fn hold_and_offer(
        &mut self,
        subscription: &Arc<str>,
        needs_ack: bool,
        destination: Arc<str>,
        message: Arc<Message>,
        redelivered: bool,
        max_held: u32,
    ) {
        if needs_ack && self.unacked.len() >= max_held as usize {
            tracing::debug!(%subscription, "too many unacknowledged messages; one dropped");
            return;
        }
        let ack = needs_ack.then(|| {
            let held = Held::Relay {
                destination: destination.clone(),
                message: message.clone(),
            };
            self.expect_ack(subscription, held)
        });
        // A full outbox has told its session to close.
        let _ = self.outbox.offer(Delivery {
            subscription: subscription.clone(),
            destination,
            message,
            ack,
            redelivered,
        });
    }

    /// Records a delivery that awaits the client's ACK.
    fn expect_ack(&mut self, subscription: &Arc<str>, held: Held) -> AckTag {
        self.next_tag += 1;
        let tag = AckTag(self.next_tag);
        self.unacked.insert(
            tag,
            Unacked {
                subscription: subscription.clone(),
                held,
            },
        );
        tag
    }
}

/// What a dedicated consumer delivers, and as which `destination`.
#[derive(Clone)]
enum Shown {
    /// The subscription's own destination (queues).
    Subscribed,
    /// `/exchange/{exchange}/{routing key}`.
    Exchange(String),
}

/// Delivers a dedicated queue's messages to its one subscription.
async fn deliver_dedicated(
    inner: Weak<Inner>,
    session: SessionId,
    subscriber: Subscriber,
    shown: Shown,
    mut consumer: Consumer,
) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // The user-key guard: a queue bound to `amq.topic` with a wildcard
        // (`/exchange/amq.topic/#`, a durable `/topic/#`) also catches
        // other sessions' user-destination messages; they are dropped here,
        // never shown to this subscription.
        if delivery.exchange.as_str() == TOPIC_EXCHANGE
            && UserKey::parse(delivery.routing_key.as_str()).is_some()
        {
            if subscriber.needs_ack {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            continue;
        }
        let destination: Arc<str> = match &shown {
            Shown::Subscribed => subscriber.destination.clone(),
            Shown::Exchange(exchange) if exchange == TOPIC_EXCHANGE => {
                Arc::from(format!("/topic/{}", delivery.routing_key))
            }
            Shown::Exchange(exchange) => {
                Arc::from(format!("/exchange/{exchange}/{}", delivery.routing_key))
            }
        };
        let message = Arc::new(properties::from_amqp(&delivery.properties, delivery.data));
        let delivered = {
            let mut sessions = lock(&inner.sessions);
            sessions.get_mut(&session).map(|state| {
                let ack = subscriber.needs_ack.then(|| {
                    let held = Held::Amqp {
                        acker: delivery.acker.clone(),
                        group: None,
                    };
                    state.expect_ack(&subscriber.subscription, held)
                });
                let _ = state.outbox.offer(Delivery {
                    subscription: subscriber.subscription.clone(),
                    destination,
                    message,
                    ack,
                    redelivered: delivery.redelivered,
                });
            })
        };
        if delivered.is_none() {
            // The session left while this was on its way: give it back (a
            // consumer without acks has nothing to give back).
            if subscriber.needs_ack {
                let _ = delivery.acker.nack(requeue()).await;
            }
            return;
        }
    }
}

impl Inner {
    fn session_channel(&self, session: SessionId) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        session.hash(&mut hasher);
        (hasher.finish() % self.consumers.len() as u64) as usize
    }

    fn is_known(&self, what: &str) -> bool {
        lock(&self.known).contains(what)
    }

    /// Checks that an exchange or queue exists, on a channel of its own,
    /// since a failed check closes the channel it runs on. Remembers what
    /// exists, so each is checked once.
    async fn check_exists(&self, what: Existing<'_>) -> Result<(), BrokerError> {
        let key = match what {
            Existing::Exchange(exchange) => format!("exchange:{exchange}"),
            Existing::Queue(queue) => format!("queue:{queue}"),
        };
        if self.is_known(&key) {
            return Ok(());
        }
        let channel = open_channel(&self.connection, false).await?;
        let outcome = match what {
            Existing::Exchange(exchange) => channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ()),
            Existing::Queue(queue) => channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ()),
        };
        let _ = channel.close(200, "checked".into()).await;
        match outcome {
            Ok(()) => {
                lock(&self.known).insert(key);
                Ok(())
            }
            Err(_) => Err(BrokerError::NotFound(key.replace(':', " "))),
        }
    }

    /// Declares the durable shared queue of `/queue/{name}` unless it
    /// exists already (whatever its arguments).
    async fn ensure_shared_queue(
        &self,
        name: &str,
        options: &QueueOptions,
    ) -> Result<(), BrokerError> {
        if self.check_exists(Existing::Queue(name)).await.is_ok() {
            return Ok(());
        }
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        self.declare(name, durable, options).await?;
        lock(&self.known).insert(format!("queue:{name}"));
        Ok(())
    }

    /// Declares a queue with the SUBSCRIBE's queue arguments, on a channel
    /// of its own: arguments that disagree with an existing queue make
    /// RabbitMQ close the channel.
    async fn declare(
        &self,
        name: &str,
        options: QueueDeclareOptions,
        queue: &QueueOptions,
    ) -> Result<(), BrokerError> {
        let mut arguments = FieldTable::default();
        for (argument, value) in &queue.arguments {
            let value = match value {
                QueueArgument::Number(number) => AMQPValue::LongLongInt(*number),
                QueueArgument::Text(text) => AMQPValue::LongString(text.as_str().into()),
            };
            arguments.insert(argument.as_str().into(), value);
        }
        let channel = open_channel(&self.connection, false).await?;
        let declared = channel.queue_declare(name.into(), options, arguments).await;
        let _ = channel.close(200, "declared".into()).await;
        declared.map(|_| ()).map_err(|error| {
            BrokerError::Refused(format!("cannot declare queue {name:?}: {error}"))
        })
    }

    /// Starts a consumer on the session's channel.
    async fn consume(
        &self,
        session: SessionId,
        queue: &str,
        no_ack: bool,
        prefetch: u16,
    ) -> Result<(Consumer, String), BrokerError> {
        let index = lock(&self.sessions)
            .get(&session)
            .map(|state| state.channel)
            .ok_or_else(|| BrokerError::Refused("the session is not attached".into()))?;
        let consumer_tag = format!(
            "{session}.{}",
            self.next_consumer.fetch_add(1, Ordering::Relaxed)
        );
        let channel = self.consumers[index].lock(&self.connection).await?;
        // Applies to the consumers this channel starts next, one by one.
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(unavailable)?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions {
                    no_ack,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok((consumer, consumer_tag))
    }

    async fn cancel(&self, session_channel: usize, consumer_tag: &str) {
        if let Ok(channel) = self.consumers[session_channel].get(&self.connection).await {
            let _ = channel
                .basic_cancel(consumer_tag.into(), BasicCancelOptions::default())
                .await;
        }
    }

    async fn bind(&self, queue: &str, key: &BindingKey) -> Result<(), BrokerError> {
        let channel = self.admin.get(&self.connection).await?;
        channel
            .queue_bind(
                queue.into(),
                key.exchange.as_str().into(),
                key.key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)
    }

    async fn unbind(&self, queue: &str, key: &BindingKey) {
        if let Ok(channel) = self.admin.get(&self.connection).await
            && let Err(error) = channel
                .queue_unbind(
                    queue.into(),
                    key.exchange.as_str().into(),
                    key.key.as_str().into(),
                    FieldTable::default(),
                )
                .await
        {
            tracing::warn!(queue, key = %key.key, %error, "cannot unbind");
        }
    }

    async fn delete_queue(&self, queue: &str) {
        if let Ok(channel) = self.admin.get(&self.connection).await {
            let _ = channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
    }

    /// The session's queue, declared and consumed on first need.
    async fn ensure_session_queue(
        self: &Arc<Self>,
        session: SessionId,
    ) -> Result<String, BrokerError> {
        if let Some(queue) = lock(&self.sessions)
            .get(&session)
            .and_then(|state| state.session_queue.as_ref())
        {
            return Ok(queue.name.clone());
        }
        let name = format!("stomp.session.{session}");
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-max-length".into(),
            AMQPValue::LongInt(
                i32::try_from(self.settings.session_queue_length).unwrap_or(i32::MAX),
            ),
        );
        let channel = self.admin.get(&self.connection).await?;
        channel
            .queue_declare(name.as_str().into(), exclusive_queue(), arguments)
            .await
            .map_err(unavailable)?;
        {
            let mut sessions = lock(&self.sessions);
            let state = sessions
                .get_mut(&session)
                .ok_or_else(|| BrokerError::Refused("the session is not attached".into()))?;
            state.session_queue = Some(SessionQueue {
                name: name.clone(),
                router: Router::default(),
            });
        }
        let (consumer, _) = self
            .consume(session, &name, false, self.settings.default_prefetch)
            .await?;
        tokio::spawn(deliver_session_queue(
            Arc::downgrade(self),
            session,
            consumer,
        ));
        Ok(name)
    }

    /// Starts a consumer of `queue` that delivers to one subscription.
    async fn consume_dedicated(
        self: &Arc<Self>,
        session: SessionId,
        spec: &SubscriptionSpec,
        queue: &str,
        own_queue: bool,
        shown: Shown,
    ) -> Result<(), BrokerError> {
        let prefetch = spec
            .prefetch
            .and_then(|count| u16::try_from(count).ok())
            .unwrap_or(self.settings.default_prefetch);
        let (consumer, consumer_tag) = self
            .consume(session, queue, !spec.ack.needs_ack(), prefetch)
            .await?;
        if let Some(state) = lock(&self.sessions).get_mut(&session) {
            state.dedicated.insert(
                spec.id.clone(),
                DedicatedConsumer {
                    consumer_tag,
                    own_queue: own_queue.then(|| queue.to_owned()),
                },
            );
        }
        let subscriber = subscriber_of(session, spec);
        tokio::spawn(deliver_dedicated(
            Arc::downgrade(self),
            session,
            subscriber,
            shown,
            consumer,
        ));
        Ok(())
    }

    /// A subscription with a queue of its own (durable, or on an
    /// `/exchange/`): declared, bound to `exchange` with `key`, consumed.
    /// Only the non-durable kind is deleted when the subscription ends.
    async fn subscribe_own_queue(
        self: &Arc<Self>,
        session: SessionId,
        spec: &SubscriptionSpec,
        queue: &str,
        options: QueueDeclareOptions,
        exchange: &str,
        key: &str,
    ) -> Result<(), BrokerError> {
        self.check_exists(Existing::Exchange(exchange)).await?;
        self.declare(queue, options, &spec.queue).await?;
        let binding = BindingKey {
            exchange: exchange.to_owned(),
            key: key.to_owned(),
        };
        self.bind(queue, &binding).await?;
        let shown = Shown::Exchange(exchange.to_owned());
        self.consume_dedicated(session, spec, queue, !options.durable, shown)
            .await
    }

    /// Publishes on a confirm channel and waits for RabbitMQ's confirm.
    /// With `mandatory`, answers whether a queue took the message.
    async fn confirmed_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        message: &Message,
    ) -> Result<bool, BrokerError> {
        let index = self.next_publisher.fetch_add(1, Ordering::Relaxed) % self.publishers.len();
        let channel = self.publishers[index].get(&self.connection).await?;
        let confirmation = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties::to_amqp(&message.headers),
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        if confirmation.is_nack() {
            return Err(BrokerError::Refused(
                "RabbitMQ did not accept the message".into(),
            ));
        }
        Ok(confirmation.take_message().is_none())
    }

    /// Gives back every delivery of a subscription that awaits an ACK.
    async fn release_unacked(&self, session: SessionId, subscription: &str) {
        let released: Vec<Unacked> = {
            let mut sessions = lock(&self.sessions);
            let Some(state) = sessions.get_mut(&session) else {
                return;
            };
            let tags: Vec<AckTag> = state
                .unacked
                .iter()
                .filter(|(_, unacked)| &*unacked.subscription == subscription)
                .map(|(tag, _)| *tag)
                .collect();
            tags.iter()
                .filter_map(|tag| state.unacked.remove(tag))
                .collect()
        };
        for unacked in released {
            settle_one(unacked, Settlement::Nack).await;
        }
    }
}

fn subscriber_of(session: SessionId, spec: &SubscriptionSpec) -> Subscriber {
    Subscriber {
        session,
        subscription: spec.id.clone(),
        destination: spec.destination_text.clone(),
        needs_ack: spec.ack.needs_ack(),
    }
}

/// Acks or requeues one delivery (or its share of a group).
async fn settle_one(unacked: Unacked, settlement: Settlement) {
    let Held::Amqp { acker, group } = unacked.held else {
        // Held by the relay: an ACK forgets it; a NACK was redelivered by
        // the caller, which holds the session.
        return;
    };
    match (settlement, group) {
        (Settlement::Ack, Some(group)) => {
            if group.remaining.fetch_sub(1, Ordering::AcqRel) == 1
                && !group.settled.swap(true, Ordering::AcqRel)
            {
                let _ = acker.ack(BasicAckOptions::default()).await;
            }
        }
        (Settlement::Nack, Some(group)) => {
            if !group.settled.swap(true, Ordering::AcqRel) {
                let _ = acker.nack(requeue()).await;
            }
        }
        (Settlement::Ack, None) => {
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        (Settlement::Nack, None) => {
            let _ = acker.nack(requeue()).await;
        }
    }
}

fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue: true,
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn attach(&self, session: SessionId, outbox: Outbox) -> Result<(), BrokerError> {
        let channel = self.inner.session_channel(session);
        lock(&self.inner.sessions).insert(
            session,
            SessionState {
                outbox,
                channel,
                next_tag: 0,
                unacked: HashMap::new(),
                session_queue: None,
                dedicated: HashMap::new(),
            },
        );
        Ok(())
    }

    async fn detach(&self, session: SessionId) {
        let inner = &self.inner;
        // Removed first: deliveries that still arrive find no session and
        // are given back at once.
        let Some(state) = lock(&inner.sessions).remove(&session) else {
            return;
        };
        for consumer in state.dedicated.values() {
            inner.cancel(state.channel, &consumer.consumer_tag).await;
        }
        // After the cancels, so that RabbitMQ does not hand the requeued
        // messages straight back to this session's consumers.
        for unacked in state.unacked.into_values() {
            settle_one(unacked, Settlement::Nack).await;
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
        let unused = lock(&inner.router).unbind_session(session);
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
        let subscriber = subscriber_of(session, spec);
        match &spec.destination {
            Destination::Topic { key } | Destination::Exchange { key, .. }
                if spec.queue.durable =>
            {
                let exchange = match &spec.destination {
                    Destination::Exchange { exchange, .. } => exchange.as_str(),
                    _ => TOPIC_EXCHANGE,
                };
                let queue = spec
                    .queue
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stomp.durable.{session}.{}", spec.id));
                let durable = QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                };
                inner
                    .subscribe_own_queue(session, spec, &queue, durable, exchange, key)
                    .await
            }
            Destination::Topic { key } => {
                let _binding = inner.binding.lock().await;
                let first = lock(&inner.router).bind(
                    TOPIC_EXCHANGE,
                    router::ExchangeKind::Topic,
                    key,
                    subscriber,
                );
                if first {
                    let binding = BindingKey {
                        exchange: TOPIC_EXCHANGE.to_owned(),
                        key: key.clone(),
                    };
                    if let Err(error) = inner.bind(&inner.node_queue, &binding).await {
                        lock(&inner.router).unbind(session, &spec.id);
                        return Err(error);
                    }
                }
                Ok(())
            }
            Destination::OwnUser { name } => {
                let queue = inner.ensure_session_queue(session).await?;
                let first = with_session_router(inner, session, |router| {
                    router.bind_user(name, subscriber)
                })?;
                if first {
                    let binding = BindingKey {
                        exchange: TOPIC_EXCHANGE.to_owned(),
                        key: UserKey { name, session }.to_string(),
                    };
                    inner.bind(&queue, &binding).await?;
                }
                Ok(())
            }
            Destination::Queue { name } => {
                inner.ensure_shared_queue(name, &spec.queue).await?;
                inner
                    .consume_dedicated(session, spec, name, false, Shown::Subscribed)
                    .await
            }
            Destination::AmqQueue { name } => {
                inner.check_exists(Existing::Queue(name)).await?;
                inner
                    .consume_dedicated(session, spec, name, false, Shown::Subscribed)
                    .await
            }
            Destination::Exchange { exchange, key } => {
                let queue = spec.queue.name.clone().unwrap_or_else(|| {
                    let n = inner.next_consumer.fetch_add(1, Ordering::Relaxed);
                    format!("stomp.subscription.{session}.{n}")
                });
                inner
                    .subscribe_own_queue(session, spec, &queue, exclusive_queue(), exchange, key)
                    .await
            }
            Destination::User { .. } | Destination::App { .. } | Destination::ReplyQueue { .. } => {
                Err(BrokerError::Refused(format!(
                    "cannot subscribe to {}",
                    spec.destination_text
                )))
            }
        }
    }

    async fn unsubscribe(
        &self,
        session: SessionId,
        spec: &SubscriptionSpec,
        discard: bool,
    ) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let durable = spec.queue.durable
            && matches!(
                spec.destination,
                Destination::Topic { .. } | Destination::Exchange { .. }
            );
        match &spec.destination {
            Destination::Topic { .. } if !durable => {
                let _binding = inner.binding.lock().await;
                let unused = lock(&inner.router).unbind(session, &spec.id);
                if let Some(key) = unused {
                    inner.unbind(&inner.node_queue, &key).await;
                }
            }
            Destination::OwnUser { .. } => {
                let (queue, unused) = {
                    let mut sessions = lock(&inner.sessions);
                    let Some(queue) = sessions
                        .get_mut(&session)
                        .and_then(|s| s.session_queue.as_mut())
                    else {
                        return Ok(());
                    };
                    (queue.name.clone(), queue.router.unbind(session, &spec.id))
                };
                if let Some(key) = unused {
                    inner.unbind(&queue, &key).await;
                }
            }
            _ => {
                let removed = {
                    let mut sessions = lock(&inner.sessions);
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
                    && durable
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

    async fn publish(&self, target: PublishTarget, message: Message) -> Result<(), BrokerError> {
        let inner = &self.inner;
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
                declare: true,
            } => {
                inner
                    .ensure_shared_queue(&name, &QueueOptions::default())
                    .await?;
                (String::new(), name)
            }
            PublishTarget::Queue {
                name,
                declare: false,
            } => {
                inner.check_exists(Existing::Queue(&name)).await?;
                (String::new(), name)
            }
        };
        inner
            .confirmed_publish(&exchange, &routing_key, false, &message)
            .await
            .map(|_| ())
    }

    async fn publish_routed(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<bool, BrokerError> {
        self.inner
            .check_exists(Existing::Exchange(exchange))
            .await?;
        self.inner
            .confirmed_publish(exchange, routing_key, true, &message)
            .await
    }

    async fn settle(
        &self,
        session: SessionId,
        tags: &[AckTag],
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let settled: Vec<Unacked> = {
            let mut sessions = lock(&inner.sessions);
            let Some(state) = sessions.get_mut(&session) else {
                return Ok(());
            };
            tags.iter()
                .filter_map(|tag| state.unacked.remove(tag))
                .collect()
        };
        let mut redeliver = Vec::new();
        for unacked in settled {
            match unacked.held {
                Held::Relay {
                    destination,
                    message,
                } if settlement == Settlement::Nack => {
                    redeliver.push((unacked.subscription, destination, message));
                }
                _ => settle_one(unacked, settlement).await,
            }
        }
        // A NACKed topic message goes back to its subscription, if that
        // still exists (the router is locked before the sessions, always).
        let router = lock(&inner.router);
        redeliver.retain(|(subscription, _, _)| router.is_bound(session, subscription));
        let mut sessions = lock(&inner.sessions);
        if let Some(state) = sessions.get_mut(&session) {
            for (subscription, destination, message) in redeliver {
                let max = inner.settings.session_queue_length;
                state.hold_and_offer(&subscription, true, destination, message, true, max);
            }
        }
        Ok(())
    }

    async fn dispatch_requests(
        &self,
    ) -> Result<Option<mpsc::Receiver<DispatchRequest>>, BrokerError> {
        let inner = &self.inner;
        let channel = inner.admin.get(&inner.connection).await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                DISPATCH.into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        if inner.check_exists(Existing::Queue(DISPATCH)).await.is_err() {
            // A quorum queue, so that dispatch survives the loss of a broker
            // node in a RabbitMQ cluster.
            let quorum = QueueOptions {
                arguments: vec![("x-queue-type".into(), QueueArgument::Text("quorum".into()))],
                ..QueueOptions::default()
            };
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            inner.declare(DISPATCH, options, &quorum).await?;
        }
        let binding = BindingKey {
            exchange: DISPATCH.to_owned(),
            key: String::new(),
        };
        inner.bind(DISPATCH, &binding).await?;
        let consuming = open_channel(&inner.connection, false).await?;
        consuming
            .basic_qos(DISPATCH_PREFETCH, BasicQosOptions { global: false })
            .await
            .map_err(unavailable)?;
        let consumer = consuming
            .basic_consume(
                DISPATCH.into(),
                format!("dispatch.{}", inner.node_queue).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let (requests, received) = mpsc::channel(usize::from(DISPATCH_PREFETCH));
        tokio::spawn(read_dispatch_requests(consumer, consuming, requests));
        Ok(Some(received))
    }

    async fn lost(&self) -> String {
        let mut lost = self.inner.lost.subscribe();
        let reason = match lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    fn is_ready(&self) -> bool {
        self.inner.connection.status().connected() && self.inner.lost.borrow().is_none()
    }

    async fn shutdown(&self) {
        let _ = self
            .inner
            .connection
            .close(200, "stomp-relay shutting down".into())
            .await;
    }
}

/// Runs `change` on the session queue's router of a session.
fn with_session_router<T>(
    inner: &Inner,
    session: SessionId,
    change: impl FnOnce(&mut Router) -> T,
) -> Result<T, BrokerError> {
    let mut sessions = lock(&inner.sessions);
    let queue = sessions
        .get_mut(&session)
        .and_then(|state| state.session_queue.as_mut())
        .ok_or_else(|| BrokerError::Refused("the session is not attached".into()))?;
    Ok(change(&mut queue.router))
}
