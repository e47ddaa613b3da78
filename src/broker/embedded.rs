//! A single-node broker in the relay's own memory, for `cargo run` with
//! nothing else installed. It gives the destinations the semantics RabbitMQ
//! gives them: topic fan-out with wildcards, shared queues whose consumers
//! compete and whose unacknowledged messages are redelivered, user
//! destinations behind the user-key guard, client and client-individual acks,
//! and queues bound to an exchange: a durable subscription's, kept while the
//! node runs and shared by the connections that use its id, or one named by
//! `x-queue-name`, gone with its last consumer.
//!
//! All state sits behind one mutex that is never held across an `.await`;
//! deliveries are handed to sessions' outboxes without waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::ack_ledger::{AckLedger, Settled, Showable};
use super::destination::{
    Destination, EVERYONE_EXCHANGE, INBOUND_EXCHANGE, TOPIC_EXCHANGE, published_destination,
};
use super::router::{ExchangeKind, Router, Subscriber};
use super::topic_pattern::TopicPattern;
use super::{
    AckTag, Alarm, Broker, BrokerError, Confirm, Delivery, Message, Missing, OrderKey, Outbox,
    PublishTarget, SessionId, Settlement, SubscriptionSpec,
};

/// Bounds of the embedded broker.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedLimits {
    /// Messages a shared queue keeps; past it the oldest is dropped, as
    /// RabbitMQ's `x-max-length` does by default.
    pub max_queue_length: usize,
    /// Unacknowledged messages a queue subscription may hold when SUBSCRIBE
    /// gives no `prefetch-count`.
    pub default_prefetch: u32,
    /// Queues the node holds at most; clients name them, so they are
    /// bounded like everything else a client controls.
    pub max_queues: usize,
}

impl Default for EmbeddedLimits {
    fn default() -> EmbeddedLimits {
        EmbeddedLimits {
            max_queue_length: 10_000,
            default_prefetch: 100,
            max_queues: 10_000,
        }
    }
}

/// The exchanges a fresh RabbitMQ has, plus the relay's inbound one.
fn exchange_kind(exchange: &str) -> Option<ExchangeKind> {
    match exchange {
        TOPIC_EXCHANGE | INBOUND_EXCHANGE => Some(ExchangeKind::Topic),
        "amq.direct" | "" => Some(ExchangeKind::Direct),
        "amq.fanout" => Some(ExchangeKind::Fanout),
        _ => None,
    }
}

/// The queue a subscription consumes from, if it has one: a shared queue,
/// or the queue of a durable or `x-queue-name` subscription.
fn consumed_queue(spec: &SubscriptionSpec) -> Option<&str> {
    match &spec.destination {
        Destination::Queue { name } | Destination::AmqQueue { name } => Some(name),
        Destination::Topic { .. } | Destination::Exchange { .. } => spec.queue.name.as_deref(),
        _ => None,
    }
}

/// The in-process broker.
#[derive(Debug, Default)]
pub struct EmbeddedBroker {
    state: Mutex<State>,
    limits: EmbeddedLimits,
}

#[derive(Debug, Default)]
struct State {
    router: Router,
    queues: HashMap<String, SharedQueue>,
    /// Queues bound to exchanges, matched on every exchange publish.
    bindings: Vec<QueueBinding>,
    sessions: HashMap<SessionId, SessionState>,
}

/// A queue bound to an exchange with a key, as RabbitMQ binds one.
#[derive(Debug)]
struct QueueBinding {
    exchange: String,
    kind: ExchangeKind,
    key: String,
    pattern: TopicPattern,
    queue: String,
}

impl QueueBinding {
    fn matches(&self, exchange: &str, routing_key: &str) -> bool {
        self.exchange == exchange
            && match self.kind {
                ExchangeKind::Fanout => true,
                ExchangeKind::Direct => self.key == routing_key,
                ExchangeKind::Topic => self.pattern.matches(routing_key),
            }
    }
}

#[derive(Debug)]
struct SessionState {
    outbox: Outbox,
    acks: AckLedger<Unacked>,
}

/// A delivery awaiting its ACK, with what is needed to give it back.
#[derive(Debug)]
enum Unacked {
    /// A topic message: a NACK redelivers it to the same subscription, as
    /// RabbitMQ redelivers from the session's own queue.
    Topic {
        destination: Arc<str>,
        message: Arc<Message>,
    },
    /// A shared-queue message: a NACK or disconnect returns it to the queue.
    Queue { queue: String, queued: Queued },
}

