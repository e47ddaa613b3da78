//! The STOMP state machine of one client connection, without I/O.
//!
//! A [`Session`] takes frames from the client ([`Session::handle_frame`]),
//! deliveries from the broker ([`Session::deliver`]) and the results of what
//! it asked for ([`Session::complete`]), and gives out, through
//! [`Session::poll_output`], frames for the client and, for the
//! connection's driver, [`Command`]s to carry out in order (attach,
//! subscribe, settle, register, ...) and SENDs ([`Outbound`]: a publish, a
//! message to a user) that may go side by side. It knows nothing of
//! sockets, tokio, RabbitMQ or Redis, so its tests drive it by hand.
//!
//! STOMP's promises that depend on timing are kept here, by command
//! numbers: a RECEIPT (and CONNECTED) waits until every command given before
//! it is done, and an ERROR for a bad frame goes out after the work of the
//! frames before it.
//!
//! This file holds the session's state and reads each frame; each frame's
//! work lives in a file named for it (`connect`, `subscribe`, `send`, `ack`,
//! `deliver`, `kept`, `transactions`), and `ordering` numbers the commands
//! and holds what must wait for them.

mod ack;
mod command;
pub mod connect;
mod deliver;
mod error;
mod headers;
mod offline;
mod ordering;
mod replay;
mod send;
mod settings;
mod subscribe;
mod subscriptions;
mod transactions;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use stomp_parser::{Frame, Version};

pub use command::{Command, CommandId, Event, Outbound, Output};
pub use error::{Service, SessionError};
pub use settings::{SessionContext, SessionSettings};

use crate::auth::Identity;
use crate::auth::acl::Action;
use crate::broker::destination::Destination;
use crate::broker::{SessionId, Settlement};
use connect::HeartBeat;
use headers::{ack_id, required};
use offline::RecentOffline;
use ordering::Waiting;
use replay::Replays;
use send::refuse_message_id;
use subscriptions::Subscriptions;
use transactions::{Transactions, held_in_transaction};

type StompCommand = stomp_parser::Command;

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
        /// The virtual host CONNECT named, when it is not the node's.
        denied_host: Option<String>,
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
    held: VecDeque<(CommandId, Waiting)>,
    /// ReadOffline commands in flight -> the subscription they are for.
    reading_offline: HashMap<CommandId, Arc<str>>,
    /// Kept messages delivered lately, so that none is delivered twice.
    recent_offline: RecentOffline,
    /// Subscriptions replaying what their user's history holds.
    replays: Replays,
    /// What to read for a subscription (its replay, the kept messages),
    /// once the current frame's RECEIPT is placed.
    read_after_receipt: Vec<(Arc<str>, Command)>,
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
            reading_offline: HashMap::new(),
            recent_offline: RecentOffline::default(),
            replays: Replays::default(),
            read_after_receipt: Vec::new(),
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

    /// Commands and SENDs given and not complete.
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

    /// When the login stops being good (a token that expires): the session
    /// must end then ([`SessionError::TokenExpired`]).
    pub fn login_valid_until(&self) -> Option<std::time::SystemTime> {
        self.identity()?.valid_until
    }

    fn identity(&self) -> Option<&Identity> {
        match &self.state {
            State::Connected(connected) => connected.identity.as_ref(),
            _ => None,
        }
    }

    /// The next frame, command or SEND, in the order they were given.
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
                for (subscription, read) in std::mem::take(&mut self.read_after_receipt) {
                    let replay = matches!(read, Command::ReadHistory { .. });
                    let id = self.give(read);
                    if replay {
                        self.replays.reading.insert(id, subscription);
                    } else {
                        self.reading_offline.insert(id, subscription);
                    }
                }
            }
            Err(error) => {
                self.read_after_receipt.clear();
                let rejection = Rejection {
                    error,
                    receipt_id: receipt.map(|receipt| receipt.to_string()),
                };
                self.state = State::Closing;
                self.hold(Waiting::Close(Some(rejection)));
            }
        }
    }

    /// Ends the session now with `error`, whatever waits (a timeout, a slow
    /// client, the node stopping).
    pub fn abort(&mut self, error: SessionError) {
        self.close_now(Some(error.into()));
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
                self.hold(Waiting::Close(None));
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
                let settlement = match frame.boolean("requeue") {
                    Some(false) => Settlement::Discard,
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
