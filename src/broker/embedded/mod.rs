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
//!
//! `exchanges` holds what a publish to an exchange reaches, `queues` the
//! queues and their competing consumers, `sessions` each attached session's
//! outbox and unacknowledged deliveries; this file holds the broker itself.

mod exchanges;
mod queues;
mod sessions;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

use super::ack_ledger::{AckLedger, Settled};
use super::destination::{
    Destination, EVERYONE_EXCHANGE, SessionKey, TOPIC_EXCHANGE, USERS_EXCHANGE,
};
use super::router::{ExchangeKind, Router, Subscriber};
use super::topic_pattern::TopicPattern;
use super::{
    AckTag, Broker, BrokerError, Confirm, Message, Missing, OrderKey, Outbox, PublishTarget,
    SessionAddress, SessionId, Settlement, SubscriptionSpec,
};
use exchanges::{Published, QueueBinding, exchange_kind};
use queues::{SharedQueue, consumed_queue};
use sessions::{SessionState, Unacked};

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

/// The in-process broker.
#[derive(Debug, Default)]
pub struct EmbeddedBroker {
    state: Mutex<State>,
    limits: EmbeddedLimits,
    /// Messages for a session that found it gone, or not subscribed to
    /// their name: dropped.
    unclaimed: Counter,
}

/// A message in a queue, waiting or delivered and not yet acknowledged:
/// what a queue holds, and what a session's unacknowledged queue delivery
/// gives back.
#[derive(Debug, Clone)]
pub struct Queued {
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Where it was published, when that was an exchange; `None` for a
    /// publish to the queue itself.
    pub published_as: Option<Arc<str>>,
}

/// Everything the broker holds, behind its one mutex.
#[derive(Debug, Default)]
struct State {
    router: Router,
    queues: HashMap<String, SharedQueue>,
    /// Queues bound to exchanges, matched on every exchange publish.
    bindings: Vec<QueueBinding>,
    sessions: HashMap<SessionId, SessionState>,
}

impl EmbeddedBroker {
    pub fn new(limits: EmbeddedLimits, unclaimed: Counter) -> EmbeddedBroker {
        EmbeddedBroker {
            state: Mutex::default(),
            limits,
            unclaimed,
        }
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    async fn attach(&self, session: SessionId, outbox: Outbox) -> Result<(), BrokerError> {
        self.state.lock().sessions.insert(
            session,
            SessionState {
                outbox,
                acks: AckLedger::default(),
            },
        );
        Ok(())
    }

    async fn detach(&self, session: SessionId) {
        let mut state = self.state.lock();
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
        let mut state = self.state.lock();
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
        let mut state = self.state.lock();
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
        let mut state = self.state.lock();
        match target {
            PublishTarget::Exchange {
                exchange,
                routing_key,
            } => {
                if exchange_kind(&exchange).is_none() {
                    return Err(BrokerError::not_found(Missing::Exchange, exchange.as_str()));
                }
                let published = state.publish_to_exchange(
                    &exchange,
                    &routing_key,
                    message,
                    self.limits.max_queue_length,
                );
                if published == Published::Unclaimed {
                    self.unclaimed.inc();
                }
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

    async fn publish_to_sessions(
        &self,
        name: &str,
        sessions: &[SessionAddress<'_>],
        message: Message,
    ) -> Result<Confirm<()>, BrokerError> {
        let message = Arc::new(message);
        let mut state = self.state.lock();
        for address in sessions {
            let key = SessionKey::new(address.node, address.session, name).to_string();
            let published = state.publish_to_exchange(
                USERS_EXCHANGE,
                &key,
                message.clone(),
                self.limits.max_queue_length,
            );
            if published == Published::Unclaimed {
                self.unclaimed.inc();
            }
        }
        Ok(Confirm::ready(()))
    }

    async fn publish_to_everyone(
        &self,
        _order: OrderKey,
        name: &str,
        message: Message,
    ) -> Result<Confirm<()>, BrokerError> {
        // Not an exchange clients can name (see `exchange_kind`): the router
        // gives it to every user subscription of `name`.
        let _ = self.state.lock().publish_to_exchange(
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
        let mut state = self.state.lock();
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
                    state.settled(&queue, session, &subscription);
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
