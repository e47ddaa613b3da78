//! Riding through a lost connection to RabbitMQ (a broker restart, a
//! network cut, `rabbitmqctl close_connection`): the node stays up, its
//! clients stay connected, and it connects again with backoff until it gets
//! through. Then it puts back, from its own state, everything the lost
//! connection carried: the node queue with its binding for its sessions'
//! keys and one for every topic key its router uses, the fan-out and
//! `stomp.dispatch` consumers, each session's queue with its binding, and
//! each queue or exchange subscription's
//! consumer (and its own queue). Channels and publisher lanes reopen on the
//! new connection as they are next used.
//!
//! What the lost connection held cannot all be kept, and is said: messages
//! that waited in the node's exclusive queues are gone (and a publish to a
//! session's key meanwhile is dropped by RabbitMQ); those sent with
//! `persist` are still kept, and every session reads what is kept for its
//! user again; deliveries from queues that awaited
//! a client's ACK are redelivered by RabbitMQ with `redelivered:true`;
//! publishes not yet confirmed fail, so their RECEIPTs never come and their
//! senders get an ERROR; publishes made while the broker is away wait for
//! it (for the link's patience). A subscription that cannot be made again
//! (its queue was deleted meanwhile) ends its session with an ERROR.
//!
//! lapin 4 can recover a connection by itself, replaying what each channel
//! declared; the relay does not use it, because its topology does not live
//! on one channel: declares that may fail run on short-lived channels, the
//! channel slots reopen channels that RabbitMQ closed (and with them lapin's
//! record of their topology), consumers on a shared channel each have their
//! own prefetch, and the relay's router and session table already know
//! what must exist.

use std::sync::{Arc, Weak};

use super::connection::{Events, lost};
use super::{BrokerError, Inner, SessionId, SubscriptionSpec};
use crate::broker::Alarm;
use crate::error::Chain;
use crate::retry;

/// What one session had on the lost connection.
struct SessionTopology {
    session: SessionId,
    /// Its queue's name, if it had one.
    queue: Option<String>,
    dedicated: Vec<SubscriptionSpec>,
}

/// Watches the connection and, each time it is lost, connects again and
/// restores what it carried; until the node shuts down.
pub(super) async fn keep_connected(inner: Weak<Inner>, mut events: Events) {
    loop {
        let reason = lost(&mut events).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.link.is_closing() {
            return;
        }
        inner.link.set_up(false);
        inner.link_metrics.connected.set(0);
        tracing::warn!(%reason, "lost the connection to RabbitMQ; connecting again");
        events = retry::until_reachable("RabbitMQ", || reconnect(&inner)).await;
        if inner.link.is_closing() {
            return;
        }
        inner.link.set_up(true);
        inner.link_metrics.connected.set(1);
        inner.link_metrics.reconnects.inc();
    }
}

/// Connects again and restores the node's topology on the new connection.
async fn reconnect(inner: &Arc<Inner>) -> Result<Events, BrokerError> {
    let events = inner.link.reconnect().await?;
    // Nothing changes a session's topology while it is restored.
    let _topology = inner.topology.write().await;
    inner.set_up_node().await?;
    let sessions = session_topologies(inner);
    let mut ended = 0;
    for session in &sessions {
        if let Err(failed) = restore_session(inner, session).await {
            match failed {
                // The new connection failed too: start again.
                (_, BrokerError::Unavailable { .. }) | (None, _) => return Err(failed.1),
                (Some(spec), error) => {
                    tracing::warn!(
                        session = %session.session,
                        subscription = %spec.id,
                        error = %Chain(&error),
                        "a subscription could not be made again after reconnecting; its session ends"
                    );
                    ended += 1;
                    if let Some(state) = inner.sessions.lock().get(&session.session) {
                        state.outbox.raise(Alarm::SubscriptionCancelled {
                            subscription: spec.id.clone(),
                            destination: spec.destination_text.clone(),
                        });
                    }
                }
            }
        }
    }
    // What was on its way to a session went with the old connection; what
    // was kept of it is still kept, and read again.
    // Only once the node queue is bound again: a request taken before
    // would publish to keys that reach no queue.
    let requests = inner.dispatch.lock().clone();
    if let Some(requests) = requests {
        inner.consume_dispatch_queue(requests).await?;
    }
    for state in inner.sessions.lock().values() {
        state.outbox.ask_to_read_offline_again();
    }
    tracing::info!(
        sessions = sessions.len(),
        ended,
        "connected to RabbitMQ again; the node's queues, bindings and consumers are restored"
    );
    Ok(events)
}

/// What each session with queues or consumers of its own had.
fn session_topologies(inner: &Inner) -> Vec<SessionTopology> {
    inner
        .sessions
        .lock()
        .iter()
        .filter(|(_, state)| state.session_queue.is_some() || !state.dedicated.is_empty())
        .map(|(&session, state)| SessionTopology {
            session,
            queue: state.session_queue.as_ref().map(|queue| queue.name.clone()),
            dedicated: state
                .dedicated
                .values()
                .map(|consumer| consumer.spec.clone())
                .collect(),
        })
        .collect()
}

/// Makes a session's queue and consumers again; on failure, says which
/// subscription failed (none for its queue).
async fn restore_session(
    inner: &Arc<Inner>,
    session: &SessionTopology,
) -> Result<(), (Option<SubscriptionSpec>, BrokerError)> {
    if let Some(name) = &session.queue {
        inner
            .declare_session_queue(session.session, name)
            .await
            .map_err(|error| (None, error))?;
        inner
            .bind(name, &inner.session_queue_binding(session.session))
            .await
            .map_err(|error| (None, error))?;
    }
    for spec in &session.dedicated {
        inner
            .subscribe_dedicated(session.session, spec)
            .await
            .map_err(|error| (Some(spec.clone()), error))?;
    }
    Ok(())
}
