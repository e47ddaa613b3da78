//! The STOMP state machine of one client connection, without I/O.
//!
//! A [`Session`] takes frames from the client ([`Session::handle_frame`]),
//! deliveries from the broker ([`Session::deliver`]) and the results of what
//! it asked for ([`Session::complete`]), and gives out, through
//! [`Session::poll_output`], frames for the client and [`Command`]s for the
//! connection's driver (attach, subscribe, publish, dispatch to a user,
//! settle, register, ...). It knows nothing of sockets, tokio, RabbitMQ or
//! Redis, so its tests drive it by hand.
//!
//! STOMP's promises that depend on timing are kept here, by command
//! numbers: a RECEIPT (and CONNECTED) waits until every command given before
//! it is done, and an ERROR for a bad frame goes out after the work of the
//! frames before it.

mod command;
pub mod connect;
mod error;
mod kept;
mod settings;
mod subscriptions;
mod transactions;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use stomp_parser::{Frame, Version};

pub use command::{Command, CommandId, Event, Output};
pub use error::{Service, SessionError};
pub use settings::{SessionContext, SessionSettings};

use crate::auth::Identity;
use crate::auth::acl::Action;
use crate::broker::destination::{Destination, DestinationError, TempQueue};
use crate::broker::queue_options::{QueueOptions, asks_durable};
use crate::broker::{
    AckMode, Delivery, FRAME_HEADERS, KEPT_HEADER, Message, PublishTarget, SENDER_HEADERS,
    SessionId, Settlement, SubscriptionSpec,
};
use crate::dispatch::WhenOffline;
use crate::dispatch::offline::KeptMessage;
use connect::{ConnectRequest, HeartBeat, connected_frame};
use kept::RecentlyKept;
use subscriptions::{Pending, Subscriptions};
use transactions::Transactions;

type StompCommand = stomp_parser::Command;

/// The SEND header asking that a message to `/user/{name}/...` be kept
/// while that user is offline.
const PERSIST: &str = "persist";

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
    /// CONNECT was read; its login is being checked, then the session
    /// attached and registered. Frames wait meanwhile.
    Connecting {
        version: Version,
        heart_beat: HeartBeat,
    },
    Connected(Connected),
    /// An ERROR or DISCONNECT waits for the work before it; no more frames
    /// are read.
    Closing,
    Closed,
}

struct Connected {
    version: Version,
    heart_beat: HeartBeat,
    /// Who logged in; `None` for an anonymous client (`--auth none`).
    identity: Option<Identity>,
}

/// What waits for the commands given before it.
enum Held {
    Frame(Frame),
    /// The CONNECTED frame, and the session it opens.
    Connected(Connected, Frame),
    Close(Option<Rejection>),
}

/// One client's STOMP session.
pub struct Session {
    id: SessionId,
    context: Arc<SessionContext>,
    state: State,
    subscriptions: Subscriptions,
    transactions: Transactions,
    /// The last `message-id` given out.
    last_message_id: u64,
    /// `access_token` of the URL the client connected to.
    access_token: Option<String>,
    output: VecDeque<Output>,
    next_command: CommandId,
    /// Commands given and not yet complete, with the `receipt` of the frame
    /// that gave each (for the ERROR if it fails).
    in_flight: BTreeMap<CommandId, Option<Arc<str>>>,
    /// What waits for every command numbered below its mark, in order.
    held: VecDeque<(CommandId, Held)>,
    /// ReadKept commands in flight -> the subscription they are for.
    reading_kept: HashMap<CommandId, Arc<str>>,
    /// Kept messages delivered lately, so that none is delivered twice.
    recently_kept: RecentlyKept,
    /// The kept messages to read, for a subscription, once the current
    /// frame's RECEIPT is placed.
    read_after_receipt: Option<(Arc<str>, Command)>,
    /// The receipt of the frame being handled.
    current_receipt: Option<Arc<str>>,
    attached: bool,
    registered: bool,
}

