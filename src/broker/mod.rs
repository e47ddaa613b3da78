//! The message broker behind the sessions: where a SEND goes, where a
//! SUBSCRIBE listens, and how acknowledgements settle deliveries.
//!
//! Sessions see only the [`Broker`] trait. The embedded broker
//! ([`embedded::EmbeddedBroker`]) serves a single node in-process; the AMQP
//! broker serves a cluster through RabbitMQ. Both fan topic messages out
//! in-process through a [`router::Router`], so both apply the same matching
//! and the same user-key guard.

pub mod ack_ledger;
pub mod amqp;
pub mod destination;
pub mod embedded;
pub mod queue_options;
pub mod router;
pub mod topic_pattern;

use std::borrow::Cow;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use stomp_parser::Headers;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::error::{ClientText, ErrorSource};
use destination::Destination;
use queue_options::QueueOptions;

/// A session's id: the `session` header of CONNECTED, and the suffix of its
/// user-destination routing keys.
pub type SessionId = Uuid;

/// A message on its way from a sender to subscribers: the headers a
/// subscriber should see (application headers, `content-type`) and the body.
/// Shared by [`Arc`] between all the deliveries of one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Headers,
    pub body: Bytes,
}

/// Headers no message carries from where it came: the relay writes them on
/// each MESSAGE frame, or they belonged to the SEND that carried it.
pub const FRAME_HEADERS: &[&str] = &[
    "destination",
    "subscription",
    "message-id",
    "ack",
    "redelivered",
    "content-length",
    "transaction",
    "receipt",
];

/// Headers that say who sent a message, which the relay stamps on what its
/// clients send (and which travel with the message between nodes).
pub const SENDER_HEADERS: &[&str] = &["user-name", "session"];

/// The id a message sent with `persist` is kept by in the offline store,
/// stamped by dispatch on each copy it sends, so that the session that
/// delivers a copy has the store forget it. Never shown to a client.
pub const OFFLINE_ID_HEADER: &str = "stomp-kept-id";

/// Whether a client may not set this header on what it sends.
pub fn is_relay_header(name: &str) -> bool {
    FRAME_HEADERS.contains(&name) || SENDER_HEADERS.contains(&name) || name == OFFLINE_ID_HEADER
}

impl Message {
    /// A header of this message that some STOMP version could not carry,
    /// with why: such a message is refused where it enters, rather than
    /// dropped on its way to a 1.0 subscriber.
    pub fn unportable_header(&self) -> Option<(&str, &'static str)> {
        self.headers.iter().find_map(|(name, value)| {
            stomp_parser::portable_header_problem(name, value).map(|reason| (name, reason))
        })
    }
}

/// How a subscription acknowledges, from SUBSCRIBE's `ack` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Delivered is done.
    Auto,
    /// An ACK covers its message and every earlier one of the subscription.
    Client,
    /// An ACK covers its message only.
    ClientIndividual,
}

impl AckMode {
    pub fn parse(value: &str) -> Option<AckMode> {
        match value {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }

    pub fn needs_ack(self) -> bool {
        self != AckMode::Auto
    }
}

/// What a broker needs to know of a subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// The client's `id` header.
    pub id: Arc<str>,
    /// The `destination` header as the client wrote it.
    pub destination_text: Arc<str>,
    pub destination: Destination,
    pub ack: AckMode,
    /// At most this many unacknowledged messages at a time (queues, acked
    /// subscriptions); `None` for the broker's default.
    pub prefetch: Option<u32>,
    /// How to declare the queue behind it, when the relay declares one.
    pub queue: QueueOptions,
}

/// Where a SEND (or a dispatch) publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishTarget {
    /// An exchange and routing key (`/topic/`, `/exchange/`, `/app/`, users).
    Exchange {
        exchange: String,
        routing_key: String,
    },
    /// A queue, declared first with these options when absent (`/queue/`),
    /// or, with `None`, required to exist (`/amq/queue/`).
    Queue {
        name: String,
        declare: Option<QueueOptions>,
    },
}

