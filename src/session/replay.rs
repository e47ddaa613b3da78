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
    /// The last position each subscription's replay gave: a live copy up
    /// to it was on its way while the history was read, and is not shown
    /// again.
    replayed_up_to: HashMap<Arc<str>, Position>,
    /// What each replayed subscription's client has had, for the read of
    /// the offline store that follows the replay.
    had: HashMap<Arc<str>, Had>,
}

/// What a client has had of its user's messages once its subscription
/// replayed: what came up to the position it gave (a MESSAGE's), and what
/// the replay gave.
#[derive(Debug, Default)]
pub(super) struct Had {
    up_to: Option<Position>,
    replayed: HashSet<Position>,
}

/// See [`Replays::admit`].
pub(super) enum Admission {
    /// Held until the replay is shown; the oldest held delivery, when the
    /// hold was full (the replay is then not complete).
    Held {
        pushed_out: Option<Delivery>,
    },
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
            let mut pushed_out = None;
            if holding.held.len() >= HOLD {
                pushed_out = holding.held.pop_front();
                holding.overflowed = true;
            }
            holding.held.push_back(delivery);
            return Admission::Held { pushed_out };
        }
        if self.replayed_already(&delivery) {
            return Admission::ShownAlready(delivery);
        }
        Admission::Now(delivery)
    }

    fn replayed_already(&self, delivery: &Delivery) -> bool {
        self.replayed_up_to
            .get(&delivery.subscription)
            .zip(position_in(&delivery.message))
            .is_some_and(|(last, position)| position <= *last)
    }

    /// Whether a MESSAGE of `subscription` is the first since a replay
    /// that was not complete (and now it is not any more).
    pub(super) fn first_since_incomplete(&mut self, subscription: &str) -> bool {
        self.incomplete.remove(subscription)
    }

    /// What the client of `subscription` has had, for the read of the
    /// offline store that follows its replay (once).
    pub(super) fn take_had(&mut self, subscription: &str) -> Had {
        self.had.remove(subscription).unwrap_or_default()
    }
}

impl Had {
    /// Whether the client has had `message`, a kept one read from the
    /// offline store after its replay: the replay gave it, or it came
    /// before the position the client gave.
    pub(super) fn has(&self, message: &Message) -> bool {
        position_in(message).is_some_and(|position| {
            self.replayed.contains(&position) || self.up_to.is_some_and(|up_to| position <= up_to)
        })
    }
}

impl Session {
    /// Shows what the history gave subscription `id`, then what came live
    /// meanwhile that the history did not give. A client-acked subscription
    /// gets no more than it may hold unacknowledged: the newest, and the
    /// replay is then not complete.
    pub(super) fn deliver_replay(&mut self, id: &Arc<str>, replay: Result<Replay, Rejection>) {
        let Some(holding) = self.replays.replaying.remove(id) else {
            return;
        };
        let Replay {
            mut messages,
            mut recovered,
        } = replay.unwrap_or_else(|rejection| {
            tracing::warn!(session = %self.id, error = %rejection.error, "cannot read the history");
            Replay::default()
        });
        let Some(subscription) = self.subscriptions.get(id) else {
            return self.give_back(holding);
        };
        let destination = subscription.destination_text.clone();
        if subscription.ack.needs_ack() {
            let room = self
                .context
                .settings
                .max_unacked
                .saturating_sub(self.subscriptions.unacked() + holding.held.len());
            if messages.len() > room {
                messages.drain(..messages.len() - room);
                recovered = false;
            }
        }
        if !recovered || holding.overflowed {
            self.replays.incomplete.insert(id.clone());
        }
        let up_to = match holding.start {
            StartAt::After(position) => Some(position),
            _ => None,
        };
        let mut had = Had {
            up_to,
            replayed: HashSet::with_capacity(messages.len()),
        };
        let last = messages.last().map(|(position, _)| *position);
        for (position, message) in messages {
            had.replayed.insert(position);
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
            self.replays.replayed_up_to.insert(id.clone(), last);
        }
        self.replays.had.insert(id.clone(), had);
        for delivery in holding.held {
            if self.replays.replayed_already(&delivery) {
                self.settle_shown(delivery);
            } else {
                self.deliver_now(delivery, false);
            }
        }
    }

    /// A live delivery the replay gave already, or one pushed out of a
    /// full hold: the broker forgets it.
    pub(super) fn settle_shown(&mut self, delivery: Delivery) {
        if let Some(tag) = delivery.ack {
            self.give(Command::Settle {
                tags: vec![tag],
                settlement: Settlement::Ack,
            });
        }
    }

    /// Ends the replay of subscription `id` (it ended): what it held goes
    /// back to the broker, and a read of its history still to come is for
    /// nobody (a new subscription may take the id).
    pub(super) fn end_replay(&mut self, id: &str) {
        let replays = &mut self.replays;
        replays.incomplete.remove(id);
        replays.replayed_up_to.remove(id);
        replays.had.remove(id);
        replays
            .reading
            .retain(|_, subscription| &**subscription != id);
        if let Some(holding) = replays.replaying.remove(id) {
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
