//! A session's subscriptions and the deliveries they have not acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::broker::{AckMode, AckTag, SubscriptionSpec};

/// What settles a delivered message once the client acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A broker delivery, by its tag.
    Broker(AckTag),
    /// A message kept for the user while offline, by its id in the store.
    Offline(String),
    /// A broker delivery of a message that is also kept (sent with
    /// `persist`): the ACK settles both.
    BrokerAndOffline(AckTag, String),
    /// A message replayed from the history: nothing to settle.
    Replayed,
}

/// One SUBSCRIBE of this session.
#[derive(Debug)]
pub struct Subscription {
    pub spec: SubscriptionSpec,
    /// Message ids awaiting an ACK, oldest first, with what settles them.
    unacked: VecDeque<(String, Pending)>,
}

/// The subscriptions of one session, by id, and which one each
/// unacknowledged message belongs to.
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// Boxed: a table keeps room for more entries than it holds, and most
    /// sessions hold one or two subscriptions.
    by_id: HashMap<Arc<str>, Box<Subscription>>,
    /// Message id -> subscription id, for ACK and NACK.
    awaiting_ack: HashMap<String, Arc<str>>,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Messages delivered and not yet acknowledged, in all subscriptions.
    pub fn unacked(&self) -> usize {
        self.awaiting_ack.len()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn specs(&self) -> impl Iterator<Item = &SubscriptionSpec> {
        self.by_id.values().map(|subscription| &subscription.spec)
    }

    pub fn get(&self, id: &str) -> Option<&SubscriptionSpec> {
        self.by_id.get(id).map(|subscription| &subscription.spec)
    }

    pub fn insert(&mut self, spec: SubscriptionSpec) {
        self.by_id.insert(
            spec.id.clone(),
            Box::new(Subscription {
                spec,
                unacked: VecDeque::new(),
            }),
        );
    }

    /// Removes a subscription, forgetting its unacknowledged messages (the
    /// broker takes them back).
    pub fn remove(&mut self, id: &str) -> Option<SubscriptionSpec> {
        let subscription = self.by_id.remove(id)?;
        for (message_id, _) in &subscription.unacked {
            self.awaiting_ack.remove(message_id);
        }
        Some(subscription.spec)
    }

    /// Records a delivery that needs an ACK. False when the subscription
    /// no longer exists.
    pub fn expect_ack(
        &mut self,
        subscription: &Arc<str>,
        message_id: String,
        pending: Pending,
    ) -> bool {
        let Some(entry) = self.by_id.get_mut(subscription) else {
            return false;
        };
        entry.unacked.push_back((message_id.clone(), pending));
        self.awaiting_ack.insert(message_id, subscription.clone());
        true
    }

    /// What an ACK or NACK of `message_id` settles: that message alone
    /// (`client-individual`), or it and every earlier one of its
    /// subscription (`client`). `None` when no such message awaits.
    pub fn settle(&mut self, message_id: &str) -> Option<Vec<Pending>> {
        let subscription_id = self.awaiting_ack.remove(message_id)?;
        let subscription = self.by_id.get_mut(&subscription_id)?;
        let position = subscription
            .unacked
            .iter()
            .position(|(id, _)| id == message_id)?;
        let settled: Vec<(String, Pending)> = match subscription.spec.ack {
            AckMode::Client => subscription.unacked.drain(..=position).collect(),
            AckMode::ClientIndividual | AckMode::Auto => {
                subscription.unacked.remove(position).into_iter().collect()
            }
        };
        for (id, _) in &settled {
            self.awaiting_ack.remove(id);
        }
        Some(settled.into_iter().map(|(_, pending)| pending).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::destination::Destination;

    fn tag(tag: u64) -> Pending {
        Pending::Broker(AckTag(tag))
    }

    fn spec(id: &str, ack: AckMode) -> SubscriptionSpec {
        SubscriptionSpec {
            id: Arc::from(id),
            destination_text: Arc::from("/queue/q"),
            destination: Destination::Queue { name: "q".into() },
            ack,
            prefetch: None,
            queue: Default::default(),
        }
    }

    #[test]
    fn client_acks_are_cumulative_within_their_subscription() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert(spec("a", AckMode::Client));
        subscriptions.insert(spec("b", AckMode::Client));
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        subscriptions.expect_ack(&a, "1".into(), tag(1));
        subscriptions.expect_ack(&b, "2".into(), tag(2));
        subscriptions.expect_ack(&a, "3".into(), Pending::Offline("k".into()));
        subscriptions.expect_ack(&a, "4".into(), tag(4));
        assert_eq!(
            subscriptions.settle("3"),
            Some(vec![tag(1), Pending::Offline("k".into())])
        );
        assert_eq!(subscriptions.settle("1"), None);
        assert_eq!(subscriptions.settle("2"), Some(vec![tag(2)]));
        assert_eq!(subscriptions.settle("4"), Some(vec![tag(4)]));
    }

    #[test]
    fn client_individual_acks_settle_one_message() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert(spec("a", AckMode::ClientIndividual));
        let a: Arc<str> = Arc::from("a");
        subscriptions.expect_ack(&a, "1".into(), tag(1));
        subscriptions.expect_ack(&a, "2".into(), tag(2));
        assert_eq!(subscriptions.settle("2"), Some(vec![tag(2)]));
        assert_eq!(subscriptions.settle("1"), Some(vec![tag(1)]));
    }

    #[test]
    fn removing_a_subscription_forgets_its_messages() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert(spec("a", AckMode::Client));
        let a: Arc<str> = Arc::from("a");
        subscriptions.expect_ack(&a, "1".into(), tag(1));
        assert!(subscriptions.remove("a").is_some());
        assert_eq!(subscriptions.settle("1"), None);
        assert!(!subscriptions.expect_ack(&a, "2".into(), tag(2)));
    }
}
