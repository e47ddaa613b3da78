//! What a session asks of the world, and what comes back.
//!
//! The session core does no I/O: where it needs the broker, the registry,
//! dispatch or the authenticator it gives out a [`Command`], and the
//! connection's driver carries it out and hands the result back as an
//! [`Event`]. Commands are numbered in the order they are given, which is
//! what lets the core hold a RECEIPT until everything before it is done.
//!
//! SENDs ([`Command::Publish`], [`Command::SendToUser`]) may run side by
//! side; every other command runs after the ones given before it, in order
//! (the driver's business: the core only numbers them).

use stomp_parser::Frame;

use super::Rejection;
use crate::auth::{AuthError, Identity};
use crate::broker::{AckTag, Message, PublishTarget, Settlement, SubscriptionSpec};
use crate::dispatch::WhenOffline;
use crate::dispatch::offline::KeptMessage;

/// The number of a command within its session, in the order given.
pub type CommandId = u64;

/// One thing the session needs done outside itself.
#[derive(Debug, Clone)]
pub enum Command {
    /// Check a login: answered by [`Event::Authenticated`].
    Authenticate {
        login: Option<String>,
        passcode: Option<String>,
        authorization: Option<String>,
        access_token: Option<String>,
    },
    /// Start delivering to this session.
    Attach,
    /// Record this session of `user` in the registry, where dispatch finds it.
    Register {
        user: String,
    },
    /// End the other sessions of `user`, wherever they are
    /// (`--second-login replace`). Never fails the session.
    ReplaceOlder {
        user: String,
    },
    Subscribe(SubscriptionSpec),
    /// End a subscription; `discard` also deletes a durable one's queue.
    Unsubscribe {
        spec: SubscriptionSpec,
        discard: bool,
    },
    /// A SEND to a broker destination.
    Publish {
        target: PublishTarget,
        message: Message,
    },
    /// A SEND to `/user/{user}/queue/{name}`: to every live session of
    /// `user`, through dispatch.
    SendToUser {
        user: String,
        name: String,
        message: Message,
        when_offline: WhenOffline,
    },
    /// ACK or NACK of broker deliveries.
    Settle {
        tags: Vec<AckTag>,
        settlement: Settlement,
    },
    /// Read what was kept for `user` at user destination `name` while it
    /// was offline: answered by [`Event::Kept`].
    ReadKept {
        user: String,
        name: String,
    },
    /// Forget kept messages the client has had (and acknowledged).
    ForgetKept {
        user: String,
        ids: Vec<String>,
    },
    /// The session ended: the broker forgets it (requeueing what it left
    /// unacknowledged).
    Detach,
    /// The session ended: the registry forgets it.
    Unregister,
}

/// The result of a [`Command`], handed back to the session.
#[derive(Debug)]
pub enum Event {
    /// Done: `Err` ends the session with that ERROR.
    Done(Result<(), Rejection>),
    Authenticated(Result<Option<Identity>, AuthError>),
    /// The messages kept for the user; `Err` costs the subscription nothing
    /// (they stay kept for next time).
    Kept(Result<Vec<KeptMessage>, Rejection>),
}

/// What the session gives out, in order.
#[derive(Debug)]
pub enum Output {
    /// A frame for the client.
    Frame(Frame),
    /// Something for the driver to carry out; its result comes back through
    /// [`super::Session::complete`].
    Command(CommandId, Command),
    /// End the connection, after an ERROR frame when there is a rejection.
    Close(Option<Rejection>),
}