/// Which publishes must reach the broker in the order they were handed
/// over: those that share a key (a session's SENDs, which STOMP delivers
/// in order) go through one channel; publishes with other keys may overtake
/// them. Sessions use a hash of their session id ([`OrderKey::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderKey(pub u64);

impl OrderKey {
    /// The key of whatever `value` names (a session id, a destination).
    pub fn of(value: &impl Hash) -> OrderKey {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut hasher);
        OrderKey(hasher.finish())
    }
}

/// A session as a message for it is addressed: its id and its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAddress<'a> {
    pub node: &'a str,
    pub session: SessionId,
}

/// The broker's answer to one publish, to await once the publish was handed
/// over: publishes are handed over in order and confirmed later, so that a
/// sender has many in flight rather than one round trip each. Resolves when
/// the broker has taken the message (the publisher confirm, for RabbitMQ).
#[must_use = "a publish is known to have reached the broker only once its Confirm resolves"]
pub struct Confirm<T>(ConfirmState<T>);

/// A confirm that has come already, or the future that brings it.
enum ConfirmState<T> {
    Ready(Option<Result<T, BrokerError>>),
    Later(Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send>>),
}

impl<T> Confirm<T> {
    /// A confirm that has already come (a broker that takes a message when
    /// it is handed over).
    pub fn ready(value: T) -> Confirm<T> {
        Confirm(ConfirmState::Ready(Some(Ok(value))))
    }

    /// A confirm that `answer` will give.
    pub fn later(
        answer: impl Future<Output = Result<T, BrokerError>> + Send + 'static,
    ) -> Confirm<T> {
        Confirm(ConfirmState::Later(Box::pin(answer)))
    }
}

impl<T: Unpin> Future for Confirm<T> {
    type Output = Result<T, BrokerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            ConfirmState::Ready(value) => Poll::Ready(
                value
                    .take()
                    .expect("a Confirm is not polled again once it has resolved"),
            ),
            ConfirmState::Later(answer) => answer.as_mut().poll(cx),
        }
    }
}

impl<T> std::fmt::Debug for Confirm<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0 {
            ConfirmState::Ready(_) => "ready",
            ConfirmState::Later(_) => "later",
        };
        f.debug_tuple("Confirm").field(&state).finish()
    }
}

/// Names one delivery that awaits an ACK or NACK, within its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckTag(pub u64);

/// How a client settled deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Ack,
    /// Give it back: redelivered, to this session (topics) or to any
    /// consumer (queues).
    Nack,
    /// Drop it (a NACK with `requeue:false`): a queue that has a
    /// dead-letter exchange dead-letters it.
    Discard,
}

/// One message for one subscription of a session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subscription: Arc<str>,
    /// The MESSAGE frame's `destination`.
    pub destination: Arc<str>,
    pub message: Arc<Message>,
    /// Set when the subscription must acknowledge.
    pub ack: Option<AckTag>,
    pub redelivered: bool,
}

/// The way deliveries reach a session: a bounded channel of its pending
/// messages (`--max-pending-messages` of them at most), so that a client
/// that stops reading cannot make its node buffer without end. A delivery
/// that finds it full is refused; the session is told, through an
/// [`Alarm::Overflow`], to close with a reason, or, with
/// [`SlowConsumer::Drop`], a delivery that needs no ACK is dropped and
/// counted.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: flume::Sender<Offered>,
    alarm: Arc<AlarmBell>,
    slow_consumer: SlowConsumer,
    dropped: prometheus_client::metrics::counter::Counter,
}

/// A delivery in an outbox, and when it was put there: how long deliveries
/// wait for their session shows in `/metrics`.
#[derive(Debug)]
pub struct Offered {
    pub delivery: Delivery,
    pub at: std::time::Instant,
}

/// What a full outbox does to a slow client (`--slow-consumer`). A
/// delivery that needs an ACK ends the session either way, since RabbitMQ
/// would hold it unacknowledged until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SlowConsumer {
    /// The session ends with an ERROR saying why.
    #[default]
    Close,
    /// Messages that need no ACK are dropped (and counted); the session
    /// lives on.
    Drop,
}

