//! Replay on SUBSCRIBE: a subscription to one of the user's own
//! destinations that gives a position (`x-stream-offset`) gets what its
//! user's history holds after it, in order, then what comes live, with no
//! gap and nothing twice.
//!
//! The subscription is live first: dispatch writes a message to the
//! history before it reads where the user's sessions are, so a message the
//! new subscription does not get live is in the history read once it is
//! live. What comes live meanwhile is held; once the history is shown,
//! what it held is shown too, but for the messages the history gave
//! already (by their positions), and so is what comes later: a copy may
//! still be on its way when the history is read. When the history no longer held
//! everything after the position (or could not be read, or too much came
//! live meanwhile), the subscription's first MESSAGE says so:
//! `x-stream-recovered:false`, so that the page reloads its state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::{Command, CommandId, Rejection, Session};
use crate::broker::{Delivery, Message, Settlement};
use crate::history::{POSITION_HEADER, Position, Replay, StartAt};

/// Live deliveries a replaying subscription holds at most; past it the
/// oldest go, and the replay is not complete.
const HOLD: usize = 1024;

/// The replays of one session.
#[derive(Debug, Default)]
pub(super) struct Replays {
    /// Subscriptions whose replay is under way, and what came live
    /// meanwhile.
    replaying: HashMap<Arc<str>, Holding>,
    /// ReadHistory commands in flight -> the subscription they are for.
    pub(super) reading: HashMap<CommandId, Arc<str>>,
    /// Subscriptions whose next MESSAGE says the replay was not complete.
    incomplete: HashSet<Arc<str>>,
    /// The last position each replayed subscription's client has had, by
    /// the replay or before it: a kept message up to it is not shown again
    /// when the offline store is read.
    shown_up_to: HashMap<Arc<str>, Position>,
}

/// See [`Replays::admit`].
pub(super) enum Admission {
    Held,
    ShownAlready(Delivery),
    Now(Delivery),
}

#[derive(Debug)]
struct Holding {
    start: StartAt,
    held: VecDeque<Delivery>,
    overflowed: bool,
}

impl Replays {
    /// Subscription `id` replays: what comes live for it is held.
    pub(super) fn begin(&mut self, id: &Arc<str>, start: StartAt) {
        let holding = Holding {
            start,
            held: VecDeque::new(),
            overflowed: false,
        };
        self.replaying.insert(id.clone(), holding);
    }

    /// What becomes of a live delivery: held while its subscription
    /// replays, dropped when the replay gave it already (it was on its way
    /// while the history was read), else shown now.
    pub(super) fn admit(&mut self, delivery: Delivery) -> Admission {
        if let Some(holding) = self.replaying.get_mut(&delivery.subscription) {
            if holding.held.len() >= HOLD {
                holding.held.pop_front();
                holding.overflowed = true;
            }
            holding.held.push_back(delivery);
            return Admission::Held;
        }
        if self.shown(&delivery.subscription, &delivery.message) {
            return Admission::ShownAlready(delivery);
        }
        Admission::Now(delivery)
    }

    /// Whether a MESSAGE of `subscription` is the first since a replay
    /// that was not complete (and now it is not any more).
    pub(super) fn first_since_incomplete(&mut self, subscription: &str) -> bool {
        self.incomplete.remove(subscription)
    }

    /// Whether the client of `subscription` has had `message` (a live one,
    /// or a kept one read from the offline store) by its replay or before
    /// it.
    pub(super) fn shown(&self, subscription: &str, message: &Message) -> bool {
        let position = position_in(message);
        self.shown_up_to
            .get(subscription)
            .zip(position)
            .is_some_and(|(shown, position)| position <= *shown)
    }
}

impl Session {
    /// Shows what the history gave subscription `id`, then what came live
    /// meanwhile that the history did not give.
    pub(super) fn deliver_replay(&mut self, id: &Arc<str>, replay: Result<Replay, Rejection>) {
        let Some(holding) = self.replays.replaying.remove(id) else {
            return;
        };
        let Replay {
            messages,
            recovered,
        } = replay.unwrap_or_else(|rejection| {
            tracing::warn!(session = %self.id, error = %rejection.error, "cannot read the user's history");
            Replay::default()
        });
        if !recovered || holding.overflowed {
            self.replays.incomplete.insert(id.clone());
        }
        let destination = match self.subscriptions.get(id) {
            Some(subscription) => subscription.destination_text.clone(),
            None => return self.give_back(holding),
        };
        let mut last: Option<Position> = holding.start.after();
        for (position, message) in messages {
            last = Some(position);
            let delivery = Delivery {
                subscription: id.clone(),
                destination: destination.clone(),
                message: Arc::new(message),
                ack: None,
                redelivered: false,
            };
            self.deliver_now(delivery, true);
        }
        if let Some(last) = last {
            self.replays.shown_up_to.insert(id.clone(), last);
        }
        for delivery in holding.held {
            if self.replays.shown(id, &delivery.message) {
                self.settle_shown(delivery);
            } else {
                self.deliver_now(delivery, false);
            }
        }
    }

    /// A live delivery the replay gave already: the broker forgets it.
    pub(super) fn settle_shown(&mut self, delivery: Delivery) {
        if let Some(tag) = delivery.ack {
            self.give(Command::Settle {
                tags: vec![tag],
                settlement: Settlement::Ack,
            });
        }
    }

    /// Ends the replay of subscription `id` (it ended): what it held goes
    /// back to the broker.
    pub(super) fn end_replay(&mut self, id: &str) {
        self.replays.incomplete.remove(id);
        self.replays.shown_up_to.remove(id);
        if let Some(holding) = self.replays.replaying.remove(id) {
            self.give_back(holding);
        }
    }

    fn give_back(&mut self, holding: Holding) {
        let tags: Vec<_> = holding
            .held
            .iter()
            .filter_map(|delivery| delivery.ack)
            .collect();
        if !tags.is_empty() {
            self.give(Command::Settle {
                tags,
                settlement: Settlement::Nack,
            });
        }
    }
}

/// The position a message carries, if any.
fn position_in(message: &Message) -> Option<Position> {
    message
        .headers
        .get(POSITION_HEADER)
        .and_then(|position| position.parse().ok())
        .map(Position)
}
