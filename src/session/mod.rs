//! The STOMP state machine of one client connection.
//!
//! A [`Session`] takes frames in and gives frames out; it knows nothing of
//! WebSocket, SockJS or RabbitMQ. It reaches the broker and the registry
//! through their traits, and deliveries come back to it through its
//! [`Outbox`]. [`connection::serve`] runs one over any transport.

pub mod connect;
pub mod connection;
mod error;
pub mod local;
mod subscriptions;
mod transactions;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use stomp_parser::{Command, Frame, Version};
use tokio::sync::Notify;
use uuid::Uuid;

pub use error::SessionError;

use crate::auth::acl::Action;
use crate::auth::{Credentials, Identity};
use crate::broker::destination::{
    Destination, DestinationError, TEMP_QUEUE_PREFIX, UserKey, is_reserved_queue,
};
use crate::broker::queue_options::QueueOptions;
use crate::broker::{AckMode, Delivery, Message, Outbox, SessionId, Settlement, SubscriptionSpec};
use crate::config::SecondLogin;
use crate::dispatch::WhenOffline;
use crate::dispatch::offline::KeptMessage;
use crate::registry::SessionRecord;
use crate::relay::Relay;
use connect::{ConnectRequest, HeartBeat, connected_frame};
use subscriptions::{Pending, Subscriptions};
use transactions::Transactions;

/// Headers of a SEND that belong to the protocol, not to the message, and
/// headers only the relay may set on a MESSAGE.
const NOT_FORWARDED: &[&str] = &[
    "destination",
    "transaction",
    "receipt",
    "content-length",
    "subscription",
    "message-id",
    "ack",
    "redelivered",
    "user-name",
    "session",
];

/// The SEND header asking that a message to `/user/{name}/...` be kept
/// while that user is offline.
const PERSIST: &str = "persist";

/// What the connection does after a frame was handled.
#[derive(Debug, Default)]
pub struct Reply {
    /// Frames to send, in order.
    pub frames: Vec<Frame>,
    /// Close the connection after sending them (DISCONNECT).
    pub close: bool,
}

impl Reply {
    fn frame(frame: Frame) -> Reply {
        Reply {
            frames: vec![frame],
            close: false,
        }
    }
}

/// A frame the session refuses: the connection sends the ERROR frame and
/// closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub error: SessionError,
    /// The `receipt` of the refused frame, echoed as `receipt-id`.
    pub receipt_id: Option<String>,
}

impl Rejection {
    pub fn to_frame(&self) -> Frame {
        self.error.to_frame(self.receipt_id.as_deref())
    }
}

impl From<SessionError> for Rejection {
    fn from(error: SessionError) -> Rejection {
        Rejection {
            error,
            receipt_id: None,
        }
    }
}

enum State {
    AwaitingConnect,
    Connected(Connected),
    Closed,
}

struct Connected {
    version: Version,
    heart_beat: HeartBeat,
    /// Who logged in; `None` for an anonymous client (`--auth none`).
    identity: Option<Identity>,
    /// What the registry holds for this session (named users only).
    record: Option<SessionRecord>,
}

/// One client's STOMP session.
pub struct Session {
    id: SessionId,
    relay: Arc<Relay>,
    outbox: Outbox,
    state: State,
    subscriptions: Subscriptions,
    transactions: Transactions,
    /// The last `message-id` given out.
    last_message_id: u64,
    /// Fires when something outside the connection ends the session.
    eviction: Arc<Notify>,
    /// `access_token` of the URL the client connected to.
    access_token: Option<String>,
}

impl Session {
    pub fn new(relay: Arc<Relay>, outbox: Outbox, access_token: Option<String>) -> Session {
        Session {
            id: Uuid::new_v4(),
            relay,
            outbox,
            state: State::AwaitingConnect,
            subscriptions: Subscriptions::default(),
            transactions: Transactions::default(),
            last_message_id: 0,
            eviction: Arc::new(Notify::new()),
            access_token,
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Fires when the session must end because its user logged in again
    /// (`--second-login replace`); the connection then sends
    /// [`SessionError::Replaced`] and closes.
    pub fn eviction(&self) -> Arc<Notify> {
        self.eviction.clone()
    }

    /// The node's counters.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.relay.metrics
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected(_))
    }

