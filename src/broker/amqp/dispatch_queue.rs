//! The `stomp.dispatch` queue, where any service asks for messages to be
//! delivered to users: declared (a quorum queue unless configured
//! otherwise), consumed as a competing
//! consumer, and each request settled once dispatch says how it went.

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer, ExchangeKind};
use tokio::sync::mpsc;

use super::acks::requeue;
use super::connection::{open_channel, unavailable};
use super::topology::{Existing, declare_durable_exchange};
use super::{BrokerError, DispatchOutcome, DispatchRequest, Inner, Message, properties};
use crate::broker::queue_options::{QueueArgument, QueueOptions};
use crate::broker::router::BindingKey;

/// The durable exchange and queue where services ask for dispatch.
const DISPATCH: &str = "stomp.dispatch";
/// Dispatch requests a node holds unacknowledged: enough to keep every
/// dispatch lane busy (see `crate::dispatch::DISPATCH_LANES`).
pub(super) const DISPATCH_PREFETCH: u16 = 128;

/// Turns `stomp.dispatch` deliveries into [`DispatchRequest`]s, and settles
/// each once dispatch says how it went: acked only after its publishes were
/// confirmed, so a node that dies mid-dispatch loses nothing (RabbitMQ
/// redelivers it to another node). Keeps `channel` open while it consumes.
async fn read_dispatch_requests(
    mut consumer: Consumer,
    _channel: Channel,
    requests: mpsc::Sender<DispatchRequest>,
) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        // A switch may come as the text `true` or as an AMQP boolean (what
        // Spring's and pika's `true` become); message headers show only
        // the text.
        let switched_on = |name: &str| {
            delivery.properties.headers().as_ref().is_some_and(|table| {
                table
                    .inner()
                    .iter()
                    .any(|(key, value)| key.as_str() == name && *value == AMQPValue::Boolean(true))
            })
        };
        let all = switched_on("stomp-all");
        let persist = switched_on("stomp-persist");
        let mut message = properties::from_amqp(&delivery.properties, delivery.data);
        let take = |message: &mut Message, name: &str| {
            let value = message.headers.get(name).map(str::to_owned);
            message.headers.remove(name);
            value
        };
        let user = take(&mut message, "stomp-user");
        let users = take(&mut message, "stomp-users");
        let all = message.headers.boolean("stomp-all") == Some(true) || all;
        let persist = message.headers.boolean("stomp-persist") == Some(true) || persist;
        take(&mut message, "stomp-all");
        take(&mut message, "stomp-persist");
        let destination = take(&mut message, "stomp-destination");
        let users: Vec<String> = user
            .into_iter()
            .chain(
                users
                    .iter()
                    .flat_map(|list| list.split(',').map(|u| u.trim().to_owned())),
            )
            .filter(|user| !user.is_empty())
            .collect();
        let Some(destination) = destination.filter(|_| all || !users.is_empty()) else {
            tracing::warn!(
                "a stomp.dispatch message without stomp-destination and stomp-user(s) or stomp-all was dropped"
            );
            let _ = delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await;
            continue;
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        let request = DispatchRequest {
            users,
            all,
            persist,
            message_id,
            destination,
            message,
            done,
        };
        if requests.send(request).await.is_err() {
            let _ = delivery.acker.nack(requeue()).await;
            return;
        }
        let acker = delivery.acker;
        tokio::spawn(async move {
            let _ = match outcome.await {
                Ok(DispatchOutcome::Dispatched) => acker.ack(BasicAckOptions::default()).await,
                Ok(DispatchOutcome::Invalid) => {
                    acker.reject(BasicRejectOptions { requeue: false }).await
                }
                Ok(DispatchOutcome::Retry) | Err(_) => acker.nack(requeue()).await,
            };
        });
    }
}

impl Inner {
    /// Declares `stomp.dispatch` and starts consuming it into `requests`.
    pub(super) async fn consume_dispatch_queue(
        &self,
        requests: mpsc::Sender<DispatchRequest>,
    ) -> Result<(), BrokerError> {
        let inner = self;
        let channel = inner.admin.get(&inner.link).await?;
        declare_durable_exchange(
            &channel,
            DISPATCH,
            ExchangeKind::Fanout,
            "declare the stomp.dispatch exchange",
        )
        .await?;
        if inner.check_exists(Existing::Queue(DISPATCH)).await.is_err() {
            // A quorum queue by default, so that dispatch survives the loss
            // of a broker node in a RabbitMQ cluster.
            let kind = inner.settings.dispatch_queue.x_queue_type();
            let typed = QueueOptions {
                arguments: vec![("x-queue-type".into(), QueueArgument::Text(kind.into()))],
                ..QueueOptions::default()
            };
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            inner.declare(DISPATCH, options, &typed).await?;
        }
        let binding = BindingKey {
            exchange: DISPATCH.to_owned(),
            key: String::new(),
        };
        inner.bind(DISPATCH, &binding).await?;
        let consuming = open_channel(&inner.link, false).await?;
        consuming
            .basic_qos(DISPATCH_PREFETCH, BasicQosOptions { global: false })
            .await
            .map_err(unavailable("set the stomp.dispatch prefetch count"))?;
        let consumer = consuming
            .basic_consume(
                DISPATCH.into(),
                format!("dispatch.{}", inner.node_queue).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable("consume stomp.dispatch"))?;
        tokio::spawn(read_dispatch_requests(consumer, consuming, requests));
        Ok(())
    }
}