/// Why the side that delivers to a session tells it to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// Its outbox overflowed.
    Overflow,
    /// The broker ended a subscription (its queue was deleted, or could not
    /// be restored after the connection to the broker was lost).
    SubscriptionCancelled {
        subscription: Arc<str>,
        destination: Arc<str>,
    },
}

/// The first alarm raised for a session, and the wake-up that goes with it;
/// and the ask to read the offline store again.
#[derive(Debug, Default)]
struct AlarmBell {
    raised: parking_lot::Mutex<Option<Alarm>>,
    ring: Notify,
    read_offline: Notify,
}

/// The session's end of its outbox's alarm.
#[derive(Debug, Clone)]
pub struct OutboxAlarm(Arc<AlarmBell>);

impl OutboxAlarm {
    /// The first alarm raised, once one is.
    pub async fn raised(&self) -> Alarm {
        loop {
            if let Some(alarm) = self.0.current() {
                return alarm;
            }
            self.0.ring.notified().await;
        }
    }

    /// Completes when the broker asks the session to read what is kept for
    /// its user again: messages on their way to it may have been lost (with
    /// the broker's connection) while still kept.
    pub async fn read_offline_again(&self) {
        self.0.read_offline.notified().await
    }
}

impl AlarmBell {
    fn current(&self) -> Option<Alarm> {
        self.raised.lock().clone()
    }

    fn raise(&self, alarm: Alarm) {
        self.raised.lock().get_or_insert(alarm);
        self.ring.notify_one();
    }
}

impl Outbox {
    /// An outbox holding at most `capacity` deliveries, the receiving end
    /// and the alarm; `dropped` counts what [`SlowConsumer::Drop`] drops.
    pub fn channel(
        capacity: usize,
        slow_consumer: SlowConsumer,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> (Outbox, flume::Receiver<Offered>, OutboxAlarm) {
        // flume's queue grows as deliveries come and holds nothing while
        // empty; tokio's bounded channel allocates a block of 32 deliveries
        // up front, 2 KiB for every idle session.
        let (sender, receiver) = flume::bounded(capacity.max(1));
        let alarm = Arc::new(AlarmBell::default());
        let signal = OutboxAlarm(alarm.clone());
        let outbox = Outbox {
            sender,
            alarm,
            slow_consumer,
            dropped,
        };
        (outbox, receiver, signal)
    }

    /// Hands a delivery over without waiting. On a full outbox the delivery
    /// comes back and the session is told it overflowed.
    pub fn offer(&self, delivery: Delivery) -> Result<(), Delivery> {
        let offered = Offered {
            delivery,
            at: std::time::Instant::now(),
        };
        match self.sender.try_send(offered) {
            Ok(()) => Ok(()),
            Err(flume::TrySendError::Full(Offered { delivery, .. })) => {
                match self.slow_consumer {
                    SlowConsumer::Drop if delivery.ack.is_none() => {
                        self.dropped.inc();
                    }
                    _ => self.alarm.raise(Alarm::Overflow),
                }
                Err(delivery)
            }
            Err(flume::TrySendError::Disconnected(offered)) => Err(offered.delivery),
        }
    }

    /// Tells the session to end, for `alarm`.
    pub fn raise(&self, alarm: Alarm) {
        self.alarm.raise(alarm);
    }

    /// Asks the session to read what is kept for its user again.
    pub fn ask_to_read_offline_again(&self) {
        self.alarm.read_offline.notify_one();
    }
}

/// A service's request to deliver a message to users, read off the
/// `stomp.dispatch` queue; [`crate::dispatch`] carries it out.
#[derive(Debug)]
pub struct DispatchRequest {
    /// The users named (`stomp-user`, `stomp-users`).
    pub users: Vec<String>,
    /// Everyone connected (`stomp-all: true`).
    pub all: bool,
    /// Kept for named users who are offline (`stomp-persist: true`).
    pub persist: bool,
    /// The request's AMQP `message_id`, if it has one: a request carried
    /// out again (redelivered) keeps nothing twice.
    pub message_id: Option<String>,
    /// `stomp-destination`: `/user/queue/{name}` or `{name}`.
    pub destination: String,
    pub message: Message,
    /// How it went: the broker acks, requeues or discards the request.
    pub done: tokio::sync::oneshot::Sender<DispatchOutcome>,
}

/// What became of a [`DispatchRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// Published (and confirmed) to every live session: ack it.
    Dispatched,
    /// The registry or broker failed: requeue it, to be tried again.
    Retry,
    /// It can never succeed (a bad destination): drop it.
    Invalid,
}

