//! What the relay declares and binds on RabbitMQ: the node's own queue and
//! exchanges, existence checks of exchanges and queues (remembered once
//! seen), shared `/queue/` queues, queues declared with a SUBSCRIBE's
//! arguments, binds and unbinds, and the session queues.

use std::sync::Arc;

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use futures_util::future::try_join_all;

use super::connection::{open_channel, unavailable};
use super::{BrokerError, Inner, SessionId, SessionQueue, UserKeyBinding};
use crate::broker::Missing;
use crate::broker::destination::{
    EVERYONE_EXCHANGE, INBOUND_EXCHANGE, SESSION_KEYS, SessionKey, TOPIC_EXCHANGE, USERS_EXCHANGE,
};
use crate::broker::queue_options::{QueueArgument, QueueOptions};
use crate::broker::router::{BindingKey, Router};
use crate::error::source_of;

/// Exchanges every RabbitMQ has, plus the relay's own.
pub(super) const KNOWN_EXCHANGES: &[&str] = &[
    "",
    "amq.topic",
    "amq.direct",
    "amq.fanout",
    "amq.headers",
    "amq.match",
];

pub(super) fn exclusive_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares one of the relay's own exchanges, durable so that it outlives
/// the nodes (and what services bound to it), `what` naming it in errors.
pub(super) async fn declare_durable_exchange(
    channel: &Channel,
    exchange: &str,
    kind: ExchangeKind,
    what: &'static str,
) -> Result<(), BrokerError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(exchange.into(), kind, durable, FieldTable::default())
        .await
        .map_err(unavailable(what))
}

/// Declares the durable fanout exchange of messages to everyone and binds
/// the node queue to it, once at connect: every node then gets one copy of
/// each such message and gives it to its own sessions (the node queue's
/// router matches it to user subscriptions by the routing key, their name).
pub(super) async fn receive_messages_to_everyone(
    channel: &Channel,
    node_queue: &str,
) -> Result<(), BrokerError> {
    declare_durable_exchange(
        channel,
        EVERYONE_EXCHANGE,
        ExchangeKind::Fanout,
        "declare the exchange of messages to everyone",
    )
    .await?;
    channel
        .queue_bind(
            node_queue.into(),
            EVERYONE_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable("bind the node queue to messages to everyone"))
}

/// The arguments of a queue that holds at most `length` messages, dropping
/// its oldest past them (RabbitMQ's default overflow).
pub(super) fn capped(length: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongInt(i32::try_from(length).unwrap_or(i32::MAX)),
    );
    arguments
}

/// Binds sent at once, without waiting for each reply, when many are made
/// again.
const BINDS_AT_ONCE: usize = 256;

/// An exchange or queue that must exist before it is used.
#[derive(Debug, Clone, Copy)]
pub(super) enum Existing<'a> {
    Exchange(&'a str),
    Queue(&'a str),
}

impl Existing<'_> {
    /// How [`Inner`] remembers that it exists.
    fn key(&self) -> String {
        match self {
            Existing::Exchange(exchange) => format!("{}:{exchange}", Missing::Exchange),
            Existing::Queue(queue) => format!("{}:{queue}", Missing::Queue),
        }
    }
}

impl Inner {
    /// Puts the node's own topology on the current connection: the node
    /// queue (exclusive, so that RabbitMQ removes it with the node), the
    /// inbound, everyone and users exchanges, the node queue's one binding
    /// for all its sessions' keys, a binding for every topic key the node's
    /// router uses (none at start; every subscription's after a reconnect),
    /// and the consumer that fans the node queue out.
    pub(super) async fn set_up_node(self: &Arc<Self>) -> Result<(), BrokerError> {
        let channel = self.admin.get(&self.link).await?;
        channel
            .queue_declare(
                self.node_queue.as_str().into(),
                exclusive_queue(),
                capped(self.settings.node_queue_length),
            )
            .await
            .map_err(unavailable("declare the node queue"))?;
        declare_durable_exchange(
            &channel,
            INBOUND_EXCHANGE,
            ExchangeKind::Topic,
            "declare the inbound exchange",
        )
        .await?;
        receive_messages_to_everyone(&channel, &self.node_queue).await?;
        self.receive_session_keys(&channel).await?;
        {
            let _binding = self.binding.lock().await;
            let keys = self.router.lock().binding_keys();
            self.bind_all(&self.node_queue, &keys).await?;
        }
        self.fan_out_node_queue().await
    }

