//! The deliveries of one session that await the client's ACK or NACK, kept
//! the same way by both brokers: an [`AckTag`] per MESSAGE, what settles
//! it at its source, and the rules STOMP and AMQP impose between the two.
//!
//! - A message shown to several subscriptions of the session (several
//!   matching subscriptions on one session queue) came from one source
//!   delivery: that delivery is acknowledged once every one of its MESSAGEs
//!   is, and given back at the first NACK, so that RabbitMQ never sees a
//!   delivery settled twice.
//! - A subscription that ends, or a session that leaves, gives back what it
//!   left unacknowledged, as a NACK would.
//! - A subscription fed by the relay's own fan-out (topics, exchanges, user
//!   destinations) with a `prefetch-count` has a window: at most that many
//!   of its deliveries await an ACK, and the rest wait in the ledger, in
//!   order, until an ACK or NACK makes room, as they would wait in the
//!   subscription's own queue on RabbitMQ.
//!
//! What a held delivery is (an AMQP acker, a message to redeliver, a queue
//! to return it to) belongs to each broker; the ledger only says when and
//! how to settle it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::{AckTag, Delivery, Message, Outbox, Settlement};

/// One session's unacknowledged deliveries, each holding an `H`: what its
/// broker needs to settle it at its source. Lives inside the broker's
/// per-session state, behind the broker's lock.
#[derive(Debug)]
pub struct AckLedger<H> {
    next_tag: u64,
    next_group: u64,
    entries: BTreeMap<AckTag, Entry<H>>,
    groups: HashMap<u64, Group>,
    /// Only subscriptions with a prefetch window have an entry.
    windows: HashMap<Arc<str>, Window<H>>,
}

/// The deliveries one subscription may have awaiting an ACK, and those
/// waiting for room.
#[derive(Debug)]
struct Window<H> {
    limit: usize,
    outstanding: usize,
    /// What waits, with whether it is a redelivery; past `capacity` the
    /// oldest is dropped, as a capped queue drops it.
    waiting: VecDeque<(H, bool)>,
    capacity: usize,
}

/// What a broker holds of a delivery, as far as the ledger needs to show it
/// again: only what the relay fanned out itself waits in a window.
pub trait Showable {
    /// The `destination` and message of a delivery the relay fanned out.
    fn fanned_out(&self) -> Option<(Arc<str>, Arc<Message>)>;
}

#[derive(Debug)]
struct Entry<H> {
    subscription: Arc<str>,
    held: H,
    group: Option<u64>,
}

/// The MESSAGEs of one source delivery, shown to several subscriptions.
#[derive(Debug)]
struct Group {
    /// Members neither acknowledged nor given back yet.
    unsettled: usize,
    /// The source delivery has been settled (all acked or discarded, or one
    /// NACKed).
    settled: bool,
    /// A member was acknowledged: when the last one is discarded, the
    /// source is still acknowledged, since a subscription took it.
    acked: bool,
}

/// A delivery whose source must now be settled: the client ACKed or NACKed
/// it, or its subscription or session ended (then as a NACK).
#[derive(Debug)]
pub struct Settled<H> {
    pub subscription: Arc<str>,
    pub held: H,
    pub settlement: Settlement,
}

impl<H> Default for AckLedger<H> {
    fn default() -> AckLedger<H> {
        AckLedger {
            next_tag: 0,
            next_group: 0,
            entries: BTreeMap::new(),
            groups: HashMap::new(),
            windows: HashMap::new(),
        }
    }
}

impl<H> AckLedger<H> {
    /// Records a delivery to `subscription` that awaits the client's ACK.
    pub fn hold(&mut self, subscription: &Arc<str>, held: H) -> AckTag {
        self.insert(subscription, held, None)
    }

    /// Gives `subscription` a window of `limit` unacknowledged deliveries,
    /// with at most `capacity` more waiting.
    pub fn limit(&mut self, subscription: &Arc<str>, limit: u32, capacity: usize) {
        let window = Window {
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
            outstanding: 0,
            waiting: VecDeque::new(),
            capacity: capacity.max(1),
        };
        self.windows.insert(subscription.clone(), window);
    }