/// Why the broker refused or failed an operation. Its `Display`, with the
/// sources below it (see [`crate::error::Chain`]), is for the log;
/// [`BrokerError::client_text`] is what a client may be shown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// An exchange or queue the client named does not exist.
    #[error("no {kind} {name:?}")]
    NotFound {
        kind: Missing,
        name: String,
        #[source]
        source: Option<ErrorSource>,
    },
    /// The broker will not do what the client asked, for a reason the
    /// client can act on.
    #[error("{reason}")]
    Refused {
        reason: String,
        #[source]
        source: Option<ErrorSource>,
    },
    /// The broker could not be reached, or failed, while it tried to `what`.
    #[error("the message broker could not {what}")]
    Unavailable {
        what: &'static str,
        #[source]
        source: Option<ErrorSource>,
    },
}

/// What kind of thing a client named that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Exchange,
    Queue,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Missing::Exchange => "exchange",
            Missing::Queue => "queue",
        })
    }
}

impl BrokerError {
    /// The `kind` named `name` does not exist.
    pub fn not_found(kind: Missing, name: impl Into<String>) -> BrokerError {
        BrokerError::NotFound {
            kind,
            name: name.into(),
            source: None,
        }
    }

    /// Refused, for `reason`, with no cause below it.
    pub fn refused(reason: impl Into<String>) -> BrokerError {
        BrokerError::Refused {
            reason: reason.into(),
            source: None,
        }
    }

    /// The short text a client may be shown: what it named or asked for,
    /// never what the broker or the network said. A missing exchange or
    /// queue is told in RabbitMQ's words (the relay has one virtual host).
    pub fn client_text(&self) -> Cow<'_, str> {
        match self {
            BrokerError::NotFound { kind, name, .. } => {
                Cow::Owned(format!("no {kind} '{name}' in vhost '/'"))
            }
            BrokerError::Refused { reason, .. } => Cow::Borrowed(reason),
            BrokerError::Unavailable { .. } => Cow::Borrowed("the message broker is unavailable"),
        }
    }
}

impl ClientText for BrokerError {
    fn client_text(&self) -> Cow<'_, str> {
        BrokerError::client_text(self)
    }

    fn client_summary(&self) -> Option<&'static str> {
        match self {
            BrokerError::NotFound { .. } => Some("not_found"),
            _ => None,
        }
    }
}