impl Showable for Unacked {
    fn fanned_out(&self) -> Option<(Arc<str>, Arc<Message>)> {
        match self {
            Unacked::Topic {
                destination,
                message,
            } => Some((destination.clone(), message.clone())),
            Unacked::Queue { .. } => None,
        }
    }
}

#[derive(Debug, Default)]
struct SharedQueue {
    messages: VecDeque<Queued>,
    consumers: Vec<Consumer>,
    /// Round-robin position among consumers.
    next_consumer: usize,
    /// Deleted when its last consumer leaves (an `x-queue-name` queue that
    /// is not durable), as RabbitMQ's auto-delete.
    auto_delete: bool,
}

#[derive(Debug, Clone)]
struct Queued {
    message: Arc<Message>,
    redelivered: bool,
    /// Where it was published, when that was an exchange; `None` for a
    /// publish to the queue itself.
    published_as: Option<Arc<str>>,
}

#[derive(Debug)]
struct Consumer {
    session: SessionId,
    subscription: Arc<str>,
    destination: Arc<str>,
    needs_ack: bool,
    prefetch: u32,
    unacked: u32,
    /// Its MESSAGEs show where each message was published, as RabbitMQ's
    /// plugin shows them, rather than what it subscribed to (the consumer
    /// of a durable or `x-queue-name` subscription's queue).
    shows_published: bool,
}

impl EmbeddedBroker {
    pub fn new(limits: EmbeddedLimits) -> EmbeddedBroker {
        EmbeddedBroker {
            state: Mutex::default(),
            limits,
        }
    }

