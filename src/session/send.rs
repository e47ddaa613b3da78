//! SEND: where a message may go, the headers only the relay sets, and the
//! [`Outbound`] that carries it to the broker or, for `/user/...`, to
//! dispatch.
//! A `reply-to` naming a temp queue makes that queue on first use.

use std::sync::Arc;

use stomp_parser::Frame;

use super::headers::required;
use super::{Command, Outbound, Session, SessionError};
use crate::auth::acl::Action;
use crate::broker::destination::{Destination, DestinationError, TempQueue};
use crate::broker::queue_options::QueueOptions;
use crate::broker::{
    AckMode, FRAME_HEADERS, Message, OFFLINE_ID_HEADER, PublishTarget, SENDER_HEADERS,
    SubscriptionSpec,
};
use crate::dispatch::WhenOffline;

/// The SEND header asking that a message to `/user/{name}/...` be kept
/// while that user is offline.
const PERSIST: &str = "persist";

impl Session {
    pub(super) fn send(&mut self, mut frame: Frame) -> Result<(), SessionError> {
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
            .chain([&OFFLINE_ID_HEADER]);
        for name in relay_headers {
            headers.remove(name);
        }
        // `persist` asks dispatch to keep a message for an offline user; it
        // is the relay's header, not the message's.
        let when_offline = match destination {
            Destination::User { .. } => {
                headers.remove(PERSIST);
                WhenOffline::from_persist(frame.boolean(PERSIST) == Some(true))
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
        let send = match (destination.publish_target(), destination) {
            (Some(mut target), _) => {
                if let PublishTarget::Queue {
                    declare: Some(options),
                    ..
                } = &mut target
                {
                    *options = QueueOptions::for_send(&frame.headers)?;
                }
                Outbound::Publish { target, message }
            }
            (None, Destination::User { user, name }) => Outbound::ToUser {
                user,
                name,
                message,
                when_offline,
            },
            // check_send refused every other destination without a target.
            (None, _) => return Err(DestinationError::Unknown(text.to_owned()).into()),
        };
        self.give_send(send);
        Ok(())
    }

    /// The reply address of this session's temp queue `name`, created on
    /// first use: replies sent to it arrive as MESSAGEs whose `subscription`
    /// and `destination` are `/temp-queue/{name}`, as with RabbitMQ.
    fn temp_queue(&mut self, name: &str) -> Result<String, SessionError> {
        let temp = TempQueue::new(name, &self.context.node, self.id)
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
}

/// A SEND may not name a message id, which only the server gives, as
/// RabbitMQ's STOMP plugin refuses it.
pub fn refuse_message_id(frame: &Frame) -> Result<(), SessionError> {
    match frame.get("message-id") {
        Some(_) => Err(SessionError::NotAllowedHeader {
            command: frame.command,
            header: "message-id",
        }),
        None => Ok(()),
    }
}