/// What sessions need from a message broker.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Starts delivering to a session through `outbox`.
    async fn attach(&self, session: SessionId, outbox: Outbox) -> Result<(), BrokerError>;

    /// Forgets a session: its subscriptions end and what it left
    /// unacknowledged on shared queues goes back to them.
    async fn detach(&self, session: SessionId);

    async fn subscribe(
        &self,
        session: SessionId,
        subscription: &SubscriptionSpec,
    ) -> Result<(), BrokerError>;

    /// Ends a subscription; its unacknowledged queue messages are requeued.
    /// `discard` (UNSUBSCRIBE with `durable:true`) also deletes a durable
    /// subscription's queue.
    async fn unsubscribe(
        &self,
        session: SessionId,
        subscription: &SubscriptionSpec,
        discard: bool,
    ) -> Result<(), BrokerError>;

    /// Hands a message over to the broker, returning once it is on its way
    /// after every earlier publish with the same `order` (for RabbitMQ:
    /// queued for the connection behind them, which writes many at once; a
    /// `/queue/` target is declared first). The [`Confirm`] resolves when
    /// the broker has taken it.
    async fn publish(
        &self,
        order: OrderKey,
        target: PublishTarget,
        message: Message,
    ) -> Result<Confirm<()>, BrokerError>;

    /// Hands `message` over for the user destination `name` of each of
    /// `sessions`, after every earlier message handed over for the same
    /// session, as [`Broker::publish`] does. What is ready at once for the
    /// sessions of one node may travel together, as one message. The
    /// [`Confirm`] resolves once the broker has taken every copy; a session
    /// that has gone meanwhile, or does not listen there, does not get it.
    async fn publish_to_sessions(
        &self,
        name: &str,
        sessions: &[SessionAddress<'_>],
        message: Message,
    ) -> Result<Confirm<()>, BrokerError>;

    /// Publishes `message` once for every node, each giving it to its own
    /// sessions subscribed to the user destination `name` (as the
    /// destination each subscribed to), handed over as [`Broker::publish`]
    /// does. The [`Confirm`] says that the broker took it, not who received
    /// it: no node counts the sessions of the others.
    async fn publish_to_everyone(
        &self,
        order: OrderKey,
        name: &str,
        message: Message,
    ) -> Result<Confirm<()>, BrokerError>;

    /// Settles deliveries of a session.
    async fn settle(
        &self,
        session: SessionId,
        tags: &[AckTag],
        settlement: Settlement,
    ) -> Result<(), BrokerError>;

    /// Closes connections to the broker when the node stops.
    async fn shutdown(&self) {}

    /// Starts consuming `stomp.dispatch`, where any service asks for messages
    /// to be delivered to users; `None` where there is no such queue (the
    /// embedded broker, whose services use the HTTP API).
    async fn dispatch_requests(
        &self,
    ) -> Result<Option<mpsc::Receiver<DispatchRequest>>, BrokerError> {
        Ok(None)
    }

    /// Whether the broker is usable now (for `/readyz`).
    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_confirm_gives_what_the_broker_answered() {
        assert!(Confirm::ready(true).await.expect("ready"));
        let later = Confirm::later(async { Ok(7) });
        assert_eq!(later.await.expect("answered"), 7);
        let refused: Confirm<()> = Confirm::later(async { Err(BrokerError::refused("no")) });
        assert!(refused.await.is_err());
    }

    #[test]
    fn a_client_is_told_that_the_broker_is_unavailable_and_the_log_why() {
        let error = BrokerError::Unavailable {
            what: "publish",
            source: crate::error::source_of(std::io::Error::other("connection reset by 10.0.0.7")),
        };
        assert_eq!(error.client_text(), "the message broker is unavailable");
        assert!(!error.to_string().contains("10.0.0.7"));
        assert_eq!(
            crate::error::Chain(&error).to_string(),
            "the message broker could not publish: connection reset by 10.0.0.7"
        );
        let missing = BrokerError::not_found(Missing::Queue, "jobs");
        assert_eq!(missing.client_text(), "no queue 'jobs' in vhost '/'");
    }

    #[test]
    fn a_message_says_which_header_not_every_stomp_version_can_carry() {
        let message = |name: &str, value: &str| Message {
            headers: [(name, value)].into_iter().collect(),
            body: Bytes::new(),
        };
        assert_eq!(message("x-kind", "a:b\\c").unportable_header(), None);
        assert_eq!(message("a:b", "c").unportable_header().unwrap().0, "a:b");
        assert!(message("x", "two\nlines").unportable_header().is_some());
    }

    #[test]
    fn one_value_always_has_one_order_key() {
        let session = Uuid::new_v4();
        assert_eq!(OrderKey::of(&session), OrderKey::of(&session));
        assert_ne!(OrderKey::of(&session), OrderKey::of(&Uuid::new_v4()));
    }
}