    /// Holds a delivery as [`AckLedger::hold`] does when its subscription's
    /// window has room (or it has none); otherwise it waits, a redelivery
    /// ahead of the rest, and `None` says that it is not to be shown yet.
    pub fn hold_or_wait(
        &mut self,
        subscription: &Arc<str>,
        held: H,
        redelivered: bool,
    ) -> Option<AckTag> {
        match self.windows.get_mut(subscription) {
            Some(window) if window.outstanding >= window.limit => {
                if redelivered {
                    window.waiting.push_front((held, true));
                } else {
                    window.waiting.push_back((held, false));
                }
                if window.waiting.len() > window.capacity {
                    tracing::debug!(%subscription, "too many messages wait for acks; the oldest dropped");
                    window.waiting.pop_front();
                }
                None
            }
            _ => Some(self.hold(subscription, held)),
        }
    }

    /// Shows through `outbox` what waited in windows that now have room.
    pub fn offer_ready(&mut self, outbox: &Outbox)
    where
        H: Showable,
    {
        while let Some((subscription, (held, redelivered))) =
            self.windows.iter_mut().find_map(|(subscription, window)| {
                if window.outstanding >= window.limit {
                    return None;
                }
                window
                    .waiting
                    .pop_front()
                    .map(|waiting| (subscription.clone(), waiting))
            })
        {
            let Some((destination, message)) = held.fanned_out() else {
                continue;
            };
            let tag = self.hold(&subscription, held);
            let delivery = Delivery {
                subscription,
                destination,
                message,
                ack: Some(tag),
                redelivered,
            };
            if outbox.offer(delivery).is_err() {
                // Its session has been told to close.
                return;
            }
        }
    }

    /// Records one source delivery shown to several subscriptions, one tag
    /// each, in the order given. With more than one, they are settled at the
    /// source together, as the module says.
    pub fn hold_shared(&mut self, subscriptions: &[Arc<str>], held: H) -> Vec<AckTag>
    where
        H: Clone,
    {
        let group = (subscriptions.len() > 1).then(|| {
            self.next_group += 1;
            self.groups.insert(
                self.next_group,
                Group {
                    unsettled: subscriptions.len(),
                    settled: false,
                    acked: false,
                },
            );
            self.next_group
        });
        subscriptions
            .iter()
            .map(|subscription| self.insert(subscription, held.clone(), group))
            .collect()
    }

    fn insert(&mut self, subscription: &Arc<str>, held: H, group: Option<u64>) -> AckTag {
        if let Some(window) = self.windows.get_mut(subscription) {
            window.outstanding += 1;
        }
        self.next_tag += 1;
        let tag = AckTag(self.next_tag);
        self.entries.insert(
            tag,
            Entry {
                subscription: subscription.clone(),
                held,
                group,
            },
        );
        tag
    }

    /// Deliveries awaiting an ACK.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Settles what the client named. Tags it does not hold (settled
    /// already, or never given) are ignored. Returns, in tag order, the
    /// deliveries whose source must be settled now; a member of a shared
    /// delivery whose source waits for the others, or was settled already,
    /// is forgotten without being returned.
    pub fn settle(&mut self, tags: &[AckTag], settlement: Settlement) -> Vec<Settled<H>> {
        let mut tags = tags.to_vec();
        tags.sort_unstable();
        tags.dedup();
        tags.into_iter()
            .filter_map(|tag| self.take(tag, settlement))
            .collect()
    }

    /// Takes back a delivery recorded a moment ago that never reached the
    /// client (its outbox refused it), to be given back by the caller.
    pub fn withdraw(&mut self, tag: AckTag) -> Option<Settled<H>> {
        self.take(tag, Settlement::Nack)
    }

    /// Gives back, as NACKs, everything `subscription` (or, with `None`, the
    /// whole session) left unacknowledged; returned in tag order. What
    /// waited in its window is forgotten with the window.
    pub fn release(&mut self, subscription: Option<&str>) -> Vec<Settled<H>> {
        match subscription {
            Some(subscription) => {
                self.windows.remove(subscription);
            }
            None => self.windows.clear(),
        }
        let tags: Vec<AckTag> = self
            .entries
            .iter()
            .filter(|(_, entry)| subscription.is_none_or(|wanted| &*entry.subscription == wanted))
            .map(|(tag, _)| *tag)
            .collect();
        tags.into_iter()
            .filter_map(|tag| self.take(tag, Settlement::Nack))
            .collect()
    }