    /// Declares the users exchange, has `amq.topic` pass session keys on to
    /// it (for services that publish there), and, unless each session has
    /// a queue of its own, binds the node queue to every key of its
    /// sessions: one binding, whatever the number of sessions.
    async fn receive_session_keys(&self, channel: &Channel) -> Result<(), BrokerError> {
        declare_durable_exchange(
            channel,
            USERS_EXCHANGE,
            ExchangeKind::Topic,
            "declare the users exchange",
        )
        .await?;
        channel
            .exchange_bind(
                USERS_EXCHANGE.into(),
                TOPIC_EXCHANGE.into(),
                SESSION_KEYS.into(),
                lapin::options::ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable("bind the users exchange to amq.topic"))?;
        if self.settings.user_keys == UserKeyBinding::NodeQueue {
            let binding = BindingKey {
                exchange: USERS_EXCHANGE.to_owned(),
                key: SessionKey::node_binding(&self.node_id),
            };
            self.bind(&self.node_queue, &binding).await?;
        }
        Ok(())
    }

    /// The one binding of a session's own queue: every key of the session.
    pub(super) fn session_queue_binding(&self, session: SessionId) -> BindingKey {
        BindingKey {
            exchange: USERS_EXCHANGE.to_owned(),
            key: SessionKey::session_binding(&self.node_id, session),
        }
    }

    /// Binds `queue` with every key, many at a time.
    pub(super) async fn bind_all(
        &self,
        queue: &str,
        keys: &[BindingKey],
    ) -> Result<(), BrokerError> {
        for batch in keys.chunks(BINDS_AT_ONCE) {
            try_join_all(batch.iter().map(|key| self.bind(queue, key))).await?;
        }
        Ok(())
    }

    fn is_known(&self, what: &str) -> bool {
        self.known.lock().contains(what)
    }

    /// Checks that an exchange or queue exists, as [`Inner::verify_exists`]
    /// does, once: what exists is remembered. A publish to a queue deleted
    /// since is dropped, as RabbitMQ drops it.
    pub(super) async fn check_exists(&self, what: Existing<'_>) -> Result<(), BrokerError> {
        if self.is_known(&what.key()) {
            return Ok(());
        }
        self.verify_exists(what).await
    }

