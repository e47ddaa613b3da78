//! Queues: shared ones, and those of durable and `x-queue-name`
//! subscriptions. Their messages wait, their consumers compete in turn
//! within their prefetch windows, and a message left unacknowledged goes
//! back to the front, marked redelivered.

use std::collections::VecDeque;
use std::sync::Arc;

use super::sessions::Unacked;
use super::{EmbeddedBroker, Queued, State};
use crate::broker::destination::{Destination, published_destination};
use crate::broker::{Alarm, BrokerError, SessionId, SubscriptionSpec};

/// The queue a subscription consumes from, if it has one: a shared queue,
/// or the queue of a durable or `x-queue-name` subscription.
pub fn consumed_queue(spec: &SubscriptionSpec) -> Option<&str> {
    match &spec.destination {
        Destination::Queue { name } | Destination::AmqQueue { name } => Some(name),
        Destination::Topic { .. } | Destination::Exchange { .. } => spec.queue.name.as_deref(),
        _ => None,
    }
}

/// A queue of the node: `/queue/{name}`, or the queue of a durable or
/// `x-queue-name` subscription.
#[derive(Debug, Default)]
pub struct SharedQueue {
    pub messages: VecDeque<Queued>,
    pub consumers: Vec<Consumer>,
    /// Round-robin position among consumers.
    pub next_consumer: usize,
    /// Deleted when its last consumer leaves (an `x-queue-name` queue that
    /// is not durable), as RabbitMQ's auto-delete.
    pub auto_delete: bool,
}

/// A subscription taking messages from a queue, within its prefetch
/// window.
#[derive(Debug)]
pub struct Consumer {
    pub session: SessionId,
    pub subscription: Arc<str>,
    pub destination: Arc<str>,
    pub needs_ack: bool,
    pub prefetch: u32,
    pub unacked: u32,
    /// Its MESSAGEs show where each message was published, as RabbitMQ's
    /// plugin shows them, rather than what it subscribed to (the consumer
    /// of a durable or `x-queue-name` subscription's queue).
    pub shows_published: bool,
}

impl EmbeddedBroker {
    /// Makes a subscription a consumer of the queue `name`, which exists.
    pub(super) fn consume(
        &self,
        state: &mut State,
        session: SessionId,
        spec: &SubscriptionSpec,
        name: &str,
    ) {
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
}

impl State {
    /// Adds a message to a queue, dropping its oldest past `max_length` as
    /// RabbitMQ's `x-max-length` does by default, and delivers what it can.
    pub(super) fn enqueue(&mut self, name: &str, queued: Queued, max_length: usize) {
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
    pub(super) fn ensure_queue(
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

    /// Deletes a queue and its bindings; what it held is gone. A consumer
    /// still on it is cancelled, and its session told, as RabbitMQ cancels
    /// the consumers of a deleted queue.
    pub(super) fn delete_queue(&mut self, name: &str) {
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
    pub(super) fn delete_if_unused(&mut self, name: &str) {
        if self
            .queues
            .get(name)
            .is_some_and(|queue| queue.auto_delete && queue.consumers.is_empty())
        {
            self.delete_queue(name);
        }
    }

    /// Delivers waiting messages of a queue to consumers with room, in turn.
    pub(super) fn pump(&mut self, name: &str) {
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
    pub(super) fn requeue(
        &mut self,
        queue: &str,
        subscription: &str,
        session: SessionId,
        queued: Queued,
    ) {
        self.settled(queue, session, subscription);
        let Some(queue) = self.queues.get_mut(queue) else {
            return;
        };
        queue.messages.push_front(Queued {
            redelivered: true,
            ..queued
        });
    }

    /// A consumer's delivery was settled (acknowledged, discarded or given
    /// back): its prefetch window has room for one more.
    pub(super) fn settled(&mut self, queue: &str, session: SessionId, subscription: &str) {
        let consumer = self.queues.get_mut(queue).and_then(|queue| {
            queue
                .consumers
                .iter_mut()
                .find(|c| c.session == session && &*c.subscription == subscription)
        });
        if let Some(consumer) = consumer {
            consumer.unacked = consumer.unacked.saturating_sub(1);
        }
    }

    /// Takes back every queue message a subscription (or, with `None`, a
    /// whole session) left unacknowledged; returns the queues to pump.
    pub(super) fn release_unacked(
        &mut self,
        session: SessionId,
        subscription: Option<&str>,
    ) -> Vec<String> {
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

    pub(super) fn remove_consumer(
        &mut self,
        queue: &str,
        session: SessionId,
        subscription: Option<&str>,
    ) {
        if let Some(queue) = self.queues.get_mut(queue) {
            queue.consumers.retain(|c| {
                c.session != session || subscription.is_some_and(|s| &*c.subscription != s)
            });
            queue.next_consumer = 0;
        }
    }
}