    fn take(&mut self, tag: AckTag, settlement: Settlement) -> Option<Settled<H>> {
        let entry = self.entries.remove(&tag)?;
        if let Some(window) = self.windows.get_mut(&entry.subscription) {
            window.outstanding = window.outstanding.saturating_sub(1);
        }
        let at_source = match entry.group {
            None => Some(settlement),
            Some(id) => {
                let group = self.groups.get_mut(&id)?;
                group.unsettled = group.unsettled.saturating_sub(1);
                group.acked |= settlement == Settlement::Ack;
                let fire = !group.settled
                    && match settlement {
                        Settlement::Ack | Settlement::Discard => group.unsettled == 0,
                        Settlement::Nack => true,
                    };
                group.settled |= fire;
                let acked = group.acked;
                if group.unsettled == 0 {
                    self.groups.remove(&id);
                }
                fire.then_some(match settlement {
                    Settlement::Discard if acked => Settlement::Ack,
                    other => other,
                })
            }
        };
        at_source.map(|settlement| Settled {
            subscription: entry.subscription,
            held: entry.held,
            settlement,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Offered;

    fn subscription(id: &str) -> Arc<str> {
        Arc::from(id)
    }

    fn helds(settled: Vec<Settled<&'static str>>) -> Vec<(&'static str, Settlement)> {
        settled
            .into_iter()
            .map(|settled| (settled.held, settled.settlement))
            .collect()
    }

    #[test]
    fn each_delivery_settles_once_with_what_the_client_said() {
        let mut ledger = AckLedger::default();
        let a = ledger.hold(&subscription("s"), "a");
        let b = ledger.hold(&subscription("s"), "b");
        assert!(a < b);
        assert_eq!(ledger.len(), 2);
        assert_eq!(
            helds(ledger.settle(&[b, a, b], Settlement::Ack)),
            vec![("a", Settlement::Ack), ("b", Settlement::Ack)]
        );
        assert!(ledger.settle(&[a], Settlement::Nack).is_empty());
        assert!(ledger.is_empty());
    }

    #[test]
    fn a_shared_delivery_is_acked_at_its_source_when_every_message_is() {
        let mut ledger = AckLedger::default();
        let tags = ledger.hold_shared(&[subscription("x"), subscription("y")], "m");
        assert!(ledger.settle(&tags[..1], Settlement::Ack).is_empty());
        assert_eq!(
            helds(ledger.settle(&tags[1..], Settlement::Ack)),
            vec![("m", Settlement::Ack)]
        );
        assert!(ledger.groups.is_empty());
    }

    #[test]
    fn a_shared_delivery_is_given_back_at_the_first_nack_and_only_then() {
        let mut ledger = AckLedger::default();
        let tags = ledger.hold_shared(
            &[subscription("x"), subscription("y"), subscription("z")],
            "m",
        );
        assert!(ledger.settle(&tags[..1], Settlement::Ack).is_empty());
        assert_eq!(
            helds(ledger.settle(&tags[1..2], Settlement::Nack)),
            vec![("m", Settlement::Nack)]
        );
        assert!(ledger.settle(&tags[2..], Settlement::Ack).is_empty());
        assert!(ledger.is_empty() && ledger.groups.is_empty());
    }

    #[test]
    fn a_shared_delivery_is_discarded_only_when_no_message_of_it_was_acked() {
        let mut ledger = AckLedger::default();
        let subscriptions = [subscription("x"), subscription("y")];
        let tags = ledger.hold_shared(&subscriptions, "dropped");
        assert!(ledger.settle(&tags[..1], Settlement::Discard).is_empty());
        assert_eq!(
            helds(ledger.settle(&tags[1..], Settlement::Discard)),
            vec![("dropped", Settlement::Discard)]
        );
        let tags = ledger.hold_shared(&subscriptions, "taken");
        assert!(ledger.settle(&tags[..1], Settlement::Ack).is_empty());
        assert_eq!(
            helds(ledger.settle(&tags[1..], Settlement::Discard)),
            vec![("taken", Settlement::Ack)]
        );
        assert!(ledger.is_empty() && ledger.groups.is_empty());
    }

    #[test]
    fn an_ended_subscription_gives_back_only_its_own_deliveries_in_order() {
        let mut ledger = AckLedger::default();
        ledger.hold(&subscription("x"), "x1");
        let y = ledger.hold(&subscription("y"), "y1");
        ledger.hold(&subscription("x"), "x2");
        let released = ledger.release(Some("x"));
        assert!(released.iter().all(|settled| &*settled.subscription == "x"));
        assert_eq!(
            helds(released),
            vec![("x1", Settlement::Nack), ("x2", Settlement::Nack)]
        );
        assert_eq!(ledger.len(), 1);
        assert_eq!(helds(ledger.release(None)), vec![("y1", Settlement::Nack)]);
        assert!(ledger.settle(&[y], Settlement::Ack).is_empty());
    }

    #[test]
    fn leaving_gives_a_shared_delivery_back_once() {
        let mut ledger = AckLedger::default();
        ledger.hold_shared(&[subscription("x"), subscription("y")], "m");
        assert_eq!(helds(ledger.release(None)), vec![("m", Settlement::Nack)]);
        assert!(ledger.groups.is_empty());
    }

    impl Showable for &'static str {
        fn fanned_out(&self) -> Option<(Arc<str>, Arc<Message>)> {
            let message = Message {
                headers: stomp_parser::Headers::new(),
                body: bytes::Bytes::from_static(self.as_bytes()),
            };
            Some((Arc::from("/topic/t"), Arc::new(message)))
        }
    }

    /// What `offer_ready` shows now: bodies, tags and redelivered flags.
    fn shown(ledger: &mut AckLedger<&'static str>) -> Vec<(String, AckTag, bool)> {
        let (outbox, deliveries, _) =
            Outbox::channel(16, super::super::SlowConsumer::Close, Default::default());
        ledger.offer_ready(&outbox);
        deliveries
            .drain()
            .map(|Offered { delivery, .. }| {
                let body = String::from_utf8_lossy(&delivery.message.body).into_owned();
                (body, delivery.ack.unwrap(), delivery.redelivered)
            })
            .collect()
    }

    #[test]
    fn a_window_shows_at_most_its_limit_and_the_rest_in_order_as_room_comes() {
        let mut ledger = AckLedger::default();
        let s = subscription("s");
        ledger.limit(&s, 2, 3);
        let first = ledger.hold_or_wait(&s, "1", false).unwrap();
        let second = ledger.hold_or_wait(&s, "2", false).unwrap();
        for waiting in ["3", "4", "5", "6"] {
            assert_eq!(ledger.hold_or_wait(&s, waiting, false), None);
        }
        assert!(shown(&mut ledger).is_empty());
        // "3" was dropped: only three may wait.
        ledger.settle(&[first], Settlement::Ack);
        let ready = shown(&mut ledger);
        assert_eq!(ready, [("4".to_owned(), AckTag(3), false)]);
        // A NACKed message goes back ahead of those that wait.
        let nacked = ledger.settle(&[second], Settlement::Nack).remove(0);
        assert_eq!(ledger.hold_or_wait(&s, nacked.held, true), Some(AckTag(4)));
        ledger.settle(&[ready[0].1], Settlement::Ack);
        assert_eq!(shown(&mut ledger), [("5".to_owned(), AckTag(5), false)]);
        // Another subscription has no window.
        assert!(
            ledger
                .hold_or_wait(&subscription("t"), "t", false)
                .is_some()
        );
        ledger.release(Some("s"));
        ledger.settle(&[AckTag(4), AckTag(5)], Settlement::Ack);
        assert!(shown(&mut ledger).is_empty());
    }

    #[test]
    fn a_withdrawn_delivery_is_no_longer_held() {
        let mut ledger = AckLedger::default();
        let tag = ledger.hold(&subscription("s"), "m");
        assert_eq!(ledger.withdraw(tag).map(|settled| settled.held), Some("m"));
        assert!(ledger.settle(&[tag], Settlement::Ack).is_empty());
    }
}
