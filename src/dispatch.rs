//! Delivery to users: a user's live sessions from the registry, then one
//! publish per session to its user-destination routing key on `amq.topic`.
//! No broadcast to every node, and nothing reaches a session of anyone else.

use std::sync::Arc;

use crate::broker::destination::{TOPIC_EXCHANGE, UserKey};
use crate::broker::{Broker, BrokerError, Message, PublishTarget};
use crate::registry::{Registry, RegistryError};

/// Publishes messages for users to their sessions.
#[derive(Clone)]
pub struct Dispatcher {
    registry: Arc<dyn Registry>,
    broker: Arc<dyn Broker>,
}

/// What a dispatch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DispatchReport {
    /// Sessions the message was published to.
    pub sessions: usize,
}

/// Why a dispatch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl Dispatcher {
    pub fn new(registry: Arc<dyn Registry>, broker: Arc<dyn Broker>) -> Dispatcher {
        Dispatcher { registry, broker }
    }

    /// Sends `message` to the user destination `name` (`/user/queue/{name}`)
    /// of every live session of `user`.
    pub async fn to_user(
        &self,
        user: &str,
        name: &str,
        message: Message,
    ) -> Result<DispatchReport, DispatchError> {
        let sessions = self.registry.sessions_of(user).await?;
        for record in &sessions {
            let routing_key = UserKey {
                name,
                session: record.session,
            }
            .to_string();
            let target = PublishTarget::Exchange {
                exchange: TOPIC_EXCHANGE.to_owned(),
                routing_key,
            };
            self.broker.publish(target, message.clone()).await?;
        }
        Ok(DispatchReport {
            sessions: sessions.len(),
        })
    }
}