impl Session {
    pub fn new(
        id: SessionId,
        context: Arc<SessionContext>,
        access_token: Option<String>,
    ) -> Session {
        Session {
            id,
            context,
            state: State::AwaitingConnect,
            subscriptions: Subscriptions::default(),
            transactions: Transactions::default(),
            last_message_id: 0,
            access_token,
            output: VecDeque::new(),
            next_command: 0,
            in_flight: BTreeMap::new(),
            held: VecDeque::new(),
            reading_kept: HashMap::new(),
            recently_kept: RecentlyKept::default(),
            read_after_receipt: None,
            current_receipt: None,
            attached: false,
            registered: false,
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected(_))
    }

    /// Whether the session takes another frame now. While a CONNECT is
    /// being carried out, and once it is closing, frames wait (or are
    /// never read).
    pub fn accepts_frames(&self) -> bool {
        matches!(self.state, State::AwaitingConnect | State::Connected(_))
    }

    /// Commands given and not complete.
    pub fn commands_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The version frames are written in; 1.2 until CONNECT agrees one
    /// (frames sent before that are ERRORs, which read the same in all).
    pub fn version(&self) -> Version {
        match &self.state {
            State::Connected(connected) => connected.version,
            State::Connecting { version, .. } => *version,
            _ => Version::V1_2,
        }
    }

    pub fn heart_beat(&self) -> HeartBeat {
        match &self.state {
            State::Connected(connected) => connected.heart_beat,
            _ => HeartBeat::default(),
        }
    }

