//! Why a session ends with an ERROR frame, in words the client can act on.

use stomp_parser::{Command, Frame, ParseError};

use crate::auth::AuthError;
use crate::auth::acl::Action;
use crate::broker::destination::DestinationError;
use crate::broker::queue_options::InvalidQueueHeader;

/// Everything that makes the relay send ERROR and close the connection, as
/// STOMP requires after an ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("{}", malformed_text(.0))]
    Malformed(#[from] ParseError),
    /// RabbitMQ's words.
    #[error("You must log in using CONNECT first")]
    NotConnected(Command),
    #[error("this session is already connected")]
    AlreadyConnected,
    #[error("{0} is a server frame; a client cannot send it")]
    ServerCommand(Command),
    /// The body RabbitMQ's STOMP plugin writes; what the client accepted is
    /// kept here, not shown.
    #[error("Supported versions are 1.0,1.1,1.2")]
    UnsupportedVersion(String),
    #[error("{}", missing_header_text(*.command, .header))]
    MissingHeader {
        command: Command,
        header: &'static str,
    },
    /// RabbitMQ's words: a SEND may not claim to come from another user.
    #[error(
        "user_id property set to '{claimed}' but authenticated user was '{}'",
        .user.as_deref().unwrap_or_default()
    )]
    UserIdMismatch {
        claimed: String,
        user: Option<String>,
    },
    /// RabbitMQ's words: a durable subscription is found again by its id.
    #[error("Header 'id' is required for durable subscriptions")]
    DurableWithoutId,
    #[error("header {name:?} cannot be sent to every STOMP version: {reason}")]
    UnportableHeader { name: String, reason: &'static str },
    #[error("'{header}' is not allowed on '{command}'.")]
    NotAllowedHeader {
        command: Command,
        header: &'static str,
    },
    #[error("header {header:?} has an invalid value {value:?}: {reason}")]
    InvalidHeader {
        header: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// RabbitMQ's body, naming the subscription by its consumer tag.
    #[error("A subscription identified by 'T_{0}' already exists.")]
    DuplicateSubscription(String),
    #[error("there is no subscription with id {0:?} in this session")]
    UnknownSubscription(String),
    #[error("a session may have at most {0} subscriptions")]
    TooManySubscriptions(usize),
    #[error("there is no unacknowledged message with id {0:?} in this session")]
    UnknownAck(String),
    #[error("transaction {0:?} was already begun")]
    DuplicateTransaction(String),
    #[error("there is no transaction {0:?} in this session")]
    UnknownTransaction(String),
    /// RabbitMQ's words, with the relay's limits.
    #[error("Too many concurrent transactions (limit {0})")]
    TooManyTransactions(usize),
    #[error("Too many actions in transaction (limit {0})")]
    TransactionTooLarge(usize),
    /// A service the session needed failed (the client's frame was fine).
    /// The client reads `text`, short and stable; the cause goes to the
    /// log where the failure is seen, never to the client.
    #[error("{text}")]
    Service {
        service: Service,
        /// The `message` the failure has of its own, if any.
        summary: Option<&'static str>,
        text: String,
    },
    #[error("no CONNECT frame within {0} seconds")]
    ConnectTimeout(u64),
    #[error("nothing received for {0} ms, past the negotiated heart-beat")]
    HeartBeatTimeout(u128),
    #[error("the client reads too slowly: more than {0} messages waited to be sent")]
    SlowConsumer(usize),
    /// RabbitMQ's words, when the broker ends a subscription: its queue was
    /// deleted, or could not be restored after the broker was away.
    #[error(
        "The server has canceled a subscription.\nNo more messages will be delivered for {destination:?}."
    )]
    SubscriptionCancelled {
        subscription: String,
        destination: String,
    },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("more than {0} frames in a second")]
    TooManyFrames(u32),
    #[error("more than {0} messages delivered and not acknowledged; ACK them before more can come")]
    TooManyUnacked(usize),
    #[error("a WebSocket message was larger than the {0}-byte frame limit (--max-frame-size)")]
    MessageTooLarge(usize),
    #[error("a frame was begun and not finished within {0} seconds")]
    FrameTimeout(u64),
    #[error("{}", auth_text(.0))]
    Auth(#[from] AuthError),
    /// The login's token expired: the client connects again with a fresh
    /// one.
    #[error("Access refused: token expired")]
    TokenExpired,
    /// RabbitMQ's words: the relay serves one virtual host.
    #[error("Virtual host '{0}' access denied")]
    VirtualHostDenied(String),
    #[error(
        "user {0:?} logged in again elsewhere; this older session is closed (second-login: replace)"
    )]
    Replaced(String),
    #[error("{} may not {action} {destination:?}", user_text(.user))]
    AccessRefused {
        user: Option<String>,
        action: Action,
        destination: String,
    },
}

