//! The node's one AMQP connection and the few channels every session
//! shares: channel slots that reopen what RabbitMQ closes, and the watch
//! that notices when the connection itself is lost.

use std::hash::{Hash, Hasher};
use std::sync::Weak;

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};

use super::{BrokerError, Inner, SessionId};
use crate::error::source_of;

/// A channel that is replaced when RabbitMQ closes it (a refused declare or
/// publish closes the channel it ran on).
pub(super) struct ChannelSlot {
    channel: tokio::sync::Mutex<Channel>,
    confirms: bool,
}

impl ChannelSlot {
    pub(super) async fn open(
        connection: &Connection,
        confirms: bool,
    ) -> Result<ChannelSlot, BrokerError> {
        Ok(ChannelSlot {
            channel: tokio::sync::Mutex::new(open_channel(connection, confirms).await?),
            confirms,
        })
    }

    /// The channel, reopened first if it was closed. The lock is held while
    /// the caller works on it, so that consumers and their prefetch are set
    /// up one at a time per channel.
    pub(super) async fn lock(
        &self,
        connection: &Connection,
    ) -> Result<tokio::sync::MutexGuard<'_, Channel>, BrokerError> {
        let mut channel = self.channel.lock().await;
        if !channel.status().connected() {
            *channel = open_channel(connection, self.confirms).await?;
        }
        Ok(channel)
    }

    pub(super) async fn get(&self, connection: &Connection) -> Result<Channel, BrokerError> {
        Ok(self.lock(connection).await?.clone())
    }
}

pub(super) async fn open_channel(
    connection: &Connection,
    confirms: bool,
) -> Result<Channel, BrokerError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(unavailable("open a channel"))?;
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable("put a channel in confirm mode"))?;
    }
    Ok(channel)
}

/// The error of an AMQP operation that failed while the broker tried to
/// `what`.
pub(super) fn unavailable(what: &'static str) -> impl FnOnce(lapin::Error) -> BrokerError {
    move |error| BrokerError::Unavailable {
        what,
        source: source_of(error),
    }
}

/// Records the first connection error, which ends this node's usefulness:
/// exclusive queues, consumers and unacknowledged deliveries die with the
/// connection.
pub(super) async fn watch_connection(
    inner: Weak<Inner>,
    events: impl futures_util::Stream<Item = lapin::Event>,
) {
    futures_util::pin_mut!(events);
    while let Some(event) = events.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match event {
            // A soft error closes one channel (a refused declare, say), which
            // the channel slots reopen; anything else ends the connection.
            lapin::Event::Error(error) if error.is_amqp_soft_error() => {
                tracing::debug!(%error, "RabbitMQ closed a channel");
            }
            lapin::Event::Error(error) => {
                inner.lost.send_replace(Some(error.to_string()));
                return;
            }
            lapin::Event::ConnectionBlocked(reason) => {
                tracing::warn!(%reason, "RabbitMQ blocks publishing (resource alarm)");
            }
            lapin::Event::ConnectionUnblocked => {
                tracing::info!("RabbitMQ accepts publishing again")
            }
            _ => {}
        }
    }
}

impl Inner {
    /// Spreads sessions over the consumer channels: all the consumers of a
    /// session are on the channel its id hashes to.
    pub(super) fn session_channel(&self, session: SessionId) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        session.hash(&mut hasher);
        (hasher.finish() % self.consumers.len() as u64) as usize
    }
}
