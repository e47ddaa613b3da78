//! Deliveries from the broker, turned into MESSAGE frames: checked against
//! the subscription and the ACL, recorded when they need an ACK, and kept
//! messages forgotten once delivered.

use std::sync::Arc;

use stomp_parser::{Frame, Version};

use super::replay::Admission;
use super::subscriptions::Pending;
use super::{Command, Output, Session, SessionError, State, StompCommand};
use crate::auth::acl::Action;
use crate::broker::{Delivery, Message, OFFLINE_ID_HEADER, Settlement};
use crate::history::RECOVERED_HEADER;

impl Session {
    /// Turns a delivery into the MESSAGE frame for the client, recording it
    /// when it needs an ACK. A delivery to a subscription that has just
    /// ended is given back to the broker; one the ACL does not let the
    /// client read is acknowledged and dropped. One that needs an ACK past
    /// `max_unacked` ends the session.
    pub fn deliver(&mut self, delivery: Delivery) {
        if !matches!(self.state, State::Connected(_) | State::Closing) {
            return;
        }
        // A subscription replaying its user's history shows what comes
        // live after that, once.
        match self.replays.admit(delivery) {
            Admission::Held { pushed_out: None } => {}
            Admission::Held {
                pushed_out: Some(delivery),
            }
            | Admission::ShownAlready(delivery) => self.settle_shown(delivery),
            Admission::Now(delivery) => self.deliver_now(delivery, false),
        }
    }

    /// [`Session::deliver`], now; `replayed` for a message from the
    /// history, which the broker knows nothing of.
    pub(super) fn deliver_now(&mut self, delivery: Delivery, replayed: bool) {
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
        let kept = delivery
            .message
            .headers
            .get(OFFLINE_ID_HEADER)
            .map(str::to_owned);
        if let Some(kept) = &kept
            && !self.recent_offline.first_time(kept)
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
        let replayed_needs_ack = replayed
            && self
                .subscriptions
                .get(&delivery.subscription)
                .is_some_and(|subscription| subscription.ack.needs_ack());
        let max = self.context.settings.max_unacked;
        if (delivery.ack.is_some() || replayed_needs_ack) && self.subscriptions.unacked() >= max {
            // Not delivered: the broker takes it back when the session ends.
            return self.abort(SessionError::TooManyUnacked(max));
        }
        let pending = match (delivery.ack, &kept) {
            (Some(tag), Some(kept)) => Some(Pending::BrokerAndOffline(tag, kept.clone())),
            (Some(tag), None) => Some(Pending::Broker(tag)),
            (None, Some(kept)) if replayed_needs_ack => Some(Pending::Offline(kept.clone())),
            (None, None) if replayed_needs_ack => Some(Pending::Replayed),
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
            && !replayed_needs_ack
            && let (Some(kept), Some(user)) = (kept, self.user())
        {
            let user = user.to_owned();
            self.give(Command::ForgetOffline {
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
    pub(super) fn message_frame(
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
        if self.replays.first_since_incomplete(subscription) {
            frame = frame.header(RECOVERED_HEADER, "false");
        }
        for (name, value) in message.headers.iter() {
            if name != OFFLINE_ID_HEADER {
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
}
