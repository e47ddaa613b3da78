//! Where deliveries come from: the node queue, fanned out in-process to
//! every matching topic subscription of the node; each session queue,
//! matched to that session's subscriptions only; and dedicated consumers,
//! one per queue or exchange subscription.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, Channel, Consumer};

use super::acks::{Held, requeue};
use super::connection::{open_channel, unavailable};
use super::envelope::{self, Enclosed};
use super::topology::{Existing, capped, exclusive_queue};
use super::{
    BrokerError, DedicatedConsumer, Delivery, Inner, Message, SessionId, SessionState,
    SubscriptionSpec, UserKeyBinding, properties,
};
use crate::broker::Alarm;
use crate::broker::destination::{
    EVERYONE_EXCHANGE, SessionKey, TOPIC_EXCHANGE, USERS_EXCHANGE, published_destination,
};
use crate::broker::queue_options::StreamOffset;
use crate::broker::router::{BindingKey, Route, Subscriber};

/// Node-queue messages RabbitMQ may have handed to this node before it
/// acknowledges them; the fan-out acknowledges every [`ACK_EVERY`].
const NODE_PREFETCH: u16 = 4096;

/// How many node-queue deliveries one acknowledgement covers, at most; a
/// quiet moment acknowledges what came before it sooner.
const ACK_EVERY: usize = 256;
const ACK_WHEN_QUIET: std::time::Duration = std::time::Duration::from_millis(20);