impl From<InvalidQueueHeader> for SessionError {
    fn from(invalid: InvalidQueueHeader) -> SessionError {
        SessionError::InvalidHeader {
            header: invalid.header,
            value: invalid.value,
            reason: invalid.reason,
        }
    }
}

/// Which of the node's services failed a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The message broker, or dispatch through it.
    Broker,
    /// The session registry.
    Registry,
    /// The store of messages kept for users who were offline.
    OfflineStore,
    /// Users' histories.
    History,
}

/// RabbitMQ's words for a missing `destination`; ours for the rest.
fn missing_header_text(command: Command, header: &str) -> String {
    match header {
        "destination" => format!("'{command}' must include a 'destination' header"),
        _ => format!("{command} needs a '{header}' header"),
    }
}

/// RabbitMQ's words for a command STOMP does not have; ours for the rest.
fn malformed_text(error: &ParseError) -> String {
    match error {
        ParseError::UnknownCommand(command) => format!("Could not interpret command {command:?}"),
        other => format!("malformed frame: {other}"),
    }
}

/// RabbitMQ's words for a refused login; ours for what it does not check.
fn auth_text(error: &AuthError) -> String {
    match error {
        AuthError::BadPassword(_) => error.to_string(),
        other => format!("authentication failed: {other}"),
    }
}

fn user_text(user: &Option<String>) -> String {
    match user {
        Some(user) => format!("user {user:?}"),
        None => "an anonymous client".to_owned(),
    }
}

