//! Exchanges as the embedded broker knows them: the ones a fresh RabbitMQ
//! has, the queues bound to them, and what a publish to one reaches.

use std::sync::Arc;

use super::sessions::Unacked;
use super::{Queued, State};
use crate::broker::Message;
use crate::broker::destination::{
    INBOUND_EXCHANGE, TOPIC_EXCHANGE, USERS_EXCHANGE, published_destination,
};
use crate::broker::router::ExchangeKind;
use crate::broker::topic_pattern::TopicPattern;

/// The exchanges a fresh RabbitMQ has, plus the relay's inbound one.
pub fn exchange_kind(exchange: &str) -> Option<ExchangeKind> {
    match exchange {
        TOPIC_EXCHANGE | INBOUND_EXCHANGE | USERS_EXCHANGE => Some(ExchangeKind::Topic),
        "amq.direct" | "" => Some(ExchangeKind::Direct),
        "amq.fanout" => Some(ExchangeKind::Fanout),
        _ => None,
    }
}

/// What became of a publish to an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Published {
    /// Given to whatever it reached (perhaps nothing, as RabbitMQ drops an
    /// unroutable message).
    Routed,
    /// A session key whose session is not here, or does not listen to
    /// that name: dropped, to be counted.
    Unclaimed,
}

/// A queue bound to an exchange with a key, as RabbitMQ binds one.
#[derive(Debug)]
pub struct QueueBinding {
    pub exchange: String,
    pub kind: ExchangeKind,
    pub key: String,
    pub pattern: TopicPattern,
    pub queue: String,
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

impl State {
    pub(super) fn publish_to_exchange(
        &mut self,
        exchange: &str,
        routing_key: &str,
        message: Arc<Message>,
        max_length: usize,
    ) -> Published {
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
        let route = self.router.route(exchange, routing_key);
        let published = match route.is_unclaimed() {
            true => Published::Unclaimed,
            false => Published::Routed,
        };
        for (subscriber, destination) in route.targets() {
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
        published
    }
}
