//! SUBSCRIBE and UNSUBSCRIBE: what a subscription asks for, checked against
//! the session's bounds and the ACL, given to the broker as a
//! [`SubscriptionSpec`]. A subscription to one of the user's own
//! destinations also reads what was kept for the user while offline, and,
//! when it gives a position (`x-stream-offset`), what it missed since
//! ([`super::replay`]), once the SUBSCRIBE's RECEIPT is placed; so does one
//! to a topic that keeps a history.

use std::sync::Arc;

use stomp_parser::{Frame, Version};

use super::headers::{missing, required};
use super::{Command, Session, SessionError};
use crate::auth::acl::Action;
use crate::broker::destination::Destination;
use crate::broker::queue_options::{QueueOptions, asks_durable};
use crate::broker::{AckMode, SubscriptionSpec};
use crate::history::{Owner, POSITION_HEADER, StartAt};

impl Session {
    pub(super) fn subscribe(&mut self, frame: &Frame) -> Result<(), SessionError> {
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
        // Asked for what it missed (with the node's histories): that comes
        // first, then what comes live, which waits meanwhile.
        let start = frame
            .get(POSITION_HEADER)
            .filter(|_| self.context.settings.replay.is_some())
            .and_then(StartAt::parse);
        if let (Destination::OwnUser { name }, Some(user)) = (&spec.destination, self.user()) {
            let user = user.to_owned();
            if let Some(start) = start {
                self.replay(&spec.id, Owner::User(user.clone()), name, start);
            }
            self.read_after_receipt.push((
                spec.id.clone(),
                Command::ReadOffline {
                    user,
                    name: name.clone(),
                },
            ));
        }
        if let (Destination::Topic { key }, Some(start)) = (&spec.destination, start)
            && without_a_queue_of_its_own(frame)
            && self
                .context
                .settings
                .replay
                .as_ref()
                .is_some_and(|topics| topics.keep(key))
        {
            self.replay(&spec.id, Owner::Topic(key.clone()), key, start);
        }
        self.subscriptions.insert(spec.clone());
        self.give(Command::Subscribe(spec));
        Ok(())
    }

    pub(super) fn unsubscribe(&mut self, frame: &Frame) -> Result<(), SessionError> {
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
        self.end_replay(id);
        self.give(Command::Unsubscribe { spec, discard });
        Ok(())
    }
}

impl Session {
    /// Subscription `id` replays `owner`'s history for `name` from `start`
    /// once its RECEIPT is placed; what comes live waits until then.
    fn replay(&mut self, id: &Arc<str>, owner: Owner, name: &str, start: StartAt) {
        self.replays.begin(id, start);
        let read = Command::ReadHistory {
            owner,
            name: name.to_owned(),
            start,
        };
        self.read_after_receipt.push((id.clone(), read));
    }
}

/// Whether a topic subscription is fed by the node's fan-out, not by a
/// queue of its own (durable, named or a stream), whose messages a replay
/// would repeat.
fn without_a_queue_of_its_own(frame: &Frame) -> bool {
    !asks_durable(&frame.headers)
        && frame.get("x-queue-name").is_none()
        && frame.get("x-queue-type").is_none()
}

/// A durable subscription is found again by its `id`, so it must have one,
/// whatever the version.
fn refuse_durable_without_id(frame: &Frame) -> Result<(), SessionError> {
    if asks_durable(&frame.headers) && frame.get("id").is_none() {
        return Err(SessionError::DurableWithoutId);
    }
    Ok(())
}