impl SessionError {
    /// The short `message` header of the ERROR frame; the body says more.
    pub fn summary(&self) -> &'static str {
        match self {
            SessionError::Malformed(ParseError::UnknownCommand(_)) => "Bad command",
            SessionError::Malformed(_) => "malformed frame received",
            SessionError::NotConnected(_) => "Illegal command",
            SessionError::AlreadyConnected => "protocol error",
            SessionError::ServerCommand(_) => "unexpected frame",
            SessionError::UnsupportedVersion(_) => "Version mismatch",
            // Where RabbitMQ's STOMP plugin has the same error, its words.
            SessionError::MissingHeader {
                header: "destination",
                ..
            } => "Missing destination",
            SessionError::MissingHeader { .. } => "Missing header",
            SessionError::DurableWithoutId => "Missing Header",
            SessionError::UserIdMismatch { .. } => "access_refused",
            SessionError::InvalidHeader { .. }
            | SessionError::NotAllowedHeader { .. }
            | SessionError::UnportableHeader { .. } => "Invalid header",
            SessionError::Destination(DestinationError::Reserved(_)) => "access refused",
            SessionError::Destination(DestinationError::Unknown(_)) => "Unknown destination",
            SessionError::Destination(_) => "Invalid destination",
            SessionError::DuplicateSubscription(_) => "Duplicated subscription identifier",
            SessionError::UnknownSubscription(_) => "No subscription found",
            SessionError::TooManySubscriptions(_) => "too many subscriptions",
            SessionError::UnknownAck(_) => "Message not found",
            SessionError::DuplicateTransaction(_) | SessionError::UnknownTransaction(_) => {
                "Bad transaction"
            }
            SessionError::TooManyTransactions(_) => "Transaction limit exceeded",
            SessionError::TransactionTooLarge(_) => "Transaction too large",
            SessionError::Service {
                summary: Some(summary),
                ..
            } => summary,
            SessionError::Service {
                service: Service::Broker,
                ..
            } => "broker error",
            SessionError::Service {
                service: Service::Registry,
                ..
            } => "registry error",
            SessionError::Service {
                service: Service::OfflineStore,
                ..
            } => "offline store error",
            SessionError::Service {
                service: Service::History,
                ..
            } => "history error",
            SessionError::ConnectTimeout(_) => "connect timeout",
            SessionError::HeartBeatTimeout(_) => "heart-beat timeout",
            SessionError::SlowConsumer(_) => "slow consumer",
            SessionError::SubscriptionCancelled { .. } => "Server cancelled subscription",
            SessionError::ShuttingDown => "server shutting down",
            SessionError::Replaced(_) => "session replaced",
            SessionError::Auth(_) | SessionError::VirtualHostDenied(_) => "Bad CONNECT",
            SessionError::TokenExpired => "Access refused: token expired",
            SessionError::TooManyFrames(_) => "too many frames",
            SessionError::TooManyUnacked(_) => "too many unacknowledged messages",
            SessionError::FrameTimeout(_) => "frame timeout",
            SessionError::MessageTooLarge(_) => "frame too large",
            SessionError::AccessRefused { .. } => "access refused",
        }
    }

    /// Whether the body ends with a newline: RabbitMQ's bodies end as its
    /// plugin writes them (some with `~n`, some not), ours with one.
    fn ends_with_newline(&self) -> bool {
        !matches!(
            self,
            SessionError::NotConnected(_)
                | SessionError::UserIdMismatch { .. }
                | SessionError::DuplicateSubscription(_)
                | SessionError::DurableWithoutId
                | SessionError::Auth(AuthError::BadPassword(_))
                | SessionError::VirtualHostDenied(_)
                | SessionError::TooManyTransactions(_)
                | SessionError::TransactionTooLarge(_)
                | SessionError::Service {
                    summary: Some("not_found"),
                    ..
                }
        )
    }

    /// The ERROR frame for this error; `receipt_id` is the `receipt` of the
    /// frame that caused it, if it had one.
    pub fn to_frame(&self, receipt_id: Option<&str>) -> Frame {
        let body = match self.ends_with_newline() {
            true => format!("{self}\n"),
            false => self.to_string(),
        };
        let mut frame = Frame::new(Command::Error)
            .header("message", self.summary())
            .header("content-type", "text/plain")
            .header("content-length", body.len().to_string());
        if let Some(receipt_id) = receipt_id {
            frame = frame.header("receipt-id", receipt_id);
        }
        if let SessionError::SubscriptionCancelled { subscription, .. } = self {
            frame = frame.header("subscription", subscription.as_str());
        }
        frame.body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_say_what_was_wrong() {
        let error = SessionError::MissingHeader {
            command: Command::Send,
            header: "destination",
        };
        let frame = error.to_frame(Some("r-1"));
        assert_eq!(frame.command, Command::Error);
        assert_eq!(frame.get("message"), Some("Missing destination"));
        assert_eq!(frame.get("receipt-id"), Some("r-1"));
        assert_eq!(
            &frame.body[..],
            b"'SEND' must include a 'destination' header\n"
        );
        assert_eq!(frame.get("content-length"), Some("43"));
    }

    #[test]
    fn where_rabbitmq_has_the_same_error_its_words_and_its_line_ends() {
        let body = |error: SessionError| {
            let frame = error.to_frame(None);
            (
                frame.get("message").unwrap_or_default().to_owned(),
                String::from_utf8_lossy(&frame.body).into_owned(),
            )
        };
        let cases = [
            (
                SessionError::Auth(AuthError::BadPassword("x".into())),
                "Bad CONNECT",
                "Access refused for user 'x'",
            ),
            (
                SessionError::DuplicateSubscription("1".into()),
                "Duplicated subscription identifier",
                "A subscription identified by 'T_1' already exists.",
            ),
            (
                SessionError::Malformed(ParseError::UnknownCommand("FOO".into())),
                "Bad command",
                "Could not interpret command \"FOO\"\n",
            ),
            (
                SessionError::NotConnected(Command::Send),
                "Illegal command",
                "You must log in using CONNECT first",
            ),
            (
                SessionError::UserIdMismatch {
                    claimed: "bob".into(),
                    user: Some("guest".into()),
                },
                "access_refused",
                "user_id property set to 'bob' but authenticated user was 'guest'",
            ),
            (
                SessionError::TooManyTransactions(16),
                "Transaction limit exceeded",
                "Too many concurrent transactions (limit 16)",
            ),
            (
                SessionError::Service {
                    service: Service::Broker,
                    summary: Some("not_found"),
                    text: "no exchange 'x' in vhost '/'".into(),
                },
                "not_found",
                "no exchange 'x' in vhost '/'",
            ),
        ];
        for (error, message, text) in cases {
            assert_eq!(body(error), (message.to_owned(), text.to_owned()));
        }
    }
}
