//! Publishing on the confirm-mode channels.

use std::sync::atomic::Ordering;

use lapin::options::BasicPublishOptions;

use super::connection::unavailable;
use super::{BrokerError, Inner, Message, properties};

impl Inner {
    /// Publishes on a confirm channel and waits for RabbitMQ's confirm.
    /// With `mandatory`, answers whether a queue took the message.
    pub(super) async fn confirmed_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        message: &Message,
    ) -> Result<bool, BrokerError> {
        let index = self.next_publisher.fetch_add(1, Ordering::Relaxed) % self.publishers.len();
        let channel = self.publishers[index].get(&self.connection).await?;
        let confirmation = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties::to_amqp(&message.headers),
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        if confirmation.is_nack() {
            return Err(BrokerError::Refused(
                "RabbitMQ did not accept the message".into(),
            ));
        }
        Ok(confirmation.take_message().is_none())
    }
}
