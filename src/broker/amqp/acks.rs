//! Deliveries that await a client's ACK or NACK, per session: who holds
//! each (RabbitMQ, or the relay for node-queue fan-out), and how an ACK,
//! a NACK or the end of a subscription settles it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use super::{AckTag, Inner, Message, SessionId, SessionState, Settlement, lock};

/// A delivery awaiting the client's ACK.
pub(super) struct Unacked {
    pub(super) subscription: Arc<str>,
    pub(super) held: Held,
}

/// Who holds a delivery until the client settles it.
pub(super) enum Held {
    /// RabbitMQ, for a delivery from a queue: settled there.
    Amqp {
        acker: Acker,
        /// When one AMQP delivery became several MESSAGEs (several matching
        /// subscriptions on the session queue), it is settled once all are.
        group: Option<Arc<AckGroup>>,
    },
    /// The relay, for a topic message fanned out from the node queue to a
    /// subscription with client acks: kept until ACK, delivered again on
    /// NACK, gone with the session, as an exclusive queue of the session
    /// would do it, at the cost of a node-queue delivery.
    Relay {
        destination: Arc<str>,
        message: Arc<Message>,
    },
}

/// One AMQP delivery shown as several MESSAGEs: acked on RabbitMQ once
/// every one of them is acked, requeued at the first NACK.
pub(super) struct AckGroup {
    pub(super) remaining: AtomicUsize,
    pub(super) settled: AtomicBool,
}

impl SessionState {
    /// Records a delivery that awaits the client's ACK.
    pub(super) fn expect_ack(&mut self, subscription: &Arc<str>, held: Held) -> AckTag {
        self.next_tag += 1;
        let tag = AckTag(self.next_tag);
        self.unacked.insert(
            tag,
            Unacked {
                subscription: subscription.clone(),
                held,
            },
        );
        tag
    }
}

impl Inner {
    /// Gives back every delivery of a subscription that awaits an ACK.
    pub(super) async fn release_unacked(&self, session: SessionId, subscription: &str) {
        let released: Vec<Unacked> = {
            let mut sessions = lock(&self.sessions);
            let Some(state) = sessions.get_mut(&session) else {
                return;
            };
            let tags: Vec<AckTag> = state
                .unacked
                .iter()
                .filter(|(_, unacked)| &*unacked.subscription == subscription)
                .map(|(tag, _)| *tag)
                .collect();
            tags.iter()
                .filter_map(|tag| state.unacked.remove(tag))
                .collect()
        };
        for unacked in released {
            settle_one(unacked, Settlement::Nack).await;
        }
    }
}

/// Acks or requeues one delivery (or its share of a group).
pub(super) async fn settle_one(unacked: Unacked, settlement: Settlement) {
    let Held::Amqp { acker, group } = unacked.held else {
        // Held by the relay: an ACK forgets it; a NACK was redelivered by
        // the caller, which holds the session.
        return;
    };
    match (settlement, group) {
        (Settlement::Ack, Some(group)) => {
            if group.remaining.fetch_sub(1, Ordering::AcqRel) == 1
                && !group.settled.swap(true, Ordering::AcqRel)
            {
                let _ = acker.ack(BasicAckOptions::default()).await;
            }
        }
        (Settlement::Nack, Some(group)) => {
            if !group.settled.swap(true, Ordering::AcqRel) {
                let _ = acker.nack(requeue()).await;
            }
        }
        (Settlement::Ack, None) => {
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        (Settlement::Nack, None) => {
            let _ = acker.nack(requeue()).await;
        }
    }
}

pub(super) fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue: true,
    }
}