    /// Makes a subscription a consumer of the queue `name`, which exists.
    fn consume(&self, state: &mut State, session: SessionId, spec: &SubscriptionSpec, name: &str) {
        let prefetch = spec.prefetch.unwrap_or(self.limits.default_prefetch).max(1);
        if let Some(queue) = state.queues.get_mut(name) {
            queue.consumers.push(Consumer {
                session,
                subscription: spec.id.clone(),
                destination: spec.destination_text.clone(),
                needs_ack: spec.ack.needs_ack(),
                prefetch,
                unacked: 0,
                shows_published: matches!(
                    spec.destination,
                    Destination::Topic { .. } | Destination::Exchange { .. }
                ),
            });
        }
        state.pump(name);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for
        // a message relay; refusing all service after it would be worse.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Hands one delivery to a session, recording it when it needs an ACK.
    /// False when the session's outbox refused it.
    fn deliver(
        &mut self,
        session: SessionId,
        subscription: &Arc<str>,
        destination: &Arc<str>,
        message: &Arc<Message>,
        redelivered: bool,
        unacked: Option<Unacked>,
    ) -> bool {
        let Some(state) = self.sessions.get_mut(&session) else {
            return false;
        };
        let ack = match unacked {
            Some(unacked) => match state.acks.hold_or_wait(subscription, unacked, redelivered) {
                Some(tag) => Some(tag),
                // Its prefetch window is full: shown when an ACK makes room.
                None => return true,
            },
            None => None,
        };
        let delivery = Delivery {
            subscription: subscription.clone(),
            destination: destination.clone(),
            message: message.clone(),
            ack,
            redelivered,
        };
        if state.outbox.offer(delivery).is_err() {
            if let Some(tag) = ack {
                // The caller keeps it: nothing to give back.
                state.acks.withdraw(tag);
            }
            return false;
        }
        true
    }

    fn publish_to_exchange(
        &mut self,
        exchange: &str,
        routing_key: &str,
        message: Arc<Message>,
        max_length: usize,
    ) {
        let bound: Vec<String> = self
            .bindings
            .iter()
            .filter(|binding| binding.matches(exchange, routing_key))
            .map(|binding| binding.queue.clone())
            .collect();
        if !bound.is_empty() {
            let published_as: Arc<str> = Arc::from(published_destination(exchange, routing_key));
            for queue in bound {
                let queued = Queued {
                    message: message.clone(),
                    redelivered: false,
                    published_as: Some(published_as.clone()),
                };
                self.enqueue(&queue, queued, max_length);
            }
        }
        let targets = self.router.targets(exchange, routing_key);
        for (subscriber, destination) in targets {
            let unacked = subscriber.needs_ack.then(|| Unacked::Topic {
                destination: destination.clone(),
                message: message.clone(),
            });
            // A full outbox has already told its session to close.
            self.deliver(
                subscriber.session,
                &subscriber.subscription,
                &destination,
                &message,
                false,
                unacked,
            );
        }
    }

    /// Adds a message to a queue, dropping its oldest past `max_length` as
    /// RabbitMQ's `x-max-length` does by default, and delivers what it can.
    fn enqueue(&mut self, name: &str, queued: Queued, max_length: usize) {
        let Some(queue) = self.queues.get_mut(name) else {
            return;
        };
        queue.messages.push_back(queued);
        while queue.messages.len() > max_length {
            queue.messages.pop_front();
        }
        self.pump(name);
    }

    /// The queue `name`, created (as `auto_delete` says) if absent and the
    /// node holds fewer than `max_queues`.
    fn ensure_queue(
        &mut self,
        name: &str,
        auto_delete: bool,
        max_queues: usize,
    ) -> Result<&mut SharedQueue, BrokerError> {
        if !self.queues.contains_key(name) && self.queues.len() >= max_queues {
            return Err(BrokerError::refused(format!(
                "the node holds {max_queues} queues, its most"
            )));
        }
        Ok(self
            .queues
            .entry(name.to_owned())
            .or_insert_with(|| SharedQueue {
                auto_delete,
                ..SharedQueue::default()
            }))
    }

    /// Deletes a queue and its bindings; what it held is gone.
    /// Deletes a queue; a consumer still on it is cancelled, and its
    /// session told, as RabbitMQ cancels the consumers of a deleted queue.
    fn delete_queue(&mut self, name: &str) {
        if let Some(queue) = self.queues.remove(name) {
            for consumer in queue.consumers {
                if let Some(state) = self.sessions.get(&consumer.session) {
                    state.outbox.raise(Alarm::SubscriptionCancelled {
                        subscription: consumer.subscription,
                        destination: consumer.destination,
                    });
                }
            }
        }
        self.bindings.retain(|binding| binding.queue != name);
    }

    /// Deletes an auto-delete queue that no consumer is left on.
    fn delete_if_unused(&mut self, name: &str) {
        if self
            .queues
            .get(name)
            .is_some_and(|queue| queue.auto_delete && queue.consumers.is_empty())
        {
            self.delete_queue(name);
        }
    }

    /// Delivers waiting messages of a queue to consumers with room, in turn.
    fn pump(&mut self, name: &str) {
        loop {
            let Some(queue) = self.queues.get_mut(name) else {
                return;
            };
            if queue.messages.is_empty() {
                return;
            }
            let count = queue.consumers.len();
            let ready = (0..count)
                .map(|offset| (queue.next_consumer + offset) % count)
                .find(|&index| {
                    let consumer = &queue.consumers[index];
                    !consumer.needs_ack || consumer.unacked < consumer.prefetch
                });
            let Some(index) = ready else {
                return;
            };
            queue.next_consumer = (index + 1) % count;
            let Some(queued) = queue.messages.pop_front() else {
                return;
            };
            let consumer = &mut queue.consumers[index];
            let (session, subscription) = (consumer.session, consumer.subscription.clone());
            let destination = match &queued.published_as {
                _ if !consumer.shows_published => consumer.destination.clone(),
                Some(published) => published.clone(),
                None => Arc::from(published_destination("", name)),
            };
            let unacked = consumer.needs_ack.then(|| Unacked::Queue {
                queue: name.to_owned(),
                queued: queued.clone(),
            });
            if unacked.is_some() {
                consumer.unacked += 1;
            }
            let taken = self.deliver(
                session,
                &subscription,
                &destination,
                &queued.message,
                queued.redelivered,
                unacked,
            );
            if !taken {
                // The consumer is going away (its outbox overflowed or
                // closed): keep the message for the others.
                let queue = self
                    .queues
                    .get_mut(name)
                    .expect("queue exists while pumping");
                queue.messages.push_front(queued);
                queue.consumers.remove(index);
                queue.next_consumer = 0;
            }
        }
    }

    /// Returns a queue message left unacknowledged, to be delivered again.
    fn requeue(&mut self, queue: &str, subscription: &str, session: SessionId, queued: Queued) {
        let Some(queue) = self.queues.get_mut(queue) else {
            return;
        };
        if let Some(consumer) = queue
            .consumers
            .iter_mut()
            .find(|c| c.session == session && &*c.subscription == subscription)
        {
            consumer.unacked = consumer.unacked.saturating_sub(1);
        }
        queue.messages.push_front(Queued {
            redelivered: true,
            ..queued
        });
    }

    /// Takes back every queue message a subscription (or, with `None`, a
    /// whole session) left unacknowledged; returns the queues to pump.
    fn release_unacked(&mut self, session: SessionId, subscription: Option<&str>) -> Vec<String> {
        let Some(state) = self.sessions.get_mut(&session) else {
            return Vec::new();
        };
        let released = state.acks.release(subscription);
        let mut queues = Vec::new();
        // Newest first, so that pushing each to the front keeps their order.
        for released in released.into_iter().rev() {
            if let Unacked::Queue { queue, queued } = released.held {
                self.requeue(&queue, &released.subscription, session, queued);
                queues.push(queue);
            }
        }
        queues.sort();
        queues.dedup();
        queues
    }

    fn remove_consumer(&mut self, queue: &str, session: SessionId, subscription: Option<&str>) {
        if let Some(queue) = self.queues.get_mut(queue) {
            queue.consumers.retain(|c| {
                c.session != session || subscription.is_some_and(|s| &*c.subscription != s)
            });
            queue.next_consumer = 0;
        }
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    async fn attach(&self, session: SessionId, outbox: Outbox) -> Result<(), BrokerError> {
        self.state().sessions.insert(
            session,
            SessionState {
                outbox,
                acks: AckLedger::default(),
            },
        );
        Ok(())
    }

    async fn detach(&self, session: SessionId) {
        let mut state = self.state();
        state.router.unbind_session(session);
        let mut to_pump = state.release_unacked(session, None);
        let consumed: Vec<String> = state
            .queues
            .iter()
            .filter(|(_, queue)| queue.consumers.iter().any(|c| c.session == session))
            .map(|(name, _)| name.clone())
            .collect();
        for queue in &consumed {
            state.remove_consumer(queue, session, None);
            state.delete_if_unused(queue);
        }
        state.sessions.remove(&session);
        to_pump.extend(consumed);
        for queue in to_pump {
            state.pump(&queue);
        }
    }

    async fn subscribe(
        &self,
        session: SessionId,
        spec: &SubscriptionSpec,
    ) -> Result<(), BrokerError> {
        let subscriber = Subscriber {
            session,
            subscription: spec.id.clone(),
            destination: spec.destination_text.clone(),
            needs_ack: spec.ack.needs_ack(),
        };
        let mut state = self.state();
        // What no queue holds is fanned out by the router, which has no
        // queue to keep what a full prefetch window holds back.
        let routed = consumed_queue(spec).is_none();
        if let (Some(prefetch), true, Some(session_state)) = (
            spec.prefetch,
            routed && spec.ack.needs_ack(),
            state.sessions.get_mut(&session),
        ) {
            session_state
                .acks
                .limit(&spec.id, prefetch, self.limits.max_queue_length);
        }
        match &spec.destination {
            Destination::Topic { key } | Destination::Exchange { key, .. }
                if let Some(queue) = &spec.queue.name =>
            {
                let (exchange, kind) = match &spec.destination {
                    Destination::Exchange { exchange, .. } => (
                        exchange.as_str(),
                        exchange_kind(exchange)
                            .ok_or_else(|| BrokerError::not_found(Missing::Exchange, exchange))?,
                    ),
                    _ => (TOPIC_EXCHANGE, ExchangeKind::Topic),
                };
                state.ensure_queue(queue, !spec.queue.durable, self.limits.max_queues)?;
                let bound = state.bindings.iter().any(|binding| {
                    binding.queue == *queue && binding.exchange == exchange && binding.key == *key
                });
                if !bound {
                    state.bindings.push(QueueBinding {
                        exchange: exchange.to_owned(),
                        kind,
                        key: key.clone(),
                        pattern: TopicPattern::new(key),
                        queue: queue.clone(),
                    });
                }
                self.consume(&mut state, session, spec, queue);
            }
            Destination::Topic { key } => {
                state
                    .router
                    .bind(TOPIC_EXCHANGE, ExchangeKind::Topic, key, subscriber);
            }
            Destination::Exchange { exchange, key } => {
                let kind = exchange_kind(exchange)
                    .ok_or_else(|| BrokerError::not_found(Missing::Exchange, exchange.as_str()))?;
                state.router.bind(exchange, kind, key, subscriber);
            }
            Destination::OwnUser { name } => {
                state.router.bind_user(name, subscriber);
            }
            Destination::Queue { name } => {
                state.ensure_queue(name, false, self.limits.max_queues)?;
                self.consume(&mut state, session, spec, name);
            }
            Destination::AmqQueue { name } => {
                if !state.queues.contains_key(name) {
                    return Err(BrokerError::not_found(Missing::Queue, name.as_str()));
                }
                self.consume(&mut state, session, spec, name);
            }
            Destination::User { .. } | Destination::App { .. } | Destination::ReplyQueue { .. } => {
                return Err(BrokerError::refused(format!(
                    "cannot subscribe to {}",
                    spec.destination_text
                )));
            }
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        session: SessionId,
        spec: &SubscriptionSpec,
        discard: bool,
    ) -> Result<(), BrokerError> {
        let mut state = self.state();
        state.router.unbind(session, &spec.id);
        let mut to_pump = state.release_unacked(session, Some(&spec.id));
        if let Some(queue) = consumed_queue(spec) {
            state.remove_consumer(queue, session, Some(&spec.id));
            if discard && spec.queue.durable {
                state.delete_queue(queue);
            } else {
                state.delete_if_unused(queue);
            }
            to_pump.push(queue.to_owned());
        }
        for queue in to_pump {
            state.pump(&queue);
        }
        Ok(())
    }

    async fn publish(
        &self,
        _order: OrderKey,
        target: PublishTarget,
        message: Message,
    ) -> Result<Confirm<()>, BrokerError> {
        // Delivered at once, in the order of the calls: nothing to confirm
        // later.
        let message = Arc::new(message);
        let mut state = self.state();
        match target {
            PublishTarget::Exchange {
                exchange,
                routing_key,
            } => {
                if exchange_kind(&exchange).is_none() {
                    return Err(BrokerError::not_found(Missing::Exchange, exchange.as_str()));
                }
                state.publish_to_exchange(
                    &exchange,
                    &routing_key,
                    message,
                    self.limits.max_queue_length,
                );
            }
            PublishTarget::Queue { name, declare } => {
                if declare.is_some() {
                    state.ensure_queue(&name, false, self.limits.max_queues)?;
                } else if !state.queues.contains_key(&name) {
                    return Err(BrokerError::not_found(Missing::Queue, name.as_str()));
                }
                let queued = Queued {
                    message,
                    redelivered: false,
                    published_as: None,
                };
                state.enqueue(&name, queued, self.limits.max_queue_length);
            }
        }
        Ok(Confirm::ready(()))
    }

    async fn publish_routed(
        &self,
        _order: OrderKey,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<Confirm<bool>, BrokerError> {
        if exchange_kind(exchange).is_none() {
            return Err(BrokerError::not_found(Missing::Exchange, exchange));
        }
        let mut state = self.state();
        let routed = !state
            .router
            .route(exchange, routing_key)
            .subscribers
            .is_empty();
        state.publish_to_exchange(
            exchange,
            routing_key,
            Arc::new(message),
            self.limits.max_queue_length,
        );
        Ok(Confirm::ready(routed))
    }

    async fn publish_to_everyone(
        &self,
        _order: OrderKey,
        name: &str,
        message: Message,
    ) -> Result<Confirm<()>, BrokerError> {
        // Not an exchange clients can name (see `exchange_kind`): the router
        // gives it to every user subscription of `name`.
        self.state().publish_to_exchange(
            EVERYONE_EXCHANGE,
            name,
            Arc::new(message),
            self.limits.max_queue_length,
        );
        Ok(Confirm::ready(()))
    }

    async fn settle(
        &self,
        session: SessionId,
        tags: &[AckTag],
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        let mut state = self.state();
        let Some(session_state) = state.sessions.get_mut(&session) else {
            return Ok(());
        };
        let settled = session_state.acks.settle(tags, settlement);
        let mut to_pump = Vec::new();
        for Settled {
            subscription,
            held,
            settlement,
        } in settled
        {
            match (held, settlement) {
                // Discarded: gone, as RabbitMQ drops a message rejected
                // without requeue from a queue with no dead-letter exchange.
                (Unacked::Queue { queue, .. }, Settlement::Ack | Settlement::Discard) => {
                    if let Some(consumer) = state.queues.get_mut(&queue).and_then(|q| {
                        q.consumers
                            .iter_mut()
                            .find(|c| c.session == session && c.subscription == subscription)
                    }) {
                        consumer.unacked = consumer.unacked.saturating_sub(1);
                    }
                    to_pump.push(queue);
                }
                (Unacked::Queue { queue, queued }, Settlement::Nack) => {
                    state.requeue(&queue, &subscription, session, queued);
                    to_pump.push(queue);
                }
                (Unacked::Topic { .. }, Settlement::Ack | Settlement::Discard) => {}
                (
                    Unacked::Topic {
                        destination,
                        message,
                    },
                    Settlement::Nack,
                ) => {
                    if state.router.is_bound(session, &subscription) {
                        let again = Unacked::Topic {
                            destination: destination.clone(),
                            message: message.clone(),
                        };
                        state.deliver(
                            session,
                            &subscription,
                            &destination,
                            &message,
                            true,
                            Some(again),
                        );
                    }
                }
            }
        }
        if let Some(session_state) = state.sessions.get_mut(&session) {
            session_state.acks.offer_ready(&session_state.outbox);
        }
        to_pump.sort();
        to_pump.dedup();
        for queue in to_pump {
            state.pump(&queue);
        }
        Ok(())
    }
}