    /// Subscriptions the session holds now.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    pub fn user(&self) -> Option<&str> {
        self.identity().map(|identity| identity.user.as_str())
    }

    fn identity(&self) -> Option<&Identity> {
        match &self.state {
            State::Connected(connected) => connected.identity.as_ref(),
            _ => None,
        }
    }

    /// The next frame or command, in the order they were given.
    pub fn poll_output(&mut self) -> Option<Output> {
        pop_front_releasing(&mut self.output)
    }

    /// Handles one frame from the client. A `receipt` header is answered
    /// with RECEIPT once the commands the frame (and every frame before it)
    /// gave are done.
    pub fn handle_frame(&mut self, frame: Frame) {
        if !self.accepts_frames() {
            return;
        }
        let receipt: Option<Arc<str>> = frame.get("receipt").map(Arc::from);
        // CONNECT has no RECEIPT; DISCONNECT places its own, and so does a
        // frame held in a transaction, when the transaction ends.
        let answers_receipt = !matches!(
            frame.command,
            StompCommand::Connect | StompCommand::Stomp | StompCommand::Disconnect
        ) && !held_in_transaction(&frame);
        self.current_receipt = receipt.clone();
        let handled = self.handle_command(frame);
        self.current_receipt = None;
        match handled {
            Ok(()) => {
                // The RECEIPT comes before what the frame brings later
                // (messages kept for the user, read after SUBSCRIBE).
                if let Some(receipt) = receipt.filter(|_| answers_receipt) {
                    self.hold_receipt(&receipt);
                }
                if let Some((subscription, read)) = self.read_after_receipt.take() {
                    let id = self.give(read);
                    self.reading_kept.insert(id, subscription);
                }
            }
            Err(error) => {
                self.read_after_receipt = None;
                let rejection = Rejection {
                    error,
                    receipt_id: receipt.map(|receipt| receipt.to_string()),
                };
                self.state = State::Closing;
                self.hold(Held::Close(Some(rejection)));
            }
        }
    }

    /// Ends the session now with `error`, whatever waits (a timeout, a slow
    /// client, the node stopping).
    pub fn abort(&mut self, error: SessionError) {
        self.close_now(Some(error.into()));
    }

    /// Takes the result of command `id`.
    pub fn complete(&mut self, id: CommandId, event: Event) {
        let Some(receipt) = self.in_flight.remove(&id) else {
            return;
        };
        if matches!(self.state, State::Closed) {
            return;
        }
        match event {
            Event::Done(Ok(())) => {}
            Event::Done(Err(mut rejection)) => {
                if rejection.receipt_id.is_none() {
                    rejection.receipt_id = receipt.map(|receipt| receipt.to_string());
                }
                return self.close_now(Some(rejection));
            }
            Event::Authenticated(Ok(identity)) => self.connect_as(identity),
            Event::Authenticated(Err(error)) => {
                return self.close_now(Some(SessionError::Auth(error).into()));
            }
            Event::Kept(kept) => {
                if let Some(subscription) = self.reading_kept.remove(&id) {
                    self.deliver_kept(&subscription, kept);
                }
            }
        }
        self.release_held();
    }

    /// What the broker and registry must forget once the connection ends;
    /// the driver carries these out after the commands still in flight.
    pub fn close(&mut self) -> Vec<Command> {
        self.state = State::Closed;
        self.held.clear();
        let mut teardown = Vec::new();
        if std::mem::take(&mut self.attached) {
            teardown.push(Command::Detach);
        }
        if std::mem::take(&mut self.registered) {
            teardown.push(Command::Unregister);
        }
        teardown
    }

    fn close_now(&mut self, rejection: Option<Rejection>) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.state = State::Closed;
        self.held.clear();
        self.output.push_back(Output::Close(rejection));
    }

    /// Gives a command to the driver, numbered.
    fn give(&mut self, command: Command) -> CommandId {
        let id = self.next_command;
        self.next_command += 1;
        match command {
            Command::Attach => self.attached = true,
            Command::Register { .. } => self.registered = true,
            _ => {}
        }
        self.in_flight.insert(id, self.current_receipt.clone());
        self.output.push_back(Output::Command(id, command));
        id
    }

    fn hold_receipt(&mut self, receipt: &str) {
        let frame = Frame::new(StompCommand::Receipt).header("receipt-id", receipt);
        self.hold(Held::Frame(frame));
    }

    /// Holds what must wait for every command given so far.
    fn hold(&mut self, held: Held) {
        self.held.push_back((self.next_command, held));
        self.release_held();
    }

    fn release_held(&mut self) {
        while let Some((mark, _)) = self.held.front() {
            let oldest_in_flight = self.in_flight.keys().next();
            if oldest_in_flight.is_some_and(|oldest| oldest < mark) {
                return;
            }
            let Some((_, held)) = pop_front_releasing(&mut self.held) else {
                return;
            };
            match held {
                Held::Frame(frame) => self.output.push_back(Output::Frame(frame)),
                Held::Connected(connected, frame) => {
                    self.state = State::Connected(connected);
                    self.output.push_back(Output::Frame(frame));
                }
                Held::Close(rejection) => return self.close_now(rejection),
            }
        }
    }

    fn handle_command(&mut self, frame: Frame) -> Result<(), SessionError> {
        let command = frame.command;
        if !command.is_client_command() {
            return Err(SessionError::ServerCommand(command));
        }
        match (&self.state, command) {
            (State::AwaitingConnect, StompCommand::Connect | StompCommand::Stomp) => {
                self.connect(&frame)
            }
            (State::Connected(_), StompCommand::Connect | StompCommand::Stomp) => {
                Err(SessionError::AlreadyConnected)
            }
            (State::Connected(_), _) => self.handle_connected(frame),
            _ => Err(SessionError::NotConnected(command)),
        }
    }

    fn handle_connected(&mut self, frame: Frame) -> Result<(), SessionError> {
        let settings = &self.context.settings;
        match frame.command {
            StompCommand::Disconnect => {
                self.state = State::Closing;
                if let Some(receipt) = self.current_receipt.clone() {
                    self.hold_receipt(&receipt);
                }
                self.hold(Held::Close(None));
                Ok(())
            }
            StompCommand::Subscribe => self.subscribe(&frame),
            StompCommand::Unsubscribe => self.unsubscribe(&frame),
            StompCommand::Begin => {
                let max = settings.max_transactions;
                self.transactions
                    .begin(required(&frame, "transaction")?, max)
            }
            // The receipts of the frames held come now, as RabbitMQ's
            // plugin sends them: each once its frame is carried out (or
            // dropped, at ABORT).
            StompCommand::Commit => {
                let held = self.transactions.end(required(&frame, "transaction")?)?;
                held.into_iter().try_for_each(|frame| {
                    let receipt = frame.get("receipt").map(str::to_owned);
                    self.execute(frame)?;
                    if let Some(receipt) = receipt {
                        self.hold_receipt(&receipt);
                    }
                    Ok(())
                })
            }
            StompCommand::Abort => {
                let held = self.transactions.end(required(&frame, "transaction")?)?;
                for receipt in held.iter().filter_map(|frame| frame.get("receipt")) {
                    self.hold_receipt(receipt);
                }
                Ok(())
            }
            // The same test that defers the frame's receipt (handle_frame).
            _ if held_in_transaction(&frame) => {
                let transaction = required(&frame, "transaction")?.to_owned();
                let max = settings.max_transaction_frames;
                // Checked now, so that a bad frame is refused when sent, not
                // when committed.
                self.check_held(&frame)?;
                self.transactions.hold(&transaction, frame, max)
            }
            _ => self.execute(frame),
        }
    }

    /// Runs a SEND, ACK or NACK, now or at COMMIT.
    fn execute(&mut self, frame: Frame) -> Result<(), SessionError> {
        match frame.command {
            StompCommand::Send => self.send(frame),
            StompCommand::Ack => self.settle(&frame, Settlement::Ack),
            StompCommand::Nack => {
                let settlement = match frame.get("requeue") {
                    Some("false") => Settlement::Discard,
                    _ => Settlement::Nack,
                };
                self.settle(&frame, settlement)
            }
            other => Err(SessionError::ServerCommand(other)),
        }
    }

    /// The checks a frame held in a transaction must pass when it arrives.
    fn check_held(&self, frame: &Frame) -> Result<(), SessionError> {
        match frame.command {
            StompCommand::Send => {
                refuse_message_id(frame)?;
                let text = required(frame, "destination")?;
                Destination::parse(text)?.check_send(text)?;
                self.authorize(Action::Send, text)
            }
            StompCommand::Ack | StompCommand::Nack => ack_id(frame, self.version()).map(|_| ()),
            other => Err(SessionError::ServerCommand(other)),
        }
    }

    fn connect(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let request = ConnectRequest::read(frame)?;
        self.state = State::Connecting {
            version: request.version,
            heart_beat: HeartBeat::negotiate(request.heart_beat, self.context.settings.heart_beat),
        };
        // Before anything is attached or registered: a refused login leaves
        // no trace.
        let access_token = self.access_token.take();
        self.give(Command::Authenticate {
            login: request.login,
            passcode: request.passcode,
            authorization: request.authorization,
            access_token,
        });
        Ok(())
    }

    /// The login was accepted: attach and register, then CONNECTED.
    fn connect_as(&mut self, identity: Option<Identity>) {
        let State::Connecting {
            version,
            heart_beat,
        } = self.state
        else {
            return;
        };
        self.give(Command::Attach);
        if let Some(identity) = &identity {
            let user = identity.user.clone();
            self.give(Command::Register { user: user.clone() });
            if self.context.settings.replace_older_logins {
                self.give(Command::ReplaceOlder { user });
            }
        }
        let frame = connected_frame(
            version,
            &self.id.to_string(),
            heart_beat,
            identity.as_ref().map(|identity| identity.user.as_str()),
        );
        let connected = Connected {
            version,
            heart_beat,
            identity,
        };
        self.hold(Held::Connected(connected, frame));
    }

    /// Refuses what the node's ACL does not let this client do.
    fn authorize(&self, action: Action, destination: &str) -> Result<(), SessionError> {
        let identity = self.identity();
        if self.context.acl.allows(identity, action, destination) {
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
        match self.subscriptions.get(&delivery.subscription) {
            Some(spec) if *spec.destination_text != *delivery.destination => self
                .authorize(Action::Subscribe, &delivery.destination)
                .is_ok(),
            _ => true,
        }
    }

    fn subscribe(&mut self, frame: &Frame) -> Result<(), SessionError> {
        refuse_durable_without_id(frame)?;
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
        let settings = &self.context.settings;
        let max = settings.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(SessionError::TooManySubscriptions(max));
        }
        let queue = QueueOptions::for_subscription(&frame.headers, self.user(), id)?;
        let spec = SubscriptionSpec {
            id: Arc::from(id),
            destination_text: Arc::from(destination_text),
            destination,
            ack,
            // More in flight than a session may leave unacknowledged would
            // only end the session.
            prefetch: prefetch
                .filter(|&count| count > 0)
                .map(|count| count.min(u32::try_from(settings.max_unacked).unwrap_or(u32::MAX))),
            queue,
        };
        self.read_after_receipt = match (&spec.destination, self.user()) {
            (Destination::OwnUser { name }, Some(user)) => Some((
                spec.id.clone(),
                Command::ReadKept {
                    user: user.to_owned(),
                    name: name.clone(),
                },
            )),
            _ => None,
        };
        self.subscriptions.insert(spec.clone());
        self.give(Command::Subscribe(spec));
        Ok(())
    }

    /// Reads again what is kept for the user at each of its user
    /// destinations; what was delivered already is not shown again.
    pub fn read_kept_again(&mut self) {
        if !matches!(self.state, State::Connected(_)) {
            return;
        }
        let Some(user) = self.user().map(str::to_owned) else {
            return;
        };
        let reads: Vec<(Arc<str>, String)> = self
            .subscriptions
            .specs()
            .filter_map(|spec| match &spec.destination {
                Destination::OwnUser { name } => Some((spec.id.clone(), name.clone())),
                _ => None,
            })
            .collect();
        for (subscription, name) in reads {
            let user = user.clone();
            let id = self.give(Command::ReadKept { user, name });
            self.reading_kept.insert(id, subscription);
        }
    }

    /// The messages kept for this user while it was offline, as MESSAGEs of
    /// subscription `id`, oldest first. With `ack:auto` the store forgets
    /// them now; otherwise when acked. A store that cannot answer costs the
    /// subscription nothing: the messages stay kept for the next time.
    fn deliver_kept(&mut self, id: &Arc<str>, kept: Result<Vec<KeptMessage>, Rejection>) {
        let kept = match kept {
            Ok(kept) => kept,
            Err(rejection) => {
                tracing::warn!(session = %self.id, error = %rejection.error, "cannot read messages kept for the user");
                return;
            }
        };
        let (Some(subscription), Some(user)) = (self.subscriptions.get(id), self.user()) else {
            return;
        };
        if kept.is_empty() {
            return;
        }
        let user = user.to_owned();
        let needs_ack = subscription.ack.needs_ack();
        let destination = subscription.destination_text.clone();
        let mut delivered = Vec::with_capacity(kept.len());
        for KeptMessage {
            id: kept_id,
            message,
            shown,
        } in kept
        {
            // Delivered live already (it was kept before it was sent).
            if !self.recently_kept.first_time(&kept_id) {
                continue;
            }
            let pending = needs_ack.then(|| Pending::Kept(kept_id.clone()));
            let frame =
                self.message_frame(id, &destination, &message, Some(&kept_id), pending, shown);
            delivered.push(kept_id);
            self.output.push_back(Output::Frame(frame));
        }
        if !needs_ack && !delivered.is_empty() {
            self.give(Command::ForgetKept {
                user,
                ids: delivered,
            });
        }
    }

    fn unsubscribe(&mut self, frame: &Frame) -> Result<(), SessionError> {
        refuse_durable_without_id(frame)?;
        let id = match (frame.get("id"), self.version()) {
            (Some(id), _) => id,
            (None, Version::V1_0) => required(frame, "destination")?,
            (None, _) => return Err(missing(frame.command, "id")),
        };
        let spec = self
            .subscriptions
            .remove(id)
            .ok_or_else(|| SessionError::UnknownSubscription(id.to_owned()))?;
        let discard = asks_durable(&frame.headers);
        self.give(Command::Unsubscribe { spec, discard });
        Ok(())
    }

    fn send(&mut self, mut frame: Frame) -> Result<(), SessionError> {
        let body = std::mem::take(&mut frame.body);
        refuse_message_id(&frame)?;
        if let Some(claimed) = frame.get("user-id")
            && Some(claimed) != self.user()
        {
            return Err(SessionError::UserIdMismatch {
                claimed: claimed.to_owned(),
                user: self.user().map(str::to_owned),
            });
        }
        let text = required(&frame, "destination")?;
        let destination = Destination::parse(text)?;
        destination.check_send(text)?;
        self.authorize(Action::Send, text)?;
        let mut headers = frame.headers.clone();
        let relay_headers = FRAME_HEADERS
            .iter()
            .chain(SENDER_HEADERS)
            .chain([&KEPT_HEADER]);
        for name in relay_headers {
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
            let reply_queue = self.temp_queue(name)?;
            headers.set("reply-to", &reply_queue);
        }
        let message = Message { headers, body };
        // A message for users is counted as delivered once it is handed to
        // their sessions: it must be one that every session can be sent.
        if let (Destination::User { .. }, Some((name, reason))) =
            (&destination, message.unportable_header())
        {
            return Err(SessionError::UnportableHeader {
                name: name.to_owned(),
                reason,
            });
        }
        let command = match (destination.publish_target(), destination) {
            (Some(mut target), _) => {
                if let PublishTarget::Queue {
                    declare: Some(options),
                    ..
                } = &mut target
                {
                    *options = QueueOptions::for_send(&frame.headers)?;
                }
                Command::Publish { target, message }
            }
            (None, Destination::User { user, name }) => Command::SendToUser {
                user,
                name,
                message,
                when_offline,
            },
            // check_send refused every other destination without a target.
            (None, _) => return Err(DestinationError::Unknown(text.to_owned()).into()),
        };
        self.give(command);
        Ok(())
    }

    /// The reply address of this session's temp queue `name`, created on
    /// first use: replies sent to it arrive as MESSAGEs whose `subscription`
    /// and `destination` are `/temp-queue/{name}`, as with RabbitMQ.
    fn temp_queue(&mut self, name: &str) -> Result<String, SessionError> {
        let temp = TempQueue::new(name, self.id)
            .ok_or_else(|| DestinationError::Unknown(format!("/temp-queue/{name}")))?;
        if !self.subscriptions.contains(&temp.text) {
            let max = self.context.settings.max_subscriptions;
            if self.subscriptions.len() >= max {
                return Err(SessionError::TooManySubscriptions(max));
            }
            let spec = SubscriptionSpec {
                id: Arc::from(temp.text.as_str()),
                destination_text: Arc::from(temp.text.as_str()),
                destination: Destination::OwnUser {
                    name: temp.user_name,
                },
                ack: AckMode::Auto,
                prefetch: None,
                queue: QueueOptions::default(),
            };
            self.subscriptions.insert(spec.clone());
            self.give(Command::Subscribe(spec));
        }
        Ok(temp.reply_address)
    }

    fn settle(&mut self, frame: &Frame, settlement: Settlement) -> Result<(), SessionError> {
        let id = ack_id(frame, self.version())?;
        let settled = self
            .subscriptions
            .settle(id)
            .ok_or_else(|| SessionError::UnknownAck(id.to_owned()))?;
        let (mut tags, mut kept) = (Vec::new(), Vec::new());
        for pending in settled {
            match pending {
                Pending::Broker(tag) => tags.push(tag),
                Pending::Kept(id) => kept.push(id),
                Pending::BrokerAndKept(tag, id) => {
                    tags.push(tag);
                    // Given back, it comes again, to be shown again.
                    if settlement == Settlement::Nack {
                        self.recently_kept.forget(&id);
                    }
                    kept.push(id);
                }
            }
        }
        if !tags.is_empty() {
            self.give(Command::Settle { tags, settlement });
        }
        // A NACKed kept message stays kept, to be delivered next time; a
        // discarded one is forgotten.
        if settlement != Settlement::Nack
            && !kept.is_empty()
            && let Some(user) = self.user()
        {
            let user = user.to_owned();
            self.give(Command::ForgetKept { user, ids: kept });
        }
        Ok(())
    }

    /// Turns a delivery into the MESSAGE frame for the client, recording it
    /// when it needs an ACK. A delivery to a subscription that has just
    /// ended is given back to the broker; one the ACL does not let the
    /// client read is acknowledged and dropped. One that needs an ACK past
    /// `max_unacked` ends the session.
    pub fn deliver(&mut self, delivery: Delivery) {
        if !matches!(self.state, State::Connected(_) | State::Closing) {
            return;
        }
        let refused = if !self.subscriptions.contains(&delivery.subscription) {
            Some(Settlement::Nack)
        } else if !self.may_read(&delivery) {
            Some(Settlement::Ack)
        } else {
            None
        };
        if let Some(settlement) = refused {
            if let Some(tag) = delivery.ack {
                self.give(Command::Settle {
                    tags: vec![tag],
                    settlement,
                });
            }
            return;
        }
        // A message sent with `persist` was kept before it was sent, and is
        // forgotten once this session has delivered it (or had it ACKed).
        let kept = delivery.message.headers.get(KEPT_HEADER).map(str::to_owned);
        if let Some(kept) = &kept
            && !self.recently_kept.first_time(kept)
        {
            // Delivered from the store already.
            if let Some(tag) = delivery.ack {
                self.give(Command::Settle {
                    tags: vec![tag],
                    settlement: Settlement::Ack,
                });
            }
            return;
        }
        let max = self.context.settings.max_unacked;
        if delivery.ack.is_some() && self.subscriptions.unacked() >= max {
            // Not delivered: the broker takes it back when the session ends.
            return self.abort(SessionError::TooManyUnacked(max));
        }
        let pending = match (delivery.ack, &kept) {
            (Some(tag), Some(kept)) => Some(Pending::BrokerAndKept(tag, kept.clone())),
            (Some(tag), None) => Some(Pending::Broker(tag)),
            (None, _) => None,
        };
        let frame = self.message_frame(
            &delivery.subscription,
            &delivery.destination,
            &delivery.message,
            kept.as_deref(),
            pending,
            delivery.redelivered,
        );
        self.output.push_back(Output::Frame(frame));
        if delivery.ack.is_none()
            && let (Some(kept), Some(user)) = (kept, self.user())
        {
            let user = user.to_owned();
            self.give(Command::ForgetKept {
                user,
                ids: vec![kept],
            });
        }
    }

    /// The MESSAGE frame of one message for one subscription, recording
    /// what settles it when it needs an ACK. A kept message (`kept`, its
    /// store id) has the same `message-id` wherever and however often it
    /// is delivered, so that a client can tell it again when it comes back
    /// (with `redelivered:true`) because its ACK was lost with a connection.
    fn message_frame(
        &mut self,
        subscription: &Arc<str>,
        destination: &str,
        message: &Message,
        kept: Option<&str>,
        pending: Option<Pending>,
        redelivered: bool,
    ) -> Frame {
        // Store ids are never plain numbers like the session's own.
        let message_id = match kept {
            Some(kept) => format!("kept-{kept}"),
            None => {
                self.last_message_id += 1;
                self.last_message_id.to_string()
            }
        };
        let mut frame = Frame::new(StompCommand::Message)
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
        // On every MESSAGE, false included, as RabbitMQ's STOMP plugin
        // writes it.
        frame = frame.header("redelivered", if redelivered { "true" } else { "false" });
        for (name, value) in message.headers.iter() {
            if name != KEPT_HEADER {
                frame.headers.push(name, value);
            }
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
}

fn missing(command: StompCommand, header: &'static str) -> SessionError {
    SessionError::MissingHeader { command, header }
}

fn required<'a>(frame: &'a Frame, header: &'static str) -> Result<&'a str, SessionError> {
    frame
        .get(header)
        .ok_or_else(|| missing(frame.command, header))
}

/// A SEND may not name a message id, which only the server gives, as
/// RabbitMQ's STOMP plugin refuses it.
fn refuse_message_id(frame: &Frame) -> Result<(), SessionError> {
    match frame.get("message-id") {
        Some(_) => Err(SessionError::NotAllowedHeader {
            command: frame.command,
            header: "message-id",
        }),
        None => Ok(()),
    }
}

/// A durable subscription is found again by its `id`, so it must have one,
/// whatever the version.
fn refuse_durable_without_id(frame: &Frame) -> Result<(), SessionError> {
    if asks_durable(&frame.headers) && frame.get("id").is_none() {
        return Err(SessionError::DurableWithoutId);
    }
    Ok(())
}

/// True for a frame that a transaction holds until it ends.
fn held_in_transaction(frame: &Frame) -> bool {
    matches!(
        frame.command,
        StompCommand::Send | StompCommand::Ack | StompCommand::Nack
    ) && frame.get("transaction").is_some()
}

/// The message an ACK or NACK names: `id` in 1.2, `message-id` before,
/// each version's header only, as RabbitMQ's STOMP plugin reads them.
fn ack_id(frame: &Frame, version: Version) -> Result<&str, SessionError> {
    let header = match version {
        Version::V1_2 => "id",
        Version::V1_0 | Version::V1_1 => "message-id",
    };
    required(frame, header)
}

/// Pops the front of a queue and gives its buffer back once it is empty:
/// an idle session would otherwise keep, for as long as it lives, the
/// capacity its busiest moment (the CONNECT's burst) grew.
pub fn pop_front_releasing<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let front = queue.pop_front();
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
    front
}