    /// The version frames are written in; 1.2 until CONNECT agrees one
    /// (frames sent before that are ERRORs, which read the same in all).
    pub fn version(&self) -> Version {
        match &self.state {
            State::Connected(connected) => connected.version,
            _ => Version::V1_2,
        }
    }

    pub fn heart_beat(&self) -> HeartBeat {
        match &self.state {
            State::Connected(connected) => connected.heart_beat,
            _ => HeartBeat::default(),
        }
    }

    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Connected(connected) => connected.identity.as_ref().map(|id| id.user.as_str()),
            _ => None,
        }
    }

    /// Handles one frame from the client. A `receipt` header is answered
    /// with RECEIPT once the frame's work is done.
    pub async fn handle(&mut self, frame: Frame) -> Result<Reply, Rejection> {
        let receipt = frame.get("receipt").map(str::to_owned);
        let is_connect = matches!(frame.command, Command::Connect | Command::Stomp);
        match self.dispatch(frame).await {
            Ok(mut reply) => {
                // The RECEIPT comes before what the frame brought with it
                // (messages kept for the user, delivered by SUBSCRIBE).
                if let Some(receipt) = receipt.filter(|_| !is_connect) {
                    reply.frames.insert(
                        0,
                        Frame::new(Command::Receipt).header("receipt-id", receipt),
                    );
                }
                Ok(reply)
            }
            Err(error) => Err(Rejection {
                error,
                receipt_id: receipt,
            }),
        }
    }

    async fn dispatch(&mut self, frame: Frame) -> Result<Reply, SessionError> {
        let command = frame.command;
        if !command.is_client_command() {
            return Err(SessionError::ServerCommand(command));
        }
        match (&self.state, command) {
            (State::AwaitingConnect, Command::Connect | Command::Stomp) => {
                self.connect(&frame).await
            }
            (State::AwaitingConnect | State::Closed, _) => Err(SessionError::NotConnected(command)),
            (State::Connected(_), Command::Connect | Command::Stomp) => {
                Err(SessionError::AlreadyConnected)
            }
            (State::Connected(_), Command::Disconnect) => Ok(Reply {
                frames: Vec::new(),
                close: true,
            }),
            (State::Connected(_), Command::Subscribe) => self.subscribe(&frame).await,
            (State::Connected(_), Command::Unsubscribe) => self.unsubscribe(&frame).await,
            (State::Connected(_), Command::Begin) => {
                let id = required(&frame, "transaction")?;
                let max = self.relay.settings.max_transactions;
                self.transactions.begin(id, max)?;
                Ok(Reply::default())
            }
            (State::Connected(_), Command::Commit) => {
                let held = self.transactions.end(required(&frame, "transaction")?)?;
                for frame in held {
                    self.execute(frame).await?;
                }
                Ok(Reply::default())
            }
            (State::Connected(_), Command::Abort) => {
                self.transactions.end(required(&frame, "transaction")?)?;
                Ok(Reply::default())
            }
            (State::Connected(_), _) => match frame.get("transaction") {
                Some(transaction) => {
                    let transaction = transaction.to_owned();
                    let max = self.relay.settings.max_transaction_frames;
                    // Checked now, so that a bad frame is refused when sent,
                    // not when committed.
                    self.check_held(&frame)?;
                    self.transactions.hold(&transaction, frame, max)?;
                    Ok(Reply::default())
                }
                None => {
                    self.execute(frame).await?;
                    Ok(Reply::default())
                }
            },
        }
    }

    /// Runs a SEND, ACK or NACK, now or at COMMIT.
    async fn execute(&mut self, frame: Frame) -> Result<(), SessionError> {
        match frame.command {
            Command::Send => self.send(frame).await,
            Command::Ack => self.settle(&frame, Settlement::Ack).await,
            Command::Nack => self.settle(&frame, Settlement::Nack).await,
            other => Err(SessionError::ServerCommand(other)),
        }
    }

    /// The checks a frame held in a transaction must pass when it arrives.
    fn check_held(&self, frame: &Frame) -> Result<(), SessionError> {
        match frame.command {
            Command::Send => {
                let text = required(frame, "destination")?;
                Destination::parse(text)?.check_send(text)?;
                self.authorize(Action::Send, text)
            }
            Command::Ack | Command::Nack => ack_id(frame).map(|_| ()),
            other => Err(SessionError::ServerCommand(other)),
        }
    }

    async fn connect(&mut self, frame: &Frame) -> Result<Reply, SessionError> {
        let request = ConnectRequest::read(frame)?;
        let credentials = Credentials {
            login: request.login.as_deref(),
            passcode: request.passcode.as_deref(),
            authorization: request.authorization.as_deref(),
            access_token: self.access_token.as_deref(),
        };
        // Before anything is attached or registered: a refused login leaves
        // no trace.
        let identity = self.relay.auth.authenticate(credentials).await?;
        let user = identity.as_ref().map(|identity| identity.user.clone());
        let settings = &self.relay.settings;
        let heart_beat = HeartBeat::negotiate(request.heart_beat, settings.heart_beat);
        self.relay
            .broker
            .attach(self.id, self.outbox.clone())
            .await?;
        let record = user.as_ref().map(|user| SessionRecord {
            session: self.id,
            user: user.clone(),
            node: self.relay.node_id.clone(),
            connected_at: unix_millis(),
        });
        if let Some(record) = &record {
            if let Err(error) = self.relay.registry.register(record).await {
                self.relay.broker.detach(self.id).await;
                return Err(error.into());
            }
            self.relay.sessions.insert(self.id, self.eviction.clone());
            if settings.second_login == SecondLogin::Replace {
                self.replace_older_sessions(record).await;
            }
        }
        let reply = connected_frame(
            request.version,
            &self.id.to_string(),
            settings.heart_beat,
            user.as_deref(),
        );
        tracing::debug!(session = %self.id, ?user, version = %request.version, "connected");
        self.state = State::Connected(Connected {
            version: request.version,
            heart_beat,
            identity,
            record,
        });
        Ok(Reply::frame(reply))
    }

    /// Refuses what the node's ACL does not let this client do.
    fn authorize(&self, action: Action, destination: &str) -> Result<(), SessionError> {
        let identity = match &self.state {
            State::Connected(connected) => connected.identity.as_ref(),
            _ => None,
        };
        if self.relay.acl.allows(identity, action, destination) {
            Ok(())
        } else {
            Err(SessionError::AccessRefused {
                user: identity.map(|identity| identity.user.clone()),
                action,
                destination: destination.to_owned(),
            })
        }
    }

    /// Whether the ACL lets this client read a delivery's own destination.
    /// A wildcard (or fanout) subscription is judged by what it was
    /// written as; each message it catches is judged again by where it was
    /// sent, so that `/topic/#` does not read a topic the ACL denies.
    fn may_read(&self, delivery: &Delivery) -> bool {
        let subscribed = self
            .subscriptions
            .get(&delivery.subscription)
            .map(|spec| spec.destination_text.clone());
        match subscribed {
            Some(text) if *text != *delivery.destination => self
                .authorize(Action::Subscribe, &delivery.destination)
                .is_ok(),
            _ => true,
        }
    }

    /// Ends the other sessions of this session's user, wherever they are.
    /// A failure leaves them open (and says so in the log) rather than
    /// refusing this login.
    async fn replace_older_sessions(&self, record: &SessionRecord) {
        let older = match self.relay.registry.locate(&record.user).await {
            Ok(sessions) => sessions,
            Err(error) => {
                tracing::warn!(user = %record.user, %error, "cannot look up older sessions to replace");
                return;
            }
        };
        for old in older.iter().filter(|old| old.session != self.id) {
            tracing::info!(user = %record.user, old = %old.session, node = %old.node, new = %self.id, "replacing an older session of the user");
            if old.node == self.relay.node_id {
                self.relay.sessions.evict(old.session);
            } else if let Err(error) = self.relay.registry.evict(old.session, &old.node).await {
                tracing::warn!(user = %record.user, old = %old.session, %error, "cannot ask another node to close an older session");
            }
        }
    }

    async fn subscribe(&mut self, frame: &Frame) -> Result<Reply, SessionError> {
        let destination_text = required(frame, "destination")?;
        // STOMP 1.0 made `id` optional; RabbitMQ then uses the destination.
        let id = match frame.get("id") {
            Some(id) => id,
            None if self.version() == Version::V1_0 => destination_text,
            None => return Err(missing(frame.command, "id")),
        };
        let destination = Destination::parse(destination_text)?;
        destination.check_subscribe(destination_text)?;
        self.authorize(Action::Subscribe, destination_text)?;
        let ack = match frame.get("ack") {
            None => AckMode::Auto,
            Some(value) => AckMode::parse(value).ok_or_else(|| SessionError::InvalidHeader {
                header: "ack",
                value: value.to_owned(),
                reason: "expected auto, client or client-individual",
            })?,
        };
        let prefetch = frame
            .get("prefetch-count")
            .map(|value| {
                value
                    .parse::<u32>()
                    .map_err(|_| SessionError::InvalidHeader {
                        header: "prefetch-count",
                        value: value.to_owned(),
                        reason: "expected a non-negative number",
                    })
            })
            .transpose()?;
        if self.subscriptions.contains(id) {
            return Err(SessionError::DuplicateSubscription(id.to_owned()));
        }
        let max = self.relay.settings.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(SessionError::TooManySubscriptions(max));
        }
        let mut queue = QueueOptions::from_headers(&frame.headers).map_err(|(header, value)| {
            SessionError::InvalidHeader {
                header,
                value,
                reason: "expected a non-negative number",
            }
        })?;
        if let Some(name) = queue.name.as_deref().filter(|name| is_reserved_queue(name)) {
            return Err(SessionError::InvalidHeader {
                header: "x-queue-name",
                value: name.to_owned(),
                reason: "names starting with stomp. or amq. are reserved",
            });
        }
        if queue.durable && queue.name.is_none() {
            // Named from the user and the id, so the same user finds it
            // again; the owner's length keeps "a.b" + "c" apart from "a" +
            // "b.c".
            let owner = self.user().unwrap_or("anonymous");
            queue.name = Some(format!("stomp.durable.{}.{owner}.{id}", owner.len()));
        }
        let spec = SubscriptionSpec {
            id: Arc::from(id),
            destination_text: Arc::from(destination_text),
            destination,
            ack,
            // More in flight than a session may leave unacknowledged would
            // only end the session.
            prefetch: prefetch.filter(|&count| count > 0).map(|count| {
                count.min(u32::try_from(self.relay.settings.max_unacked).unwrap_or(u32::MAX))
            }),
            queue,
        };
        self.relay.broker.subscribe(self.id, &spec).await?;
        let kept_for = match &spec.destination {
            Destination::OwnUser { name } => Some(name.clone()),
            _ => None,
        };
        let id = spec.id.clone();
        self.subscriptions.insert(spec);
        let frames = match kept_for {
            Some(name) => self.deliver_kept(&id, &name).await,
            None => Vec::new(),
        };
        Ok(Reply {
            frames,
            close: false,
        })
    }

    /// The messages kept for this user at user destination `name` while it
    /// was offline, as MESSAGEs of the new subscription `id`, oldest first.
    /// With `ack:auto` the store forgets them now; otherwise when acked.
    /// A store that cannot answer costs the subscription nothing: the
    /// messages stay kept for the next time.
    async fn deliver_kept(&mut self, id: &Arc<str>, name: &str) -> Vec<Frame> {
        let Some(user) = self.user().map(str::to_owned) else {
            return Vec::new();
        };
        let offline = self.relay.dispatcher.offline();
        let kept = match offline.kept(&user, name).await {
            Ok(kept) => kept,
            Err(error) => {
                tracing::warn!(session = %self.id, %user, %error, "cannot read messages kept for the user");
                return Vec::new();
            }
        };
        if kept.is_empty() {
            return Vec::new();
        }
        let Some(subscription) = self.subscriptions.get(id) else {
            return Vec::new();
        };
        let needs_ack = subscription.ack.needs_ack();
        let destination = subscription.destination_text.clone();
        let mut delivered = Vec::with_capacity(kept.len());
        let frames: Vec<Frame> = kept
            .into_iter()
            .map(
                |KeptMessage {
                     id: kept_id,
                     message,
                 }| {
                    let pending = needs_ack.then(|| Pending::Kept(kept_id.clone()));
                    delivered.push(kept_id);
                    self.message_frame(id, &destination, &message, pending, false)
                },
            )
            .collect();
        self.relay
            .metrics
            .offline_delivered
            .inc_by(frames.len() as u64);
        if !needs_ack
            && let Err(error) = self
                .relay
                .dispatcher
                .offline()
                .forget(&user, &delivered)
                .await
        {
            tracing::warn!(session = %self.id, %user, %error, "cannot forget delivered kept messages");
        }
        frames
    }

    async fn unsubscribe(&mut self, frame: &Frame) -> Result<Reply, SessionError> {
        let id = match (frame.get("id"), self.version()) {
            (Some(id), _) => id,
            (None, Version::V1_0) => required(frame, "destination")?,
            (None, _) => return Err(missing(frame.command, "id")),
        };
        let spec = self
            .subscriptions
            .remove(id)
            .ok_or_else(|| SessionError::UnknownSubscription(id.to_owned()))?;
        let discard =
            frame.get("durable") == Some("true") || frame.get("persistent") == Some("true");
        self.relay
            .broker
            .unsubscribe(self.id, &spec, discard)
            .await?;
        Ok(Reply::default())
    }

    async fn send(&mut self, frame: Frame) -> Result<(), SessionError> {
        let text = required(&frame, "destination")?;
        let destination = Destination::parse(text)?;
        destination.check_send(text)?;
        self.authorize(Action::Send, text)?;
        let mut headers = frame.headers.clone();
        for name in NOT_FORWARDED {
            headers.remove(name);
        }
        // `persist` asks dispatch to keep a message for an offline user; it
        // is the relay's header, not the message's.
        let when_offline = match destination {
            Destination::User { .. } => {
                headers.remove(PERSIST);
                WhenOffline::from_persist(frame.get(PERSIST) == Some("true"))
            }
            _ => WhenOffline::Drop,
        };
        // The relay, not the client, says who sent a message.
        if let Some(user) = self.user() {
            headers.push("user-name", user);
        }
        if let Destination::App { .. } = destination {
            headers.push("session", &self.id.to_string());
        }
        if let Some(reply_to) = frame.get("reply-to")
            && let Some(name) = reply_to.strip_prefix("/temp-queue/")
        {
            let reply_queue = self.temp_queue(name).await?;
            headers.set("reply-to", &reply_queue);
        }
        let message = Message {
            headers,
            body: frame.body,
        };
        match destination.publish_target() {
            Some(target) => self.relay.broker.publish(target, message).await?,
            None => {
                if let Destination::User { user, name } = &destination {
                    self.relay
                        .dispatcher
                        .to_user(user, name, message, when_offline)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The reply address of this session's temp queue `name`, created on
    /// first use: replies sent to it arrive as MESSAGEs whose `subscription`
    /// and `destination` are `/temp-queue/{name}`, as with RabbitMQ.
    async fn temp_queue(&mut self, name: &str) -> Result<String, SessionError> {
        let text = format!("/temp-queue/{name}");
        let user_name = format!("{TEMP_QUEUE_PREFIX}{name}");
        if Destination::parse(&format!("/user/queue/{user_name}")).is_err() {
            return Err(DestinationError::Unknown(text).into());
        }
        if !self.subscriptions.contains(&text) {
            let max = self.relay.settings.max_subscriptions;
            if self.subscriptions.len() >= max {
                return Err(SessionError::TooManySubscriptions(max));
            }
            let spec = SubscriptionSpec {
                id: Arc::from(text.as_str()),
                destination_text: Arc::from(text.as_str()),
                destination: Destination::OwnUser {
                    name: user_name.clone(),
                },
                ack: AckMode::Auto,
                prefetch: None,
                queue: QueueOptions::default(),
            };
            self.relay.broker.subscribe(self.id, &spec).await?;
            self.subscriptions.insert(spec);
        }
        let key = UserKey {
            name: &user_name,
            session: self.id,
        };
        Ok(format!("/reply-queue/{key}"))
    }

    async fn settle(&mut self, frame: &Frame, settlement: Settlement) -> Result<(), SessionError> {
        let id = ack_id(frame)?;
        let settled = self
            .subscriptions
            .settle(id)
            .ok_or_else(|| SessionError::UnknownAck(id.to_owned()))?;
        let (mut tags, mut kept) = (Vec::new(), Vec::new());
        for pending in settled {
            match pending {
                Pending::Broker(tag) => tags.push(tag),
                Pending::Kept(id) => kept.push(id),
            }
        }
        if !tags.is_empty() {
            self.relay.broker.settle(self.id, &tags, settlement).await?;
        }
        // A NACKed kept message stays kept, to be delivered next time.
        if settlement == Settlement::Ack
            && !kept.is_empty()
            && let Some(user) = self.user()
        {
            self.relay
                .dispatcher
                .offline()
                .forget(user, &kept)
                .await
                .map_err(crate::dispatch::DispatchError::from)?;
        }
        Ok(())
    }

    /// Turns a delivery into the MESSAGE frame for the client, recording it
    /// when it needs an ACK. `None` for a delivery to a subscription that
    /// has just ended (it is given back to the broker).
    /// A delivery that needs an ACK past `max_unacked` ends the session.
    pub async fn deliver(&mut self, delivery: Delivery) -> Result<Option<Frame>, SessionError> {
        if !self.subscriptions.contains(&delivery.subscription) {
            if let Some(tag) = delivery.ack {
                let _ = self
                    .relay
                    .broker
                    .settle(self.id, &[tag], Settlement::Nack)
                    .await;
            }
            return Ok(None);
        }
        if !self.may_read(&delivery) {
            if let Some(tag) = delivery.ack {
                let _ = self
                    .relay
                    .broker
                    .settle(self.id, &[tag], Settlement::Ack)
                    .await;
            }
            return Ok(None);
        }
        let max = self.relay.settings.max_unacked;
        if delivery.ack.is_some() && self.subscriptions.unacked() >= max {
            // Not delivered: the broker takes it back when the session ends.
            return Err(SessionError::TooManyUnacked(max));
        }
        Ok(Some(self.message_frame(
            &delivery.subscription,
            &delivery.destination,
            &delivery.message,
            delivery.ack.map(Pending::Broker),
            delivery.redelivered,
        )))
    }

    /// The MESSAGE frame of one message for one subscription, recording
    /// what settles it when it needs an ACK.
    fn message_frame(
        &mut self,
        subscription: &Arc<str>,
        destination: &str,
        message: &Message,
        pending: Option<Pending>,
        redelivered: bool,
    ) -> Frame {
        self.last_message_id += 1;
        let message_id = self.last_message_id.to_string();
        let mut frame = Frame::new(Command::Message)
            .header("subscription", subscription)
            .header("message-id", &message_id)
            .header("destination", destination);
        if let Some(pending) = pending {
            if self.version() == Version::V1_2 {
                frame = frame.header("ack", &message_id);
            }
            self.subscriptions
                .expect_ack(subscription, message_id, pending);
        }
        if redelivered {
            frame = frame.header("redelivered", "true");
        }
        for (name, value) in message.headers.iter() {
            frame.headers.push(name, value);
        }
        if !message.headers.contains("content-type") {
            let content_type = match std::str::from_utf8(&message.body) {
                Ok(_) => "text/plain",
                Err(_) => "application/octet-stream",
            };
            frame.headers.push("content-type", content_type);
        }
        frame
            .headers
            .push("content-length", &message.body.len().to_string());
        frame.body = message.body.clone();
        frame
    }

    /// Ends the session: the broker forgets it (requeueing what it left
    /// unacknowledged on shared queues) and the registry drops it.
    pub async fn close(&mut self) {
        let State::Connected(connected) = std::mem::replace(&mut self.state, State::Closed) else {
            self.state = State::Closed;
            return;
        };
        self.relay.broker.detach(self.id).await;
        self.relay.sessions.remove(self.id);
        if let Some(record) = connected.record
            && let Err(error) = self.relay.registry.unregister(&record).await
        {
            tracing::warn!(session = %self.id, %error, "could not unregister the session");
        }
        tracing::debug!(session = %self.id, subscriptions = self.subscriptions.len(), "closed");
    }
}

fn missing(command: Command, header: &'static str) -> SessionError {
    SessionError::MissingHeader { command, header }
}

fn required<'a>(frame: &'a Frame, header: &'static str) -> Result<&'a str, SessionError> {
    frame
        .get(header)
        .ok_or_else(|| missing(frame.command, header))
}

/// The message an ACK or NACK names: `id` in 1.2, `message-id` before.
fn ack_id(frame: &Frame) -> Result<&str, SessionError> {
    frame
        .get("id")
        .or_else(|| frame.get("message-id"))
        .ok_or_else(|| missing(frame.command, "id"))
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::WhenFull;
    use crate::dispatch::offline::OfflineLimits;
    use crate::relay::SessionSettings;

    fn frame(command: Command, headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(command), |frame, (name, value)| {
                frame.header(name, value)
            })
    }

    #[tokio::test]
    async fn frames_in_frames_out_without_a_socket() {
        let relay = Arc::new(Relay::embedded(
            "node".into(),
            "127.0.0.1:0",
            SessionSettings::default(),
            OfflineLimits::default(),
        ));
        let (outbox, mut inbox, _overflow) = Outbox::channel(8, WhenFull::Close);
        let mut session = Session::new(relay, outbox, None);

        let reply = session
            .handle(frame(
                Command::Connect,
                &[("accept-version", "1.1,1.2"), ("login", "alice")],
            ))
            .await
            .unwrap();
        assert_eq!(reply.frames[0].command, Command::Connected);
        assert_eq!(session.version(), Version::V1_2);
        assert_eq!(session.user(), Some("alice"));

        let subscribe = frame(
            Command::Subscribe,
            &[("id", "0"), ("destination", "/topic/t"), ("receipt", "1")],
        );
        let reply = session.handle(subscribe).await.unwrap();
        assert_eq!(reply.frames[0].get("receipt-id"), Some("1"));

        let send = frame(
            Command::Send,
            &[("destination", "/topic/t"), ("user-name", "mallory")],
        )
        .body("hi");
        session.handle(send).await.unwrap();
        let delivery = inbox.recv().await.unwrap();
        let message = session.deliver(delivery).await.unwrap().unwrap();
        assert_eq!(message.command, Command::Message);
        assert_eq!(message.get("destination"), Some("/topic/t"));
        assert_eq!(
            message.get("user-name"),
            Some("alice"),
            "the relay stamps the sender"
        );
        assert_eq!(&message.body[..], b"hi");

        let reply = session
            .handle(frame(Command::Disconnect, &[]))
            .await
            .unwrap();
        assert!(reply.close);
        session.close().await;
    }

    #[tokio::test]
    async fn a_frame_before_connect_is_rejected_with_its_receipt() {
        let relay = Arc::new(Relay::embedded(
            "node".into(),
            "127.0.0.1:0",
            SessionSettings::default(),
            OfflineLimits::default(),
        ));
        let (outbox, _inbox, _overflow) = Outbox::channel(8, WhenFull::Close);
        let mut session = Session::new(relay, outbox, None);
        let rejection = session
            .handle(frame(
                Command::Send,
                &[("destination", "/topic/t"), ("receipt", "9")],
            ))
            .await
            .unwrap_err();
        assert_eq!(rejection.error, SessionError::NotConnected(Command::Send));
        assert_eq!(rejection.to_frame().get("receipt-id"), Some("9"));
    }
}