    /// Asks RabbitMQ whether an exchange or queue exists, on a channel of
    /// its own, since a failed check closes the channel it runs on. Before
    /// a consumer starts, whatever was remembered: a consume of a missing
    /// queue would close the consumer channel that sessions share.
    pub(super) async fn verify_exists(&self, what: Existing<'_>) -> Result<(), BrokerError> {
        let (kind, name) = match what {
            Existing::Exchange(exchange) => (Missing::Exchange, exchange),
            Existing::Queue(queue) => (Missing::Queue, queue),
        };
        let key = what.key();
        let channel = open_channel(&self.link, false).await?;
        let outcome = match what {
            Existing::Exchange(exchange) => channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ()),
            Existing::Queue(queue) => channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ()),
        };
        let _ = channel.close(200, "checked".into()).await;
        match outcome {
            Ok(()) => {
                self.known.lock().insert(key);
                Ok(())
            }
            // RabbitMQ's answer about the object (NOT_FOUND, or the
            // RESOURCE_LOCKED of another connection's exclusive queue) means
            // the client cannot use it; anything else is the broker's trouble.
            Err(error) if error.is_amqp_soft_error() => Err(BrokerError::NotFound {
                kind,
                name: name.to_owned(),
                source: source_of(error),
            }),
            Err(error) => Err(unavailable("check that an exchange or queue exists")(error)),
        }
    }

    /// Declares the durable shared queue of `/queue/{name}` unless it
    /// exists already (whatever its arguments).
    pub(super) async fn ensure_shared_queue(
        &self,
        name: &str,
        options: &QueueOptions,
    ) -> Result<(), BrokerError> {
        if self.check_exists(Existing::Queue(name)).await.is_ok() {
            return Ok(());
        }
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        self.declare(name, durable, options).await?;
        self.known.lock().insert(Existing::Queue(name).key());
        Ok(())
    }

    /// Declares a queue with the SUBSCRIBE's queue arguments, on a channel
    /// of its own: arguments that disagree with an existing queue make
    /// RabbitMQ close the channel.
    pub(super) async fn declare(
        &self,
        name: &str,
        options: QueueDeclareOptions,
        queue: &QueueOptions,
    ) -> Result<(), BrokerError> {
        let mut arguments = FieldTable::default();
        for (argument, value) in &queue.arguments {
            let value = match value {
                QueueArgument::Number(number) => AMQPValue::LongLongInt(*number),
                QueueArgument::Text(text) => AMQPValue::LongString(text.as_str().into()),
            };
            arguments.insert(argument.as_str().into(), value);
        }
        let channel = open_channel(&self.link, false).await?;
        let declared = channel.queue_declare(name.into(), options, arguments).await;
        let _ = channel.close(200, "declared".into()).await;
        declared.map(|_| ()).map_err(|error| match refusal(&error) {
            Some(why) => BrokerError::Refused {
                reason: format!("cannot declare queue {name:?}: {why}"),
                source: source_of(error),
            },
            None => unavailable("declare a queue")(error),
        })
    }

    pub(super) async fn bind(&self, queue: &str, key: &BindingKey) -> Result<(), BrokerError> {
        let channel = self.admin.get(&self.link).await?;
        channel
            .queue_bind(
                queue.into(),
                key.exchange.as_str().into(),
                key.key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable("bind a queue"))
    }

    pub(super) async fn unbind(&self, queue: &str, key: &BindingKey) {
        if let Ok(channel) = self.admin.get(&self.link).await
            && let Err(error) = channel
                .queue_unbind(
                    queue.into(),
                    key.exchange.as_str().into(),
                    key.key.as_str().into(),
                    FieldTable::default(),
                )
                .await
        {
            tracing::warn!(queue, key = %key.key, %error, "cannot unbind");
        }
    }

    pub(super) async fn delete_queue(&self, queue: &str) {
        self.known.lock().remove(&Existing::Queue(queue).key());
        if let Ok(channel) = self.admin.get(&self.link).await {
            let _ = channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
    }

    /// The session's queue, declared and consumed on first need.
    pub(super) async fn ensure_session_queue(
        self: &Arc<Self>,
        session: SessionId,
    ) -> Result<String, BrokerError> {
        if let Some(queue) = self
            .sessions
            .lock()
            .get(&session)
            .and_then(|state| state.session_queue.as_ref())
        {
            return Ok(queue.name.clone());
        }
        let name = format!("stomp.session.{session}");
        self.declare_session_queue(session, &name).await?;
        self.bind(&name, &self.session_queue_binding(session))
            .await?;
        let mut sessions = self.sessions.lock();
        let state = sessions
            .get_mut(&session)
            .ok_or_else(|| BrokerError::refused("the session is not attached"))?;
        state.session_queue = Some(SessionQueue {
            name: name.clone(),
            router: Router::default(),
        });
        Ok(name)
    }
}

/// What a client may be told of RabbitMQ refusing a declare, in words of
/// its own rather than the server's reply; `None` when the broker failed
/// rather than refused.
fn refusal(error: &lapin::Error) -> Option<&'static str> {
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
        return None;
    };
    match amqp.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
            Some("it exists with other arguments")
        }
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Some("access refused"),
        AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => {
            Some("it is exclusive to another connection")
        }
        AMQPErrorKind::Soft(_) => Some("refused by the message broker"),
        _ => None,
    }
}
