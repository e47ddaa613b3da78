//! The sessions attached to the embedded broker: each one's outbox, and
//! the deliveries it has not acknowledged with what gives each back.

use std::sync::Arc;

use super::{Queued, State};
use crate::broker::ack_ledger::{AckLedger, Showable};
use crate::broker::{Delivery, Message, Outbox, SessionId};

/// What the broker keeps of an attached session: where its deliveries go,
/// and those it has not acknowledged.
#[derive(Debug)]
pub struct SessionState {
    pub outbox: Outbox,
    pub acks: AckLedger<Unacked>,
}

/// A delivery awaiting its ACK, with what is needed to give it back.
#[derive(Debug)]
pub enum Unacked {
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

impl State {
    /// Hands one delivery to a session, recording it when it needs an ACK.
    /// False when the session's outbox refused it.
    pub(super) fn deliver(
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
}