/// Delivers the node queue's messages to this node's topic subscriptions
/// and user destinations bound there, and messages to everyone to every
/// user subscription of their name, holding those that await a client ack
/// (in the relay: RabbitMQ is acknowledged once a message is handed to the
/// sessions). Keeps `channel` open as long as it consumes.
async fn fan_out_deliveries(inner: Weak<Inner>, mut consumer: Consumer, _channel: Channel) {
    // The last delivery handed out and not yet acknowledged, and how many
    // its acknowledgement will cover.
    let mut pending: Option<(Acker, usize)> = None;
    loop {
        let next = match &pending {
            None => Ok(consumer.next().await),
            Some(_) => tokio::time::timeout(ACK_WHEN_QUIET, consumer.next()).await,
        };
        let delivery = match next {
            Ok(Some(Ok(delivery))) => delivery,
            Ok(_) => return,
            Err(_quiet) => {
                if let Some((acker, _)) = pending.take() {
                    let _ = acker.ack(ack_all_before()).await;
                }
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let message = Arc::new(properties::from_amqp(&delivery.properties, delivery.data));
        let (exchange, routing_key) = (delivery.exchange.as_str(), delivery.routing_key.as_str());
        fan_out_one(&inner, exchange, routing_key, message);
        let covered = pending.as_ref().map_or(0, |(_, covered)| *covered) + 1;
        if covered >= ACK_EVERY {
            pending = None;
            let _ = delivery.acker.ack(ack_all_before()).await;
        } else {
            pending = Some((delivery.acker, covered));
        }
    }
}

/// Hands one node-queue message to every subscription of this node it is
/// for.
fn fan_out_one(inner: &Inner, exchange: &str, routing_key: &str, message: Arc<Message>) {
    if exchange == USERS_EXCHANGE && routing_key == inner.envelope_key {
        return open_envelope(inner, &message.body);
    }
    let router = inner.router.lock();
    let route = router.route(exchange, routing_key);
    let mut sessions = inner.sessions.lock();
    offer(inner, &mut sessions, &route, &message);
    // With `--routing session` user subscriptions are bound in their
    // session queue's router, not the node's.
    if exchange == EVERYONE_EXCHANGE && inner.settings.user_keys == UserKeyBinding::SessionQueue {
        for state in sessions.values_mut() {
            let Some(queue) = &state.session_queue else {
                continue;
            };
            for (subscriber, destination) in queue.router.targets(EVERYONE_EXCHANGE, routing_key) {
                state.hold_and_offer(
                    &subscriber.subscription,
                    subscriber.needs_ack,
                    destination,
                    message.clone(),
                    false,
                    inner.settings.session_queue_length,
                );
            }
        }
    }
}

/// Hands each delivery of an envelope to the subscriptions to its name of
/// the session it is for; a session that has gone, or no longer listens
/// there, does not get it (counted).
fn open_envelope(inner: &Inner, body: &bytes::Bytes) {
    let enclosed = match envelope::open(body) {
        Ok(enclosed) => enclosed,
        Err(error) => {
            tracing::warn!(%error, "an envelope was dropped");
            return;
        }
    };
    let router = inner.router.lock();
    let mut sessions = inner.sessions.lock();
    for Enclosed {
        name,
        sessions: addressed,
        message,
    } in enclosed
    {
        for session in addressed {
            let route = router.route_to_session(session, &name);
            offer(inner, &mut sessions, &route, &message);
        }
    }
}

/// Offers `message` to every subscription `route` reached; one that was
/// for a session not here, or not listening there, is counted.
fn offer(
    inner: &Inner,
    sessions: &mut HashMap<SessionId, SessionState>,
    route: &Route<'_>,
    message: &Arc<Message>,
) {
    if route.is_unclaimed() {
        inner.unclaimed.inc();
    }
    for &subscriber in &route.subscribers {
        if let Some(state) = sessions.get_mut(&subscriber.session) {
            state.hold_and_offer(
                &subscriber.subscription,
                subscriber.needs_ack,
                route.destination_for(subscriber),
                message.clone(),
                false,
                inner.settings.session_queue_length,
            );
        }
    }
}

/// One acknowledgement of a delivery and every earlier one of its channel.
fn ack_all_before() -> BasicAckOptions {
    BasicAckOptions { multiple: true }
}

/// Delivers a session queue's messages to the subscriptions of that session
/// they match.
pub(super) async fn deliver_session_queue(
    inner: Weak<Inner>,
    session: SessionId,
    mut consumer: Consumer,
) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let message = Arc::new(properties::from_amqp(&delivery.properties, delivery.data));
        let acker = delivery.acker;
        // Some(true): delivered, nothing to acknowledge later; None: the
        // session has gone.
        let settled_now = {
            let mut sessions = inner.sessions.lock();
            sessions.get_mut(&session).map(|state| {
                let targets = match &state.session_queue {
                    Some(queue) => queue
                        .router
                        .targets(delivery.exchange.as_str(), delivery.routing_key.as_str()),
                    None => Vec::new(),
                };
                if targets.is_empty() {
                    inner.unclaimed.inc();
                }
                let acking: Vec<Arc<str>> = targets
                    .iter()
                    .filter(|(subscriber, _)| subscriber.needs_ack)
                    .map(|(subscriber, _)| subscriber.subscription.clone())
                    .collect();
                let mut tags = state
                    .acks
                    .hold_shared(&acking, Held::Amqp(acker.clone()))
                    .into_iter();
                for (subscriber, destination) in targets {
                    let ack = if subscriber.needs_ack {
                        tags.next()
                    } else {
                        None
                    };
                    let _ = state.outbox.offer(Delivery {
                        subscription: subscriber.subscription,
                        destination,
                        message: message.clone(),
                        ack,
                        redelivered: delivery.redelivered,
                    });
                }
                acking.is_empty()
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
    pub(super) fn hold_and_offer(
        &mut self,
        subscription: &Arc<str>,
        needs_ack: bool,
        destination: Arc<str>,
        message: Arc<Message>,
        redelivered: bool,
        max_held: u32,
    ) {
        if needs_ack && self.acks.len() >= max_held as usize {
            tracing::debug!(%subscription, "too many unacknowledged messages; one dropped");
            return;
        }
        let ack = if needs_ack {
            let held = Held::Relay {
                destination: destination.clone(),
                message: message.clone(),
            };
            match self.acks.hold_or_wait(subscription, held, redelivered) {
                Some(tag) => Some(tag),
                // Its prefetch window is full: shown when an ACK makes room.
                None => return,
            }
        } else {
            None
        };
        // A full outbox has told its session to close.
        let _ = self.outbox.offer(Delivery {
            subscription: subscription.clone(),
            destination,
            message,
            ack,
            redelivered,
        });
    }
}

/// What a dedicated consumer's MESSAGEs show as their `destination`.
#[derive(Clone, Copy)]
pub(super) enum Shown {
    /// The subscription's own destination (queues).
    Subscribed,
    /// Where each message was published, as RabbitMQ's plugin shows it.
    Published,
}

/// Delivers a dedicated queue's messages to its one subscription.
pub(super) async fn deliver_dedicated(
    inner: Weak<Inner>,
    session: SessionId,
    subscriber: Subscriber,
    shown: Shown,
    mut consumer: Consumer,
) {
    loop {
        let delivery = match consumer.next().await {
            Some(Ok(delivery)) => delivery,
            // The channel or connection failed: a new connection makes the
            // consumer again.
            Some(Err(_)) => return,
            None => {
                if let Some(inner) = inner.upgrade() {
                    inner.cancelled_by_broker(session, &subscriber, consumer.tag().as_str());
                }
                return;
            }
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // The user-key guard: a queue bound to `amq.topic` with a wildcard
        // (`/exchange/amq.topic/#`, a durable `/topic/#`) also catches
        // what services publish there to sessions' keys; it is dropped
        // here, never shown to this subscription.
        if delivery.exchange.as_str() == TOPIC_EXCHANGE
            && SessionKey::parse(delivery.routing_key.as_str()).is_some()
        {
            if subscriber.needs_ack {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            continue;
        }
        let destination: Arc<str> = match &shown {
            Shown::Subscribed => subscriber.destination.clone(),
            Shown::Published => Arc::from(published_destination(
                delivery.exchange.as_str(),
                delivery.routing_key.as_str(),
            )),
        };
        let message = Arc::new(properties::from_amqp(&delivery.properties, delivery.data));
        let delivered = {
            let mut sessions = inner.sessions.lock();
            sessions.get_mut(&session).map(|state| {
                let ack = subscriber.needs_ack.then(|| {
                    let held = Held::Amqp(delivery.acker.clone());
                    state.acks.hold(&subscriber.subscription, held)
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
    /// Starts the consumer that fans the node queue out, on a channel of its
    /// own. Acknowledged (in batches) under a prefetch, so that what the
    /// node has not fanned out yet waits in RabbitMQ, not in lapin's buffer,
    /// which has no bound of its own.
    pub(super) async fn fan_out_node_queue(self: &Arc<Self>) -> Result<(), BrokerError> {
        let channel = open_channel(&self.link, false).await?;
        channel
            .basic_qos(NODE_PREFETCH, BasicQosOptions { global: false })
            .await
            .map_err(unavailable("set the node queue's prefetch count"))?;
        let consumer = channel
            .basic_consume(
                self.node_queue.as_str().into(),
                format!("fan-out.{}", self.node_queue).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable("consume the node queue"))?;
        tokio::spawn(fan_out_deliveries(Arc::downgrade(self), consumer, channel));
        Ok(())
    }

    /// A dedicated consumer that RabbitMQ ended (its queue was deleted): the
    /// session is told, as RabbitMQ's plugin tells it, unless the
    /// subscription had ended already or the connection is being replaced
    /// (which makes the consumer again).
    fn cancelled_by_broker(&self, session: SessionId, subscriber: &Subscriber, consumer_tag: &str) {
        if !self.link.is_up() {
            return;
        }
        let mut sessions = self.sessions.lock();
        let Some(state) = sessions.get_mut(&session) else {
            return;
        };
        let current = state
            .dedicated
            .get(&subscriber.subscription)
            .is_some_and(|consumer| consumer.consumer_tag == consumer_tag);
        if current {
            state.dedicated.remove(&subscriber.subscription);
            state.outbox.raise(Alarm::SubscriptionCancelled {
                subscription: subscriber.subscription.clone(),
                destination: subscriber.destination.clone(),
            });
        }
    }

    /// Starts a consumer on the session's channel.
    pub(super) async fn consume(
        &self,
        session: SessionId,
        queue: &str,
        no_ack: bool,
        prefetch: u16,
        arguments: FieldTable,
    ) -> Result<(Consumer, String), BrokerError> {
        let index = self
            .sessions
            .lock()
            .get(&session)
            .map(|state| state.channel)
            .ok_or_else(|| BrokerError::refused("the session is not attached"))?;
        let consumer_tag = format!(
            "{session}.{}",
            self.next_consumer.fetch_add(1, Ordering::Relaxed)
        );
        let channel = self.consumers[index].lock(&self.link).await?;
        // Applies to the consumers this channel starts next, one by one.
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(unavailable("set a prefetch count"))?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions {
                    no_ack,
                    ..BasicConsumeOptions::default()
                },
                arguments,
            )
            .await
            .map_err(unavailable("start a consumer"))?;
        Ok((consumer, consumer_tag))
    }

    pub(super) async fn cancel(&self, session_channel: usize, consumer_tag: &str) {
        if let Ok(channel) = self.consumers[session_channel].get(&self.link).await {
            let _ = channel
                .basic_cancel(consumer_tag.into(), BasicCancelOptions::default())
                .await;
        }
    }

    /// Starts a consumer of `queue` that delivers to one subscription.
    pub(super) async fn consume_dedicated(
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
        let mut arguments = FieldTable::default();
        if let Some(offset) = spec.queue.stream_offset {
            arguments.insert("x-stream-offset".into(), stream_offset(offset));
        }
        let (consumer, consumer_tag) = self
            .consume(session, queue, !spec.ack.needs_ack(), prefetch, arguments)
            .await?;
        if let Some(state) = self.sessions.lock().get_mut(&session) {
            state.dedicated.insert(
                spec.id.clone(),
                DedicatedConsumer {
                    consumer_tag,
                    own_queue: own_queue.then(|| queue.to_owned()),
                    spec: spec.clone(),
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

    /// A subscription with a queue of its own (durable, named by
    /// `x-queue-name`, or on an `/exchange/`): declared, bound to `exchange`
    /// with `key`, consumed. An exclusive one is deleted when the
    /// subscription ends; RabbitMQ deletes a shared auto-delete one when its
    /// last consumer leaves.
    pub(super) async fn subscribe_own_queue(
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
        self.consume_dedicated(session, spec, queue, options.exclusive, Shown::Published)
            .await
    }

    /// Declares a session's queue (exclusive, capped) and starts delivering
    /// from it.
    pub(super) async fn declare_session_queue(
        self: &Arc<Self>,
        session: SessionId,
        name: &str,
    ) -> Result<(), BrokerError> {
        let channel = self.admin.get(&self.link).await?;
        channel
            .queue_declare(
                name.into(),
                exclusive_queue(),
                capped(self.settings.session_queue_length),
            )
            .await
            .map_err(unavailable("declare a session queue"))?;
        let (consumer, _) = self
            .consume(
                session,
                name,
                false,
                self.settings.default_prefetch,
                FieldTable::default(),
            )
            .await?;
        tokio::spawn(deliver_session_queue(
            Arc::downgrade(self),
            session,
            consumer,
        ));
        Ok(())
    }
}

/// A stream offset as RabbitMQ takes it in `basic.consume`'s arguments.
fn stream_offset(offset: StreamOffset) -> AMQPValue {
    match offset {
        StreamOffset::First => AMQPValue::LongString("first".into()),
        StreamOffset::Last => AMQPValue::LongString("last".into()),
        StreamOffset::Next => AMQPValue::LongString("next".into()),
        StreamOffset::Offset(offset) => AMQPValue::LongLongInt(offset),
        StreamOffset::Timestamp(seconds) => AMQPValue::Timestamp(seconds),
    }
}

pub(super) fn subscriber_of(session: SessionId, spec: &SubscriptionSpec) -> Subscriber {
    Subscriber {
        session,
        subscription: spec.id.clone(),
        destination: spec.destination_text.clone(),
        needs_ack: spec.ack.needs_ack(),
    }
}
