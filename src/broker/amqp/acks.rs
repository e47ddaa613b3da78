//! What settles an AMQP broker's delivery once the client has: RabbitMQ,
//! for deliveries from queues, or the relay itself, for node-queue fan-out
//! to subscriptions with client acks. The bookkeeping of which MESSAGE is
//! which delivery is the shared [`AckLedger`].

use std::sync::Arc;

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use super::{Inner, Message, SessionId, Settlement};
use crate::broker::ack_ledger::{AckLedger, Settled, Showable};

/// A session's unacknowledged deliveries in the AMQP broker.
pub(super) type Ledger = AckLedger<Held>;

/// Who holds a delivery until the client settles it.
#[derive(Clone)]
pub(super) enum Held {
    /// RabbitMQ, for a delivery from a queue: settled there. A delivery
    /// shown to several subscriptions (several matching subscriptions on
    /// the session queue) shares one acker, which the ledger settles once.
    Amqp(Acker),
    /// The relay, for a topic message fanned out from the node queue to a
    /// subscription with client acks: kept until ACK, delivered again on
    /// NACK, gone with the session, as an exclusive queue of the session
    /// would do it, at the cost of a node-queue delivery.
    Relay {
        destination: Arc<str>,
        message: Arc<Message>,
    },
}

impl Showable for Held {
    fn fanned_out(&self) -> Option<(Arc<str>, Arc<Message>)> {
        match self {
            Held::Relay {
                destination,
                message,
            } => Some((destination.clone(), message.clone())),
            Held::Amqp(_) => None,
        }
    }
}

impl Inner {
    /// Gives back every delivery of a subscription that awaits an ACK.
    pub(super) async fn release_unacked(&self, session: SessionId, subscription: &str) {
        let released = {
            let mut sessions = self.sessions.lock();
            let Some(state) = sessions.get_mut(&session) else {
                return;
            };
            state.acks.release(Some(subscription))
        };
        for settled in released {
            settle_at_source(settled).await;
        }
    }
}

/// Acks or requeues a delivery on RabbitMQ. One held by the relay needs
/// nothing here: an ACK forgets it, and a NACK is redelivered by the
/// caller, which holds the session.
pub(super) async fn settle_at_source(settled: Settled<Held>) {
    let Held::Amqp(acker) = settled.held else {
        return;
    };
    let _ = match settled.settlement {
        Settlement::Ack => acker.ack(BasicAckOptions::default()).await,
        Settlement::Nack => acker.nack(requeue()).await,
        Settlement::Discard => acker.nack(nack(false)).await,
    };
}

pub(super) fn requeue() -> BasicNackOptions {
    nack(true)
}

/// One delivery's `basic.nack`: given back to its queue, or (without
/// `requeue`) dropped or dead-lettered.
fn nack(requeue: bool) -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue,
    }
}
