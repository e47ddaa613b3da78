//! What a session asks of the world, and what comes back.
//!
//! The session core does no I/O: where it needs the broker, the registry,
//! dispatch or the authenticator it gives out a [`Command`] or, for a SEND,
//! an [`Outbound`], and the connection's driver carries it out and hands the
//! result back as an [`Event`].
//!
//! They come out in two lanes, because STOMP orders them differently: a
//! [`Command`] runs after every command given before it, one at a time,
//! while SENDs may go side by side, each after the ordered commands given
//! before it (a SEND after a SUBSCRIBE is heard by it). Both lanes share
//! one numbering, in the order given, which is what lets the core hold a
//! RECEIPT until everything before it is done.

use stomp_parser::Frame;

use super::Rejection;
use crate::auth::{AuthError, Identity};
use crate::broker::{AckTag, Message, PublishTarget, Settlement, SubscriptionSpec};
use crate::dispatch::WhenOffline;
use crate::dispatch::offline::OfflineMessage;
use crate::history::{Owner, Replay, StartAt};

/// The number of a command or SEND within its session, in the order given:
/// one numbering for both lanes.
pub type CommandId = u64;

/// One thing the session needs done outside itself, in order with the
/// others.
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
    /// ACK or NACK of broker deliveries.
    Settle {
        tags: Vec<AckTag>,
        settlement: Settlement,
    },
    /// Read what was kept for `user` at user destination `name` while it
    /// was offline: answered by [`Event::Offline`].
    ReadOffline {
        user: String,
        name: String,
    },
    /// Read what `owner`'s history holds for `name` (a user destination's
    /// name, a topic's key) from `start` on: answered by [`Event::History`].
    ReadHistory {
        owner: Owner,
        name: String,
        start: StartAt,
    },
    /// Forget kept messages the client has had (and acknowledged).
    ForgetOffline {
        user: String,
        ids: Vec<String>,
    },
    /// The session ended: the broker forgets it (requeueing what it left
    /// unacknowledged).
    Detach,
    /// The session ended: the registry forgets it.
    Unregister,
}

/// A SEND of the session: what may go to the broker side by side with the
/// session's other SENDs, without waiting for their confirms.
#[derive(Debug)]
pub enum Outbound {
    /// A SEND to a broker destination.
    Publish {
        target: PublishTarget,
        message: Message,
    },
    /// A SEND to `/user/{user}/queue/{name}`: to every live session of
    /// `user`, through dispatch.
    ToUser {
        user: String,
        name: String,
        message: Message,
        when_offline: WhenOffline,
    },
}

/// The result of a [`Command`] or an [`Outbound`], handed back to the
/// session.
#[derive(Debug)]
pub enum Event {
    /// Done: `Err` ends the session with that ERROR.
    Done(Result<(), Rejection>),
    Authenticated(Result<Option<Identity>, AuthError>),
    /// The messages kept for the user; `Err` costs the subscription nothing
    /// (they stay kept for next time).
    Offline(Result<Vec<OfflineMessage>, Rejection>),
    /// What the history holds after a replay's start; `Err` replays
    /// nothing, and says so on the subscription's first MESSAGE.
    History(Result<Replay, Rejection>),
}

/// What the session gives out, in order.
#[derive(Debug)]
pub enum Output {
    /// A frame for the client.
    Frame(Frame),
    /// Something for the driver to carry out after the commands given
    /// before it; its result comes back through
    /// [`super::Session::complete`].
    Command(CommandId, Command),
    /// A SEND for the driver to hand over, after the commands given before
    /// it but beside the other SENDs; its result comes back as a command's.
    Send(CommandId, Outbound),
    /// End the connection, after an ERROR frame when there is a rejection.
    Close(Option<Rejection>),
}
